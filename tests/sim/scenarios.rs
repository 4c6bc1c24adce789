//! Named flows, each with exact expectations.

use crate::harness::*;
use otalite::agent::{Command, Completion, Method, ScriptGroup as G, ScriptPhase as P};
use otalite::store::UpdateStep;

const SIM_A: &str = "/data/sim-a.mender";

fn completion(got: Option<(Completion, String)>) -> Completion {
    got.expect("the command completed (no power cut)").0
}

/// Standalone: install, reboot, commit.
fn standalone_installed(buffers: &mut Buffers) -> World {
    let mut w = World::standalone();
    let got = w.run_command(buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Installed);
    w
}

#[test]
fn standalone_install_commit() {
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    assert_eq!(w.persisted(), ["Installed"]);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    assert_eq!(
        w.scripts_run(),
        [
            "Download_Enter",
            "Download_Leave",
            "ArtifactInstall_Enter",
            "ArtifactInstall_Leave"
        ]
    );
    assert_eq!(w.image_in(B).as_deref(), Some("sim-a"));
    w.power_on();
    assert_eq!(w.running, B);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(got, Some((Completion::Committed, "committed sim-a".into())));
    assert_eq!(w.persisted(), ["Installed", "Committing", "Idle"]);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::CommitBoot]);
    w.check_at_rest();
    // The next reboot stays on B.
    w.power_on();
    w.check_at_rest();
    assert_eq!(w.running, B);
}

#[test]
fn standalone_install_rollback() {
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.power_on();
    assert_eq!(w.running, B);
    let got = w.run_command(&mut buffers, Command::Rollback);
    assert_eq!(completion(got), Completion::RolledBack);
    assert_eq!(w.persisted(), ["Installed", "RollingBack", "Idle"]);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    w.power_on();
    assert_eq!(w.running, A);
    w.check_at_rest();
    // Nothing is left to commit.
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(completion(got), Completion::Nothing);
}

#[test]
fn standalone_rollback_before_the_reboot() {
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    let got = w.run_command(&mut buffers, Command::Rollback);
    assert_eq!(completion(got), Completion::RolledBack);
    w.check_at_rest();
    w.power_on();
    assert_eq!(w.running, A);
    w.check_at_rest();
}

#[test]
fn standalone_commit_with_nothing_installed() {
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(
        got,
        Some((Completion::Nothing, "There is nothing to commit".into()))
    );
    let got = w.run_command(&mut buffers, Command::Rollback);
    assert_eq!(completion(got), Completion::Nothing);
    assert!(w.persisted().is_empty());
    assert!(w.env_writes().is_empty());
    w.check_at_rest();
}

#[test]
fn standalone_second_install_while_one_waits_is_refused() {
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.power_on();
    let got = w.run_command(
        &mut buffers,
        Command::Install {
            uri: "/data/sim-b.mender",
        },
    );
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(completion(got), Completion::Committed);
    w.check_at_rest();
}

/// Standalone: the trial slot does not come up; U-Boot falls back; the
/// commit that follows finds nothing active and changes nothing.
#[test]
fn standalone_bootloader_fallback() {
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.trial_boot_fails = true;
    w.power_on();
    assert_eq!(w.running, A);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    w.check_at_rest();
}

