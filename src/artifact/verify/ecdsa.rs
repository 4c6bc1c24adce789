//! ECDSA P-256 (SHA-256) verification via the `p256` crate. Signatures are
//! raw `r || s` (64 bytes) or DER `SEQUENCE { INTEGER r, INTEGER s }`.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};

use super::{KeyError, SignatureError};

/// Bytes of one scalar (`r` or `s`); a raw signature is `r || s`.
const SCALAR_LEN: usize = 32;

/// An ECDSA public key on NIST P-256.
#[derive(Clone, Debug)]
pub struct EcdsaP256Key(VerifyingKey);

impl EcdsaP256Key {
    /// Loads a SEC1 point (`04 || x || y`, or compressed `02/03 || x`).
    pub(super) fn from_sec1(point: &[u8]) -> Result<Self, KeyError> {
        VerifyingKey::from_sec1_bytes(point)
            .map(Self)
            .map_err(|_| KeyError::EcPoint)
    }

    /// The underlying `p256` verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    #[inline(never)]
    pub(super) fn verify_sha256(
        &self,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let signature = if signature.len() == 2 * SCALAR_LEN {
            Signature::from_slice(signature).map_err(|_| SignatureError::Malformed)?
        } else {
            Signature::from_der(signature).map_err(|_| SignatureError::Malformed)?
        };
        self.0
            .verify_prehash(digest, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}
