//! Named regressions: each agent bug the simulation found, as the flow
//! that showed it.

use crate::harness::*;
use crate::scenarios::{managed, requests};
use otalite::agent::{ScriptGroup as G, ScriptPhase as P};

/// Inventory `PUT` answers 405: `PATCH` from then on. The agent reset
/// the PATCH choice at every call, so every inventory round cost a 405.
#[test]
fn regression_inventory_405_patch_is_remembered() {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.patch_only = true;
    let mut agent = w.start(&mut buffers);
    // Two inventory rounds (the interval is 8 h).
    let end = w.now.after(TIMING.inventory_poll + 1000);
    w.drive(&mut agent, |w, _| w.now >= end);
    drop(agent);
    let inventory: Vec<String> = requests(&w)
        .into_iter()
        .filter(|r| r.contains("inventory"))
        .collect();
    assert_eq!(
        inventory,
        [
            "PUT inventory 405",
            "PATCH inventory 200",
            "PATCH inventory 200"
        ]
    );
    assert_eq!(w.server.inventories, 2);
}

/// The power goes after the env switch, before the reboot: U-Boot boots
/// the trial slot. The start rolled the env back and reported failure
/// without rebooting, so the new image kept running with the old image's
/// name installed and the env pointing elsewhere (until some reboot).
/// Now it reboots into the old slot and reports from there.
#[test]
fn regression_rollback_at_start_reboots_when_the_trial_runs() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactInstall, P::Leave), Script::PowerCut);
    });
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "failure"]
    );
    // Rolled back by the reboot: U-Boot falls back from the counted trial.
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    assert!(w.trace.contains(&Ev::Boot {
        part: A,
        fallback: true
    }));
    assert_eq!(w.running, A);
    assert!(w.trace.contains(&Ev::Reboot));
    w.check_at_rest();
}

/// The same through the loop breaker: a daemon that crashes on the new
/// system in every start fails the deployment after 28 state writes; it
/// must also reboot into the old slot.
#[test]
fn regression_loop_breaker_reboots_when_the_trial_runs() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactCommit, P::Enter), Script::Crash);
    });
    assert_eq!(w.server.deployment("d1").finals(), ["failure"]);
    assert_eq!(w.running, A);
    w.check_at_rest();
}

/// `ArtifactReboot_Leave` fails on the new system. It ran as an
/// ignore-errors op, so the failure was dropped and the update committed
/// and reported success. Like the other Enter/Leave scripts (and the
/// reference), a failure now rolls back, reboots into the old slot and
/// reports failure.
#[test]
fn regression_reboot_leave_failure_rolls_back() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactReboot, P::Leave), Script::Fail);
    });
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "rebooting", "failure"]
    );
    // Rolled back by the reboot: U-Boot falls back from the counted trial.
    assert_eq!(w.env_writes(), [Ev::SetTrial(B)]);
    assert!(w.trace.contains(&Ev::Boot {
        part: A,
        fallback: true
    }));
    assert!(w
        .scripts_run()
        .contains(&"ArtifactReboot_Error".to_string()));
    assert!(w.server.deployment("d1").logs[0].contains("ArtifactReboot_Leave"));
    assert_eq!(w.running, A);
    w.check_at_rest();
}

/// The daemon is restarted after `Rebooting` was persisted but before the
/// reboot happened (here: killed in `ArtifactReboot_Enter`), on a host that
/// cannot prove the running slot from the root device. The recovery took
/// `mender_boot_part` = trial with `upgrade_available=1` as "the trial
/// booted", committed the env and reported success while the old system
/// ran; U-Boot's `bootcount` (0: the trial never booted) tells them apart.
#[test]
fn regression_restart_before_the_reboot_does_not_commit() {
    let mut w = managed(|w| {
        w.root_device_known = false;
        w.scripts
            .insert((G::ArtifactReboot, P::Enter), Script::CrashOnce);
    });
    assert_eq!(w.server.deployment("d1").finals(), ["failure"]);
    assert!(!w.env_writes().contains(&Ev::CommitBoot));
    assert_eq!(w.running, A);
    w.check_at_rest();
}

