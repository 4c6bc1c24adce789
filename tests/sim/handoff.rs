//! Hand-off mode (the Mender Python client's contract,
//! `src/agent/handoff.rs`): the daemon saves the artifact to a file,
//! writes the lock and starts an installer it does not watch; the
//! installer reports through the one-shot `report` role (a second agent
//! against the same server, lock and deployment log) and removes the lock.
//! Named scenarios first, then power cuts at every persisted write, lock
//! write and action boundary of both agents.

use crate::harness::*;
use crate::scenarios::requests;
use otalite::agent::handoff::LOCK_POLL_MS;
use otalite::agent::Command;
use std::time::Instant as Clock;

/// How long the simulated installer takes (more than one lock poll).
const INSTALL_MS: u64 = 150_000;

fn installer(success: bool) -> Option<Installer> {
    Some(Installer {
        new_name: "sim-a".into(),
        success,
        after: Some(INSTALL_MS),
    })
}

fn hand_off(installer: Option<Installer>, setup: impl FnOnce(&mut World)) -> World {
    let mut buffers = Buffers::default();
    let mut w = World::hand_off(installer);
    w.server.deploy("d1", "sim-a");
    setup(&mut w);
    w.run_hand_off(&mut buffers);
    w
}

/// The inventory bodies the server received after trace entry `from`.
fn inventories_after(w: &World, what: &str) -> Vec<String> {
    let at = w
        .trace
        .iter()
        .position(|e| *e == Ev::HandOff(what.into()))
        .unwrap_or_else(|| panic!("no {what}"));
    let skipped = w.trace[..at]
        .iter()
        .filter(|e| matches!(e, Ev::Request { .. }))
        .count();
    w.server.log[skipped..]
        .iter()
        .filter(|r| r.path.contains("/inventory/"))
        .map(|r| r.body.clone())
        .collect()
}

#[test]
fn hand_off_success() {
    let w = hand_off(installer(true), |_| {});
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
    assert!(w.server.deployment("d1").logs.is_empty());
    assert_eq!(
        w.persisted(),
        ["Downloading", "HandingOff", "HandedOff", "Idle"]
    );
    let total = fixture("sim-a.mender").len();
    let h = w.hand_off.as_ref().unwrap();
    assert_eq!(h.starts, ["d1"]);
    assert_eq!(h.file.len(), total);
    assert_eq!((h.lock_writes, h.releases), (1, 1));
    assert_eq!(
        w.hand_offs(),
        [
            "check free factory".to_string(),
            format!("save 0+{total} complete"),
            "lock d1".into(),
            "start d1".into(),
            "check locked d1".into(),
            "check locked d1".into(),
            // The installer: the report agent looks at the lock first.
            "check locked d1".into(),
            "release".into(),
            "report Exited(false, \"reported success for deployment d1\")".into(),
            // Free: idle, the inventory at once; then the update check
            // when it is due, after a look at the lock.
            "check free sim-a".into(),
            "check free sim-a".into(),
        ]
    );
    // The inventory after the release names what the installer installed.
    let inventories = inventories_after(&w, "release");
    assert!(!inventories.is_empty(), "{:#?}", requests(&w));
    assert!(
        inventories.iter().all(|b| b.contains("sim-a")),
        "{inventories:?}"
    );
    assert_eq!(w.record().installed.artifact_name.as_str(), "sim-a");
    w.check_hand_off_at_rest();
}

/// `report --failure`: the installer's log and the daemon's deployment log
/// are uploaded with the status; `artifact_info` keeps the old name.
#[test]
fn hand_off_failure_uploads_the_log() {
    let w = hand_off(installer(false), |_| {});
    assert_eq!(w.server.statuses("d1"), ["downloading", "failure"]);
    let d = w.server.deployment("d1");
    assert_eq!(d.logs.len(), 1);
    assert!(
        d.logs[0].contains("handed the artifact to the installer"),
        "{}",
        d.logs[0]
    );
    assert!(
        d.logs[0].contains("installer: sim-a failed"),
        "{}",
        d.logs[0]
    );
    assert_eq!(
        w.persisted(),
        ["Downloading", "HandingOff", "HandedOff", "Idle"]
    );
    assert_eq!(w.record().installed.artifact_name.as_str(), FACTORY);
    assert!(inventories_after(&w, "release")
        .iter()
        .all(|b| b.contains(FACTORY)));
    w.check_hand_off_at_rest();
}

