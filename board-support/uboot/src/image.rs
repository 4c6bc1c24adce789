//! The environment image codec: pure functions over byte slices.
//!
//! Nothing here panics on any input; every read of input bytes goes through
//! `get`. See the crate documentation for the on-disk layout.

use core::fmt;
use std::collections::BTreeMap;

use otalite::crc32::crc32;

/// The name of U-Boot's variable attribute list, which libubootenv always
/// writes after all other variables.
pub const FLAGS_VAR: &[u8] = b".flags";

/// Single-copy or redundant header layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `crc32 (4 bytes) | data`.
    Single,
    /// `crc32 (4 bytes) | flags (1 byte) | data`.
    Redundant,
}

impl Layout {
    /// Bytes before the data area: 4 (single) or 5 (redundant).
    pub const fn header_len(self) -> usize {
        match self {
            Self::Single => 4,
            Self::Redundant => 5,
        }
    }
}

/// Environment variables, sorted by name bytes (libubootenv's `strcmp`
/// order, which is also the order it writes them in).
///
/// Names and values are bytes: U-Boot does not require UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvVars {
    vars: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl EnvVars {
    /// An empty environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars.get(name.as_bytes()).map(Vec::as_slice)
    }

    /// The value of `name` as UTF-8 text, if set and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|value| core::str::from_utf8(value).ok())
    }

    /// Sets `name` to `value` (bytes, not checked; see [`check_name`] and
    /// [`check_value`] for what the image format can hold).
    pub fn set(&mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.vars.insert(name.into(), value.into());
    }

    /// Deletes `name`; returns whether it was set.
    pub fn remove(&mut self, name: &str) -> bool {
        self.vars.remove(name.as_bytes()).is_some()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// `true` when no variable is set.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// All variables in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.vars
            .iter()
            .map(|(name, value)| (name.as_slice(), value.as_slice()))
    }

    /// Bytes the variables need in a data area, terminating NUL included.
    pub fn encoded_len(&self) -> usize {
        self.vars
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum::<usize>()
            + 1
    }
}

/// `true` when `name` can be stored: not empty, no `=` and no NUL.
pub fn check_name(name: &[u8]) -> bool {
    !name.is_empty() && !name.contains(&b'=') && !name.contains(&0)
}

/// `true` when `value` can be stored: no NUL.
pub fn check_value(value: &[u8]) -> bool {
    !value.contains(&0)
}

/// Format errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The image is shorter than its header plus one byte.
    TooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed at least.
        min: usize,
    },
    /// The stored CRC does not match the data (single copy).
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the data area.
        computed: u32,
    },
    /// Both redundant copies fail their CRC check.
    BothCopiesBad {
        /// (stored, computed) CRC of copy 0.
        copy0: (u32, u32),
        /// (stored, computed) CRC of copy 1.
        copy1: (u32, u32),
    },
    /// The two redundant copies differ in size.
    CopySizeMismatch {
        /// Size of copy 0.
        first: usize,
        /// Size of copy 1.
        second: usize,
    },
    /// The CRC matches but the variable list has no terminating NUL.
    Unterminated,
    /// The variables do not fit into the data area.
    TooLarge {
        /// Bytes the variables need.
        needed: usize,
        /// Bytes the data area has.
        available: usize,
    },
    /// A variable name is empty or contains `=` or NUL.
    InvalidName(Vec<u8>),
    /// A variable value contains NUL.
    InvalidValue(Vec<u8>),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len, min } => write!(f, "environment image too short ({len} < {min} bytes)"),
            Self::CrcMismatch { stored, computed } => write!(
                f,
                "environment CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): no valid environment"
            ),
            Self::BothCopiesBad { copy0, copy1 } => write!(
                f,
                "both redundant environment copies have a bad CRC (copy 0: stored {:#010x}, computed {:#010x}; \
                 copy 1: stored {:#010x}, computed {:#010x}): no valid environment",
                copy0.0, copy0.1, copy1.0, copy1.1
            ),
            Self::CopySizeMismatch { first, second } => {
                write!(f, "redundant copies differ in size ({first} vs {second} bytes)")
            }
            Self::Unterminated => f.write_str("environment data is not NUL-terminated"),
            Self::TooLarge { needed, available } => {
                write!(f, "environment too large ({needed} bytes, room for {available})")
            }
            Self::InvalidName(name) => {
                write!(f, "invalid variable name `{}` (empty, `=` or NUL)", String::from_utf8_lossy(name))
            }
            Self::InvalidValue(name) => {
                write!(f, "invalid value for `{}` (contains NUL)", String::from_utf8_lossy(name))
            }
        }
    }
}

