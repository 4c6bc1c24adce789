//! Power cuts at every persisted step (before and after it takes
//! effect), every boot-env write (before and after), every slot-write
//! offset and before every action, for standalone and managed flows; then
//! the device boots (U-Boot's `bootlimit=1` rule), a new agent starts from
//! the persisted record and the env as U-Boot left it, and the flow goes
//! on (standalone: the user re-runs the command; managed: the daemon
//! restarts) until the device is at rest. The invariants are checked
//! after every run; double cuts (a second cut during the recovery) too.

use crate::harness::*;
use otalite::agent::{Command, ScriptGroup as G, ScriptPhase as P};
use std::time::Instant as Clock;

/// A standalone session: what the user does.
#[derive(Clone, Copy, Debug)]
enum Verb {
    Install(&'static str),
    Commit,
    Rollback,
    Reboot,
}

#[derive(Clone, Copy, Debug)]
enum Flow {
    Standalone(&'static [Verb]),
    /// Managed with a deployment of sim-a and this script failing; the
    /// host can (`true`) or cannot prove the running slot.
    Managed(Option<(G, P)>, bool),
    /// Managed, and the trial slot's system does not come up.
    ManagedFallback,
}

const INSTALL_COMMIT: &[Verb] = &[
    Verb::Install("/data/sim-a.mender"),
    Verb::Reboot,
    Verb::Commit,
    Verb::Reboot,
];
const INSTALL_ROLLBACK: &[Verb] = &[
    Verb::Install("/data/sim-a.mender"),
    Verb::Reboot,
    Verb::Rollback,
    Verb::Reboot,
];

/// What a run ended with (for the "progress is never lost" checks).
struct Run {
    world: World,
}

fn run(flow: Flow, cuts: &[Cut], buffers: &mut Buffers) -> Run {
    let mut w = match flow {
        Flow::Standalone(_) => World::standalone(),
        Flow::Managed(script, root_device) => {
            let mut w = World::managed();
            w.root_device_known = root_device;
            w.server.deploy("d1", "sim-a");
            if let Some(script) = script {
                w.scripts.insert(script, Script::Fail);
            }
            w
        }
        Flow::ManagedFallback => {
            let mut w = World::managed();
            w.server.deploy("d1", "sim-a");
            w.trial_boot_fails = true;
            w
        }
    };
    let mut cuts = cuts.iter().copied();
    w.cut = cuts.next();
    w.more_cuts = cuts.collect();
    match flow {
        Flow::Standalone(verbs) => {
            let mut i = 0;
            let mut lives = 0;
            while i < verbs.len() {
                lives += 1;
                assert!(lives < 20, "{}", w.tail(40));
                let command = match verbs[i] {
                    Verb::Reboot => {
                        w.power_on();
                        i += 1;
                        continue;
                    }
                    Verb::Install(uri) => Command::Install { uri },
                    Verb::Commit => Command::Commit,
                    Verb::Rollback => Command::Rollback,
                };
                // A power cut: the user runs the same command again.
                if w.run_command(buffers, command).is_some() {
                    i += 1;
                }
            }
        }
        Flow::Managed(..) | Flow::ManagedFallback => {
            w.run_managed(buffers);
        }
    }
    Run { world: w }
}

/// The checks after every run.
fn check(flow: Flow, clean: &World, r: &mut Run, what: &str) {
    let w = &mut r.world;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.check_at_rest()));
    if let Err(e) = result {
        panic!(
            "{what}: {}",
            e.downcast_ref::<String>().cloned().unwrap_or_default()
        );
    }
    let commit_done = w.trace.iter().position(|e| *e == Ev::CommitBoot);
    // Once the commit reached the env, the new image stays.
    if commit_done.is_some() {
        assert_eq!(
            w.running_image().as_deref(),
            Some("sim-a"),
            "{what}: committed, then lost\n{}",
            w.tail(60)
        );
    }
    if let Flow::Managed(..) | Flow::ManagedFallback = flow {
        let d = w.server.deployment("d1").clone();
        let finals = d.finals();
        assert!(!finals.is_empty(), "{what}: no final report");
        if finals.len() > 1 {
            // At-least-once: only a cut or crash between the delivery
            // and the persisted Idle sends it again.
            let delivered = w
                .trace
                .iter()
                .position(|e| {
                    matches!(e, Ev::Request { path, .. } if path.ends_with("/status"))
                        && is_final(e, w)
                })
                .expect("a final report in the trace");
            let idle = w.trace[delivered..]
                .iter()
                .position(|e| *e == Ev::Persist("Idle".into()))
                .map_or(w.trace.len(), |i| i + delivered);
            assert!(
                w.trace[delivered..idle]
                    .iter()
                    .any(|e| matches!(e, Ev::Cut(_))),
                "{what}: {} final reports without a cut in between: {:?}\n{}",
                finals.len(),
                d.statuses,
                w.tail(60)
            );
        }
        // The clean run's outcome, unless the cut changed it: a failure
        // flow never succeeds.
        let clean_final = clean.server.deployment("d1").finals()[0];
        if clean_final == "failure" {
            assert_eq!(finals[0], "failure", "{what}");
        }
    }
}