/// Standalone `commit` right after `install`, without the reboot, on a
/// host that cannot prove the running slot from the root device: the
/// reference commits (the user may commit before the reboot on purpose),
/// and the standalone verbs are a drop-in, so otalite commits too. With
/// the root device as proof it refuses (`standalone_install_commit`).
#[test]
fn regression_standalone_commit_without_the_reboot_follows_the_reference() {
    use otalite::agent::{Command, Completion};
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    w.root_device_known = false;
    let got = w.run_command(
        &mut buffers,
        Command::Install {
            uri: "/data/sim-a.mender",
        },
    );
    assert_eq!(got.unwrap().0, Completion::Installed);
    let got = w.run_command(&mut buffers, Command::Commit);
    assert_eq!(got.unwrap().0, Completion::Committed);
    assert_eq!(w.env_writes(), [Ev::SetTrial(B), Ev::CommitBoot]);
}

/// `ArtifactCommit_Enter` fails on the new system: the agent rolls the env
/// back, persists the failure and reboots into the old slot. A daemon
/// restart in that window (here: killed in `ArtifactRollbackReboot_Enter`)
/// found `Reporting(failure)` and sent it, but never rebooted: the new
/// image kept running under the old name with the env pointing at the old
/// slot, and the next update would write the slot the env boots.
#[test]
fn regression_restart_before_the_rollback_reboot() {
    let mut w = managed(|w| {
        w.scripts
            .insert((G::ArtifactCommit, P::Enter), Script::Fail);
        w.scripts
            .insert((G::ArtifactRollbackReboot, P::Enter), Script::CrashOnce);
    });
    assert_eq!(w.server.deployment("d1").finals(), ["failure"]);
    assert_eq!(w.running, A);
    w.check_at_rest();
}

/// Standalone: install, reboot, rollback, and install again before the
/// reboot the rollback asks for. The running (trial) slot is B, the env
/// boots A next; the agent wrote the new image into A, the slot the env
/// boots, destroying the committed image (a power cut mid-write would
/// leave nothing bootable). Now it refuses until the reboot.
#[test]
fn regression_install_after_rollback_before_its_reboot() {
    use otalite::agent::{Command, Completion};
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    let a = Command::Install {
        uri: "/data/sim-a.mender",
    };
    assert_eq!(
        w.run_command(&mut buffers, a).unwrap().0,
        Completion::Installed
    );
    w.power_on();
    let got = w.run_command(&mut buffers, Command::Rollback);
    assert_eq!(got.unwrap().0, Completion::RolledBack);
    let b = Command::Install {
        uri: "/data/sim-b.mender",
    };
    assert_eq!(
        w.run_command(&mut buffers, b).unwrap().0,
        Completion::Failed
    );
    assert_eq!(w.image_in(A).as_deref(), Some(FACTORY));
    w.power_on();
    w.check_at_rest();
    assert_eq!(
        w.run_command(&mut buffers, b).unwrap().0,
        Completion::Installed
    );
}

/// Standalone: the power goes during `rollback` (after `RollingBack` was
/// persisted, before the env write), and U-Boot boots the untried trial.
/// The next `install` finished the rollback (env -> the old slot) and then
/// decided where to write from the env as read at the start: it wrote the
/// slot the env had just been pointed at. The agent now keeps its view of
/// the env up to date after its own writes.
#[test]
fn regression_install_after_an_interrupted_rollback() {
    use otalite::agent::{Command, Completion};
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    let a = Command::Install {
        uri: "/data/sim-a.mender",
    };
    assert_eq!(
        w.run_command(&mut buffers, a).unwrap().0,
        Completion::Installed
    );
    w.cut = Some(Cut::Effect {
        n: w.effects,
        after: true,
    });
    assert_eq!(w.run_command(&mut buffers, Command::Rollback), None);
    assert_eq!(w.running, B);
    let b = Command::Install {
        uri: "/data/sim-b.mender",
    };
    assert_eq!(
        w.run_command(&mut buffers, b).unwrap().0,
        Completion::Failed
    );
    assert_eq!(w.image_in(A).as_deref(), Some(FACTORY));
    w.power_on();
    assert_eq!(w.running, A);
    w.check_at_rest();
}