/// The reference's standalone failure states (`doStandaloneFailureStates`):
/// after a failed `ArtifactInstall_Enter` the rollback scripts run before
/// the failure scripts, and a failing rollback script records the update's
/// name as `<name>_INCONSISTENT` (tests/refdevice/compare.sh cases 15-24
/// compare the same paths with the real mender).
#[test]
fn standalone_failure_states_as_the_reference() {
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.scripts
        .insert((G::ArtifactInstall, P::Enter), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(
        w.scripts_run(),
        [
            "Download_Enter",
            "Download_Leave",
            "ArtifactInstall_Enter",
            "ArtifactInstall_Error",
            "ArtifactRollback_Enter",
            "ArtifactRollback_Leave",
            "ArtifactFailure_Enter",
            "ArtifactFailure_Leave",
        ]
    );
    assert!(w.env_writes().is_empty());
    assert!(w.persisted().is_empty(), "nothing to record");
    w.check_at_rest();

    // The same with a failing rollback script: the update's name, marked.
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.scripts
        .insert((G::ArtifactInstall, P::Enter), Script::Fail);
    w.scripts
        .insert((G::ArtifactRollback, P::Leave), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Failed);
    assert!(w.env_writes().is_empty());
    assert_eq!(
        w.record().installed.artifact_name.as_str(),
        "sim-a_INCONSISTENT"
    );
    w.check_at_rest();

    // `rollback` whose ArtifactRollback_Enter fails: rolled back all the
    // same, then the failure scripts, exit "failed", the name marked.
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.scripts
        .insert((G::ArtifactRollback, P::Enter), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Rollback);
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    let after_install = w.scripts_run().len() - 4;
    assert_eq!(
        w.scripts_run()[after_install..],
        [
            "ArtifactRollback_Enter",
            "ArtifactRollback_Leave",
            "ArtifactFailure_Enter",
            "ArtifactFailure_Leave",
        ]
    );
    assert_eq!(
        w.record().installed.artifact_name.as_str(),
        "sim-a_INCONSISTENT"
    );
    w.power_on();
    w.check_at_rest();
}

/// A failing script at each standalone state: before the env switch the
/// env is untouched; after it, the env is rolled back; a failing
/// `ArtifactCommit_Leave` comes too late to undo the commit.
#[test]
fn standalone_failing_scripts() {
    let install_states = [
        (G::Download, P::Enter),
        (G::Download, P::Leave),
        (G::ArtifactInstall, P::Enter),
    ];
    for (group, phase) in install_states {
        let mut buffers = Buffers::default();
        let mut w = World::standalone();
        w.scripts.insert((group, phase), Script::Fail);
        let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
        assert_eq!(completion(got), Completion::Failed, "{group:?} {phase:?}");
        assert!(
            w.env_writes().is_empty(),
            "{group:?} {phase:?}: env untouched"
        );
        assert!(w.persisted().is_empty(), "{group:?} {phase:?}");
        w.check_at_rest();
        w.power_on();
        w.check_at_rest();
    }
    // After the switch: rolled back.
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.scripts
        .insert((G::ArtifactInstall, P::Leave), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    assert_eq!(w.persisted(), ["Installed", "RollingBack", "Idle"]);
    assert!(w
        .scripts_run()
        .contains(&"ArtifactInstall_Error".to_string()));
    w.check_at_rest();
    w.power_on();
    assert_eq!(w.running, A);
    w.check_at_rest();

    // Commit_Enter fails: rolled back (a reboot brings the old system).
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.power_on();
    w.scripts
        .insert((G::ArtifactCommit, P::Enter), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    w.power_on();
    assert_eq!(w.running, A);
    w.check_at_rest();

    // Commit_Leave fails: committed all the same.
    let mut buffers = Buffers::default();
    let mut w = standalone_installed(&mut buffers);
    w.power_on();
    w.scripts
        .insert((G::ArtifactCommit, P::Leave), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::CommitBoot]);
    // Recorded as the reference does it: the update's name, marked.
    assert_eq!(
        w.record().installed.artifact_name.as_str(),
        "sim-a_INCONSISTENT"
    );
    w.check_at_rest();
    assert_eq!(w.running_image().as_deref(), Some("sim-a"));

    // Error and failure scripts are ignored.
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.scripts
        .insert((G::ArtifactInstall, P::Leave), Script::Fail);
    w.scripts
        .insert((G::ArtifactInstall, P::Error), Script::Fail);
    w.scripts
        .insert((G::ArtifactFailure, P::Enter), Script::Fail);
    let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Failed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    w.check_at_rest();
}

/// A truncated or corrupted artifact: the slot may hold bytes, the boot
/// env and the record are untouched.
#[test]
fn standalone_bad_artifacts() {
    let good = fixture("sim-a.mender");
    let mut truncated = good.clone();
    truncated.truncate(good.len() / 2);
    let mut corrupted = good.clone();
    // Inside the compressed payload (the data tar is at the end).
    let at = good.len() - 1500;
    corrupted[at] ^= 0x55;
    for (name, bytes) in [("truncated", truncated), ("corrupted", corrupted)] {
        let mut buffers = Buffers::default();
        let mut w = World::standalone();
        w.artifacts.insert("/data/bad.mender".into(), bytes);
        let got = w.run_command(
            &mut buffers,
            Command::Install {
                uri: "/data/bad.mender",
            },
        );
        let (c, message) = got.expect("completed");
        assert_eq!(c, Completion::Failed, "{name}: {message}");
        assert!(w.env_writes().is_empty(), "{name}");
        assert!(w.persisted().is_empty(), "{name}");
        assert!(
            w.scripts_run().contains(&"Download_Error".to_string()),
            "{name}: {:?}",
            w.scripts_run()
        );
        w.check_at_rest();
        w.power_on();
        assert_eq!(w.running, A, "{name}");
        w.check_at_rest();
        // A good artifact installs afterwards.
        let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
        assert_eq!(completion(got), Completion::Installed, "{name}");
    }
}

// -------------------------------------------------------------------
// Managed mode.

pub fn managed(setup: impl FnOnce(&mut World)) -> World {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.deploy("d1", "sim-a");
    setup(&mut w);
    w.run_managed(&mut buffers);
    w
}

pub fn requests(w: &World) -> Vec<String> {
    w.server
        .log
        .iter()
        .map(|r| {
            let what = if r.path == AUTH {
                "auth".to_string()
            } else if r.path.contains("/inventory/") {
                "inventory".into()
            } else if r.path.contains("/next") {
                if r.path.contains("/v2/") {
                    "next-v2".into()
                } else {
                    "next-v1".into()
                }
            } else if r.path.ends_with("/log") {
                "log".into()
            } else {
                format!("status:{}", r.body.split('"').nth(3).unwrap_or("?"))
            };
            format!(
                "{} {what} {}",
                r.method.as_str(),
                r.status.map_or("-".into(), |s| s.to_string())
            )
        })
        .collect()
}

#[test]
fn managed_success_through_a_reboot() {
    let w = managed(|_| {});
    assert_eq!(
        w.server.statuses("d1"),
        [
            "downloading",
            "installing",
            "rebooting",
            "installing",
            "success"
        ]
    );
    assert_eq!(w.server.deployment("d1").finals(), ["success"]);
    assert!(w.server.deployment("d1").logs.is_empty());
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::CommitBoot]);
    assert_eq!(w.running, B);
    assert_eq!(
        w.persisted(),
        [
            "Downloading",
            "Installed",
            "Rebooting",
            "Rebooting",
            "Committing",
            "Reporting(success)",
            "Idle"
        ]
    );
    assert_eq!(
        w.scripts_run(),
        [
            "Download_Enter",
            "Download_Leave",
            "ArtifactInstall_Enter",
            "ArtifactInstall_Leave",
            "ArtifactReboot_Enter",
            "ArtifactReboot_Leave",
            "ArtifactCommit_Enter",
            "ArtifactCommit_Leave",
        ]
    );
    // One authentication per daemon life.
    assert_eq!(w.server.auth_count(), 2);
    let mut w = w;
    w.check_at_rest();
    assert_eq!(w.record().installed.artifact_name.as_str(), "sim-a");
}

