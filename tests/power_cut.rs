//! Power-cut tests: the real binary is stopped abruptly (`abort` at named
//! points between persisted steps, and SIGKILL at spread-out moments while
//! the payload streams), then run again over the same files. Every run must
//! end with a consistent boot environment, a bootable slot, and the right
//! artifact name.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Instant;

fn crash_at(device: &Device, point: &str, args: &[&str]) {
    let output = run(device
        .command()
        .env("OTALITE_TEST_CRASH_AT", point)
        .args(args));
    assert_eq!(
        output.status.signal(),
        Some(6),
        "{point}: expected the crash, got {:?}: {}",
        output.status,
        stderr(&output)
    );
}

/// The env must be in exactly one of the two consistent states.
fn env_state(device: &Device) -> (String, String) {
    let env = device.env();
    let state = (
        env["mender_boot_part"].clone(),
        env["upgrade_available"].clone(),
    );
    assert!(
        state == ("2".into(), "0".into())
            || state == ("3".into(), "1".into())
            || state == ("3".into(), "0".into()),
        "inconsistent env {env:?}"
    );
    assert_eq!(env["mender_boot_part_hex"], env["mender_boot_part"]);
    state
}

fn installed(device: &Device) -> std::path::PathBuf {
    device.artifact("release-2", &image_bytes(1 << 20, 11), &[])
}

#[test]
fn crash_during_install_steps() {
    for point in ["persist-installed", "set-trial", "after-set-trial"] {
        let device = Device::new();
        let artifact = installed(&device);
        crash_at(&device, point, &["install", artifact.to_str().unwrap()]);
        let state = env_state(&device);
        assert_eq!(device.show_artifact(), "release-1", "{point}");
        if state == ("2".into(), "0".into()) {
            // Never activated: the first commit explains that the install
            // did not complete (exit 1, or 2 when nothing was recorded),
            // after that there is nothing to commit, and a new install works.
            let first = device.otalite(&["commit"]).status.code();
            assert!(matches!(first, Some(1 | 2)), "{point}: {first:?}");
            assert_eq!(
                device.otalite(&["commit"]).status.code(),
                Some(2),
                "{point}"
            );
            device.otalite_ok(&["install", artifact.to_str().unwrap()]);
        }
        // Either way the update can now be committed.
        device.otalite_ok(&["commit"]);
        assert_eq!(device.show_artifact(), "release-2", "{point}");
        assert_eq!(env_state(&device), ("3".into(), "0".into()));
    }
}

#[test]
fn crash_during_commit_steps() {
    for point in ["persist-committing", "commit-boot", "after-commit-boot"] {
        let device = Device::new();
        device.otalite_ok(&["install", installed(&device).to_str().unwrap()]);
        crash_at(&device, point, &["commit"]);
        env_state(&device);
        // Running commit again finishes the job exactly once.
        let out = device.otalite(&["commit"]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_eq!(device.show_artifact(), "release-2", "{point}");
        assert_eq!(env_state(&device), ("3".into(), "0".into()), "{point}");
        assert_eq!(
            device.otalite(&["commit"]).status.code(),
            Some(2),
            "{point}"
        );
    }
}

#[test]
fn crash_during_commit_then_bootloader_fallback() {
    // Power is lost mid-commit, the board reboots before the agent runs
    // again, and the bootloader's trial counter falls back to slot A.
    let device = Device::new();
    device.otalite_ok(&["install", installed(&device).to_str().unwrap()]);
    crash_at(&device, "commit-boot", &["commit"]);
    let script = device.root().join("fallback.env");
    std::fs::write(
        &script,
        "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\n",
    )
    .unwrap();
    run_ok(
        std::process::Command::new("fw_setenv")
            .arg("-c")
            .arg(device.root().join("etc/fw_env.config"))
            .arg("-s")
            .arg(&script),
    );
    let out = device.otalite(&["commit"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(device.show_artifact(), "release-1");
    assert_eq!(env_state(&device), ("2".into(), "0".into()));
}

#[test]
fn crash_during_rollback_steps() {
    for point in ["persist-rolling-back", "roll-back", "after-roll-back"] {
        let device = Device::new();
        device.otalite_ok(&["install", installed(&device).to_str().unwrap()]);
        crash_at(&device, point, &["rollback"]);
        env_state(&device);
        let out = device.otalite(&["rollback"]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_eq!(env_state(&device), ("2".into(), "0".into()), "{point}");
        assert_eq!(device.show_artifact(), "release-1", "{point}");
        assert_eq!(
            device.otalite(&["rollback"]).status.code(),
            Some(2),
            "{point}"
        );
    }
}

#[test]
fn sigkill_while_streaming() {
    let device = Device::new();
    let image = image_bytes(7 << 20, 21);
    let artifact = device.artifact("release-2", &image, &["--compression", "gzip"]);
    let path = artifact.to_str().unwrap();
    // How long a whole install takes here, to spread the kills over it.
    let started = Instant::now();
    device.otalite_ok(&["install", path]);
    let full = started.elapsed();
    device.otalite_ok(&["rollback"]);
    let mut killed = 0;
    for step in 0..16u32 {
        // Overwrite the slot's start so every run writes again.
        std::fs::write(
            device.root().join("mmcblk0p3"),
            vec![0u8; SLOT_SIZE as usize],
        )
        .unwrap();
        let mut child = device
            .command()
            .args(["install", path])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * step / 16);
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(9) {
            killed += 1;
        }
        let state = env_state(&device);
        if state == ("2".into(), "0".into()) {
            assert_eq!(device.show_artifact(), "release-1");
            // Killed between recording the install and switching the env:
            // the first commit explains (exit 1), then nothing is pending.
            let first = device.otalite(&["commit"]).status.code();
            assert!(matches!(first, Some(1 | 2)), "{first:?}");
            assert_eq!(device.otalite(&["commit"]).status.code(), Some(2));
        } else {
            // The install had finished (or activated) before the kill.
            assert_eq!(&device.slot(3)[..image.len()], &image[..]);
            device.otalite_ok(&["rollback"]);
        }
    }
    assert!(
        killed >= 8,
        "only {killed} of 16 runs were killed mid-install"
    );
    // After all that, a clean install still works.
    device.otalite_ok(&["install", path]);
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
}
