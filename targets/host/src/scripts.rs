//! State scripts, run as the reference client runs them.
//!
//! | rule | value |
//! |---|---|
//! | name | `<Group>_<Enter\|Leave\|Error>_<NN>[_<description>]`, others skipped |
//! | order | lexical by file name |
//! | directory | `Idle`, `Sync`, `Download`: `<CONF>/scripts`; `Artifact*`: `<DATA>/scripts` |
//! | `version` file | must say 2 or 3 when the directory has scripts for the group |
//! | exit 0 | success |
//! | exit 21 | retry after `StateScriptRetryIntervalSeconds`, within `StateScriptRetryTimeoutSeconds` |
//! | other exit, signal, timeout | failure (timeout: `StateScriptTimeoutSeconds`, the script's process group is killed) |
//! | stderr | first 10 KiB logged, and appended to the deployment log during a deployment (uploaded with a `failure`, as the reference) |

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Script groups and phases are the agent's: one vocabulary for the state
/// machine and the runner.
pub use otalite::agent::{ScriptGroup as Group, ScriptPhase as Action};

/// Why a script step failed.
#[derive(Debug)]
pub enum ScriptError {
    /// The script exited with this code (or was killed: `None`).
    Failed(String, Option<i32>),
    /// The script ran longer than allowed.
    TimedOut(String),
    /// The script kept asking to be retried (exit 21) for too long.
    RetryTimedOut(String),
    /// The `version` file is missing or not 2 or 3.
    BadVersion(PathBuf),
    /// A matching file is not executable or cannot be started.
    CannotRun(String, std::io::Error),
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(name, Some(code)) => {
                write!(f, "state script {name} failed with exit code {code}")
            }
            Self::Failed(name, None) => write!(f, "state script {name} was killed by a signal"),
            Self::TimedOut(name) => write!(f, "state script {name} timed out"),
            Self::RetryTimedOut(name) => write!(
                f,
                "state script {name} kept returning 21 (retry) past the retry timeout"
            ),
            Self::BadVersion(dir) => {
                write!(f, "{}/version must exist and say 2 or 3", dir.display())
            }
            Self::CannotRun(name, error) => write!(f, "cannot run state script {name}: {error}"),
        }
    }
}

impl std::error::Error for ScriptError {}

/// Runs state scripts from the two script directories.
#[derive(Clone, Debug)]
pub struct ScriptRunner {
    /// `<CONF>/scripts`.
    pub rootfs_dir: PathBuf,
    /// `<DATA>/scripts`.
    pub artifact_dir: PathBuf,
    /// Per-run timeout.
    pub timeout: Duration,
    /// Where a script's stderr also goes (the deployment log, in the
    /// uploaded line format), when a deployment is under way.
    pub deployment_log: Option<PathBuf>,
    /// Wait between retries (exit 21).
    pub retry_interval: Duration,
    /// Total retry time allowed.
    pub retry_timeout: Duration,
}

/// True when `name` is `<group>_<action>_<NN>[_<non-space>]`.
pub fn matches_name(name: &str, group: &str, action: &str) -> bool {
    let Some(rest) = name.strip_prefix(group).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(action).and_then(|r| r.strip_prefix('_')) else {
        return false;
    };
    let bytes = rest.as_bytes();
    let two_digits = bytes.len() >= 2 && bytes.iter().take(2).all(u8::is_ascii_digit);
    let tail = rest.get(2..).unwrap_or("");
    two_digits
        && (tail.is_empty()
            || (tail.starts_with('_') && tail.len() > 1 && !tail.contains(char::is_whitespace)))
}

impl ScriptRunner {
    /// The scripts that `group`/`action` would run, in order.
    pub fn scripts(&self, group: Group, action: Action) -> Vec<PathBuf> {
        let dir = if group.in_rootfs_dir() {
            &self.rootfs_dir
        } else {
            &self.artifact_dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| matches_name(name, group.name(), action.name()))
            .collect();
        names.sort();
        names.into_iter().map(|name| dir.join(name)).collect()
    }