impl core::error::Error for ImageError {}

/// Header facts of one copy, before the variables are decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyHeader {
    /// CRC stored in the first 4 bytes (little-endian).
    pub stored_crc: u32,
    /// CRC-32 computed over the whole data area.
    pub computed_crc: u32,
    /// The flags byte (redundant layout only).
    pub flags: Option<u8>,
}

impl CopyHeader {
    /// `true` when the stored CRC matches the data.
    pub const fn crc_ok(&self) -> bool {
        self.stored_crc == self.computed_crc
    }
}

/// Reads the header of one copy and checks its CRC.
///
/// # Errors
/// [`ImageError::TooShort`] when `image` cannot hold header and data.
pub fn check_copy(image: &[u8], layout: Layout) -> Result<CopyHeader, ImageError> {
    let header_len = layout.header_len();
    let too_short = ImageError::TooShort {
        len: image.len(),
        min: header_len + 1,
    };
    let data = image
        .get(header_len..)
        .filter(|data| !data.is_empty())
        .ok_or(too_short.clone())?;
    let crc_bytes: [u8; 4] = image
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or(too_short)?;
    Ok(CopyHeader {
        stored_crc: u32::from_le_bytes(crc_bytes),
        computed_crc: crc32(data),
        flags: match layout {
            Layout::Single => None,
            Layout::Redundant => image.get(4).copied(),
        },
    })
}

/// Which copy is current when both have a valid CRC, like libubootenv's
/// `FLAGS_INCREMENTAL` rule (files, block devices, NAND, UBI): the higher
/// flags byte wins, except that 0 is newer than 255 (wrap-around); equal
/// flags pick copy 0. Returns 0 or 1.
pub const fn newer_copy(flags0: u8, flags1: u8) -> usize {
    if flags0 == 0xFF && flags1 == 0 {
        1
    } else if flags1 == 0xFF && flags0 == 0 {
        0
    } else if flags1 > flags0 {
        1
    } else {
        0
    }
}

/// Picks the current copy of a redundant pair from their headers, as
/// libubootenv does: one bad CRC -> the other copy; both good ->
/// [`newer_copy`]; both bad -> `None` (no valid environment).
pub fn select_copy(copy0: &CopyHeader, copy1: &CopyHeader) -> Option<usize> {
    match (copy0.crc_ok(), copy1.crc_ok()) {
        (true, false) => Some(0),
        (false, true) => Some(1),
        (false, false) => None,
        (true, true) => Some(newer_copy(
            copy0.flags.unwrap_or(0),
            copy1.flags.unwrap_or(0),
        )),
    }
}

/// Decodes `name=value\0...\0` from a data area.
///
/// Entries without `=` are skipped and a repeated name keeps its last value
/// (both as in libubootenv). The list ends at an empty entry or exactly at
/// the end of the area.
///
/// # Errors
/// [`ImageError::Unterminated`] when the last entry runs to the end of the
/// area without a NUL.
pub fn decode_vars(data: &[u8]) -> Result<EnvVars, ImageError> {
    let mut vars = EnvVars::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ImageError::Unterminated)?;
        let entry = rest.get(..end).unwrap_or_default();
        if entry.is_empty() {
            break;
        }
        if let Some(eq) = entry.iter().position(|&b| b == b'=') {
            let name = entry.get(..eq).unwrap_or_default();
            let value = entry.get(eq + 1..).unwrap_or_default();
            vars.set(name, value);
        }
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Ok(vars)
}

/// A successfully decoded environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedEnv {
    /// The variables of the current copy.
    pub vars: EnvVars,
    /// The current copy: always 0 for a single copy.
    pub current: usize,
    /// The current copy's flags byte (redundant layout only).
    pub flags: Option<u8>,
    /// The byte that pads the current copy's data area after the variables
    /// (0x00 when there is no padding or it is neither 0x00 nor 0xFF).
    pub pad: u8,
}

fn pad_byte(data: &[u8]) -> u8 {
    match data.last() {
        Some(&0xFF) => 0xFF,
        _ => 0x00,
    }
}

