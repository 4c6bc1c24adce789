//! [`UbootEnv`]: the U-Boot environment on files and block devices.

use core::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use otalite::board::BootEnv;

use crate::config::{parse_fw_env_config, ConfigError, EnvDevice, FwEnvConfig};
use crate::image::{
    check_name, check_value, encode, parse_redundant, parse_single, EnvVars, ImageError, Layout,
};

/// libubootenv's (and U-Boot `fw_env`'s) lock file.
pub const DEFAULT_LOCK_PATH: &str = "/var/lock/fw_printenv.lock";

/// Errors of [`UbootEnv`].
#[derive(Debug)]
pub enum Error {
    /// The config file could not be read.
    ReadConfig {
        /// Config file path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The config file is malformed.
    Config {
        /// Config file path, when read from a file.
        path: Option<PathBuf>,
        /// The parse error (with its line number).
        source: ConfigError,
    },
    /// MTD or UBI devices need erase/ioctl handling this crate does not do.
    UnsupportedDevice(PathBuf),
    /// An I/O operation on an environment device failed.
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or device.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The device ends before the environment copy does.
    ShortDevice {
        /// The file or device.
        path: PathBuf,
        /// Offset of the copy.
        offset: u64,
        /// Size of the copy.
        size: usize,
    },
    /// A negative offset reaches before the start of the device.
    OffsetBeforeStart {
        /// The file or device.
        path: PathBuf,
        /// The configured (negative) offset.
        offset: i64,
    },
    /// Taking the lock failed.
    Lock {
        /// Lock file path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The environment content is invalid, for instance
    /// [`ImageError::BothCopiesBad`] or [`ImageError::CrcMismatch`] (no
    /// valid environment and no default configured), or it does not fit.
    Image(ImageError),
    /// A value is longer than the caller's buffer.
    ValueTooLong {
        /// Variable name.
        name: String,
        /// Length of the value.
        len: usize,
        /// Size of the buffer.
        capacity: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReadConfig { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            Self::Config {
                path: Some(path),
                source,
            } => write!(f, "{}: {source}", path.display()),
            Self::Config { path: None, source } => write!(f, "{source}"),
            Self::UnsupportedDevice(path) => {
                write!(
                    f,
                    "{}: MTD/UBI environments are not supported (files and block devices only)",
                    path.display()
                )
            }
            Self::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Self::ShortDevice { path, offset, size } => write!(
                f,
                "{} ends before the environment ({size:#x} bytes at offset {offset:#x})",
                path.display()
            ),
            Self::OffsetBeforeStart { path, offset } => {
                write!(
                    f,
                    "{}: offset {offset} reaches before the start of the device",
                    path.display()
                )
            }
            Self::Lock { path, source } => write!(f, "cannot lock {}: {source}", path.display()),
            Self::Image(error) => write!(f, "U-Boot environment: {error}"),
            Self::ValueTooLong {
                name,
                len,
                capacity,
            } => {
                write!(
                    f,
                    "value of `{name}` is {len} bytes, buffer holds {capacity}"
                )
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::ReadConfig { source, .. }
            | Self::Io { source, .. }
            | Self::Lock { source, .. } => Some(source),
            Self::Config { source, .. } => Some(source),
            Self::Image(error) => Some(error),
            _ => None,
        }
    }
}

impl From<ImageError> for Error {
    fn from(error: ImageError) -> Self {
        Self::Image(error)
    }
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The environment as loaded: variables plus what a write needs.
#[derive(Debug)]
struct Loaded {
    vars: EnvVars,
    /// Current copy (0 or 1).
    current: usize,
    /// Flags byte of the current copy (redundant only).
    flags: u8,
    /// Padding byte to write.
    pad: u8,
    /// `false` when no copy was valid and the default environment is used.
    valid: bool,
}

/// The U-Boot environment described by an `fw_env.config`, read and written
/// like libubootenv (`fw_printenv` / `fw_setenv`) does.
///
/// Every call takes the libubootenv lock (if configured), re-reads the
/// device(s) and releases the lock, so changes made by `fw_setenv` or the
/// bootloader between calls are seen.
///
/// Writes are atomic:
/// - redundant: the new image goes to the copy that is *not* current, with
///   flags = current flags + 1 (wrapping 255 -> 0), then `fsync`;
/// - single copy in a regular file: a temporary copy of the file is written,
///   `fsync`ed, renamed over the original, and the directory is `fsync`ed;
/// - single copy on a block device: written in place and `fsync`ed; this is
///   **not** power-safe and logs a warning.
#[derive(Debug)]
pub struct UbootEnv {
    config: FwEnvConfig,
    lock_path: Option<PathBuf>,
    default_env: Option<EnvVars>,
    warned_in_place: bool,
}

impl UbootEnv {
    /// Reads and parses the config file at `config_path` (usually
    /// `/etc/fw_env.config`), see [`UbootEnv::from_config`].
    ///
    /// # Errors
    /// [`Error::ReadConfig`], [`Error::Config`], [`Error::UnsupportedDevice`].
    pub fn open(config_path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = config_path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_path_buf(),
            source,
        })?;
        let config = parse_fw_env_config(&text).map_err(|source| Error::Config {
            path: Some(path.to_path_buf()),
            source,
        })?;
        Self::from_config(config)
    }

    /// Uses a parsed config. The lock file is [`DEFAULT_LOCK_PATH`] and
    /// there is no default environment; see [`UbootEnv::with_lock_path`] and
    /// [`UbootEnv::with_default_env`].
    ///
    /// # Errors
    /// [`Error::UnsupportedDevice`] for `/dev/mtd*` and `/dev/ubi*`.
    pub fn from_config(config: FwEnvConfig) -> Result<Self, Error> {
        for device in config.devices() {
            let text = device.path.to_string_lossy();
            if text.starts_with("/dev/mtd") || text.starts_with("/dev/ubi") {
                return Err(Error::UnsupportedDevice(device.path.clone()));
            }
        }
        Ok(Self {
            config,
            lock_path: Some(PathBuf::from(DEFAULT_LOCK_PATH)),
            default_env: None,
            warned_in_place: false,
        })
    }

    /// Sets the lock file (`flock`ed exclusively around every access), or
    /// `None` for no locking. If the file cannot be opened the access goes on
    /// without the lock, with a warning, as in libubootenv.
    #[must_use]
    pub fn with_lock_path(mut self, lock_path: Option<PathBuf>) -> Self {
        self.lock_path = lock_path;
        self
    }

    /// Sets the environment used when no copy is valid (like `fw_printenv
    /// -f`, whose default is `/etc/u-boot-initial-env`). Without one, a
    /// missing valid environment is an error ([`ImageError::CrcMismatch`] or
    /// [`ImageError::BothCopiesBad`]), as `fw_setenv` refuses to write then.
    #[must_use]
    pub fn with_default_env(mut self, default_env: Option<EnvVars>) -> Self {
        self.default_env = default_env;
        self
    }

    /// The config in use.
    pub fn config(&self) -> &FwEnvConfig {
        &self.config
    }

    /// Reads all variables.
    ///
    /// # Errors
    /// I/O, lock and format errors.
    pub fn vars(&mut self) -> Result<EnvVars, Error> {
        let _lock = self.lock()?;
        Ok(self.load()?.vars)
    }

    /// Reads one variable as text (`None` when unset or not UTF-8).
    ///
    /// # Errors
    /// I/O, lock and format errors.
    pub fn get(&mut self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.vars()?.get_str(name).map(str::to_owned))
    }

    /// Applies all changes in one atomic write: `Some(value)` sets, `None`
    /// deletes. An empty value deletes too, as with `fw_setenv` and U-Boot's
    /// `setenv`. Nothing is written when nothing changes.
    ///
    /// # Errors
    /// [`ImageError::InvalidName`] / [`ImageError::InvalidValue`] (names
    /// must be non-empty without `=` or NUL, values without NUL),
    /// [`ImageError::TooLarge`], I/O, lock and format errors. On error the
    /// environment is unchanged.
    pub fn update(&mut self, changes: &[(&str, Option<&str>)]) -> Result<(), Error> {
        for (name, value) in changes {
            if !check_name(name.as_bytes()) {
                return Err(ImageError::InvalidName(name.as_bytes().to_vec()).into());
            }
            if !value.is_none_or(|value| check_value(value.as_bytes())) {
                return Err(ImageError::InvalidValue(name.as_bytes().to_vec()).into());
            }
        }
        let _lock = self.lock()?;
        let loaded = self.load()?;
        let mut vars = loaded.vars.clone();
        for (name, value) in changes {
            match value {
                Some(value) if !value.is_empty() => vars.set(*name, *value),
                _ => {
                    vars.remove(name);
                }
            }
        }
        if loaded.valid && vars == loaded.vars {
            log::debug!("U-Boot environment unchanged, not writing");
            return Ok(());
        }
        self.store(&vars, &loaded)
    }

    fn lock(&self) -> Result<Option<File>, Error> {
        let Some(path) = &self.lock_path else {
            return Ok(None);
        };
        let file = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(path)
        {
            Ok(file) => file,
            Err(error) => {
                log::warn!(
                    "cannot open lock file {}: {error}; continuing without lock",
                    path.display()
                );
                return Ok(None);
            }
        };
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|errno| {
            Error::Lock {
                path: path.clone(),
                source: errno.into(),
            }
        })?;
        Ok(Some(file))
    }

