//! `X-MEN-Signature` verification (digest section 2.2).

use base64::Engine as _;
use p256::pkcs8::DecodePublicKey as _;
use signature_compat::Verifier as _;

/// Re-exported trait path: every key crate re-exports `signature`.
mod signature_compat {
    pub(crate) use p256::ecdsa::signature::Verifier;
}

/// The type of a device key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 (signature over the raw body).
    Ed25519,
    /// ECDSA P-256 (SHA-256, DER signature).
    EcdsaP256,
    /// RSA (PKCS#1 v1.5, SHA-256).
    Rsa,
}

/// Parsed device public key.
pub(crate) enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>),
}

impl PublicKey {
    /// Parses a SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`).
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        if !pem.trim_start().starts_with("-----BEGIN PUBLIC KEY-----") {
            return Err(
                "pubkey is not a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`)".into(),
            );
        }
        if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
            return Ok(Self::Ed25519(k));
        }
        if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
            return Ok(Self::P256(k));
        }
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_pem(pem) {
            return Ok(Self::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(k))));
        }
        Err("pubkey is not an Ed25519, ECDSA P-256 or RSA public key".into())
    }

    /// The key type.
    pub(crate) fn key_type(&self) -> KeyType {
        match self {
            Self::Ed25519(_) => KeyType::Ed25519,
            Self::P256(_) => KeyType::EcdsaP256,
            Self::Rsa(_) => KeyType::Rsa,
        }
    }

    /// Verifies the base64 `X-MEN-Signature` value over `body`.
    pub(crate) fn verify(&self, body: &[u8], sig_b64: &str) -> Result<(), String> {
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64.trim())
            .map_err(|e| format!("X-MEN-Signature is not standard padded base64: {e}"))?;
        let ok = match self {
            Self::Ed25519(k) => {
                let s = ed25519_dalek::Signature::from_slice(&sig).map_err(|_| {
                    format!("Ed25519 signature must be 64 raw bytes, got {}", sig.len())
                })?;
                k.verify(body, &s).is_ok()
            }
            Self::P256(k) => {
                let s = p256::ecdsa::Signature::from_der(&sig).map_err(|_| {
                    format!(
                        "ECDSA signature is not ASN.1 DER SEQUENCE {{r, s}} ({} bytes{})",
                        sig.len(),
                        if sig.len() == 64 {
                            ", looks like raw r||s"
                        } else {
                            ""
                        }
                    )
                })?;
                k.verify(body, &s).is_ok()
            }
            Self::Rsa(k) => {
                let s = rsa::pkcs1v15::Signature::try_from(sig.as_slice())
                    .map_err(|e| format!("bad RSA signature encoding: {e}"))?;
                k.verify(body, &s).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{:?} signature does not verify over the exact body bytes",
                self.key_type()
            ))
        }
    }
}