/// No installer program: `Start` fails before any lock; `failure` with the
/// reason in the log, and the daemon polls on.
#[test]
fn hand_off_without_an_installer() {
    let w = hand_off(None, |_| {});
    assert_eq!(w.server.statuses("d1"), ["downloading", "failure"]);
    let h = w.hand_off.as_ref().unwrap();
    assert_eq!((h.lock_writes, h.starts.len()), (0, 0));
    assert_eq!(h.lock, None);
    let d = w.server.deployment("d1");
    assert_eq!(d.logs.len(), 1);
    assert!(
        d.logs[0].contains("cannot start the installer"),
        "{}",
        d.logs[0]
    );
    assert_eq!(
        w.persisted(),
        ["Downloading", "HandingOff", "Reporting(failure)", "Idle"]
    );
    // The inventory right after the report, after a look at the lock
    // (regression: the look of the cycle that found the deployment was
    // taken for this one).
    let log = requests(&w);
    assert_eq!(log.last().map(String::as_str), Some("PUT inventory 200"));
    assert_eq!(
        w.hand_offs(),
        [
            "check free factory",
            "save 0+5120 complete",
            "no installer",
            "check free factory"
        ]
    );
    w.check_hand_off_at_rest();
}

/// The download breaks twice with progress: resumed from the file's
/// length, after the download backoff (one unit after progress).
#[test]
fn hand_off_download_resumed() {
    let w = hand_off(installer(true), |w| w.drops = [1200, 1800].into());
    let total = fixture("sim-a.mender").len();
    let saves: Vec<String> = w
        .hand_offs()
        .into_iter()
        .filter(|s| s.starts_with("save"))
        .collect();
    assert_eq!(
        saves,
        [
            "save 0+1200 dropped".to_string(),
            "save resume 1200+1800 dropped".into(),
            format!("save resume 3000+{} complete", total - 3000),
        ]
    );
    let h = w.hand_off.as_ref().unwrap();
    let gaps: Vec<u64> = h.saves.windows(2).map(|p| p[1].0 - p[0].0).collect();
    assert_eq!(gaps, [TIMING.backoff_unit, TIMING.backoff_unit]);
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
    w.check_hand_off_at_rest();

    // Breaks without a byte: from scratch each time, the backoff growing
    // (1, 1, 1, 2 units).
    let w = hand_off(installer(true), |w| w.drops = [0, 0, 0, 0].into());
    let h = w.hand_off.as_ref().unwrap();
    assert!(h.saves.iter().all(|(_, resume)| !resume), "{:?}", h.saves);
    let gaps: Vec<u64> = h
        .saves
        .windows(2)
        .map(|p| (p[1].0 - p[0].0) / 60_000)
        .collect();
    assert_eq!(gaps, [1, 1, 1, 2]);
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
    w.check_hand_off_at_rest();

    // A break after progress, then one without: the second resumes too.
    let w = hand_off(installer(true), |w| w.drops = [1000, 0].into());
    let h = w.hand_off.as_ref().unwrap();
    let resumes: Vec<bool> = h.saves.iter().map(|s| s.1).collect();
    assert_eq!(resumes, [false, true, true]);
    w.check_hand_off_at_rest();
}

/// Drives a hand-off daemon until it waits for a held lock (the
/// installer reports on the test's command).
fn locked(buffers: &mut Buffers) -> (World, otalite::agent::Agent<'_>) {
    let mut w = World::hand_off(Some(Installer {
        after: None,
        ..installer(true).unwrap()
    }));
    w.server.deploy("d1", "sim-a");
    let mut agent = w.start(buffers);
    let stop = w.drive(&mut agent, |w, _| {
        w.hand_off.as_ref().unwrap().lock.is_some()
            && w.persisted().last().map(String::as_str) == Some("HandedOff")
    });
    assert_eq!(stop, Stop::Idle);
    (w, agent)
}

/// While the lock is held the daemon only looks at it, once a minute: no
/// request at all across the update and inventory intervals.
#[test]
fn hand_off_lock_held_means_no_requests() {
    let mut buffers = Buffers::default();
    let (mut w, mut agent) = locked(&mut buffers);
    let sent = w.server.log.len();
    let events = w.trace.len();
    let hours = 9;
    let until = w.now.after(hours * 3_600_000);
    w.drive(&mut agent, |w, _| w.now >= until);
    assert_eq!(w.server.log.len(), sent, "{:#?}", &requests(&w)[sent..]);
    let checks: Vec<&Ev> = w.trace[events..].iter().collect();
    assert!(checks
        .iter()
        .all(|e| **e == Ev::HandOff("check locked d1".into())));
    assert_eq!(checks.len() as u64, hours * 3_600_000 / LOCK_POLL_MS);
    assert_eq!(w.ho().starts, ["d1"]);
    // The installer reports; the next look finds the lock gone.
    assert!(matches!(w.run_installer(), Stop::Exited(false, _)));
    let stop = w.drive(&mut agent, |w, a| w.hand_off_idle(a));
    assert_eq!(stop, Stop::Idle);
    drop(agent);
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
    assert!(inventories_after(&w, "release")
        .iter()
        .all(|b| b.contains("sim-a")));
    w.check_hand_off_at_rest();
}

