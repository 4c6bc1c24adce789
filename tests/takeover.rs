//! Taking a device over from the real `mender` 3.4 (Debian's
//! `mender-client`): the reference installs on a `tests/refdevice/device.sh`
//! device (loop-device slots, its own U-Boot env, the reference's paths),
//! the binary is swapped for otalite, and otalite finishes the update from
//! the reference's LMDB store (`/var/lib/mender/mender-store`).
//!
//! Each case is compared with the reference itself finishing the same
//! update: the device (data dir and env) is saved before the finishing step
//! and restored between the two runs. Every case also checks that otalite
//! left the reference's store and lock file unchanged (bytes and mtime).
//!
//! Needs root and `mender`; without them each case says so on stderr and
//! returns (CI runs as root with `mender` installed, see `.ci/setup`).

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::{executable, stop, DaemonProcess};
use common::reference::{destroy_device, device_sh};
use common::{image_bytes, run, run_ok, write_artifact, DEVICE_TYPE};
use otalite_testserver::{DeploymentState, KeyType, ServerConfig, TestServer};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One device at a time (each attaches two loop devices).
static DEVICES: Mutex<()> = Mutex::new(());

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// Whether the real `mender` can run here; says why not on stderr.
fn reference_available(case: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let tools = [
        "mender",
        "mender-artifact",
        "fw_printenv",
        "fw_setenv",
        "mkenvimage",
        "losetup",
        "unshare",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    if !root || !missing.is_empty() {
        eprintln!(
            "SKIPPED {case}: needs root and the real mender ({}missing: {missing:?})",
            if root { "" } else { "not root; " }
        );
        return false;
    }
    true
}

/// A `device.sh` device: slot A (partition 2) runs `release-1`.
struct RefDevice {
    dir: tempfile::TempDir,
}

/// The reference's store files as they are now: name, bytes, mtime.
#[derive(PartialEq, Eq)]
struct StoreSnapshot(Vec<(String, Vec<u8>, i64, i64)>);

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, bytes, secs, nanos) in &self.0 {
            write!(
                f,
                "{name}: {} bytes, mtime {secs}.{nanos:09}; ",
                bytes.len()
            )?;
        }
        Ok(())
    }
}

