//! Picks the board's bootloader environment, in the reference's order of
//! env tools (grub-mender-grubenv first, then U-Boot's fw_env):
//!
//! 1. `GrubEnvDir` in mender.conf: GRUB;
//! 2. `FwEnvConfig` in mender.conf: U-Boot;
//! 3. a grub-mender-grubenv directory found as the reference finds it: GRUB;
//! 4. `/etc/fw_env.config`: U-Boot.

use otalite::board::BootEnv;
use otalite::config::MenderConfig;
use std::path::{Path, PathBuf};

/// Default libubootenv configuration.
pub const DEFAULT_FW_ENV_CONFIG: &str = "/etc/fw_env.config";

/// The environment of whichever bootloader the device has.
pub enum AnyEnv {
    /// U-Boot (libubootenv format).
    Uboot(otalite_uboot::UbootEnv),
    /// GRUB (grub-mender-grubenv layout).
    Grub(otalite_grub::GrubEnv),
    /// The hand-off flows: the installer owns the bootloader. Reads find
    /// nothing (no trial runs, as far as the agent knows); writes are
    /// refused (the hand-off agent never switches slots).
    None,
}

impl BootEnv for AnyEnv {
    type Error = String;

    fn read(&mut self, name: &str, value: &mut [u8]) -> Result<Option<usize>, String> {
        match self {
            Self::Uboot(env) => env.read(name, value).map_err(|e| e.to_string()),
            Self::Grub(env) => env.read(name, value).map_err(|e| e.to_string()),
            Self::None => Ok(None),
        }
    }

    fn write(&mut self, vars: &[(&str, Option<&str>)]) -> Result<(), String> {
        match self {
            Self::Uboot(env) => env.write(vars).map_err(|e| e.to_string()),
            Self::Grub(env) => env.write(vars).map_err(|e| e.to_string()),
            Self::None => Err("in hand-off mode the installer owns the bootloader".into()),
        }
    }
}

fn uboot(path: &Path) -> Result<AnyEnv, String> {
    log::debug!("boot env: U-Boot, {}", path.display());
    otalite_uboot::UbootEnv::open(path)
        .map(AnyEnv::Uboot)
        .map_err(|e| {
            format!(
                "cannot open the U-Boot environment ({}): {e}",
                path.display()
            )
        })
}

fn grub(dir: &Path) -> Result<AnyEnv, String> {
    log::debug!("boot env: GRUB, {}", dir.display());
    otalite_grub::GrubEnv::open(dir)
        .map(AnyEnv::Grub)
        .map_err(|e| format!("cannot open the GRUB environment ({}): {e}", dir.display()))
}

/// Opens the bootloader environment named by the configuration.
///
/// # Errors
/// A message naming what was tried.
pub fn open_env(config: &MenderConfig) -> Result<AnyEnv, String> {
    if let Some(dir) = config.grub_env_dir.as_deref() {
        return grub(Path::new(dir));
    }
    if let Some(path) = config.fw_env_config.as_deref() {
        return uboot(Path::new(path));
    }
    if let Ok(dir) = otalite_grub::find_env_dir(Path::new("/")) {
        return grub(&dir);
    }
    let fw_env = PathBuf::from(DEFAULT_FW_ENV_CONFIG);
    if fw_env.exists() {
        return uboot(&fw_env);
    }
    Err(format!(
        "no bootloader environment found: neither a grub-mender-grubenv directory nor {} exists \
         (set GrubEnvDir or FwEnvConfig in mender.conf)",
        fw_env.display()
    ))
}

pub use otalite_host::reboot::CommandReboot;

/// The boot state from the configured environment (for taking a device
/// over from the reference, see `otalite_host::takeover`).
pub fn boot_state(config: &MenderConfig) -> Result<otalite::board::BootState, String> {
    use otalite::board::BootControl;
    otalite::board::MenderBootControl::new(open_env(config)?)
        .boot_state()
        .map_err(|e| format!("cannot read the bootloader environment: {e}"))
}
