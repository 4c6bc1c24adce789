//! Drives the test server with a plain HTTP client: conformance checking,
//! the device API flow, auth signatures of all three key types, and every
//! fault.
#![allow(clippy::std_instead_of_core, missing_docs)]

mod common;

use common::{auth_body, authenticate, DeviceKey, Req};
use otalite_testserver::{
    AuthOutcome, AuthPolicy, DeploymentState, Endpoint, Fault, FaultKind, KeyType, ServerConfig,
    TestServer,
};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const DEVICE_TYPE: &str = "qemux86-64";
const STATUS_PATH: &str = "/api/devices/v1/deployments/device/deployments";

fn artifact(len: usize) -> (tempfile_dir::Dir, PathBuf, Vec<u8>) {
    let dir = tempfile_dir::Dir::new();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let path = dir.0.join("release-2.mender");
    std::fs::write(&path, &data).expect("write artifact");
    (dir, path, data)
}

/// A temp dir removed on drop (no extra dependency).
mod tempfile_dir {
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Dir {
        pub(crate) fn new() -> Self {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random");
            let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
            let p = std::env::temp_dir().join(format!("otalite-testserver-{name}"));
            std::fs::create_dir_all(&p).expect("mkdir");
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn server() -> TestServer {
    TestServer::start(ServerConfig::default())
}

fn token(s: &TestServer) -> String {
    let (status, t) = authenticate(&s.url(), &DeviceKey::ed25519(), "02:00:00:00:00:01");
    assert_eq!(status, 200, "{t}");
    t
}

fn next_get(s: &TestServer, tok: &str, name: &str) -> common::Resp {
    let url = format!(
        "{}{STATUS_PATH}/next?artifact_name={name}&device_type={DEVICE_TYPE}",
        s.url()
    );
    Req::new("GET", &url).bearer(tok).send()
}

fn put_status(s: &TestServer, tok: &str, id: &str, body: serde_json::Value) -> u16 {
    let url = format!("{}{STATUS_PATH}/{id}/status", s.url());
    Req::new("PUT", &url).bearer(tok).json(&body).send().status
}

fn get_download(uri: &str, range: Option<&str>) -> common::Resp {
    let mut r = Req::new("GET", uri).timeout(Duration::from_secs(5));
    if let Some(range) = range {
        r = r.header("Range", range);
    }
    r.send()
}

/// Deployment id and artifact URI from a 200 `next`.
fn instructions(r: &common::Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    (
        v["id"].as_str().expect("id").to_owned(),
        v["artifact"]["source"]["uri"]
            .as_str()
            .expect("uri")
            .to_owned(),
    )
}

#[test]
fn conformant_flow_passes() {
    let s = server();
    let (_dir, path, data) = artifact(100_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);

    let inv = json!([
        {"name": "device_type", "value": DEVICE_TYPE},
        {"name": "artifact_name", "value": "release-1"},
        {"name": "ipv4_eth0", "value": ["192.168.1.10/24", "10.0.0.2/8"]},
        {"name": "mem_total_kB", "value": 1024}
    ]);
    let url = format!("{}/api/devices/v1/inventory/device/attributes", s.url());
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&inv).send().status,
        200
    );
    assert_eq!(s.inventory()["artifact_name"], json!("release-1"));
    let patch = json!([{"name": "artifact_name", "value": "release-1b"}]);
    assert_eq!(
        Req::new("PATCH", &url)
            .bearer(&tok)
            .json(&patch)
            .send()
            .status,
        200
    );
    assert_eq!(s.inventory()["artifact_name"], json!("release-1b"));
    assert_eq!(s.inventory()["mem_total_kB"], json!(1024));

    // v2 is off (OSS): 404, then the GET v1 fallback.
    let v2 = format!(
        "{}/api/devices/v2/deployments/device/deployments/next",
        s.url()
    );
    let body =
        json!({"device_provides": {"artifact_name": "release-1", "device_type": DEVICE_TYPE}});
    assert_eq!(
        Req::new("POST", &v2).bearer(&tok).json(&body).send().status,
        404
    );
    let r = next_get(&s, &tok, "release-1");
    let (dep, uri) = instructions(&r);
    assert_eq!(dep, id);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(v["artifact"]["artifact_name"], "release-2");
    assert_eq!(
        v["artifact"]["device_types_compatible"],
        json!([DEVICE_TYPE])
    );
    assert!(v["artifact"]["source"]["expire"].is_string());

    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "downloading"})),
        204
    );
    let d = get_download(&uri, None);
    assert_eq!(d.status, 200);
    assert_eq!(d.body, data);
    assert_eq!(
        put_status(
            &s,
            &tok,
            &id,
            json!({"status": "installing", "substate": "Executing script: ArtifactInstall_Enter_00"})
        ),
        204
    );
    assert_eq!(s.deployment_state(&id), Some(DeploymentState::Active));
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "rebooting"})),
        204
    );
    assert_eq!(put_status(&s, &tok, &id, json!({"status": "failure"})), 204);
    let log = json!({"messages": [
        {"level": "info", "message": "starting", "timestamp": "2024-05-01T12:00:00Z"},
        {"level": "error", "message": "install failed", "timestamp": "2024-05-01T12:00:05.5+02:00"}
    ]});
    let url = format!("{}{STATUS_PATH}/{id}/log", s.url());
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&log).send().status,
        204
    );

    assert_eq!(
        s.statuses(&id),
        vec![
            ("downloading".to_owned(), None),
            (
                "installing".to_owned(),
                Some("Executing script: ArtifactInstall_Enter_00".to_owned())
            ),
            ("rebooting".to_owned(), None),
            ("failure".to_owned(), None),
        ]
    );
    assert_eq!(
        s.deployment_state(&id),
        Some(DeploymentState::Finished("failure".into()))
    );
    let logs = s.logs(&id);
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[1].message, "install failed");
    // Finished: nothing more to do.
    assert_eq!(next_get(&s, &tok, "release-1").status, 204);
    let reqs = s.requests();
    assert!(reqs
        .iter()
        .any(|r| r.path.starts_with("/download/") && r.status == 200 && r.body_len == 0));
    assert!(reqs
        .iter()
        .any(|r| r.header_names.iter().any(|h| h == "X-MEN-Signature")));
    s.assert_conformant();
}

