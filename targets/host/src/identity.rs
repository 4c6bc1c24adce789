//! Running the identity and inventory scripts.
//!
//! | script | rule |
//! |---|---|
//! | `<SHARE>/identity/mender-device-identity` | run with no arguments; non-zero exit, timeout, a bad line or no attribute at all = error |
//! | `<SHARE>/inventory/mender-inventory-*` | every file with an execute bit, in name order; each with its own timeout |
//! | inventory exit status | non-zero is logged; the parsed lines still count |
//! | inventory bad line, timeout, cannot start | that script contributes nothing |
//! | stdout | `key=value` lines (see [`otalite::protocol::keyvalue`]); at most [`MAX_OUTPUT_LEN`] bytes; not-UTF-8 bytes become U+FFFD as Go's JSON encoder does |
//! | stdin, stderr | `/dev/null` (the reference ignores stderr) |
//!
//! The outputs are kept as text; the protocol writers read them through
//! [`otalite::protocol::keyvalue::Attributes`]:
//!
//! ```no_run
//! # use otalite_host::identity::*;
//! # use otalite::protocol::keyvalue::Attributes;
//! # use std::{path::Path, time::Duration};
//! let identity = run_identity(Path::new("/usr/share/mender"), Duration::from_secs(60))?;
//! let texts = identity.texts();
//! let attributes = Attributes::new(&texts);
//! # Ok::<(), IdentityError>(())
//! ```

use otalite::protocol::keyvalue::{KeyValueError, KeyValueText};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Largest script output read; a script printing more fails.
pub const MAX_OUTPUT_LEN: usize = 256 * 1024;
/// Default per-script timeout (the Go client has none; a hung script must
/// not stop the agent).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Prefix of inventory script names.
pub const INVENTORY_PREFIX: &str = "mender-inventory-";

/// Why a script gave no usable output.
#[derive(Debug)]
#[non_exhaustive]
pub enum IdentityError {
    /// The script could not be started or read.
    CannotRun(PathBuf, std::io::Error),
    /// It exited with this status.
    Failed(PathBuf, ExitStatus),
    /// It ran longer than the timeout and was killed.
    TimedOut(PathBuf),
    /// It printed more than [`MAX_OUTPUT_LEN`] bytes.
    TooMuchOutput(PathBuf),
    /// Its output has a bad line.
    Parse(PathBuf, KeyValueError),
    /// It printed no attribute.
    Empty(PathBuf),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CannotRun(path, error) => write!(f, "cannot run {}: {error}", path.display()),
            Self::Failed(path, status) => write!(f, "{} failed ({status})", path.display()),
            Self::TimedOut(path) => write!(f, "{} timed out and was killed", path.display()),
            Self::TooMuchOutput(path) => write!(
                f,
                "{} printed more than {MAX_OUTPUT_LEN} bytes",
                path.display()
            ),
            Self::Parse(path, error) => write!(f, "output of {}: {error}", path.display()),
            Self::Empty(path) => write!(f, "{} printed no attribute", path.display()),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Checked `key=value` outputs of one or more scripts, in run order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptOutputs {
    outputs: Vec<String>,
}

impl ScriptOutputs {
    /// Checked views of every output, for [`otalite::protocol::keyvalue::Attributes::new`].
    pub fn texts(&self) -> Vec<KeyValueText<'_>> {
        self.outputs
            .iter()
            .filter_map(|text| KeyValueText::new_checked(text.as_bytes()).ok())
            .collect()
    }

    /// The raw outputs.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }
}

/// `<SHARE>/identity/mender-device-identity`.
pub fn identity_script(share_dir: &Path) -> PathBuf {
    share_dir.join("identity").join("mender-device-identity")
}

/// `<SHARE>/inventory`.
pub fn inventory_dir(share_dir: &Path) -> PathBuf {
    share_dir.join("inventory")
}

/// Runs the identity script.
///
/// # Errors
/// See [`IdentityError`]: any failure is an error (the device cannot
/// authenticate without an identity).
pub fn run_identity(share_dir: &Path, timeout: Duration) -> Result<ScriptOutputs, IdentityError> {
    let script = identity_script(share_dir);
    let (status, text) = run_script(&script, timeout)?;
    if !status.success() {
        return Err(IdentityError::Failed(script, status));
    }
    let checked = check(&script, &text)?;
    if checked.is_empty() {
        return Err(IdentityError::Empty(script));
    }
    Ok(ScriptOutputs {
        outputs: vec![text],
    })
}

/// The inventory scripts in `<SHARE>/inventory`, in name order: files
/// named `mender-inventory-*` with an execute bit.
pub fn inventory_scripts(share_dir: &Path) -> Vec<PathBuf> {
    let dir = inventory_dir(share_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(INVENTORY_PREFIX.as_bytes())
        })
        .filter(|entry| {
            std::fs::metadata(entry.path())
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    names.into_iter().map(|name| dir.join(name)).collect()
}

/// Runs every inventory script (each with `timeout`) and keeps the output
/// of those that produced valid `key=value` lines. Failures are logged.
pub fn run_inventory(share_dir: &Path, timeout: Duration) -> ScriptOutputs {
    let mut outputs = Vec::new();
    for script in inventory_scripts(share_dir) {
        match run_script(&script, timeout) {
            Ok((status, text)) => {
                if !status.success() {
                    log::warn!(
                        "inventory script {} failed ({status}); using its output",
                        script.display()
                    );
                }
                match check(&script, &text) {
                    Ok(_) => outputs.push(text),
                    Err(error) => log::warn!("{error}; ignoring this script"),
                }
            }
            Err(error) => log::warn!("{error}; ignoring this script"),
        }
    }
    ScriptOutputs { outputs }
}

fn check<'t>(script: &Path, text: &'t str) -> Result<KeyValueText<'t>, IdentityError> {
    KeyValueText::new_checked(text.as_bytes())
        .map_err(|error| IdentityError::Parse(script.to_path_buf(), error))
}

/// Runs `script` and returns its exit status and stdout (lossily decoded).
fn run_script(script: &Path, timeout: Duration) -> Result<(ExitStatus, String), IdentityError> {
    let cannot_run = |error| IdentityError::CannotRun(script.to_path_buf(), error);
    let mut child = Command::new(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(cannot_run)?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut captured = Vec::new();
        if let Some(stdout) = stdout {
            let mut limited = stdout.take(MAX_OUTPUT_LEN as u64 + 1);
            let read = limited.read_to_end(&mut captured);
            // Drain the rest so the script never blocks on a full pipe.
            let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
            read.map(|_| captured)
        } else {
            Ok(captured)
        }
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // Kill the whole process group the script started, so the
                // pipe closes and the reader ends.
                super::scripts::kill_process_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(IdentityError::TimedOut(script.to_path_buf()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => return Err(cannot_run(error)),
        }
    };
    let captured = reader
        .join()
        .map_err(|_| cannot_run(std::io::Error::other("the output reader panicked")))?
        .map_err(cannot_run)?;
    if captured.len() > MAX_OUTPUT_LEN {
        return Err(IdentityError::TooMuchOutput(script.to_path_buf()));
    }
    Ok((status, String::from_utf8_lossy(&captured).into_owned()))
}
