//! What the device is and what it has installed: `device_type`,
//! `artifact_info`, the stored provides, the compatibility check against an
//! artifact header, and the commit-time `clears_artifact_provides` rule.
//!
//! Both files are `key=value` lines:
//!
//! | file | key | rules |
//! |---|---|---|
//! | `<DATA>/device_type` | `device_type` | `#` comments; values trimmed; a non-comment line without `=` (even a blank one, except a final newline) and duplicate keys are errors |
//! | `/etc/mender/artifact_info` | `artifact_name` | same syntax; only read when no state record exists yet (first boot) |

use crate::artifact::{
    ArtifactHeader, Provide, ProvideKey, ProvideList, ProvideValue, MAX_NAME_LEN,
};
use heapless::{String, Vec};

/// A device type or artifact name.
pub type Name = String<MAX_NAME_LEN>;

/// Why a `key=value` file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyValueError {
    /// Line (1-based) has no `=`.
    MissingEquals(usize),
    /// Line (1-based) repeats a key.
    DuplicateKey(usize),
    /// The key looked for is absent.
    MissingKey,
    /// The value is longer than the fixed capacity.
    TooLong(usize),
    /// The file is not UTF-8.
    NotUtf8,
}

impl core::fmt::Display for KeyValueError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::MissingEquals(line) => write!(f, "line {line} is not of the form key=value"),
            Self::DuplicateKey(line) => write!(f, "line {line} repeats a key"),
            Self::MissingKey => f.write_str("the expected key is missing"),
            Self::TooLong(line) => write!(f, "the value on line {line} is too long"),
            Self::NotUtf8 => f.write_str("the file is not valid UTF-8"),
        }
    }
}

impl core::error::Error for KeyValueError {}

/// Finds `key` in a `key=value` file with the reference client's rules and
/// returns its trimmed value.
///
/// # Errors
/// See [`KeyValueError`].
pub fn parse_key_value<'t>(text: &'t [u8], key: &str) -> Result<&'t str, KeyValueError> {
    let text = core::str::from_utf8(text).map_err(|_| KeyValueError::NotUtf8)?;
    let mut found: Option<&str> = None;
    let mut keys_seen: Vec<&str, 16> = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (index, line) in body.split('\n').enumerate() {
        let number = index.saturating_add(1);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(KeyValueError::MissingEquals(number));
        };
        let name = name.trim();
        if keys_seen.contains(&name) {
            return Err(KeyValueError::DuplicateKey(number));
        }
        // Files with more than 16 keys are unusual; further keys are only
        // not checked for duplicates.
        let _ = keys_seen.push(name);
        if name == key {
            found = Some(value.trim());
        }
    }
    found.ok_or(KeyValueError::MissingKey)
}

/// Reads `device_type=<type>` from the device type file.
///
/// # Errors
/// See [`KeyValueError`].
pub fn parse_device_type(text: &[u8]) -> Result<Name, KeyValueError> {
    let value = parse_key_value(text, "device_type")?;
    Name::try_from(value).map_err(|_| KeyValueError::TooLong(1))
}

/// Reads `artifact_name=<name>` from `/etc/mender/artifact_info`.
///
/// # Errors
/// See [`KeyValueError`].
pub fn parse_artifact_info(text: &[u8]) -> Result<Name, KeyValueError> {
    let value = parse_key_value(text, "artifact_name")?;
    Name::try_from(value).map_err(|_| KeyValueError::TooLong(1))
}

/// What the device has installed: the provides the next artifact's depends
/// are checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Provides {
    /// Current artifact name (`unknown` on a fresh device).
    pub artifact_name: Name,
    /// Current artifact group, if any.
    pub artifact_group: Option<Name>,
    /// Type-info provides of the installed artifact (e.g. `rootfs-image.version`).
    pub provides: ProvideList,
}

impl Provides {
    /// A fresh device with the given artifact name and nothing else.
    pub fn named(name: &str) -> Self {
        let mut artifact_name = Name::new();
        for ch in name.chars() {
            if artifact_name.push(ch).is_err() {
                break;
            }
        }
        Self {
            artifact_name,
            artifact_group: None,
            provides: ProvideList::new(),
        }
    }

    /// The value provided for `key`, including `artifact_name` and
    /// `artifact_group`.
    pub fn get(&self, key: &str) -> Option<&str> {
        match key {
            "artifact_name" => Some(&self.artifact_name),
            "artifact_group" => self.artifact_group.as_deref(),
            _ => self.provides.get(key),
        }
    }

