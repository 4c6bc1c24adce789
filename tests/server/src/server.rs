//! Listeners, connection handling, endpoint logic and fault application.

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::PublicKey;
use crate::http::{self, Conn, Request};
use crate::spec::{CheckedRequest, Specs};
use crate::{
    AuthOutcome, AuthPolicy, AuthRecord, DeploymentState, Endpoint, Fault, FaultKind, LogEntry,
    RequestRecord, ServerConfig, Violation,
};

const AUTH_PATH: &str = "/api/devices/v1/authentication/auth_requests";
const INVENTORY_PATH: &str = "/api/devices/v1/inventory/device/attributes";
const NEXT_V1: &str = "/api/devices/v1/deployments/device/deployments/next";
const NEXT_V2: &str = "/api/devices/v2/deployments/device/deployments/next";
const DEPLOYMENTS_PREFIX: &str = "/api/devices/v1/deployments/device/deployments/";
const DEPLOYMENTS_V2_PREFIX: &str = "/api/devices/v2/deployments/device/deployments/";
const DOWNLOAD_PREFIX: &str = "/download/";
const STATUSES: &[&str] = &[
    "downloading",
    "pause_before_installing",
    "installing",
    "pause_before_rebooting",
    "rebooting",
    "pause_before_committing",
    "success",
    "failure",
    "already-installed",
];
/// mender-server 4.x limit on device deployment request bodies.
const BODY_LIMIT: usize = 1 << 20;

pub(crate) struct Token {
    pub(crate) expired: bool,
}

pub(crate) struct Deployment {
    pub(crate) id: String,
    pub(crate) artifact_id: String,
    artifact_name: String,
    device_types: Vec<String>,
    path: PathBuf,
    pub(crate) force: bool,
    pub(crate) state: DeploymentState,
    /// (artifact_name, device_type) the device reported when it got this
    /// deployment.
    handed_to: Option<(String, String)>,
    pub(crate) statuses: Vec<(String, Option<String>)>,
    pub(crate) logs: Vec<LogEntry>,
    /// The deployment's Update Control Map (Enterprise): sent in the v2
    /// `next` answer and by `GET .../update_control_map`.
    pub(crate) control_map: Option<Value>,
}

/// Mutable server state.
pub(crate) struct State {
    pub(crate) default_policy: AuthPolicy,
    pub(crate) device_policies: BTreeMap<String, AuthPolicy>,
    auth_counts: BTreeMap<String, u32>,
    pub(crate) tokens: BTreeMap<String, Token>,
    token_owner: BTreeMap<String, String>,
    pub(crate) auths: Vec<AuthRecord>,
    pub(crate) inventory: BTreeMap<String, BTreeMap<String, Value>>,
    pub(crate) last_inventory_device: Option<String>,
    deployments: Vec<Deployment>,
    pub(crate) faults: Vec<Fault>,
    pub(crate) requests: Vec<RequestRecord>,
    pub(crate) violations: Vec<Violation>,
}

impl State {
    pub(crate) fn deployment_mut(&mut self, id: &str) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }
}

/// State shared by the handle and all threads.
pub(crate) struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    specs: Specs,
    config: ServerConfig,
    conns: Mutex<Vec<JoinHandle<()>>>,
    request_ids: AtomicU64,
    pub(crate) http_addr: SocketAddr,
    pub(crate) https_addr: SocketAddr,
    pub(crate) cert_pem: String,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler thread must not take the harness down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub(crate) fn join_connections(&self) {
        let conns: Vec<_> = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for c in conns {
            let _ = c.join();
        }
    }

    pub(crate) fn add_deployment(
        &self,
        path: &Path,
        artifact_name: &str,
        device_types: &[&str],
    ) -> String {
        let id = uuid();
        let d = Deployment {
            id: id.clone(),
            artifact_id: uuid(),
            artifact_name: artifact_name.to_owned(),
            device_types: device_types.iter().map(|s| (*s).to_owned()).collect(),
            path: path.to_owned(),
            force: false,
            state: DeploymentState::Pending,
            handed_to: None,
            statuses: Vec::new(),
            logs: Vec::new(),
            control_map: None,
        };
        self.lock().deployments.push(d);
        id
    }

    fn violation(&self, st: &mut State, req: &Request, spec: &str, message: String) {
        let v = Violation {
            method: req.method.clone(),
            path: req.path.clone(),
            spec: spec.to_owned(),
            message,
        };
        if self.config.verbose {
            eprintln!("[testserver] VIOLATION {v}");
        }
        st.violations.push(v);
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS random number generator");
    b
}

fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A JWT-shaped random token (header.payload.signature, base64url).
fn make_token(device: &str) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = e.encode(
        json!({"sub": device, "jti": uuid(), "iss": "otalite-testserver", "mender.device": true})
            .to_string(),
    );
    format!("{header}.{payload}.{}", e.encode(random_bytes::<32>()))
}

/// `id_data` normalised like deviceauth does (sorted keys, compact).
pub(crate) fn normalize_identity(id_data: &str) -> Option<String> {
    match serde_json::from_str::<Value>(id_data) {
        Ok(v @ Value::Object(_)) => Some(v.to_string()),
        _ => None,
    }
}

/// The presigned-style link of an artifact.
pub(crate) fn artifact_uri(base: &str, artifact_id: &str) -> String {
    format!(
        "{base}{DOWNLOAD_PREFIX}{artifact_id}?x-men-expire={}",
        http::percent_encode(&crate::time::rfc3339_from_now(86_400))
    )
}

fn tls_config(public_url: Option<&str>) -> (Arc<rustls::ServerConfig>, String) {
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    // The host devices reach the server under (`ServerConfig::public_url`).
    if let Some(host) = public_url
        .and_then(|u| u.split_once("://"))
        .and_then(|(_, rest)| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty() && !names.iter().any(|n| n == h))
    {
        names.push(host.to_owned());
    }
    let ck = rcgen::generate_simple_self_signed(names).expect("generate self-signed certificate");
    let pem = ck.cert.pem();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    (Arc::new(cfg), pem)
}

/// Starts the listeners; returns the shared state and the acceptor threads.
pub(crate) fn start(config: ServerConfig) -> (Arc<Shared>, Vec<JoinHandle<()>>) {
    let plain = TcpListener::bind(("127.0.0.1", config.http_port)).expect("bind HTTP listener");
    let secure = TcpListener::bind(("127.0.0.1", config.https_port)).expect("bind HTTPS listener");
    let (tls, cert_pem) = tls_config(config.public_url.as_deref());
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        state: Mutex::new(State {
            default_policy: config.auth_policy,
            device_policies: BTreeMap::new(),
            auth_counts: BTreeMap::new(),
            tokens: BTreeMap::new(),
            token_owner: BTreeMap::new(),
            auths: Vec::new(),
            inventory: BTreeMap::new(),
            last_inventory_device: None,
            deployments: Vec::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            violations: Vec::new(),
        }),
        specs: Specs::load(),
        config,
        conns: Mutex::new(Vec::new()),
        request_ids: AtomicU64::new(1),
        http_addr: plain.local_addr().expect("local addr"),
        https_addr: secure.local_addr().expect("local addr"),
        cert_pem,
    });
    let mut threads = Vec::new();
    for (listener, tls) in [(plain, None), (secure, Some(tls))] {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let shared = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("testserver-accept".into())
                .spawn(move || accept_loop(&listener, tls, &shared))
                .expect("spawn acceptor"),
        );
    }
    (shared, threads)
}

