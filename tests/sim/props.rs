//! Property tests: random sequences of commands, server answers and
//! faults (dropped downloads, 5xx, 401, 409, failing scripts, restarts
//! and power cuts at random points) against a small model of the
//! expected outcome, with the invariants of a device at rest.
//!
//! The seed is fixed (the suite is deterministic); explore with
//! `PROPTEST_RNG_SEED=<n> PROPTEST_CASES=<n>`.

use crate::harness::*;
use otalite::agent::{Command, Completion, ScriptGroup as G, ScriptPhase as P};
use otalite::store::UpdateStep;
use proptest::prelude::*;

// -------------------------------------------------------------------
// Standalone: the model.

#[derive(Clone, Copy, Debug)]
enum Verb {
    Install(char),
    Commit,
    Rollback,
    Reboot,
}

/// What the model expects of the device.
#[derive(Clone, Debug)]
struct Model {
    /// The committed image.
    committed: String,
    /// An installed, not committed update and whether its trial boot
    /// runs now.
    pending: Option<(String, bool)>,
    /// The record still holds an install the bootloader undid (the next
    /// command discards it).
    stale: bool,
    /// The image the running slot holds.
    running: String,
    /// What the other slot holds.
    other: String,
    /// The env was rolled back while the trial runs: the next reboot
    /// boots the other slot.
    swap_at_reboot: bool,
}

impl Model {
    fn new() -> Self {
        Self {
            committed: FACTORY.into(),
            pending: None,
            stale: false,
            running: FACTORY.into(),
            other: String::new(),
            swap_at_reboot: false,
        }
    }

    /// The expected completion of a command; updates the model.
    fn command(&mut self, verb: Verb, failing: Option<(G, P)>) -> Completion {
        let fails = |g, p| failing == Some((g, p));
        let stale = std::mem::take(&mut self.stale);
        match verb {
            Verb::Install(n) => {
                if self.pending.is_some() || self.swap_at_reboot {
                    // Waiting for a commit / rollback, or for the reboot
                    // of a rollback.
                    return Completion::Failed;
                }
                let name = format!("sim-{n}");
                if fails(G::Download, P::Enter) {
                    return Completion::Failed;
                }
                // The payload reaches the slot once the download starts.
                self.other = name.clone();
                if fails(G::Download, P::Leave)
                    || fails(G::ArtifactInstall, P::Enter)
                    || fails(G::ArtifactInstall, P::Leave)
                {
                    return Completion::Failed;
                }
                self.pending = Some((name, false));
                self.swap_at_reboot = false;
                Completion::Installed
            }
            Verb::Commit => match self.pending.clone() {
                None if stale => Completion::Failed,
                None => Completion::Nothing,
                Some((_, false)) => Completion::Failed,
                Some((name, true)) => {
                    if fails(G::ArtifactCommit, P::Enter) {
                        // Rolled back: the old slot boots next.
                        self.pending = None;
                        self.committed_after_rollback();
                        return Completion::Failed;
                    }
                    self.pending = None;
                    self.committed = name;
                    if fails(G::ArtifactCommit, P::Leave) {
                        Completion::Failed
                    } else {
                        Completion::Committed
                    }
                }
            },
            Verb::Rollback => match self.pending.take() {
                None => Completion::Nothing,
                Some((_, trial_runs)) => {
                    if trial_runs {
                        self.committed_after_rollback();
                    }
                    Completion::RolledBack
                }
            },
            Verb::Reboot => unreachable!(),
        }
    }

    /// The trial runs but the env points back at the old slot: the next
    /// reboot swaps.
    fn committed_after_rollback(&mut self) {
        // (the name: the committed image stays)
        self.swap_at_reboot = true;
    }

    fn reboot(&mut self) {
        if std::mem::take(&mut self.swap_at_reboot) {
            std::mem::swap(&mut self.running, &mut self.other);
            return;
        }
        match self.pending.clone() {
            Some((_, false)) => {
                // The trial boots.
                std::mem::swap(&mut self.running, &mut self.other);
                self.pending.as_mut().unwrap().1 = true;
            }
            Some((_, true)) => {
                // bootcount reached bootlimit: U-Boot falls back.
                std::mem::swap(&mut self.running, &mut self.other);
                self.pending = None;
                self.stale = true;
            }
            None => {}
        }
    }
}

#[derive(Clone, Debug)]
struct StandaloneCase {
    verbs: Vec<Verb>,
    failing: Option<(G, P)>,
    /// A power cut before this action (counted over the whole run).
    cut: Option<u32>,
}

fn verb() -> impl Strategy<Value = Verb> {
    prop_oneof![
        3 => prop_oneof![Just('a'), Just('b')].prop_map(Verb::Install),
        2 => Just(Verb::Commit),
        1 => Just(Verb::Rollback),
        3 => Just(Verb::Reboot),
    ]
}

