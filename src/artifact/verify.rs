//! Artifact signature verification: RSA PKCS#1 v1.5 and ECDSA P-256, both
//! over the SHA-256 of the `manifest` member (mender-protocol.md §7.6).
//!
//! Everything here is heap-free and panic-free on any input:
//!
//! * keys come from PEM (`PUBLIC KEY` = SubjectPublicKeyInfo, or
//!   `RSA PUBLIC KEY` = PKCS#1, read by `pem-rfc7468`) or SPKI DER, parsed
//!   with the `spki` and `pkcs1` structures of the `der` crate, borrowed
//!   from the input;
//! * RSA uses `crypto-bigint`'s fixed-width (4096-bit) Montgomery
//!   arithmetic, the bignum under the `rsa` crate; only public values are
//!   involved, so it need not be constant time, but the final
//!   encoded-message comparison is;
//! * ECDSA uses the `p256` crate; the signature may be raw `r || s`
//!   (64 bytes, what mender-artifact 3.x writes) or DER `SEQUENCE{r, s}`.
//!
//! Stack: a key is about 0.5 KiB ([`RsaPublicKey`] holds the modulus
//! inline). On top of that (measured on x86_64, release build) a PEM load
//! needs about 1.5 KiB, an ECDSA verification about 7 KiB and an RSA
//! verification about 13 KiB, whatever the key size: `crypto-bigint`'s
//! `FixedMontyParams` computes `R mod n` and `R^2 mod n` with a 4096-bit
//! division that alone takes about 9 KiB.

mod ecdsa;
mod rsa;

pub use ecdsa::EcdsaP256Key;
pub use rsa::{RsaPublicKey, MAX_RSA_BITS, MIN_RSA_BITS};

/// Why key DER was refused: the `der` crate's error (kind and position).
pub use ::der::Error as DerError;

use ::der::asn1::{Null, ObjectIdentifier};
use ::der::Decode as _;
use spki::SubjectPublicKeyInfoRef;

/// Largest DER body a PEM key may decode to (an RSA-4096 SPKI is 550 bytes).
pub const MAX_KEY_DER_LEN: usize = 1024;

/// id-ecPublicKey (RFC 5480).
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / secp256r1 / P-256 (RFC 5480).
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A public key that may verify `manifest.sig`.
///
/// The RSA variant holds its modulus inline (no heap), so this enum is
/// about half a kilobyte.
#[derive(Clone, Debug)]
#[non_exhaustive]
#[allow(clippy::large_enum_variant)] // heap-free by design: no Box.
pub enum VerifyKey {
    /// RSA, 2048..=4096 bits; signatures are PKCS#1 v1.5 with SHA-256.
    Rsa(RsaPublicKey),
    /// ECDSA over NIST P-256; signatures are raw `r || s` or DER.
    EcdsaP256(EcdsaP256Key),
}

/// Why a key could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// No `-----BEGIN <label>-----` / `-----END <label>-----` armor, or the
    /// END label does not match the BEGIN label.
    NotPem,
    /// A PEM block that is not a public key (`PRIVATE KEY`, `CERTIFICATE`...).
    NotPublicKey,
    /// The PEM body is not valid base64.
    Base64,
    /// The DER body is longer than [`MAX_KEY_DER_LEN`].
    TooLong,
    /// The DER structure is malformed.
    Der(DerError),
    /// A well-formed key of an algorithm artifacts cannot use (Ed25519,
    /// DSA, ...). Mender accepts only RSA and ECDSA keys.
    UnsupportedAlgorithm,
    /// An EC key on a curve other than P-256.
    UnsupportedCurve,
    /// An RSA modulus outside 2048..=4096 bits.
    RsaModulusSize {
        /// Bit length of the refused modulus.
        bits: u32,
    },
    /// An RSA public exponent that is even, below 3 or wider than 32 bits.
    RsaExponent,
    /// An RSA modulus that cannot be one (even).
    RsaModulus,
    /// An EC public key that is not a valid P-256 point.
    EcPoint,
}

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotPem => f.write_str("not a PEM block"),
            Self::NotPublicKey => f.write_str("PEM block is not a PUBLIC KEY"),
            Self::Base64 => f.write_str("invalid base64 in PEM body"),
            Self::TooLong => write!(f, "key DER longer than {MAX_KEY_DER_LEN} bytes"),
            Self::Der(e) => write!(f, "malformed key DER: {e}"),
            Self::UnsupportedAlgorithm => {
                f.write_str("unsupported key algorithm (only RSA and ECDSA P-256)")
            }
            Self::UnsupportedCurve => f.write_str("unsupported EC curve (only P-256)"),
            Self::RsaModulusSize { bits } => write!(
                f,
                "RSA modulus of {bits} bits (supported: {MIN_RSA_BITS}..={MAX_RSA_BITS})"
            ),
            Self::RsaExponent => f.write_str("RSA public exponent not odd, >= 3 and 32-bit"),
            Self::RsaModulus => f.write_str("RSA modulus is even"),
            Self::EcPoint => f.write_str("EC public key is not a valid P-256 point"),
        }
    }
}

