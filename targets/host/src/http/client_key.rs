//! Client-certificate keys for mutual TLS (AWS IoT's MQTT broker, a Mender
//! server behind `HttpsClient.Certificate`/`Key`), signed with the same
//! RustCrypto crates the device key uses (no second copy in ring).
//!
//! | key (PEM: PKCS#8, SEC1 or PKCS#1) | TLS signature schemes offered |
//! |---|---|
//! | ECDSA P-256 | `ecdsa_secp256r1_sha256` (DER signature) |
//! | RSA (2048..) | `rsa_pss_rsae_sha256/384/512` (TLS 1.3 and 1.2), then `rsa_pkcs1_sha256/384/512` (TLS 1.2) |
//! | Ed25519 | `ed25519` |
//!
//! The RSA private-key operation is blinded (randomized signer, kernel
//! random source).

use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::{Signer, SigningKey};
use rustls::{Error, SignatureAlgorithm, SignatureScheme};
use std::sync::Arc;

/// A loaded client key.
#[derive(Clone)]
enum Key {
    EcdsaP256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl core::fmt::Debug for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret.
        f.write_str(match self {
            Self::EcdsaP256(_) => "ClientKey(ECDSA P-256)",
            Self::Rsa(_) => "ClientKey(RSA)",
            Self::Ed25519(_) => "ClientKey(Ed25519)",
        })
    }
}

/// Loads `der` as one of the supported key kinds.
///
/// # Errors
/// Any other key (P-384 and other curves, DSA...), or a damaged one.
pub(super) fn load(der: &PrivateKeyDer<'_>) -> Result<Arc<dyn SigningKey>, Error> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let unsupported = || {
        Error::General(
            "the client key is not an ECDSA P-256, RSA or Ed25519 key (PKCS#8, SEC1 or PKCS#1)"
                .into(),
        )
    };
    let key = match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            let bytes = pkcs8.secret_pkcs8_der();
            if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_der(bytes) {
                Key::EcdsaP256(key)
            } else if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_der(bytes) {
                Key::Rsa(Box::new(key))
            } else if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_der(bytes) {
                Key::Ed25519(Box::new(key))
            } else {
                return Err(unsupported());
            }
        }
        PrivateKeyDer::Sec1(sec1) => p256::SecretKey::from_sec1_der(sec1.secret_sec1_der())
            .map(|key| Key::EcdsaP256(key.into()))
            .map_err(|_| unsupported())?,
        PrivateKeyDer::Pkcs1(pkcs1) => rsa::RsaPrivateKey::from_pkcs1_der(pkcs1.secret_pkcs1_der())
            .map(|key| Key::Rsa(Box::new(key)))
            .map_err(|_| unsupported())?,
        _ => return Err(unsupported()),
    };
    Ok(Arc::new(ClientKey(key)))
}

/// [`SigningKey`] over a [`Key`].
#[derive(Debug)]
struct ClientKey(Key);

/// RSA schemes in preference order.
const RSA_SCHEMES: [SignatureScheme; 6] = [
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

impl SigningKey for ClientKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let scheme = match &self.0 {
            Key::EcdsaP256(_) => Some(SignatureScheme::ECDSA_NISTP256_SHA256)
                .filter(|scheme| offered.contains(scheme)),
            Key::Ed25519(_) => {
                Some(SignatureScheme::ED25519).filter(|scheme| offered.contains(scheme))
            }
            Key::Rsa(_) => RSA_SCHEMES
                .into_iter()
                .find(|scheme| offered.contains(scheme)),
        }?;
        Some(Box::new(ClientSigner {
            key: self.0.clone(),
            scheme,
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.0 {
            Key::EcdsaP256(_) => SignatureAlgorithm::ECDSA,
            Key::Rsa(_) => SignatureAlgorithm::RSA,
            Key::Ed25519(_) => SignatureAlgorithm::ED25519,
        }
    }
}

/// One handshake's signer.
#[derive(Debug)]
struct ClientSigner {
    key: Key,
    scheme: SignatureScheme,
}

impl Signer for ClientSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let failed = || Error::General("signing with the client key failed".into());
        let mut rng = getrandom::SysRng;
        match (&self.key, self.scheme) {
            (Key::EcdsaP256(key), _) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                Ok(signature.to_der().as_bytes().to_vec())
            }
            (Key::Ed25519(key), _) => {
                use ed25519_dalek::Signer as _;
                Ok(key.sign(message).to_bytes().to_vec())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PSS_SHA256) => {
                rsa::pss::SigningKey::<sha2::Sha256>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PSS_SHA384) => {
                rsa::pss::SigningKey::<sha2::Sha384>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PSS_SHA512) => {
                rsa::pss::SigningKey::<sha2::Sha512>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PKCS1_SHA256) => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PKCS1_SHA384) => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(key), SignatureScheme::RSA_PKCS1_SHA512) => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(key.as_ref().clone())
                    .try_sign_with_rng(&mut rng, message)
                    .map(|s| s.to_vec())
                    .map_err(|_| failed())
            }
            (Key::Rsa(_), _) => Err(failed()),
        }
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}
