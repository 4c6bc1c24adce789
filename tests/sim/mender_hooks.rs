//! Hooks mode (`src/agent/mender_hooks.rs`): upparat's hooks install a
//! Mender server deployment. The simulated device runs the hooks as
//! scripts would (the install hook takes the saved file, the restart hook
//! starts what it installed or reboots into it, the version hook prints
//! what runs); the server sees the Mender statuses. Named scenarios, then
//! power cuts at every persisted write and before every action.

use crate::harness::*;
use otalite::agent::{Hook, HookPolicy, HookSet};
use otalite::store::UpdateStep;
use std::collections::BTreeMap;
use std::time::Instant as Clock;

const RETRY_MS: u64 = 60_000;

fn policy(hooks: HookSet) -> HookPolicy {
    HookPolicy {
        hooks,
        retry_interval_ms: RETRY_MS,
        max_retries: 3,
    }
}

fn hook_set(names: &[Hook]) -> HookSet {
    HookSet {
        version: names.contains(&Hook::Version),
        download: names.contains(&Hook::Download),
        install: names.contains(&Hook::Install),
        restart: names.contains(&Hook::Restart),
        ready: names.contains(&Hook::Ready),
    }
}

fn world(hooks: &[Hook], setup: impl FnOnce(&mut World)) -> World {
    let mut w = World::hooks(policy(hook_set(hooks)));
    w.server.deploy("d1", "sim-a");
    setup(&mut w);
    w
}

fn run(w: &mut World) -> u32 {
    let mut buffers = Buffers::default();
    let lives = w.run_managed(&mut buffers);
    check_at_rest(w);
    lives
}

/// At rest: idle, one final status per deployment, the file gone, the
/// slots and the boot env untouched (the hooks own the device), the
/// installed name the running system's after a success.
fn check_at_rest(w: &World) {
    let tail = || w.tail(60);
    assert_eq!(w.record().step, UpdateStep::Idle, "at rest\n{}", tail());
    assert!(
        w.hand_off.as_ref().unwrap().file.is_empty(),
        "the file is left\n{}",
        tail()
    );
    assert!(w.env_writes().is_empty(), "boot-env writes\n{}", tail());
    let written: usize = w.slots.iter().map(|s| s.bytes_written).sum();
    assert_eq!(written, 0, "slot writes\n{}", tail());
    let h = w.hooks.as_ref().unwrap();
    for d in &w.server.deployments {
        assert_eq!(
            d.finals().len(),
            1,
            "{}: one final status: {:?}\n{}",
            d.id,
            d.statuses,
            tail()
        );
        if d.finals() == ["success"] {
            assert_eq!(h.running, d.artifact_name, "success runs it\n{}", tail());
            assert_eq!(
                w.record().installed.artifact_name.as_str(),
                d.artifact_name,
                "\n{}",
                tail()
            );
        } else {
            assert_eq!(
                w.record().installed.artifact_name.as_str(),
                FACTORY,
                "a failure keeps the name\n{}",
                tail()
            );
        }
    }
    assert!(
        w.violations.is_empty(),
        "violations: {:?}\n{}",
        w.violations,
        tail()
    );
}

#[test]
fn hooks_soft_restart() {
    let mut w = world(&[Hook::Install, Hook::Restart], |_| {});
    assert_eq!(run(&mut w), 1);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "rebooting", "success"]
    );
    assert_eq!(w.hook_events(), ["install exit 0", "restart exit 0"]);
    assert_eq!(
        w.persisted(),
        [
            "Downloading",
            "HandingOff",
            "HandedOff",
            "Reporting(success)",
            "Idle"
        ]
    );
    assert_eq!(
        w.hooks.as_ref().unwrap().calls,
        ["install 0 0 sim-a", "restart 0 0 sim-a"]
    );
}

#[test]
fn hooks_without_restart_hook() {
    let mut w = world(&[Hook::Install], |w| w.hs().install_activates = true);
    run(&mut w);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "success"]
    );
}

#[test]
fn hooks_reboot_then_version_and_ready() {
    let mut w = world(
        &[Hook::Install, Hook::Restart, Hook::Version, Hook::Ready],
        |w| {
            w.hs().scripts.insert(Hook::Restart, vec![HookEnd::Reboot]);
        },
    );
    assert_eq!(run(&mut w), 2);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "rebooting", "success"]
    );
    assert_eq!(
        w.hook_events(),
        [
            "install exit 0",
            "restart reboot",
            "version exit 0",
            "ready exit 0"
        ]
    );
}