    fn load(&self) -> Result<Loaded, Error> {
        let size = self.config.env_size();
        let copy0 = read_copy(&self.config.primary, size)?;
        let parsed = match &self.config.redundant {
            None => parse_single(&copy0),
            Some(device) => parse_redundant(&copy0, &read_copy(device, size)?),
        };
        match parsed {
            Ok(parsed) => Ok(Loaded {
                vars: parsed.vars,
                current: parsed.current,
                flags: parsed.flags.unwrap_or(0),
                pad: parsed.pad,
                valid: true,
            }),
            Err(error) => {
                let Some(default_env) = &self.default_env else {
                    return Err(error.into());
                };
                log::warn!("{error}; using the default environment");
                // libubootenv then treats copy 0 as current (flags as read).
                Ok(Loaded {
                    vars: default_env.clone(),
                    current: 0,
                    flags: copy0.get(4).copied().unwrap_or(0),
                    pad: 0,
                    valid: false,
                })
            }
        }
    }

    fn store(&mut self, vars: &EnvVars, loaded: &Loaded) -> Result<(), Error> {
        let size = self.config.env_size();
        match &self.config.redundant {
            Some(second) => {
                let flags = loaded.flags.wrapping_add(1);
                let image = encode(vars, Layout::Redundant, size, flags, loaded.pad)?;
                let target = if loaded.current == 0 {
                    second
                } else {
                    &self.config.primary
                };
                write_in_place(target, &image)
            }
            None => {
                let image = encode(vars, Layout::Single, size, 0, loaded.pad)?;
                let device = &self.config.primary;
                let meta = fs::metadata(&device.path).map_err(io_error("stat", &device.path))?;
                if meta.is_file() {
                    replace_file(device, &image)
                } else {
                    if !self.warned_in_place {
                        log::warn!(
                            "{}: single-copy U-Boot environment on a {} is written in place; only a redundant \
                             environment is power-safe",
                            device.path.display(),
                            if meta.file_type().is_block_device() { "block device" } else { "device" }
                        );
                        self.warned_in_place = true;
                    }
                    write_in_place(device, &image)
                }
            }
        }
    }
}

