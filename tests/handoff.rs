//! The hand-off flow (the Mender Python client's contract) end to end: the
//! real `otalite daemon --hand-off` against the project's Mender test
//! server on loopback, a real installer script that the daemon starts
//! detached, and `otalite report --success|--failure` called by that
//! script, as a sub-updater written for the Python client does.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::*;
use otalite_testserver::{DeploymentState, ServerConfig, TestServer};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Fast polling plus `HandOff` in mender.conf.
fn hand_off_config(server: &TestServer, root: &Path) -> String {
    format!("{}, \"HandOff\": true", fast_polling(server, root))
}

/// The command line the installer uses to call `report` (the daemon's
/// environment is inherited: MENDER_CONF_DIR and friends).
fn report_command(managed: &Managed, flag: &str) -> String {
    let root = managed.device.root();
    format!(
        "{} -c {} -d {} report {flag}",
        env!("CARGO_BIN_EXE_otalite"),
        root.join("etc/mender.conf").display(),
        root.join("data").display()
    )
}

/// An installer that records its argument and the lock, "installs"
/// (copies the file), names the new artifact in `artifact_info`, then runs
/// `after` (e.g. the report).
fn installer(managed: &Managed, new_name: &str, after: &str) {
    let root = managed.device.root();
    executable(
        &root.join("share/install"),
        &format!(
            "#!/bin/sh\n\
             echo \"$@\" > {root}/install-args\n\
             cat {root}/data/update.lock > {root}/lock-seen\n\
             cp \"$1\" {root}/installed.mender\n\
             echo artifact_name={new_name} > {root}/etc/artifact_info\n\
             {after}\n",
            root = root.display()
        ),
    );
}

/// Waits until the installer saw the lock holding `id`.
fn wait_for_hand_off(managed: &Managed, id: &str) {
    managed.wait("the hand-off", |m| {
        read(&m.device.root().join("lock-seen")) == id
    });
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn lock(managed: &Managed) -> std::path::PathBuf {
    managed.device.root().join("data/update.lock")
}

#[test]
fn hand_off_success_reports_and_polls_again() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (artifact, id) = managed.deploy_release_2(1 << 20, 7);
    installer(
        &managed,
        "release-2",
        &report_command(&managed, "--success"),
    );

    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    managed.wait("the new name in the inventory", |m| {
        m.server
            .inventory()
            .get("artifact_name")
            .and_then(|v| v.as_str())
            == Some("release-2")
    });
    assert_eq!(stop(daemon), Some(0));

    let root = managed.device.root();
    // The installer got the whole artifact, at the Python client's path,
    // with the lock holding the deployment id (no newline).
    assert_eq!(
        read(&root.join("install-args")).trim(),
        root.join("data/artifact.mender").display().to_string()
    );
    assert_eq!(read(&root.join("lock-seen")), id);
    assert_eq!(
        std::fs::read(root.join("installed.mender")).unwrap(),
        std::fs::read(&artifact).unwrap()
    );
    assert!(!lock(&managed).exists(), "report removes the lock");
    // Only what the Python client sends: downloading, then the report.
    assert_eq!(managed.statuses(&id), ["downloading", "success"]);
    // The slots and the boot env are the installer's: untouched.
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    assert!(managed.device.slot(3).iter().all(|&b| b == 0));
}

#[test]
fn hand_off_failure_uploads_the_installer_log() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(256 << 10, 8);
    let root = managed.device.root();
    installer(
        &managed,
        "release-1",
        &format!(
            "echo 'flashing failed: bad block 7' > {}/data/sub-updater.log\n{}",
            root.display(),
            report_command(&managed, "--failure")
        ),
    );
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    managed.wait("the lock removed", |m| !lock(m).exists());
    assert_eq!(stop(daemon), Some(0));
    let messages: Vec<String> = managed.log_messages(&id);
    assert!(
        messages
            .first()
            .is_some_and(|m| m.contains("flashing failed: bad block 7")),
        "the installer's log goes first: {messages:?}"
    );
    assert_eq!(managed.statuses(&id), ["downloading", "failure"]);
}

#[test]
fn report_without_a_lock_fails_with_exit_1() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    for flag in ["--success", "--failure"] {
        let output = managed.device.otalite(&["report", flag]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("No update in progress"),
            "{}",
            stderr(&output)
        );
    }
    let output = managed.device.otalite(&["report"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("No report status given"));
    let output = managed
        .device
        .otalite(&["report", "--success", "--failure"]);
    assert_ne!(output.status.code(), Some(0));
}