fn accept_loop(
    listener: &TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: &Arc<Shared>,
) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((sock, _)) => {
                let shared2 = Arc::clone(shared);
                let tls = tls.clone();
                let handle = std::thread::Builder::new()
                    .name("testserver-conn".into())
                    .spawn(move || {
                        if let Some(conn) = setup(sock, tls) {
                            serve_connection(conn, &shared2);
                        }
                    });
                let mut conns = shared.conns.lock().unwrap_or_else(|e| e.into_inner());
                conns.retain(|h| !h.is_finished());
                if let Ok(h) = handle {
                    conns.push(h);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn setup(sock: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) -> Option<Conn> {
    sock.set_nonblocking(false).ok()?;
    sock.set_read_timeout(Some(http::POLL)).ok()?;
    sock.set_write_timeout(Some(http::POLL)).ok()?;
    let _ = sock.set_nodelay(true);
    Some(match tls {
        None => Conn::Plain(sock),
        Some(cfg) => {
            let sc = rustls::ServerConnection::new(cfg).ok()?;
            Conn::Tls(Box::new(rustls::StreamOwned::new(sc, sock)))
        }
    })
}

fn serve_connection(mut conn: Conn, shared: &Shared) {
    let tls = matches!(conn, Conn::Tls(_));
    let base = if let Some(url) = &shared.config.public_url {
        url.clone()
    } else if tls {
        format!("https://{}", shared.https_addr)
    } else {
        format!("http://{}", shared.http_addr)
    };
    let mut buf = Vec::new();
    while let Ok(Some(req)) = http::read_request(&mut conn, &mut buf, &shared.stop) {
        match handle(&mut conn, req, shared, tls, &base) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
    }
    if let Conn::Tls(s) = &mut conn {
        s.conn.send_close_notify();
        let _ = http::flush(&mut conn, &shared.stop);
    }
}

/// A response body.
enum Body {
    Bytes(Vec<u8>),
    File { path: PathBuf, start: u64, len: u64 },
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
        }
    }
    fn json(status: u16, v: &Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Bytes(v.to_string().into_bytes()),
        }
    }
    fn error(status: u16, msg: &str) -> Self {
        Self::json(status, &json!({"error": msg}))
    }
    fn header(mut self, k: &str, v: String) -> Self {
        self.headers.push((k.to_owned(), v));
        self
    }
    fn len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// How the body is delivered.
#[derive(Clone, Copy)]
enum Shape {
    Normal,
    DropAfter(u64),
    StallAfter(u64),
    Trickle(u64),
}

fn classify(req: &Request) -> (Endpoint, Option<String>) {
    let m = req.method.as_str();
    let p = req.path.as_str();
    let ep = match (m, p) {
        ("POST", AUTH_PATH) => Endpoint::Auth,
        ("PUT" | "PATCH", INVENTORY_PATH) => Endpoint::Inventory,
        ("POST", NEXT_V2) => Endpoint::NextV2,
        ("GET" | "POST", NEXT_V1) => Endpoint::NextV1,
        ("GET", _) if p.starts_with(DOWNLOAD_PREFIX) => {
            return (
                Endpoint::Download,
                Some(p[DOWNLOAD_PREFIX.len()..].to_owned()),
            );
        }
        ("GET", _) if p.starts_with(DEPLOYMENTS_V2_PREFIX) => {
            match p[DEPLOYMENTS_V2_PREFIX.len()..].split_once('/') {
                Some((id, "update_control_map")) if !id.is_empty() => {
                    return (Endpoint::ControlMap, Some(id.to_owned()));
                }
                _ => Endpoint::Any,
            }
        }
        ("PUT", _) if p.starts_with(DEPLOYMENTS_PREFIX) => {
            let rest = &p[DEPLOYMENTS_PREFIX.len()..];
            match rest.split_once('/') {
                Some((id, "status")) if !id.is_empty() => {
                    let status = serde_json::from_slice::<Value>(&req.body)
                        .ok()
                        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_owned));
                    return (Endpoint::Status(status), Some(id.to_owned()));
                }
                Some((id, "log")) if !id.is_empty() => return (Endpoint::Log, Some(id.to_owned())),
                _ => Endpoint::Any,
            }
        }
        _ => Endpoint::Any,
    };
    (ep, None)
}

fn fault_matches(f: &Endpoint, ep: &Endpoint) -> bool {
    match (f, ep) {
        (Endpoint::Any, _) => true,
        (Endpoint::Status(None), Endpoint::Status(_)) => true,
        (Endpoint::Status(Some(want)), Endpoint::Status(Some(got))) => want == got,
        (a, b) => a == b && *b != Endpoint::Any,
    }
}

