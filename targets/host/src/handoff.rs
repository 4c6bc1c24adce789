//! The hand-off flow's files and installer on Linux
//! ([`otalite::agent::handoff`]), as the Mender Python client lays them out.
//!
//! | what | path | content |
//! |---|---|---|
//! | update lock | `<DATA>/update.lock` | the deployment id, no newline (the Python client's `f.write(deployment_id)`); written atomically |
//! | artifact | `<DATA>/artifact.mender` | the whole artifact, synced before the hand-off |
//! | installer | `<SHARE>/install` (`/usr/share/mender/install`) | run as `install <DATA>/artifact.mender`, in its own process group, not waited for |
//! | installer's log | `<DATA>/sub-updater.log` | read by `report --failure`, uploaded before the deployment log |

use crate::fs::{atomic_write, sync_dir};
use crate::http::{Download, HttpClient};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// The update lock's file name in the data directory.
pub const LOCK_FILE: &str = "update.lock";
/// The downloaded artifact's file name in the data directory.
pub const ARTIFACT_FILE: &str = "artifact.mender";
/// The installer's own log, uploaded with a failure report.
pub const SUB_UPDATER_LOG: &str = "sub-updater.log";
/// The installer's file name in the share directory.
pub const INSTALLER: &str = "install";

/// What [`check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lock {
    /// The lock exists, holding this text; `true` when no installer can
    /// be running for it: it was written before the running system
    /// booted, or no process runs the installer with the artifact file.
    Held(String, bool),
    /// No lock; `artifact_info`'s name, if it names one.
    Free(Option<String>),
}

