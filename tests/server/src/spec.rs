//! OpenAPI/Swagger conformance checking of device requests.
//!
//! The spec files in `specs/` are compiled in and parsed from YAML at start.
//! Every request is matched (method + path template) against every operation
//! of every API file; each file that defines the operation checks it:
//! security (`Authorization: Bearer`), required header and query parameters,
//! `Content-Type: application/json` and the JSON body against the schema
//! (types, required properties, enums, `date-time` formats, `$ref`, `allOf`,
//! `oneOf`/`anyOf`).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::Violation;

/// The embedded files: (path relative to `specs/`, YAML text).
const FILES: &[(&str, &str)] = &[
    (
        "deviceauth-devices.yml",
        include_str!("../specs/deviceauth-devices.yml"),
    ),
    (
        "inventory-devices.yml",
        include_str!("../specs/inventory-devices.yml"),
    ),
    (
        "deployments-devices.yml",
        include_str!("../specs/deployments-devices.yml"),
    ),
    (
        "mender-server/deviceauth/devices_v1.yaml",
        include_str!("../specs/mender-server/deviceauth/devices_v1.yaml"),
    ),
    (
        "mender-server/inventory/devices_v1.yaml",
        include_str!("../specs/mender-server/inventory/devices_v1.yaml"),
    ),
    (
        "mender-server/inventory/schemas.yaml",
        include_str!("../specs/mender-server/inventory/schemas.yaml"),
    ),
    (
        "mender-server/deployments/devices_v1.yaml",
        include_str!("../specs/mender-server/deployments/devices_v1.yaml"),
    ),
    (
        "mender-server/common/responses.yaml",
        include_str!("../specs/mender-server/common/responses.yaml"),
    ),
    (
        "mender-server/common/schemas.yaml",
        include_str!("../specs/mender-server/common/schemas.yaml"),
    ),
    (
        "mender-server/common/securitySchemes.yaml",
        include_str!("../specs/mender-server/common/securitySchemes.yaml"),
    ),
    (
        "otalite-supplement.yaml",
        include_str!("../specs/otalite-supplement.yaml"),
    ),
];

/// Files whose `paths` are device API operations (the others only hold
/// `$ref` targets).
pub(crate) const API_FILES: &[&str] = &[
    "deviceauth-devices.yml",
    "inventory-devices.yml",
    "deployments-devices.yml",
    "mender-server/deviceauth/devices_v1.yaml",
    "mender-server/inventory/devices_v1.yaml",
    "mender-server/deployments/devices_v1.yaml",
    "otalite-supplement.yaml",
];

/// Operations on which a file-wide `security` is not applied (see
/// `specs/README.md`).
const SECURITY_EXEMPT: &[(&str, &str)] =
    &[("POST", "/api/devices/v1/authentication/auth_requests")];

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Param,
}

#[derive(Debug, Clone)]
struct Body {
    required: bool,
    content_types: Vec<String>,
    schema: Option<Value>,
}

#[derive(Debug, Clone)]
struct Operation {
    file: &'static str,
    method: String,
    template: String,
    segments: Vec<Seg>,
    security: bool,
    headers: Vec<String>,
    query: Vec<String>,
    body: Option<Body>,
}

/// The loaded specifications.
#[derive(Debug)]
pub(crate) struct Specs {
    files: BTreeMap<&'static str, Value>,
    ops: Vec<Operation>,
}

/// What the checker needs to know about a request.
pub(crate) struct CheckedRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a [(String, String)],
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: &'a [u8],
}

