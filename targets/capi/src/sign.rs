//! The device key helper: ECDSA P-256 with deterministic nonces (RFC 6979),
//! so a board needs no random source to sign; only making the secret
//! needs one (32 random bytes, checked by [`secret_key`]).
//!
//! | what | format |
//! |---|---|
//! | secret | 32 bytes, big-endian scalar in `1..n` |
//! | public key | SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the only form the server accepts |
//! | signature | `X-MEN-Signature`: base64 (padded) of ASN.1 DER `SEQUENCE { r, s }` over SHA-256 of the body |

use base64ct::{Base64, Encoding as _};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};

/// DER of `SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 }` up to the
/// uncompressed point (65 bytes) that follows.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const PEM_BEGIN: &[u8] = b"-----BEGIN PUBLIC KEY-----\n";
const PEM_END: &[u8] = b"-----END PUBLIC KEY-----\n";

/// Bytes of the PEM (without a NUL).
pub(crate) const PUBLIC_KEY_PEM_LEN: usize = 178;
/// Longest base64 signature (without a NUL).
pub(crate) const SIGNATURE_B64_MAX: usize = 96;

/// The signing key for `secret`, or `None` when it is not a valid scalar.
pub(crate) fn secret_key(secret: &[u8; 32]) -> Option<SigningKey> {
    SigningKey::from_slice(secret).ok()
}

/// Appends to `out` at `*at`; `false` when it does not fit.
fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> bool {
    match out.get_mut(*at..*at + bytes.len()) {
        Some(target) => {
            target.copy_from_slice(bytes);
            *at += bytes.len();
            true
        }
        None => false,
    }
}

/// Writes the public key PEM ([`PUBLIC_KEY_PEM_LEN`] bytes) into `out`.
pub(crate) fn public_key_pem(key: &SigningKey, out: &mut [u8]) -> Option<usize> {
    let point = key.verifying_key().to_sec1_point(false);
    let mut der = [0u8; 91];
    let (prefix, rest) = der.split_at_mut(SPKI_PREFIX.len());
    prefix.copy_from_slice(&SPKI_PREFIX);
    rest.copy_from_slice(point.as_bytes().get(..65)?);
    let mut text = [0u8; 124];
    let len = Base64::encode(&der, &mut text).ok()?.len();
    let mut at = 0;
    let mut ok = put(out, &mut at, PEM_BEGIN);
    for line in text.get(..len)?.chunks(64) {
        ok = ok && put(out, &mut at, line) && put(out, &mut at, b"\n");
    }
    ok = ok && put(out, &mut at, PEM_END);
    ok.then_some(at)
}

/// One DER INTEGER for a 32-byte big-endian unsigned value.
fn der_integer(value: &[u8], out: &mut [u8], at: &mut usize) -> bool {
    let start = value
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(value.len() - 1);
    let digits = value.get(start..).unwrap_or_default();
    let pad = digits.first().is_some_and(|&b| b & 0x80 != 0);
    let len = digits.len() + usize::from(pad);
    put(out, at, &[0x02, len as u8]) && (!pad || put(out, at, &[0])) && put(out, at, digits)
}

/// Signs `body` and writes the base64 DER signature into `out`.
pub(crate) fn sign(key: &SigningKey, body: &[u8], out: &mut [u8]) -> Option<usize> {
    let signature: Signature = key.try_sign(body).ok()?;
    let bytes = signature.to_bytes();
    let (r, s) = bytes.split_at(32);
    let mut integers = [0u8; 70];
    let mut len = 0;
    if !(der_integer(r, &mut integers, &mut len) && der_integer(s, &mut integers, &mut len)) {
        return None;
    }
    let mut der = [0u8; 72];
    let mut at = 0;
    if !(put(&mut der, &mut at, &[0x30, len as u8]) && put(&mut der, &mut at, integers.get(..len)?))
    {
        return None;
    }
    Base64::encode(der.get(..at)?, out).ok().map(str::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn signatures_verify_as_der() {
        let secret = [7u8; 32];
        let key = secret_key(&secret).unwrap();
        let mut pem = [0u8; PUBLIC_KEY_PEM_LEN];
        assert_eq!(public_key_pem(&key, &mut pem), Some(PUBLIC_KEY_PEM_LEN));
        let text = core::str::from_utf8(&pem).unwrap();
        assert!(
            text.starts_with("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
        );
        assert!(secret_key(&[0u8; 32]).is_none());
        assert!(secret_key(&[0xff; 32]).is_none());
        for body in [&b""[..], b"{\"id_data\":\"{}\"}", &[0x80; 300]] {
            let mut out = [0u8; SIGNATURE_B64_MAX];
            let len = sign(&key, body, &mut out).unwrap();
            let mut der = [0u8; 72];
            let n = Base64::decode(&out[..len], &mut der).unwrap().len();
            let signature = Signature::from_der(&der[..n]).unwrap();
            key.verifying_key().verify(body, &signature).unwrap();
        }
    }
}