fn take_fault(st: &mut State, ep: &Endpoint) -> Option<FaultKind> {
    let i = st
        .faults
        .iter()
        .position(|f| fault_matches(&f.endpoint, ep))?;
    let f = &mut st.faults[i];
    let kind = f.kind.clone();
    if f.times != u32::MAX {
        f.times -= 1;
        if f.times == 0 {
            st.faults.remove(i);
        }
    }
    Some(kind)
}

/// Handles one request; `Ok(true)` = the connection may be reused.
fn handle(
    conn: &mut Conn,
    req: Request,
    shared: &Shared,
    tls: bool,
    base: &str,
) -> io::Result<bool> {
    let (ep, id) = classify(&req);
    let fault = {
        let mut st = shared.lock();
        // Conformance.
        let checked = CheckedRequest {
            method: &req.method,
            path: &req.path,
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
        };
        for v in shared.specs.check(&checked) {
            shared.violation(&mut st, &req, &v.spec, v.message);
        }
        if req.chunked {
            shared.violation(
                &mut st,
                &req,
                "mender-protocol.md 1",
                "body sent with Transfer-Encoding: chunked; send a Content-Length".into(),
            );
        }
        if req.body.len() > BODY_LIMIT && ep != Endpoint::Any {
            shared.violation(
                &mut st,
                &req,
                "mender-protocol.md 1",
                format!(
                    "body of {} bytes exceeds the server's 1 MiB limit",
                    req.body.len()
                ),
            );
        }
        take_fault(&mut st, &ep)
    };
    let mut shape = Shape::Normal;
    let resp = match fault {
        Some(FaultKind::NeverAnswer) => {
            record(shared, &req, 0, tls);
            http::hold(conn, &shared.stop);
            return Ok(false);
        }
        Some(FaultKind::Status(code)) => {
            let mut r = Response::error(code, &format!("injected fault: {code}"));
            if code == 416 {
                if let Some(size) = id.as_deref().and_then(|k| download_size(shared, k)) {
                    r = r.header("Content-Range", format!("bytes */{size}"));
                }
            }
            r
        }
        Some(FaultKind::ExpireToken) => {
            if let Some(t) = bearer(&req) {
                if let Some(tok) = shared.lock().tokens.get_mut(t) {
                    tok.expired = true;
                }
            }
            route(shared, &req, &ep, id.as_deref(), base)
        }
        Some(FaultKind::Abort) => {
            if let Some(d) = id
                .as_deref()
                .and_then(|i| shared.lock().deployment_mut(i).map(|_| i.to_owned()))
            {
                if let Some(dep) = shared.lock().deployment_mut(&d) {
                    dep.state = DeploymentState::Aborted;
                }
            }
            route(shared, &req, &ep, id.as_deref(), base)
        }
        Some(FaultKind::DropAfter(n)) => {
            shape = Shape::DropAfter(n);
            route(shared, &req, &ep, id.as_deref(), base)
        }
        Some(FaultKind::StallAfter(n)) => {
            shape = Shape::StallAfter(n);
            route(shared, &req, &ep, id.as_deref(), base)
        }
        Some(FaultKind::Trickle(bps)) => {
            shape = Shape::Trickle(bps.max(1));
            route(shared, &req, &ep, id.as_deref(), base)
        }
        None => route(shared, &req, &ep, id.as_deref(), base),
    };
    record(shared, &req, resp.status, tls);
    let keep = send(
        conn,
        resp,
        shape,
        req.method == "HEAD",
        &shared.stop,
        shared,
    )?;
    Ok(keep && !req.close)
}

fn record(shared: &Shared, req: &Request, status: u16, tls: bool) {
    if shared.config.verbose {
        eprintln!(
            "[testserver] {} {} {} -> {}",
            if tls { "https" } else { "http" },
            req.method,
            req.path,
            if status == 0 {
                "(no answer)".to_owned()
            } else {
                status.to_string()
            }
        );
    }
    shared.lock().requests.push(RequestRecord {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        header_names: req.headers.iter().map(|(k, _)| k.clone()).collect(),
        body_len: req.body.len(),
        status,
        tls,
        reported: reported_status(req),
    });
}