fn script() -> impl Strategy<Value = (G, P)> {
    prop_oneof![
        Just((G::Download, P::Enter)),
        Just((G::Download, P::Leave)),
        Just((G::ArtifactInstall, P::Enter)),
        Just((G::ArtifactInstall, P::Leave)),
        Just((G::ArtifactCommit, P::Enter)),
        Just((G::ArtifactCommit, P::Leave)),
        Just((G::ArtifactRollback, P::Enter)),
        Just((G::ArtifactFailure, P::Enter)),
        Just((G::ArtifactInstall, P::Error)),
        Just((G::ArtifactReboot, P::Enter)),
        Just((G::ArtifactReboot, P::Leave)),
    ]
}

fn standalone_case() -> impl Strategy<Value = StandaloneCase> {
    (
        proptest::collection::vec(verb(), 1..12),
        proptest::option::weighted(0.3, script()),
        proptest::option::weighted(0.3, 0u32..60),
    )
        .prop_map(|(verbs, failing, cut)| StandaloneCase {
            verbs,
            failing,
            cut,
        })
}

fn run_standalone(case: &StandaloneCase) {
    let mut buffers = Buffers::default();
    let mut w = World::standalone();
    if let Some(script) = case.failing {
        w.scripts.insert(script, Script::Fail);
    }
    w.cut = case.cut.map(Cut::Action);
    let mut model = Some(Model::new());
    for &verb in &case.verbs {
        match verb {
            Verb::Reboot => {
                w.power_on();
                if let Some(m) = &mut model {
                    m.reboot();
                }
            }
            Verb::Install(n) => {
                let uri = format!("/data/sim-{n}.mender");
                let got = w.run_command(&mut buffers, Command::Install { uri: &uri });
                expect(&mut model, &w, verb, got, case.failing);
            }
            Verb::Commit => {
                let got = w.run_command(&mut buffers, Command::Commit);
                expect(&mut model, &w, verb, got, case.failing);
            }
            Verb::Rollback => {
                let got = w.run_command(&mut buffers, Command::Rollback);
                expect(&mut model, &w, verb, got, case.failing);
            }
        }
        if let Some(m) = &model {
            assert_eq!(
                w.running_image().as_deref(),
                Some(m.running.as_str()),
                "running image after {verb:?} (model {m:?})\n{}",
                w.tail(40)
            );
            assert_eq!(
                w.record().installed.artifact_name.as_str(),
                m.committed,
                "installed name after {verb:?}"
            );
        }
    }
    // Settle: reboot, and roll back whatever still waits, as a user would.
    w.cut = None;
    w.power_on();
    if matches!(w.record().step, UpdateStep::Installed(_)) {
        let got = w.run_command(&mut buffers, Command::Rollback);
        assert!(got.is_some());
        w.power_on();
    }
    // The record may still name an install U-Boot undid; any command
    // discards it.
    let _ = w.run_command(&mut buffers, Command::Rollback);
    w.check_at_rest();
}

fn expect(
    model: &mut Option<Model>,
    w: &World,
    verb: Verb,
    got: Option<(Completion, String)>,
    failing: Option<(G, P)>,
) {
    let Some(m) = model else { return };
    let Some((completion, message)) = got else {
        // A power cut: from here on only the invariants hold.
        *model = None;
        return;
    };
    let want = m.command(verb, failing);
    assert_eq!(completion, want, "{verb:?}: {message}\n{}", w.tail(40));
}

// -------------------------------------------------------------------
// Managed: faults against a coarse model.

#[derive(Clone, Debug)]
struct ManagedCase {
    faults: Vec<(On, u32, Resp)>,
    drops: Vec<u64>,
    failing: Option<(G, P)>,
    trial_boot_fails: bool,
    /// Restarts: (crash or power cut, before action n).
    restarts: Vec<(bool, u32)>,
    v1_only: bool,
    patch_only: bool,
    second: bool,
}

fn on() -> impl Strategy<Value = On> {
    prop_oneof![
        Just(On::Auth),
        Just(On::Inventory),
        Just(On::Next),
        Just(On::Status(None)),
        Just(On::Status(Some("downloading"))),
        Just(On::Status(Some("installing"))),
        Just(On::Status(Some("rebooting"))),
        Just(On::Status(Some("success"))),
        Just(On::Status(Some("failure"))),
        Just(On::Log),
    ]
}

fn resp() -> impl Strategy<Value = Resp> {
    prop_oneof![
        3 => prop_oneof![Just(500u16), Just(502), Just(503), Just(401)].prop_map(Resp::Status),
        3 => Just(Resp::Transport),
        2 => Just(Resp::ExpireJwt),
        1 => Just(Resp::Abort),
    ]
}

fn managed_case() -> impl Strategy<Value = ManagedCase> {
    (
        proptest::collection::vec((on(), 0u32..3, resp()), 0..4),
        proptest::collection::vec(1u64..5000, 0..3),
        proptest::option::weighted(0.2, script()),
        proptest::bool::weighted(0.1),
        proptest::collection::vec((any::<bool>(), 0u32..60), 0..3),
        any::<bool>(),
        any::<bool>(),
        proptest::bool::weighted(0.3),
    )
        .prop_map(
            |(faults, drops, failing, trial_boot_fails, restarts, v1_only, patch_only, second)| {
                ManagedCase {
                    faults,
                    drops,
                    failing,
                    trial_boot_fails,
                    restarts,
                    v1_only,
                    patch_only,
                    second,
                }
            },
        )
}