    /// Calls `each(key, value)` for every provide in sorted key order, as
    /// `mender show-provides` prints them.
    pub fn for_each_sorted(&self, mut each: impl FnMut(&str, &str)) {
        // No room to sort in place without a heap: emit the smallest key
        // greater than the last one, n times (n is small).
        let named = [
            Some(("artifact_name", self.artifact_name.as_str())),
            self.artifact_group
                .as_deref()
                .map(|group| ("artifact_group", group)),
        ];
        let all = || {
            named.iter().flatten().copied().chain(
                self.provides
                    .iter()
                    .filter(|p| p.key != "artifact_name" && p.key != "artifact_group")
                    .map(|p| (p.key, p.value)),
            )
        };
        let mut last: Option<&str> = None;
        while let Some(next) = all()
            .filter(|(key, _)| last.is_none_or(|last| *key > last))
            .min_by(|a, b| a.0.cmp(b.0))
        {
            each(next.0, next.1);
            last = Some(next.0);
        }
    }

    /// The provides after committing `header`, following the reference's
    /// rules:
    ///
    /// - no `clears_artifact_provides` (absent or empty; all v2 artifacts):
    ///   the stored type-info provides are replaced by the artifact's;
    /// - otherwise stored provides whose key matches any pattern are dropped
    ///   and the artifact's are laid over the rest;
    /// - `artifact_group` is set if the artifact provides one, else dropped
    ///   when clears is absent or a pattern matches `artifact_group`, else kept.
    pub fn after_commit(&self, header: &ArtifactHeader) -> Self {
        let clears = header
            .clears_provides
            .as_ref()
            .filter(|clears| !clears.is_empty());
        let mut provides = ProvideList::new();
        if let Some(patterns) = clears {
            for provide in self.provides.iter() {
                let cleared = patterns
                    .iter()
                    .any(|pattern| wildcard_match(pattern, provide.key));
                if !cleared && header.provides.get(provide.key).is_none() {
                    let _ = provides.append(provide.key, provide.value);
                }
            }
        }
        for provide in header.provides.iter() {
            if provides.append(provide.key, provide.value).is_err() {
                warn!("too many provides; dropping {}", provide.key);
            }
        }
        let artifact_group = match (&header.artifact_group, clears) {
            (Some(group), _) => Some(group.clone()),
            (None, None) => None,
            (None, Some(patterns)) => {
                if patterns
                    .iter()
                    .any(|pattern| wildcard_match(pattern, "artifact_group"))
                {
                    None
                } else {
                    self.artifact_group.clone()
                }
            }
        };
        Self {
            artifact_name: header.artifact_name.clone(),
            artifact_group,
            provides,
        }
    }
}

/// Full-string match of `text` against `pattern`, where `*` matches any
/// sequence and `\` escapes the next character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    wildcard_bytes(pattern.as_bytes(), text.as_bytes())
}

fn wildcard_bytes(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear memory, no
    // recursion, so hostile patterns cannot exhaust the stack.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(&pc) if t < text.len() => {
                let (literal, width) = if pc == b'\\' {
                    (pattern.get(p + 1).copied(), 2)
                } else {
                    (Some(pc), 1)
                };
                if literal.is_some() && literal == text.get(t).copied() {
                    p += width;
                    t += 1;
                    continue;
                }
            }
            None if t == text.len() => return true,
            _ => {}
        }
        match star {
            Some((star_p, star_t)) if star_t < text.len() => {
                star = Some((star_p, star_t + 1));
                p = star_p + 1;
                t = star_t + 1;
            }
            _ => return false,
        }
    }
}

/// Why an artifact does not fit this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompatError {
    /// The device type is not in the artifact's compatible list.
    DeviceType,
    /// A depends key (index into `ArtifactHeader::depends`) is not met.
    Depends(usize),
    /// The payload type is not `rootfs-image`.
    PayloadType,
    /// More than one payload.
    MultiplePayloads,
}

impl core::fmt::Display for CompatError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DeviceType => f.write_str("the artifact is not compatible with this device type"),
            Self::Depends(_) => {
                f.write_str("an artifact dependency is not met by the installed software")
            }
            Self::PayloadType => f.write_str(
                "the payload type is not supported (not rootfs-image, and no update module for it)",
            ),
            Self::MultiplePayloads => {
                f.write_str("artifacts with more than one payload are not supported")
            }
        }
    }
}

