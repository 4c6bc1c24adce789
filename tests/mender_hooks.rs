//! upparat's hooks installing a Mender server deployment end to end: the
//! real `otalite daemon` with `HooksConfig` in mender.conf (an INI with
//! upparat's `[hooks]`) against the project's Mender test server on
//! loopback, with real hook scripts. The server sees the Mender statuses
//! (`downloading`, `installing`, `rebooting`, `success`/`failure`); the
//! hooks get upparat's arguments (`<elapsed> <retry> <meta> [file]`, meta
//! = the deployment's artifact name).

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::*;
use otalite_testserver::{ServerConfig, TestServer};
use std::path::Path;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Writes the hooks INI (only `hooks`, each a script logging its name and
/// arguments to `<root>/hooks.log`, then running its body) and points
/// mender.conf at it.
fn hooks_config(
    hooks: &'static [(&'static str, &'static str)],
) -> impl Fn(&TestServer, &Path) -> String {
    move |server, root| {
        let mut ini = String::from("[hooks]\nretry_interval = 1\nmax_retries = 3\n");
        for (name, body) in hooks {
            let path = root.join(format!("hook-{name}"));
            executable(
                &path,
                &format!(
                    "#!/bin/sh\necho \"{name} $*\" >> {log}\n{body}\n",
                    log = root.join("hooks.log").display()
                ),
            );
            ini.push_str(&format!("{name} = {}\n", path.display()));
        }
        std::fs::write(root.join("hooks.ini"), ini).unwrap();
        format!(
            "{}, \"HooksConfig\": \"{}\"",
            fast_polling(server, root),
            root.join("hooks.ini").display()
        )
    }
}

/// The "reboot": SIGKILL to the daemon and to the hook that blocks (it
/// wrote its pid, `exec`-ed into its sleep, to `pid_file`).
fn kill_daemon_and_hook(mut daemon: DaemonProcess, pid_file: &Path) {
    let _ = daemon.kill();
    let _ = daemon.wait();
    let pid = read(pid_file);
    let pid = pid.trim();
    assert!(!pid.is_empty(), "the hook wrote no pid");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", pid])
        .status();
}

fn hook_calls(managed: &Managed) -> Vec<String> {
    read(&managed.device.root().join("hooks.log"))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn hooks_install_a_deployment_with_a_soft_restart() {
    // The install hook copies the file; the restart hook returns 0.
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[
            (
                "install",
                "cp \"$4\" \"$(dirname \"$0\")/installed.mender\"",
            ),
            ("restart", "exit 0"),
        ]),
    );
    let (artifact, id) = managed.deploy_release_2(512 << 10, 3);
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
    assert_eq!(
        std::fs::read(root.join("installed.mender")).unwrap(),
        std::fs::read(&artifact).unwrap(),
        "the install hook got the whole artifact"
    );
    let file = root.join("data/artifact.mender");
    assert_eq!(
        hook_calls(&managed),
        [
            format!("install 0 0 release-2 {}", file.display()),
            "restart 0 0 release-2 ".to_string(),
        ]
    );
    assert!(!file.exists(), "the file goes after the deployment");
    assert_eq!(
        managed.statuses(&id),
        ["downloading", "installing", "rebooting", "success"]
    );
    // The slots and the boot env are the hooks' business: untouched.
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    assert!(managed.device.slot(3).iter().all(|&b| b == 0));
}

#[test]
fn hooks_retry_later_then_fail_with_the_log() {
    // The download hook asks to retry twice, then the install hook fails.
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[
            (
                "download",
                "n=$(grep -c ^download \"$(dirname \"$0\")/hooks.log\"); [ \"$n\" -ge 3 ] || exit 3",
            ),
            ("install", "echo 'flash failed: bad block 9'; exit 1"),
        ]),
    );
    let (_, id) = managed.deploy_release_2(64 << 10, 4);
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    let calls = hook_calls(&managed);
    // upparat's arguments: elapsed seconds, the retry count, meta.
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls[0].starts_with("download 0 0 release-2"), "{calls:?}");
    assert!(calls[1].starts_with("download 1 1 release-2"), "{calls:?}");
    assert!(calls[2].starts_with("download 2 2 release-2"), "{calls:?}");
    assert!(calls[3].starts_with("install 0 0 release-2"), "{calls:?}");
    assert_eq!(
        managed.statuses(&id),
        ["downloading", "installing", "failure"]
    );
    let messages: Vec<String> = managed.log_messages(&id);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("the install hook failed: Exit code: 1: flash failed: bad block 9")),
        "{messages:?}"
    );
    assert!(!managed.device.root().join("data/artifact.mender").exists());
    // Still the old artifact.
    assert_eq!(
        managed
            .server
            .inventory()
            .get("artifact_name")
            .and_then(|v| v.as_str()),
        Some("release-1")
    );
}