/// Two deployments in a row: A -> B -> A.
#[test]
fn managed_two_deployments() {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.deploy("d1", "sim-a");
    w.run_managed(&mut buffers);
    w.check_at_rest();
    w.server.deploy("d2", "sim-b");
    w.run_managed(&mut buffers);
    w.check_at_rest();
    assert_eq!(w.running, A);
    assert_eq!(w.running_image().as_deref(), Some("sim-b"));
    assert_eq!(w.server.deployment("d2").finals(), ["success"]);
}

/// A failing script before the reboot: failure reported, the log uploaded,
/// the env as it was (before the switch) or rolled back (after it). Past
/// `Download_Leave` the reference's daemon goes through its rollback
/// reboot (tests/fixtures/scripts/install-fails.txt): so does the agent,
/// with the failure scripts after it.
#[test]
fn managed_failure_before_the_reboot() {
    for (group, phase, switched) in [
        (G::Download, P::Enter, false),
        (G::Download, P::Leave, false),
        (G::ArtifactInstall, P::Enter, false),
        (G::ArtifactInstall, P::Leave, true),
        (G::ArtifactReboot, P::Enter, true),
    ] {
        let mut w = managed(|w| {
            w.scripts.insert((group, phase), Script::Fail);
        });
        let d = w.server.deployment("d1").clone();
        assert_eq!(d.finals(), ["failure"], "{group:?} {phase:?}");
        assert_eq!(
            d.logs.len(),
            1,
            "{group:?} {phase:?}: the deployment log was uploaded once"
        );
        assert!(d.logs[0].contains("script exited 1"), "{}", d.logs[0]);
        if switched {
            assert_eq!(
                w.env_writes(),
                [Ev::SetTrial(B), Ev::RollBack(A)],
                "{group:?} {phase:?}"
            );
        } else {
            assert!(w.env_writes().is_empty(), "{group:?} {phase:?}");
        }
        let rollback_reboot = group != G::Download;
        assert_eq!(
            w.trace.contains(&Ev::Reboot),
            rollback_reboot,
            "{group:?} {phase:?}"
        );
        if rollback_reboot {
            let ran = w.scripts_run();
            let at = |name: &str| ran.iter().position(|s| s == name);
            assert!(
                at("ArtifactRollback_Leave") < at("ArtifactRollbackReboot_Enter")
                    && at("ArtifactRollbackReboot_Enter") < at("ArtifactRollbackReboot_Leave")
                    && at("ArtifactRollbackReboot_Leave") < at("ArtifactFailure_Enter")
                    && at("ArtifactRollback_Leave").is_some(),
                "{group:?} {phase:?}: {ran:?}"
            );
        }
        assert_eq!(w.running, A);
        w.check_at_rest();
        let last = w.server.statuses("d1");
        assert_eq!(last.last().map(String::as_str), Some("failure"));
    }
}