impl RefDevice {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let device = Self { dir };
        run_ok(
            Command::new(device_sh())
                .arg("create")
                .arg(device.workdir())
                .args(["8", DEVICE_TYPE, "release-1"]),
        );
        device
    }

    fn workdir(&self) -> PathBuf {
        self.dir.path().join("device")
    }

    fn data(&self) -> PathBuf {
        self.workdir().join("data")
    }

    /// `program args...` inside the device.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        run(Command::new(device_sh())
            .arg("run")
            .arg(self.workdir())
            .arg("--")
            .arg(program)
            .args(args)
            .env("OTALITE_TEST_BACKOFF_MS", "50"))
    }

    fn mender(&self, args: &[&str]) -> Output {
        let mut all = vec!["--no-syslog"];
        all.extend_from_slice(args);
        self.run("mender", &all)
    }

    fn otalite(&self, args: &[&str]) -> Output {
        self.run(env!("CARGO_BIN_EXE_otalite"), args)
    }

    fn ok(output: Output, what: &str) -> String {
        assert!(
            output.status.success(),
            "{what} failed ({:?}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn env(&self) -> BTreeMap<String, String> {
        let out = run_ok(
            Command::new("fw_printenv")
                .arg("-c")
                .arg(self.workdir().join("fw_env.config")),
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn boot(&self) -> (String, String) {
        let env = self.env();
        (
            env.get("mender_boot_part").cloned().unwrap_or_default(),
            env.get("upgrade_available").cloned().unwrap_or_default(),
        )
    }

    fn set_env(&self, vars: &str) {
        let script = self.dir.path().join("env.script");
        std::fs::write(&script, vars).unwrap();
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(self.workdir().join("fw_env.config"))
                .arg("-s")
                .arg(&script),
        );
    }

    fn store(&self) -> StoreSnapshot {
        let mut files = Vec::new();
        for name in ["mender-store", "mender-store-lock", "mender-agent.pem"] {
            let path = self.data().join(name);
            if let Ok(meta) = std::fs::metadata(&path) {
                files.push((
                    name.to_string(),
                    std::fs::read(&path).unwrap(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                ));
            }
        }
        assert!(
            !files.is_empty(),
            "no mender-store in {}",
            self.data().display()
        );
        StoreSnapshot(files)
    }

    /// Saves the data dir and the env (to run the reference and otalite
    /// from the same point).
    fn save(&self) -> PathBuf {
        let saved = self.dir.path().join("saved");
        let _ = std::fs::remove_dir_all(&saved);
        run_ok(Command::new("cp").arg("-a").arg(self.data()).arg(&saved));
        std::fs::copy(self.workdir().join("uboot.env"), saved.join("..uboot.env")).unwrap();
        saved
    }

    fn restore(&self, saved: &Path) {
        std::fs::remove_dir_all(self.data()).unwrap();
        run_ok(Command::new("cp").arg("-a").arg(saved).arg(self.data()));
        std::fs::rename(
            self.data().join("..uboot.env"),
            self.workdir().join("uboot.env"),
        )
        .unwrap();
    }

    fn artifact(&self, name: &str, seed: u32, extra: &[&str]) -> PathBuf {
        write_artifact(self.dir.path(), name, &image_bytes(1 << 20, seed), extra)
    }

    fn show(&self, client: &str) -> (String, String) {
        let (artifact, provides) = if client == "mender" {
            (
                self.mender(&["show-artifact"]),
                self.mender(&["show-provides"]),
            )
        } else {
            (
                self.otalite(&["show-artifact"]),
                self.otalite(&["show-provides"]),
            )
        };
        (
            Self::ok(artifact, "show-artifact").trim().to_string(),
            Self::ok(provides, "show-provides"),
        )
    }
}

impl Drop for RefDevice {
    fn drop(&mut self) {
        destroy_device(&self.workdir());
    }
}

/// A device where the reference committed `release-2` (provides
/// `rootfs-image.custom=foo`, group `g1`) and then installed `release-3`
/// (which keeps `rootfs-image.custom` and the group through its own clears
/// list and adds `extra.key=bar`), not yet committed: the new slot (2) is
/// on trial.
fn pending_reference_update(device: &RefDevice) {
    let r2 = device.artifact(
        "release-2",
        2,
        &[
            "--provides",
            "rootfs-image.custom:foo",
            "--provides-group",
            "g1",
        ],
    );
    let r3 = device.artifact(
        "release-3",
        3,
        &[
            "--no-default-clears-provides",
            "--clears-provides",
            "rootfs-image.checksum",
            "--provides",
            "extra.key:bar",
        ],
    );
    RefDevice::ok(
        device.mender(&["install", r2.to_str().unwrap()]),
        "mender install release-2",
    );
    RefDevice::ok(device.mender(&["commit"]), "mender commit release-2");
    RefDevice::ok(
        device.mender(&["install", r3.to_str().unwrap()]),
        "mender install release-3",
    );
    assert_eq!(device.boot(), ("2".into(), "1".into()));
}

#[test]
fn otalite_commits_an_update_the_reference_installed() {
    if !reference_available("otalite_commits_an_update_the_reference_installed") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let device = RefDevice::new();
    pending_reference_update(&device);
    let saved = device.save();

    // The reference finishes its own update.
    RefDevice::ok(device.mender(&["commit"]), "mender commit");
    let reference_env = device.boot();
    let reference_show = device.show("mender");
    assert_eq!(reference_show.0, "release-3");

    // The same device, the binary swapped: otalite finishes it.
    device.restore(&saved);
    let store = device.store();
    let output = device.otalite(&["commit"]);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    RefDevice::ok(output, "otalite commit");
    assert!(log.contains("took over from mender"), "{log}");
    assert_eq!(device.boot(), reference_env);
    assert_eq!(device.boot(), ("2".into(), "0".into()));
    assert_eq!(device.show("otalite"), reference_show);
    assert!(
        reference_show.1.contains("rootfs-image.custom=foo\n"),
        "{}",
        reference_show.1
    );
    assert!(
        reference_show.1.contains("extra.key=bar\n"),
        "{}",
        reference_show.1
    );
    assert!(
        reference_show.1.contains("artifact_group=g1\n"),
        "{}",
        reference_show.1
    );
    assert_eq!(
        device.store(),
        store,
        "otalite changed the reference's store"
    );

    // Nothing is left to commit, and the take-over happens once.
    let again = device.otalite(&["commit"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(!String::from_utf8_lossy(&again.stderr).contains("took over"));

    // The reverse: the reference still runs on its untouched store, which
    // still says what it left (release-2 committed; its own install of
    // release-3 pending): it does not see what otalite did after.
    let (name, _) = device.show("mender");
    assert_eq!(name, "release-2", "the reference reads its own store");
}

#[test]
fn otalite_rolls_back_an_update_the_reference_installed() {
    if !reference_available("otalite_rolls_back_an_update_the_reference_installed") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let device = RefDevice::new();
    let r2 = device.artifact("release-2", 2, &[]);
    RefDevice::ok(
        device.mender(&["install", r2.to_str().unwrap()]),
        "mender install",
    );
    let saved = device.save();

    RefDevice::ok(device.mender(&["rollback"]), "mender rollback");
    let reference_env = device.boot();
    let reference_show = device.show("mender");

    device.restore(&saved);
    let store = device.store();
    RefDevice::ok(device.otalite(&["rollback"]), "otalite rollback");
    assert_eq!(device.boot(), reference_env);
    assert_eq!(device.boot(), ("2".into(), "0".into()));
    let show = device.show("otalite");
    assert_eq!(show.0, reference_show.0);
    assert_eq!(show.0, "release-1");
    assert_eq!(
        device.store(),
        store,
        "otalite changed the reference's store"
    );
    let again = device.otalite(&["rollback"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn otalite_install_is_refused_over_a_pending_reference_update() {
    if !reference_available("otalite_install_is_refused_over_a_pending_reference_update") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let device = RefDevice::new();
    let r2 = device.artifact("release-2", 2, &[]);
    let r3 = device.artifact("release-3", 3, &[]);
    RefDevice::ok(
        device.mender(&["install", r2.to_str().unwrap()]),
        "mender install",
    );
    let store = device.store();
    let slot = std::fs::read(device.workdir().join("slot-b.img")).unwrap();
    let output = device.otalite(&["install", r3.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("release-2 is already installed and waiting"),
        "{stderr}"
    );
    assert_eq!(device.boot(), ("3".into(), "1".into()));
    assert!(std::fs::read(device.workdir().join("slot-b.img")).unwrap() == slot);
    assert_eq!(device.store(), store);
    // The pending update is still there to commit.
    RefDevice::ok(device.otalite(&["commit"]), "otalite commit");
    assert_eq!(device.show("otalite").0, "release-2");
}

#[test]
fn a_damaged_reference_store_is_a_warning() {
    if !reference_available("a_damaged_reference_store_is_a_warning") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let device = RefDevice::new();
    let r2 = device.artifact("release-2", 2, &[]);
    RefDevice::ok(
        device.mender(&["install", r2.to_str().unwrap()]),
        "mender install",
    );
    let path = device.data().join("mender-store");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(2 * 4096 + 100); // the metas stay, the tree's leaf is cut
    std::fs::write(&path, &bytes).unwrap();
    let store = device.store();
    let output = device.otalite(&["show-artifact"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot take over from the reference's store"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "release-1");
    assert_eq!(device.store(), store);
    assert!(!device.data().join("otalite.state").exists());
}

// ------------------------------------------------------------------
// Daemon: the reference takes a deployment and reboots; otalite finishes it.

/// A device whose reference daemon talks to its own test server.
struct Managed {
    device: RefDevice,
    server: TestServer,
}

impl Managed {
    fn new() -> Self {
        let server = TestServer::start(ServerConfig::default());
        let device = RefDevice::new();
        let w = device.workdir();
        std::fs::write(
            w.join("upper/etc/mender/mender.conf"),
            format!(
                r#"{{"RootfsPartA": "/dev/mmcblk0p2", "RootfsPartB": "/dev/mmcblk0p3", "DBus": {{"Enabled": false}}, "ServerURL": "{}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1}}"#,
                server.url()
            ),
        )
        .unwrap();
        executable(
            &w.join("upper/share/identity/mender-device-identity"),
            "#!/bin/sh\necho mac=02:00:00:00:00:01\n",
        );
        executable(
            &w.join("upper/share/inventory/mender-inventory-test"),
            "#!/bin/sh\necho kernel=test-kernel\n",
        );
        Self { device, server }
    }

    fn start(&self, program: &str, args: &[&str], log: &str) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.device.dir.path().join(log))
            .unwrap();
        // device.sh execs unshare, which execs the program: the child is it.
        DaemonProcess(
            Command::new(device_sh())
                .arg("run")
                .arg(self.device.workdir())
                .arg("--")
                .arg(program)
                .args(args)
                .env("OTALITE_TEST_BACKOFF_MS", "50")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("start a daemon in device.sh"),
        )
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.device.dir.path().join(name)).unwrap_or_default()
    }

    fn reboots(&self) -> usize {
        std::fs::read_to_string(self.device.workdir().join("reboot.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    fn wait(&self, what: &str, log: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; requests: {:?}\nlog:\n{}",
                self.server
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} {:?} -> {}", r.method, r.path, r.reported, r.status))
                    .collect::<Vec<_>>(),
                self.log(log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn statuses(&self, id: &str) -> Vec<String> {
        self.server
            .statuses(id)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    fn finished(&self, id: &str) -> bool {
        matches!(
            self.server.deployment_state(id),
            Some(DeploymentState::Finished(_))
        )
    }
}

/// How the device comes back after the reference's reboot.
#[derive(Clone, Copy)]
enum Boot {
    /// The trial boot of the new slot (U-Boot counts it).
    Trial,
    /// U-Boot fell back to the old slot (the new one did not come up).
    Fallback,
}

/// How a daemon case ended: the statuses reported after the update's
/// reboot, the reboots the finisher asked for, the env
/// (`mender_boot_part`, `upgrade_available`) and the artifact name.
#[derive(Debug, PartialEq, Eq)]
struct Ending {
    statuses: Vec<String>,
    reboots: usize,
    env: (String, String),
    name: String,
}

/// The reference daemon takes a deployment to its reboot; the machine
/// "reboots" as `boot` says; then `finisher` ("mender" or "otalite") runs,
/// through any further reboots it asks for, until the deployment is
/// finished. With `swap_late`, the reference also runs through its next
/// reboot (the rollback reboot after a fallback) before otalite takes over.
fn daemon_case(boot: Boot, finisher: &str, swap_late: bool) -> Ending {
    let managed = Managed::new();
    let artifact = managed.device.artifact("release-2", 31, &[]);
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    let mender: (&str, &[&str], &str) = ("mender", &["--no-syslog", "daemon"], "mender.log");
    let mut reference = managed.start(mender.0, mender.1, mender.2);
    managed.wait("the reference's reboot", mender.2, || managed.reboots() > 0);
    // The machine goes down: the daemon dies with it.
    reference.kill().unwrap();
    reference.wait().unwrap();
    drop(reference);
    let before = managed.statuses(&id).len();
    match boot {
        Boot::Trial => managed.device.set_env("bootcount=1\n"),
        Boot::Fallback => managed.device.set_env(
            "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\n",
        ),
    }
    if swap_late {
        let mut reference = managed.start(mender.0, mender.1, mender.2);
        managed.wait("the reference's second reboot", mender.2, || {
            managed.reboots() > 1
        });
        reference.kill().unwrap();
        reference.wait().unwrap();
    }
    let store = managed.device.store();
    let (program, args, log) = if finisher == "mender" {
        mender
    } else {
        (
            env!("CARGO_BIN_EXE_otalite"),
            &["daemon"][..],
            "otalite.log",
        )
    };
    let reboots_before = managed.reboots();
    let mut reboots_seen = reboots_before;
    let mut daemon = managed.start(program, args, log);
    let started = Instant::now();
    while !managed.finished(&id) {
        if managed.reboots() > reboots_seen {
            reboots_seen = managed.reboots();
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            daemon = managed.start(program, args, log);
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "timed out waiting for the final report; statuses {:?}\nlog:\n{}",
            managed.statuses(&id),
            managed.log(log)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then an update check: the deployment is over.
    let requests = managed.server.requests().len();
    managed.wait("the next update check", log, || {
        managed.server.requests()[requests..]
            .iter()
            .any(|r| r.path.contains("/deployments/next"))
    });
    if finisher == "mender" {
        drop(daemon);
    } else {
        assert_eq!(stop(daemon), Some(0), "{}", managed.log(log));
        let log_text = managed.log(log);
        assert!(log_text.contains("took over from mender"), "{log_text}");
        assert!(log_text.contains(&format!("deployment {id}")), "{log_text}");
        assert_eq!(
            managed.device.store(),
            store,
            "otalite changed the reference's store"
        );
        // The reference's RSA device key, used as is: every authentication
        // presented it.
        let auths = managed.server.auth_requests();
        assert!(!auths.is_empty());
        assert!(
            auths.iter().all(|a| a.key_type == Some(KeyType::Rsa)),
            "{auths:?}"
        );
    }
    let ending_reboots = managed.reboots() - reboots_before;
    let name = RefDevice::ok(
        if finisher == "mender" {
            managed.device.mender(&["show-artifact"])
        } else {
            managed.device.otalite(&["show-artifact"])
        },
        "show-artifact",
    );
    let env = managed.device.boot();
    if finisher != "mender" && matches!(boot, Boot::Trial) {
        // The reverse: the reference swapped back still holds its
        // `reboot` state, finds no trial in the env and "rolls back": a
        // no-op on the env (the new slot stays), then its rollback reboot.
        let statuses = managed.statuses(&id);
        let reboots = managed.reboots();
        let back = managed.start(mender.0, mender.1, "reverse.log");
        managed.wait("the reference's rollback reboot", "reverse.log", || {
            managed.reboots() > reboots
        });
        drop(back);
        assert_eq!(managed.device.boot(), env, "{}", managed.log("reverse.log"));
        assert_eq!(managed.statuses(&id), statuses);
        assert!(managed
            .log("reverse.log")
            .contains("Handling loaded state: reboot"));
    }
    Ending {
        statuses: managed.statuses(&id)[before..].to_vec(),
        reboots: ending_reboots,
        env,
        name: name.trim().to_string(),
    }
}

#[test]
fn otalite_daemon_finishes_the_reference_deployment_with_success() {
    if !reference_available("otalite_daemon_finishes_the_reference_deployment_with_success") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let reference = daemon_case(Boot::Trial, "mender", false);
    let otalite = daemon_case(Boot::Trial, "otalite", false);
    eprintln!("after the reboot: reference {reference:?}, otalite {otalite:?}");
    assert_eq!(
        reference.statuses.last().map(String::as_str),
        Some("success")
    );
    assert_eq!(otalite, reference);
    assert_eq!(otalite.env, ("3".into(), "0".into()));
    assert_eq!(otalite.name, "release-2");
}

#[test]
fn otalite_daemon_reports_failure_when_the_bootloader_fell_back() {
    if !reference_available("otalite_daemon_reports_failure_when_the_bootloader_fell_back") {
        return;
    }
    let _lock = DEVICES.lock().unwrap_or_else(|e| e.into_inner());
    let reference = daemon_case(Boot::Fallback, "mender", false);
    let otalite = daemon_case(Boot::Fallback, "otalite", false);
    eprintln!("after the reboot: reference {reference:?}, otalite {otalite:?}");
    assert_eq!(
        reference.statuses.last().map(String::as_str),
        Some("failure")
    );
    assert_eq!(otalite.statuses, reference.statuses);
    assert_eq!(otalite.env, reference.env);
    assert_eq!(otalite.env, ("2".into(), "0".into()));
    assert_eq!(otalite.name, reference.name);
    assert_eq!(otalite.name, "release-1");
    // The reference asks for a rollback reboot here (otalite does not: the
    // old slot already runs). Swapped during that reboot, otalite takes
    // over the reference's `rollback-reboot` state and ends it the same.
    let late = daemon_case(Boot::Fallback, "otalite", true);
    eprintln!("swapped at the rollback reboot: otalite {late:?}");
    assert_eq!(late.statuses, reference.statuses);
    assert_eq!(late.env, reference.env);
    assert_eq!(late.name, reference.name);
}