/// `public_url`: a device behind NAT (a QEMU guest at 10.0.2.2) gets
/// artifact links it can reach, and the HTTPS certificate names that host
/// (read back by `openssl x509`).
#[test]
fn public_url_names_the_links_and_the_certificate() {
    let s = TestServer::start(ServerConfig {
        public_url: Some("http://10.0.2.2:4321".to_owned()),
        ..ServerConfig::default()
    });
    let (dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    let (got, uri) = instructions(&next_get(&s, &tok, "release-1"));
    assert_eq!(got, id);
    assert!(
        uri.starts_with("http://10.0.2.2:4321/download/"),
        "artifact link {uri}"
    );
    let pem = dir.0.join("server.pem");
    std::fs::write(&pem, s.cert_pem()).expect("write certificate");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&pem)
        .output()
        .expect("run openssl (in .ci/setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "openssl: {text}");
    for name in [
        "IP Address:10.0.2.2",
        "IP Address:127.0.0.1",
        "DNS:localhost",
    ] {
        assert!(text.contains(name), "{name} not in {text}");
    }
    s.assert_conformant();
}

#[test]
fn post_next_v2_when_enabled_and_post_v1() {
    let s = TestServer::start(ServerConfig {
        next_v2: true,
        ..ServerConfig::default()
    });
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    let v2 = format!(
        "{}/api/devices/v2/deployments/device/deployments/next",
        s.url()
    );
    let body = json!({"device_provides": {"artifact_name": "release-1", "device_type": DEVICE_TYPE,
        "rootfs-image.version": "release-1"}, "update_control_map": true});
    let r = Req::new("POST", &v2).bearer(&tok).json(&body).send();
    assert_eq!(instructions(&r).0, id);
    let v1 = format!("{}{STATUS_PATH}/next", s.url());
    let flat = json!({"artifact_name": "release-1", "device_type": DEVICE_TYPE});
    let r = Req::new("POST", &v1).bearer(&tok).json(&flat).send();
    assert_eq!(instructions(&r).0, id);
    s.assert_conformant();
    // A provides map without device_type violates the supplement schema.
    let bad = json!({"device_provides": {"artifact_name": "release-1"}});
    assert_eq!(
        Req::new("POST", &v2).bearer(&tok).json(&bad).send().status,
        400
    );
    assert!(s
        .violations()
        .iter()
        .any(|v| v.spec == "otalite-supplement.yaml" && v.message.contains("device_type")));
}

#[test]
fn already_installed_rule() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    assert_eq!(next_get(&s, &tok, "release-2").status, 204);
    assert_eq!(
        s.deployment_state(&id),
        Some(DeploymentState::Finished("already-installed".into()))
    );
    assert!(
        s.statuses(&id).is_empty(),
        "the server decides, the device sends nothing"
    );
    // Forced deployments are handed out anyway; other device types get none.
    let id2 = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    s.force_install(&id2);
    assert_eq!(instructions(&next_get(&s, &tok, "release-2")).0, id2);
    let url = format!(
        "{}{STATUS_PATH}/next?artifact_name=release-1&device_type=other",
        s.url()
    );
    assert_eq!(Req::new("GET", &url).bearer(&tok).send().status, 204);
    s.assert_conformant();
}