impl CheckedRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn yaml_to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map_or(Value::Null, Value::from)
            }
        }
        // Unquoted timestamps in examples are strings already in YAML 1.2.
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                out.insert(key, yaml_to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// Joins a relative `$ref` file part to the directory of `base`.
fn join(base: &str, rel: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for p in rel.split('/') {
        match p {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

fn pointer<'v>(doc: &'v Value, frag: &str) -> Option<&'v Value> {
    if frag.is_empty() {
        return Some(doc);
    }
    doc.pointer(frag)
}

impl Specs {
    /// Parses the embedded files. Panics on a malformed file (they are
    /// compiled in, so a test catches it).
    pub(crate) fn load() -> Self {
        let mut files = BTreeMap::new();
        for (name, text) in FILES {
            let y: serde_norway::Value = serde_norway::from_str(text)
                .unwrap_or_else(|e| panic!("spec {name} is not valid YAML: {e}"));
            files.insert(*name, yaml_to_json(y));
        }
        // Adjustment 1 (specs/README.md): the legacy inventory file types
        // `value` as a string although it documents numbers and arrays.
        if let Some(v) = files
            .get_mut("inventory-devices.yml")
            .and_then(|d| d.pointer_mut("/definitions/Attribute/properties/value"))
        {
            *v = serde_json::json!({"oneOf": [
                {"type": "string"}, {"type": "number"},
                {"type": "array", "items": {"type": "string"}},
                {"type": "array", "items": {"type": "number"}}
            ]});
        }
        let mut specs = Self {
            files,
            ops: Vec::new(),
        };
        for file in API_FILES {
            specs.load_ops(file);
        }
        specs
    }

    fn load_ops(&mut self, file: &'static str) {
        let doc = &self.files[file];
        let swagger2 = doc.get("swagger").is_some();
        let base = if swagger2 {
            doc.get("basePath").and_then(Value::as_str).unwrap_or("")
        } else {
            ""
        };
        let global_security = doc.get("security").map(has_security).unwrap_or(false);
        let consumes: Vec<String> = doc
            .get("consumes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
            return;
        };
        let mut ops = Vec::new();
        for (p, item) in paths {
            let template = format!("{base}{p}");
            let segments = template
                .split('/')
                .skip(1)
                .map(|s| {
                    if s.starts_with('{') && s.ends_with('}') {
                        Seg::Param
                    } else {
                        Seg::Lit(s.to_owned())
                    }
                })
                .collect::<Vec<_>>();
            let path_params = item.get("parameters").and_then(Value::as_array);
            for method in ["get", "put", "post", "patch", "delete", "head"] {
                let Some(op) = item.get(method) else { continue };
                let method = method.to_ascii_uppercase();
                let security = match op.get("security") {
                    Some(s) => has_security(s),
                    None => {
                        global_security
                            && !SECURITY_EXEMPT
                                .iter()
                                .any(|(m, t)| *m == method && *t == template)
                    }
                };
                let mut headers = Vec::new();
                let mut query = Vec::new();
                let mut body = None;
                let params = path_params.into_iter().flatten().chain(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
                for param in params {
                    let required = param.get("required").and_then(Value::as_bool) == Some(true);
                    let name = param.get("name").and_then(Value::as_str).unwrap_or("");
                    match param.get("in").and_then(Value::as_str) {
                        Some("header") if required => headers.push(name.to_owned()),
                        Some("query") if required => query.push(name.to_owned()),
                        Some("body") => {
                            body = Some(Body {
                                required,
                                content_types: op
                                    .get("consumes")
                                    .and_then(Value::as_array)
                                    .map(|a| {
                                        a.iter()
                                            .filter_map(Value::as_str)
                                            .map(str::to_owned)
                                            .collect()
                                    })
                                    .unwrap_or_else(|| consumes.clone()),
                                schema: param.get("schema").cloned(),
                            });
                        }
                        _ => {}
                    }
                }
                if let Some(rb) = op.get("requestBody") {
                    let (rb_file, rb) = self.resolve(file, rb);
                    let content = rb.get("content").and_then(Value::as_object);
                    let schema = content
                        .and_then(|c| c.get("application/json").or_else(|| c.values().next()))
                        .and_then(|m| m.get("schema"))
                        .cloned();
                    // Schemas from another file get their refs qualified so
                    // that resolution starts from the right file.
                    let schema = schema.map(|s| qualify(rb_file, file, s));
                    body = Some(Body {
                        required: rb.get("required").and_then(Value::as_bool) == Some(true),
                        content_types: content
                            .map(|c| c.keys().cloned().collect())
                            .unwrap_or_default(),
                        schema,
                    });
                }
                ops.push(Operation {
                    file,
                    method,
                    template: template.clone(),
                    segments: segments.clone(),
                    security,
                    headers,
                    query,
                    body,
                });
            }
        }
        self.ops.extend(ops);
    }

    /// Follows `$ref` chains; returns the file the final value lives in.
    fn resolve<'s>(&'s self, file: &'s str, v: &'s Value) -> (&'s str, &'s Value) {
        let mut file = file;
        let mut v = v;
        for _ in 0..32 {
            let Some(r) = v.get("$ref").and_then(Value::as_str) else {
                break;
            };
            let (f, frag) = r.split_once('#').unwrap_or((r, ""));
            let target_file: &str = if f.is_empty() {
                file
            } else {
                let joined = join(file, f);
                match self.files.get_key_value(joined.as_str()) {
                    Some((k, _)) => k,
                    None => return (file, &Value::Null),
                }
            };
            match pointer(&self.files[target_file], frag) {
                Some(t) => {
                    file = target_file;
                    v = t;
                }
                None => return (file, &Value::Null),
            }
        }
        (file, v)
    }

    /// True if some operation of some file has this exact method and path.
    #[cfg(test)]
    pub(crate) fn knows(&self, method: &str, path: &str) -> bool {
        self.ops
            .iter()
            .any(|op| op.method == method && matches(&op.segments, path))
    }

    /// Checks one request; returns the violations (empty = conformant).
    pub(crate) fn check(&self, req: &CheckedRequest<'_>) -> Vec<Violation> {
        let mut out = Vec::new();
        let v = |spec: &str, message: String| Violation {
            method: req.method.to_owned(),
            path: req.path.to_owned(),
            spec: spec.to_owned(),
            message,
        };
        let path_ops: Vec<&Operation> = self
            .ops
            .iter()
            .filter(|op| matches(&op.segments, req.path))
            .collect();
        let ops: Vec<&Operation> = path_ops
            .iter()
            .copied()
            .filter(|op| op.method == req.method)
            .collect();
        if ops.is_empty() {
            if let Some(op) = enterprise_op(req.method, req.path) {
                // Not in the open-source specs: only the bearer token is
                // checked.
                if !req
                    .header("Authorization")
                    .is_some_and(|a| a.starts_with("Bearer "))
                {
                    out.push(v(op, "missing Authorization: Bearer".into()));
                }
            } else if path_ops.is_empty() {
                out.push(v("all", "no operation with this path in any spec".into()));
            } else {
                let allowed: Vec<String> = path_ops
                    .iter()
                    .map(|o| format!("{} ({})", o.method, o.file))
                    .collect();
                out.push(v(
                    "all",
                    format!(
                        "method not in any spec for this path; specs have {}",
                        allowed.join(", ")
                    ),
                ));
            }
            return out;
        }
        for op in ops {
            let mut msgs = Vec::new();
            if op.security {
                match req.header("Authorization") {
                    None => msgs.push(
                        "missing `Authorization: Bearer <JWT>` (operation has security DeviceJWT)"
                            .to_owned(),
                    ),
                    Some(a) => match a.strip_prefix("Bearer ") {
                        Some(t) if !t.trim().is_empty() => {}
                        _ => msgs.push(format!("`Authorization` is not `Bearer <JWT>`: {a:?}")),
                    },
                }
            }
            for h in &op.headers {
                match req.header(h) {
                    Some(x) if !x.trim().is_empty() => {}
                    _ => msgs.push(format!("missing required header `{h}`")),
                }
            }
            for q in &op.query {
                if !req.query.iter().any(|(k, _)| k == q) {
                    msgs.push(format!("missing required query parameter `{q}`"));
                }
            }
            match &op.body {
                Some(b) => {
                    if req.body.is_empty() {
                        if b.required {
                            msgs.push("missing required request body".to_owned());
                        }
                    } else {
                        let ct = req.header("Content-Type");
                        let media = ct.map(|c| {
                            c.split(';')
                                .next()
                                .unwrap_or("")
                                .trim()
                                .to_ascii_lowercase()
                        });
                        match media {
                            None => msgs.push(format!(
                                "request body without `Content-Type` (spec: {})",
                                b.content_types.join(", ")
                            )),
                            Some(m)
                                if !b.content_types.is_empty()
                                    && !b
                                        .content_types
                                        .iter()
                                        .any(|c| c.eq_ignore_ascii_case(&m)) =>
                            {
                                msgs.push(format!(
                                    "`Content-Type: {}` not in spec ({})",
                                    ct.unwrap_or(""),
                                    b.content_types.join(", ")
                                ))
                            }
                            _ => {}
                        }
                        match serde_json::from_slice::<Value>(req.body) {
                            Err(e) => msgs.push(format!("body is not JSON: {e}")),
                            Ok(json) => {
                                if let Some(schema) = &b.schema {
                                    self.validate(op.file, schema, &json, "body", &mut msgs);
                                }
                            }
                        }
                    }
                }
                None => {
                    if !req.body.is_empty() {
                        msgs.push(format!(
                            "request has a {}-byte body, the operation takes none",
                            req.body.len()
                        ));
                    }
                }
            }
            out.extend(
                msgs.into_iter()
                    .map(|m| v(op.file, format!("{} {}: {m}", op.method, op.template))),
            );
        }
        out
    }

    /// Validates `value` against `schema` (found in `file`).
    fn validate(&self, file: &str, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let (file, schema) = self.resolve(file, schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.validate(file, s, value, at, out);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                let ok = alts.iter().any(|s| {
                    let mut tmp = Vec::new();
                    self.validate(file, s, value, at, &mut tmp);
                    tmp.is_empty()
                });
                if !ok {
                    out.push(format!("{at}: matches none of the {key} alternatives"));
                }
            }
        }
        if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "number" => value.is_number(),
                "integer" => value.is_i64() || value.is_u64(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                out.push(format!("{at}: expected {t}, got {}", json_type(value)));
                return;
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            if !e.contains(value) {
                let allowed: Vec<String> = e.iter().map(Value::to_string).collect();
                out.push(format!(
                    "{at}: {value} is not one of {}",
                    allowed.join(", ")
                ));
            }
        }
        if let (Some("date-time"), Some(s)) =
            (schema.get("format").and_then(Value::as_str), value.as_str())
        {
            if !crate::time::is_rfc3339(s) {
                out.push(format!("{at}: {s:?} is not an RFC 3339 date-time"));
            }
        }
        if let Some(obj) = value.as_object() {
            if let Some(req) = schema.get("required").and_then(Value::as_array) {
                for r in req.iter().filter_map(Value::as_str) {
                    if !obj.contains_key(r) {
                        out.push(format!("{at}: missing required property `{r}`"));
                    }
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in obj {
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    self.validate(file, ps, v, &format!("{at}.{k}"), out);
                } else if let Some(ap) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    self.validate(file, ap, v, &format!("{at}.{k}"), out);
                }
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.validate(file, items, v, &format!("{at}[{i}]"), out);
            }
        }
    }
}

/// Rewrites local refs (`#/...`) of a schema found in `from` so they still
/// point into `from` when the schema is evaluated relative to `to`.
fn qualify(from: &str, to: &str, v: Value) -> Value {
    if from == to {
        return v;
    }
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    if k == "$ref" {
                        if let Some(s) = v.as_str() {
                            if let Some(frag) = s.strip_prefix('#') {
                                return (
                                    k,
                                    Value::String(format!("{}#{frag}", relative(to, from))),
                                );
                            }
                        }
                    }
                    (k, qualify(from, to, v))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| qualify(from, to, v)).collect()),
        other => other,
    }
}

