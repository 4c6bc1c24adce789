//! The managed-mode HTTP client against small threaded servers on
//! 127.0.0.1 (plain and TLS), a CONNECT proxy, and misbehaving servers.
//! Every test is bounded in time: short timeouts, millisecond backoff.

use core::net::SocketAddr;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use otalite_host::http::{Backoff, Download, HttpClient, HttpConfig, HttpError, ProxySettings};

// ---------------------------------------------------------------------------
// Test server

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

#[derive(Clone, Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The `N` of `Range: bytes=N-`.
    fn range_start(&self) -> Option<usize> {
        self.header("range")?
            .strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse()
            .ok()
    }
}

fn read_request(stream: &mut dyn Io) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    stream.read_exact(&mut request.body).ok()?;
    Some(request)
}

type Handler = dyn Fn(usize, &Request, &mut dyn Io) + Send + Sync;

struct Server {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.address)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves each connection on its own thread; `handler(connection_index, ..)`.
fn serve(
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: impl Fn(usize, &Request, &mut dyn Io) + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<Handler> = Arc::new(handler);
    let seen = Arc::clone(&requests);
    thread::spawn(move || {
        let counter = AtomicUsize::new(0);
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            let seen = Arc::clone(&seen);
            let tls = tls.clone();
            thread::spawn(move || {
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut stream: Box<dyn Io> = match tls {
                    None => Box::new(tcp),
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        Box::new(rustls::StreamOwned::new(connection, tcp))
                    }
                };
                if let Some(request) = read_request(&mut *stream) {
                    seen.lock().unwrap().push(request.clone());
                    handler(index, &request, &mut *stream);
                    let _ = stream.flush();
                }
            });
        }
    });
    Server { address, requests }
}

/// A server that answers every request `200 OK` with `body`.
fn serve_ok(tls: Option<Arc<rustls::ServerConfig>>, body: &'static [u8]) -> Server {
    serve(tls, move |_, _, stream| {
        respond(
            stream,
            "200 OK",
            &[("Content-Length", body.len().to_string())],
            body,
        );
    })
}

fn respond(stream: &mut dyn Io, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn test_config() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(2),
        io_timeout: Duration::from_millis(300),
        system_roots: false,
        ..HttpConfig::default()
    }
}

fn fast_backoff() -> Backoff {
    // 10,10,10,20,20,20,40,40,40 ms, then give up (9 attempts).
    Backoff {
        initial: Duration::from_millis(10),
        cap: Duration::from_millis(40),
        max_attempts: 0,
    }
}

fn client(config: HttpConfig) -> HttpClient {
    HttpClient::new(config).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn unique_path(name: &str) -> std::path::PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "otalite-http-{}-{}-{name}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ))
}

/// A self-signed certificate for 127.0.0.1 and the server config using it;
/// returns the PEM path for `ServerCertificate`.
fn tls_server_config() -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let pem_path = unique_path("server.crt");
    std::fs::write(&pem_path, certified.cert.pem()).unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    (Arc::new(config), pem_path)
}

/// Serves `data` with Range support; `plan(connection, start) -> Some(n)`
/// makes that connection drop (or stall, if `stall`) after `n` body bytes.
fn file_server(
    data: Arc<Vec<u8>>,
    plan: impl Fn(usize, usize) -> Option<usize> + Send + Sync + 'static,
    stall: bool,
) -> Server {
    serve(None, move |index, request, stream| {
        let start = request.range_start().unwrap_or(0);
        let body = &data[start..];
        let mut headers = vec![("Content-Length", body.len().to_string())];
        let status = if request.range_start().is_some() {
            headers.push((
                "Content-Range",
                format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
            ));
            "206 Partial Content"
        } else {
            "200 OK"
        };
        let cut = plan(index, start).unwrap_or(body.len()).min(body.len());
        respond(stream, status, &headers, &body[..cut]);
        let _ = stream.flush();
        if stall && cut < body.len() {
            // Keep the socket open and silent.
            thread::sleep(Duration::from_secs(3));
        }
    })
}

