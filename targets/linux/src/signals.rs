//! Signals for the daemon, as the reference uses them: SIGTERM / SIGINT
//! stop it (exit 0), SIGUSR1 forces an update check, SIGUSR2 an inventory
//! update. `otalite check-update` / `send-inventory` find the daemon through
//! `<data>/otalite.pid` (the reference asks systemd for the PID; a pid file
//! also works without systemd).

use otalite_host::driver::Wake;
use rustix::fs::{flock, FlockOperation};
use rustix::process::{kill_process, Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Starts forwarding signals into a channel the daemon waits on (no
/// polling: an idle daemon sleeps in `recv_timeout`). SIGTERM/SIGINT also
/// raise `stop`, which a network exchange in progress polls (it may be
/// blocked far from the channel).
///
/// The sender also goes to the D-Bus service (`FetchJwtToken`).
pub fn wake_channel(stop: Arc<AtomicBool>) -> std::io::Result<(Sender<Wake>, Receiver<Wake>)> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP])?;
    let (sender, receiver) = channel();
    let to_return = sender.clone();
    std::thread::Builder::new()
        .name("otalite-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for signal in signals.forever() {
                let wake = match signal {
                    SIGUSR1 => Wake::CheckUpdate,
                    SIGUSR2 => Wake::SendInventory,
                    SIGHUP => Wake::ControlMapRequest,
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
    Ok((to_return, receiver))
}

/// `<data>/otalite.pid`.
pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("otalite.pid")
}

/// The daemon's hold on `<data>/otalite.pid`: the file names its pid and
/// stays `flock`ed while the daemon runs, so a stale file (the daemon
/// gone, its pid maybe reused by another process) is detectable: nobody
/// holds its lock. The lock goes with the process, even on SIGKILL.
pub struct PidLock {
    path: PathBuf,
    // Holds the lock while open.
    _file: File,
}

fn try_lock(file: &File) -> std::io::Result<bool> {
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

impl PidLock {
    /// Writes this process's pid to `<data>/otalite.pid` (atomically) and
    /// locks it.
    ///
    /// # Errors
    /// Another daemon holds the file, or it cannot be written or locked.
    pub fn acquire(data_dir: &Path) -> Result<Self, String> {
        let path = pid_file(data_dir);
        if let Ok(existing) = File::open(&path) {
            if !try_lock(&existing).unwrap_or(true) {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(format!(
                    "another otalite daemon (pid {}) is running on {}",
                    pid.trim(),
                    data_dir.display()
                ));
            }
        }
        otalite_host::fs::atomic_write(&path, format!("{}\n", std::process::id()).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let file = File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match try_lock(&file) {
            Ok(true) => Ok(Self { path, _file: file }),
            Ok(false) => Err(format!(
                "another otalite daemon took {} at the same time",
                path.display()
            )),
            Err(e) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What `check-update` / `send-inventory` ask the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// SIGUSR1: check for an update now.
    CheckUpdate,
    /// SIGUSR2: send the inventory now.
    SendInventory,
    /// SIGHUP: a `control-map` request waits in the data dir.
    ControlMap,
}

/// The program `/proc/<pid>/exe` names, without the " (deleted)" the
/// kernel appends when the file was replaced (a package upgrade).
fn exe_of(pid: &str) -> Option<PathBuf> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let text = exe.to_string_lossy();
    Some(match text.strip_suffix(" (deleted)") {
        Some(stripped) => PathBuf::from(stripped),
        None => exe,
    })
}

/// The running daemon's pid: `<data>/otalite.pid` is locked (a daemon
/// holds it) and the pid it names runs this same program.
///
/// # Errors
/// Why no daemon is known to run (a stale file is reported as such).
pub fn find_daemon(data_dir: &Path) -> Result<Pid, String> {
    let path = pid_file(data_dir);
    let no_daemon = |why: String| format!("no otalite daemon is running: {why}");
    let file = File::open(&path).map_err(|e| no_daemon(format!("{}: {e}", path.display())))?;
    match try_lock(&file) {
        Ok(false) => {}
        Ok(true) => {
            return Err(no_daemon(format!(
                "{} is stale (no daemon holds it)",
                path.display()
            )))
        }
        Err(e) => return Err(format!("cannot check the lock on {}: {e}", path.display())),
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    let pid = text
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{} does not hold a process id", path.display()))?;
    let me = std::env::current_exe().ok().and_then(|exe| {
        exe.to_str()
            .map(|e| PathBuf::from(e.trim_end_matches(" (deleted)")))
    });
    let theirs = exe_of(text);
    log::debug!(
        "pid file {}: pid {text}, its program {theirs:?}, ours {me:?}",
        path.display()
    );
    if theirs.is_none() || theirs != me {
        return Err(no_daemon(format!(
            "pid {text} from {} is not an otalite daemon",
            path.display()
        )));
    }
    Ok(pid)
}

/// Sends `request` to the running daemon ([`find_daemon`]): a stale pid
/// file is reported, never acted on.
///
/// # Errors
/// No daemon runs (or the file is stale), or the signal cannot be sent.
pub fn signal_daemon(data_dir: &Path, request: Request) -> Result<(), String> {
    let pid = find_daemon(data_dir)?;
    let text = pid.as_raw_pid();
    let signal = match request {
        Request::CheckUpdate => Signal::USR1,
        Request::SendInventory => Signal::USR2,
        Request::ControlMap => Signal::HUP,
    };
    kill_process(pid, signal).map_err(|e| format!("cannot signal the daemon (pid {text}): {e}"))?;
    log::debug!("sent {signal:?} to the otalite daemon (pid {text})");
    Ok(())
}