#[test]
fn next_conflict_during_ongoing_deployment() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    instructions(&next_get(&s, &tok, "release-1"));
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "downloading"})),
        204
    );
    // Same again is fine (restart), a different name is a 409.
    assert_eq!(next_get(&s, &tok, "release-1").status, 200);
    assert_eq!(next_get(&s, &tok, "release-0").status, 409);
    assert_eq!(
        s.deployment_state(&id),
        Some(DeploymentState::Finished("failure".into()))
    );
}

#[test]
fn missing_content_type_is_flagged() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    let url = format!("{}{STATUS_PATH}/{id}/status", s.url());
    let r = Req::new("PUT", &url)
        .bearer(&tok)
        .raw_body(br#"{"status":"downloading"}"#.to_vec())
        .send();
    assert_eq!(r.status, 204, "the server is lenient, the checker is not");
    let v = s.violations();
    assert_eq!(v.len(), 2, "{v:#?}"); // legacy and 4.x spec
    assert!(v.iter().all(|v| v.message.contains("Content-Type")));
    assert!(v.iter().any(|v| v.spec == "deployments-devices.yml"));
    assert!(v
        .iter()
        .any(|v| v.spec == "mender-server/deployments/devices_v1.yaml"));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.assert_conformant()));
    assert!(r.is_err());
}

#[test]
fn wrong_status_enum_is_flagged() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "installed"})),
        400
    );
    assert_eq!(put_status(&s, &tok, &id, json!({"status": 3})), 400);
    assert_eq!(put_status(&s, &tok, &id, json!({"substate": "x"})), 400);
    let v = s.violations();
    assert!(
        v.iter()
            .any(|v| v.message.contains("\"installed\" is not one of")),
        "{v:#?}"
    );
    assert!(v
        .iter()
        .any(|v| v.message.contains("expected string, got number")));
    assert!(v
        .iter()
        .any(|v| v.message.contains("missing required property `status`")));
    assert!(s.statuses(&id).is_empty());
}