#[test]
fn hooks_reboot_then_version_and_ready() {
    // The restart hook "reboots": it records the call and blocks; the test
    // kills the daemon (as the reboot does) and starts it again, with the
    // version hook now printing the new name.
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[
            ("install", "true"),
            (
                "restart",
                "echo $$ > \"$(dirname \"$0\")/rebooting\"; exec sleep 60",
            ),
            ("version", "cat \"$(dirname \"$0\")/running\""),
            ("ready", "true"),
        ]),
    );
    let root = managed.device.root();
    std::fs::write(root.join("running"), "release-1\n").unwrap();
    let (_, id) = managed.deploy_release_2(64 << 10, 5);
    let daemon = managed.start();
    managed.wait("the restart hook", |m| {
        !read(&m.device.root().join("rebooting")).is_empty()
    });
    // The reboot: the agent and its hook die; the new system runs.
    kill_daemon_and_hook(daemon, &root.join("rebooting"));
    std::fs::write(root.join("running"), "release-2\n").unwrap();
    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    let calls: Vec<String> = hook_calls(&managed)
        .into_iter()
        .map(|c| c.split(' ').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(calls, ["install", "restart", "version", "ready"]);
    assert_eq!(
        managed.statuses(&id),
        ["downloading", "installing", "rebooting", "success"]
    );
}

#[test]
fn hooks_reboot_into_the_wrong_version_fails() {
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[
            ("install", "true"),
            (
                "restart",
                "echo $$ > \"$(dirname \"$0\")/rebooting\"; exec sleep 60",
            ),
            ("version", "echo release-1"),
        ]),
    );
    let (_, id) = managed.deploy_release_2(64 << 10, 6);
    let daemon = managed.start();
    managed.wait("the restart hook", |m| {
        !read(&m.device.root().join("rebooting")).is_empty()
    });
    kill_daemon_and_hook(daemon, &managed.device.root().join("rebooting"));
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    let messages: Vec<String> = managed.log_messages(&id);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Expected version 'release-2', got 'release-1'")),
        "{messages:?}"
    );
}

#[test]
fn hooks_daemon_killed_during_install_installs_again() {
    // The first install hook call blocks; the daemon is killed there and
    // started again: the install hook runs again with the whole file.
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[(
            "install",
            "d=$(dirname \"$0\"); if [ ! -e \"$d/first\" ]; then echo $$ > \"$d/first\"; exec sleep 60; fi; cmp \"$4\" \"$d/expected\"",
        )]),
    );
    let (artifact, id) = managed.deploy_release_2(256 << 10, 7);
    let root = managed.device.root();
    std::fs::copy(&artifact, root.join("expected")).unwrap();
    let daemon = managed.start();
    managed.wait("the first install", |m| {
        !read(&m.device.root().join("first")).is_empty()
    });
    kill_daemon_and_hook(daemon, &root.join("first"));
    let daemon = managed.start();
    managed.wait("success", |m| m.finished(&id, "success"));
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(
        managed.statuses(&id),
        ["downloading", "installing", "installing", "success"]
    );
}

#[test]
fn hooks_file_without_an_install_hook_is_refused() {
    let managed = Managed::with_config(
        ServerConfig::default(),
        hooks_config(&[("restart", "true")]),
    );
    let output = managed.device.otalite(&["daemon"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("names no install hook"),
        "{}",
        stderr(&output)
    );
}