impl BootEnv for UbootEnv {
    type Error = Error;

    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, Error> {
        let vars = self.vars()?;
        let Some(found) = vars.get(name) else {
            return Ok(None);
        };
        let capacity = value.len();
        let target = value
            .get_mut(..found.len())
            .ok_or_else(|| Error::ValueTooLong {
                name: name.to_owned(),
                len: found.len(),
                capacity,
            })?;
        target.copy_from_slice(found);
        Ok(Some(found.len()))
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), Error> {
        self.update(vars)
    }
}

/// The absolute byte offset of `device` in `file` (negative offsets count
/// back from the end), checked to leave room for `size` bytes.
fn resolve_offset(file: &mut File, device: &EnvDevice, size: usize) -> Result<u64, Error> {
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(io_error("seek", &device.path))?;
    let offset = if device.offset >= 0 {
        device.offset.unsigned_abs()
    } else {
        len.checked_sub(device.offset.unsigned_abs())
            .ok_or(Error::OffsetBeforeStart {
                path: device.path.clone(),
                offset: device.offset,
            })?
    };
    let fits = u64::try_from(size)
        .ok()
        .and_then(|size| offset.checked_add(size))
        .is_some_and(|end| end <= len);
    if fits {
        Ok(offset)
    } else {
        Err(Error::ShortDevice {
            path: device.path.clone(),
            offset,
            size,
        })
    }
}

