//! rustls configuration: the trust store (webpki-roots, the system bundle,
//! `ServerCertificate`) and the `SkipVerify` verifier.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{is_poll_timeout, HttpConfig, HttpError, Watch};

/// Where Linux distributions keep the CA bundle (the list Go uses).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

pub(super) fn client_config(config: &HttpConfig) -> Result<ClientConfig, HttpError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| HttpError::Tls(error.to_string()))?;
    let tls = if config.skip_verify {
        log::warn!("SkipVerify is set: server certificates are NOT verified");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify { provider }))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(trust_store(config)?)
            .with_no_client_auth()
    };
    Ok(tls)
}

fn trust_store(config: &HttpConfig) -> Result<RootCertStore, HttpError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if config.system_roots {
        let from_env = std::env::var("SSL_CERT_FILE").ok();
        let bundle = from_env
            .iter()
            .map(String::as_str)
            .chain(SYSTEM_BUNDLES.iter().copied())
            .find(|path| std::path::Path::new(path).is_file());
        if let Some(path) = bundle {
            match CertificateDer::pem_file_iter(path) {
                Ok(certificates) => {
                    let (added, ignored) =
                        roots.add_parsable_certificates(certificates.filter_map(Result::ok));
                    log::debug!("{path}: {added} CA certificates ({ignored} ignored)");
                }
                Err(error) => log::warn!("cannot read the system CA bundle {path}: {error}"),
            }
        }
    }
    if let Some(path) = &config.server_certificate {
        let shown = path.display();
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|error| HttpError::TrustStore(format!("{shown}: {error}")))?
            .collect::<Result<_, _>>()
            .map_err(|error| HttpError::TrustStore(format!("{shown}: {error}")))?;
        if certificates.is_empty() {
            return Err(HttpError::TrustStore(format!(
                "{shown}: no PEM certificate"
            )));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| HttpError::TrustStore(format!("{shown}: {error}")))?;
        }
    }
    Ok(roots)
}

/// Connects TLS over `tcp` and completes the handshake (so certificate
/// errors surface here, not on the first read).
pub(super) fn handshake(
    config: &Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
    watch: &Watch,
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>, HttpError> {
    let server_name = ServerName::try_from(host.to_string())
        .map_err(|_| HttpError::InvalidUrl(host.to_string()))?;
    let connection = ClientConnection::new(Arc::clone(config), server_name)
        .map_err(|error| HttpError::Tls(error.to_string()))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let mut progress = std::time::Instant::now();
    while stream.conn.is_handshaking() {
        watch.check_stop_deadline()?;
        match stream.conn.complete_io(&mut stream.sock) {
            Ok(_) => progress = std::time::Instant::now(),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if is_poll_timeout(&error) => watch.check(progress)?,
            Err(error) => return Err(HttpError::from_io(error)),
        }
    }
    Ok(stream)
}

/// `SkipVerify = true`: accepts every certificate and signature.
#[derive(Debug)]
struct SkipVerify {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
