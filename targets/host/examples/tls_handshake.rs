//! Handshake timing for `cargo xtask bench tls`: full TLS handshakes (TCP
//! connect included, no session resumption) to one server, alternating
//! otalite's crypto provider (RustCrypto) and rustls' ring provider round
//! by round, so that both see the same machine load.
//!
//!   tls_handshake HOST:PORT CA.pem ROUNDS PER_ROUND [PATH]
//!
//! With PATH, each connection also GETs PATH (`s_server -WWW`) and reads
//! the body to the end: bulk transfer through the record layer.
//!
//! Prints one line per provider: `provider median_us min_us connections`.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

fn config(
    provider: rustls::crypto::CryptoProvider,
    ca: &[CertificateDer<'static>],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in ca {
        roots.add(certificate.clone()).expect("CA certificate");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Every handshake a full one, as a device's first exchange.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One full handshake (and a GET of `path`); its duration in microseconds.
fn handshake(config: &Arc<rustls::ClientConfig>, address: &str, path: Option<&str>) -> u128 {
    let started = Instant::now();
    let mut tcp = TcpStream::connect(address).expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::clone(config), name).expect("client");
    while connection.is_handshaking() {
        connection.complete_io(&mut tcp).expect("handshake");
    }
    if let Some(path) = path {
        use std::io::Read as _;
        let mut stream = rustls::Stream::new(&mut connection, &mut tcp);
        write!(stream, "GET {path} HTTP/1.0\r\n\r\n").expect("request");
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(error) => panic!("read: {error}"),
            }
        }
    }
    let elapsed = started.elapsed().as_micros();
    connection.send_close_notify();
    let _ = connection.complete_io(&mut tcp);
    let _ = tcp.flush();
    elapsed
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (address, ca, rounds, per_round, path) = match &args[..] {
        [_, address, ca, rounds, per_round] => (address, ca, rounds, per_round, None),
        [_, address, ca, rounds, per_round, path] => {
            (address, ca, rounds, per_round, Some(path.as_str()))
        }
        _ => {
            eprintln!("usage: tls_handshake HOST:PORT CA.pem ROUNDS PER_ROUND [PATH]");
            std::process::exit(2);
        }
    };
    let rounds: usize = rounds.parse().expect("ROUNDS");
    let per_round: usize = per_round.parse().expect("PER_ROUND");
    let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .expect("CA file")
        .collect::<Result<_, _>>()
        .expect("CA PEM");
    let contenders = [
        (
            "rustcrypto",
            config(otalite_host::http::crypto_provider(), &ca),
        ),
        (
            "ring",
            config(rustls::crypto::ring::default_provider(), &ca),
        ),
    ];
    // One warm-up handshake each (page faults, first-use tables).
    for (_, config) in &contenders {
        handshake(config, address, path);
    }
    let mut times: Vec<Vec<u128>> = vec![Vec::new(); contenders.len()];
    for _ in 0..rounds {
        for ((_, config), times) in contenders.iter().zip(&mut times) {
            for _ in 0..per_round {
                times.push(handshake(config, address, path));
            }
        }
    }
    for ((name, _), times) in contenders.iter().zip(&mut times) {
        times.sort_unstable();
        let median = times.get(times.len() / 2).copied().unwrap_or(0);
        let min = times.first().copied().unwrap_or(0);
        println!("{name} {median} {min} {}", times.len());
    }
}