#[test]
fn unknown_path_missing_auth_and_bad_bodies_are_flagged() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    // Unknown path and wrong method.
    let r = Req::new(
        "GET",
        &format!("{}/api/devices/v1/deployments/device/update", s.url()),
    )
    .bearer(&tok)
    .send();
    assert_eq!(r.status, 404);
    let url = format!("{}{STATUS_PATH}/{id}/status", s.url());
    assert_eq!(Req::new("GET", &url).bearer(&tok).send().status, 404);
    // No Authorization.
    let r = Req::new(
        "GET",
        &format!(
            "{}{STATUS_PATH}/next?artifact_name=a&device_type=b",
            s.url()
        ),
    )
    .send();
    assert_eq!(r.status, 401);
    // Missing query parameter.
    let r = Req::new(
        "GET",
        &format!("{}{STATUS_PATH}/next?artifact_name=a", s.url()),
    )
    .bearer(&tok)
    .send();
    assert_eq!(r.status, 400);
    // Log with a bad timestamp, inventory that is not an array.
    let log = json!({"messages": [{"level": "info", "message": "m", "timestamp": "yesterday"}]});
    let r = Req::new("PUT", &format!("{}{STATUS_PATH}/{id}/log", s.url()))
        .bearer(&tok)
        .json(&log)
        .send();
    assert_eq!(r.status, 204);
    let inv = json!({"name": "a", "value": "b"});
    let r = Req::new(
        "PUT",
        &format!("{}/api/devices/v1/inventory/device/attributes", s.url()),
    )
    .bearer(&tok)
    .json(&inv)
    .send();
    assert_eq!(r.status, 400);
    let v: Vec<String> = s.violations().iter().map(ToString::to_string).collect();
    let has = |needle: &str| v.iter().any(|m| m.contains(needle));
    assert!(has("no operation with this path in any spec"), "{v:#?}");
    assert!(has("method not in any spec for this path"), "{v:#?}");
    assert!(has("missing `Authorization: Bearer <JWT>`"), "{v:#?}");
    assert!(
        has("missing required query parameter `device_type`"),
        "{v:#?}"
    );
    assert!(has("is not an RFC 3339 date-time"), "{v:#?}");
    assert!(has("body: expected array, got object"), "{v:#?}");
}

#[test]
fn auth_signatures_all_key_types() {
    let s = server();
    for (key, kt) in [
        (DeviceKey::ed25519(), KeyType::Ed25519),
        (DeviceKey::p256(), KeyType::EcdsaP256),
        (DeviceKey::rsa(2048), KeyType::Rsa),
    ] {
        let (status, tok) = authenticate(&s.url(), &key, "02:00:00:00:00:02");
        assert_eq!(status, 200, "{kt:?}: {tok}");
        assert_eq!(tok.split('.').count(), 3, "JWT-shaped");
        assert_eq!(s.auth_requests().last().map(|a| a.key_type), Some(Some(kt)));
        // Signature over other bytes (the trailing newline dropped).
        let body = auth_body(&key, "02:00:00:00:00:02");
        let sig = key.sign(&body[..body.len() - 1]);
        let r = Req::new(
            "POST",
            &format!("{}/api/devices/v1/authentication/auth_requests", s.url()),
        )
        .header("Content-Type", "application/json")
        .header("X-MEN-Signature", sig)
        .raw_body(body)
        .send();
        assert_eq!(r.status, 401, "{kt:?}");
        assert_eq!(
            s.auth_requests().last().map(|a| a.outcome),
            Some(AuthOutcome::BadSignature)
        );
    }
    assert_eq!(s.violations().len(), 3, "{:#?}", s.violations());
    assert!(s
        .violations()
        .iter()
        .all(|v| v.spec == "mender-protocol.md 2.2"));
}

#[test]
fn auth_rejects_raw_ecdsa_pkcs1_pem_and_missing_signature() {
    let s = server();
    let key = DeviceKey::p256();
    let body = auth_body(&key, "m");
    let url = format!("{}/api/devices/v1/authentication/auth_requests", s.url());
    let r = Req::new("POST", &url)
        .header("Content-Type", "application/json")
        .header("X-MEN-Signature", key.sign_p256_raw(&body))
        .raw_body(body.clone())
        .send();
    assert_eq!(r.status, 401);
    assert!(s.violations()[0].message.contains("looks like raw r||s"));
    // No X-MEN-Signature: 400 and a spec violation (required header).
    let r = Req::new("POST", &url)
        .header("Content-Type", "application/json")
        .raw_body(body)
        .send();
    assert_eq!(r.status, 400);
    assert!(s.violations().iter().any(|v| v
        .message
        .contains("missing required header `X-MEN-Signature`")));
    // A PKCS#1 RSA PUBLIC KEY block and an id_data that is an object.
    let bad = json!({"id_data": {"mac": "m"}, "pubkey": "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"});
    let r = Req::new("POST", &url)
        .header("X-MEN-Signature", "AAAA")
        .json(&bad)
        .send();
    assert_eq!(r.status, 400);
    assert!(s.violations().iter().any(|v| v
        .message
        .contains("body.id_data: expected string, got object")));
}

