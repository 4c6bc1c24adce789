//! Power loss in the managed mode: the real daemon is stopped abruptly at
//! every persisted step of a deployment (named crash points, before and
//! after the reboot) and at 40 moments spread over the download and the
//! write, then started again over the same files. Every power cycle applies
//! what U-Boot does with `bootlimit=1`: a trial boot counts
//! (`bootcount=1`), a second uncommitted boot falls back to the old slot.
//! Every run must end with a bootable slot, a consistent environment and
//! one final outcome reported for the deployment.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::*;
use otalite_testserver::{DeploymentState, Fault, ServerConfig};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Crash points on the first boot (before the reboot) and the second.
const BEFORE_REBOOT: &[&str] = &[
    "after-persist-downloading",
    "download",
    "after-download",
    "persist-installed",
    "set-trial",
    "after-set-trial",
    "after-persist-rebooting",
    "reboot",
];
const AFTER_REBOOT: &[&str] = &[
    "request-installing",
    "after-persist-committing",
    "after-commit-boot",
    "request-success",
    "after-request-success",
];
const TIMED_KILLS: u32 = 40;

enum Cut {
    Point { boot: usize, name: &'static str },
    After { boot: usize, delay: Duration },
}

struct Run {
    managed: Managed,
    id: String,
    image: Vec<u8>,
}

impl Run {
    fn new(artifact: &Path, image: &[u8], trickle: bool) -> Self {
        let managed = Managed::new(ServerConfig::default());
        let id = managed
            .server
            .add_deployment(artifact, "release-2", &[DEVICE_TYPE]);
        if trickle {
            managed
                .server
                .inject(Fault::trickle_download(4 << 20).always());
        }
        Self {
            managed,
            id,
            image: image.to_vec(),
        }
    }

    fn start(&self, crash_at: Option<&str>) -> DaemonProcess {
        match crash_at {
            Some(point) => self.managed.start_with(&[("OTALITE_TEST_CRASH_AT", point)]),
            None => self.managed.start(),
        }
    }

    fn reboots(&self) -> usize {
        self.managed.reboots()
    }

    fn log(&self) -> String {
        self.managed.log()
    }

    fn finished(&self) -> Option<String> {
        match self.managed.server.deployment_state(&self.id) {
            Some(DeploymentState::Finished(outcome)) => Some(outcome),
            _ => None,
        }
    }

    /// A power cycle as U-Boot with `bootlimit=1` handles it.
    fn power_cycle(&self) {
        let env = self.managed.device.env();
        if env.get("upgrade_available").map(String::as_str) != Some("1") {
            return;
        }
        let bootcount: u32 = env
            .get("bootcount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let script = self.managed.device.root().join("bootloader.env");
        if bootcount == 0 {
            std::fs::write(&script, "bootcount=1\n").unwrap();
        } else {
            let back = if env["mender_boot_part"] == "3" {
                "2"
            } else {
                "3"
            };
            std::fs::write(&script, format!("mender_boot_part={back}\nmender_boot_part_hex={back}\nupgrade_available=0\nbootcount=0\n")).unwrap();
        }
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(self.managed.device.root().join("etc/fw_env.config"))
                .arg("-s")
                .arg(&script),
        );
    }