/// Parses a single-copy image (`crc | data`).
///
/// # Errors
/// [`ImageError::TooShort`], [`ImageError::CrcMismatch`],
/// [`ImageError::Unterminated`].
pub fn parse_single(image: &[u8]) -> Result<ParsedEnv, ImageError> {
    let header = check_copy(image, Layout::Single)?;
    if !header.crc_ok() {
        return Err(ImageError::CrcMismatch {
            stored: header.stored_crc,
            computed: header.computed_crc,
        });
    }
    let data = image.get(Layout::Single.header_len()..).unwrap_or_default();
    Ok(ParsedEnv {
        vars: decode_vars(data)?,
        current: 0,
        flags: None,
        pad: pad_byte(data),
    })
}

/// Parses a redundant pair (`crc | flags | data`, twice) and picks the
/// current copy like libubootenv.
///
/// # Errors
/// [`ImageError::TooShort`], [`ImageError::CopySizeMismatch`],
/// [`ImageError::BothCopiesBad`], [`ImageError::Unterminated`] (of the
/// chosen copy; libubootenv does not fall back to the other copy then).
pub fn parse_redundant(copy0: &[u8], copy1: &[u8]) -> Result<ParsedEnv, ImageError> {
    if copy0.len() != copy1.len() {
        return Err(ImageError::CopySizeMismatch {
            first: copy0.len(),
            second: copy1.len(),
        });
    }
    let headers = [
        check_copy(copy0, Layout::Redundant)?,
        check_copy(copy1, Layout::Redundant)?,
    ];
    let [h0, h1] = headers;
    let current = select_copy(&h0, &h1).ok_or(ImageError::BothCopiesBad {
        copy0: (h0.stored_crc, h0.computed_crc),
        copy1: (h1.stored_crc, h1.computed_crc),
    })?;
    let (image, header) = if current == 0 {
        (copy0, h0)
    } else {
        (copy1, h1)
    };
    let data = image
        .get(Layout::Redundant.header_len()..)
        .unwrap_or_default();
    Ok(ParsedEnv {
        vars: decode_vars(data)?,
        current,
        flags: header.flags,
        pad: pad_byte(data),
    })
}