fn read_copy(device: &EnvDevice, size: usize) -> Result<Vec<u8>, Error> {
    let mut file = File::open(&device.path).map_err(io_error("open", &device.path))?;
    let offset = resolve_offset(&mut file, device, size)?;
    let mut image = vec![0; size];
    file.read_exact_at(&mut image, offset)
        .map_err(io_error("read", &device.path))?;
    Ok(image)
}

/// Writes `image` at the copy's offset and `fsync`s.
fn write_in_place(device: &EnvDevice, image: &[u8]) -> Result<(), Error> {
    let _unprotect = ForceRo::disable(&device.path);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&device.path)
        .map_err(io_error("open", &device.path))?;
    let offset = resolve_offset(&mut file, device, image.len())?;
    file.write_all_at(image, offset)
        .map_err(io_error("write", &device.path))?;
    file.sync_all().map_err(io_error("fsync", &device.path))
}

/// Replaces a regular file atomically: copy, patch, fsync, rename, fsync dir.
fn replace_file(device: &EnvDevice, image: &[u8]) -> Result<(), Error> {
    let path = fs::canonicalize(&device.path).map_err(io_error("resolve", &device.path))?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.otalite-tmp"));
    let result = (|| {
        match fs::remove_file(&temp) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove", &temp)(error))
            }
            _ => {}
        }
        // Copies content and permission bits.
        fs::copy(&path, &temp).map_err(io_error("copy to", &temp))?;
        let temp_device = EnvDevice {
            path: temp.clone(),
            ..device.clone()
        };
        write_in_place(&temp_device, image)?;
        fs::rename(&temp, &path).map_err(io_error("rename over", &path))?;
        File::open(&dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error("fsync directory", &dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Clears `/sys/class/block/mmcblkNbootM/force_ro` for eMMC boot partitions
/// while writing (as libubootenv does) and restores it afterwards.
struct ForceRo {
    sysfs: PathBuf,
    previous: String,
}

impl ForceRo {
    fn disable(device: &Path) -> Option<Self> {
        let name = device.to_str()?.strip_prefix("/dev/")?;
        let (disk, part) = name.strip_prefix("mmcblk")?.split_once("boot")?;
        let all_digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(disk) || !all_digits(part) {
            return None;
        }
        let sysfs = PathBuf::from(format!("/sys/class/block/{name}/force_ro"));
        let previous = fs::read_to_string(&sysfs).ok()?.trim().to_owned();
        if previous == "0" {
            return None;
        }
        if let Err(error) = fs::write(&sysfs, "0") {
            log::warn!("cannot clear {}: {error}", sysfs.display());
            return None;
        }
        Some(Self { sysfs, previous })
    }
}

impl Drop for ForceRo {
    fn drop(&mut self) {
        if let Err(error) = fs::write(&self.sysfs, &self.previous) {
            log::warn!("cannot restore {}: {error}", self.sysfs.display());
        }
    }
}
