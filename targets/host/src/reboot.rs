//! Rebooting a Linux device.

/// Reboots with the system's `reboot` command (systemd, busybox or
/// sysvinit all provide one), as the reference does.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommandReboot;

impl otalite::board::Reboot for CommandReboot {
    type Error = String;

    fn reboot(&mut self) -> Result<(), String> {
        let status = std::process::Command::new("reboot")
            .status()
            .map_err(|e| format!("cannot run reboot: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("reboot failed: {status}"))
        }
    }
}