/// `CheckUpdate` while locked looks at the lock at once (and sends
/// nothing); once the lock is gone it polls at once.
#[test]
fn hand_off_check_update_while_locked() {
    let mut buffers = Buffers::default();
    let (mut w, mut agent) = locked(&mut buffers);
    let sent = w.server.log.len();
    let at = w.now.after(1000);
    w.now = at;
    agent.handle_command(at, Command::CheckUpdate).unwrap();
    let events = w.trace.len();
    assert_eq!(w.step(&mut agent), Stepped::Acted);
    assert_eq!(w.now, at);
    assert_eq!(w.trace[events..], [Ev::HandOff("check locked d1".into())]);
    assert!(matches!(w.step(&mut agent), Stepped::Waited));
    assert_eq!(w.server.log.len(), sent);
    // The installer reports; `CheckUpdate` finds the lock free and polls
    // with no wait.
    assert!(matches!(w.run_installer(), Stop::Exited(false, _)));
    let at = w.now;
    let sent = w.server.log.len();
    agent.handle_command(at, Command::CheckUpdate).unwrap();
    while w.step(&mut agent) == Stepped::Acted {}
    let log = requests(&w);
    assert!(
        log[sent..].iter().any(|r| r.contains("next")),
        "{:#?}",
        &log[sent..]
    );
    let first_next = w
        .trace
        .iter()
        .rposition(|e| matches!(e, Ev::Request { path, .. } if path.contains("/next")));
    let free = w
        .trace
        .iter()
        .rposition(|e| *e == Ev::HandOff("check free sim-a".into()));
    assert!(free < first_next);
    drop(agent);
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
}

/// `Stop` while locked: the agent exits at once, the lock and the
/// `HandedOff` record stay; the next daemon waits for the installer and
/// finishes without another persisted step.
#[test]
fn hand_off_stop_while_locked() {
    let mut buffers = Buffers::default();
    let (mut w, mut agent) = locked(&mut buffers);
    let sent = w.server.log.len();
    let at = w.now;
    agent.handle_command(at, Command::Stop).unwrap();
    let stop = w.drive(&mut agent, |_, _| false);
    assert_eq!(stop, Stop::Exited(false, String::new()));
    assert_eq!(w.now, at);
    assert!(agent.has_exited());
    drop(agent);
    assert_eq!(w.server.log.len(), sent);
    assert_eq!(w.ho().lock.as_deref(), Some("d1"));
    assert_eq!(w.persisted().last().map(String::as_str), Some("HandedOff"));
    // The installer reports a while after the restart.
    let due = w.now.after(3 * LOCK_POLL_MS / 2);
    w.ho().pending.as_mut().unwrap().1 = Some(due);
    w.run_hand_off(&mut buffers);
    assert_eq!(
        w.persisted(),
        ["Downloading", "HandingOff", "HandedOff", "Idle"]
    );
    assert_eq!(w.server.statuses("d1"), ["downloading", "success"]);
    w.check_hand_off_at_rest();
}

// -------------------------------------------------------------------
// Power cuts.

#[derive(Clone, Copy, Debug)]
enum Flow {
    /// The installer reports this.
    Installer(bool),
    /// The download breaks once, then resumes.
    Resumed,
    /// No installer program.
    NoInstaller,
}

fn run(flow: Flow, cuts: &[Cut], buffers: &mut Buffers) -> World {
    let mut w = World::hand_off(match flow {
        Flow::Installer(success) => installer(success),
        Flow::Resumed => installer(true),
        Flow::NoInstaller => None,
    });
    w.server.deploy("d1", "sim-a");
    if let Flow::Resumed = flow {
        w.drops = [2000].into();
    }
    let mut cuts = cuts.iter().copied();
    w.cut = cuts.next();
    w.more_cuts = cuts.collect();
    w.run_hand_off(buffers);
    w
}