#[test]
fn no_installer_reports_failure_and_takes_no_lock() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(64 << 10, 9);
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    assert!(!lock(&managed).exists());
    let log = managed.log();
    assert!(log.contains("No install script found"), "{log}");
}

/// While the lock is held (the installer owns the device, also across a
/// restart of the agent) nothing but the lock is looked at; after the
/// report, polling resumes.
#[test]
fn a_held_lock_stops_polling_across_restarts() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(64 << 10, 10);
    // This installer does not report: the test does, later.
    installer(&managed, "release-2", "true");
    let mut daemon = managed.start();
    wait_for_hand_off(&managed, &id);
    // A power cut while the installer owns the device.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let before = managed.server.requests().len();
    let daemon = managed.start();
    std::thread::sleep(Duration::from_secs(3));
    let during: Vec<String> = managed.server.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        during.is_empty(),
        "polled while the lock was held: {during:?}"
    );
    let output = managed.device.otalite(&["report", "--success"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(managed.finished(&id, "success"));
    // The daemon looks at the lock at most every update interval (1 s).
    managed.wait("polling again with the new name", |m| {
        m.server
            .inventory()
            .get("artifact_name")
            .and_then(|v| v.as_str())
            == Some("release-2")
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(managed.statuses(&id), ["downloading", "success"]);
}

/// Power cut between the status report and the lock removal: the next
/// `report` finds the deployment finished and only removes the lock.
#[test]
fn report_cut_before_the_lock_removal_can_run_again() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(64 << 10, 11);
    installer(&managed, "release-2", "true");
    let daemon = managed.start();
    wait_for_hand_off(&managed, &id);
    let output = managed
        .device
        .command()
        .env("OTALITE_TEST_CRASH_AT", "handoff-release")
        .args(["report", "--success"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(managed.finished(&id, "success"));
    assert!(lock(&managed).exists(), "cut before the removal");
    let output = managed.device.otalite(&["report", "--success"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!lock(&managed).exists());
    assert_eq!(stop(daemon), Some(0));
}

/// Power cut during the download: the next start reports the deployment
/// failed (as a managed download), and no installer runs.
#[test]
fn cut_during_the_download_reports_failure() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(64 << 10, 12);
    installer(&managed, "release-2", "true");
    let mut daemon = managed.start_with(&[("OTALITE_TEST_CRASH_AT", "handoff-download")]);
    let started = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < WAIT, "the crash point was not reached");
        std::thread::sleep(Duration::from_millis(50));
    }
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    assert!(!managed.device.root().join("lock-seen").exists());
    assert!(!lock(&managed).exists());
}

/// The agent killed between the lock and the installer's start (no power
/// cut: the lock is from this boot): the next start sees no process
/// running the installer for the lock and starts it.
#[test]
fn killed_between_the_lock_and_the_installer_starts_it_again() {
    let managed = Managed::with_config(ServerConfig::default(), hand_off_config);
    let (_, id) = managed.deploy_release_2(64 << 10, 14);
    installer(
        &managed,
        "release-2",
        &report_command(&managed, "--success"),
    );
    let mut daemon = managed.start_with(&[("OTALITE_TEST_CRASH_AT", "handoff-spawn")]);
    let started = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < WAIT, "the crash point was not reached");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(read(&lock(&managed)), id, "the lock was written");
    assert!(!managed.device.root().join("lock-seen").exists());
    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(read(&managed.device.root().join("lock-seen")), id);
    assert!(!lock(&managed).exists());
    assert_eq!(managed.statuses(&id), ["downloading", "success"]);
}

/// Called as `mender-python-client` (a symlink), `daemon` is the hand-off
/// daemon without any otalite setting.
#[test]
fn called_as_mender_python_client() {
    let managed = Managed::new(ServerConfig::default());
    let root = managed.device.root();
    let link = root.join("bin/mender-python-client");
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_otalite"), &link).unwrap();
    let (_, id) = managed.deploy_release_2(64 << 10, 13);
    installer(
        &managed,
        "release-2",
        &format!(
            "{} -c {} -d {} report --success",
            link.display(),
            root.join("etc/mender.conf").display(),
            root.join("data").display()
        ),
    );
    let mut command = std::process::Command::new(&link);
    let reference = managed.device.command();
    for (name, value) in reference.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command
        .args(reference.get_args())
        .arg("daemon")
        .env("OTALITE_TEST_BACKOFF_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let daemon = DaemonProcess(command.spawn().unwrap());
    managed.wait("success", |m| {
        m.server.deployment_state(&id) == Some(DeploymentState::Finished("success".into()))
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(managed.statuses(&id), ["downloading", "success"]);
}