/// What the model expects of deployment d1.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Success,
    Failure,
    /// Aborted on the server, or anything when restarts interfere.
    NotSuccess,
    Either,
}

fn model(case: &ManagedCase) -> Expect {
    let fatal_script = case.failing.is_some_and(|(g, p)| {
        p != P::Error
            && !matches!(g, G::ArtifactFailure | G::ArtifactRollback)
            && (g, p) != (G::ArtifactCommit, P::Leave)
    });
    // Reports before the commit on every path to success (at least):
    // downloading twice, installing, rebooting, installing again.
    let abort = case.faults.iter().any(|(on, skip, resp)| {
        let sent_before_commit = match on {
            On::Status(None) => 5,
            On::Status(Some("downloading" | "installing")) => 2,
            On::Status(Some("rebooting")) => 1,
            _ => 0,
        };
        *resp == Resp::Abort && *skip < sent_before_commit
    }) && case
        .faults
        .iter()
        .filter(|(on, ..)| matches!(on, On::Status(_)))
        .count()
        == 1;
    // (Another fault on the status reports may take the request the abort
    // waits for.)
    let abort_possible = case.faults.iter().any(|(_, _, resp)| *resp == Resp::Abort);
    let transient = case.faults.len();
    // (A restart can skip the aborted report too: a power cut before the
    // `rebooting` report reboots into the trial all the same.)
    if abort && case.restarts.is_empty() {
        Expect::NotSuccess
    } else if case.trial_boot_fails || (fatal_script && case.restarts.is_empty()) {
        // (A restart can skip the failing script: a power cut before
        // ArtifactReboot_Enter reboots into the trial all the same.)
        Expect::Failure
    } else if case.restarts.is_empty() && transient <= 3 && !abort_possible {
        Expect::Success
    } else {
        Expect::Either
    }
}

fn run_managed_case(case: &ManagedCase) {
    let mut buffers = Buffers::default();
    let mut w = World::managed();
    w.server.deploy("d1", "sim-a");
    for &(on, skip, resp) in &case.faults {
        w.server.fault_after(on, skip, resp);
    }
    w.drops = case.drops.iter().copied().collect();
    if let Some(script) = case.failing {
        w.scripts.insert(script, Script::Fail);
    }
    w.trial_boot_fails = case.trial_boot_fails;
    w.server.v1_only = case.v1_only;
    w.server.patch_only = case.patch_only;
    let mut restarts = case.restarts.iter().map(
        |&(crash, n)| {
            if crash {
                Cut::Crash(n)
            } else {
                Cut::Action(n)
            }
        },
    );
    w.cut = restarts.next();
    w.more_cuts = restarts.collect();
    w.run_managed(&mut buffers);
    let d = w.server.deployment("d1").clone();
    let expect = model(case);
    // The final report as the device sent it (a 409 to it counts as
    // delivered: the server aborted the deployment meanwhile).
    let finals: Vec<&str> = d
        .statuses
        .iter()
        .map(|s| s.trim_end_matches(" (409)"))
        .filter(|s| matches!(*s, "success" | "failure"))
        .collect();
    match expect {
        Expect::Success => assert_eq!(
            finals.first(),
            Some(&"success"),
            "{:?}\n{}",
            d.statuses,
            w.tail(60)
        ),
        Expect::Failure => assert_eq!(
            finals.first(),
            Some(&"failure"),
            "{:?}\n{}",
            d.statuses,
            w.tail(60)
        ),
        Expect::NotSuccess => assert_ne!(
            finals.first(),
            Some(&"success"),
            "{:?}\n{}",
            d.statuses,
            w.tail(60)
        ),
        Expect::Either => {}
    }
    w.check_at_rest();
    if case.second {
        // The device takes the next deployment (faults are spent).
        w.cut = None;
        w.more_cuts.clear();
        w.server.faults.clear();
        w.scripts.clear();
        w.trial_boot_fails = false;
        let next = if w.running_image().as_deref() == Some("sim-a") {
            "sim-b"
        } else {
            "sim-a"
        };
        w.server.deploy("d2", next);
        w.run_managed(&mut buffers);
        assert_eq!(w.server.deployment("d2").finals(), ["success"]);
        w.check_at_rest();
        assert_eq!(w.running_image().as_deref(), Some(next));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(if cfg!(debug_assertions) { 128 } else { 1024 }),
        failure_persistence: None,
        // Deterministic by default (PROPTEST_RNG_SEED picks another seed).
        rng_seed: match std::env::var("PROPTEST_RNG_SEED") {
            Ok(seed) => proptest::test_runner::RngSeed::Fixed(seed.parse().unwrap_or(0)),
            Err(_) => proptest::test_runner::RngSeed::Fixed(0x0071_a11e),
        },
        ..ProptestConfig::default()
    })]

    #[test]
    fn standalone_sequences(case in standalone_case()) {
        run_standalone(&case);
    }

    #[test]
    fn managed_faults(case in managed_case()) {
        run_managed_case(&case);
    }
}