/// The `status` member of a status report's body (`PUT .../{id}/status`).
fn reported_status(req: &Request) -> Option<String> {
    if req.method != "PUT" || !req.path.ends_with("/status") {
        return None;
    }
    serde_json::from_slice::<Value>(&req.body)
        .ok()?
        .get("status")?
        .as_str()
        .map(str::to_owned)
}

/// Writes the response; `Ok(true)` if the connection can be reused.
fn send(
    conn: &mut Conn,
    resp: Response,
    shape: Shape,
    head_only: bool,
    stop: &AtomicBool,
    shared: &Shared,
) -> io::Result<bool> {
    let len = resp.len();
    let rid = shared.request_ids.fetch_add(1, Ordering::Relaxed);
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, http::reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("X-MEN-RequestID: otalite-testserver-{rid}\r\n"));
    if resp.status != 204 {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    if !matches!(shape, Shape::Normal) {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    http::write_all(conn, head.as_bytes(), stop)?;
    let len = if head_only || resp.status == 204 {
        0
    } else {
        len
    };
    let limit = match shape {
        Shape::DropAfter(n) | Shape::StallAfter(n) => n.min(len),
        _ => len,
    };
    let chunk = match shape {
        Shape::Trickle(bps) => (bps / 20).clamp(1, 64 * 1024) as usize,
        _ => 64 * 1024,
    };
    let mut sent = 0u64;
    let mut file = match &resp.body {
        Body::File { path, start, .. } if limit > 0 => {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(*start))?;
            Some(f)
        }
        _ => None,
    };
    let mut tmp = vec![0u8; chunk];
    while sent < limit {
        let n = chunk.min((limit - sent) as usize);
        match (&resp.body, file.as_mut()) {
            (Body::Bytes(b), _) => tmp[..n].copy_from_slice(&b[sent as usize..sent as usize + n]),
            (Body::File { .. }, Some(f)) => f.read_exact(&mut tmp[..n])?,
            (Body::File { .. }, None) => break,
        }
        http::write_all(conn, &tmp[..n], stop)?;
        sent += n as u64;
        if let Shape::Trickle(bps) = shape {
            let nanos = (n as u64).saturating_mul(1_000_000_000) / bps;
            sleep_checked(Duration::from_nanos(nanos), stop);
        }
    }
    match shape {
        Shape::Normal | Shape::Trickle(_) => Ok(matches!(shape, Shape::Normal)),
        Shape::DropAfter(_) => {
            http::flush(conn, stop)?;
            conn.abort();
            Ok(false)
        }
        Shape::StallAfter(_) => {
            http::flush(conn, stop)?;
            http::hold(conn, stop);
            Ok(false)
        }
    }
}

fn sleep_checked(d: Duration, stop: &AtomicBool) {
    let end = std::time::Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(http::POLL));
    }
}