/// Builds one copy of `size` bytes: header, variables in name order
/// (`.flags` last, as libubootenv writes it), a terminating NUL, then `pad`
/// up to the end. `flags` is written only for [`Layout::Redundant`].
///
/// # Errors
/// [`ImageError::TooShort`] for a size without room for the terminator,
/// [`ImageError::InvalidName`], [`ImageError::InvalidValue`],
/// [`ImageError::TooLarge`].
pub fn encode(
    vars: &EnvVars,
    layout: Layout,
    size: usize,
    flags: u8,
    pad: u8,
) -> Result<Vec<u8>, ImageError> {
    let header_len = layout.header_len();
    let available =
        size.checked_sub(header_len)
            .filter(|&n| n > 0)
            .ok_or(ImageError::TooShort {
                len: size,
                min: header_len + 1,
            })?;
    let needed = vars.encoded_len();
    if needed > available {
        return Err(ImageError::TooLarge { needed, available });
    }
    let mut image = Vec::with_capacity(size);
    image.extend_from_slice(&[0; 4]);
    if layout == Layout::Redundant {
        image.push(flags);
    }
    let ordered = vars
        .iter()
        .filter(|(name, _)| *name != FLAGS_VAR)
        .chain(vars.iter().filter(|(name, _)| *name == FLAGS_VAR));
    for (name, value) in ordered {
        if !check_name(name) {
            return Err(ImageError::InvalidName(name.to_vec()));
        }
        if !check_value(value) {
            return Err(ImageError::InvalidValue(name.to_vec()));
        }
        image.extend_from_slice(name);
        image.push(b'=');
        image.extend_from_slice(value);
        image.push(0);
    }
    image.push(0);
    image.resize(size, pad);
    let crc = crc32(image.get(header_len..).unwrap_or_default());
    image.splice(..4, crc.to_le_bytes());
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> EnvVars {
        let mut vars = EnvVars::new();
        for (name, value) in pairs {
            vars.set(*name, *value);
        }
        vars
    }

    #[test]
    fn round_trip_single_and_redundant() {
        let env = vars(&[("b", "2"), ("a", "1"), (".flags", "a:dw"), ("empty", "")]);
        let single = encode(&env, Layout::Single, 64, 0, 0xFF).unwrap();
        assert_eq!(single.len(), 64);
        assert_eq!(
            single.get(4..26).unwrap(),
            b"a=1\0b=2\0empty=\0.flags=a:dw\0\0".get(..22).unwrap()
        );
        assert_eq!(*single.last().unwrap(), 0xFF);
        let parsed = parse_single(&single).unwrap();
        assert_eq!(parsed.vars, env);
        assert_eq!(parsed.pad, 0xFF);

        let copy = encode(&env, Layout::Redundant, 64, 7, 0).unwrap();
        assert_eq!(copy[4], 7);
        let mut stale = encode(&vars(&[("a", "old")]), Layout::Redundant, 64, 6, 0).unwrap();
        let parsed = parse_redundant(&stale, &copy).unwrap();
        assert_eq!(
            (parsed.current, parsed.flags, parsed.vars.get_str("a")),
            (1, Some(7), Some("1"))
        );
        // Corrupt copy 1: copy 0 is used.
        let mut broken = copy.clone();
        broken[20] ^= 1;
        assert_eq!(
            parse_redundant(&stale, &broken).unwrap().vars.get_str("a"),
            Some("old")
        );
        // Both bad.
        stale[30] ^= 1;
        assert!(matches!(
            parse_redundant(&stale, &broken),
            Err(ImageError::BothCopiesBad { .. })
        ));
        // CRC mismatch on a single copy.
        let mut bad = single;
        bad[10] ^= 0x40;
        assert!(matches!(
            parse_single(&bad),
            Err(ImageError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn flags_wrap_like_libubootenv() {
        assert_eq!(newer_copy(1, 2), 1);
        assert_eq!(newer_copy(2, 1), 0);
        assert_eq!(newer_copy(5, 5), 0);
        assert_eq!(newer_copy(255, 0), 1);
        assert_eq!(newer_copy(0, 255), 0);
        assert_eq!(newer_copy(254, 255), 1);
        // Only the exact 255/0 pair wraps.
        assert_eq!(newer_copy(254, 0), 0);
    }

    #[test]
    fn decode_rules() {
        assert_eq!(
            decode_vars(b"a=1\0junk\0a=2\0\0b=3\0").unwrap(),
            vars(&[("a", "2")])
        );
        assert_eq!(decode_vars(b"a=1\0").unwrap(), vars(&[("a", "1")]));
        assert_eq!(decode_vars(b"a=b=c\0\0").unwrap(), vars(&[("a", "b=c")]));
        assert_eq!(decode_vars(b"a=1\0b=2"), Err(ImageError::Unterminated));
        assert_eq!(decode_vars(b"").unwrap(), EnvVars::new());
    }

    #[test]
    fn encode_errors() {
        let full = vars(&[("name", "0123456789")]);
        assert_eq!(
            encode(&full, Layout::Single, 16, 0, 0),
            Err(ImageError::TooLarge {
                needed: 17,
                available: 12
            })
        );
        assert!(encode(&full, Layout::Single, 21, 0, 0).is_ok());
        assert!(matches!(
            encode(&vars(&[("a=b", "1")]), Layout::Single, 64, 0, 0),
            Err(ImageError::InvalidName(_))
        ));
        assert!(matches!(
            encode(&vars(&[("a", "1\u{0}")]), Layout::Single, 64, 0, 0),
            Err(ImageError::InvalidValue(_))
        ));
        assert!(matches!(
            encode(&EnvVars::new(), Layout::Redundant, 5, 0, 0),
            Err(ImageError::TooShort { .. })
        ));
    }

    #[test]
    fn parse_never_panics() {
        let valid = encode(
            &vars(&[("bootcount", "0"), ("mender_boot_part", "2")]),
            Layout::Redundant,
            48,
            3,
            0,
        )
        .unwrap();
        let mut seed = 0x9E37_79B9_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for len in 0..valid.len() + 2 {
            let cut = valid.get(..len).unwrap_or(&valid);
            let _ = parse_single(cut);
            let _ = parse_redundant(cut, cut);
            let _ = parse_redundant(cut, &valid);
            let _ = check_copy(cut, Layout::Redundant);
        }
        for round in 0..2000 {
            let len = (next() % 80) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| (next() & 0xFF) as u8).collect();
            if round % 2 == 0 && len > 4 {
                // Give the garbage a matching CRC so decoding is exercised too.
                let crc = crc32(&bytes[4..]);
                bytes[..4].copy_from_slice(&crc.to_le_bytes());
                assert!(
                    parse_single(&bytes).is_ok()
                        || parse_single(&bytes) == Err(ImageError::Unterminated)
                );
            }
            let _ = parse_single(&bytes);
            let _ = parse_redundant(&bytes, &valid[..bytes.len().min(valid.len())]);
            let _ = decode_vars(&bytes);
        }
    }
}
