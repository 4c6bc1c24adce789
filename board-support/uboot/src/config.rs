//! `fw_env.config` parsing, compatible with libubootenv's classic format.
//!
//! Each non-comment line is `device offset size [sector_size [sectors]]`.
//! One line describes a single-copy environment, two lines a redundant one.
//!
//! Number syntax follows libubootenv (and U-Boot's `fw_env.c`), which read
//! the line with `sscanf("%ms %lli %zx %zx %lx")`:
//!
//! | field | syntax | example |
//! |---|---|---|
//! | `offset` | C integer: `0x` hex, leading `0` octal, else decimal; may be negative (counted from the device end) | `0x100000`, `1048576`, `-0x4000` |
//! | `size`, `sector_size`, `sectors` | **always hexadecimal**, `0x` prefix optional | `0x20000` = `20000` = 131072 bytes |
//!
//! So a size written as `131072` means `0x131072` to libubootenv, and to
//! this parser too: the same file must describe the same bytes for both.
//!
//! Differences to libubootenv, all stricter: a line with fewer than three
//! fields, a malformed number, or a third device line is an error (with its
//! line number) instead of being skipped or ignored.

use core::fmt;
use std::path::PathBuf;

/// One environment copy: where it lives on which device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvDevice {
    /// Device or file path, e.g. `/dev/mmcblk0boot1` or `/boot/uboot.env`.
    pub path: PathBuf,
    /// Byte offset of the copy; negative counts back from the device end.
    pub offset: i64,
    /// Size of the copy in bytes (header included).
    pub size: usize,
    /// Erase sector size (only meaningful for MTD flash), if given.
    pub sector_size: Option<u64>,
    /// Number of sectors (only meaningful for MTD flash), if given.
    pub sectors: Option<u64>,
}

/// A parsed `fw_env.config`: one copy, or two for a redundant environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwEnvConfig {
    /// The first device line (copy 0).
    pub primary: EnvDevice,
    /// The second device line (copy 1), present for a redundant environment.
    pub redundant: Option<EnvDevice>,
}

impl FwEnvConfig {
    /// Size in bytes of each copy.
    pub fn env_size(&self) -> usize {
        self.primary.size
    }

    /// `true` when the environment has two copies.
    pub fn is_redundant(&self) -> bool {
        self.redundant.is_some()
    }

    /// The copies in order: copy 0, then copy 1 if redundant.
    pub fn devices(&self) -> impl Iterator<Item = &EnvDevice> {
        core::iter::once(&self.primary).chain(self.redundant.as_ref())
    }
}

/// Which field of a config line a [`ConfigErrorKind`] refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigField {
    /// The device path (field 1).
    Device,
    /// The offset (field 2).
    Offset,
    /// The environment size (field 3).
    Size,
    /// The erase sector size (field 4).
    SectorSize,
    /// The number of sectors (field 5).
    Sectors,
}

impl fmt::Display for ConfigField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Device => "device",
            Self::Offset => "offset",
            Self::Size => "size",
            Self::SectorSize => "sector size",
            Self::Sectors => "sector count",
        })
    }
}

/// What is wrong in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// A required field is missing.
    MissingField(ConfigField),
    /// A field is not a valid number in the syntax that field uses.
    BadNumber {
        /// The field.
        field: ConfigField,
        /// The text found.
        text: String,
    },
    /// More fields than `device offset size sector_size sectors`.
    TrailingField(String),
    /// The size is zero.
    ZeroSize,
    /// The size cannot hold the header plus the terminating NUL.
    SizeTooSmall(usize),
    /// The two copies have different sizes.
    SizeMismatch {
        /// Size of copy 0.
        first: usize,
        /// Size of copy 1.
        second: usize,
    },
    /// A third device line.
    TooManyDevices,
    /// No device line at all.
    NoDevice,
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingField(field) => {
                write!(
                    f,
                    "missing {field} (expected `device offset size [sector_size [sectors]]`)"
                )
            }
            Self::BadNumber { field, text } => match field {
                ConfigField::Offset => write!(
                    f,
                    "invalid {field} `{text}` (expected a C integer such as 0x100000)"
                ),
                _ => write!(
                    f,
                    "invalid {field} `{text}` (expected a hexadecimal number such as 0x4000)"
                ),
            },
            Self::TrailingField(text) => write!(f, "unexpected extra field `{text}`"),
            Self::ZeroSize => f.write_str("environment size is zero"),
            Self::SizeTooSmall(size) => write!(f, "environment size {size:#x} is too small"),
            Self::SizeMismatch { first, second } => write!(
                f,
                "redundant copies differ in size ({first:#x} vs {second:#x})"
            ),
            Self::TooManyDevices => f.write_str("more than two device lines"),
            Self::NoDevice => f.write_str("no device line found"),
        }
    }
}