#[test]
fn auth_policies() {
    let s = server();
    let key = DeviceKey::ed25519();
    s.set_auth_policy(AuthPolicy::Pending);
    assert_eq!(authenticate(&s.url(), &key, "a").0, 401);
    s.set_device_auth_policy(r#"{ "mac" : "b" }"#, AuthPolicy::PendingFor(2));
    assert_eq!(authenticate(&s.url(), &key, "b").0, 401);
    assert_eq!(authenticate(&s.url(), &key, "b").0, 401);
    assert_eq!(authenticate(&s.url(), &key, "b").0, 200);
    s.set_device_auth_policy(r#"{"mac":"c"}"#, AuthPolicy::Reject);
    assert_eq!(authenticate(&s.url(), &key, "c").0, 401);
    let outcomes: Vec<AuthOutcome> = s.auth_requests().iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AuthOutcome::Pending,
            AuthOutcome::Pending,
            AuthOutcome::Pending,
            AuthOutcome::Accepted,
            AuthOutcome::Rejected
        ]
    );
    assert_eq!(s.auth_requests()[1].identity, r#"{"mac":"b"}"#);
    s.assert_conformant();
}

#[test]
fn token_expiry_gives_401_then_reauth_works() {
    let s = server();
    let tok = token(&s);
    assert_eq!(next_get(&s, &tok, "r1").status, 204);
    s.expire_tokens();
    assert_eq!(next_get(&s, &tok, "r1").status, 401);
    let tok2 = token(&s);
    assert_eq!(next_get(&s, &tok2, "r1").status, 204);
    // Fault form: expire the token used by the next `next`.
    s.inject(Fault::expire_token(Endpoint::NextV1));
    assert_eq!(next_get(&s, &tok2, "r1").status, 401);
    assert_eq!(next_get(&s, &tok2, "r1").status, 401);
    assert_eq!(s.valid_tokens().len(), 0);
    s.assert_conformant();
}

#[test]
fn range_resume_after_drop_yields_identical_bytes() {
    let s = server();
    let (_dir, path, data) = artifact(300_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, false).expect("uri");
    s.inject(Fault::drop_download_after(100_000));
    s.inject(Fault::drop_download_after(50_000));
    let mut got = Vec::new();
    let first = get_download(&uri, None);
    assert_eq!(first.status, 200);
    assert!(first.truncated);
    assert_eq!(first.body.len(), 100_000);
    got.extend_from_slice(&first.body);
    let second = get_download(&uri, Some(&format!("bytes={}-", got.len())));
    assert_eq!(second.status, 206);
    assert_eq!(
        second.header("Content-Range"),
        Some(format!("bytes 100000-299999/{}", data.len()).as_str())
    );
    assert_eq!(second.body.len(), 50_000);
    got.extend_from_slice(&second.body);
    let third = get_download(&uri, Some(&format!("bytes={}-", got.len())));
    assert_eq!(third.status, 206);
    assert!(!third.truncated);
    got.extend_from_slice(&third.body);
    assert_eq!(got, data);
    assert_eq!(s.pending_faults(), 0);
    s.assert_conformant();
}

#[test]
fn range_resume_over_https() {
    let s = server();
    let (_dir, path, data) = artifact(200_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, true).expect("uri");
    assert!(uri.starts_with("https://127.0.0.1:"));
    s.inject(Fault::drop_download_after(70_000));
    let first = Req::new("GET", &uri).cert(s.cert_pem()).send();
    assert_eq!(first.status, 200);
    assert!(first.truncated);
    assert_eq!(first.body.len(), 70_000);
    let rest = Req::new("GET", &uri)
        .cert(s.cert_pem())
        .header("Range", "bytes=70000-")
        .send();
    assert_eq!(rest.status, 206);
    let mut got = first.body;
    got.extend_from_slice(&rest.body);
    assert_eq!(got, data);
    assert!(s.requests().iter().all(|r| r.tls));
    // The API over HTTPS too.
    let key = DeviceKey::p256();
    let body = auth_body(&key, "tls");
    let r = Req::new(
        "POST",
        &format!(
            "{}/api/devices/v1/authentication/auth_requests",
            s.https_url()
        ),
    )
    .cert(s.cert_pem())
    .header("Content-Type", "application/json")
    .header("X-MEN-Signature", key.sign(&body))
    .raw_body(body)
    .send();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/jwt"));
    s.assert_conformant();
}

#[test]
fn bad_ranges_get_416() {
    let s = server();
    let (_dir, path, data) = artifact(10_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, false).expect("uri");
    for bad in [
        "bytes=10000-",
        "bytes=20000-",
        "bytes=5-2",
        "items=0-",
        "bytes=0-1,5-6",
        "bytes=x-",
    ] {
        let r = get_download(&uri, Some(bad));
        assert_eq!(r.status, 416, "{bad}");
        assert_eq!(r.header("Content-Range"), Some("bytes */10000"));
    }
    let r = get_download(&uri, Some("bytes=9990-20000"));
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[9990..]);
    let r = get_download(&uri, Some("bytes=-10"));
    assert_eq!(r.body, data[9990..]);
    // Injected 416 on a good range.
    s.inject(Fault::status(Endpoint::Download, 416));
    assert_eq!(get_download(&uri, Some("bytes=0-")).status, 416);
    s.assert_conformant();
}

