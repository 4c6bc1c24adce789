//! ECDSA P-256 (SHA-256) verification via the `p256` crate. Signatures are
//! raw `r || s` (64 bytes) or DER `SEQUENCE { INTEGER r, INTEGER s }`.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};

use super::der::{self, Reader};
use super::{KeyError, SignatureError};

/// Bytes of one scalar (`r` or `s`).
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
            parse_der(signature)?
        };
        self.0
            .verify_prehash(digest, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Parses a DER ECDSA signature into a fixed-size one.
fn parse_der(input: &[u8]) -> Result<Signature, SignatureError> {
    let parse = || -> Result<([u8; SCALAR_LEN], [u8; SCALAR_LEN]), der::DerError> {
        let mut outer = Reader::new(input);
        let seq = outer.expect(der::SEQUENCE)?;
        outer.finish()?;
        let mut seq = Reader::new(seq);
        let r = der::unsigned_integer(seq.expect(der::INTEGER)?)?;
        let s = der::unsigned_integer(seq.expect(der::INTEGER)?)?;
        seq.finish()?;
        Ok((left_pad(r)?, left_pad(s)?))
    };
    let (r, s) = parse().map_err(|_| SignatureError::Malformed)?;
    Signature::from_scalars(r, s).map_err(|_| SignatureError::Malformed)
}

/// Left-pads a big-endian magnitude to 32 bytes.
fn left_pad(magnitude: &[u8]) -> Result<[u8; SCALAR_LEN], der::DerError> {
    let mut out = [0u8; SCALAR_LEN];
    let start = SCALAR_LEN
        .checked_sub(magnitude.len())
        .ok_or(der::DerError::BadInteger)?;
    out.get_mut(start..)
        .ok_or(der::DerError::BadInteger)?
        .copy_from_slice(magnitude);
    Ok(out)
}
