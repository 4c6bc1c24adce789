//! Mender device-API test server for otalite's end-to-end tests.
//!
//! A small, std-threads HTTP/1.1 + HTTPS server that speaks the device side of
//! the Mender server APIs (device authentication, inventory, deployments
//! `next`/status/log, artifact download with `Range` resume), checks every
//! request against the upstream OpenAPI/Swagger files in `specs/`, and
//! injects faults on demand (dropped/stalled/trickled downloads, error
//! statuses, token expiry, aborts, requests never answered).
//!
//! ```no_run
//! use otalite_testserver::{Fault, ServerConfig, TestServer, AuthPolicy};
//! let server = TestServer::start(ServerConfig::default());
//! server.set_auth_policy(AuthPolicy::Accept);
//! let id = server.add_deployment("/tmp/release-2.mender", "release-2", &["qemux86-64"]);
//! server.inject(Fault::drop_download_after(100_000));
//! // ... run the agent against server.url() ...
//! assert_eq!(server.statuses(&id).last().map(|s| s.0.as_str()), Some("success"));
//! server.assert_conformant();
//! ```
//!
//! Everything stops when the [`TestServer`] is dropped: the listener and
//! connection threads poll a stop flag and are joined.
#![allow(clippy::std_instead_of_core)]

mod auth;
mod http;
mod server;
mod spec;
mod time;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use auth::KeyType;

/// How the server starts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Port of the plain HTTP listener on 127.0.0.1 (0 = any free port).
    pub http_port: u16,
    /// Port of the HTTPS listener on 127.0.0.1 (0 = any free port).
    pub https_port: u16,
    /// Serve `POST /api/devices/v2/deployments/device/deployments/next`
    /// (Enterprise). `false` (the default) answers 404 like the OSS server,
    /// so clients fall back to v1.
    pub next_v2: bool,
    /// Auth policy for devices without a per-device policy.
    pub auth_policy: AuthPolicy,
    /// Print one line per request (and every violation) to stderr.
    pub verbose: bool,
    /// Base URL (`http://HOST:PORT`, no trailing slash) of the artifact
    /// links in deployments, for a device that reaches the server under
    /// another address (QEMU's user network at 10.0.2.2, through a relay).
    /// Its host is also a name in the HTTPS certificate. `None`: the
    /// listener's own address.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_port: 0,
            https_port: 0,
            next_v2: false,
            auth_policy: AuthPolicy::Accept,
            verbose: false,
            public_url: None,
        }
    }
}

/// What the server answers to a device's authentication request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPolicy {
    /// 200 with a token (when the signature verifies).
    Accept,
    /// 401: the device is pending acceptance.
    Pending,
    /// 401: the device was rejected.
    Reject,
    /// 401 for the first `n` requests of the device, then accept (a user
    /// accepting a pending device).
    PendingFor(u32),
}

/// Outcome of one authentication request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// 200, token issued.
    Accepted,
    /// 401, device pending.
    Pending,
    /// 401, device rejected.
    Rejected,
    /// 401, signature did not verify.
    BadSignature,
    /// 400, malformed request.
    BadRequest,
}

/// One authentication request as seen by the server.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    /// `id_data` normalised (keys sorted, compact), or the raw string when
    /// it does not parse.
    pub identity: String,
    /// Type of the presented key, when it parsed.
    pub key_type: Option<KeyType>,
    /// What the server answered.
    pub outcome: AuthOutcome,
}

/// Server-side state of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeploymentState {
    /// Created; no status reported yet (it may have been handed out).
    Pending,
    /// The device reported at least one intermediate status.
    Active,
    /// Finished with `success`, `failure` or `already-installed` (the last
    /// is set by the server's already-installed rule, section 5.4).
    Finished(String),
    /// Aborted by the test ([`TestServer::abort`] or [`FaultKind::Abort`]).
    Aborted,
}

/// One entry of an uploaded deployment log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// RFC 3339 timestamp.
    pub timestamp: String,
    /// Level string as sent.
    pub level: String,
    /// Message.
    pub message: String,
}

/// A request as recorded by the server.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Method.
    pub method: String,
    /// Path (percent-decoded, without the query).
    pub path: String,
    /// Query parameters (decoded).
    pub query: Vec<(String, String)>,
    /// Header names in the order received.
    pub header_names: Vec<String>,
    /// Body size in bytes.
    pub body_len: usize,
    /// Status answered (0 = never answered).
    pub status: u16,
    /// Received on the HTTPS listener.
    pub tls: bool,
    /// For a deployment status report: the `status` member of its body
    /// (`downloading`, `success`, ...), as sent.
    pub reported: Option<String>,
}

