//! rustls configuration: the trust store (webpki-roots, the system bundle,
//! `ServerCertificate`) and the `SkipVerify` verifier.
//!
//! A server certificate byte-identical to one in `ServerCertificate` is
//! trusted directly, as Go's verifier (the reference) trusts a leaf found in
//! its root pool: a self-signed certificate made with `openssl req -x509`
//! (which sets `CA:TRUE`, so webpki refuses it as an end entity with
//! `CaUsedAsEndEntity`) works as with the reference. Its validity period,
//! host name and extended key usage (absent, `serverAuth` or `any`) are
//! still checked, as Go does, and the handshake signature is verified
//! against its key; every other certificate goes through webpki.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::CertificateError;
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
    let provider = Arc::new(super::provider::provider());
    let client = client_identity(config)?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| HttpError::Tls(error.to_string()))?;
    let tls = if config.skip_verify {
        // Warned once by `HttpClient::new`: this runs per connection.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerify {
                provider,
                refusal: None,
            }))
            .with_client_auth(client)?
    } else {
        let (roots, pinned) = trust_store(config)?;
        if roots.is_empty() {
            // No built-in roots (feature `webpki-roots` off, as in the
            // shipped binaries), no system bundle, no `ServerCertificate`:
            // plain HTTP still works, HTTPS fails with this reason rather
            // than an "unknown issuer" for every server.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(SkipVerify {
                    provider,
                    refusal: Some(NO_ROOTS),
                }))
                .with_client_auth(client)?
        } else if pinned.is_empty() {
            builder
                .with_root_certificates(roots)
                .with_client_auth(client)?
        } else {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| HttpError::TrustStore(error.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedOrWebPki { pinned, webpki }))
                .with_client_auth(client)?
        }
    };
    Ok(tls)
}

/// The client certificate chain and key (`HttpConfig::client_auth`).
type ClientIdentity = Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>;