/// The invariants after a run with cuts.
fn check(clean: &World, w: &World, what: &str) {
    let result =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.check_hand_off_at_rest()));
    if let Err(e) = result {
        panic!(
            "{what}: {}",
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        );
    }
    let finals = w.server.deployment("d1").finals();
    let clean_final = clean.server.deployment("d1").finals()[0];
    // A cut found the daemon's record at `Downloading`.
    let mut persisted = "Idle";
    let mut in_download = false;
    for e in &w.trace {
        match e {
            Ev::Persist(s) => persisted = s,
            Ev::Cut(_) => in_download |= persisted == "Downloading",
            _ => {}
        }
    }
    let h = w.hand_off.as_ref().unwrap();
    let clean_starts = clean.hand_off.as_ref().unwrap().starts.len();
    if in_download {
        // The documented recovery: a download cut short is a failure.
        assert_eq!(finals, ["failure"], "{what}\n{}", w.tail(40));
        assert!(h.starts.is_empty(), "{what}: the installer started");
    } else {
        assert_eq!(finals, [clean_final], "{what}\n{}", w.tail(40));
        // Started once, also when the cut came before the lock; again only
        // when a cut found the lock of an earlier boot before `HandedOff`.
        assert_eq!(
            h.starts.len(),
            clean_starts + h.restarts as usize,
            "{what}\n{}",
            w.tail(40)
        );
    }
    assert_eq!(h.lock_writes as usize, h.starts.len(), "{what}");
    // Delivered once; a repeat (after a cut before the persisted idle or
    // the lock removal) got the server's 409.
    if h.releases > 1 {
        let statuses = &w.server.deployment("d1").statuses;
        assert!(
            statuses.iter().any(|s| s.ends_with("(409)")),
            "{what}: released twice without a repeated report: {statuses:?}"
        );
    }
}

#[test]
fn hand_off_power_cuts_everywhere() {
    let started = Clock::now();
    let mut buffers = Buffers::default();
    let mut total = 0usize;
    for (name, flow) in [
        ("success", Flow::Installer(true)),
        ("failure", Flow::Installer(false)),
        ("resumed", Flow::Resumed),
        ("no installer", Flow::NoInstaller),
    ] {
        let clean = run(flow, &[], &mut buffers);
        clean.check_hand_off_at_rest();
        let (effects, actions) = (clean.effects, clean.actions);
        let mut points = Vec::new();
        for n in 0..effects {
            for after in [false, true] {
                points.push(vec![Cut::Effect { n, after }]);
                for m in 0..6 {
                    for after2 in [false, true] {
                        points.push(vec![
                            Cut::Effect { n, after },
                            Cut::Effect {
                                n: m,
                                after: after2,
                            },
                        ]);
                    }
                }
            }
        }
        for n in 0..actions {
            points.push(vec![Cut::Action(n)]);
            points.push(vec![Cut::Crash(n)]);
            points.push(vec![Cut::Action(n), Cut::Action(3)]);
        }
        let count = points.len();
        let mut fired = [0usize; 3];
        // Runs where the report agent went down, and where it reported
        // again (a 409) after a cut before the lock removal.
        let (mut report_cut, mut repeated) = (0, 0);
        for cuts in points {
            let w = run(flow, &cuts, &mut buffers);
            let what = format!("{name}, cuts {cuts:?}");
            assert!(w.cuts_fired >= 1, "{what}: the cut did not fire");
            fired[w.cuts_fired as usize] += 1;
            check(&clean, &w, &what);
            report_cut += usize::from(
                w.hand_offs()
                    .iter()
                    .any(|s| s.starts_with("report PowerCut") || s.starts_with("report Crash")),
            );
            repeated += usize::from(
                w.server
                    .deployment("d1")
                    .statuses
                    .iter()
                    .any(|s| s.ends_with("(409)")),
            );
        }
        assert!(fired[2] > 0, "{name}: no double cut fired");
        if let Flow::Installer(_) = flow {
            assert!(
                report_cut > 0 && repeated > 0,
                "{name}: the report side was not cut"
            );
        }
        println!(
            "hand-off power cuts: {name}: {count} runs, {} with two cuts, {report_cut} cutting the report agent, {repeated} reporting again ({effects} effects, {actions} actions in the clean run)",
            fired[2]
        );
        total += count;
    }
    println!(
        "hand-off power cuts: {total} runs in {:.2?}",
        started.elapsed()
    );
}

/// The host's `Start` writes the lock, then starts the installer: a power
/// cut between the two leaves a lock nobody owns. The next start sees the
/// lock of an earlier boot with the hand-off unfinished (`HandingOff`) and
/// starts the installer again, so the deployment still ends.
#[test]
fn hand_off_cut_between_the_lock_and_the_installer() {
    let mut buffers = Buffers::default();
    let mut w = World::hand_off(installer(true));
    w.server.deploy("d1", "sim-a");
    w.ho().cut_before_spawn = true;
    let mut agent = w.start(&mut buffers);
    assert_eq!(w.drive(&mut agent, |_, _| false), Stop::PowerCut);
    drop(agent);
    w.power_on();
    assert_eq!(w.persisted().last().map(String::as_str), Some("HandingOff"));
    w.run_hand_off(&mut buffers);
    let h = w.hand_off.as_ref().unwrap();
    assert_eq!(h.starts, ["d1"]);
    assert_eq!((h.lock_writes, h.restarts), (2, 0));
    assert_eq!(h.lock, None);
    assert_eq!(w.server.deployment("d1").finals(), ["success"]);
}