/// A request that does not conform to the specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Method of the request.
    pub method: String,
    /// Path of the request.
    pub path: String,
    /// Spec file (under `specs/`) or protocol digest section that was
    /// violated; `all` when no spec knows the operation.
    pub spec: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} [{}]: {}",
            self.method, self.path, self.spec, self.message
        )
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Any request.
    Any,
    /// `POST .../authentication/auth_requests`.
    Auth,
    /// `PUT`/`PATCH .../inventory/device/attributes`.
    Inventory,
    /// `POST /api/devices/v2/.../deployments/next`.
    NextV2,
    /// `GET`/`POST /api/devices/v1/.../deployments/next`.
    NextV1,
    /// `PUT .../deployments/{id}/status`; `Some(s)` only when the reported
    /// status is `s`.
    Status(Option<String>),
    /// `PUT .../deployments/{id}/log`.
    Log,
    /// `GET /download/{name}` (the artifact link).
    Download,
    /// `GET /api/devices/v2/.../deployments/{id}/update_control_map`.
    ControlMap,
}

/// What a fault does to the matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status (500, 502, 503, 403, 404, 416, ...) and a
    /// JSON error body instead of handling the request.
    Status(u16),
    /// Handle the request, send the headers and this many body bytes, then
    /// close the connection (TLS: without close_notify).
    DropAfter(u64),
    /// Handle the request, send the headers and this many body bytes, then
    /// send nothing more but keep the socket open (half-open stall) until the
    /// client gives up or the server stops.
    StallAfter(u64),
    /// Send the response body at this many bytes per second.
    Trickle(u64),
    /// Read the request and never answer (socket kept open).
    NeverAnswer,
    /// Expire the token presented by this request before handling it (so
    /// it gets 401 and the device must re-authenticate).
    ExpireToken,
    /// Abort the deployment named in the path before handling the request
    /// (a status report then gets 409).
    Abort,
}

/// A fault to inject into the next matching request(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Requests it applies to.
    pub endpoint: Endpoint,
    /// What happens.
    pub kind: FaultKind,
    /// How many matching requests it applies to (`u32::MAX` = forever).
    pub times: u32,
}

impl Fault {
    /// A fault applied once to the next request matching `endpoint`.
    pub fn new(endpoint: Endpoint, kind: FaultKind) -> Self {
        Self {
            endpoint,
            kind,
            times: 1,
        }
    }
    /// Applies to the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
    /// Applies to every matching request from now on.
    #[must_use]
    pub fn always(self) -> Self {
        self.times(u32::MAX)
    }
    /// Answer `code` to the next request on `endpoint`.
    pub fn status(endpoint: Endpoint, code: u16) -> Self {
        Self::new(endpoint, FaultKind::Status(code))
    }
    /// Close the next download after `bytes` body bytes.
    pub fn drop_download_after(bytes: u64) -> Self {
        Self::new(Endpoint::Download, FaultKind::DropAfter(bytes))
    }
    /// Stall the next download forever after `bytes` body bytes.
    pub fn stall_download_after(bytes: u64) -> Self {
        Self::new(Endpoint::Download, FaultKind::StallAfter(bytes))
    }
    /// Send the next download at `bytes_per_sec`.
    pub fn trickle_download(bytes_per_sec: u64) -> Self {
        Self::new(Endpoint::Download, FaultKind::Trickle(bytes_per_sec))
    }
    /// Never answer the next request on `endpoint`.
    pub fn never_answer(endpoint: Endpoint) -> Self {
        Self::new(endpoint, FaultKind::NeverAnswer)
    }
    /// Expire the token used by the next request on `endpoint` (401).
    pub fn expire_token(endpoint: Endpoint) -> Self {
        Self::new(endpoint, FaultKind::ExpireToken)
    }
    /// Abort the deployment when the device reports `status` (that report
    /// gets 409).
    pub fn abort_on_status(status: &str) -> Self {
        Self::new(Endpoint::Status(Some(status.to_owned())), FaultKind::Abort)
    }
}

/// A running test server. Dropping it stops every thread.
pub struct TestServer {
    shared: Arc<server::Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("url", &self.url())
            .field("https_url", &self.https_url())
            .finish()
    }
}

impl TestServer {
    /// Binds both listeners on 127.0.0.1, makes a self-signed certificate
    /// (SANs `127.0.0.1` and `localhost`) and starts serving.
    ///
    /// # Panics
    /// If a port cannot be bound or the certificate cannot be made.
    pub fn start(config: ServerConfig) -> Self {
        let (shared, threads) = server::start(config);
        Self { shared, threads }
    }

