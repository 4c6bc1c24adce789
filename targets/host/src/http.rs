//! otalite's one HTTP/1.1 client, for the managed mode and for standalone
//! `install <URL>` ([`crate::source`]): `std::net::TcpStream`, rustls (ring)
//! for `https://`, the sans-IO framing of [`otalite::protocol::http`].
//!
//! Why not minreq: minreq builds its rustls configuration from webpki-roots
//! only, so a self-signed Mender server (`ServerCertificate`) and
//! `SkipVerify` are impossible with it.
//!
//! | what | how |
//! |---|---|
//! | trust | webpki-roots + system CA bundle + `ServerCertificate` (added, not exclusive) |
//! | `SkipVerify` | a verifier that accepts any certificate (logged as a warning) |
//! | proxy | `https_proxy` / `http_proxy` / `no_proxy`: `CONNECT` for https, absolute form for http |
//! | timeouts | connect timeout per address; no progress for [`HttpConfig::io_timeout`] (stall); API calls also end at [`HttpConfig::exchange_timeout`]; artifact downloads have no total cap |
//! | stop | [`HttpConfig::stop`] is polled every [`POLL_INTERVAL`] while waiting on the network |
//! | connections | one per request (`Connection: close`) |
//! | API bodies | capped ([`HttpConfig::max_body_len`], 1 MiB by default) |
//! | downloads | [`Download`]: resumes with `Range`, bounded attempts and backoff |

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otalite::protocol::http::{
    BodyFraming, ChunkedDecoder, ChunkedError, ChunkedStatus, HeadError, HeadStatus, RequestHead,
    RequestHeadError, ResponseHead, ResponseHeadParser,
};

mod client_key;
mod download;
mod provider;
mod tls;

pub use download::{Backoff, Download, Resumed, SaveError};

/// The rustls crypto provider the client uses (RustCrypto, no ring; the
/// module `provider` lists its suites, groups and signature algorithms).
/// Public for the handshake benchmark (`cargo xtask bench tls`).
#[must_use]
pub fn crypto_provider() -> rustls::crypto::CryptoProvider {
    provider::provider()
}