impl core::error::Error for KeyError {}

impl From<DerError> for KeyError {
    fn from(e: DerError) -> Self {
        Self::Der(e)
    }
}

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not match the key and message.
    Invalid,
    /// Wrong length: an RSA signature must be exactly as long as the
    /// modulus; an ECDSA one 64 bytes (raw) or a DER sequence.
    Length,
    /// Not a well-formed signature for this key type (bad DER, ECDSA `r`/`s`
    /// zero or not below the group order, RSA value not below the modulus).
    Malformed,
}

impl core::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Invalid => "signature does not match",
            Self::Length => "signature has the wrong length for the key",
            Self::Malformed => "malformed signature",
        })
    }
}

impl core::error::Error for SignatureError {}

impl VerifyKey {
    /// Loads the first PEM block of `pem`: `-----BEGIN PUBLIC KEY-----`
    /// (SubjectPublicKeyInfo, RSA or EC P-256) or `-----BEGIN RSA PUBLIC
    /// KEY-----` (PKCS#1). Text before the block is ignored.
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let mut buf = [0u8; MAX_KEY_DER_LEN];
        let (kind, der) = decode_pem(pem, &mut buf)?;
        match kind {
            PemKind::Spki => Self::from_spki_der(der),
            PemKind::Pkcs1Rsa => Self::from_pkcs1_rsa_der(der),
        }
    }

    /// Loads a DER SubjectPublicKeyInfo (RSA or EC P-256).
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der)?;
        let key = spki
            .subject_public_key
            .as_bytes()
            .ok_or(DerError::from(::der::Tag::BitString.value_error()))?;
        let algorithm = spki.algorithm;
        if algorithm.oid == pkcs1::ALGORITHM_OID {
            // Parameters must be NULL; tolerate them absent.
            if let Some(parameters) = algorithm.parameters {
                Null::try_from(parameters)?;
            }
            Self::from_pkcs1_rsa_der(key)
        } else if algorithm.oid == OID_EC {
            // Only a named curve, and only P-256 (no explicit parameters).
            let curve = algorithm
                .parameters
                .and_then(|parameters| ObjectIdentifier::try_from(parameters).ok());
            if curve != Some(OID_P256) {
                return Err(KeyError::UnsupportedCurve);
            }
            EcdsaP256Key::from_sec1(key).map(Self::EcdsaP256)
        } else {
            Err(KeyError::UnsupportedAlgorithm)
        }
    }

    /// Loads a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus, publicExponent }`.
    fn from_pkcs1_rsa_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = pkcs1::RsaPublicKey::<::der::asn1::UintRef<'_>>::from_der(der)?;
        RsaPublicKey::from_be(key.modulus.as_bytes(), key.public_exponent.as_bytes()).map(Self::Rsa)
    }

    /// Checks `signature` (as stored in `manifest.sig`, base64-decoded) over
    /// a message whose SHA-256 is `digest`.
    ///
    /// RSA: PKCS#1 v1.5; the signature must be exactly as long as the
    /// modulus (as Go's `rsa.VerifyPKCS1v15` requires). ECDSA: 64 bytes are
    /// read as raw `r || s`, anything else as DER `SEQUENCE{r, s}`.
    ///
    /// # Errors
    /// See [`SignatureError`].
    pub fn verify_sha256(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError> {
        match self {
            Self::Rsa(key) => key.verify_sha256(digest, signature),
            Self::EcdsaP256(key) => key.verify_sha256(digest, signature),
        }
    }

    /// Short algorithm name for log messages: `"RSA-2048"`, `"RSA-3072"`,
    /// `"RSA-4096"`, `"RSA"` (other sizes) or `"ECDSA-P256"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Rsa(key) => match key.bits() {
                2048 => "RSA-2048",
                3072 => "RSA-3072",
                4096 => "RSA-4096",
                _ => "RSA",
            },
            Self::EcdsaP256(_) => "ECDSA-P256",
        }
    }
}