    /// `http://127.0.0.1:PORT` (the `ServerURL` for the agent).
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.http_addr)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.shared.https_addr)
    }

    /// The self-signed certificate (PEM) of the HTTPS listener, for the
    /// agent's `ServerCertificate`.
    pub fn cert_pem(&self) -> &str {
        &self.shared.cert_pem
    }

    /// Sets the policy for devices without a per-device policy.
    pub fn set_auth_policy(&self, policy: AuthPolicy) {
        self.shared.lock().default_policy = policy;
    }

    /// Sets the policy of one device. `identity` is its `id_data` JSON
    /// (normalised here, so key order and spacing do not matter).
    pub fn set_device_auth_policy(&self, identity: &str, policy: AuthPolicy) {
        let key = server::normalize_identity(identity).unwrap_or_else(|| identity.to_owned());
        self.shared.lock().device_policies.insert(key, policy);
    }

    /// Adds a deployment of the artifact file at `artifact_path`, named
    /// `artifact_name`, for the given device types; returns its id. The
    /// file is read at download time.
    pub fn add_deployment(
        &self,
        artifact_path: impl AsRef<Path>,
        artifact_name: &str,
        device_types: &[&str],
    ) -> String {
        self.shared
            .add_deployment(artifact_path.as_ref(), artifact_name, device_types)
    }

    /// Marks a deployment to be handed out even when the device already
    /// runs `artifact_name` ("force installation").
    pub fn force_install(&self, deployment_id: &str) {
        if let Some(d) = self.shared.lock().deployment_mut(deployment_id) {
            d.force = true;
        }
    }

    /// Aborts a deployment: status reports get 409 from now on and `next`
    /// no longer returns it.
    pub fn abort(&self, deployment_id: &str) {
        if let Some(d) = self.shared.lock().deployment_mut(deployment_id) {
            d.state = DeploymentState::Aborted;
        }
    }

    /// Sets (or, `None`, removes) the deployment's Update Control Map, as
    /// the Enterprise server's API does: the v2 `next` answer carries it and
    /// `GET .../{id}/update_control_map` returns it.
    ///
    /// # Panics
    /// `map` is not JSON (a test error).
    pub fn set_control_map(&self, deployment_id: &str, map: Option<&str>) {
        let map = map.map(|text| {
            serde_json::from_str::<Value>(text).expect("set_control_map: the map is not JSON")
        });
        if let Some(d) = self.shared.lock().deployment_mut(deployment_id) {
            d.control_map = map;
        }
    }

    /// Server-side state of a deployment.
    pub fn deployment_state(&self, deployment_id: &str) -> Option<DeploymentState> {
        self.shared
            .lock()
            .deployment_mut(deployment_id)
            .map(|d| d.state.clone())
    }

    /// The artifact link of a deployment (as put in `source.uri`), on the
    /// HTTP or the HTTPS listener.
    pub fn artifact_url(&self, deployment_id: &str, https: bool) -> Option<String> {
        let base = if https { self.https_url() } else { self.url() };
        self.shared
            .lock()
            .deployment_mut(deployment_id)
            .map(|d| server::artifact_uri(&base, &d.artifact_id))
    }

    /// Queues a fault for the next matching request(s). Faults are tried
    /// in the order queued; the first match applies.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Number of queued faults not used up yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Expires every token issued so far (their next use gets 401).
    pub fn expire_tokens(&self) {
        for t in self.shared.lock().tokens.values_mut() {
            t.expired = true;
        }
    }

    /// Tokens currently valid.
    pub fn valid_tokens(&self) -> Vec<String> {
        self.shared
            .lock()
            .tokens
            .iter()
            .filter(|(_, t)| !t.expired)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every authentication request, in order.
    pub fn auth_requests(&self) -> Vec<AuthRecord> {
        self.shared.lock().auths.clone()
    }

    /// Every well-formed status report of a deployment, in order, with its
    /// substate (including reports answered 409 after an abort).
    pub fn statuses(&self, deployment_id: &str) -> Vec<(String, Option<String>)> {
        self.shared
            .lock()
            .deployment_mut(deployment_id)
            .map(|d| d.statuses.clone())
            .unwrap_or_default()
    }

    /// Every log entry uploaded for a deployment (all uploads, in order).
    pub fn logs(&self, deployment_id: &str) -> Vec<LogEntry> {
        self.shared
            .lock()
            .deployment_mut(deployment_id)
            .map(|d| d.logs.clone())
            .unwrap_or_default()
    }

    /// Inventory attributes of the device that uploaded last (PUT replaces
    /// the set, PATCH upserts).
    pub fn inventory(&self) -> BTreeMap<String, Value> {
        let st = self.shared.lock();
        st.last_inventory_device
            .as_ref()
            .and_then(|d| st.inventory.get(d))
            .cloned()
            .unwrap_or_default()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every conformance violation recorded so far.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.lock().violations.clone()
    }

    /// Panics, listing them, if any violation was recorded.
    #[track_caller]
    pub fn assert_conformant(&self) {
        let v = self.violations();
        if !v.is_empty() {
            let list: Vec<String> = v.iter().map(|v| format!("  {v}")).collect();
            panic!(
                "{} request(s) violate the Mender device API specs:\n{}",
                v.len(),
                list.join("\n")
            );
        }
    }

    /// Polls until `pred` holds or `timeout` passes; returns whether it held.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&Self) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.join_connections();
    }
}