#[test]
fn stall_keeps_socket_open_and_sends_nothing() {
    let s = server();
    let (_dir, path, _) = artifact(100_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, false).expect("uri");
    s.inject(Fault::stall_download_after(30_000));
    let t = Instant::now();
    let r = Req::new("GET", &uri)
        .timeout(Duration::from_millis(700))
        .send();
    assert_eq!(r.status, 200);
    assert!(r.timed_out, "half-open: no EOF, no error");
    assert_eq!(r.body.len(), 30_000);
    assert!(t.elapsed() >= Duration::from_millis(700));
    // Next request is served normally.
    assert_eq!(get_download(&uri, None).body.len(), 100_000);
}

#[test]
fn trickle_is_slow_and_complete() {
    let s = server();
    let (_dir, path, data) = artifact(20_000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, false).expect("uri");
    s.inject(Fault::trickle_download(40_000));
    let t = Instant::now();
    let r = get_download(&uri, None);
    let took = t.elapsed();
    assert_eq!(r.body, data);
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn error_statuses_k_times_then_normal() {
    let s = server();
    let tok = token(&s);
    s.inject(Fault::status(Endpoint::NextV1, 503).times(2));
    s.inject(Fault::status(Endpoint::Inventory, 500));
    s.inject(Fault::status(Endpoint::Auth, 502));
    assert_eq!(next_get(&s, &tok, "r").status, 503);
    assert_eq!(next_get(&s, &tok, "r").status, 503);
    assert_eq!(next_get(&s, &tok, "r").status, 204);
    let inv = json!([{"name": "a", "value": "b"}]);
    let url = format!("{}/api/devices/v1/inventory/device/attributes", s.url());
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&inv).send().status,
        500
    );
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&inv).send().status,
        200
    );
    assert_eq!(authenticate(&s.url(), &DeviceKey::ed25519(), "x").0, 502);
    assert_eq!(authenticate(&s.url(), &DeviceKey::ed25519(), "x").0, 200);
    // 403 (expired link) and 404 on the download, forever until cleared.
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let uri = s.artifact_url(&id, false).expect("uri");
    s.inject(Fault::status(Endpoint::Download, 403).always());
    assert_eq!(get_download(&uri, None).status, 403);
    assert_eq!(get_download(&uri, None).status, 403);
    s.clear_faults();
    s.inject(Fault::status(Endpoint::Download, 404));
    assert_eq!(get_download(&uri, None).status, 404);
    assert_eq!(get_download(&uri, None).status, 200);
    let bogus = format!("{}/download/nope", s.url());
    assert_eq!(get_download(&bogus, None).status, 404);
    s.assert_conformant();
}