fn client_identity(config: &HttpConfig) -> Result<ClientIdentity, HttpError> {
    let Some(auth) = &config.client_auth else {
        return Ok(None);
    };
    let shown = auth.certificate.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&auth.certificate)
        .map_err(|e| HttpError::Tls(format!("client certificate {shown}: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::Tls(format!("client certificate {shown}: {e}")))?;
    if chain.is_empty() {
        return Err(HttpError::Tls(format!(
            "client certificate {shown}: no PEM certificate"
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&auth.key)
        .map_err(|e| HttpError::Tls(format!("client key {}: {e}", auth.key.display())))?;
    Ok(Some((chain, key)))
}

/// Finishes a builder with or without the client certificate.
trait WithClientAuth {
    fn with_client_auth(self, identity: ClientIdentity) -> Result<ClientConfig, HttpError>;
}

impl WithClientAuth for rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert> {
    fn with_client_auth(self, identity: ClientIdentity) -> Result<ClientConfig, HttpError> {
        match identity {
            None => Ok(self.with_no_client_auth()),
            Some((chain, key)) => self
                .with_client_auth_cert(chain, key)
                .map_err(|e| HttpError::Tls(format!("client certificate: {e}"))),
        }
    }
}

/// The roots, and the `ServerCertificate` certificates (also in the roots).
fn trust_store(
    config: &HttpConfig,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), HttpError> {
    let mut roots = RootCertStore::empty();
    // Off only in a minimal build (README, Size): then the system bundle
    // and `ServerCertificate` are the only roots.
    #[cfg(feature = "webpki-roots")]
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
        for certificate in &certificates {
            roots
                .add(certificate.clone())
                .map_err(|error| HttpError::TrustStore(format!("{shown}: {error}")))?;
        }
        return Ok((roots, certificates));
    }
    Ok((roots, Vec::new()))
}

/// What the pinned-certificate check needs from a DER certificate.
struct Facts {
    /// `notBefore`, seconds since the Unix epoch.
    not_before: u64,
    /// `notAfter`, seconds since the Unix epoch.
    not_after: u64,
    /// No extended key usage extension, or one listing `serverAuth` or
    /// `anyExtendedKeyUsage` (Go's rule for a TLS server).
    server_auth: bool,
}

/// DER contents of the extKeyUsage OID 2.5.29.37.
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// DER contents of id-kp-serverAuth, 1.3.6.1.5.5.7.3.1.
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// DER contents of anyExtendedKeyUsage, 2.5.29.37.0.
const OID_ANY_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Validity period and extended key usage of a DER certificate.
fn facts(certificate: &[u8]) -> Result<Facts, der::Error> {
    use der::asn1::{AnyRef, GeneralizedTime, UtcTime};
    use der::{Decode, Reader, SliceReader, Tag, TagNumber, Tagged};

    fn time(reader: &mut SliceReader<'_>) -> Result<u64, der::Error> {
        let duration = if Tag::peek(reader)? == Tag::UtcTime {
            UtcTime::decode(reader)?.to_unix_duration()
        } else {
            GeneralizedTime::decode(reader)?.to_unix_duration()
        };
        Ok(duration.as_secs())
    }

    let certificate = AnyRef::from_der(certificate)?;
    let mut outer = SliceReader::new(certificate.value())?;
    let tbs = AnyRef::decode(&mut outer)?;
    let mut fields = SliceReader::new(tbs.value())?;
    let mut field = AnyRef::decode(&mut fields)?;
    if field.tag().number() == TagNumber(0) && field.tag().is_context_specific() {
        field = AnyRef::decode(&mut fields)?; // version, then serial
    }
    let _serial = field;
    let _signature_algorithm = AnyRef::decode(&mut fields)?;
    let _issuer = AnyRef::decode(&mut fields)?;
    let validity = AnyRef::decode(&mut fields)?;
    let mut times = SliceReader::new(validity.value())?;
    let not_before = time(&mut times)?;
    let not_after = time(&mut times)?;
    times.finish()?;
    let _subject = AnyRef::decode(&mut fields)?;
    let _public_key = AnyRef::decode(&mut fields)?;
    let mut server_auth = true;
    while !fields.is_finished() {
        // [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions.
        let field = AnyRef::decode(&mut fields)?;
        if !(field.tag().is_context_specific() && field.tag().number() == TagNumber(3)) {
            continue;
        }
        let mut wrapper = SliceReader::new(field.value())?;
        let list = AnyRef::decode(&mut wrapper)?;
        let mut extensions = SliceReader::new(list.value())?;
        while !extensions.is_finished() {
            let extension = AnyRef::decode(&mut extensions)?;
            let mut parts = SliceReader::new(extension.value())?;
            let id = AnyRef::decode(&mut parts)?;
            if id.value() != OID_EXT_KEY_USAGE {
                continue;
            }
            let mut value = AnyRef::decode(&mut parts)?;
            if value.tag() == Tag::Boolean {
                value = AnyRef::decode(&mut parts)?; // critical, then the value
            }
            let mut octets = SliceReader::new(value.value())?;
            let usages = AnyRef::decode(&mut octets)?;
            let mut usages = SliceReader::new(usages.value())?;
            server_auth = false;
            while !usages.is_finished() {
                let usage = AnyRef::decode(&mut usages)?;
                if usage.value() == OID_SERVER_AUTH || usage.value() == OID_ANY_KEY_USAGE {
                    server_auth = true;
                }
            }
        }
    }
    Ok(Facts {
        not_before,
        not_after,
        server_auth,
    })
}

/// `ServerCertificate` set: a server certificate identical to one of them
/// is trusted directly (as Go does for a leaf in its root pool) after the
/// validity and host name checks; anything else goes to webpki.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self
            .pinned
            .iter()
            .any(|pinned| pinned.as_ref() == end_entity.as_ref())
        {
            return self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let Facts {
            not_before,
            not_after,
            server_auth,
        } = facts(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if !server_auth {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurpose,
            ));
        }
        if now.as_secs() < not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now.as_secs() > not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
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

/// Why an HTTPS connection fails when nothing is trusted.
const NO_ROOTS: &str = "no trusted CA certificates: no system CA bundle \
     (install the ca-certificates package, or set SSL_CERT_FILE) and no ServerCertificate \
     in mender.conf";

/// A verifier that checks nothing: with `refusal` unset (`SkipVerify =
/// true`) it accepts every certificate and signature; with it set (the
/// trust store is empty, see [`NO_ROOTS`]) it refuses every server
/// certificate with that reason, before any signature is looked at.
#[derive(Debug)]
struct SkipVerify {
    provider: Arc<CryptoProvider>,
    refusal: Option<&'static str>,
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
        match self.refusal {
            Some(reason) => Err(rustls::Error::General(reason.into())),
            None => Ok(ServerCertVerified::assertion()),
        }
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