/// A failing `ArtifactCommit_Enter` on the new system: roll back, reboot
/// into the old slot, report failure from there.
#[test]
fn managed_commit_enter_fails_after_the_reboot() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactCommit, P::Enter), Script::Fail);
    });
    assert_eq!(
        w.server.statuses("d1"),
        [
            "downloading",
            "installing",
            "rebooting",
            "installing",
            "failure"
        ]
    );
    // Rolled back by the reboot: U-Boot falls back from the counted trial.
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    assert!(w.trace.contains(&Ev::Boot {
        part: A,
        fallback: true
    }));
    assert_eq!(w.running, A);
    assert_eq!(w.server.deployment("d1").logs.len(), 1);
    w.check_at_rest();
}

/// `ArtifactCommit_Leave` fails: too late to undo; success.
#[test]
fn managed_commit_leave_fails() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactCommit, P::Leave), Script::Fail);
    });
    assert_eq!(w.server.deployment("d1").finals(), ["success"]);
    assert_eq!(w.running, B);
    w.check_at_rest();
}

/// The trial slot does not come up: U-Boot falls back; failure reported,
/// nothing committed.
#[test]
fn managed_bootloader_fallback() {
    let mut w = managed(|w| w.trial_boot_fails = true);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "rebooting", "failure"]
    );
    assert!(!w.env_writes().contains(&Ev::CommitBoot));
    assert!(w.trace.contains(&Ev::Boot {
        part: A,
        fallback: true
    }));
    assert_eq!(w.running, A);
    w.check_at_rest();
    assert_eq!(w.record().installed.artifact_name.as_str(), FACTORY);
}

/// The server aborts the deployment (409 on a status report).
#[test]
fn managed_abort() {
    // Before the env switch: nothing to undo.
    let mut w = managed(|w| w.server.fault(On::Status(Some("installing")), Resp::Abort));
    assert!(w.env_writes().is_empty());
    assert!(w.server.deployment("d1").aborted);
    assert_eq!(w.running, A);
    w.check_at_rest();
    // At the `rebooting` report: the env was switched; rolled back, and
    // the rollback reboot as the reference's daemon does.
    let mut w = managed(|w| w.server.fault(On::Status(Some("rebooting")), Resp::Abort));
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::RollBack(A)]);
    assert!(w.trace.contains(&Ev::Reboot));
    assert_eq!(w.running, A);
    w.check_at_rest();
    // On the new system, before the commit: rolled back and rebooted.
    let mut w = managed(|w| {
        w.server
            .fault_after(On::Status(Some("installing")), 1, Resp::Abort)
    });
    // Rolled back by the reboot: U-Boot falls back from the counted trial.
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    assert!(w.trace.contains(&Ev::Boot {
        part: A,
        fallback: true
    }));
    assert_eq!(w.running, A);
    w.check_at_rest();
}

/// The JWT expires mid-deployment: one re-authentication, no other.
#[test]
fn managed_401_mid_deployment() {
    let w = managed(|w| {
        w.server
            .fault(On::Status(Some("installing")), Resp::ExpireJwt)
    });
    assert_eq!(
        w.server.statuses("d1"),
        [
            "downloading",
            "installing",
            "rebooting",
            "installing",
            "success"
        ]
    );
    // First life: the first one and the re-authentication; second life: one.
    assert_eq!(w.server.auth_count(), 3, "{:#?}", requests(&w));
    let log = requests(&w);
    let at = log
        .iter()
        .position(|r| r == "PUT status:installing 401")
        .unwrap();
    assert_eq!(log[at + 1], "POST auth 200");
    assert_eq!(log[at + 2], "PUT status:installing 204");
    // The retry carries the new token.
    let sent = &w.server.log;
    assert_ne!(sent[at].bearer, sent[at + 2].bearer);
    assert_eq!(sent[at + 2].bearer, "jwt-2");
    let mut w = w;
    w.check_at_rest();
}

