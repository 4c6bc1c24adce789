//! Typed view of `header-info` and `headers/0000/type-info`.

use super::{
    MAX_CLEARS, MAX_DEPENDS_VALUES, MAX_DEVICE_TYPES, MAX_KEY_LEN, MAX_NAME_LEN, MAX_PROVIDES,
    MAX_VALUE_LEN,
};
use heapless::{String, Vec};

/// A provides or depends key, e.g. `rootfs-image.version`.
pub type ProvideKey = String<MAX_KEY_LEN>;
/// A provides or depends value.
pub type ProvideValue = String<MAX_VALUE_LEN>;

/// One `key: value` pair of `artifact_provides`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provide {
    /// The key.
    pub key: ProvideKey,
    /// The value.
    pub value: ProvideValue,
}

/// One `key: [values]` pair of `artifact_depends` (a single string value is
/// stored as a one-element list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depends {
    /// The key, e.g. `artifact_name` or `rootfs-image.version`.
    pub key: ProvideKey,
    /// Accepted values: the device must provide one of them.
    pub values: Vec<ProvideValue, MAX_DEPENDS_VALUES>,
}

/// Everything the header says about the artifact, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArtifactHeader {
    /// Artifact format version (2 or 3).
    pub format_version: u32,
    /// `artifact_provides.artifact_name` (v3) or `artifact_name` (v2).
    pub artifact_name: String<MAX_NAME_LEN>,
    /// `artifact_provides.artifact_group`, if any.
    pub artifact_group: Option<String<MAX_NAME_LEN>>,
    /// Compatible device types (`artifact_depends.device_type`).
    pub device_types: Vec<String<MAX_NAME_LEN>, MAX_DEVICE_TYPES>,
    /// All other depends: `artifact_name` / `artifact_group` lists from
    /// header-info and every type-info depends.
    pub depends: Vec<Depends, MAX_PROVIDES>,
    /// Type of the single payload; `None` for an empty (bootstrap) payload.
    pub payload_type: Option<String<MAX_KEY_LEN>>,
    /// Number of payload entries in header-info (clients support one).
    pub payload_count: usize,
    /// The type-info `artifact_provides`.
    pub provides: Vec<Provide, MAX_PROVIDES>,
    /// The type-info `clears_artifact_provides`; `None` when absent.
    pub clears_provides: Option<Vec<ProvideValue, MAX_CLEARS>>,
    /// `manifest.sig` was present.
    pub signed: bool,
}
