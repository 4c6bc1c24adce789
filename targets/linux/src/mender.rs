//! The Mender device API over the managed mode's HTTP client: the concrete
//! [`ServerApi`] the daemon runs against.
//!
//! | call | request | success | notes |
//! |---|---|---|---|
//! | authenticate | `POST /api/devices/v1/authentication/auth_requests` | 200, body = JWT | body signed (`X-MEN-Signature`); each of `Servers` in turn; 401 = pending/rejected |
//! | inventory | `PUT /api/devices/v1/inventory/device/attributes` | 200 | `PATCH` when `PUT` answers 405 |
//! | next | `POST /api/devices/v2/deployments/device/deployments/next` | 200 / 204 | on 404 (OSS server) `GET v1 ...next?artifact_name=&device_type=` from then on |
//! | status | `PUT .../deployments/{id}/status` | 204 | 409 = aborted |
//! | log | `PUT .../deployments/{id}/log` | 204 | failures only |
//! | download | `GET <presigned uri>` (no JWT) | 200, then 206 on resume | resumes by `Range` with the reference backoff |
//!
//! Every authenticated call re-authenticates once on 401 and is retried,
//! as the reference's `ReauthorizingClient` does.

use crate::daemon::{ApiError, Deployment, ServerApi};
use otalite::agent::DeploymentStatus;
use otalite::protocol::deployments::{
    write_log, write_next_query, write_next_request, write_status, DeploymentInstructions,
    LogMessage,
};
use otalite::protocol::keyvalue::Attributes;
use otalite::protocol::WriteError;
use otalite_host::http::{Backoff, Download, HttpClient, HttpConfig, Response};
use otalite_host::identity::{run_identity, run_inventory};
use otalite_host::keys::DeviceKey;
use std::path::PathBuf;
use std::time::Duration;

/// Identity and inventory scripts may run this long.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes with a growing buffer until the body fits.
fn write_grown(
    mut write: impl FnMut(&mut [u8]) -> Result<usize, WriteError>,
) -> Result<Vec<u8>, ApiError> {
    let mut buffer = vec![0u8; 4096];
    loop {
        match write(&mut buffer) {
            Ok(len) => {
                buffer.truncate(len);
                return Ok(buffer);
            }
            Err(WriteError::BufferTooSmall { required })
                if required > buffer.len() && required <= 1 << 20 =>
            {
                buffer.resize(required, 0);
            }
            Err(error) => {
                return Err(ApiError::Transient(format!(
                    "cannot build the request: {error}"
                )))
            }
        }
    }
}

/// The Mender server client.
pub struct MenderServer {
    client: HttpClient,
    servers: Vec<String>,
    tenant_token: String,
    key: DeviceKey,
    share_dir: PathBuf,
    /// The JWT and the server that issued it.
    session: Option<(String, String)>,
    /// `Some(false)` once the v2 `next` endpoint answered 404.
    next_v2: Option<bool>,
    download_backoff: Backoff,
}

impl MenderServer {
    /// A client for the configured server(s).
    ///
    /// # Errors
    /// No server configured, or the TLS configuration cannot be built.
    pub fn new(
        config: &otalite::config::MenderConfig,
        key: DeviceKey,
        share_dir: PathBuf,
        download_backoff: Backoff,
    ) -> Result<Self, String> {
        let mut servers: Vec<String> = config
            .servers
            .iter()
            .flatten()
            .filter_map(|entry| entry.server_url.as_deref())
            .chain(config.server_url.as_deref())
            .filter(|url| !url.trim().is_empty())
            .map(normalize_url)
            .collect();
        servers.dedup();
        if servers.is_empty() {
            return Err("no server configured: set ServerURL (or Servers) in mender.conf".into());
        }
        let mut http = HttpConfig::from_mender(config);
        if let Some(timeout) = test_io_timeout() {
            http.io_timeout = timeout;
        }
        let client = HttpClient::new(http).map_err(|e| format!("cannot set up HTTPS: {e}"))?;
        Ok(Self {
            client,
            servers,
            tenant_token: config
                .tenant_token
                .as_deref()
                .unwrap_or("")
                .trim()
                .to_string(),
            key,
            share_dir,
            session: None,
            next_v2: None,
            download_backoff,
        })
    }