/// Default body cap for API calls (the server's own request limit).
pub const DEFAULT_MAX_BODY_LEN: usize = 1024 * 1024;
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default stall timeout: no byte received (or sent) for this long ends
/// the exchange (a slow but steady transfer never hits it).
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit of one whole API exchange ([`HttpClient::request`]:
/// connect, TLS, request, response head and body). Artifact downloads
/// have none, only the stall timeout.
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often a blocked connect, read or write wakes up to check
/// [`HttpConfig::stop`] and the deadlines.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Redirects followed by downloads (presigned URLs may redirect).
pub const MAX_REDIRECTS: usize = 10;
/// Size of the receive buffer of one connection.
const RECEIVE_BUFFER_LEN: usize = 16 * 1024;

/// Everything that can go wrong with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL is not `http[s]://host[:port][/path]`.
    InvalidUrl(String),
    /// The proxy URL is unusable (only `http://host:port` proxies).
    InvalidProxy(String),
    /// Name resolution or TCP connection failed.
    Connect {
        /// `host:port` tried.
        address: String,
        /// The last error.
        source: io::Error,
    },
    /// No progress (connect, TLS, read or write) for
    /// [`HttpConfig::io_timeout`].
    Timeout,
    /// The API exchange took longer than [`HttpConfig::exchange_timeout`]
    /// (e.g. a server trickling its answer).
    Deadline {
        /// The limit.
        limit: Duration,
    },
    /// [`HttpConfig::stop`] was raised (the daemon is stopping).
    Stopped,
    /// The server certificate was rejected.
    Certificate(String),
    /// Other TLS failure.
    Tls(String),
    /// The trust store could not be built (unreadable `ServerCertificate`).
    TrustStore(String),
    /// The proxy refused the `CONNECT` tunnel.
    Proxy(String),
    /// Other I/O error (connection reset, ...).
    Io(io::Error),
    /// The connection closed before the response or its body ended.
    UnexpectedEof,
    /// The response head is malformed.
    Head(HeadError),
    /// The chunked body is malformed.
    Chunked(ChunkedError),
    /// The request head could not be written (control characters in a field).
    Request(RequestHeadError),
    /// The response body is longer than [`HttpConfig::max_body_len`].
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// More than [`MAX_REDIRECTS`] redirects, or a redirect without `Location`.
    TooManyRedirects,
    /// The server answered with an unexpected status.
    Status {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// A download response had no `Content-Length`.
    UnknownLength,
    /// A resume request was answered without a usable `206` and
    /// `Content-Range` (retried).
    BadResume(String),
    /// The `Content-Range` total differs from the original length: the file
    /// changed on the server (not retried).
    LengthChanged {
        /// Length of the first response.
        expected: u64,
        /// Total in `Content-Range`.
        found: u64,
    },
    /// The download gave up after `attempts` resume attempts.
    ResumeFailed {
        /// Resume attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Self>,
    },
}

/// A duration printed as seconds with up to three decimals and no
/// trailing zeros (`1.2`, `30`), from integers: no float printer in the
/// binary for one message.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.subsec_millis();
        match (millis % 10, millis % 100) {
            _ if millis == 0 => write!(f, "{}", self.0.as_secs()),
            (_, 0) => write!(f, "{}.{}", self.0.as_secs(), millis / 100),
            (0, _) => write!(f, "{}.{:02}", self.0.as_secs(), millis / 10),
            _ => write!(f, "{}.{millis:03}", self.0.as_secs()),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(url) => write!(f, "invalid URL {url:?}"),
            Self::InvalidProxy(url) => write!(f, "unusable proxy {url:?} (only http://host:port)"),
            Self::Connect { address, source } => write!(f, "cannot connect to {address}: {source}"),
            Self::Timeout => f.write_str("timed out (no data from the server)"),
            Self::Deadline { limit } => write!(
                f,
                "the server took longer than {} s to answer (limit of one API exchange)",
                Seconds(*limit)
            ),
            Self::Stopped => f.write_str("stopped: otalite is shutting down"),
            Self::Certificate(text) => write!(
                f,
                "server certificate rejected: {text} (set ServerCertificate to the server's \
                 certificate or CA, or SkipVerify for testing)"
            ),
            Self::Tls(text) => write!(f, "TLS error: {text}"),
            Self::TrustStore(text) => write!(f, "cannot load trusted certificates: {text}"),
            Self::Proxy(text) => write!(f, "proxy refused the tunnel: {text}"),
            Self::Io(error) => write!(f, "{error}"),
            Self::UnexpectedEof => f.write_str("connection closed before the response ended"),
            Self::Head(error) => write!(f, "bad response: {error}"),
            Self::Chunked(error) => write!(f, "bad response body: {error}"),
            Self::Request(error) => write!(f, "cannot write request: {error}"),
            Self::BodyTooLarge { limit } => {
                write!(f, "response body larger than {limit} bytes (the limit)")
            }
            Self::TooManyRedirects => f.write_str("too many redirects"),
            Self::Status { status, reason } => write!(f, "the server answered {status} {reason}"),
            Self::UnknownLength => f.write_str("download response without Content-Length"),
            Self::BadResume(text) => write!(f, "cannot resume the download: {text}"),
            Self::LengthChanged { expected, found } => write!(
                f,
                "the file changed on the server: {found} bytes instead of {expected}"
            ),
            Self::ResumeFailed { attempts, last } => {
                write!(
                    f,
                    "download failed after {attempts} resume attempts: {last}"
                )
            }
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Connect { source, .. } => Some(source),
            Self::Io(error) => Some(error),
            Self::ResumeFailed { last, .. } => Some(last.as_ref()),
            _ => None,
        }
    }
}

impl HttpError {
    /// The closest `std::io::ErrorKind`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Self::Timeout | Self::Deadline { .. } => io::ErrorKind::TimedOut,
            Self::Stopped => io::ErrorKind::Interrupted,
            Self::Connect { source, .. } => source.kind(),
            Self::Io(error) => error.kind(),
            Self::UnexpectedEof => io::ErrorKind::UnexpectedEof,
            Self::ResumeFailed { last, .. } => last.io_kind(),
            Self::InvalidUrl(_) | Self::InvalidProxy(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        }
    }

    /// Wraps the error into an `io::Error` (recover it with `downcast`).
    pub fn into_io(self) -> io::Error {
        io::Error::new(self.io_kind(), self)
    }

    /// Turns an I/O error of the connection into the most telling variant.
    fn from_io(error: io::Error) -> Self {
        if let Some(tls_error) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return match tls_error {
                rustls::Error::InvalidCertificate(reason) => {
                    Self::Certificate(format!("{reason:?}"))
                }
                other => Self::Tls(other.to_string()),
            };
        }
        match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Self::Timeout,
            io::ErrorKind::UnexpectedEof => Self::UnexpectedEof,
            _ => Self::Io(error),
        }
    }
}

