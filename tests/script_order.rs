//! The daemon's state-script order against the reference's: the real
//! `otalite daemon` and the real `mender daemon` 3.4 (Debian's
//! `mender-client`, on a `tests/refdevice/device.sh` device) go through the
//! same deployment with every state script installed, and the order in
//! which the scripts ran is compared.
//!
//! Every script appends its own name to a log and exits 0, unless the case
//! makes it fail (exit 1). The artifact carries every `Artifact*` script
//! (`Enter`, `Leave`, `Error`); `/etc/mender/scripts` has the `Idle`,
//! `Sync` and `Download` ones and `version` 3.
//!
//! | case | what happens | final status |
//! |---|---|---|
//! | `success` | deploy, reboot into the trial, commit | `success` |
//! | `install-fails` | `ArtifactInstall_Enter_01` fails, before the reboot | `failure` |
//! | `commit-fails` | `ArtifactCommit_Enter_01` fails on the new system: rollback, rollback reboot | `failure` |
//! | `reboot-leave-fails` | `ArtifactReboot_Leave_01` fails on the new system: rollback, rollback reboot | `failure` |
//! | `aborted` | the server aborts the deployment when it is reported `installing` | none (aborted) |
//!
//! A reboot is the fake `reboot` in `PATH`: the test kills the daemon as
//! the machine would, does what U-Boot (`bootlimit=1`) does at the next
//! boot (a pending trial: `bootcount=1`; a trial still pending at the next
//! boot: the fallback) and starts the daemon again. `(reboot)`
//! marks it in the order.
//!
//! # What is compared
//!
//! The script runs between the first `Download_Enter` and the final
//! report, exactly (order and count). `Idle` and `Sync` runs before and
//! after the deployment depend on the clock (1 s polls) and are not
//! compared; inside the deployment they are.
//!
//! The reference runs live when it can (root, `mender` installed: CI); its
//! order must then also match the recording in `tests/fixtures/scripts/`
//! (re-record with `OTALITE_RECORD_SCRIPTS=1`). Without root or `mender`,
//! otalite is compared with the recording alone.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::reference::*;
use common::*;
use otalite_testserver::{Fault, ServerConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Set to re-record the reference's orders into the fixtures.
const RECORD: &str = "OTALITE_RECORD_SCRIPTS";
const REBOOT: &str = "(reboot)";

#[derive(Clone, Copy, Debug)]
enum Case {
    Success,
    InstallFails,
    CommitFails,
    RebootLeaveFails,
    Aborted,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::InstallFails => "install-fails",
            Self::CommitFails => "commit-fails",
            Self::RebootLeaveFails => "reboot-leave-fails",
            Self::Aborted => "aborted",
        }
    }

    fn failing(self) -> Option<&'static str> {
        match self {
            Self::InstallFails => Some("ArtifactInstall_Enter_01"),
            Self::CommitFails => Some("ArtifactCommit_Enter_01"),
            Self::RebootLeaveFails => Some("ArtifactReboot_Leave_01"),
            Self::Success | Self::Aborted => None,
        }
    }

    fn final_status(self) -> Option<&'static str> {
        match self {
            Self::Success => Some("success"),
            Self::Aborted => None,
            _ => Some("failure"),
        }
    }

    fn fixture(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/scripts")
            .join(format!("{}.txt", self.name()))
    }
}

/// A script that logs its name to `log` and fails when `fails/<name>`
/// exists.
fn script(dir: &Path, name: &str, log: &Path, fails: &Path) -> PathBuf {
    let path = dir.join(name);
    executable(
        &path,
        &format!(
            "#!/bin/sh\necho {name} >> {log}\nif [ -e {fails}/{name} ]; then echo \"{name} fails\" >&2; exit 1; fi\nexit 0\n",
            log = log.display(),
            fails = fails.display()
        ),
    );
    path
}

