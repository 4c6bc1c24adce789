//! The real `mender daemon` 3.4 (Debian's `mender-client`) on a
//! `tests/refdevice/device.sh` device, and the [`Client`] trait that runs it
//! and otalite's daemon ([`Managed`]) through the same cases.
#![allow(dead_code, unreachable_pub, clippy::std_instead_of_core)]

use super::managed::*;
use super::*;
use otalite_testserver::{ServerConfig, TestServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// A daemon under test: otalite ([`Managed`]) or the reference ([`Reference`]).
pub trait Client {
    fn server(&self) -> &TestServer;
    /// A directory for the artifact (removed with the client).
    fn dir(&self) -> PathBuf;
    fn start(&self) -> DaemonProcess {
        self.start_with(&[])
    }
    /// Starts the daemon with extra environment variables.
    fn start_with(&self, env: &[(&str, &str)]) -> DaemonProcess;
    fn reboots(&self) -> usize;
    /// What the bootloader does when it boots the trial slot.
    fn trial_boot(&self);
    /// What U-Boot does when the counted trial is still pending at a boot:
    /// back to the other slot (nothing when no trial is pending).
    fn bootloader_fallback(&self);
    /// The device's `/etc/mender/scripts` (root-filesystem state scripts).
    fn rootfs_scripts(&self) -> PathBuf;
    /// Where the device's update modules live (`<share>/modules/v3`).
    fn modules_dir(&self) -> PathBuf;
    /// A U-Boot env variable ("" when unset).
    fn env_var(&self, name: &str) -> String;
    fn log(&self) -> String;
}

impl Client for Managed {
    fn server(&self) -> &TestServer {
        &self.server
    }
    fn dir(&self) -> PathBuf {
        self.device.root()
    }
    fn start_with(&self, env: &[(&str, &str)]) -> DaemonProcess {
        Self::start_with(self, env)
    }
    fn reboots(&self) -> usize {
        Self::reboots(self)
    }
    fn trial_boot(&self) {
        Self::trial_boot(self);
    }
    fn bootloader_fallback(&self) {
        Self::bootloader_fallback(self);
    }
    fn rootfs_scripts(&self) -> PathBuf {
        self.device.root().join("etc/scripts")
    }
    fn modules_dir(&self) -> PathBuf {
        self.device.root().join("share/modules/v3")
    }
    fn env_var(&self, name: &str) -> String {
        self.device.env().get(name).cloned().unwrap_or_default()
    }
    fn log(&self) -> String {
        Self::log(self)
    }
}

/// Serializes the reference runs (each attaches two loop devices).
pub static REFERENCE: Mutex<()> = Mutex::new(());

pub fn device_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/refdevice/device.sh")
}

pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Whether the real `mender` can run here (root for loop devices and mount
/// namespaces, and the tools `device.sh` uses).
pub fn reference_available() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    root && ["mender", "fw_setenv", "mkenvimage", "losetup", "unshare"]
        .iter()
        .all(|tool| on_path(tool))
}

/// The real `mender daemon` in a `device.sh` device (slot A active,
/// `release-1`, [`DEVICE_TYPE`]), with its own test server and the same
/// identity, inventory and polling as [`Managed`].
pub struct Reference {
    server: TestServer,
    dir: tempfile::TempDir,
}

impl Reference {
    pub fn new() -> Self {
        let server = TestServer::start(ServerConfig::default());
        let dir = tempfile::tempdir().unwrap();
        let reference = Self { server, dir };
        let w = reference.workdir();
        run_ok(Command::new(device_sh()).arg("create").arg(&w).args([
            "8",
            DEVICE_TYPE,
            "release-1",
        ]));
        std::fs::write(
            w.join("upper/etc/mender/mender.conf"),
            format!(
                r#"{{"RootfsPartA": "/dev/mmcblk0p2", "RootfsPartB": "/dev/mmcblk0p3", "DBus": {{"Enabled": false}}, "ServerURL": "{}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1}}"#,
                reference.server.url()
            ),
        )
        .unwrap();
        executable(
            &w.join("upper/share/identity/mender-device-identity"),
            "#!/bin/sh\necho mac=02:00:00:00:00:01\n",
        );
        executable(
            &w.join("upper/share/inventory/mender-inventory-test"),
            "#!/bin/sh\necho kernel=test-kernel\necho ipv4=10.0.0.2/8\necho ipv4=192.168.1.10/24\n",
        );
        reference
    }

    /// Turns the reference's D-Bus API on (`DBus.Enabled`), for a test
    /// that gives it a private bus (`DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn enable_dbus(&self) {
        let conf = self.workdir().join("upper/etc/mender/mender.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        let enabled = text.replace(
            r#""DBus": {"Enabled": false}"#,
            r#""DBus": {"Enabled": true}"#,
        );
        assert_ne!(text, enabled, "the reference's mender.conf changed shape");
        std::fs::write(&conf, enabled).unwrap();
    }

    pub fn workdir(&self) -> PathBuf {
        self.dir.path().join("device")
    }

    pub fn version() -> String {
        Command::new("mender")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().replace('\t', " "))
            .unwrap_or_default()
    }
}

