//! Where things live, as the reference client 3.x lays them out, and the
//! merged configuration.
//!
//! | what | default | override |
//! |---|---|---|
//! | main config | `<CONF>/mender.conf` | `-c/--config` |
//! | fallback config | `<DATA>/mender.conf` | `-b/--fallback-config` |
//! | data dir `<DATA>` | `/var/lib/mender` | `-d/--data`, env `MENDER_DATASTORE_DIR` |
//! | `<CONF>` | `/etc/mender` | env `MENDER_CONF_DIR` |
//! | `<SHARE>` | `/usr/share/mender` | env `MENDER_DATA_DIR` |
//! | device type | `<DATA>/device_type` | `DeviceTypeFile` |
//! | artifact info | `<CONF>/artifact_info` | |
//! | rootfs state scripts | `<CONF>/scripts` | |
//! | artifact state scripts | `<DATA>/scripts` | |
//! | U-Boot env config | `/etc/fw_env.config` | `FwEnvConfig` |

use super::fs::read_limited;
use otalite::config::{ConfigError, MenderConfig, MAX_CONFIG_LEN};
use std::io;
use std::path::{Path, PathBuf};

/// Resolved locations of the agent's files.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Main configuration file.
    pub config: PathBuf,
    /// Fallback configuration file.
    pub fallback_config: PathBuf,
    /// Persistent data directory.
    pub data_dir: PathBuf,
    /// Configuration directory (`/etc/mender`).
    pub conf_dir: PathBuf,
    /// Shared data directory (`/usr/share/mender`).
    pub share_dir: PathBuf,
}

fn env_dir(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

impl Paths {
    /// Defaults (with the reference's environment overrides), then the
    /// command-line overrides.
    pub fn resolve(
        config: Option<PathBuf>,
        fallback: Option<PathBuf>,
        data: Option<PathBuf>,
    ) -> Self {
        let conf_dir = env_dir("MENDER_CONF_DIR", "/etc/mender");
        let data_dir = data.unwrap_or_else(|| env_dir("MENDER_DATASTORE_DIR", "/var/lib/mender"));
        Self {
            config: config.unwrap_or_else(|| conf_dir.join("mender.conf")),
            fallback_config: fallback.unwrap_or_else(|| data_dir.join("mender.conf")),
            share_dir: env_dir("MENDER_DATA_DIR", "/usr/share/mender"),
            data_dir,
            conf_dir,
        }
    }

    /// `<CONF>/artifact_info`.
    pub fn artifact_info(&self) -> PathBuf {
        self.conf_dir.join("artifact_info")
    }

    /// `<CONF>/scripts`.
    pub fn rootfs_scripts(&self) -> PathBuf {
        self.conf_dir.join("scripts")
    }

    /// `<DATA>/scripts`.
    pub fn artifact_scripts(&self) -> PathBuf {
        self.data_dir.join("scripts")
    }

    /// The device type file (`DeviceTypeFile` or `<DATA>/device_type`).
    pub fn device_type(&self, config: &MenderConfig) -> PathBuf {
        config
            .device_type_file
            .as_deref()
            .map_or_else(|| self.data_dir.join("device_type"), PathBuf::from)
    }

    /// Loads and merges the fallback and main configuration files. A missing
    /// file counts as empty.
    ///
    /// # Errors
    /// A file that exists but cannot be read or parsed.
    pub fn load_config(&self) -> Result<MenderConfig, LoadConfigError> {
        let fallback = load_one(&self.fallback_config)?;
        let main = load_one(&self.config)?;
        fallback
            .merge(main)
            .map_err(|error| LoadConfigError::Invalid(self.config.clone(), error))
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadConfigError {
    /// The file exists but cannot be read.
    Io(PathBuf, io::Error),
    /// The file is not a valid configuration.
    Invalid(PathBuf, ConfigError),
}

impl std::fmt::Display for LoadConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(path, error) => {
                write!(f, "cannot read configuration {}: {error}", path.display())
            }
            Self::Invalid(path, error) => {
                write!(f, "invalid configuration {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LoadConfigError {}

fn load_one(path: &Path) -> Result<MenderConfig, LoadConfigError> {
    match read_limited(path, MAX_CONFIG_LEN) {
        Ok(text) => {
            let mut scratch = vec![0u8; MAX_CONFIG_LEN];
            MenderConfig::parse(&text, &mut scratch)
                .map_err(|e| LoadConfigError::Invalid(path.to_path_buf(), e))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(MenderConfig::default()),
        Err(error) => Err(LoadConfigError::Io(path.to_path_buf(), error)),
    }
}
