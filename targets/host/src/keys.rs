//! The device authentication key: load, generate, sign auth requests.
//!
//! | what | rule |
//! |---|---|
//! | file | `<DATA>/mender-agent.pem`, mode 0600, replaced atomically (the temp file is created 0600, so the key is never readable by others) |
//! | generated type | [`KeyType::Ed25519`] by default; ECDSA P-256 and RSA 3072 (the Go client's choice) on request |
//! | formats read | PKCS#8 (`BEGIN PRIVATE KEY`: Ed25519, P-256, RSA), SEC1 (`BEGIN EC PRIVATE KEY`), PKCS#1 (`BEGIN RSA PRIVATE KEY`) |
//! | formats written | PKCS#8 (v1, as OpenSSL writes) for Ed25519 and P-256; PKCS#1 for RSA (as the Go client writes it) |
//! | public key | SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the only form the server accepts |
//! | static key (`Security.AuthPrivateKey`) | loaded only; never generated or replaced |
//!
//! Signatures (`X-MEN-Signature`, base64 standard padded, over the exact
//! body bytes):
//!
//! | key | signed | encoding |
//! |---|---|---|
//! | Ed25519 | the body (pure Ed25519) | raw 64 bytes |
//! | ECDSA P-256 | SHA-256 of the body | ASN.1 DER `SEQUENCE { r, s }` |
//! | RSA | SHA-256 of the body | PKCS#1 v1.5, modulus-sized |

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::Signer as _;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding};

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Largest key file read.
const MAX_KEY_FILE_LEN: usize = 64 * 1024;
/// RSA modulus size generated (as the Go client).
pub const RSA_BITS: usize = 3072;
/// The generated key's file name in `<DATA>`.
pub const KEY_FILE_NAME: &str = "mender-agent.pem";

/// Key algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// Ed25519 (small, fast, deterministic signatures).
    #[default]
    Ed25519,
    /// ECDSA on NIST P-256 with SHA-256.
    EcdsaP256,
    /// RSA 3072, PKCS#1 v1.5 signatures with SHA-256.
    Rsa3072,
}

/// Why the key could not be loaded, generated, stored or used.
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    Io(PathBuf, io::Error),
    /// The file is not a PEM private key of a supported type.
    Unsupported(PathBuf),
    /// The operating system's random source failed.
    Random,
    /// Key generation, encoding or signing failed in the crypto library.
    Crypto(&'static str),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(path, error) => write!(f, "device key {}: {error}", path.display()),
            Self::Unsupported(path) => write!(
                f,
                "device key {} is not an Ed25519, ECDSA P-256 or RSA private key in PEM",
                path.display()
            ),
            Self::Random => f.write_str("the system random number generator failed"),
            Self::Crypto(what) => write!(f, "device key: {what} failed"),
        }
    }
}

impl std::error::Error for KeyError {}

enum Secret {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha256>>),
}

/// A device private key and its public key in SPKI PEM.
pub struct DeviceKey {
    secret: Secret,
    public_key_pem: String,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("DeviceKey")
            .field("type", &self.key_type())
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| KeyError::Random)?;
    Ok(bytes)
}

