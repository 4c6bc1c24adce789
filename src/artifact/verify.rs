//! Artifact signature verification (being written).

/// A public key that may verify `manifest.sig`.
#[derive(Clone, Debug)]
pub enum VerifyKey {
    /// Placeholder until the verifier lands.
    Placeholder,
}