fn bearer(req: &Request) -> Option<&str> {
    req.header("Authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The device identity owning a valid token, or a 401 response.
fn authorize(st: &State, req: &Request) -> Result<String, Response> {
    let Some(t) = bearer(req) else {
        return Err(Response::error(401, "missing Authorization: Bearer token"));
    };
    match st.tokens.get(t) {
        Some(tok) if !tok.expired => Ok(st.token_owner.get(t).cloned().unwrap_or_default()),
        Some(_) => Err(Response::error(401, "token expired")),
        None => Err(Response::error(401, "unknown token")),
    }
}

fn download_size(shared: &Shared, key: &str) -> Option<u64> {
    let path = shared
        .lock()
        .deployments
        .iter()
        .find(|d| d.artifact_id == key)
        .map(|d| d.path.clone())?;
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn route(shared: &Shared, req: &Request, ep: &Endpoint, id: Option<&str>, base: &str) -> Response {
    match ep {
        Endpoint::Auth => auth_request(shared, req),
        Endpoint::Inventory => inventory(shared, req),
        Endpoint::NextV2 if !shared.config.next_v2 => Response::error(404, "not found"),
        Endpoint::NextV2 => {
            let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
            let p = body.get("device_provides").cloned().unwrap_or(Value::Null);
            next(shared, req, &p, base)
        }
        Endpoint::NextV1 if req.method == "POST" => {
            let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
            next(shared, req, &body, base)
        }
        Endpoint::NextV1 => {
            let p = json!({
                "artifact_name": req.query("artifact_name"),
                "device_type": req.query("device_type"),
            });
            next(shared, req, &p, base)
        }
        Endpoint::Status(_) => status(shared, req, id.unwrap_or("")),
        Endpoint::Log => log(shared, req, id.unwrap_or("")),
        Endpoint::Download => download(shared, req, id.unwrap_or("")),
        Endpoint::ControlMap => control_map(shared, req, id.unwrap_or("")),
        Endpoint::Any => Response::error(404, "no such endpoint"),
    }
}

fn auth_request(shared: &Shared, req: &Request) -> Response {
    let mut st = shared.lock();
    let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let id_data = body.get("id_data").and_then(Value::as_str);
    let pubkey = body.get("pubkey").and_then(Value::as_str);
    let mut rec = AuthRecord {
        identity: id_data.unwrap_or("").to_owned(),
        key_type: None,
        outcome: AuthOutcome::BadRequest,
    };
    let (Some(id_data), Some(pubkey)) = (id_data, pubkey) else {
        st.auths.push(rec);
        return Response::error(400, "missing id_data or pubkey");
    };
    let Some(identity) = normalize_identity(id_data) else {
        shared.violation(
            &mut st,
            req,
            "mender-protocol.md 2.1",
            format!("id_data must be a JSON object encoded as a string, got {id_data:?}"),
        );
        st.auths.push(rec);
        return Response::error(400, "id_data is not a JSON object");
    };
    rec.identity.clone_from(&identity);
    let key = match PublicKey::from_pem(pubkey) {
        Ok(k) => k,
        Err(e) => {
            shared.violation(&mut st, req, "mender-protocol.md 2.1", e.clone());
            st.auths.push(rec);
            return Response::error(400, &e);
        }
    };
    rec.key_type = Some(key.key_type());
    let Some(sig) = req.header("X-MEN-Signature") else {
        st.auths.push(rec);
        return Response::error(400, "missing X-MEN-Signature");
    };
    if let Err(e) = key.verify(&req.body, sig) {
        shared.violation(&mut st, req, "mender-protocol.md 2.2", e);
        rec.outcome = AuthOutcome::BadSignature;
        st.auths.push(rec);
        return Response::error(401, "signature verification failed");
    }
    let count = {
        let c = st.auth_counts.entry(identity.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let policy = st
        .device_policies
        .get(&identity)
        .copied()
        .unwrap_or(st.default_policy);
    let outcome = match policy {
        AuthPolicy::Accept => AuthOutcome::Accepted,
        AuthPolicy::Pending => AuthOutcome::Pending,
        AuthPolicy::Reject => AuthOutcome::Rejected,
        AuthPolicy::PendingFor(n) if count <= n => AuthOutcome::Pending,
        AuthPolicy::PendingFor(_) => AuthOutcome::Accepted,
    };
    rec.outcome = outcome;
    st.auths.push(rec);
    if outcome != AuthOutcome::Accepted {
        return Response::error(401, "device unauthorized");
    }
    let token = make_token(&identity);
    st.tokens.insert(token.clone(), Token { expired: false });
    st.token_owner.insert(token.clone(), identity);
    Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/jwt".into())],
        body: Body::Bytes(token.into_bytes()),
    }
}

fn inventory(shared: &Shared, req: &Request) -> Response {
    let mut st = shared.lock();
    let device = match authorize(&st, req) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Ok(Value::Array(attrs)) = serde_json::from_slice::<Value>(&req.body) else {
        return Response::error(400, "body must be a JSON array of attributes");
    };
    let mut parsed = BTreeMap::new();
    for a in &attrs {
        let (Some(name), Some(value)) = (a.get("name").and_then(Value::as_str), a.get("value"))
        else {
            return Response::error(400, "attribute without name or value");
        };
        if value.is_null() || name.is_empty() || name.len() > 1024 {
            return Response::error(400, "invalid attribute");
        }
        parsed.insert(name.to_owned(), value.clone());
    }
    let inv = st.inventory.entry(device.clone()).or_default();
    if req.method == "PUT" {
        *inv = parsed;
    } else {
        inv.extend(parsed);
    }
    st.last_inventory_device = Some(device);
    Response::empty(200)
}

fn next(shared: &Shared, req: &Request, provides: &Value, base: &str) -> Response {
    let mut st = shared.lock();
    if let Err(r) = authorize(&st, req) {
        return r;
    }
    let name = provides
        .get("artifact_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let dtype = provides
        .get("device_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() || dtype.is_empty() || name.len() > 4096 || dtype.len() > 4096 {
        return Response::error(400, "artifact_name and device_type are required");
    }
    for d in &mut st.deployments {
        if !d.device_types.iter().any(|t| t == dtype) {
            continue;
        }
        match d.state {
            DeploymentState::Finished(_) | DeploymentState::Aborted => continue,
            DeploymentState::Pending if !d.force && d.artifact_name == name => {
                // Section 5.4: the server decides "already installed".
                d.state = DeploymentState::Finished("already-installed".into());
                return Response::empty(204);
            }
            DeploymentState::Active => {
                if let Some((n, t)) = &d.handed_to {
                    if n != name || t != dtype {
                        d.state = DeploymentState::Finished("failure".into());
                        return Response::error(409, "device reported a different artifact_name/device_type during an ongoing deployment");
                    }
                }
            }
            DeploymentState::Pending => {}
        }
        if d.handed_to.is_none() {
            d.handed_to = Some((name.to_owned(), dtype.to_owned()));
        }
        // Only the v2 answer carries the map (an Enterprise server).
        let map = d
            .control_map
            .clone()
            .filter(|_| req.path == NEXT_V2)
            .unwrap_or(Value::Null);
        return Response::json(
            200,
            &json!({
                "id": d.id,
                "update_control_map": map,
                "artifact": {
                    "id": d.artifact_id,
                    "artifact_name": d.artifact_name,
                    "source": {
                        "uri": artifact_uri(base, &d.artifact_id),
                        "expire": crate::time::rfc3339_from_now(86_400),
                    },
                    "device_types_compatible": d.device_types,
                }
            }),
        );
    }
    Response::empty(204)
}

/// `GET /api/devices/v2/deployments/device/deployments/{id}/update_control_map`:
/// `{"update_control_map": ...}`; 404 for an unknown or aborted deployment.
fn control_map(shared: &Shared, req: &Request, id: &str) -> Response {
    let st = shared.lock();
    if let Err(r) = authorize(&st, req) {
        return r;
    }
    match st.deployments.iter().find(|d| d.id == id) {
        Some(d) if d.state != DeploymentState::Aborted => Response::json(
            200,
            &json!({ "update_control_map": d.control_map.clone().unwrap_or(Value::Null) }),
        ),
        _ => Response::error(404, "no such deployment"),
    }
}

fn status(shared: &Shared, req: &Request, id: &str) -> Response {
    let mut st = shared.lock();
    if let Err(r) = authorize(&st, req) {
        return r;
    }
    let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    let substate = body.get("substate").and_then(Value::as_str);
    if substate.is_some_and(|s| s.chars().count() > 200) {
        shared.violation(
            &mut st,
            req,
            "mender-protocol.md 5.2",
            "substate longer than 200 characters".into(),
        );
        return Response::error(400, "substate too long");
    }
    let Some(d) = st.deployment_mut(id) else {
        return Response::error(404, "deployment not found");
    };
    if !STATUSES.contains(&status) {
        return Response::error(400, "invalid status");
    }
    d.statuses
        .push((status.to_owned(), substate.map(str::to_owned)));
    match d.state {
        DeploymentState::Aborted => return Response::error(409, "deployment aborted"),
        DeploymentState::Pending | DeploymentState::Active => {
            d.state = if matches!(status, "success" | "failure" | "already-installed") {
                DeploymentState::Finished(status.to_owned())
            } else {
                DeploymentState::Active
            };
        }
        DeploymentState::Finished(_) => {}
    }
    Response::empty(204)
}

fn log(shared: &Shared, req: &Request, id: &str) -> Response {
    let mut st = shared.lock();
    if let Err(r) = authorize(&st, req) {
        return r;
    }
    let body = serde_json::from_slice::<Value>(&req.body).unwrap_or(Value::Null);
    let Some(msgs) = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        shared.violation(
            &mut st,
            req,
            "mender-protocol.md 5.3",
            "log upload needs a non-empty `messages` array".into(),
        );
        return Response::error(400, "empty log");
    };
    let mut entries = Vec::new();
    for m in msgs {
        let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let e = LogEntry {
            timestamp: field("timestamp"),
            level: field("level"),
            message: field("message"),
        };
        if e.timestamp.is_empty() || e.level.is_empty() || e.message.is_empty() {
            shared.violation(
                &mut st,
                req,
                "mender-protocol.md 5.3",
                format!("log entry needs non-empty timestamp, level and message: {m}"),
            );
            return Response::error(400, "bad log entry");
        }
        entries.push(e);
    }
    let Some(d) = st.deployment_mut(id) else {
        return Response::error(404, "deployment not found");
    };
    d.logs.extend(entries);
    Response::empty(204)
}

fn download(shared: &Shared, req: &Request, key: &str) -> Response {
    let path = {
        let st = shared.lock();
        match st.deployments.iter().find(|d| d.artifact_id == key) {
            Some(d) => d.path.clone(),
            None => return Response::error(404, "no such artifact"),
        }
    };
    let Ok(total) = std::fs::metadata(&path).map(|m| m.len()) else {
        return Response::error(404, "artifact file missing");
    };
    let range = req.header("Range");
    let Some(range) = range else {
        return Response {
            status: 200,
            headers: vec![
                (
                    "Content-Type".into(),
                    "application/vnd.mender-artifact".into(),
                ),
                ("Accept-Ranges".into(), "bytes".into()),
            ],
            body: Body::File {
                path,
                start: 0,
                len: total,
            },
        };
    };
    let unsatisfiable = || {
        Response::error(416, "range not satisfiable")
            .header("Content-Range", format!("bytes */{total}"))
    };
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return unsatisfiable();
    };
    if spec.contains(',') {
        return unsatisfiable();
    }
    let Some((a, b)) = spec.split_once('-') else {
        return unsatisfiable();
    };
    let (start, end) = match (a.trim().parse::<u64>(), b.trim()) {
        (Ok(s), "") => (s, total.saturating_sub(1)),
        (Ok(s), e) => match e.parse::<u64>() {
            Ok(e) if e >= s => (s, e.min(total.saturating_sub(1))),
            _ => return unsatisfiable(),
        },
        // Suffix range "bytes=-N": the last N bytes.
        (Err(_), e) if a.trim().is_empty() => match e.parse::<u64>() {
            Ok(n) if n > 0 => (total.saturating_sub(n), total.saturating_sub(1)),
            _ => return unsatisfiable(),
        },
        _ => return unsatisfiable(),
    };
    if start >= total {
        return unsatisfiable();
    }
    Response {
        status: 206,
        headers: vec![
            (
                "Content-Type".into(),
                "application/vnd.mender-artifact".into(),
            ),
            ("Accept-Ranges".into(), "bytes".into()),
            (
                "Content-Range".into(),
                format!("bytes {start}-{end}/{total}"),
            ),
        ],
        body: Body::File {
            path,
            start,
            len: end - start + 1,
        },
    }
}
