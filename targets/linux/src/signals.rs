//! Signals for the daemon, as the reference uses them: SIGTERM / SIGINT
//! stop it (exit 0), SIGUSR1 forces an update check, SIGUSR2 an inventory
//! update. `otalite check-update` / `send-inventory` find the daemon through
//! `<data>/otalite.pid` (the reference asks systemd for the PID; a pid file
//! also works without systemd).

use otalite_host::driver::Wake;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

/// Starts forwarding signals into a channel the daemon waits on (no
/// polling: an idle daemon sleeps in `recv_timeout`). SIGTERM/SIGINT also
/// raise `stop`, which a network exchange in progress polls (it may be
/// blocked far from the channel).
pub fn wake_channel(stop: Arc<AtomicBool>) -> std::io::Result<Receiver<Wake>> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2])?;
    let (sender, receiver) = channel();
    std::thread::Builder::new()
        .name("otalite-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for signal in signals.forever() {
                let wake = match signal {
                    SIGUSR1 => Wake::CheckUpdate,
                    SIGUSR2 => Wake::SendInventory,
                    _ => {
                        stop.store(true, Ordering::Relaxed);
                        Wake::Stop
                    }
                };
                if sender.send(wake).is_err() {
                    break;
                }
            }
        })?;
    Ok(receiver)
}

/// `<data>/otalite.pid`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("otalite.pid")
}

/// Sends `signal` to the running daemon.
///
/// # Errors
/// No pid file, or the process is gone.
pub fn signal_daemon(data_dir: &Path, signal: &str) -> Result<(), String> {
    let path = pid_file(data_dir);
    let pid = std::fs::read_to_string(&path)
        .map_err(|e| format!("no running otalite daemon ({}: {e})", path.display()))?;
    let pid = pid.trim();
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} does not hold a process id", path.display()));
    }
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid)
        .status()
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the otalite daemon (pid {pid}) is not running"))
    }
}
