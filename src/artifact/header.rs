//! Typed view of `header-info` and `headers/0000/type-info`.

use super::{
    MAX_CLEARS, MAX_DEPENDS, MAX_DEPENDS_VALUES, MAX_DEVICE_TYPES, MAX_KEY_LEN, MAX_NAME_LEN,
    MAX_PROVIDES, MAX_VALUE_LEN,
};
// (MAX_KEY_LEN etc. also bound the parsers below.)
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
    pub depends: Vec<Depends, MAX_DEPENDS>,
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
    /// `manifest.sig` was checked against a configured key (false when
    /// [`super::ArtifactReader::verify_signature`] was given no keys).
    pub signature_verified: bool,
    /// State scripts in the header, in order (names only; contents are
    /// streamed as [`super::Event::ScriptData`]).
    pub scripts: Vec<String<MAX_SCRIPT_NAME_LEN>, MAX_SCRIPTS>,
}

/// Longest state script name kept in [`ArtifactHeader::scripts`].
pub const MAX_SCRIPT_NAME_LEN: usize = 64;
/// Most state scripts in one artifact.
pub const MAX_SCRIPTS: usize = 32;

use crate::json::{Json, JsonError, JsonErrorKind};

/// Why a header JSON file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaError {
    /// JSON syntax error (or wrong value type) at a byte offset.
    Syntax(usize),
    /// A key the format does not define.
    UnknownKey,
    /// A required key is missing or empty.
    MissingKey,
    /// A value exceeds a fixed capacity (`MAX_*` constants).
    Capacity,
    /// A key appears twice (also across header-info and type-info).
    DuplicateKey,
    /// type-info `type` differs from the header-info payload type.
    TypeMismatch,
}

impl From<JsonError> for MetaError {
    fn from(e: JsonError) -> Self {
        match e.kind {
            JsonErrorKind::Syntax => Self::Syntax(e.offset),
            JsonErrorKind::Capacity => Self::Capacity,
        }
    }
}

fn string_list<const N: usize, const M: usize>(
    json: &mut Json<'_>,
    out: &mut Vec<String<N>, M>,
) -> Result<(), MetaError> {
    json.begin_array()?;
    let mut first = true;
    while json.next_element(&mut first)? {
        out.push(json.string::<N>()?)
            .map_err(|_| MetaError::Capacity)?;
    }
    Ok(())
}

/// A string or an array of strings.
fn string_or_list<const N: usize, const M: usize>(
    json: &mut Json<'_>,
    out: &mut Vec<String<N>, M>,
) -> Result<(), MetaError> {
    if json.peek() == Some(b'"') {
        out.push(json.string::<N>()?)
            .map_err(|_| MetaError::Capacity)
    } else {
        string_list(json, out)
    }
}

impl ArtifactHeader {
    fn add_depends(
        &mut self,
        key: ProvideKey,
        values: Vec<ProvideValue, MAX_DEPENDS_VALUES>,
    ) -> Result<(), MetaError> {
        if self.depends.iter().any(|d| d.key == key) {
            return Err(MetaError::DuplicateKey);
        }
        self.depends
            .push(Depends { key, values })
            .map_err(|_| MetaError::Capacity)
    }