/// A config error and the 1-based line it was found on (0 for the whole file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line number; 0 when the error concerns the whole file.
    pub line: usize,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "fw_env.config: {}", self.kind)
        } else {
            write!(f, "fw_env.config line {}: {}", self.line, self.kind)
        }
    }
}

impl core::error::Error for ConfigError {}

/// Smallest usable size: redundant header (5 bytes) plus the terminating NUL.
const MIN_ENV_SIZE: usize = 6;

/// Parses the text of an `fw_env.config` file. Never panics.
///
/// # Errors
/// [`ConfigError`] with the offending line number.
pub fn parse_fw_env_config(text: &str) -> Result<FwEnvConfig, ConfigError> {
    let mut devices: Vec<EnvDevice> = Vec::with_capacity(2);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |kind| ConfigError { line, kind };
        // A token starting with `#` starts a comment (libubootenv skips lines
        // starting with `#`, and sscanf stops at a `#` after the fields).
        let mut fields = raw
            .split_whitespace()
            .take_while(|field| !field.starts_with('#'));
        let Some(device) = fields.next() else {
            continue;
        };
        let offset_text = fields
            .next()
            .ok_or(err(ConfigErrorKind::MissingField(ConfigField::Offset)))?;
        let size_text = fields
            .next()
            .ok_or(err(ConfigErrorKind::MissingField(ConfigField::Size)))?;
        let offset = parse_c_integer(offset_text).ok_or_else(|| {
            err(ConfigErrorKind::BadNumber {
                field: ConfigField::Offset,
                text: offset_text.into(),
            })
        })?;
        let hex = |field, text: &str| {
            parse_hex(text).ok_or_else(|| {
                err(ConfigErrorKind::BadNumber {
                    field,
                    text: text.into(),
                })
            })
        };
        let size = hex(ConfigField::Size, size_text)?;
        let size = usize::try_from(size).map_err(|_| {
            err(ConfigErrorKind::BadNumber {
                field: ConfigField::Size,
                text: size_text.into(),
            })
        })?;
        let sector_size = fields
            .next()
            .map(|text| hex(ConfigField::SectorSize, text))
            .transpose()?;
        let sectors = fields
            .next()
            .map(|text| hex(ConfigField::Sectors, text))
            .transpose()?;
        if let Some(extra) = fields.next() {
            return Err(err(ConfigErrorKind::TrailingField(extra.into())));
        }
        if size == 0 {
            return Err(err(ConfigErrorKind::ZeroSize));
        }
        if size < MIN_ENV_SIZE {
            return Err(err(ConfigErrorKind::SizeTooSmall(size)));
        }
        if let Some(first) = devices.first() {
            if devices.len() >= 2 {
                return Err(err(ConfigErrorKind::TooManyDevices));
            }
            if first.size != size {
                return Err(err(ConfigErrorKind::SizeMismatch {
                    first: first.size,
                    second: size,
                }));
            }
        }
        devices.push(EnvDevice {
            path: PathBuf::from(device),
            offset,
            size,
            sector_size,
            sectors,
        });
    }
    let mut devices = devices.into_iter();
    let primary = devices.next().ok_or(ConfigError {
        line: 0,
        kind: ConfigErrorKind::NoDevice,
    })?;
    Ok(FwEnvConfig {
        primary,
        redundant: devices.next(),
    })
}