impl DeviceKey {
    fn from_secret(secret: Secret) -> Result<Self, KeyError> {
        let public_key_pem = match &secret {
            Secret::Ed25519(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            Secret::EcdsaP256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            Secret::Rsa(key) => key
                .as_ref()
                .as_ref()
                .to_public_key()
                .to_public_key_pem(LineEnding::LF),
        }
        .map_err(|_| KeyError::Crypto("public key encoding"))?;
        Ok(Self {
            secret,
            public_key_pem,
        })
    }

    /// Generates a new key from the system random source. RSA 3072 takes
    /// seconds on small CPUs.
    ///
    /// # Errors
    /// [`KeyError::Random`] or [`KeyError::Crypto`].
    pub fn generate(key_type: KeyType) -> Result<Self, KeyError> {
        let secret = match key_type {
            KeyType::Ed25519 => {
                Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&random_bytes()?))
            }
            KeyType::EcdsaP256 => loop {
                // A random 256-bit string is a valid scalar except with
                // probability ~2^-32; draw again then.
                let bytes: [u8; 32] = random_bytes()?;
                if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                    break Secret::EcdsaP256(key);
                }
            },
            #[cfg(feature = "rsa-keygen")]
            KeyType::Rsa3072 => {
                let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
                let key = rsa::RsaPrivateKey::new(&mut rng, RSA_BITS)
                    .map_err(|_| KeyError::Crypto("RSA key generation"))?;
                Secret::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
            }
            // A minimal build (README, Size): RSA keys are loaded and used,
            // not made.
            #[cfg(not(feature = "rsa-keygen"))]
            KeyType::Rsa3072 => {
                return Err(KeyError::Crypto(
                    "RSA key generation (not in this build: feature rsa-keygen; \
                     set DeviceKeyType or install a key)",
                ))
            }
        };
        Self::from_secret(secret)
    }

    /// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1); `None` when it is
    /// none of the supported types.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let secret = if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            Secret::Ed25519(key)
        } else if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
            Secret::EcdsaP256(key)
        } else if let Ok(key) = p256::SecretKey::from_sec1_pem(pem) {
            Secret::EcdsaP256(key.into())
        } else if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            Secret::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
        } else if let Ok(key) = rsa::RsaPrivateKey::from_pkcs1_pem(pem) {
            Secret::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
        } else {
            return None;
        };
        Self::from_secret(secret).ok()
    }

    /// The private key as PEM (PKCS#8; PKCS#1 for RSA).
    ///
    /// # Errors
    /// [`KeyError::Crypto`] when encoding fails.
    pub fn to_pem(&self) -> Result<zeroize::Zeroizing<String>, KeyError> {
        let failed = |_| KeyError::Crypto("private key encoding");
        match &self.secret {
            // PKCS#8 v1 (no embedded public key): OpenSSL 3.0 cannot read
            // the v2 form ed25519-dalek writes by default.
            Secret::Ed25519(key) => ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: key.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(failed),
            Secret::EcdsaP256(key) => key.to_pkcs8_pem(LineEnding::LF).map_err(failed),
            Secret::Rsa(key) => {
                let pem = key.as_ref().as_ref().to_pkcs1_pem(LineEnding::LF);
                pem.map_err(|_| KeyError::Crypto("private key encoding"))
            }
        }
    }

    /// The key's algorithm.
    pub fn key_type(&self) -> KeyType {
        match self.secret {
            Secret::Ed25519(_) => KeyType::Ed25519,
            Secret::EcdsaP256(_) => KeyType::EcdsaP256,
            Secret::Rsa(_) => KeyType::Rsa3072,
        }
    }

    /// The public key as SubjectPublicKeyInfo PEM, for the `pubkey` field.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// Signs `body` (the exact bytes sent) with the encoding of the key's
    /// type (see the module table).
    ///
    /// # Errors
    /// [`KeyError::Crypto`] when the library refuses (RSA blinding needs
    /// the random source).
    pub fn sign(&self, body: &[u8]) -> Result<Vec<u8>, KeyError> {
        Ok(match &self.secret {
            Secret::Ed25519(key) => key.sign(body).to_bytes().to_vec(),
            Secret::EcdsaP256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(body);
                signature.to_der().as_bytes().to_vec()
            }
            Secret::Rsa(key) => key
                // The randomized variant blinds the private-key operation.
                .try_sign_with_rng(&mut getrandom::SysRng, body)
                .map_err(|_| KeyError::Crypto("RSA signing"))?
                .to_vec(),
        })
    }

    /// `X-MEN-Signature` for `body`: the signature in standard padded
    /// base64.
    ///
    /// # Errors
    /// As [`Self::sign`].
    pub fn signature_header(&self, body: &[u8]) -> Result<String, KeyError> {
        Ok(base64_encode(&self.sign(body)?))
    }

    /// Loads the key at `path`; `Ok(None)` when the file does not exist.
    ///
    /// # Errors
    /// The file cannot be read or is not a supported key.
    pub fn load(path: &Path) -> Result<Option<Self>, KeyError> {
        let bytes = match super::fs::read_limited(path, MAX_KEY_FILE_LEN) {
            Ok(bytes) => zeroize::Zeroizing::new(bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(KeyError::Io(path.to_path_buf(), error)),
        };
        let text =
            std::str::from_utf8(&bytes).map_err(|_| KeyError::Unsupported(path.to_path_buf()))?;
        Self::from_pem(text)
            .map(Some)
            .ok_or_else(|| KeyError::Unsupported(path.to_path_buf()))
    }

    /// Writes the key to `path` atomically with mode 0600.
    ///
    /// # Errors
    /// [`KeyError::Io`] (the old file is unchanged then).
    pub fn store(&self, path: &Path) -> Result<(), KeyError> {
        let pem = self.to_pem()?;
        write_private(path, pem.as_bytes()).map_err(|error| KeyError::Io(path.to_path_buf(), error))
    }
}