    /// Parses a v3 `header-info` (or v2 when `format_version == 2`).
    pub(crate) fn parse_header_info(&mut self, text: &[u8]) -> Result<(), MetaError> {
        let mut json = Json::new(text);
        json.begin_object()?;
        let mut first = true;
        let mut have_payloads = false;
        let mut have_name = false;
        while let Some(key) = json.next_key::<32>(&mut first)? {
            match (key.as_str(), self.format_version) {
                ("payloads", 3) | ("updates", 2) => {
                    have_payloads = true;
                    json.begin_array()?;
                    let mut first_payload = true;
                    while json.next_element(&mut first_payload)? {
                        json.begin_object()?;
                        let mut first_key = true;
                        let mut payload_type = None;
                        while let Some(k) = json.next_key::<8>(&mut first_key)? {
                            if k.as_str() != "type" {
                                return Err(MetaError::UnknownKey);
                            }
                            payload_type = if json.null() {
                                None
                            } else {
                                Some(json.string::<MAX_KEY_LEN>()?)
                            };
                        }
                        if self.payload_count == 0 {
                            self.payload_type = payload_type;
                        }
                        self.payload_count = self
                            .payload_count
                            .checked_add(1)
                            .ok_or(MetaError::Capacity)?;
                    }
                }
                ("artifact_provides", 3) => {
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<32>(&mut f)? {
                        match k.as_str() {
                            "artifact_name" => {
                                self.artifact_name = json.string()?;
                                have_name = true;
                            }
                            "artifact_group" => self.artifact_group = Some(json.string()?),
                            _ => return Err(MetaError::UnknownKey),
                        }
                    }
                }
                ("artifact_depends", 3) => {
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<32>(&mut f)? {
                        match k.as_str() {
                            "device_type" => string_list(&mut json, &mut self.device_types)?,
                            "artifact_name" | "artifact_group" => {
                                let mut values = Vec::new();
                                string_list(&mut json, &mut values)?;
                                let key = ProvideKey::try_from(k.as_str())
                                    .map_err(|_| MetaError::Capacity)?;
                                self.add_depends(key, values)?;
                            }
                            _ => return Err(MetaError::UnknownKey),
                        }
                    }
                }
                ("device_types_compatible", 2) => string_list(&mut json, &mut self.device_types)?,
                ("artifact_name", 2) => {
                    self.artifact_name = json.string()?;
                    have_name = true;
                }
                _ => return Err(MetaError::UnknownKey),
            }
        }
        json.end()?;
        if !have_payloads
            || !have_name
            || self.artifact_name.is_empty()
            || self.device_types.is_empty()
        {
            return Err(MetaError::MissingKey);
        }
        Ok(())
    }

    /// Parses `headers/0000/type-info`.
    pub(crate) fn parse_type_info(&mut self, text: &[u8]) -> Result<(), MetaError> {
        let mut json = Json::new(text);
        json.begin_object()?;
        let mut first = true;
        let mut type_seen: Option<Option<String<MAX_KEY_LEN>>> = None;
        while let Some(key) = json.next_key::<32>(&mut first)? {
            match key.as_str() {
                "type" => {
                    type_seen = Some(if json.null() {
                        None
                    } else {
                        Some(json.string()?)
                    });
                }
                "artifact_provides" if self.format_version == 3 => {
                    if json.null() {
                        continue;
                    }
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<MAX_KEY_LEN>(&mut f)? {
                        let value = json.string::<MAX_VALUE_LEN>()?;
                        if self.provides.iter().any(|p| p.key == k)
                            || k == "artifact_name"
                            || k == "artifact_group"
                        {
                            return Err(MetaError::DuplicateKey);
                        }
                        self.provides
                            .push(Provide { key: k, value })
                            .map_err(|_| MetaError::Capacity)?;
                    }
                }
                "artifact_depends" if self.format_version == 3 => {
                    if json.null() {
                        continue;
                    }
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<MAX_KEY_LEN>(&mut f)? {
                        let mut values = Vec::new();
                        string_or_list(&mut json, &mut values)?;
                        self.add_depends(k, values)?;
                    }
                }
                "clears_artifact_provides" if self.format_version == 3 => {
                    if json.null() {
                        continue;
                    }
                    let mut clears = Vec::new();
                    string_list(&mut json, &mut clears)?;
                    self.clears_provides = Some(clears);
                }
                // v2 type-info: other keys ignored (as the Go reader does).
                _ if self.format_version == 2 => json.skip_value()?,
                _ => return Err(MetaError::UnknownKey),
            }
        }
        json.end()?;
        match type_seen {
            None => Err(MetaError::MissingKey),
            // mender-artifact 3.x writes `"type": ""` for rootfs-image.
            Some(Some(t)) if t.is_empty() => Ok(()),
            Some(t) if t != self.payload_type => Err(MetaError::TypeMismatch),
            Some(_) => Ok(()),
        }
    }
}

/// Checks `headers/0000/meta-data`: empty or a JSON object.
pub(crate) fn check_meta_data(text: &[u8]) -> Result<(), MetaError> {
    let mut json = Json::new(text);
    if json.peek().is_none() {
        return Ok(());
    }
    if json.peek() != Some(b'{') {
        return Err(MetaError::Syntax(0));
    }
    json.skip_value()?;
    json.end()?;
    Ok(())
}

/// Checks a v2 `headers/0000/files` list: `{"files": [...]}`.
pub(crate) fn check_files(text: &[u8]) -> Result<(), MetaError> {
    let mut json = Json::new(text);
    json.begin_object()?;
    let mut first = true;
    while let Some(key) = json.next_key::<8>(&mut first)? {
        if key.as_str() != "files" {
            return Err(MetaError::UnknownKey);
        }
        json.skip_value()?;
    }
    json.end()?;
    Ok(())
}