impl From<HeadError> for HttpError {
    fn from(error: HeadError) -> Self {
        Self::Head(error)
    }
}

impl From<ChunkedError> for HttpError {
    fn from(error: ChunkedError) -> Self {
        Self::Chunked(error)
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP, default port 80.
    Http,
    /// TLS, default port 443.
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// A parsed `http[s]://host[:port][/path][?query]` URL (no user info; the
/// fragment is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Scheme.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (the scheme's default if absent).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute URL.
    ///
    /// # Errors
    /// [`HttpError::InvalidUrl`].
    pub fn parse(text: &str) -> Result<Self, HttpError> {
        let invalid = || HttpError::InvalidUrl(text.to_string());
        let (scheme, rest) = text.split_once("://").ok_or_else(invalid)?;
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(invalid());
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(invalid());
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(invalid)?),
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.bytes().any(|byte| !byte.is_ascii_graphic()) {
            return Err(invalid());
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(port) => port.parse().map_err(|_| invalid())?,
        };
        let path_and_query = if path.is_empty() {
            "/".to_string()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if path_and_query.bytes().any(|byte| !byte.is_ascii_graphic()) {
            return Err(invalid());
        }
        Ok(Self {
            scheme,
            host: host.to_string(),
            port,
            path_and_query,
        })
    }

    /// `host[:port]` as sent in `Host` (port omitted when it is the default).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `host:port`, always with the port (for `CONNECT`).
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Resolves a `Location` value against this URL (absolute URL,
    /// scheme-relative `//host/p`, absolute path `/p` or relative path).
    ///
    /// # Errors
    /// [`HttpError::InvalidUrl`].
    pub fn join(&self, location: &str) -> Result<Self, HttpError> {
        if location.contains("://") {
            Self::parse(location)
        } else if location.starts_with("//") {
            Self::parse(&format!("{}:{location}", self.scheme.as_str()))
        } else if location.starts_with('/') {
            Self::parse(&format!(
                "{}://{}{location}",
                self.scheme.as_str(),
                self.authority()
            ))
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            let directory = &path[..path.rfind('/').map_or(0, |slash| slash + 1)];
            Self::parse(&format!(
                "{}://{}{directory}{location}",
                self.scheme.as_str(),
                self.authority()
            ))
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query
        )
    }
}

/// Proxies to use, as in the `http_proxy`, `https_proxy` and `no_proxy`
/// environment variables.
///
/// Unlike Go's `ProxyFromEnvironment`, loopback hosts are proxied too unless
/// `no_proxy` lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy for `http://` URLs.
    pub http: Option<String>,
    /// Proxy for `https://` URLs (through `CONNECT`).
    pub https: Option<String>,
    /// Host names (and their subdomains) reached directly; `*` = all.
    pub no_proxy: Vec<String>,
}

impl ProxySettings {
    /// Reads `https_proxy`, `http_proxy`, `no_proxy` (lower case first, then
    /// upper case); empty values count as unset.
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| std::env::var(name.to_ascii_uppercase()).ok())
                .filter(|value| !value.trim().is_empty())
        };
        Self {
            http: read("http_proxy"),
            https: read("https_proxy"),
            no_proxy: read("no_proxy")
                .map(|list| {
                    list.split(',')
                        .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
                        .filter(|entry| !entry.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn proxy_for(&self, url: &Url) -> Result<Option<Url>, HttpError> {
        let proxy = match url.scheme {
            Scheme::Http => self.http.as_deref(),
            Scheme::Https => self.https.as_deref(),
        };
        let Some(proxy) = proxy else {
            return Ok(None);
        };
        let host = url.host.to_ascii_lowercase();
        let bypass = self.no_proxy.iter().any(|entry| {
            let entry = entry.split(':').next().unwrap_or_default();
            entry == "*"
                || host == entry
                || host
                    .strip_suffix(entry)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        });
        if bypass {
            return Ok(None);
        }
        let proxy_url = if proxy.contains("://") {
            proxy.to_string()
        } else {
            format!("http://{proxy}")
        };
        match Url::parse(&proxy_url) {
            Ok(parsed) if parsed.scheme == Scheme::Http => Ok(Some(parsed)),
            _ => Err(HttpError::InvalidProxy(proxy.to_string())),
        }
    }
}

/// What [`HttpClient`] needs to know.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// `ServerCertificate`: PEM file of certificates trusted in addition to
    /// the system store and webpki-roots.
    pub server_certificate: Option<PathBuf>,
    /// `SkipVerify`: accept any server certificate.
    pub skip_verify: bool,
    /// Proxies ([`ProxySettings::from_env`] by default).
    pub proxy: ProxySettings,
    /// Timeout of each TCP connect.
    pub connect_timeout: Duration,
    /// Stall timeout: the exchange fails when no byte moves for this long.
    pub io_timeout: Duration,
    /// Limit of one whole [`HttpClient::request`] (not of downloads).
    pub exchange_timeout: Duration,
    /// Raised to abandon every exchange within [`POLL_INTERVAL`] (SIGTERM).
    pub stop: Option<Arc<AtomicBool>>,
    /// Cap of the body [`HttpClient::request`] accepts.
    pub max_body_len: usize,
    /// Load the system CA bundle (`SSL_CERT_FILE` or the usual paths).
    pub system_roots: bool,
    /// Mutual TLS: the client certificate and key sent when a server asks
    /// (`HttpsClient.Certificate`/`Key`, AWS IoT's broker).
    pub client_auth: Option<ClientAuth>,
}

/// A client certificate (PEM, leaf first) and its private key (PEM:
/// PKCS#8, SEC1 or PKCS#1; ECDSA P-256, RSA or Ed25519).
#[derive(Clone, Debug)]
pub struct ClientAuth {
    /// The certificate chain file.
    pub certificate: PathBuf,
    /// The key file.
    pub key: PathBuf,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            server_certificate: None,
            skip_verify: false,
            proxy: ProxySettings::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            exchange_timeout: DEFAULT_EXCHANGE_TIMEOUT,
            stop: None,
            max_body_len: DEFAULT_MAX_BODY_LEN,
            system_roots: true,
            client_auth: None,
        }
    }
}