/// Where the device key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `<DATA>/mender-agent.pem`, generated with this type when absent.
    Generated {
        /// The key file.
        path: PathBuf,
        /// Type of a newly generated key (an existing key of any supported
        /// type is used as is).
        key_type: KeyType,
    },
    /// `Security.AuthPrivateKey`: loaded only, never generated or replaced.
    Static(PathBuf),
}

impl KeySource {
    /// The default generated key in `data_dir`.
    pub fn generated_in(data_dir: &Path, key_type: KeyType) -> Self {
        Self::Generated {
            path: data_dir.join(KEY_FILE_NAME),
            key_type,
        }
    }

    /// Loads the key, generating and storing it first for
    /// [`KeySource::Generated`] when the file does not exist. A generated
    /// key file readable by others is tightened to 0600.
    ///
    /// # Errors
    /// A static key that is missing or unreadable; a key file that exists
    /// but is not a supported key (it is never overwritten); generation or
    /// storage failures.
    pub fn load_or_generate(&self) -> Result<DeviceKey, KeyError> {
        match self {
            Self::Static(path) => DeviceKey::load(path)?.ok_or_else(|| {
                KeyError::Io(path.clone(), io::Error::from(io::ErrorKind::NotFound))
            }),
            Self::Generated { path, key_type } => {
                if let Some(key) = DeviceKey::load(path)? {
                    tighten_mode(path);
                    return Ok(key);
                }
                log::info!(
                    "generating a new {key_type:?} device key in {}",
                    path.display()
                );
                let key = DeviceKey::generate(*key_type)?;
                key.store(path)?;
                Ok(key)
            }
        }
    }

    /// Replaces a generated key with a new one (`bootstrap -F`).
    ///
    /// # Errors
    /// A static key (never replaced: [`KeyError::Io`] with
    /// `PermissionDenied`); generation or storage failures.
    pub fn regenerate(&self) -> Result<DeviceKey, KeyError> {
        match self {
            Self::Static(path) => Err(KeyError::Io(
                path.clone(),
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "a static key is never replaced",
                ),
            )),
            Self::Generated { path, key_type } => {
                let key = DeviceKey::generate(*key_type)?;
                key.store(path)?;
                Ok(key)
            }
        }
    }
}

fn tighten_mode(path: &Path) {
    if let Ok(metadata) = std::fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "{} was readable by others; setting mode 0600",
                path.display()
            );
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// Atomic replacement like [`super::fs::atomic_write`], but the temp file
/// is created with mode 0600 so the secret is never readable by others,
/// not even before the rename.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    super::fs::atomic_write_mode(path, bytes, Some(0o600))
}

/// Standard base64 with padding (RFC 4648 §4), as `X-MEN-Signature` wants.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding as _};
    Base64::encode_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0xfd], "//79"),
        ] {
            assert_eq!(base64_encode(input), expected);
        }
    }
}