impl core::error::Error for CompatError {}

/// Checks `header` against the device before any payload byte is written:
/// device type, every depends (header-info and type-info), and the payload
/// type (`rootfs-image`, or an empty payload; [`CompatError::PayloadType`],
/// checked last, lets an update module take the payload).
///
/// # Errors
/// The first unmet condition.
pub fn check_compatibility(
    header: &ArtifactHeader,
    device_type: &str,
    installed: &Provides,
) -> Result<(), CompatError> {
    if !header
        .device_types
        .iter()
        .any(|compatible| compatible == device_type)
    {
        return Err(CompatError::DeviceType);
    }
    for (index, depends) in header.depends.iter().enumerate() {
        let have = installed.get(depends.key);
        let met = have.is_some_and(|have| depends.accepts(have));
        if !met {
            return Err(CompatError::Depends(index));
        }
    }
    if header.payload_count > 1 {
        return Err(CompatError::MultiplePayloads);
    }
    match header.payload_type.as_deref() {
        None | Some("rootfs-image") => Ok(()),
        Some(_) => Err(CompatError::PayloadType),
    }
}

/// A key/value pair for building [`Provides`] in tests and tools.
pub fn provide(key: &str, value: &str) -> Option<Provide> {
    Some(Provide {
        key: ProvideKey::try_from(key).ok()?,
        value: ProvideValue::try_from(value).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_type_rules() {
        assert_eq!(
            parse_device_type(b"device_type=qemux86-64\n").unwrap(),
            "qemux86-64"
        );
        assert_eq!(
            parse_device_type(b"# c\ndevice_type = bbb \n").unwrap(),
            "bbb"
        );
        assert_eq!(
            parse_device_type(b"device_type=a\n\n"),
            Err(KeyValueError::MissingEquals(2))
        );
        assert_eq!(
            parse_device_type(b"device_type=a\ndevice_type=b\n"),
            Err(KeyValueError::DuplicateKey(2))
        );
        assert_eq!(parse_device_type(b"x=y\n"), Err(KeyValueError::MissingKey));
        assert_eq!(
            parse_artifact_info(b"artifact_name=release-1\n").unwrap(),
            "release-1"
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("rootfs-image.*", "rootfs-image.version"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("artifact_group", "artifact_group"));
        assert!(!wildcard_match(
            "rootfs_image_checksum",
            "rootfs-image.checksum"
        ));
        assert!(wildcard_match(r"a\*", "a*"));
        assert!(!wildcard_match(r"a\*", "ab"));
        assert!(!wildcard_match("", "a"));
    }

    fn header_with(clears: Option<&[&str]>, group: Option<&str>) -> ArtifactHeader {
        let mut header = ArtifactHeader {
            artifact_name: "rel-2".try_into().unwrap(),
            ..Default::default()
        };
        header
            .provides
            .push(provide("rootfs-image.version", "rel-2").unwrap())
            .unwrap();
        header.artifact_group = group.map(|g| g.try_into().unwrap());
        header.clears_provides = clears.map(|c| {
            let mut list = crate::artifact::StrList::new();
            for pattern in c {
                list.push(pattern).unwrap();
            }
            list
        });
        header
    }

    #[test]
    fn commit_rules() {
        let mut old = Provides::named("rel-1");
        old.artifact_group = Some("stable".try_into().unwrap());
        old.provides
            .push(provide("rootfs-image.version", "rel-1").unwrap())
            .unwrap();
        old.provides
            .push(provide("other.thing", "x").unwrap())
            .unwrap();

        let replaced = old.after_commit(&header_with(None, None));
        assert_eq!(replaced.artifact_name, "rel-2");
        assert_eq!(replaced.provides.len(), 1);
        assert_eq!(replaced.artifact_group, None);

        let cleared = old.after_commit(&header_with(Some(&["rootfs-image.*"]), None));
        assert_eq!(cleared.get("other.thing"), Some("x"));
        assert_eq!(cleared.get("rootfs-image.version"), Some("rel-2"));
        assert_eq!(cleared.get("artifact_group"), Some("stable"));

        let group_cleared = old.after_commit(&header_with(Some(&["artifact_group"]), None));
        assert_eq!(group_cleared.get("artifact_group"), None);
        let new_group = old.after_commit(&header_with(Some(&["x"]), Some("beta")));
        assert_eq!(new_group.get("artifact_group"), Some("beta"));
    }
}