impl HttpConfig {
    /// Defaults plus `ServerCertificate` and `SkipVerify` from `mender.conf`
    /// and the proxy from the environment.
    pub fn from_mender(config: &otalite::config::MenderConfig) -> Self {
        Self {
            server_certificate: config
                .server_certificate
                .as_ref()
                .filter(|path| !path.is_empty())
                .map(|path| PathBuf::from(path.as_str())),
            skip_verify: config.skip_verify.unwrap_or(false),
            proxy: ProxySettings::from_env(),
            // `HttpsClient`: both files, as the reference (its key alone
            // only signs the authentication requests).
            client_auth: config.https_client.as_ref().and_then(|client| {
                match (client.certificate.as_deref(), client.key.as_deref()) {
                    (Some(certificate), Some(key))
                        if !certificate.is_empty() && !key.is_empty() =>
                    {
                        Some(ClientAuth {
                            certificate: PathBuf::from(certificate),
                            key: PathBuf::from(key),
                        })
                    }
                    _ => None,
                }
            }),
            ..Self::default()
        }
    }
}

/// A response with its whole (capped) body.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The parsed head (reason, `Content-Type`, `X-MEN-RequestID`, ...).
    pub head: ResponseHead,
    /// The body.
    pub body: Vec<u8>,
}