/// A server without the v2 update check: one 404, then v1 only.
#[test]
fn managed_v2_404_falls_back_to_v1() {
    let mut w = managed(|w| w.server.v1_only = true);
    let log = requests(&w);
    let v2 = log.iter().filter(|r| r.contains("next-v2")).count();
    let v1 = log.iter().filter(|r| r.contains("next-v1")).count();
    // One 404 per daemon life, then v1 (the update check after the
    // deployment included).
    assert_eq!(v2, 2, "{log:#?}");
    assert!(v1 >= 2, "{log:#?}");
    assert!(log
        .iter()
        .all(|r| !r.contains("next-v1") || r.starts_with("GET")));
    assert_eq!(w.server.deployment("d1").finals(), ["success"]);
    w.check_at_rest();
}

/// The download drops twice; the agent resumes from the byte it reached.
#[test]
fn managed_download_resumed() {
    let w = managed(|w| {
        w.chunk = 500;
        w.drops = [1200, 1800].into();
    });
    let downloads: Vec<(u64, u64, &str)> = w
        .trace
        .iter()
        .filter_map(|e| match e {
            Ev::Download { from, fed, end } => Some((*from, *fed, *end)),
            _ => None,
        })
        .collect();
    let total = fixture("sim-a.mender").len() as u64;
    assert_eq!(
        downloads,
        [
            (0, 1200, "dropped"),
            (1200, 1800, "dropped"),
            (3000, total - 3000, "complete")
        ]
    );
    assert_eq!(w.server.deployment("d1").finals(), ["success"]);
    let mut w = w;
    w.check_at_rest();
}

/// The standalone download drops: resumed the same way.
#[test]
fn standalone_download_resumed() {
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.drops = [1000, 10].into();
    let got = w.run_command(&mut buffers, Command::Install { uri: SIM_A });
    assert_eq!(completion(got), Completion::Installed);
    let froms: Vec<u64> = w
        .trace
        .iter()
        .filter_map(|e| match e {
            Ev::Download { from, .. } => Some(*from),
            _ => None,
        })
        .collect();
    assert_eq!(froms, [0, 1000, 1010]);
}

/// A daemon that keeps crashing inside a deployment: past 28 state writes
/// the loop breaker fails it (rolled back, failure reported).
#[test]
fn managed_loop_breaker() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactReboot, P::Leave), Script::Crash);
    });
    let d = w.server.deployment("d1").clone();
    assert_eq!(d.finals(), ["failure"], "{:?}", d.statuses);
    assert!(!w.env_writes().contains(&Ev::CommitBoot));
    assert!(w.record().store_count == 0);
    // The loop breaker counted every start.
    let starts = w
        .trace
        .iter()
        .filter(|e| matches!(e, Ev::Cut(c) if c.starts_with("crash")))
        .count();
    assert!((24..=28).contains(&starts), "{starts} crashes");
    assert_eq!(w.running, A);
    w.check_at_rest();
}

#[test]
fn managed_no_deployment_idles() {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    let mut agent = w.start(&mut buffers);
    let end = w.now.after(24 * 3600 * 1000 + 1000);
    w.drive(&mut agent, |w, _| w.now >= end);
    drop(agent);
    let log = requests(&w);
    // Inventory every 8 h (4 in 24 h incl. the first), next every 30 min.
    assert_eq!(log.iter().filter(|r| r.contains("inventory")).count(), 4);
    assert_eq!(log.iter().filter(|r| r.contains("next")).count(), 49);
    assert_eq!(w.server.auth_count(), 1);
    assert_eq!(w.record().step, UpdateStep::Idle);
    assert!(w.server.log.iter().all(|r| r.method != Method::Patch));
}

/// `Stop` (SIGTERM) while the download waits to resume: the agent exits;
/// the next start reports the interrupted deployment as failed.
#[test]
fn managed_stop_during_the_download() {
    use otalite::agent::Command;
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.deploy("d1", "sim-a");
    w.drops = [1000].into();
    let mut agent = w.start(&mut buffers);
    let stop = w.drive(&mut agent, |w, _| {
        w.trace
            .iter()
            .any(|e| matches!(e, Ev::Download { end: "dropped", .. }))
    });
    assert_eq!(stop, Stop::Idle);
    agent.handle_command(w.now, Command::Stop).unwrap();
    let stop = w.drive(&mut agent, |_, _| false);
    assert_eq!(stop, Stop::Exited(false, String::new()));
    assert!(agent.has_exited());
    drop(agent);
    assert!(matches!(w.record().step, UpdateStep::Downloading(_)));
    w.run_managed(&mut buffers);
    assert_eq!(w.server.statuses("d1"), ["downloading", "failure"]);
    assert!(w.env_writes().is_empty());
    w.check_at_rest();
}