    /// Runs boots until the deployment is finished and the daemon idles.
    fn drive(&self, cut: &Cut, label: &str) -> String {
        for boot in 0..8 {
            let crash = match cut {
                Cut::Point { boot: at, name } if *at == boot => Some(*name),
                _ => None,
            };
            let reboots_before = self.reboots();
            let mut child = self.start(crash);
            let started = Instant::now();
            loop {
                if let Cut::After { boot: at, delay } = cut {
                    if *at == boot && started.elapsed() >= *delay {
                        break;
                    }
                }
                if child.try_wait().unwrap().is_some() || self.reboots() > reboots_before {
                    break;
                }
                if self.finished().is_some() && self.log().matches("reported ").count() >= 1 {
                    // Give the daemon a moment to persist idle, then stop it.
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    let status = child.wait().unwrap();
                    assert_eq!(status.code(), Some(0), "{label}: SIGTERM exit");
                    return self.finished().unwrap();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{label}: boot {boot} hangs:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            // Power off: no chance to clean up.
            let _ = child.kill();
            let status = child.wait().unwrap();
            assert!(
                status.signal().is_some() || status.code().is_some(),
                "{label}"
            );
            self.power_cycle();
        }
        panic!("{label}: the deployment never finished:\n{}", self.log());
    }

    /// The invariants after a run.
    fn check(&self, outcome: &str, label: &str) {
        let env = self.managed.device.env();
        let part = env["mender_boot_part"].clone();
        assert_eq!(env["mender_boot_part_hex"], part, "{label}");
        assert_eq!(
            env["upgrade_available"], "0",
            "{label}: left a pending trial: {env:?}"
        );
        let finals: Vec<String> = self
            .managed
            .server
            .statuses(&self.id)
            .into_iter()
            .map(|(status, _)| status)
            .filter(|s| s == "success" || s == "failure")
            .collect();
        assert!(
            !finals.is_empty() && finals.iter().all(|s| s == outcome),
            "{label}: final reports {finals:?}"
        );
        match outcome {
            "success" => {
                assert_eq!(part, "3", "{label}");
                assert_eq!(
                    &self.managed.device.slot(3)[..self.image.len()],
                    &self.image[..],
                    "{label}: booted slot not verified"
                );
                assert_eq!(self.managed.device.show_artifact(), "release-2", "{label}");
            }
            "failure" => {
                assert_eq!(
                    part, "2",
                    "{label}: failed deployment left the new slot active"
                );
                assert_eq!(self.managed.device.show_artifact(), "release-1", "{label}");
            }
            other => panic!("{label}: unexpected outcome {other}"),
        }
        self.managed.server.assert_conformant();
    }
}

fn artifact(dir: &Path, image: &[u8]) -> PathBuf {
    write_artifact(dir, "release-2", image, &["--compression", "none"])
}

#[test]
fn power_cuts_at_every_step() {
    let scratch = tempfile::tempdir().unwrap();
    let image = image_bytes(1 << 20, 41);
    let artifact = artifact(scratch.path(), &image);
    let mut outcomes = Vec::new();
    for name in BEFORE_REBOOT {
        let run = Run::new(&artifact, &image, false);
        let outcome = run.drive(&Cut::Point { boot: 0, name }, name);
        run.check(&outcome, name);
        eprintln!("cut at {name} (first boot): {outcome}");
        outcomes.push((name, outcome));
    }
    for name in AFTER_REBOOT {
        let run = Run::new(&artifact, &image, false);
        let outcome = run.drive(&Cut::Point { boot: 1, name }, name);
        run.check(&outcome, name);
        eprintln!("cut at {name} (after the reboot): {outcome}");
        outcomes.push((name, outcome));
    }
    // Before the env switch the deployment fails cleanly. A cut during the
    // trial boot before `upgrade_available=0` uses up the single trial, so
    // the bootloader falls back: failure. Once the env is committed: success.
    // Between the switch and the reboot either outcome is right (the cut
    // itself is the reboot).
    for (name, outcome) in &outcomes {
        let expected = match **name {
            "after-persist-rebooting" | "reboot" | "after-set-trial" => continue,
            "after-commit-boot" | "request-success" | "after-request-success" => "success",
            _ => "failure",
        };
        assert_eq!(outcome, expected, "{name}");
    }
}

#[test]
fn power_cuts_while_streaming() {
    let scratch = tempfile::tempdir().unwrap();
    let image = image_bytes(4 << 20, 43);
    let artifact = artifact(scratch.path(), &image);
    // How long the first boot takes up to the reboot (download trickled).
    let calibration = Run::new(&artifact, &image, true);
    let started = Instant::now();
    let mut child = calibration.start(None);
    while calibration.reboots() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "calibration hangs:\n{}",
            calibration.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let first_boot = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let mut successes = 0;
    for step in 0..TIMED_KILLS {
        let delay = first_boot * step / TIMED_KILLS;
        let label = format!("kill at {delay:?} of {first_boot:?}");
        let run = Run::new(&artifact, &image, true);
        let outcome = run.drive(&Cut::After { boot: 0, delay }, &label);
        run.check(&outcome, &label);
        eprintln!("{label}: {outcome}");
        successes += usize::from(outcome == "success");
    }
    // Most cuts land in the download: those deployments fail cleanly.
    assert!(
        successes < TIMED_KILLS as usize,
        "no cut landed before the reboot"
    );
}
