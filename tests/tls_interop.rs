//! The HTTPS client (its rustls crypto provider, `src/http/provider.rs`,
//! on RustCrypto) against a real TLS server of another implementation:
//! `openssl s_server` on 127.0.0.1, each key type (RSA 2048, ECDSA P-256,
//! ECDSA P-384, Ed25519), each protocol version, each cipher suite and key
//! exchange group forced on the server side, each handshake and
//! certificate signature algorithm; then refusals (wrong host name,
//! expired, unknown issuer) with their messages.
//!
//! The certificates are made by the openssl CLI in a temporary directory:
//! a CA of the key type (trusted through `ServerCertificate`) signs the
//! server's certificate, so webpki checks the certificate's signature with
//! the provider, and the handshake signature is checked with the server's
//! key. The server is `s_server -WWW` (a file from its directory over
//! HTTP/1.0); each is ended by PID when its guard drops.

use core::time::Duration;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use otalite_host::http::{HttpClient, HttpConfig, HttpError};

/// The body `s_server -WWW` serves as `/hello.txt`.
const BODY: &[u8] = b"hello from openssl s_server\n";

/// A key type and the `openssl req -newkey` arguments making one.
#[derive(Clone, Copy, Debug)]
enum Key {
    Rsa2048,
    P256,
    P384,
    Ed25519,
}

impl Key {
    fn args(self) -> &'static [&'static str] {
        match self {
            Self::Rsa2048 => &["-newkey", "rsa:2048"],
            Self::P256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
            Self::P384 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
            Self::Ed25519 => &["-newkey", "ed25519"],
        }
    }

    /// The TLS 1.2 suites for this key's signature type (OpenSSL names).
    fn tls12_ciphers(self) -> [&'static str; 3] {
        match self {
            Self::Rsa2048 => [
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ],
            _ => [
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
            ],
        }
    }
}

/// The TLS 1.3 suites (OpenSSL names).
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The key exchange groups (OpenSSL names).
const GROUPS: [&str; 3] = ["X25519", "P-256", "P-384"];

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate signed by it, in a temporary directory
/// that also holds `hello.txt`.
struct Pki {
    dir: tempfile::TempDir,
}

/// The CA's name, how it signs the server certificate and what the
/// certificate says.
struct Leaf<'a> {
    /// The CA's subject (and so the certificate's issuer).
    ca_name: &'a str,
    /// Extra `openssl x509 -req` arguments (digest, `-sigopt`).
    sign: &'a [&'a str],
    /// `subjectAltName`.
    names: &'a str,
    /// Validity in days (negative: already expired).
    days: &'a str,
}

const LEAF: Leaf<'static> = Leaf {
    ca_name: "/CN=otalite interop CA",
    sign: &[],
    names: "IP:127.0.0.1,DNS:localhost",
    days: "30",
};