/// HTTP/1.1 client: cheap to clone.
///
/// The TLS configuration (the trust store: webpki-roots, the system bundle
/// parsed into memory, `ServerCertificate`) is built for each HTTPS
/// connection and dropped with it, not kept between polls: about 90 KiB
/// of an idle daemon's heap for a few milliseconds of CPU per connection
/// (README, Measured: idle RSS). Connections are one per request anyway,
/// so no connection or TLS buffer outlives its exchange; what is lost is
/// TLS session resumption between exchanges.
#[derive(Clone)]
pub struct HttpClient {
    config: HttpConfig,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client and its trust store.
    ///
    /// # Errors
    /// [`HttpError::TrustStore`] if `server_certificate` cannot be read or
    /// holds no certificate.
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        // Built once here so that a bad `ServerCertificate` stops the
        // start-up with its message, then rebuilt per connection.
        drop(tls::client_config(&config)?);
        if config.skip_verify {
            log::warn!("SkipVerify is set: server certificates are NOT verified");
        }
        Ok(Self { config })
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Sends one request and reads the whole response. `Content-Length` is
    /// sent when there is a body (and for `POST`/`PUT` without one).
    /// Redirects are not followed.
    ///
    /// # Errors
    /// Connection, TLS, timeout, framing errors, or a body larger than
    /// [`HttpConfig::max_body_len`]. Any status is a success here.
    pub fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, HttpError> {
        let url = Url::parse(url)?;
        let watch = self.watch(Some(self.config.exchange_timeout));
        let (head, mut reader) = self.open(method, &url, headers, body, &watch)?;
        let limit = self.config.max_body_len;
        if head
            .content_length
            .is_some_and(|length| length > limit as u64)
        {
            return Err(HttpError::BodyTooLarge { limit });
        }
        let mut body = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let count = reader.read(&mut chunk)?;
            if count == 0 {
                break;
            }
            if body.len() + count > limit {
                return Err(HttpError::BodyTooLarge { limit });
            }
            body.extend_from_slice(chunk.get(..count).unwrap_or_default());
        }
        Ok(Response {
            status: head.status,
            head,
            body,
        })
    }

    /// Connects to `host:port` for another protocol (no proxy): TLS when
    /// `tls`, offering the ALPN `alpn` names (AWS IoT on port 443 wants
    /// `x-amzn-mqtt-ca`), with this client's trust store and client
    /// certificate.
    ///
    /// # Errors
    /// Connection, TLS (certificate, handshake) and timeout errors.
    pub fn open_stream(
        &self,
        host: &str,
        port: u16,
        tls: bool,
        alpn: &[&[u8]],
    ) -> Result<RawStream, HttpError> {
        let watch = self.watch(Some(self.config.exchange_timeout));
        let tcp = self.connect_tcp(host, port, &watch)?;
        if !tls {
            return Ok(RawStream(Stream::Plain(tcp)));
        }
        let mut config = tls::client_config(&self.config)?;
        config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
        let stream = tls::handshake(&Arc::new(config), host, tcp, &watch)?;
        Ok(RawStream(Stream::Tls(Box::new(stream))))
    }

    /// `GET` following up to [`MAX_REDIRECTS`] redirects.
    fn get_following_redirects(
        &self,
        url: &Url,
        headers: &[(&str, &str)],
    ) -> Result<(ResponseHead, Body), HttpError> {
        let mut current = url.clone();
        let watch = self.watch(None);
        for _ in 0..=MAX_REDIRECTS {
            let (head, body) = self.open("GET", &current, headers, None, &watch)?;
            if !head.is_redirect() {
                return Ok((head, body));
            }
            if head.location.is_empty() {
                return Err(HttpError::TooManyRedirects);
            }
            log::debug!("{} redirects to {}", current, head.location.as_str());
            current = current.join(head.location.as_str())?;
        }
        Err(HttpError::TooManyRedirects)
    }

    /// The stall, deadline and stop rules of one exchange.
    fn watch(&self, limit: Option<Duration>) -> Watch {
        Watch {
            stall: self.config.io_timeout,
            deadline: limit.map(|limit| (Instant::now() + limit, limit)),
            stop: self.config.stop.clone(),
        }
    }

    /// Connects, sends the request and parses the response head.
    fn open(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        watch: &Watch,
    ) -> Result<(ResponseHead, Body), HttpError> {
        let proxy = self.config.proxy.proxy_for(url)?;
        let mut target = url.path_and_query.clone();
        let tcp = match (&proxy, url.scheme) {
            (None, _) => self.connect_tcp(&url.host, url.port, watch)?,
            (Some(proxy), Scheme::Http) => {
                // Plain HTTP through a proxy: absolute form, same connection.
                target = url.to_string();
                self.connect_tcp(&proxy.host, proxy.port, watch)?
            }
            (Some(proxy), Scheme::Https) => self.connect_tunnel(proxy, url, watch)?,
        };
        let stream = match url.scheme {
            Scheme::Http => Stream::Plain(tcp),
            Scheme::Https => {
                let config = Arc::new(tls::client_config(&self.config)?);
                Stream::Tls(Box::new(tls::handshake(&config, &url.host, tcp, watch)?))
            }
        };
        let mut connection = Connection::new(stream, watch.clone());

        let mut all_headers: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 2);
        all_headers.push(("User-Agent", concat!("otalite/", env!("CARGO_PKG_VERSION"))));
        all_headers.push(("Connection", "close"));
        all_headers.extend_from_slice(headers);
        let content_length = match (body, method) {
            (Some(body), _) => Some(body.len() as u64),
            (None, "POST" | "PUT" | "PATCH") => Some(0),
            (None, _) => None,
        };
        let authority = url.authority();
        let request = RequestHead {
            method,
            target: &target,
            host: &authority,
            headers: &all_headers,
            content_length,
        };
        connection.send_head(&request, body.unwrap_or_default())?;
        let head = connection.read_head()?;
        let framing = head.body_framing(method == "HEAD");
        Ok((head, Body::new(connection, framing)))
    }

    /// Resolves and connects in a helper thread, so that a stop request or
    /// the exchange deadline is honoured while DNS or a SYN goes unanswered
    /// (the thread ends by itself at the resolver's and `connect_timeout`).
    fn connect_tcp(&self, host: &str, port: u16, watch: &Watch) -> Result<TcpStream, HttpError> {
        watch.check_stop_deadline()?;
        let host = host.to_string();
        let connect_timeout = self.config.connect_timeout;
        let poll = POLL_INTERVAL.min(self.config.io_timeout);
        let connect = move || -> Result<TcpStream, HttpError> {
            let address = format!("{host}:{port}");
            let addresses =
                (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|source| HttpError::Connect {
                        address: address.clone(),
                        source,
                    })?;
            let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address");
            for socket_address in addresses {
                match TcpStream::connect_timeout(&socket_address, connect_timeout) {
                    Ok(stream) => {
                        // Short socket timeouts: every blocked read or write
                        // wakes up to check the stop flag and the deadlines.
                        stream
                            .set_read_timeout(Some(poll))
                            .and_then(|()| stream.set_write_timeout(Some(poll)))
                            .and_then(|()| stream.set_nodelay(true))
                            .map_err(HttpError::Io)?;
                        return Ok(stream);
                    }
                    Err(error) => last_error = error,
                }
            }
            if matches!(
                last_error.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                return Err(HttpError::Timeout);
            }
            Err(HttpError::Connect {
                address,
                source: last_error,
            })
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("otalite-connect".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = sender.send(connect());
            });
        let Ok(_thread) = spawned else {
            // Out of threads (the closure went with the failed spawn).
            return Err(HttpError::Io(io::Error::other(
                "cannot start the connect thread",
            )));
        };
        loop {
            watch.check_stop_deadline()?;
            match receiver.recv_timeout(POLL_INTERVAL) {
                Ok(result) => return result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(HttpError::Io(io::Error::other(
                        "the connect thread ended without a result",
                    )))
                }
            }
        }
    }

    /// Opens a `CONNECT` tunnel through `proxy` to `url`'s host and port.
    fn connect_tunnel(
        &self,
        proxy: &Url,
        url: &Url,
        watch: &Watch,
    ) -> Result<TcpStream, HttpError> {
        let tcp = self.connect_tcp(&proxy.host, proxy.port, watch)?;
        let mut connection = Connection::new(Stream::Plain(tcp), watch.clone());
        let host_port = url.host_port();
        let request = RequestHead {
            method: "CONNECT",
            target: &host_port,
            host: &host_port,
            headers: &[],
            content_length: None,
        };
        connection.send_head(&request, &[])?;
        let head = connection.read_head()?;
        if !head.is_success() {
            return Err(HttpError::Proxy(format!(
                "{} {}",
                head.status,
                head.reason.as_str()
            )));
        }
        if connection.start != connection.end {
            return Err(HttpError::Proxy(
                "data after the CONNECT answer".to_string(),
            ));
        }
        match connection.stream {
            Stream::Plain(tcp) => Ok(tcp),
            Stream::Tls(_) => Err(HttpError::Proxy("unexpected TLS".to_string())),
        }
    }
}