/// Installs the rootfs scripts, writes the artifact with the artifact
/// scripts, marks the failing script; returns (artifact, log).
fn prepare(client: &dyn Client, case: Case) -> (PathBuf, PathBuf) {
    let dir = client.dir().join("scripts-case");
    let (log, fails, artifact_scripts) =
        (dir.join("ran.log"), dir.join("fail"), dir.join("artifact"));
    std::fs::create_dir_all(&fails).unwrap();
    let rootfs = client.rootfs_scripts();
    for group in ["Idle", "Sync", "Download"] {
        for phase in ["Enter", "Leave", "Error"] {
            script(&rootfs, &format!("{group}_{phase}_01"), &log, &fails);
        }
    }
    std::fs::write(rootfs.join("version"), "3\n").unwrap();
    let mut args = Vec::new();
    for group in ARTIFACT_GROUPS {
        for phase in ["Enter", "Leave", "Error"] {
            let path = script(
                &artifact_scripts,
                &format!("{group}_{phase}_01"),
                &log,
                &fails,
            );
            args.push("-s".to_string());
            args.push(path.display().to_string());
        }
    }
    if let Some(name) = case.failing() {
        std::fs::write(fails.join(name), "").unwrap();
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let artifact = write_artifact(&dir, "release-2", &image_bytes(1 << 20, 31), &args);
    (artifact, log)
}

fn ran(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `case` on `client`: the raw order of script runs, `(reboot)`
/// marking each reboot.
fn run(client: &dyn Client, case: Case) -> Vec<String> {
    let (artifact, log) = prepare(client, case);
    let server = client.server();
    let id = server.add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    if let Case::Aborted = case {
        server.inject(Fault::abort_on_status("installing"));
    }
    let mut daemon = client.start();
    let mut reboots = 0;
    let mut marks = Vec::new();
    let finished = || {
        let statuses: Vec<String> = server.statuses(&id).into_iter().map(|(s, _)| s).collect();
        match case.final_status() {
            Some(status) => statuses.iter().any(|s| s == status),
            // Aborted: the deployment ended (409) and the daemon asks for
            // updates again.
            None => {
                let requests = server.requests();
                requests
                    .iter()
                    .position(|r| r.status == 409)
                    .is_some_and(|at| {
                        requests[at..]
                            .iter()
                            .any(|r| r.path.ends_with("/deployments/next"))
                    })
            }
        }
    };
    loop {
        wait_for(client, "a reboot or the end of the deployment", || {
            client.reboots() > reboots || finished()
        });
        if client.reboots() > reboots {
            // The machine goes down: the daemon dies with it.
            daemon.kill().unwrap();
            daemon.wait().unwrap();
            reboots = client.reboots();
            marks.push(ran(&log).len());
            // U-Boot with bootlimit=1: a pending trial boots once
            // (bootcount=1); still pending at the next boot, it falls back.
            if client.env_var("upgrade_available") == "1" {
                if client.env_var("bootcount") == "1" {
                    client.bootloader_fallback();
                } else {
                    client.trial_boot();
                }
            }
            daemon = client.start();
            continue;
        }
        break;
    }
    // Settle: the scripts after the final report (Idle, Sync) are dropped
    // by `compared`, but let the deployment's last ones finish.
    std::thread::sleep(Duration::from_millis(1500));
    drop(daemon);
    if let (Some(name), Some("failure")) = (case.failing(), case.final_status()) {
        // The failing script's stderr is in the uploaded deployment log
        // (the reference's too: the same check runs on both).
        let logs = server.logs(&id);
        assert!(
            logs.iter()
                .any(|l| l.message.contains(&format!("{name} fails"))),
            "the script's stderr is not in the deployment log: {logs:?}"
        );
    }
    let mut lines = ran(&log);
    for at in marks.into_iter().rev() {
        lines.insert(at, REBOOT.into());
    }
    lines
}

fn read_fixture(case: Case) -> Vec<String> {
    fixture_lines(&case.fixture(), &format!("{RECORD}=1"))
}

fn write_fixture(case: Case, lines: &[String]) {
    write_fixture_lines(
        &case.fixture(),
        &format!(
            "# The reference's state-script runs, case `{}` of tests/script_order.rs.\n\
             # Recorded with {RECORD}=1 and `{}`\n\
             # (tests/refdevice/device.sh, otalite-testserver, 1 s polls).\n",
            case.name(),
            Reference::version()
        ),
        lines,
    );
}

fn check(case: Case) {
    let recording = Recording {
        record_var: RECORD,
        fixture: case.fixture(),
        read: &|| read_fixture(case),
        write: &|lines| write_fixture(case, lines),
        same: &|a, b| a == b,
        show: &|live, recorded| side_by_side("live reference", live, "recorded", recorded),
    };
    let Some(reference) = recording.reference(|| deployment_window(&run(&Reference::new(), case)))
    else {
        return;
    };
    let managed = Managed::new(ServerConfig::default());
    let otalite = deployment_window(&run(&managed, case));
    assert!(
        otalite == reference,
        "otalite's script order differs from the reference's (case {}):\n{}\notalite's log:\n{}",
        case.name(),
        side_by_side("otalite", &otalite, "reference", &reference),
        managed.log()
    );
    managed.done(&format!("script order {}", case.name()));
}

#[test]
fn success() {
    check(Case::Success);
}

#[test]
fn install_enter_fails_before_the_reboot() {
    check(Case::InstallFails);
}

#[test]
fn commit_enter_fails_after_the_reboot() {
    check(Case::CommitFails);
}

#[test]
fn reboot_leave_fails_after_the_reboot() {
    check(Case::RebootLeaveFails);
}

#[test]
fn aborted_deployment() {
    check(Case::Aborted);
}