/// The trace entry `e` is the first final status report (`success` or
/// `failure`) the server received.
fn is_final(e: &Ev, w: &World) -> bool {
    let Ev::Request {
        path,
        status: Some(_),
        ..
    } = e
    else {
        return false;
    };
    // Match the request log entry with the same path in order: the
    // server's log keeps the bodies.
    let _ = path;
    let index = w
        .trace
        .iter()
        .take_while(|x| !std::ptr::eq(*x, e))
        .filter(|x| matches!(x, Ev::Request { .. }))
        .count();
    let body = &w.server.log[index].body;
    body.contains("\"success\"") || body.contains("\"failure\"")
}

fn flows() -> Vec<(&'static str, Flow)> {
    vec![
        (
            "standalone install+commit",
            Flow::Standalone(INSTALL_COMMIT),
        ),
        (
            "standalone install+rollback",
            Flow::Standalone(INSTALL_ROLLBACK),
        ),
        ("managed success", Flow::Managed(None, true)),
        (
            "managed success, root device unknown",
            Flow::Managed(None, false),
        ),
        (
            "managed install-leave failure",
            Flow::Managed(Some((G::ArtifactInstall, P::Leave)), true),
        ),
        (
            "managed commit-enter failure",
            Flow::Managed(Some((G::ArtifactCommit, P::Enter)), true),
        ),
        ("managed bootloader fallback", Flow::ManagedFallback),
    ]
}

#[test]
fn power_cuts_everywhere() {
    let started = Clock::now();
    let mut buffers = Buffers::default();
    let mut total = 0u32;
    let byte_step = if cfg!(debug_assertions) { 13 } else { 1 };
    for (name, flow) in flows() {
        let clean = run(flow, &[], &mut buffers).world;
        let effects = clean.effects;
        let actions = clean.actions;
        let written: usize = clean.slots.iter().map(|s| s.bytes_written).sum();
        let mut points = Vec::new();
        for n in 0..effects {
            for after in [false, true] {
                points.push(vec![Cut::Effect { n, after }]);
            }
        }
        for n in (0..=written).step_by(byte_step) {
            points.push(vec![Cut::SlotBytes(n)]);
        }
        for n in 0..actions {
            points.push(vec![Cut::Action(n)]);
            points.push(vec![Cut::Crash(n)]);
        }
        // Double cuts: a second one during the recovery.
        for n in 0..effects {
            for after in [false, true] {
                for m in 0..8 {
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
        let count = points.len();
        let mut fired = [0u32; 3];
        for cuts in points {
            let mut r = run(flow, &cuts, &mut buffers);
            let what = format!("{name}, cuts {cuts:?}");
            assert!(r.world.cuts_fired >= 1, "{what}: the cut did not fire");
            fired[r.world.cuts_fired as usize] += 1;
            check(flow, &clean, &mut r, &what);
        }
        assert!(fired[2] > 0, "{name}: no double cut fired");
        println!(
            "power cuts: {name}: {count} runs, {} with two cuts ({effects} effects, {written} slot bytes, {actions} actions in the clean run)",
            fired[2]
        );
        total += count as u32;
    }
    println!("power cuts: {total} runs in {:.2?}", started.elapsed());
}