#[test]
fn abort_gives_409_on_status() {
    let s = server();
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    let tok = token(&s);
    instructions(&next_get(&s, &tok, "release-1"));
    s.inject(Fault::abort_on_status("installing"));
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "downloading"})),
        204
    );
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "installing"})),
        409
    );
    assert_eq!(put_status(&s, &tok, &id, json!({"status": "failure"})), 409);
    assert_eq!(s.deployment_state(&id), Some(DeploymentState::Aborted));
    assert_eq!(next_get(&s, &tok, "release-1").status, 204);
    let st: Vec<String> = s.statuses(&id).into_iter().map(|x| x.0).collect();
    assert_eq!(st, ["downloading", "installing", "failure"]);
    // Direct abort.
    let id2 = s.add_deployment(&path, "release-3", &[DEVICE_TYPE]);
    s.abort(&id2);
    assert_eq!(
        put_status(&s, &tok, &id2, json!({"status": "downloading"})),
        409
    );
    // Unknown deployment.
    assert_eq!(
        put_status(&s, &tok, "nope", json!({"status": "downloading"})),
        404
    );
    s.assert_conformant();
}

#[test]
fn never_answer_and_drop_stops_threads() {
    let (_dir, path, _) = artifact(5000);
    let t;
    {
        let s = server();
        s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
        s.inject(Fault::never_answer(Endpoint::Any).times(2));
        let raw =
            b"GET /api/devices/v1/deployments/device/deployments/next HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(!common::raw_gets_answer(
            &s.url(),
            raw,
            Duration::from_millis(500)
        ));
        assert_eq!(s.requests().last().map(|r| r.status), Some(0));
        // A second client left hanging; dropping the server must not hang.
        let url = s.url();
        let h =
            std::thread::spawn(move || common::raw_gets_answer(&url, raw, Duration::from_secs(30)));
        assert!(s.wait_until(Duration::from_secs(5), |s| s.requests().len() == 2));
        t = Instant::now();
        drop(s);
        assert!(!h.join().expect("client thread"));
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn keep_alive_and_chunked_bodies() {
    use std::io::{Read, Write};
    let s = server();
    let tok = token(&s);
    let host = s.url().trim_start_matches("http://").to_owned();
    let mut c = std::net::TcpStream::connect(&host).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let q = format!(
        "GET {STATUS_PATH}/next?artifact_name=a&device_type=b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n"
    );
    // Two requests on one connection, pipelined.
    c.write_all(format!("{q}{q}").as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(12).filter(|w| w == b"HTTP/1.1 204").count() < 2 {
        let n = c.read(&mut buf).expect("read");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    // A chunked inventory body is decoded, handled and flagged.
    let body = r#"[{"name":"a","value":"b"}]"#;
    let req = format!(
        "PUT /api/devices/v1/inventory/device/attributes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    c.write_all(req.as_bytes()).expect("write");
    let mut rest = String::new();
    c.read_to_string(&mut rest).expect("read");
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    assert_eq!(s.inventory()["a"], json!("b"));
    let v = s.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert!(v[0].message.contains("chunked"));
}

#[test]
fn fault_kinds_match_endpoints_precisely() {
    let s = server();
    let tok = token(&s);
    let (_dir, path, _) = artifact(5000);
    let id = s.add_deployment(&path, "release-2", &[DEVICE_TYPE]);
    s.inject(Fault::new(
        Endpoint::Status(Some("success".into())),
        FaultKind::Status(500),
    ));
    s.inject(Fault::new(Endpoint::Log, FaultKind::Status(503)));
    assert_eq!(
        put_status(&s, &tok, &id, json!({"status": "downloading"})),
        204
    );
    assert_eq!(put_status(&s, &tok, &id, json!({"status": "success"})), 500);
    assert_eq!(put_status(&s, &tok, &id, json!({"status": "success"})), 204);
    let log = json!({"messages": [{"level": "info", "message": "m", "timestamp": "2024-05-01T12:00:00Z"}]});
    let url = format!("{}{STATUS_PATH}/{id}/log", s.url());
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&log).send().status,
        503
    );
    assert_eq!(
        Req::new("PUT", &url).bearer(&tok).json(&log).send().status,
        204
    );
    assert_eq!(s.pending_faults(), 0);
    s.assert_conformant();
}