/// The stall, deadline and stop rules of one exchange, checked whenever a
/// connect, read or write wakes up.
#[derive(Clone, Debug)]
pub(crate) struct Watch {
    /// No progress for this long: [`HttpError::Timeout`].
    stall: Duration,
    /// End of the whole exchange and its length: [`HttpError::Deadline`].
    deadline: Option<(Instant, Duration)>,
    /// Raised: [`HttpError::Stopped`].
    stop: Option<Arc<AtomicBool>>,
}

impl Watch {
    /// Fails when stopping or past the deadline.
    fn check_stop_deadline(&self) -> Result<(), HttpError> {
        if self
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
        {
            return Err(HttpError::Stopped);
        }
        match self.deadline {
            Some((at, limit)) if Instant::now() >= at => Err(HttpError::Deadline { limit }),
            _ => Ok(()),
        }
    }

    /// After a poll timeout: fails when stopping, past the deadline, or
    /// nothing moved since `progress` for the stall timeout.
    fn check(&self, progress: Instant) -> Result<(), HttpError> {
        self.check_stop_deadline()?;
        if progress.elapsed() >= self.stall {
            return Err(HttpError::Timeout);
        }
        Ok(())
    }
}

/// A socket timeout (the poll interval passed), not a failure.
fn is_poll_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) && error
        .get_ref()
        .is_none_or(|inner| !inner.is::<rustls::Error>())
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.read(buffer),
            Self::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.write(buffer),
            Self::Tls(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(stream) => stream.flush(),
            Self::Tls(stream) => stream.flush(),
        }
    }
}