fn read_all(download: &mut Download) -> Result<Vec<u8>, std::io::Error> {
    let mut out = Vec::new();
    let mut buffer = [0u8; 7000];
    loop {
        let count = Read::read(download, &mut buffer)?;
        if count == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buffer[..count]);
    }
}

fn http_error(error: &std::io::Error) -> &HttpError {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<HttpError>())
        .expect("an HttpError inside")
}

// ---------------------------------------------------------------------------
// Plain requests

#[test]
fn plain_get_and_put_with_json_bodies() {
    let server = serve(None, |_, request, stream| match request.method.as_str() {
        "GET" => respond(
            stream,
            "200 OK",
            &[
                ("Content-Type", "application/json".to_string()),
                ("Content-Length", "11".to_string()),
                ("X-MEN-RequestID", "req-1".to_string()),
            ],
            br#"{"id":"42"}"#,
        ),
        _ => respond(stream, "204 No Content", &[], b""),
    });
    let client = client(test_config());
    let response = client
        .request(
            "GET",
            &server.url("http", "/api/devices/v1/x?a=1"),
            &[("Authorization", "Bearer t")],
            None,
        )
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"id":"42"}"#);
    assert_eq!(response.head.content_type.as_str(), "application/json");
    assert_eq!(response.head.request_id.as_str(), "req-1");

    let body = br#"{"status":"installing"}"#;
    let response = client
        .request(
            "PUT",
            &server.url("http", "/status"),
            &[("Content-Type", "application/json")],
            Some(body),
        )
        .unwrap();
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());

    let requests = server.requests();
    assert_eq!(requests[0].target, "/api/devices/v1/x?a=1");
    assert_eq!(requests[0].header("authorization"), Some("Bearer t"));
    assert_eq!(
        requests[0].header("host"),
        Some(&*server.address.to_string())
    );
    assert_eq!(requests[1].method, "PUT");
    assert_eq!(requests[1].body, body);
    assert_eq!(requests[1].header("content-type"), Some("application/json"));
    assert_eq!(
        requests[1].header("content-length"),
        Some(&*body.len().to_string())
    );
}

#[test]
fn chunked_response() {
    let server = serve(None, |_, _, stream| {
        respond(
            stream,
            "200 OK",
            &[("Transfer-Encoding", "chunked".to_string())],
            b"4\r\n{\"a\"\r\n5;ext=1\r\n:[1,2\r\n2\r\n]}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        );
    });
    let response = client(test_config())
        .request("GET", &server.url("http", "/"), &[], None)
        .unwrap();
    assert_eq!(response.body, br#"{"a":[1,2]}"#);
}

#[test]
fn body_cap_is_enforced() {
    let server = serve(None, |_, _, stream| {
        respond(
            stream,
            "200 OK",
            &[("Content-Length", "100".to_string())],
            &[b'x'; 100],
        );
    });
    let config = HttpConfig {
        max_body_len: 50,
        ..test_config()
    };
    let error = client(config)
        .request("GET", &server.url("http", "/"), &[], None)
        .unwrap_err();
    assert!(
        matches!(error, HttpError::BodyTooLarge { limit: 50 }),
        "{error}"
    );
}

#[test]
fn server_that_never_answers_gives_a_bounded_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
            if held.len() > 50 {
                break;
            }
        }
        thread::sleep(Duration::from_secs(10));
    });
    let client = client(test_config());
    let started = Instant::now();
    let error = client
        .request("GET", &format!("http://{address}/"), &[], None)
        .unwrap_err();
    assert!(matches!(error, HttpError::Timeout), "{error}");
    let error =
        Download::start(&client, &format!("http://{address}/a"), fast_backoff()).unwrap_err();
    assert!(matches!(error, HttpError::Timeout), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// TLS

#[test]
fn https_with_server_certificate_succeeds() {
    let (tls, pem) = tls_server_config();
    let server = serve_ok(Some(tls), b"{}");
    let config = HttpConfig {
        server_certificate: Some(pem),
        ..test_config()
    };
    let response = client(config)
        .request("GET", &server.url("https", "/"), &[], None)
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"{}");
}

