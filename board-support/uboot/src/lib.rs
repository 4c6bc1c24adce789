//! otalite board support: the U-Boot environment, compatible with
//! libubootenv (`fw_printenv` / `fw_setenv`) and U-Boot itself.
//!
//! - [`parse_fw_env_config`]: the `fw_env.config` format (pure).
//! - [`image`]: the environment image codec (pure, never panics on input).
//! - [`UbootEnv`]: [`otalite::board::BootEnv`] on files and block devices,
//!   with libubootenv's lock, copy selection and atomic writes.
//!
//! ```no_run
//! use otalite::board::BootEnv as _;
//! let mut env = otalite_uboot::UbootEnv::open("/etc/fw_env.config")?;
//! env.write(&[("upgrade_available", Some("1")), ("bootcount", Some("0"))])?;
//! # Ok::<(), otalite_uboot::Error>(())
//! ```
//!
//! # On-disk format
//!
//! Each copy is `size` bytes (the third `fw_env.config` field) at `offset`.
//! All multi-byte numbers are little-endian.
//!
//! | offset (single) | offset (redundant) | size | content |
//! |---|---|---|---|
//! | 0 | 0 | 4 | CRC-32 (IEEE, as zlib) of the whole data area, `u32` LE |
//! | – | 4 | 1 | flags: generation counter of the copy |
//! | 4 | 5 | `size - 4` / `size - 5` | data area |
//!
//! Data area: `name=value\0name=value\0...\0`, i.e. the entries end with an
//! empty entry (an extra NUL); the rest up to the end is padding, covered by
//! the CRC. libubootenv writes the variables sorted by name (`.flags`, U-Boot's
//! attribute list, last). Padding: `mkenvimage` uses 0xFF (`-p` to change),
//! U-Boot's `env export` 0x00; libubootenv leaves whatever its buffer held
//! (in practice the old copy's padding). This crate keeps the padding byte of
//! the current copy (0xFF if its last byte is 0xFF, else 0x00).
//!
//! # Redundant copies
//!
//! The two copies are the two `fw_env.config` lines (same size, any devices
//! and offsets). Choosing the current copy (libubootenv, `FLAGS_INCREMENTAL`,
//! used for files, block devices, NAND and UBI):
//!
//! | copy 0 CRC | copy 1 CRC | current |
//! |---|---|---|
//! | ok | bad | 0 |
//! | bad | ok | 1 |
//! | ok | ok | higher flags; flags 0 beats 255 (wrap); equal -> 0 |
//! | bad | bad | none: no valid environment (error, or the default env) |
//!
//! A write stores the full new image in the *other* copy with flags =
//! current flags + 1 (mod 256), so an interrupted write leaves the previous
//! copy current. With no valid copy libubootenv falls back to a default
//! environment file (`-f`, default `/etc/u-boot-initial-env`) and fails
//! when there is none ("Cannot read default environment from file");
//! [`UbootEnv`] does the same with [`UbootEnv::with_default_env`].
#![forbid(unsafe_code)]

pub mod config;
mod env;
pub mod image;

pub use config::{
    parse_fw_env_config, ConfigError, ConfigErrorKind, ConfigField, EnvDevice, FwEnvConfig,
};
pub use env::{Error, UbootEnv, DEFAULT_LOCK_PATH};
pub use image::{EnvVars, ImageError, Layout};
