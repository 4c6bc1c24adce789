//! Typed view of `header-info` and `headers/0000/type-info`.

use super::{
    MAX_CLEARS_LEN, MAX_DEPENDS_LEN, MAX_DEVICE_TYPES_LEN, MAX_KEY_LEN, MAX_NAME_LEN,
    MAX_PROVIDES_LEN, MAX_VALUE_LEN,
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

/// One provide of a [`ProvideList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvideRef<'a> {
    /// The key.
    pub key: &'a str,
    /// The value.
    pub value: &'a str,
}

/// `key: value` provides in one pool of [`MAX_PROVIDES_LEN`] bytes (each
/// pair `key<US>value<NUL>`): how many fit depends on their total length,
/// not on a count. Keys are unique (see [`ProvideList::set`]).
///
/// Serialized as a sequence of `(key, value)`, the same bytes as the
/// `Vec<Provide>` it replaced, so stored state records still decode.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ProvideList {
    text: String<MAX_PROVIDES_LEN>,
}

impl ProvideList {
    /// No provides.
    pub const fn new() -> Self {
        Self {
            text: String::new(),
        }
    }

    /// The provides in order.
    pub fn iter(&self) -> impl Iterator<Item = ProvideRef<'_>> {
        self.text.split_terminator('\0').filter_map(|entry| {
            let (key, value) = entry.split_once(DEPENDS_SEPARATOR)?;
            Some(ProvideRef { key, value })
        })
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|provide| provide.key == key)
            .map(|provide| provide.value)
    }

    /// Number of provides.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// No provides.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Appends `key: value` (the caller keeps keys unique).
    ///
    /// # Errors
    /// [`ListFull`] when the pool is full, or the key or value holds a NUL
    /// or unit separator.
    pub fn append(&mut self, key: &str, value: &str) -> Result<(), ListFull> {
        let bad = |text: &str| text.contains(['\0', DEPENDS_SEPARATOR]);
        let needed = key
            .len()
            .checked_add(value.len())
            .and_then(|len| len.checked_add(2))
            .ok_or(ListFull)?;
        if bad(key) || bad(value) || MAX_PROVIDES_LEN.saturating_sub(self.text.len()) < needed {
            return Err(ListFull);
        }
        for part in [key, "\u{1f}", value, "\0"] {
            self.text.push_str(part).map_err(|_| ListFull)?;
        }
        Ok(())
    }

    /// Appends `provide` (the caller keeps keys unique).
    ///
    /// # Errors
    /// As [`ProvideList::append`].
    pub fn push(&mut self, provide: Provide) -> Result<(), ListFull> {
        self.append(&provide.key, &provide.value)
    }

    /// Sets `key` to `value`, replacing an existing value.
    ///
    /// # Errors
    /// As [`ProvideList::append`]; the list is unchanged then.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ListFull> {
        if self.get(key).is_none() {
            return self.append(key, value);
        }
        let mut updated = Self::new();
        for provide in self.iter() {
            let value = if provide.key == key {
                value
            } else {
                provide.value
            };
            updated.append(provide.key, value)?;
        }
        *self = updated;
        Ok(())
    }
}

impl serde::Serialize for ProvideList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for provide in self.iter() {
            seq.serialize_element(&(provide.key, provide.value))?;
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for ProvideList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = ProvideList;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a sequence of (key, value) provides")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ProvideList, A::Error> {
                let mut list = ProvideList::new();
                while let Some((key, value)) = seq.next_element::<(ProvideKey, ProvideValue)>()? {
                    list.append(&key, &value).map_err(|_| {
                        serde::de::Error::custom("the provides exceed MAX_PROVIDES_LEN")
                    })?;
                }
                Ok(list)
            }
        }
        deserializer.deserialize_seq(Pairs)
    }
}

impl core::fmt::Debug for ProvideList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|provide| (provide.key, provide.value)))
            .finish()
    }
}

/// A [`StrList`] is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListFull;

/// Short strings kept in one fixed pool of `N` bytes, each followed by a
/// NUL: how many fit depends only on their total length, not on a count
/// (20 device types of 10 bytes, or 2 of 200 bytes).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StrList<const N: usize> {
    text: String<N>,
}