impl Pki {
    /// CA of type `ca`, server key of type `server`, certificate `leaf`.
    fn new(ca: Key, server: Key, leaf: &Leaf<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("hello.txt"), BODY).unwrap();
        let mut args = vec!["req", "-x509", "-nodes", "-days", "30"];
        args.extend(["-subj", leaf.ca_name]);
        args.extend(ca.args());
        args.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        openssl(path, &args);
        let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=localhost"];
        args.extend(server.args());
        args.extend(["-keyout", "server.key", "-out", "server.csr"]);
        openssl(path, &args);
        std::fs::write(
            path.join("server.ext"),
            format!(
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName={}\n",
                leaf.names
            ),
        )
        .unwrap();
        let mut args = vec!["x509", "-req", "-in", "server.csr", "-CA", "ca.crt"];
        args.extend(["-CAkey", "ca.key", "-CAcreateserial", "-days", leaf.days]);
        args.extend(["-extfile", "server.ext", "-out", "server.crt"]);
        args.extend(leaf.sign);
        openssl(path, &args);
        Self { dir }
    }

    /// The CA certificate, for `ServerCertificate`.
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `openssl x509 -text` of the server certificate (to check that a
    /// test really has the signature algorithm it claims).
    fn server_text(&self) -> String {
        let out = Command::new("openssl")
            .current_dir(self.dir.path())
            .args(["x509", "-noout", "-text", "-in", "server.crt"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `openssl s_server -WWW` with this certificate and `args`.
    fn serve(&self, args: &[&str]) -> Server {
        let mut child = Command::new("openssl")
            .current_dir(self.dir.path())
            .args(["s_server", "-accept", "127.0.0.1:0", "-WWW"])
            .args(["-cert", "server.crt", "-key", "server.key"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the openssl CLI is required (apt-get install openssl)");
        // "ACCEPT 127.0.0.1:PORT" once it listens; the rest of its output
        // is drained so that it never blocks on a full pipe.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            line.strip_prefix("ACCEPT 127.0.0.1:")
                .and_then(|port| port.trim().parse::<u16>().ok())
        });
        std::thread::spawn(move || lines.for_each(drop));
        let mut server = Server { child, port: 0 };
        let Some(port) = port else {
            panic!("openssl s_server {args:?} did not start");
        };
        server.port = port;
        server
    }
}

/// A running `openssl s_server`, ended (by PID) on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `/hello.txt` from `server` as `host`, trusting `ca`.
fn get(server: &Server, host: &str, ca: PathBuf) -> Result<Vec<u8>, HttpError> {
    let config = HttpConfig {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        system_roots: false,
        server_certificate: Some(ca),
        ..HttpConfig::default()
    };
    let url = format!("https://{host}:{}/hello.txt", server.port);
    let response = HttpClient::new(config)?.request("GET", &url, &[], None)?;
    assert_eq!(response.status, 200, "{url}");
    Ok(response.body)
}

/// Every TLS 1.3 suite and every TLS 1.2 suite of `key`'s signature type,
/// each with each group, against a server with a `key` certificate from a
/// `key` CA; the body must arrive intact.
fn every_version_suite_and_group(key: Key) {
    let pki = Arc::new(Pki::new(key, key, &LEAF));
    let mut cases: Vec<Vec<&str>> = Vec::new();
    for suite in TLS13_SUITES {
        for group in GROUPS {
            cases.push(vec!["-tls1_3", "-ciphersuites", suite, "-groups", group]);
        }
    }
    for cipher in key.tls12_ciphers() {
        for group in GROUPS {
            cases.push(vec!["-tls1_2", "-cipher", cipher, "-groups", group]);
        }
    }
    for args in cases {
        let server = pki.serve(&args);
        let body = get(&server, "127.0.0.1", pki.ca())
            .unwrap_or_else(|error| panic!("{key:?} {args:?}: {error}"));
        assert_eq!(body, BODY, "{key:?} {args:?}");
    }
}

#[test]
fn rsa_2048_every_version_suite_and_group() {
    every_version_suite_and_group(Key::Rsa2048);
}

#[test]
fn ecdsa_p256_every_version_suite_and_group() {
    every_version_suite_and_group(Key::P256);
}

#[test]
fn ecdsa_p384_every_version_suite_and_group() {
    every_version_suite_and_group(Key::P384);
}

#[test]
fn ed25519_every_version_suite_and_group() {
    every_version_suite_and_group(Key::Ed25519);
}

#[test]
fn rsa_handshake_signatures_pkcs1_and_pss_with_each_hash() {
    let pki = Pki::new(Key::Rsa2048, Key::Rsa2048, &LEAF);
    // TLS 1.2 allows both paddings; TLS 1.3 only PSS.
    let cases: [&[&str]; 8] = [
        &["-tls1_2", "-sigalgs", "RSA+SHA256"],
        &["-tls1_2", "-sigalgs", "RSA+SHA384"],
        &["-tls1_2", "-sigalgs", "RSA+SHA512"],
        &["-tls1_2", "-sigalgs", "rsa_pss_rsae_sha256"],
        &["-tls1_2", "-sigalgs", "rsa_pss_rsae_sha384"],
        &["-tls1_2", "-sigalgs", "rsa_pss_rsae_sha512"],
        &["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha384"],
        &["-tls1_3", "-sigalgs", "rsa_pss_rsae_sha512"],
    ];
    for args in cases {
        let server = pki.serve(args);
        let body =
            get(&server, "localhost", pki.ca()).unwrap_or_else(|error| panic!("{args:?}: {error}"));
        assert_eq!(body, BODY, "{args:?}");
    }
}

#[test]
fn certificate_signatures_with_each_hash_and_padding() {
    let pss: &[&str] = &[
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:digest",
    ];
    let cases: [(Key, Vec<&str>, &str); 9] = [
        (Key::Rsa2048, vec!["-sha256"], "sha256WithRSAEncryption"),
        (Key::Rsa2048, vec!["-sha384"], "sha384WithRSAEncryption"),
        (Key::Rsa2048, vec!["-sha512"], "sha512WithRSAEncryption"),
        (Key::Rsa2048, [&["-sha256"][..], pss].concat(), "rsassaPss"),
        (Key::Rsa2048, [&["-sha384"][..], pss].concat(), "rsassaPss"),
        (Key::Rsa2048, [&["-sha512"][..], pss].concat(), "rsassaPss"),
        (Key::P256, vec!["-sha384"], "ecdsa-with-SHA384"),
        (Key::P384, vec!["-sha256"], "ecdsa-with-SHA256"),
        (Key::P384, vec!["-sha384"], "ecdsa-with-SHA384"),
    ];
    for (ca, sign, algorithm) in cases {
        // The server's own key is P-256: the CA's signature is what varies.
        let leaf = Leaf {
            sign: &sign,
            ..LEAF
        };
        let pki = Pki::new(ca, Key::P256, &leaf);
        let text = pki.server_text();
        assert!(
            text.contains(&format!("Signature Algorithm: {algorithm}")),
            "{ca:?} {sign:?} did not make a {algorithm} certificate:\n{text}"
        );
        let server = pki.serve(&[]);
        let body = get(&server, "127.0.0.1", pki.ca())
            .unwrap_or_else(|error| panic!("{ca:?} {sign:?}: {error}"));
        assert_eq!(body, BODY, "{ca:?} {sign:?}");
    }
}

/// `error` is the client's certificate rejection, and its message says so
/// and names `reason` (rustls' error); `case` labels a failure.
fn assert_rejected(error: &HttpError, reason: &str, case: &str) {
    assert!(
        matches!(error, HttpError::Certificate(_)),
        "{case} {error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("server certificate rejected"),
        "{case} {text}"
    );
    assert!(text.contains(reason), "{case} {text}");
}

#[test]
fn wrong_host_name_is_refused_with_a_clear_message() {
    let leaf = Leaf {
        names: "DNS:mender.example.com",
        ..LEAF
    };
    let pki = Pki::new(Key::P256, Key::P256, &leaf);
    let server = pki.serve(&[]);
    let error = get(&server, "127.0.0.1", pki.ca()).unwrap_err();
    assert_rejected(&error, "NotValidForName", "");
}

#[test]
fn expired_certificate_is_refused_with_a_clear_message() {
    let leaf = Leaf { days: "-1", ..LEAF };
    let pki = Pki::new(Key::Rsa2048, Key::Rsa2048, &leaf);
    let server = pki.serve(&[]);
    let error = get(&server, "127.0.0.1", pki.ca()).unwrap_err();
    assert_rejected(&error, "Expired", "");
}

#[test]
fn certificate_from_another_ca_is_refused_with_a_clear_message() {
    let pki = Pki::new(Key::Ed25519, Key::Ed25519, &LEAF);
    let other = Leaf {
        ca_name: "/CN=another CA",
        ..LEAF
    };
    let other = Pki::new(Key::Ed25519, Key::Ed25519, &other);
    let server = pki.serve(&[]);
    let error = get(&server, "127.0.0.1", other.ca()).unwrap_err();
    assert_rejected(&error, "UnknownIssuer", "");
}

#[test]
fn certificate_signed_by_an_impostor_of_the_ca_is_refused() {
    // Two CAs with the same name: the trusted one is found as the issuer
    // and the signature check (the provider's) must fail, for each key type.
    for key in [Key::Rsa2048, Key::P256, Key::P384, Key::Ed25519] {
        let pki = Pki::new(key, Key::P256, &LEAF);
        let trusted = Pki::new(key, Key::P256, &LEAF);
        let server = pki.serve(&[]);
        let error = get(&server, "127.0.0.1", trusted.ca()).unwrap_err();
        assert_rejected(&error, "BadSignature", &format!("{key:?}"));
    }
}

/// A client certificate of `key` signed by the PKI's CA, its key written
/// in the PEM `form` openssl makes (`pkcs8`, `traditional`: PKCS#1 for
/// RSA, SEC1 for EC).
fn client_identity(pki: &Pki, key: Key, form: &str) -> otalite_host::http::ClientAuth {
    let path = pki.dir.path();
    let name = format!("client-{key:?}-{form}");
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=otalite-device"];
    args.extend(key.args());
    let key_file = format!("{name}.key");
    let csr = format!("{name}.csr");
    args.extend(["-keyout", &key_file, "-out", &csr]);
    openssl(path, &args);
    if form == "traditional" {
        // `openssl ec` writes SEC1 by default; `openssl rsa` needs the flag.
        if matches!(key, Key::Rsa2048) {
            openssl(
                path,
                &["rsa", "-in", &key_file, "-out", &key_file, "-traditional"],
            );
        } else {
            openssl(path, &["ec", "-in", &key_file, "-out", &key_file]);
        }
        let text = std::fs::read_to_string(path.join(&key_file)).unwrap();
        assert!(
            text.starts_with("-----BEGIN RSA PRIVATE KEY")
                || text.starts_with("-----BEGIN EC PRIVATE KEY"),
            "{text}"
        );
    }
    std::fs::write(
        path.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let certificate = format!("{name}.crt");
    openssl(
        path,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "client.ext",
            "-out",
            &certificate,
        ],
    );
    otalite_host::http::ClientAuth {
        certificate: path.join(certificate),
        key: path.join(key_file),
    }
}

/// GET with a client certificate (or none).
fn get_as(
    server: &Server,
    ca: PathBuf,
    client: Option<otalite_host::http::ClientAuth>,
) -> Result<Vec<u8>, HttpError> {
    let config = HttpConfig {
        connect_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        system_roots: false,
        server_certificate: Some(ca),
        client_auth: client,
        ..HttpConfig::default()
    };
    let url = format!("https://127.0.0.1:{}/hello.txt", server.port);
    let response = HttpClient::new(config)?.request("GET", &url, &[], None)?;
    assert_eq!(response.status, 200, "{url}");
    Ok(response.body)
}

/// Mutual TLS (AWS IoT's broker, `HttpsClient`): a server that requires a
/// client certificate gets one of each key type and PEM form, in TLS 1.3
/// and 1.2 (RSA: PSS and PKCS#1 handshake signatures); without one, or
/// with one from another CA, the server refuses.
#[test]
fn client_certificates_of_each_key_type() {
    let pki = Pki::new(Key::P256, Key::P256, &LEAF);
    let cases: [(Key, &str, &[&str]); 8] = [
        (Key::P256, "pkcs8", &["-tls1_3"]),
        (Key::P256, "traditional", &["-tls1_2"]),
        (Key::Rsa2048, "pkcs8", &["-tls1_3"]),
        (Key::Rsa2048, "traditional", &["-tls1_2"]),
        (
            Key::Rsa2048,
            "pkcs8",
            &["-tls1_2", "-client_sigalgs", "RSA+SHA256"],
        ),
        (
            Key::Rsa2048,
            "pkcs8",
            &["-tls1_2", "-client_sigalgs", "RSA-PSS+SHA384"],
        ),
        (Key::Ed25519, "pkcs8", &["-tls1_3"]),
        (Key::Ed25519, "pkcs8", &["-tls1_2"]),
    ];
    for (key, form, versions) in cases {
        let client = client_identity(&pki, key, form);
        let mut args = vec!["-Verify", "1", "-verify_return_error", "-CAfile", "ca.crt"];
        args.extend(versions);
        let server = pki.serve(&args);
        let body = get_as(&server, pki.ca(), Some(client))
            .unwrap_or_else(|error| panic!("{key:?} {form} {versions:?}: {error}"));
        assert_eq!(body, BODY, "{key:?} {form} {versions:?}");
    }
    // Refused: no certificate, and one from another CA.
    for versions in [["-tls1_3"], ["-tls1_2"]] {
        let mut args = vec!["-Verify", "1", "-verify_return_error", "-CAfile", "ca.crt"];
        args.extend(versions);
        let server = pki.serve(&args);
        assert!(get_as(&server, pki.ca(), None).is_err(), "{versions:?}");
        let other = Pki::new(Key::P256, Key::P256, &LEAF);
        let stranger = client_identity(&other, Key::P256, "pkcs8");
        assert!(
            get_as(&server, pki.ca(), Some(stranger)).is_err(),
            "{versions:?}"
        );
    }
}

/// A client key of an unsupported kind, or a missing file, is named in
/// the error before any connection.
#[test]
fn unusable_client_keys_are_named() {
    let pki = Pki::new(Key::P256, Key::P256, &LEAF);
    let mut client = client_identity(&pki, Key::P384, "pkcs8");
    let server = pki.serve(&["-Verify", "1", "-CAfile", "ca.crt"]);
    let error = get_as(&server, pki.ca(), Some(client.clone())).unwrap_err();
    assert!(error.to_string().contains("client"), "{error}");
    client.key = pki.dir.path().join("missing.key");
    let error = get_as(&server, pki.ca(), Some(client)).unwrap_err();
    assert!(error.to_string().contains("missing.key"), "{error}");
}
