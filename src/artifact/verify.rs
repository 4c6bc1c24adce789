//! Artifact signature verification: RSA PKCS#1 v1.5 and ECDSA P-256, both
//! over the SHA-256 of the `manifest` member (mender-protocol.md §7.6).
//!
//! Everything here is heap-free and panic-free on any input:
//!
//! * keys come from PEM (`PUBLIC KEY` = SubjectPublicKeyInfo, or
//!   `RSA PUBLIC KEY` = PKCS#1) or SPKI DER, parsed by a small checked DER
//!   reader;
//! * RSA uses a fixed-capacity (4096-bit) Montgomery exponentiation on
//!   32-bit limbs; only public values are involved, so it need not be
//!   constant time, but the final encoded-message comparison is;
//! * ECDSA uses the `p256` crate; the signature may be raw `r || s`
//!   (64 bytes, what mender-artifact 3.x writes) or DER `SEQUENCE{r, s}`.
//!
//! Stack: a key is about 0.5 KiB ([`RsaPublicKey`] holds the modulus
//! inline); an RSA verification needs about 4 KiB of stack on top of that,
//! a PEM load about 1.5 KiB.

mod der;
mod ecdsa;
mod pem;
mod rsa;

pub use der::DerError;
pub use ecdsa::EcdsaP256Key;
pub use rsa::{RsaPublicKey, MAX_RSA_BITS, MIN_RSA_BITS};

use der::Reader;

/// Largest DER body a PEM key may decode to (an RSA-4096 SPKI is 550 bytes).
pub const MAX_KEY_DER_LEN: usize = 1024;

/// DER of OID 1.2.840.113549.1.1.1 (rsaEncryption).
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER of OID 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER of OID 1.2.840.10045.3.1.7 (prime256v1 / secp256r1 / P-256).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

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
        let (kind, der) = pem::decode(pem, &mut buf)?;
        match kind {
            pem::Kind::Spki => Self::from_spki_der(der),
            pem::Kind::Pkcs1Rsa => Self::from_pkcs1_rsa_der(der),
        }
    }

    /// Loads a DER SubjectPublicKeyInfo (RSA or EC P-256).
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let spki = outer.expect(der::SEQUENCE)?;
        outer.finish()?;
        let mut spki = Reader::new(spki);
        let algorithm = spki.expect(der::SEQUENCE)?;
        let key = der::bit_string(spki.expect(der::BIT_STRING)?)?;
        spki.finish()?;

        let mut algorithm = Reader::new(algorithm);
        let oid = algorithm.expect(der::OID)?;
        if oid == OID_RSA {
            // Parameters must be NULL; tolerate them absent.
            if !algorithm.is_empty() {
                let params = algorithm.expect(der::NULL)?;
                if !params.is_empty() {
                    return Err(DerError::BadLength.into());
                }
            }
            algorithm.finish()?;
            Self::from_pkcs1_rsa_der(key)
        } else if oid == OID_EC {
            let (tag, curve) = algorithm.read()?;
            algorithm.finish()?;
            if tag != der::OID {
                // Explicit curve parameters (or implicitCA): not supported.
                return Err(KeyError::UnsupportedCurve);
            }
            if curve != OID_P256 {
                return Err(KeyError::UnsupportedCurve);
            }
            EcdsaP256Key::from_sec1(key).map(Self::EcdsaP256)
        } else {
            Err(KeyError::UnsupportedAlgorithm)
        }
    }

    /// Loads a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus, publicExponent }`.
    fn from_pkcs1_rsa_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut outer = Reader::new(der);
        let seq = outer.expect(der::SEQUENCE)?;
        outer.finish()?;
        let mut seq = Reader::new(seq);
        let n = der::unsigned_integer(seq.expect(der::INTEGER)?)?;
        let e = der::unsigned_integer(seq.expect(der::INTEGER)?)?;
        seq.finish()?;
        RsaPublicKey::from_be(n, e).map(Self::Rsa)
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