impl<const N: usize> StrList<N> {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            text: String::new(),
        }
    }

    /// Appends `item`.
    ///
    /// # Errors
    /// [`ListFull`] when `item` plus its terminator does not fit in the
    /// `N`-byte pool, or `item` contains a NUL.
    pub fn push(&mut self, item: &str) -> Result<(), ListFull> {
        let needed = item.len().checked_add(1).ok_or(ListFull)?;
        if item.contains('\0') || N.saturating_sub(self.text.len()) < needed {
            return Err(ListFull);
        }
        self.text.push_str(item).map_err(|_| ListFull)?;
        self.text.push('\0').map_err(|_| ListFull)
    }

    /// The items in order.
    pub fn iter(&self) -> core::str::SplitTerminator<'_, char> {
        self.text.split_terminator('\0')
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.text.bytes().filter(|&byte| byte == 0).count()
    }

    /// No items.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// `item` is in the list.
    pub fn contains(&self, item: &str) -> bool {
        self.iter().any(|entry| entry == item)
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.text.clear();
    }
}

impl<const N: usize> core::fmt::Debug for StrList<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Separates a depends key from one of its values inside [`DependsList`].
const DEPENDS_SEPARATOR: char = '\u{1f}';

/// Every `artifact_depends` key with its accepted values, in one pool of
/// [`MAX_DEPENDS_LEN`] bytes (so neither the number of keys nor of values
/// has a fixed cap). Keys are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DependsList {
    /// `key<US>value` per accepted value (a key's entries are adjacent);
    /// a bare `key` for an empty list (never met).
    pairs: StrList<MAX_DEPENDS_LEN>,
}

/// One `key: [values]` pair of `artifact_depends` (a single string value is
/// a one-element list).
#[derive(Clone, Copy, Debug)]
pub struct Depends<'a> {
    /// The key, e.g. `artifact_name` or `rootfs-image.version`.
    pub key: &'a str,
    list: &'a DependsList,
}

fn split_pair(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once(DEPENDS_SEPARATOR) {
        Some((key, value)) => (key, Some(value)),
        None => (entry, None),
    }
}

impl<'a> Depends<'a> {
    /// Accepted values: the device must provide one of them.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        let key = self.key;
        self.list
            .pairs
            .iter()
            .filter_map(move |entry| match split_pair(entry) {
                (k, Some(value)) if k == key => Some(value),
                _ => None,
            })
    }

    /// `value` is one of the accepted values.
    pub fn accepts(&self, value: &str) -> bool {
        self.values().any(|accepted| accepted == value)
    }
}