/// A relative path from the directory of `base` to `target`.
fn relative(base: &str, target: &str) -> String {
    let depth = base.matches('/').count();
    format!("{}{target}", "../".repeat(depth))
}

fn has_security(s: &Value) -> bool {
    s.as_array().is_some_and(|a| {
        a.iter()
            .any(|req| req.as_object().is_some_and(|o| !o.is_empty()))
    })
}

/// Device-API operations of the Enterprise server that the open-source
/// spec files lack, with where the reference client uses them.
const ENTERPRISE_OPS: [(&str, &str, &str); 1] = [(
    "GET",
    "/api/devices/v2/deployments/device/deployments/{id}/update_control_map",
    "enterprise: update control map (mender 3.4 client/client_update.go)",
)];

/// The description of the Enterprise operation `method` `path` is, if any.
fn enterprise_op(method: &str, path: &str) -> Option<&'static str> {
    ENTERPRISE_OPS.iter().find_map(|(m, template, what)| {
        let segments: Vec<Seg> = template
            .split('/')
            .skip(1)
            .map(|p| {
                if p.starts_with('{') {
                    Seg::Param
                } else {
                    Seg::Lit(p.to_owned())
                }
            })
            .collect();
        (*m == method && matches(&segments, path)).then_some(*what)
    })
}