/// Looks at the update lock in `data_dir` and, when there is none, at the
/// name in `artifact_info`; a held lock of this boot also at the running
/// processes: does one run `<share_dir>/install <data_dir>/artifact.mender`?
///
/// # Errors
/// The lock exists but cannot be read.
pub fn check(data_dir: &Path, share_dir: &Path, artifact_info: &Path) -> io::Result<Lock> {
    let path = data_dir.join(LOCK_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(Lock::Held(
            String::from_utf8_lossy(bytes.get(..4096).unwrap_or(&bytes)).into_owned(),
            written_before_boot(&path)
                || !installer_running(&share_dir.join(INSTALLER), &data_dir.join(ARTIFACT_FILE)),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = fs::read(artifact_info).ok().and_then(|text| {
                otalite::device::parse_artifact_info(&text)
                    .ok()
                    .map(|name| name.to_string())
            });
            Ok(Lock::Free(name))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// Some process runs `installer artifact` (its command line holds the two
/// paths one after the other: a script's interpreter comes first). True
/// when `/proc` cannot be read (never start a second installer).
fn installer_running(installer: &Path, artifact: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = fs::read_dir("/proc") else {
        return true;
    };
    let (installer, artifact) = (
        installer.as_os_str().as_bytes(),
        artifact.as_os_str().as_bytes(),
    );
    entries.flatten().any(|entry| {
        let is_pid = entry.file_name().as_bytes().iter().all(u8::is_ascii_digit);
        if !is_pid {
            return false;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.windows(2)
            .any(|pair| pair.first() == Some(&installer) && pair.get(1) == Some(&artifact))
    })
}

/// The file's modification time is before the running system's boot
/// (`btime` in `/proc/stat`); false when either is unknown.
fn written_before_boot(path: &Path) -> bool {
    let Some(boot) = fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|value| value.trim().parse::<u64>().ok())
    }) else {
        return false;
    };
    fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .is_some_and(|since| since.as_secs() < boot)
}

/// Downloads `uri` into `<data_dir>/artifact.mender`, from its current
/// length when `resume` and `total` (the size the first response
/// announced) are known, else from scratch. Returns the bytes in the file
/// and how it ended: `Ok` only when all `total` bytes are there and synced;
/// `Err((transient, why))` otherwise.
pub fn save(
    client: &HttpClient,
    data_dir: &Path,
    uri: &str,
    resume: bool,
    total: &mut Option<u64>,
) -> (u64, Result<(), (bool, String)>) {
    let path = data_dir.join(ARTIFACT_FILE);
    let have = if resume && total.is_some() {
        fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    // A file longer than the artifact (a different one) starts over.
    let from = match *total {
        Some(size) if have <= size => have,
        _ => 0,
    };
    let mut download = match Download::open_at(client, uri, from, total.filter(|_| from > 0)) {
        Ok(download) => download,
        Err(e) => {
            let permanent = matches!(e, crate::http::HttpError::LengthChanged { .. });
            return (
                from,
                Err((!permanent, format!("cannot download {uri}: {e}"))),
            );
        }
    };
    *total = Some(download.total());
    if from == 0 {
        log::info!(
            "downloading {} bytes to {}",
            download.total(),
            path.display()
        );
    } else {
        log::info!("download resumed at byte {from}");
    }
    let (reached, saved) = download.save_to(&path, from, &mut |_| {});
    match saved.map_err(|e| {
        let transient = !matches!(e, crate::http::SaveError::File(_));
        (transient, e.to_string())
    }) {
        Ok(()) => match sync_dir(data_dir) {
            Ok(()) => (reached, Ok(())),
            Err(e) => (
                reached,
                Err((false, format!("cannot sync {}: {e}", data_dir.display()))),
            ),
        },
        Err(error) => (reached, Err(error)),
    }
}

/// Writes the lock holding `deployment_id`, then starts the installer
/// with the artifact's path, detached (its own process group: a signal to
/// the daemon does not reach it; with systemd, `KillMode=process` keeps it
/// when the daemon stops).
///
/// # Errors
/// No installer, or one that is not executable (nothing is written then),
/// or the lock cannot be written.
pub fn start(data_dir: &Path, share_dir: &Path, deployment_id: &str) -> Result<(), String> {
    let installer = share_dir.join(INSTALLER);
    let meta = fs::metadata(&installer)
        .map_err(|e| format!("No install script found at '{}': {e}", installer.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "The install script '{}' has the wrong permissions",
            installer.display()
        ));
    }
    let lock = data_dir.join(LOCK_FILE);
    atomic_write(&lock, deployment_id.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", lock.display()))?;
    crate::driver::crashpoint("handoff-spawn");
    let artifact: PathBuf = data_dir.join(ARTIFACT_FILE);
    let mut child = std::process::Command::new(&installer)
        .arg(&artifact)
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", installer.display()))?;
    log::info!(
        "started {} {} (pid {})",
        installer.display(),
        artifact.display(),
        child.id()
    );
    // Reaped when it ends, so no zombie stays while the daemon runs.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// Removes the lock (and syncs its directory).
///
/// # Errors
/// It exists and cannot be removed.
pub fn release(data_dir: &Path) -> io::Result<()> {
    match fs::remove_file(data_dir.join(LOCK_FILE)) {
        Ok(()) => sync_dir(data_dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The installer's log (`<DATA>/sub-updater.log`), at most `limit` bytes
/// (its end), empty when there is none.
pub fn sub_updater_log(data_dir: &Path, limit: u64) -> Vec<u8> {
    let Ok(mut file) = fs::File::open(data_dir.join(SUB_UPDATER_LOG)) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    use io::Seek;
    let _ = file.seek(io::SeekFrom::Start(len.saturating_sub(limit)));
    let mut out = Vec::new();
    let _ = file.take(limit).read_to_end(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_round_trip_and_installer_checks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let share = dir.path().join("share");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(&share).unwrap();
        let info = dir.path().join("artifact_info");
        fs::write(&info, "artifact_name=release-2\n").unwrap();
        assert_eq!(
            check(&data, &share, &info).unwrap(),
            Lock::Free(Some("release-2".into()))
        );
        // No installer: nothing written.
        let error = start(&data, &share, "dep-1").unwrap_err();
        assert!(error.contains("No install script found"), "{error}");
        assert!(!data.join(LOCK_FILE).exists());
        // Not executable.
        fs::write(share.join(INSTALLER), "#!/bin/sh\n").unwrap();
        let error = start(&data, &share, "dep-1").unwrap_err();
        assert!(error.contains("wrong permissions"), "{error}");
        // Runs with the artifact path, lock holds the id as the Python
        // client writes it (no newline). It waits for `go`.
        let marker = dir.path().join("ran");
        let go = dir.path().join("go");
        fs::write(
            share.join(INSTALLER),
            format!(
                "#!/bin/sh\necho \"$@\" > {m}.tmp && mv {m}.tmp {m}\nwhile [ ! -e {g} ]; do sleep 0.05; done\n",
                m = marker.display(),
                g = go.display()
            ),
        )
        .unwrap();
        fs::set_permissions(share.join(INSTALLER), fs::Permissions::from_mode(0o755)).unwrap();
        start(&data, &share, "dep-1").unwrap();
        assert_eq!(fs::read(data.join(LOCK_FILE)).unwrap(), b"dep-1");
        let wait_for = |done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !done() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        };
        wait_for(&|| marker.exists());
        assert_eq!(
            fs::read_to_string(&marker).unwrap().trim(),
            data.join(ARTIFACT_FILE).display().to_string()
        );
        // The installer runs: a held lock.
        assert_eq!(
            check(&data, &share, &info).unwrap(),
            Lock::Held("dep-1".into(), false)
        );
        // It ended without removing the lock: nobody installs for it.
        fs::write(&go, "").unwrap();
        wait_for(&|| check(&data, &share, &info).unwrap() != Lock::Held("dep-1".into(), false));
        assert_eq!(
            check(&data, &share, &info).unwrap(),
            Lock::Held("dep-1".into(), true)
        );
        release(&data).unwrap();
        release(&data).unwrap();
        assert!(!data.join(LOCK_FILE).exists());
    }
}