    /// Runs every script of `group`/`action`; stops at the first failure.
    ///
    /// # Errors
    /// See [`ScriptError`].
    pub fn run(&self, group: Group, action: Action) -> Result<(), ScriptError> {
        let scripts = self.scripts(group, action);
        if scripts.is_empty() {
            return Ok(());
        }
        let dir = scripts
            .first()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new("."));
        check_version(dir)?;
        for script in &scripts {
            self.run_one(script)?;
        }
        Ok(())
    }

    /// Runs every script of `group`/`action`, logging failures (for groups
    /// whose errors the reference ignores).
    pub fn run_ignoring_errors(&self, group: Group, action: Action) {
        if let Err(error) = self.run(group, action) {
            log::warn!("{error} (ignored)");
        }
    }

    fn run_one(&self, script: &Path) -> Result<(), ScriptError> {
        let name = script
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let first_start = Instant::now();
        loop {
            log::info!("running state script {name}");
            let code = self.spawn_and_wait(script, &name)?;
            match code {
                Some(0) => return Ok(()),
                Some(21) => {
                    // As the reference: retried while the time since the
                    // first run is within the timeout (then one more wait
                    // and run), so the last run may start past it.
                    if first_start.elapsed() > self.retry_timeout {
                        return Err(ScriptError::RetryTimedOut(name));
                    }
                    log::info!("state script {name} asked to be retried later (exit 21)");
                    std::thread::sleep(self.retry_interval);
                }
                other => return Err(ScriptError::Failed(name, other)),
            }
        }
    }

    fn spawn_and_wait(&self, script: &Path, name: &str) -> Result<Option<i32>, ScriptError> {
        let mut child = Command::new(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|error| ScriptError::CannotRun(name.to_string(), error))?;
        let stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut captured = Vec::new();
            if let Some(stderr) = stderr {
                let mut limited = stderr.take(10 * 1024);
                let _ = limited.read_to_end(&mut captured);
                // Drain the rest so the script never blocks on a full pipe.
                let _ = std::io::copy(&mut limited.into_inner(), &mut std::io::sink());
            }
            captured
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(error) => return Err(ScriptError::CannotRun(name.to_string(), error)),
            }
        };
        let Some(status) = status else {
            kill_process_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            return Err(ScriptError::TimedOut(name.to_string()));
        };
        if let Ok(captured) = reader.join() {
            if !captured.is_empty() {
                let text = String::from_utf8_lossy(&captured);
                log::info!("{name} stderr: {}", text.trim_end());
                if let Some(path) = &self.deployment_log {
                    let line = format!(
                        "{} info {name} stderr: {}\n",
                        crate::time::rfc3339_now(),
                        text.trim_end().replace(['\n', '\r'], " ")
                    );
                    let appended = std::fs::OpenOptions::new()
                        .append(true)
                        .open(path)
                        .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
                    if let Err(e) = appended {
                        log::debug!("{}: {e}", path.display());
                    }
                }
            }
        }
        Ok(status.code())
    }
}

/// SIGKILLs the process group `pgid` (a script started with
/// `process_group(0)` and everything it spawned), by `kill(2)` on the
/// negative group id (rustix: no `kill` process spawned, no shell).
pub(crate) fn kill_process_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // ESRCH (the group already ended) is the only expected error.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

fn check_version(dir: &Path) -> Result<(), ScriptError> {
    let text = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
    match text.trim().parse::<u32>() {
        Ok(2 | 3) => Ok(()),
        _ => Err(ScriptError::BadVersion(dir.to_path_buf())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches_name(
            "ArtifactInstall_Enter_00",
            "ArtifactInstall",
            "Enter"
        ));
        assert!(matches_name(
            "ArtifactInstall_Enter_10_hello-world",
            "ArtifactInstall",
            "Enter"
        ));
        assert!(!matches_name(
            "ArtifactInstall_Enter_1",
            "ArtifactInstall",
            "Enter"
        ));
        assert!(!matches_name(
            "ArtifactInstall_Enter_00_",
            "ArtifactInstall",
            "Enter"
        ));
        assert!(!matches_name(
            "ArtifactInstall_Leave_00",
            "ArtifactInstall",
            "Enter"
        ));
        assert!(!matches_name(
            "Download_Enter_00",
            "ArtifactInstall",
            "Enter"
        ));
    }
}