fn matches(segments: &[Seg], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(p, s)| match s {
            Seg::Lit(l) => l == p,
            Seg::Param => !p.is_empty(),
        })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_all_device_operations() {
        let s = Specs::load();
        for (m, p) in [
            ("POST", "/api/devices/v1/authentication/auth_requests"),
            ("PUT", "/api/devices/v1/inventory/device/attributes"),
            ("PATCH", "/api/devices/v1/inventory/device/attributes"),
            ("GET", "/api/devices/v1/deployments/device/deployments/next"),
            (
                "POST",
                "/api/devices/v1/deployments/device/deployments/next",
            ),
            (
                "POST",
                "/api/devices/v2/deployments/device/deployments/next",
            ),
            (
                "PUT",
                "/api/devices/v1/deployments/device/deployments/abc/status",
            ),
            (
                "PUT",
                "/api/devices/v1/deployments/device/deployments/abc/log",
            ),
            ("GET", "/download/x"),
        ] {
            assert!(s.knows(m, p), "{m} {p}");
        }
        assert!(!s.knows(
            "GET",
            "/api/devices/v1/deployments/device/deployments/abc/status"
        ));
        // Both generations define the status operation.
        let n = s
            .ops
            .iter()
            .filter(|o| o.method == "PUT" && o.template.ends_with("{id}/status"))
            .count();
        assert_eq!(n, 2);
    }

    #[test]
    fn cross_file_refs_resolve() {
        let s = Specs::load();
        let headers = vec![
            ("Authorization".to_owned(), "Bearer x".to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        let bad = br#"[{"name":"a","value":{"x":1}}]"#;
        let r = CheckedRequest {
            method: "PUT",
            path: "/api/devices/v1/inventory/device/attributes",
            query: &[],
            headers: &headers,
            body: bad,
        };
        let v = s.check(&r);
        // Flagged by the legacy file (patched) and by the 4.x file (via
        // ./schemas.yaml).
        assert_eq!(v.len(), 2, "{v:#?}");
        let good = br#"[{"name":"a","value":["x","y"]},{"name":"b","value":3}]"#;
        let r = CheckedRequest { body: good, ..r };
        assert!(s.check(&r).is_empty());
    }
}
