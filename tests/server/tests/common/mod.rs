//! A plain HTTP/1.1 client (TCP or rustls) and device helpers for the tests.
#![allow(dead_code, clippy::std_instead_of_core, unreachable_pub)]

use base64::Engine as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// A response (possibly cut short).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection ended with an error or before Content-Length bytes.
    pub truncated: bool,
    /// A read timed out (the server stalled).
    pub timed_out: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Request options.
pub struct Req<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: Vec<(&'a str, String)>,
    pub body: Vec<u8>,
    /// Trusted certificate PEM for https URLs.
    pub cert_pem: Option<&'a str>,
    pub timeout: Duration,
}

impl<'a> Req<'a> {
    pub fn new(method: &'a str, url: &'a str) -> Self {
        Self {
            method,
            url,
            headers: Vec::new(),
            body: Vec::new(),
            cert_pem: None,
            timeout: Duration::from_secs(10),
        }
    }
    pub fn header(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("Content-Type", "application/json")
    }
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    pub fn cert(mut self, pem: &'a str) -> Self {
        self.cert_pem = Some(pem);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    pub fn send(self) -> Resp {
        send(&self).expect("request failed before a status line")
    }
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("PEM base64")
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn send(r: &Req<'_>) -> io::Result<Resp> {
    let (tls, rest) = if let Some(x) = r.url.strip_prefix("https://") {
        (true, x)
    } else {
        (false, r.url.strip_prefix("http://").expect("http(s) URL"))
    };
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let sock = TcpStream::connect(hostport)?;
    sock.set_read_timeout(Some(r.timeout))?;
    let mut stream: Box<dyn Stream> = if tls {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(pem_to_der(
                r.cert_pem.expect("https needs a certificate"),
            )))
            .expect("add root");
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport, |(h, _)| h)
            .to_owned();
        let name = rustls::pki_types::ServerName::try_from(host).expect("server name");
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client connection");
        Box::new(rustls::StreamOwned::new(conn, sock))
    } else {
        Box::new(sock)
    };
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n",
        r.method
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !r.body.is_empty() || matches!(r.method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    let mut tmp = [0u8; 16384];
    let mut timed_out = false;
    let mut errored = false;
    loop {
        match stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&tmp[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                timed_out = true;
                break;
            }
            Err(_) => {
                errored = true;
                break;
            }
        }
    }
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(io::Error::new(
            if timed_out {
                io::ErrorKind::TimedOut
            } else {
                io::ErrorKind::UnexpectedEof
            },
            "no response head",
        ));
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = raw[end + 4..].to_vec();
    let expected = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let truncated = errored || timed_out || expected.is_some_and(|n| body.len() < n);
    Ok(Resp {
        status,
        headers,
        body,
        truncated,
        timed_out,
    })
}

/// Sends a raw request and returns whether any response byte arrived
/// within `timeout`.
pub fn raw_gets_answer(url: &str, raw: &[u8], timeout: Duration) -> bool {
    let hostport = url.strip_prefix("http://").expect("http URL");
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(raw).expect("write");
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1))
}

/// A device key of one of the three types Mender supports.
pub enum DeviceKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    Rsa(
        Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>,
        Box<rsa::RsaPublicKey>,
    ),
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("random");
    b
}

impl DeviceKey {
    pub fn ed25519() -> Self {
        Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(&random32()))
    }
    pub fn p256() -> Self {
        Self::P256(p256::ecdsa::SigningKey::from_slice(&random32()).expect("scalar in range"))
    }
    pub fn rsa(bits: usize) -> Self {
        let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
        let k = rsa::RsaPrivateKey::new(&mut rng, bits).expect("RSA key generation");
        let public = k.to_public_key();
        Self::Rsa(
            Box::new(rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(k)),
            Box::new(public),
        )
    }

    pub fn public_pem(&self) -> String {
        use p256::pkcs8::{EncodePublicKey as _, LineEnding};
        match self {
            Self::Ed25519(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
            Self::P256(k) => k.verifying_key().to_public_key_pem(LineEnding::LF),
            Self::Rsa(_, p) => p.to_public_key_pem(LineEnding::LF),
        }
        .expect("PEM")
    }

    /// Base64 signature in the `X-MEN-Signature` format.
    pub fn sign(&self, body: &[u8]) -> String {
        use p256::ecdsa::signature::{SignatureEncoding as _, Signer as _};
        let raw: Vec<u8> = match self {
            Self::Ed25519(k) => k.sign(body).to_bytes().to_vec(),
            Self::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(body);
                s.to_der().to_bytes().to_vec()
            }
            Self::Rsa(k, _) => k.sign(body).to_vec(),
        };
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Raw (non-DER) ECDSA r||s, the classic mistake.
    pub fn sign_p256_raw(&self, body: &[u8]) -> String {
        use p256::ecdsa::signature::Signer as _;
        let Self::P256(k) = self else {
            panic!("not P-256")
        };
        let s: p256::ecdsa::Signature = k.sign(body);
        base64::engine::general_purpose::STANDARD.encode(s.to_bytes())
    }
}

/// The auth request body the Go client sends (JSON encoder: trailing `\n`).
pub fn auth_body(key: &DeviceKey, mac: &str) -> Vec<u8> {
    let id_data = serde_json::json!({ "mac": mac }).to_string();
    let mut b = serde_json::json!({
        "id_data": id_data,
        "tenant_token": "",
        "pubkey": key.public_pem(),
    })
    .to_string()
    .into_bytes();
    b.push(b'\n');
    b
}

/// Authenticates; returns (status, body).
pub fn authenticate(base: &str, key: &DeviceKey, mac: &str) -> (u16, String) {
    let body = auth_body(key, mac);
    let url = format!("{base}/api/devices/v1/authentication/auth_requests");
    let r = Req::new("POST", &url)
        .header("Content-Type", "application/json")
        .header("X-MEN-Signature", key.sign(&body))
        .header("Authorization", "Bearer ")
        .raw_body(body)
        .send();
    (r.status, r.text())
}
