//! Artifact signature verification (being written: RSA PKCS#1 v1.5 and
//! ECDSA P-256, both over SHA-256 of `manifest`).

/// A public key that may verify `manifest.sig`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum VerifyKey {
    /// Placeholder until the verifier lands.
    Placeholder,
}

/// Why a key could not be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a PEM `PUBLIC KEY` block, or not a supported key.
    Unsupported,
}

/// Why a signature did not verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not match the key and message.
    Invalid,
}

impl VerifyKey {
    /// Loads a PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    /// See [`KeyError`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let _ = pem;
        Err(KeyError::Unsupported)
    }

    /// Checks `signature` (as stored in `manifest.sig`, base64-decoded) over
    /// a message whose SHA-256 is `digest`.
    ///
    /// # Errors
    /// See [`SignatureError`].
    pub fn verify_sha256(&self, digest: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError> {
        let _ = (digest, signature);
        Err(SignatureError::Invalid)
    }
}