impl DependsList {
    /// The keys, each with its values, in header order.
    pub fn iter(&self) -> impl Iterator<Item = Depends<'_>> {
        let mut previous: Option<&str> = None;
        self.pairs.iter().filter_map(move |entry| {
            let (key, _) = split_pair(entry);
            if previous == Some(key) {
                return None;
            }
            previous = Some(key);
            Some(Depends { key, list: self })
        })
    }

    /// The depends on `key`.
    pub fn get(&self, key: &str) -> Option<Depends<'_>> {
        self.iter().find(|depends| depends.key == key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// No depends.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Adds `key` with the values `parse` pushes through its callback.
    fn insert(
        &mut self,
        key: &str,
        parse: impl FnOnce(&mut dyn FnMut(&str) -> Result<(), MetaError>) -> Result<(), MetaError>,
    ) -> Result<(), MetaError> {
        if self.get(key).is_some() {
            return Err(MetaError::DuplicateKey);
        }
        if key.contains([DEPENDS_SEPARATOR, '\0']) {
            return Err(MetaError::ControlCharacter);
        }
        let full = MetaError::Limit {
            what: "bytes of artifact_depends keys and values",
            limit: MAX_DEPENDS_LEN,
        };
        let mut count = 0usize;
        let pairs = &mut self.pairs;
        parse(&mut |value: &str| {
            if value.contains([DEPENDS_SEPARATOR, '\0']) {
                return Err(MetaError::ControlCharacter);
            }
            let mut entry: String<{ MAX_KEY_LEN + 1 + MAX_VALUE_LEN }> = String::new();
            entry.push_str(key).map_err(|_| full)?;
            entry.push(DEPENDS_SEPARATOR).map_err(|_| full)?;
            entry.push_str(value).map_err(|_| full)?;
            pairs.push(&entry).map_err(|_| full)?;
            count = count.saturating_add(1);
            Ok(())
        })?;
        if count == 0 {
            self.pairs.push(key).map_err(|_| full)?;
        }
        Ok(())
    }
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
    pub device_types: StrList<MAX_DEVICE_TYPES_LEN>,
    /// All other depends: `artifact_name` / `artifact_group` lists from
    /// header-info and every type-info depends.
    pub depends: DependsList,
    /// Type of the single payload; `None` for an empty (bootstrap) payload.
    pub payload_type: Option<String<MAX_KEY_LEN>>,
    /// Number of payload entries in header-info (clients support one).
    pub payload_count: usize,
    /// The type-info `artifact_provides`.
    pub provides: ProvideList,
    /// The type-info `clears_artifact_provides`; `None` when absent.
    pub clears_provides: Option<StrList<MAX_CLEARS_LEN>>,
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
    /// A value exceeds the named limit.
    Limit {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A key or value holds a NUL or unit-separator character.
    ControlCharacter,
    /// header-info lists no payload.
    NoPayload,
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

/// A provides/depends key longer than [`MAX_KEY_LEN`] names the limit.
fn key_limit(error: crate::json::JsonError) -> MetaError {
    match error.kind {
        JsonErrorKind::Capacity => MetaError::Limit {
            what: "bytes in one provides or depends key",
            limit: MAX_KEY_LEN,
        },
        JsonErrorKind::Syntax => MetaError::Syntax(error.offset),
    }
}

/// A JSON string of at most `N` bytes; longer is [`MetaError::Limit`]
/// naming `what`.
fn limited<const N: usize>(
    json: &mut Json<'_>,
    what: &'static str,
) -> Result<String<N>, MetaError> {
    json.string::<N>().map_err(|error| match error.kind {
        JsonErrorKind::Capacity => MetaError::Limit { what, limit: N },
        JsonErrorKind::Syntax => MetaError::Syntax(error.offset),
    })
}

/// Calls `each` with every string of a string or an array of strings
/// (values of at most [`MAX_VALUE_LEN`] bytes).
fn each_string(
    json: &mut Json<'_>,
    each: &mut dyn FnMut(&str) -> Result<(), MetaError>,
) -> Result<(), MetaError> {
    const WHAT: &str = "bytes in one artifact_depends value";
    if json.peek() == Some(b'"') {
        return each(&limited::<MAX_VALUE_LEN>(json, WHAT)?);
    }
    json.begin_array()?;
    let mut first = true;
    while json.next_element(&mut first)? {
        each(&limited::<MAX_VALUE_LEN>(json, WHAT)?)?;
    }
    Ok(())
}

/// Reads the `device_type` list into `out` (a string or an array).
fn device_types(
    json: &mut Json<'_>,
    out: &mut StrList<MAX_DEVICE_TYPES_LEN>,
) -> Result<(), MetaError> {
    let mut push = |json: &mut Json<'_>| -> Result<(), MetaError> {
        let name = limited::<MAX_NAME_LEN>(json, "bytes in one device type")?;
        out.push(&name).map_err(|_| MetaError::Limit {
            what: "bytes of compatible device types",
            limit: MAX_DEVICE_TYPES_LEN,
        })
    };
    if json.peek() == Some(b'"') {
        return push(json);
    }
    json.begin_array()?;
    let mut first = true;
    while json.next_element(&mut first)? {
        push(json)?;
    }
    Ok(())
}

impl ArtifactHeader {
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
                                self.artifact_name =
                                    limited(&mut json, "bytes in the artifact name")?;
                                have_name = true;
                            }
                            "artifact_group" => {
                                self.artifact_group =
                                    Some(limited(&mut json, "bytes in the artifact group")?)
                            }
                            _ => return Err(MetaError::UnknownKey),
                        }
                    }
                }
                ("artifact_depends", 3) => {
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<32>(&mut f)? {
                        match k.as_str() {
                            "device_type" => device_types(&mut json, &mut self.device_types)?,
                            "artifact_name" | "artifact_group" => {
                                let json = &mut json;
                                self.depends
                                    .insert(k.as_str(), |each| each_string(json, each))?;
                            }
                            _ => return Err(MetaError::UnknownKey),
                        }
                    }
                }
                ("device_types_compatible", 2) => device_types(&mut json, &mut self.device_types)?,
                ("artifact_name", 2) => {
                    self.artifact_name = limited(&mut json, "bytes in the artifact name")?;
                    have_name = true;
                }
                _ => return Err(MetaError::UnknownKey),
            }
        }
        json.end()?;
        if self.payload_count == 0 {
            // The reference refuses an empty list too: nothing to install.
            return Err(MetaError::NoPayload);
        }
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
                    while let Some(k) = json.next_key::<MAX_KEY_LEN>(&mut f).map_err(key_limit)? {
                        let value: ProvideValue =
                            limited(&mut json, "bytes in one artifact_provides value")?;
                        if self.provides.get(&k).is_some()
                            || k == "artifact_name"
                            || k == "artifact_group"
                        {
                            return Err(MetaError::DuplicateKey);
                        }
                        self.provides
                            .append(&k, &value)
                            .map_err(|_| MetaError::Limit {
                                what: "bytes of artifact_provides keys and values",
                                limit: MAX_PROVIDES_LEN,
                            })?;
                    }
                }
                "artifact_depends" if self.format_version == 3 => {
                    if json.null() {
                        continue;
                    }
                    json.begin_object()?;
                    let mut f = true;
                    while let Some(k) = json.next_key::<MAX_KEY_LEN>(&mut f).map_err(key_limit)? {
                        let json = &mut json;
                        self.depends
                            .insert(k.as_str(), |each| each_string(json, each))?;
                    }
                }
                "clears_artifact_provides" if self.format_version == 3 => {
                    if json.null() {
                        continue;
                    }
                    let mut clears = StrList::new();
                    json.begin_array()?;
                    let mut first = true;
                    while json.next_element(&mut first)? {
                        let pattern: ProvideValue =
                            limited(&mut json, "bytes in one clears_artifact_provides pattern")?;
                        clears.push(&pattern).map_err(|_| MetaError::Limit {
                            what: "bytes of clears_artifact_provides patterns",
                            limit: MAX_CLEARS_LEN,
                        })?;
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_list_pool() {
        let mut list: StrList<16> = StrList::new();
        list.push("abc").unwrap();
        list.push("").unwrap();
        list.push("defghijk").unwrap();
        assert_eq!(list.len(), 3);
        assert!(list.iter().eq(["abc", "", "defghijk"]));
        assert!(list.contains("defghijk") && !list.contains("ab"));
        // 4 + 1 + 9 = 14 bytes used: a 2-byte item does not fit.
        assert_eq!(list.push("xy"), Err(ListFull));
        assert_eq!(list.push("\0"), Err(ListFull));
        list.push("x").unwrap();
        assert_eq!(list.len(), 4);
    }

    #[test]
    fn provide_list_keeps_the_old_record_encoding() {
        // The Vec<Provide> this list replaced, as stored in state records.
        let mut old: Vec<Provide, 4> = Vec::new();
        for (key, value) in [("rootfs-image.version", "r1"), ("a.b", "")] {
            old.push(Provide {
                key: key.try_into().unwrap(),
                value: value.try_into().unwrap(),
            })
            .unwrap();
        }
        let mut buffer = [0u8; 128];
        let bytes = postcard::to_slice(&old, &mut buffer).unwrap().to_vec();
        let list: ProvideList = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(list.get("rootfs-image.version"), Some("r1"));
        assert_eq!(list.get("a.b"), Some(""));
        assert_eq!(list.len(), 2);
        let mut again = [0u8; 128];
        assert_eq!(postcard::to_slice(&list, &mut again).unwrap(), &bytes[..]);
    }

    #[test]
    fn provide_list_set_and_limits() {
        let mut list = ProvideList::new();
        list.append("k1", "v1").unwrap();
        list.append("k2", "v2").unwrap();
        list.set("k1", "changed").unwrap();
        list.set("k3", "v3").unwrap();
        assert_eq!(
            list.iter().map(|p| (p.key, p.value)).collect::<Vec<_, 4>>(),
            [("k1", "changed"), ("k2", "v2"), ("k3", "v3")]
        );
        assert_eq!(list.append("bad\u{1f}key", "v"), Err(ListFull));
        let long = [b'v'; 200];
        let long = core::str::from_utf8(&long).unwrap();
        let mut count = 0;
        while list.append("key", long).is_ok() {
            count += 1;
        }
        // 4096 bytes: about 20 pairs of 205 bytes besides the first three.
        assert!(count >= 19, "{count}");
    }

    #[test]
    fn depends_list_groups_values_by_key() {
        let mut list = DependsList::default();
        list.insert("artifact_name", |each| {
            each("r1")?;
            each("r2")
        })
        .unwrap();
        list.insert("empty", |_| Ok(())).unwrap();
        assert_eq!(
            list.insert("artifact_name", |_| Ok(())),
            Err(MetaError::DuplicateKey)
        );
        assert_eq!(list.len(), 2);
        let names = list.get("artifact_name").unwrap();
        assert!(names.values().eq(["r1", "r2"]));
        assert!(names.accepts("r2") && !names.accepts("r3"));
        assert_eq!(list.get("empty").unwrap().values().count(), 0);
    }
}