/// Nothing trusted (no system bundle, no `ServerCertificate`, no built-in
/// roots): the error says so and what to do, for any server.
#[cfg(not(feature = "webpki-roots"))]
#[test]
fn https_with_nothing_trusted_fails_with_a_clear_error() {
    let (tls, _pem) = tls_server_config();
    let server = serve_ok(Some(tls), b"");
    let error = client(test_config())
        .request("GET", &server.url("https", "/"), &[], None)
        .unwrap_err();
    assert!(matches!(error, HttpError::Tls(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("no trusted CA certificates"), "{text}");
    assert!(text.contains("ca-certificates"), "{text}");
    assert!(text.contains("ServerCertificate"), "{text}");
    // Plain HTTP is unaffected.
    let server = serve_ok(None, b"");
    let response = client(test_config())
        .request("GET", &server.url("http", "/"), &[], None)
        .unwrap();
    assert_eq!(response.status, 200);
}

/// With the system bundle (or the built-in roots), a certificate no root
/// signed is an unknown issuer.
#[test]
fn https_without_server_certificate_fails_with_a_certificate_error() {
    let (tls, _pem) = tls_server_config();
    let server = serve_ok(Some(tls), b"");
    let config = HttpConfig {
        system_roots: true,
        ..test_config()
    };
    let error = client(config)
        .request("GET", &server.url("https", "/"), &[], None)
        .unwrap_err();
    assert!(matches!(error, HttpError::Certificate(_)), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[test]
fn https_with_skip_verify_succeeds() {
    let (tls, _pem) = tls_server_config();
    let server = serve_ok(Some(tls), b"ok");
    let config = HttpConfig {
        skip_verify: true,
        ..test_config()
    };
    let response = client(config)
        .request("GET", &server.url("https", "/"), &[], None)
        .unwrap();
    assert_eq!(response.body, b"ok");
}

/// A server key and certificate made "the usual way" by the openssl CLI
/// (`req -x509`, which sets `CA:TRUE`); returns (cert PEM path, config).
fn openssl_server(
    key_args: &[&str],
    names: &str,
) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    openssl_server_with(key_args, names, &[])
}

/// [`openssl_server`] with more `-addext` extensions.
fn openssl_server_with(
    key_args: &[&str],
    names: &str,
    extensions: &[&str],
) -> (std::path::PathBuf, Arc<rustls::ServerConfig>) {
    use rustls::pki_types::pem::PemObject;
    let (cert, key) = (unique_path("openssl.crt"), unique_path("openssl.key"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
        ])
        .args(key_args)
        .args(["-addext", &format!("subjectAltName={names}")])
        .args(
            extensions
                .iter()
                .flat_map(|extension| ["-addext", extension]),
        )
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "openssl req -x509 no longer sets CA:TRUE: the test proves nothing"
    );
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    (cert, Arc::new(config))
}

fn get_with_certificate(
    tls: Arc<rustls::ServerConfig>,
    pem: std::path::PathBuf,
    host: &str,
) -> Result<Vec<u8>, HttpError> {
    let server = serve_ok(Some(tls), b"ok");
    let config = HttpConfig {
        server_certificate: Some(pem),
        ..test_config()
    };
    let url = server.url("https", "/").replace("127.0.0.1", host);
    client(config)
        .request("GET", &url, &[], None)
        .map(|response| response.body)
}

#[test]
fn openssl_self_signed_ca_certificate_is_accepted_as_server_certificate() {
    for key in [
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"][..],
        &["-newkey", "rsa:2048"][..],
    ] {
        let (pem, tls) = openssl_server(key, "DNS:localhost,IP:127.0.0.1");
        assert_eq!(
            get_with_certificate(Arc::clone(&tls), pem.clone(), "127.0.0.1").unwrap(),
            b"ok"
        );
        assert_eq!(get_with_certificate(tls, pem, "localhost").unwrap(), b"ok");
    }
}

#[test]
fn pinned_certificate_still_needs_the_right_host_name() {
    let (pem, tls) = openssl_server(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "DNS:mender.example.com",
    );
    let error = get_with_certificate(tls, pem, "127.0.0.1").unwrap_err();
    assert!(matches!(error, HttpError::Certificate(_)), "{error}");
    assert!(error.to_string().contains("NotValidForName"), "{error}");
}

#[test]
fn pinned_certificate_still_needs_the_server_auth_usage() {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let (pem, tls) = openssl_server_with(&ec, "IP:127.0.0.1", &["extendedKeyUsage=clientAuth"]);
    let error = get_with_certificate(tls, pem, "127.0.0.1").unwrap_err();
    assert!(error.to_string().contains("InvalidPurpose"), "{error}");
    let (pem, tls) = openssl_server_with(
        &ec,
        "IP:127.0.0.1",
        &["extendedKeyUsage=critical,clientAuth,serverAuth"],
    );
    assert_eq!(get_with_certificate(tls, pem, "127.0.0.1").unwrap(), b"ok");
}

#[test]
fn pinned_certificate_still_needs_a_valid_period() {
    // The same kind of certificate (self-signed, CA:TRUE), expired.
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = unique_path("expired.crt");
    std::fs::write(&pem, cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let error = get_with_certificate(Arc::new(tls), pem, "127.0.0.1").unwrap_err();
    assert!(error.to_string().contains("Expired"), "{error}");
}

#[test]
fn another_certificate_than_the_pinned_one_goes_through_webpki() {
    let (pem, _) = openssl_server(
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        "IP:127.0.0.1",
    );
    let (tls, _) = tls_server_config();
    let error = get_with_certificate(tls, pem, "127.0.0.1").unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

#[test]
fn unreadable_server_certificate_is_a_clear_error() {
    let config = HttpConfig {
        server_certificate: Some(unique_path("missing.crt")),
        ..test_config()
    };
    let error = HttpClient::new(config).unwrap_err();
    assert!(matches!(error, HttpError::TrustStore(_)), "{error}");
}

// ---------------------------------------------------------------------------
// Downloads

#[test]
fn download_resumes_after_drops_at_several_offsets() {
    let data = Arc::new(pattern(200_000));
    // Connection i drops after cuts[i] body bytes.
    let cuts = [1, 4096, 65_537, 10, 100_000];
    let server = file_server(
        Arc::clone(&data),
        move |index, _| cuts.get(index).copied(),
        false,
    );
    let client = client(test_config());
    let mut download =
        Download::start(&client, &server.url("http", "/artifact"), fast_backoff()).unwrap();
    assert_eq!(download.total(), 200_000);
    let got = read_all(&mut download).unwrap();
    assert!(got == *data, "resumed stream differs");
    assert_eq!(download.received(), 200_000);
    assert_eq!(download.attempts(), 5);
    let starts: Vec<_> = server.requests().iter().map(Request::range_start).collect();
    assert_eq!(
        starts,
        [
            None,
            Some(1),
            Some(4097),
            Some(69_634),
            Some(69_644),
            Some(169_644)
        ]
    );
}

#[test]
fn download_discards_the_surplus_when_the_range_starts_earlier() {
    let data = Arc::new(pattern(50_000));
    let served = Arc::clone(&data);
    let server = serve(None, move |index, request, stream| {
        if index == 0 {
            respond(
                stream,
                "200 OK",
                &[("Content-Length", "50000".to_string())],
                &served[..20_000],
            );
            return;
        }
        // Answer from 1000 bytes before the requested offset.
        let start = request.range_start().unwrap() - 1000;
        respond(
            stream,
            "206 Partial Content",
            &[
                ("Content-Length", (50_000 - start).to_string()),
                ("Content-Range", format!("bytes {start}-49999/50000")),
            ],
            &served[start..],
        );
    });
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    assert!(read_all(&mut download).unwrap() == *data);
}

#[test]
fn stalled_body_times_out_and_resumes() {
    let data = Arc::new(pattern(30_000));
    let server = file_server(
        Arc::clone(&data),
        |index, _| (index == 0).then_some(12_345),
        true,
    );
    let started = Instant::now();
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    assert!(read_all(&mut download).unwrap() == *data);
    assert_eq!(download.attempts(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn download_follows_redirects() {
    let data = Arc::new(pattern(10_000));
    let served = Arc::clone(&data);
    let server = serve(None, move |_, request, stream| {
        if request.target == "/start" {
            respond(
                stream,
                "302 Found",
                &[
                    ("Location", "/hop".to_string()),
                    ("Content-Length", "0".to_string()),
                ],
                b"",
            );
        } else if request.target == "/hop" {
            respond(
                stream,
                "307 Temporary Redirect",
                &[("Location", "final?sig=1".to_string())],
                b"",
            );
        } else {
            assert_eq!(request.target, "/final?sig=1");
            respond(
                stream,
                "200 OK",
                &[("Content-Length", "10000".to_string())],
                &served,
            );
        }
    });
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/start"),
        fast_backoff(),
    )
    .unwrap();
    assert!(read_all(&mut download).unwrap() == *data);
}

#[test]
fn redirect_loop_is_bounded() {
    let server = serve(None, |_, _, stream| {
        respond(
            stream,
            "302 Found",
            &[
                ("Location", "/again".to_string()),
                ("Content-Length", "0".to_string()),
            ],
            b"",
        );
    });
    let error = Download::start(
        &client(test_config()),
        &server.url("http", "/"),
        fast_backoff(),
    )
    .unwrap_err();
    assert!(matches!(error, HttpError::TooManyRedirects), "{error}");
    assert_eq!(server.requests().len(), 11);
}

#[test]
fn range_answered_with_200_is_retried_then_gives_up() {
    let data = Arc::new(pattern(20_000));
    let served = Arc::clone(&data);
    let server = serve(None, move |index, _, stream| {
        // Always the whole file with 200; the first connection drops early.
        let cut = if index == 0 { 5_000 } else { served.len() };
        respond(
            stream,
            "200 OK",
            &[("Content-Length", "20000".to_string())],
            &served[..cut],
        );
    });
    let started = Instant::now();
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    let error = read_all(&mut download).unwrap_err();
    match http_error(&error) {
        HttpError::ResumeFailed { attempts, last } => {
            assert_eq!(*attempts, 9);
            assert!(matches!(**last, HttpError::BadResume(_)), "{last}");
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(download.received(), 5_000);
    assert_eq!(server.requests().len(), 10);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn range_answered_with_200_once_is_retried_and_succeeds() {
    let data = Arc::new(pattern(20_000));
    let server = file_server(
        Arc::clone(&data),
        |index, _| (index == 0).then_some(3_000),
        false,
    );
    let served = Arc::clone(&data);
    // A front server that answers the first Range request with 200.
    let backend = server.address;
    let front = serve(None, move |index, request, stream| {
        if index == 1 {
            respond(
                stream,
                "200 OK",
                &[("Content-Length", "20000".to_string())],
                &served,
            );
            return;
        }
        let mut upstream = TcpStream::connect(backend).unwrap();
        let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
        for (name, value) in &request.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        upstream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = upstream.read_to_end(&mut answer);
        let _ = stream.write_all(&answer);
    });
    let mut download = Download::start(
        &client(test_config()),
        &front.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    assert!(read_all(&mut download).unwrap() == *data);
    assert_eq!(download.attempts(), 2);
}

#[test]
fn content_range_total_mismatch_is_an_error() {
    let server = serve(None, |index, request, stream| {
        if index == 0 {
            respond(
                stream,
                "200 OK",
                &[("Content-Length", "10000".to_string())],
                &[7u8; 4000],
            );
            return;
        }
        let start = request.range_start().unwrap();
        respond(
            stream,
            "206 Partial Content",
            &[
                ("Content-Length", (10_001 - start).to_string()),
                ("Content-Range", format!("bytes {start}-10000/10001")),
            ],
            &vec![7u8; 10_001 - start],
        );
    });
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    let error = read_all(&mut download).unwrap_err();
    assert!(
        matches!(
            http_error(&error),
            HttpError::LengthChanged {
                expected: 10_000,
                found: 10_001
            }
        ),
        "{error}"
    );
    assert_eq!(download.attempts(), 1);
}

#[test]
fn download_start_requires_200_and_content_length() {
    let server = serve(None, |index, _, stream| {
        if index == 0 {
            respond(
                stream,
                "404 Not Found",
                &[("Content-Length", "0".to_string())],
                b"",
            );
        } else {
            respond(
                stream,
                "200 OK",
                &[("Transfer-Encoding", "chunked".to_string())],
                b"0\r\n\r\n",
            );
        }
    });
    let client = client(test_config());
    let error = Download::start(&client, &server.url("http", "/a"), fast_backoff()).unwrap_err();
    assert!(
        matches!(error, HttpError::Status { status: 404, .. }),
        "{error}"
    );
    let error = Download::start(&client, &server.url("http", "/a"), fast_backoff()).unwrap_err();
    assert!(matches!(error, HttpError::UnknownLength), "{error}");
}

#[test]
fn download_is_an_embedded_io_reader() {
    let data = Arc::new(pattern(9_000));
    let server = file_server(
        Arc::clone(&data),
        |index, _| (index == 0).then_some(100),
        false,
    );
    let mut download = Download::start(
        &client(test_config()),
        &server.url("http", "/a"),
        fast_backoff(),
    )
    .unwrap();
    let mut got = vec![0u8; 9_000];
    embedded_io::Read::read_exact(&mut download, &mut got).unwrap();
    assert!(got == *data);
    let mut more = [0u8; 10];
    assert_eq!(
        embedded_io::Read::read(&mut download, &mut more).unwrap(),
        0
    );
}

#[test]
fn reference_backoff_schedule() {
    let minutes: Vec<_> = (0..13)
        .map(|tried| {
            Backoff::mender(Duration::from_secs(300))
                .delay(tried)
                .map(|delay| delay.as_secs() / 60)
        })
        .collect();
    let expected: Vec<_> = [1, 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5]
        .into_iter()
        .map(Some)
        .chain([None])
        .collect();
    assert_eq!(minutes, expected);
    // Standalone install: cap 0 means 3 attempts of 1 minute.
    let standalone = Backoff::mender(Duration::ZERO);
    assert_eq!(standalone.delay(2), Some(Duration::from_secs(60)));
    assert_eq!(standalone.delay(3), None);
}

// ---------------------------------------------------------------------------
// Proxy

/// A tiny proxy: `CONNECT host:port` tunnels, absolute-form requests are
/// forwarded in origin form. Records the request lines it saw.
fn proxy_server() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut client) = stream else { continue };
            let log = Arc::clone(&log);
            thread::spawn(move || {
                client
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let Some(request) = read_request(&mut client) else {
                    return;
                };
                log.lock()
                    .unwrap()
                    .push(format!("{} {}", request.method, request.target));
                let mut upstream;
                if request.method == "CONNECT" {
                    upstream = TcpStream::connect(&request.target).unwrap();
                    client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .unwrap();
                } else {
                    let rest = request.target.strip_prefix("http://").unwrap();
                    let (authority, path) = rest.split_at(rest.find('/').unwrap());
                    upstream = TcpStream::connect(authority).unwrap();
                    let mut head = format!("{} {path} HTTP/1.1\r\n", request.method);
                    for (name, value) in &request.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    upstream.write_all(head.as_bytes()).unwrap();
                    upstream.write_all(&request.body).unwrap();
                }
                let mut upstream_reader = upstream.try_clone().unwrap();
                let mut client_writer = client.try_clone().unwrap();
                let copier = thread::spawn(move || {
                    let _ = std::io::copy(&mut upstream_reader, &mut client_writer);
                    let _ = client_writer.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut client, &mut upstream);
                let _ = upstream.shutdown(std::net::Shutdown::Write);
                let _ = copier.join();
            });
        }
    });
    (address, seen)
}

#[test]
fn https_through_a_connect_proxy_and_http_in_absolute_form() {
    let (tls, pem) = tls_server_config();
    let secure = serve_ok(Some(tls), b"secure");
    let plain = serve_ok(None, b"plain");
    let (proxy, seen) = proxy_server();
    let config = HttpConfig {
        server_certificate: Some(pem),
        proxy: ProxySettings {
            http: Some(format!("http://{proxy}")),
            https: Some(proxy.to_string()),
            no_proxy: Vec::new(),
        },
        ..test_config()
    };
    let client = client(config);
    let response = client
        .request("GET", &secure.url("https", "/s"), &[], None)
        .unwrap();
    assert_eq!(response.body, b"secure");
    let response = client
        .request("GET", &plain.url("http", "/p?q=1"), &[], None)
        .unwrap();
    assert_eq!(response.body, b"plain");
    assert_eq!(plain.requests()[0].target, "/p?q=1");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            format!("CONNECT {}", secure.address),
            format!("GET http://{}/p?q=1", plain.address),
        ]
    );
}

#[test]
fn no_proxy_bypasses_the_proxy_and_refusals_are_reported() {
    let plain = serve_ok(None, b"ok");
    let refusing = serve(None, |_, _, stream| {
        respond(
            stream,
            "403 Forbidden",
            &[("Content-Length", "0".to_string())],
            b"",
        );
    });
    let bypass = HttpConfig {
        proxy: ProxySettings {
            http: Some(refusing.address.to_string()),
            https: Some(refusing.address.to_string()),
            no_proxy: vec!["127.0.0.1".to_string()],
        },
        ..test_config()
    };
    let response = client(bypass)
        .request("GET", &plain.url("http", "/"), &[], None)
        .unwrap();
    assert_eq!(response.body, b"ok");
    let through = HttpConfig {
        proxy: ProxySettings {
            https: Some(refusing.address.to_string()),
            ..ProxySettings::default()
        },
        skip_verify: true,
        ..test_config()
    };
    let error = client(through)
        .request("GET", &plain.url("https", "/"), &[], None)
        .unwrap_err();
    assert!(matches!(error, HttpError::Proxy(_)), "{error}");
}

// ---------------------------------------------------------------------------
// Hostile servers: every network read is bounded in size and time.

/// A server that reads the request, then runs `send` on the connection
/// until it fails (the client hung up). Returns its address.
fn hostile(send: fn(&mut TcpStream) -> std::io::Result<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            thread::spawn(move || {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = send(&mut stream);
            });
        }
    });
    address
}

fn endless(stream: &mut TcpStream, head: &[u8], unit: &[u8]) -> std::io::Result<()> {
    stream.write_all(head)?;
    let block = unit.repeat(64 * 1024 / unit.len());
    loop {
        stream.write_all(&block)?;
    }
}

fn hostile_config() -> HttpConfig {
    HttpConfig {
        max_body_len: 64 * 1024,
        io_timeout: Duration::from_secs(5),
        ..test_config()
    }
}

/// Requests `/` from `address` with [`hostile_config`], expecting an error
/// within 3 s.
fn refused(address: SocketAddr) -> HttpError {
    let started = Instant::now();
    let error = client(hostile_config())
        .request("GET", &format!("http://{address}/"), &[], None)
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{error}");
    error
}

#[test]
fn endless_header_line_is_refused_at_the_line_limit() {
    let address = hostile(|s| endless(s, b"HTTP/1.1 200 OK\r\nX-Endless: ", b"a"));
    let error = refused(address);
    // The line or the whole head reaches its limit first, depending on how
    // the bytes arrive; either way the error names the limit.
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "{} bytes (the limit)",
            otalite::protocol::http::MAX_LINE_LEN
        )) || text.contains(&format!(
            "{} bytes (the limit)",
            otalite::protocol::http::MAX_HEAD_LEN
        )),
        "{text}"
    );
    // Also for a download (the path of `install http://...`).
    let error = Download::start(
        &client(hostile_config()),
        &format!("http://{address}/a.mender"),
        fast_backoff(),
    )
    .unwrap_err();
    assert!(matches!(error, HttpError::Head(_)), "{error}");
}