/// Which public-key structure a PEM block holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PemKind {
    /// `PUBLIC KEY`: SubjectPublicKeyInfo.
    Spki,
    /// `RSA PUBLIC KEY`: PKCS#1 RSAPublicKey.
    Pkcs1Rsa,
}

/// Decodes the first PEM block of `pem` into `buf` with `pem-rfc7468`;
/// returns its kind and DER bytes.
///
/// Text before `-----BEGIN ` and after the first block's END line is
/// ignored (`pem-rfc7468` wants the END line to close its input). The line
/// width of the body is taken from its first line, so keys wrapped at 64
/// (OpenSSL, Go) or 76 columns both load. Encapsulated headers
/// (`Proc-Type: ...`) never occur in public keys and are refused.
fn decode_pem<'b>(pem: &[u8], buf: &'b mut [u8]) -> Result<(PemKind, &'b [u8]), KeyError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    const DASHES: &[u8] = b"-----";
    let find = |haystack: &[u8], from: usize, needle: &[u8]| {
        haystack
            .get(from..)?
            .windows(needle.len())
            .position(|window| window == needle)
            .map(|at| at + from)
    };
    let begin = find(pem, 0, BEGIN).ok_or(KeyError::NotPem)?;
    let end = find(pem, begin + BEGIN.len(), END).ok_or(KeyError::NotPem)?;
    let end = find(pem, end + END.len(), DASHES).ok_or(KeyError::NotPem)? + DASHES.len();
    let block = pem.get(begin..end).ok_or(KeyError::NotPem)?;

    let kind = match pem_rfc7468::decode_label(block).map_err(|_| KeyError::NotPem)? {
        "PUBLIC KEY" => PemKind::Spki,
        "RSA PUBLIC KEY" => PemKind::Pkcs1Rsa,
        _ => return Err(KeyError::NotPublicKey),
    };
    let base64_error = |error| match error {
        pem_rfc7468::Error::Base64(_)
        | pem_rfc7468::Error::HeaderDisallowed
        | pem_rfc7468::Error::EncapsulatedText => KeyError::Base64,
        _ => KeyError::NotPem,
    };
    let mut decoder = pem_rfc7468::Decoder::new_detect_wrap(block).map_err(base64_error)?;
    let out = buf
        .get_mut(..decoder.remaining_len())
        .ok_or(KeyError::TooLong)?;
    let der = decoder.decode(out).map_err(base64_error)?;
    if !decoder.is_finished() {
        return Err(KeyError::Base64);
    }
    Ok((kind, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_armor() {
        let mut buf = [0u8; 16];
        let pem = b"junk\n-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n\nmore";
        assert_eq!(
            decode_pem(pem, &mut buf),
            Ok((PemKind::Spki, &b"hello"[..]))
        );
        let pem = b"-----BEGIN RSA PUBLIC KEY-----\r\naGVs\r\nbG8=\r\n-----END RSA PUBLIC KEY-----";
        assert_eq!(
            decode_pem(pem, &mut buf),
            Ok((PemKind::Pkcs1Rsa, &b"hello"[..]))
        );
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END RSA PUBLIC KEY-----";
        assert_eq!(decode_pem(pem, &mut buf), Err(KeyError::NotPem));
        let pem = b"-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----";
        assert_eq!(decode_pem(pem, &mut buf), Err(KeyError::NotPublicKey));
        let pem = b"-----BEGIN PUBLIC KEY-----\naGV*bG8=\n-----END PUBLIC KEY-----";
        assert_eq!(decode_pem(pem, &mut buf), Err(KeyError::Base64));
        let pem = b"-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n\naGVsbG8=\n-----END PUBLIC KEY-----";
        assert_eq!(decode_pem(pem, &mut buf), Err(KeyError::Base64));
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8gaGVsbG8gaGVsbG8=\n-----END PUBLIC KEY-----";
        assert_eq!(decode_pem(pem, &mut buf), Err(KeyError::TooLong));
        assert_eq!(decode_pem(b"", &mut buf), Err(KeyError::NotPem));
        assert_eq!(
            decode_pem(b"-----BEGIN PUBLIC KEY-----", &mut buf),
            Err(KeyError::NotPem)
        );
    }

    fn fixture_der(pem: &[u8]) -> std::vec::Vec<u8> {
        let mut buf = [0u8; MAX_KEY_DER_LEN];
        decode_pem(pem, &mut buf).unwrap().1.to_vec()
    }

    /// Replaces the first occurrence of `from` in `der` by `to`.
    fn patched(der: &[u8], from: &[u8], to: &[u8]) -> std::vec::Vec<u8> {
        let at = der.windows(from.len()).position(|w| w == from).unwrap();
        let mut out = der.to_vec();
        out[at..at + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn spki_structure() {
        let rsa = fixture_der(include_bytes!("../../tests/fixtures/keys/rsa2048.pub.pem"));
        assert!(matches!(
            VerifyKey::from_spki_der(&rsa),
            Ok(VerifyKey::Rsa(_))
        ));
        // rsaEncryption parameters: NULL, never anything else.
        let oid_and_null = [0x01, 0x01, 0x01, 0x05, 0x00];
        let bad = patched(&rsa, &oid_and_null, &[0x01, 0x01, 0x01, 0x04, 0x00]);
        assert!(matches!(
            VerifyKey::from_spki_der(&bad),
            Err(KeyError::Der(_))
        ));
        // A BIT STRING with unused bits.
        let bits = [0x03, 0x82, 0x01, 0x0f, 0x00];
        let bad = patched(&rsa, &bits, &[0x03, 0x82, 0x01, 0x0f, 0x01]);
        assert!(matches!(
            VerifyKey::from_spki_der(&bad),
            Err(KeyError::Der(_))
        ));

        let ec = fixture_der(include_bytes!("../../tests/fixtures/keys/ec256.pub.pem"));
        assert!(matches!(
            VerifyKey::from_spki_der(&ec),
            Ok(VerifyKey::EcdsaP256(_))
        ));
        // Another named curve.
        let p256 = [0x03, 0x01, 0x07];
        let bad = patched(&ec, &p256, &[0x03, 0x01, 0x08]);
        assert_eq!(
            VerifyKey::from_spki_der(&bad).err(),
            Some(KeyError::UnsupportedCurve)
        );
        // Curve parameters that are not an OID.
        let bad = patched(&ec, &[0x06, 0x08, 0x2a], &[0x04, 0x08, 0x2a]);
        assert_eq!(
            VerifyKey::from_spki_der(&bad).err(),
            Some(KeyError::UnsupportedCurve)
        );
    }

    #[test]
    fn pem_truncation_never_panics() {
        let pem = b"-----BEGIN PUBLIC KEY-----\naGVsbG8=\n-----END PUBLIC KEY-----\n";
        let mut buf = [0u8; 16];
        for len in 0..pem.len() {
            let _ = decode_pem(&pem[..len], &mut buf);
        }
    }
}