/// `strtoll(text, 0)` over the whole token: sign, then `0x` hex, `0` octal
/// or decimal.
fn parse_c_integer(text: &str) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, text.get(1..)?),
        b'+' => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (radix, digits) =
        if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, hex)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, rest.get(1..)?)
        } else {
            (10, rest)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(digits, radix).ok()?);
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// `%x` over the whole token: hexadecimal with an optional `0x` prefix.
fn parse_hex(text: &str) -> Option<u64> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> (usize, ConfigErrorKind) {
        let error = parse_fw_env_config(text).unwrap_err();
        (error.line, error.kind)
    }

    #[test]
    fn single_copy() {
        let config = parse_fw_env_config("# comment\n\n/dev/vda 0x100000 0x20000\n").unwrap();
        assert_eq!(config.primary.path, PathBuf::from("/dev/vda"));
        assert_eq!(config.primary.offset, 0x10_0000);
        assert_eq!(config.primary.size, 0x2_0000);
        assert_eq!(config.primary.sector_size, None);
        assert!(!config.is_redundant());
        assert_eq!(config.devices().count(), 1);
    }

    #[test]
    fn redundant_with_sectors_and_inline_comment() {
        let text = "  # MMC boot partition\n\
                    /dev/mmcblk0boot1\t0x3E0000 0x4000 0x1000 4 # copy 0\n\
                    /dev/mmcblk0boot1 4177920 4000\n";
        let config = parse_fw_env_config(text).unwrap();
        assert_eq!(config.primary.offset, 0x3E_0000);
        assert_eq!(config.primary.sector_size, Some(0x1000));
        assert_eq!(config.primary.sectors, Some(4));
        let second = config.redundant.unwrap();
        assert_eq!(second.offset, 4_177_920, "offset is decimal without 0x");
        assert_eq!(second.size, 0x4000, "size is hexadecimal even without 0x");
    }

    #[test]
    fn offsets_like_strtoll() {
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("-0x4000"), Some(-0x4000));
        assert_eq!(parse_c_integer("+12"), Some(12));
        assert_eq!(parse_c_integer("0x"), None);
        assert_eq!(parse_c_integer("08"), None);
        assert_eq!(parse_c_integer("-"), None);
        assert_eq!(parse_c_integer("99999999999999999999"), None);
        assert_eq!(parse_hex("0X1f"), Some(0x1f));
        assert_eq!(parse_hex("g"), None);
    }

    #[test]
    fn errors_carry_line_numbers() {
        assert_eq!(
            kind("\n/dev/x\n"),
            (2, ConfigErrorKind::MissingField(ConfigField::Offset))
        );
        assert_eq!(
            kind("/dev/x 0\n"),
            (1, ConfigErrorKind::MissingField(ConfigField::Size))
        );
        assert_eq!(
            kind("#\n#\n/dev/x zz 0x4000"),
            (
                3,
                ConfigErrorKind::BadNumber {
                    field: ConfigField::Offset,
                    text: "zz".into()
                }
            )
        );
        assert_eq!(
            kind("/dev/x 0 0x40k"),
            (
                1,
                ConfigErrorKind::BadNumber {
                    field: ConfigField::Size,
                    text: "0x40k".into()
                }
            )
        );
        assert_eq!(kind("/dev/x 0 0"), (1, ConfigErrorKind::ZeroSize));
        assert_eq!(kind("/dev/x 0 5"), (1, ConfigErrorKind::SizeTooSmall(5)));
        assert_eq!(
            kind("/dev/x 0 10 1 1 1"),
            (1, ConfigErrorKind::TrailingField("1".into()))
        );
        assert_eq!(
            kind("/dev/x 0 0x4000\n/dev/x 0x4000 0x2000"),
            (
                2,
                ConfigErrorKind::SizeMismatch {
                    first: 0x4000,
                    second: 0x2000
                }
            )
        );
        assert_eq!(
            kind("a 0 10\nb 0 10\nc 0 10\n"),
            (3, ConfigErrorKind::TooManyDevices)
        );
        assert_eq!(kind("# nothing\n\n"), (0, ConfigErrorKind::NoDevice));
        let message = parse_fw_env_config("x 0 q").unwrap_err().to_string();
        assert!(
            message.contains("line 1") && message.contains("size"),
            "{message}"
        );
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut seed = 0x1234_5678_u32;
        let alphabet = b"0123456789abcdefxX-+# \t\n/devz\r\xc3\xa9";
        for len in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                bytes.push(alphabet[(seed >> 16) as usize % alphabet.len()]);
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_fw_env_config(&text);
        }
    }
}