#[test]
fn endless_header_list_is_refused_at_the_header_limit() {
    let address = hostile(|s| endless(s, b"HTTP/1.1 200 OK\r\n", b"X-A: b\r\n"));
    let text = refused(address).to_string();
    assert!(
        text.contains(&format!(
            "more than {} response headers",
            otalite::protocol::http::MAX_HEADERS
        )),
        "{text}"
    );
}

#[test]
fn long_head_of_short_lines_is_refused_at_the_head_limit() {
    // 90 headers of 100 bytes: under the line and count limits, over 8 KiB.
    let address = hostile(|s| {
        let line = format!("X-Long: {}\r\n", "v".repeat(90));
        endless(
            s,
            format!("HTTP/1.1 200 OK\r\n{}", line.repeat(90)).as_bytes(),
            b"\r\n",
        )
    });
    let text = refused(address).to_string();
    assert!(
        text.contains(&otalite::protocol::http::MAX_HEAD_LEN.to_string()),
        "{text}"
    );
}

#[test]
fn huge_chunk_size_is_bounded_by_the_body_cap() {
    let address = hostile(|s| {
        endless(
            s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffff\r\n",
            b"{",
        )
    });
    let error = refused(address);
    assert!(
        matches!(error, HttpError::BodyTooLarge { limit: 65536 }),
        "{error}"
    );
    assert!(error.to_string().contains("65536"), "{error}");
    // A chunk size beyond 64 bits is malformed.
    let address = hostile(|s| {
        endless(
            s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
            b"x",
        )
    });
    let error = refused(address);
    assert!(matches!(error, HttpError::Chunked(_)), "{error}");
}