    fn authed(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ApiError> {
        for attempt in 0..2 {
            if self.session.is_none() {
                self.authenticate()?;
            }
            let Some((token, server)) = self.session.clone() else {
                return Err(ApiError::Unauthorized);
            };
            let bearer = format!("Bearer {token}");
            let mut headers = vec![("Authorization", bearer.as_str())];
            if body.is_some() {
                headers.push(("Content-Type", "application/json"));
            }
            let response = self
                .client
                .request(method, &format!("{server}{path}"), &headers, body)
                .map_err(|e| ApiError::Transient(e.to_string()));
            match response {
                Ok(response) if response.status == 401 && attempt == 0 => {
                    log::info!("the server answered 401: authenticating again");
                    self.session = None;
                }
                Ok(response) => return Ok(response),
                Err(error) if attempt == 0 => {
                    // The reference re-authenticates on transport errors too.
                    log::debug!("{path}: {error}; retrying after re-authentication");
                    self.session = None;
                }
                Err(error) => return Err(error),
            }
        }
        Err(ApiError::Unauthorized)
    }
}

/// Test knob: `OTALITE_TEST_IO_TIMEOUT_MS` replaces the 60 s timeout of
/// every single read and write on a server connection, so tests of stalled
/// bodies and requests that are never answered finish in seconds.
fn test_io_timeout() -> Option<Duration> {
    std::env::var("OTALITE_TEST_IO_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    }
}

fn unexpected(what: &str, response: &Response) -> ApiError {
    let text = String::from_utf8_lossy(&response.body);
    ApiError::Transient(format!(
        "{what}: the server answered {} {}",
        response.status,
        text.trim()
    ))
}

impl ServerApi for MenderServer {
    fn authenticate(&mut self) -> Result<(), ApiError> {
        let identity = run_identity(&self.share_dir, SCRIPT_TIMEOUT)
            .map_err(|e| ApiError::Transient(format!("device identity: {e}")))?;
        let texts = identity.texts();
        let attributes = Attributes::new(&texts);
        let public_key = self.key.public_key_pem().to_string();
        let tenant = self.tenant_token.clone();
        let body = write_grown(|out| {
            otalite::protocol::auth::write_auth_request(&attributes, &public_key, &tenant, out)
        })?;
        let signature = self
            .key
            .signature_header(&body)
            .map_err(|e| ApiError::Transient(format!("cannot sign the auth request: {e}")))?;
        let bearer = format!("Bearer {tenant}");
        let mut last = ApiError::Unauthorized;
        for server in self.servers.clone() {
            let url = format!("{server}/api/devices/v1/authentication/auth_requests");
            let headers = [
                ("Content-Type", "application/json"),
                ("X-MEN-Signature", signature.as_str()),
                ("Authorization", bearer.as_str()),
            ];
            match self.client.request("POST", &url, &headers, Some(&body)) {
                Ok(response) if response.status == 200 => {
                    let token = String::from_utf8_lossy(&response.body).trim().to_string();
                    if token.is_empty() {
                        last = ApiError::Transient(format!("{server} returned an empty token"));
                        continue;
                    }
                    log::info!("authenticated with {server}");
                    self.session = Some((token, server));
                    return Ok(());
                }
                Ok(response) if response.status == 401 => {
                    log::info!("{server}: the device is not accepted yet (pending or rejected)");
                    last = ApiError::Unauthorized;
                }
                Ok(response) => last = unexpected("authentication", &response),
                Err(error) => last = ApiError::Transient(format!("{server}: {error}")),
            }
        }
        Err(last)
    }

    fn send_inventory(&mut self, artifact_name: &str, device_type: &str) -> Result<(), ApiError> {
        let scripts = run_inventory(&self.share_dir, SCRIPT_TIMEOUT);
        let texts = scripts.texts();
        let attributes = Attributes::new(&texts);
        let base = otalite::protocol::inventory::InventoryBase {
            device_type,
            artifact_name,
            client_version: env!("CARGO_PKG_VERSION"),
        };
        let body = write_grown(|out| {
            otalite::protocol::inventory::write_inventory(&base, &attributes, out)
        })?;
        let path = "/api/devices/v1/inventory/device/attributes";
        let mut response = self.authed("PUT", path, Some(&body))?;
        if response.status == 405 {
            response = self.authed("PATCH", path, Some(&body))?;
        }
        match response.status {
            200 | 204 => Ok(()),
            _ => Err(unexpected("inventory", &response)),
        }
    }

    fn check_update(
        &mut self,
        provides: &otalite::device::Provides,
        device_type: &str,
    ) -> Result<Option<Deployment>, ApiError> {
        let mut response = None;
        if self.next_v2 != Some(false) {
            let body = write_grown(|out| write_next_request(provides, device_type, false, out))?;
            let answer = self.authed(
                "POST",
                "/api/devices/v2/deployments/device/deployments/next",
                Some(&body),
            )?;
            if answer.status == 404 {
                log::debug!("no v2 update check on this server; using v1");
                self.next_v2 = Some(false);
            } else {
                self.next_v2 = Some(true);
                response = Some(answer);
            }
        }
        let response = match response {
            Some(response) => response,
            None => {
                let query =
                    write_grown(|out| write_next_query(&provides.artifact_name, device_type, out))?;
                let query = String::from_utf8_lossy(&query).into_owned();
                self.authed(
                    "GET",
                    &format!("/api/devices/v1/deployments/device/deployments/next?{query}"),
                    None,
                )?
            }
        };
        match response.status {
            204 => Ok(None),
            200 => {
                let instructions = DeploymentInstructions::parse(&response.body).map_err(|e| {
                    ApiError::Transient(format!("invalid deployment instructions: {e}"))
                })?;
                Ok(Some(Deployment {
                    id: instructions.id.to_string(),
                    artifact_name: instructions.artifact_name.to_string(),
                    uri: instructions.uri.to_string(),
                    device_types: instructions
                        .device_types_compatible
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                }))
            }
            401 => Err(ApiError::Unauthorized),
            _ => Err(unexpected("update check", &response)),
        }
    }

    fn report(
        &mut self,
        id: &str,
        status: DeploymentStatus,
        substate: Option<&str>,
    ) -> Result<(), ApiError> {
        let body = write_grown(|out| write_status(status, substate.unwrap_or(""), out))?;
        let response = self.authed(
            "PUT",
            &format!("/api/devices/v1/deployments/device/deployments/{id}/status"),
            Some(&body),
        )?;
        match response.status {
            200 | 204 => Ok(()),
            409 => Err(ApiError::Aborted),
            _ => Err(unexpected("status report", &response)),
        }
    }

    fn upload_log(&mut self, id: &str, lines: &[String]) -> Result<(), ApiError> {
        let messages: Vec<LogMessage<'_>> = lines
            .iter()
            .filter_map(|line| {
                let (timestamp, rest) = line.split_once(' ')?;
                let (level, message) = rest.split_once(' ')?;
                (!message.is_empty()).then_some(LogMessage {
                    level,
                    message,
                    timestamp,
                })
            })
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let body = write_grown(|out| write_log(&messages, out).map(|written| written.len))?;
        let response = self.authed(
            "PUT",
            &format!("/api/devices/v1/deployments/device/deployments/{id}/log"),
            Some(&body),
        )?;
        match response.status {
            200 | 204 => Ok(()),
            409 => Err(ApiError::Aborted),
            _ => Err(unexpected("log upload", &response)),
        }
    }

    fn download(&mut self, uri: &str) -> Result<Box<dyn std::io::Read>, ApiError> {
        let download = Download::start(&self.client, uri, self.download_backoff)
            .map_err(|e| ApiError::Transient(format!("download: {e}")))?;
        log::info!("downloading {} bytes", download.total());
        Ok(Box::new(download))
    }
}