/// A connected byte stream for another protocol (MQTT): TCP, with TLS
/// verified (and a client certificate offered) as the client's
/// configuration says. Reads block at most the time set with
/// [`RawStream::set_read_timeout`] (`WouldBlock`/`TimedOut` then).
pub struct RawStream(Stream);

impl RawStream {
    /// Longest a read blocks (`None`: until data or the end).
    ///
    /// # Errors
    /// The socket refuses.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match &self.0 {
            Stream::Plain(tcp) => tcp.set_read_timeout(timeout),
            Stream::Tls(tls) => tls.sock.set_read_timeout(timeout),
        }
    }

    /// Ends the connection (both directions); a TLS close-notify first.
    pub fn shutdown(&mut self) {
        if let Stream::Tls(tls) = &mut self.0 {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let _ = match &self.0 {
            Stream::Plain(tcp) => tcp.shutdown(std::net::Shutdown::Both),
            Stream::Tls(tls) => tls.sock.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for RawStream {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.0.read(buffer)
    }
}

impl Write for RawStream {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.write(buffer)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A stream with a receive buffer (bytes read past the head stay here).
struct Connection {
    stream: Stream,
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    watch: Watch,
}

impl Connection {
    fn new(stream: Stream, watch: Watch) -> Self {
        Self {
            stream,
            buffer: vec![0u8; RECEIVE_BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            watch,
        }
    }

    /// `write_all` + `flush` that survive poll timeouts.
    fn write_all(&mut self, mut data: &[u8]) -> Result<(), HttpError> {
        let mut progress = Instant::now();
        while !data.is_empty() {
            self.watch.check_stop_deadline()?;
            match self.stream.write(data) {
                Ok(0) => return Err(HttpError::Io(io::ErrorKind::WriteZero.into())),
                Ok(count) => {
                    data = data.get(count..).unwrap_or_default();
                    progress = Instant::now();
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_poll_timeout(&error) => self.watch.check(progress)?,
                Err(error) => return Err(HttpError::from_io(error)),
            }
        }
        loop {
            match self.stream.flush() {
                Ok(()) => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_poll_timeout(&error) => self.watch.check(progress)?,
                Err(error) => return Err(HttpError::from_io(error)),
            }
        }
    }

    fn send_head(&mut self, request: &RequestHead<'_>, body: &[u8]) -> Result<(), HttpError> {
        let mut head = vec![0u8; 1024];
        let len = match request.write(&mut head) {
            Ok(len) => len,
            Err(RequestHeadError::BufferTooSmall { required }) => {
                head.resize(required, 0);
                request.write(&mut head).map_err(HttpError::Request)?
            }
            Err(error) => return Err(HttpError::Request(error)),
        };
        head.truncate(len);
        // One write for small requests: fewer TLS records and packets.
        if body.len() <= 16 * 1024 {
            head.extend_from_slice(body);
            self.write_all(&head)
        } else {
            self.write_all(&head)?;
            self.write_all(body)
        }
    }

    /// Reads more bytes into an empty buffer; 0 at end of stream.
    fn fill(&mut self) -> Result<usize, HttpError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let space = self.buffer.get_mut(self.end..).unwrap_or_default();
        let count = read_stream(&mut self.stream, space, &self.watch)?;
        self.end += count;
        Ok(count)
    }

    fn buffered(&self) -> &[u8] {
        self.buffer.get(self.start..self.end).unwrap_or_default()
    }

    fn read_head(&mut self) -> Result<ResponseHead, HttpError> {
        let mut parser = ResponseHeadParser::new();
        loop {
            if self.start == self.end && self.fill()? == 0 {
                return Err(HttpError::UnexpectedEof);
            }
            match parser.push(self.buffered())? {
                HeadStatus::Done { consumed } => {
                    self.start += consumed;
                    return Ok(parser.take_head());
                }
                HeadStatus::NeedsMoreInput => self.start = self.end,
            }
        }
    }

    /// Reads buffered bytes first, then straight from the stream.
    fn read_some(&mut self, output: &mut [u8]) -> Result<usize, HttpError> {
        if self.start < self.end {
            let count = output.len().min(self.end - self.start);
            if let (Some(target), Some(source)) = (
                output.get_mut(..count),
                self.buffer.get(self.start..self.start + count),
            ) {
                target.copy_from_slice(source);
            }
            self.start += count;
            return Ok(count);
        }
        read_stream(&mut self.stream, output, &self.watch)
    }
}

/// One read that waits out poll timeouts until data comes, the stall
/// timeout or the deadline passes, or a stop is requested (checked before
/// every read, so a trickling server cannot hold off either).
fn read_stream(stream: &mut Stream, output: &mut [u8], watch: &Watch) -> Result<usize, HttpError> {
    let progress = Instant::now();
    loop {
        watch.check_stop_deadline()?;
        match stream.read(output) {
            Ok(count) => return Ok(count),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_poll_timeout(&error) => watch.check(progress)?,
            Err(error) => return Err(HttpError::from_io(error)),
        }
    }
}

enum Framing {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// A response body being read from its connection.
pub(crate) struct Body {
    connection: Connection,
    framing: Framing,
}

impl Body {
    fn new(connection: Connection, framing: BodyFraming) -> Self {
        let framing = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => Framing::Done,
            BodyFraming::Length(length) => Framing::Length(length),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new()),
            BodyFraming::UntilClose => Framing::UntilClose,
        };
        Self {
            connection,
            framing,
        }
    }

    /// Reads body bytes; 0 at the end of the body.
    fn read(&mut self, output: &mut [u8]) -> Result<usize, HttpError> {
        if output.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Done => Ok(0),
            Framing::Length(remaining) => {
                let limit = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(output.len());
                let count = self
                    .connection
                    .read_some(output.get_mut(..limit).unwrap_or_default())?;
                if count == 0 {
                    return Err(HttpError::UnexpectedEof);
                }
                *remaining -= count as u64;
                if *remaining == 0 {
                    self.framing = Framing::Done;
                }
                Ok(count)
            }
            Framing::UntilClose => {
                let count = self.connection.read_some(output)?;
                if count == 0 {
                    self.framing = Framing::Done;
                }
                Ok(count)
            }
            Framing::Chunked(decoder) => loop {
                if self.connection.start == self.connection.end && self.connection.fill()? == 0 {
                    return Err(HttpError::UnexpectedEof);
                }
                let progress = decoder.decode(self.connection.buffered(), output)?;
                self.connection.start += progress.consumed;
                if progress.status == ChunkedStatus::Done {
                    self.framing = Framing::Done;
                    return Ok(progress.produced);
                }
                if progress.produced > 0 {
                    return Ok(progress.produced);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seconds;
    use std::time::Duration;

    #[test]
    fn seconds_print_without_trailing_zeros() {
        let text = |ms| Seconds(Duration::from_millis(ms)).to_string();
        assert_eq!(text(30_000), "30");
        assert_eq!(text(1_200), "1.2");
        assert_eq!(text(1_250), "1.25");
        assert_eq!(text(1_205), "1.205");
        assert_eq!(text(5), "0.005");
    }
}