#[test]
fn endless_chunk_size_line_is_refused() {
    let address = hostile(|s| {
        endless(
            s,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=",
            b"e",
        )
    });
    let text = refused(address).to_string();
    assert!(
        text.contains(&otalite::protocol::http::MAX_CHUNK_LINE_LEN.to_string()),
        "{text}"
    );
}

#[test]
fn endless_json_bodies_are_bounded_by_the_body_cap() {
    // Until close, many small chunks, and a lying Content-Length.
    for send in [
        (|s| {
            endless(
                s,
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[",
                b"1,",
            )
        }) as fn(&mut TcpStream) -> std::io::Result<()>,
        |s| {
            endless(
                s,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"2\r\n1,\r\n",
            )
        },
        |s| {
            endless(
                s,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
                b" ",
            )
        },
    ] {
        let error = refused(hostile(send));
        assert!(
            matches!(error, HttpError::BodyTooLarge { limit: 65536 }),
            "{error}"
        );
    }
}

/// One byte every 100 ms: never a stall, but never done.
fn trickle(stream: &mut TcpStream) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")?;
    loop {
        stream.write_all(b" ")?;
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn trickled_api_answer_ends_at_the_exchange_limit() {
    let address = hostile(trickle);
    let config = HttpConfig {
        exchange_timeout: Duration::from_millis(1200),
        io_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let started = Instant::now();
    let error = client(config)
        .request("GET", &format!("http://{address}/"), &[], None)
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, HttpError::Deadline { limit } if limit == Duration::from_millis(1200)),
        "{error}"
    );
    assert!(error.to_string().contains("1.2 s"), "{error}");
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn trickled_download_has_no_total_cap_only_a_stall_timeout() {
    // The exchange limit does not apply to downloads: 3 s of a steady
    // trickle with a 1 s exchange limit and a 500 ms stall timeout.
    let address = hostile(|stream| {
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n")?;
        for _ in 0..30 {
            stream.write_all(b"d")?;
            thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    let config = HttpConfig {
        exchange_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let mut download = Download::open_at(
        &client(config),
        &format!("http://{address}/a.mender"),
        0,
        None,
    )
    .unwrap();
    assert_eq!(read_all(&mut download).unwrap(), vec![b'd'; 30]);
}

#[test]
fn stop_flag_ends_a_blocked_or_trickled_exchange_promptly() {
    for send in [trickle as fn(&mut TcpStream) -> std::io::Result<()>, |_| {
        thread::sleep(Duration::from_secs(30));
        Ok(())
    }] {
        let address = hostile(send);
        let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
        let config = HttpConfig {
            io_timeout: Duration::from_secs(30),
            stop: Some(Arc::clone(&stop)),
            ..test_config()
        };
        let raise = Arc::clone(&stop);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            raise.store(true, Ordering::Relaxed);
        });
        let started = Instant::now();
        let error = client(config)
            .request("GET", &format!("http://{address}/"), &[], None)
            .unwrap_err();
        assert!(matches!(error, HttpError::Stopped), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