impl Client for Reference {
    fn server(&self) -> &TestServer {
        &self.server
    }
    fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    fn start_with(&self, env: &[(&str, &str)]) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mender.log"))
            .unwrap();
        // device.sh execs unshare, which execs mender: the child is mender.
        DaemonProcess(
            Command::new(device_sh())
                .arg("run")
                .arg(self.workdir())
                .args(["--", "mender", "--no-syslog", "daemon"])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start mender in device.sh"),
        )
    }
    fn reboots(&self) -> usize {
        std::fs::read_to_string(self.workdir().join("reboot.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }
    fn trial_boot(&self) {
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(self.workdir().join("fw_env.config"))
                .args(["bootcount", "1"]),
        );
    }
    fn env_var(&self, name: &str) -> String {
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(self.workdir().join("fw_env.config"))
            .args(["-n", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    fn bootloader_fallback(&self) {
        uboot_fallback(
            &|name| self.env_var(name),
            &self.workdir().join("fw_env.config"),
            &self.dir.path().join("boot.env"),
        );
    }
    fn rootfs_scripts(&self) -> PathBuf {
        self.workdir().join("upper/etc/mender/scripts")
    }
    fn modules_dir(&self) -> PathBuf {
        // The overlay's upper dir over /usr/share/mender.
        self.workdir().join("upper/share/modules/v3")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mender.log")).unwrap_or_default()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        destroy_device(&self.workdir());
    }
}

/// Waits for `done` (polled every 50 ms), panicking after [`WAIT`] with the
/// requests the server saw and the daemon's log.
pub fn wait_for(client: &dyn Client, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < WAIT,
            "timed out waiting for {what}; requests:\n{}\ndaemon log:\n{}",
            client
                .server()
                .requests()
                .iter()
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                .collect::<Vec<_>>()
                .join("\n"),
            client.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Two line lists side by side, the first difference marked `>>`.
pub fn side_by_side(left: &str, a: &[String], right: &str, b: &[String]) -> String {
    let first = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(usize::MAX);
    let width = a.iter().map(String::len).max().unwrap_or(0).max(left.len());
    let mut out = format!("   {left:width$} | {right}\n");
    for i in 0..a.len().max(b.len()) {
        let mark = if i == first { ">> " } else { "   " };
        out.push_str(&format!(
            "{mark}{:width$} | {}\n",
            a.get(i).map_or("", String::as_str),
            b.get(i).map_or("", String::as_str)
        ));
    }
    out
}

/// The lines of a recorded fixture (comments and blank lines skipped);
/// a missing file says how to record it (`how`).
pub fn fixture_lines(path: &Path, how: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; record it with {how} (root, mender installed)",
            path.display()
        )
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The part of a script/module-call log a deployment owns: from the first
/// `Download_Enter` to the last line that is not an `Idle`/`Sync` script
/// (those before and after depend on the clock).
pub fn deployment_window(lines: &[String]) -> Vec<String> {
    let idle = |l: &String| l.starts_with("Idle_") || l.starts_with("Sync_");
    let Some(start) = lines.iter().position(|l| l.starts_with("Download_Enter")) else {
        return Vec::new();
    };
    let end = lines
        .iter()
        .rposition(|l| !idle(l))
        .map_or(start, |e| e + 1);
    lines[start..end.max(start)].to_vec()
}

/// How a test compares otalite with a recorded reference behaviour.
pub struct Recording<'a, T> {
    /// The environment variable that makes the test record.
    pub record_var: &'a str,
    /// The fixture file.
    pub fixture: PathBuf,
    /// Reads the fixture.
    pub read: &'a dyn Fn() -> T,
    /// Writes the fixture.
    pub write: &'a dyn Fn(&T),
    /// Whether a live run matches the recording.
    pub same: &'a dyn Fn(&T, &T) -> bool,
    /// The difference, for the failure message.
    pub show: &'a dyn Fn(&T, &T) -> String,
}

impl<T> Recording<'_, T> {
    /// The reference's result: run live by `live` when the real mender can
    /// run here (and then also checked against the recording, or recorded
    /// when `record_var` is set: `None`, the test is done), else the
    /// recording.
    pub fn reference(&self, live: impl FnOnce() -> T) -> Option<T> {
        if reference_available() {
            let _serial = REFERENCE.lock().unwrap_or_else(|e| e.into_inner());
            let live = live();
            if std::env::var_os(self.record_var).is_some() {
                (self.write)(&live);
                return None;
            }
            let recorded = (self.read)();
            assert!(
                (self.same)(&live, &recorded),
                "the reference no longer does what {} says (re-record with {}=1 and review the diff):\n{}",
                self.fixture.display(),
                self.record_var,
                (self.show)(&live, &recorded)
            );
            Some(live)
        } else {
            assert!(
                std::env::var_os(self.record_var).is_none(),
                "recording needs root and mender"
            );
            eprintln!(
                "note: the real mender cannot run here (needs root and mender); comparing with {}",
                self.fixture.display()
            );
            Some((self.read)())
        }
    }
}

/// The state-script groups an artifact carries.
pub const ARTIFACT_GROUPS: [&str; 6] = [
    "ArtifactInstall",
    "ArtifactReboot",
    "ArtifactCommit",
    "ArtifactRollback",
    "ArtifactRollbackReboot",
    "ArtifactFailure",
];

/// Writes a recorded fixture: `header` (comment lines), then one line
/// each.
pub fn write_fixture_lines(path: &Path, header: &str, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = header.to_owned();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    eprintln!("recorded {}", path.display());
}

/// Detaches the loop devices of this `device.sh` workdir (device.sh checks
/// the backing files), nothing else.
pub fn destroy_device(workdir: &Path) {
    let _ = Command::new(device_sh())
        .arg("destroy")
        .arg(workdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