#[test]
fn hooks_version_mismatch_after_reboot() {
    let mut w = world(&[Hook::Install, Hook::Restart, Hook::Version], |w| {
        w.hs().scripts.insert(Hook::Restart, vec![HookEnd::Reboot]);
        // The install hook reports success but installs nothing.
        w.hs().scripts.insert(Hook::Install, vec![HookEnd::Exit(0)]);
    });
    // What the restart starts is not what was deployed.
    w.hs().staged = None;
    let mut buffers = Buffers::default();
    let mut agent = w.start(&mut buffers);
    // Run to the restart; then the "installed" system is the old one.
    let stop = w.drive(&mut agent, |w, a| w.managed_idle(a));
    drop(agent);
    assert_eq!(stop, Stop::Reboot);
    w.hs().running = FACTORY.into();
    w.power_on();
    run(&mut w);
    assert_eq!(w.server.deployment("d1").finals(), ["failure"]);
    assert!(
        w.server
            .deployment("d1")
            .logs
            .iter()
            .any(|l| l.contains("Expected version 'sim-a', got 'factory'")),
        "{:?}",
        w.server.deployment("d1").logs
    );
}

#[test]
fn hooks_retry_later() {
    let mut w = world(&[Hook::Download, Hook::Install], |w| {
        w.hs().install_activates = true;
        w.hs().scripts.insert(
            Hook::Download,
            vec![HookEnd::Exit(3), HookEnd::Exit(3), HookEnd::Exit(0)],
        );
    });
    run(&mut w);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "success"]
    );
    assert_eq!(
        w.hooks.as_ref().unwrap().calls,
        [
            "download 0 0 sim-a",
            "download 60 1 sim-a",
            "download 120 2 sim-a",
            "install 0 0 sim-a"
        ]
    );
}

#[test]
fn hooks_max_retries() {
    let mut w = world(&[Hook::Download, Hook::Install], |w| {
        w.hs()
            .scripts
            .insert(Hook::Download, vec![HookEnd::Exit(3)]);
    });
    run(&mut w);
    assert_eq!(w.server.statuses("d1"), ["downloading", "failure"]);
    assert_eq!(w.hooks.as_ref().unwrap().calls.len(), 3);
    assert!(
        w.server
            .deployment("d1")
            .logs
            .iter()
            .any(|l| l.contains("the download hook: Timeout after 180s")),
        "{:?}",
        w.server.deployment("d1").logs
    );
}

#[test]
fn hooks_install_fails() {
    let mut w = world(&[Hook::Install, Hook::Restart], |w| {
        w.hs().scripts.insert(Hook::Install, vec![HookEnd::Exit(2)]);
    });
    run(&mut w);
    assert_eq!(
        w.server.statuses("d1"),
        ["downloading", "installing", "failure"]
    );
    assert_eq!(w.hook_events(), ["install exit 2"]);
    assert!(
        w.server
            .deployment("d1")
            .logs
            .iter()
            .any(|l| l.contains("the install hook failed: Exit code: 2")),
        "{:?}",
        w.server.deployment("d1").logs
    );
}

/// Power cuts at every persisted write (before and after) and before
/// every action of a deployment whose restart hook reboots, with an
/// installer that activates on any boot (A/B) and one that needs its
/// restart hook; every run ends at rest with one final status, a success
/// only with the deployed system running and named.
#[test]
fn hooks_power_cuts() {
    let started = Clock::now();
    let hooks = [Hook::Install, Hook::Restart, Hook::Version, Hook::Ready];
    let setup = |activate_on_boot: bool| {
        move |w: &mut World| {
            w.hs().scripts.insert(Hook::Restart, vec![HookEnd::Reboot]);
            w.hs().activate_on_boot = activate_on_boot;
        }
    };
    let mut base = world(&hooks, setup(true));
    run(&mut base);
    let (effects, actions) = (base.effects, base.actions);
    let mut cuts = Vec::new();
    for n in 0..effects {
        cuts.push(Cut::Effect { n, after: false });
        cuts.push(Cut::Effect { n, after: true });
    }
    cuts.extend((0..actions).map(Cut::Action));
    let mut summary: BTreeMap<String, u32> = BTreeMap::new();
    let mut runs = 0;
    for activate_on_boot in [true, false] {
        for &cut in &cuts {
            let mut w = world(&hooks, setup(activate_on_boot));
            w.cut = Some(cut);
            run(&mut w);
            if w.cuts_fired == 0 {
                continue;
            }
            runs += 1;
            let finals = w.server.deployment("d1").finals().join(",");
            if activate_on_boot && finals != "success" {
                // Only a cut in the download fails an A/B install.
                let statuses = w.server.statuses("d1");
                assert!(
                    !statuses.iter().any(|s| s == "installing"),
                    "{cut:?}: {statuses:?}\n{}",
                    w.tail(60)
                );
            }
            *summary
                .entry(format!(
                    "{} -> {finals} ({} installs)",
                    if activate_on_boot { "A/B" } else { "soft" },
                    w.hooks.as_ref().unwrap().installs
                ))
                .or_default() += 1;
        }
    }
    println!(
        "hooks power cuts: {runs} runs ({effects} effects, {actions} actions) in {:?}",
        started.elapsed()
    );
    for (key, n) in &summary {
        println!("  {n:4} {key}");
    }
    assert!(runs > 40, "{runs}");
}
