//! Picks the board's bootloader environment, like the reference picks its
//! env tools: GRUB (grub-mender-grubenv) when configured or found, else
//! U-Boot through `fw_env.config`.

use otalite::board::BootEnv;
use otalite::config::MenderConfig;
use std::path::{Path, PathBuf};

/// Default libubootenv configuration.
pub const DEFAULT_FW_ENV_CONFIG: &str = "/etc/fw_env.config";

/// The environment of whichever bootloader the device has.
pub enum AnyEnv {
    /// U-Boot (libubootenv format).
    Uboot(otalite_uboot::UbootEnv),
}

impl BootEnv for AnyEnv {
    type Error = String;

    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, String> {
        match self {
            Self::Uboot(env) => env.read(name, value).map_err(|e| e.to_string()),
        }
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), String> {
        match self {
            Self::Uboot(env) => env.write(vars).map_err(|e| e.to_string()),
        }
    }
}

/// Opens the bootloader environment named by the configuration.
///
/// # Errors
/// A message naming what was tried.
pub fn open_env(config: &MenderConfig) -> Result<AnyEnv, String> {
    let fw_env: PathBuf = config
        .fw_env_config
        .as_deref()
        .unwrap_or(DEFAULT_FW_ENV_CONFIG)
        .into();
    if Path::new(&fw_env).exists() {
        return otalite_uboot::UbootEnv::open(&fw_env)
            .map(AnyEnv::Uboot)
            .map_err(|e| {
                format!(
                    "cannot open the U-Boot environment ({}): {e}",
                    fw_env.display()
                )
            });
    }
    Err(format!(
        "no bootloader environment found: {} does not exist (set FwEnvConfig in mender.conf, or create it)",
        fw_env.display()
    ))
}
