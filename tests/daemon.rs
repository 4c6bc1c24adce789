//! The managed mode end to end: the real `otalite daemon` against the
//! project's Mender test server on loopback (every request checked against
//! the OpenAPI files), with a fake `reboot`, the bootloader's trial boot
//! simulated between runs, and faults injected on the wire.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::*;
use otalite_testserver::{AuthPolicy, DeploymentState, Fault, ServerConfig};
use std::process::Command;

#[test]
fn full_deployment_with_reboot_and_commit() {
    let managed = Managed::new(ServerConfig::default());
    let image = image_bytes(2 << 20, 31);
    let artifact = managed.device.artifact("release-2", &image, &[]);
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);

    let mut daemon = managed.start();
    managed.wait("the reboot", |m| m.reboots() > 0);
    // The reboot: the daemon dies as the machine goes down.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    assert_eq!(managed.device.env_var("mender_boot_part"), "3");
    assert_eq!(managed.device.env_var("upgrade_available"), "1");
    assert_eq!(managed.device.show_artifact(), "release-1");

    managed.trial_boot();
    let daemon = managed.start();
    managed.wait("success", |m| {
        m.server.deployment_state(&id) == Some(DeploymentState::Finished("success".into()))
    });
    managed.wait("the inventory after the deployment", |m| {
        m.server
            .inventory()
            .get("artifact_name")
            .and_then(|v| v.as_str())
            == Some("release-2")
    });
    assert_eq!(stop(daemon), Some(0));

    assert_eq!(managed.device.show_artifact(), "release-2");
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    assert_eq!(managed.device.env_var("mender_boot_part"), "3");
    let statuses = managed.statuses(&id);
    assert_eq!(
        statuses.first().map(String::as_str),
        Some("downloading"),
        "{statuses:?}"
    );
    for expected in ["installing", "rebooting", "success"] {
        assert!(
            statuses.iter().any(|s| s == expected),
            "{expected} missing in {statuses:?}"
        );
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| *s == "success" || *s == "failure")
            .count(),
        1,
        "{statuses:?}"
    );
    let inventory = managed.server.inventory();
    assert_eq!(
        inventory.get("device_type").and_then(|v| v.as_str()),
        Some(DEVICE_TYPE)
    );
    assert_eq!(
        inventory.get("kernel").and_then(|v| v.as_str()),
        Some("test-kernel")
    );
    assert!(
        inventory.get("ipv4").is_some_and(|v| v.is_array()),
        "{inventory:?}"
    );
    managed.server.assert_conformant();
}

#[test]
fn corrupted_artifact_reports_failure_with_the_log() {
    let managed = Managed::new(ServerConfig::default());
    let artifact = managed.device.artifact(
        "release-2",
        &image_bytes(1 << 20, 5),
        &["--compression", "none"],
    );
    let mut bytes = std::fs::read(&artifact).unwrap();
    let at = bytes.len() - 4096;
    bytes[at] ^= 0xFF;
    std::fs::write(&artifact, bytes).unwrap();
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    let daemon = managed.start();
    managed.wait("failure", |m| {
        m.server.deployment_state(&id) == Some(DeploymentState::Finished("failure".into()))
    });
    managed.wait("the log upload", |m| !m.server.logs(&id).is_empty());
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(managed.reboots(), 0);
    assert_eq!(managed.device.env_var("mender_boot_part"), "2");
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    assert_eq!(managed.device.show_artifact(), "release-1");
    managed.server.assert_conformant();
}

#[test]
fn download_resumes_after_drops_and_stalls() {
    let managed = Managed::new(ServerConfig::default());
    let image = image_bytes(3 << 20, 8);
    let artifact = managed
        .device
        .artifact("release-2", &image, &["--compression", "none"]);
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    managed.server.inject(Fault::drop_download_after(100_000));
    managed.server.inject(Fault::drop_download_after(1_000_000));
    let mut daemon = managed.start();
    managed.wait("the reboot", |m| m.reboots() > 0);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert_eq!(&managed.device.slot(3)[..image.len()], &image[..]);
    let ranges = managed
        .server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/download/"))
        .count();
    assert!(
        ranges >= 3,
        "expected resumed downloads, saw {ranges} download requests"
    );
    let statuses = managed.statuses(&id);
    assert!(statuses.iter().any(|s| s == "rebooting"), "{statuses:?}");
    managed.server.assert_conformant();
}

#[test]
fn aborted_deployment_stops_cleanly() {
    let managed = Managed::new(ServerConfig::default());
    let artifact = managed
        .device
        .artifact("release-2", &image_bytes(1 << 20, 3), &[]);
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    managed.server.inject(Fault::abort_on_status("installing"));
    let mut daemon = managed.start();
    managed.wait("the abort", |m| {
        m.server.deployment_state(&id) == Some(DeploymentState::Aborted)
    });
    // As the reference (tests/fixtures/scripts/aborted.txt): the rollback
    // reboot, then the failure from the (unchanged) old system.
    managed.wait("the rollback reboot", |m| m.reboots() == 1);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let daemon = managed.start();
    managed.wait("the daemon going idle", |m| {
        m.log().contains("reported failure")
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(managed.reboots(), 1);
    assert_eq!(managed.device.env_var("mender_boot_part"), "2");
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    managed.server.assert_conformant();
}

#[test]
fn pending_device_retries_until_accepted() {
    let managed = Managed::new(ServerConfig {
        auth_policy: AuthPolicy::PendingFor(2),
        ..ServerConfig::default()
    });
    let daemon = managed.start();
    managed.wait("the inventory", |m| {
        m.server.inventory().contains_key("artifact_name")
    });
    assert_eq!(stop(daemon), Some(0));
    assert!(managed.server.auth_requests().len() >= 3);
    managed.server.assert_conformant();
}

fn key_type_of(managed: &Managed) -> Option<otalite_testserver::KeyType> {
    managed
        .server
        .auth_requests()
        .last()
        .and_then(|record| record.key_type)
}

#[test]
fn device_key_types_and_a_static_key() {
    use std::os::unix::fs::MetadataExt;
    // Default: a generated Ed25519 key, file mode 0600.
    let managed = Managed::new(ServerConfig::default());
    let daemon = managed.start();
    managed.wait("the inventory", |m| {
        m.server.inventory().contains_key("artifact_name")
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(
        key_type_of(&managed),
        Some(otalite_testserver::KeyType::Ed25519)
    );
    let key = managed.device.root().join("data/mender-agent.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o600);

    // DeviceKeyType: ECDSA P-256 (DER signatures over SHA-256).
    let managed = Managed::new(ServerConfig::default());
    let url = managed.server.url();
    managed.device.write_config(&format!(
        r#", "ServerURL": "{url}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1, "DeviceKeyType": "ecdsa-p256""#
    ));
    let daemon = managed.start();
    managed.wait("the inventory", |m| {
        m.server.inventory().contains_key("artifact_name")
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(
        key_type_of(&managed),
        Some(otalite_testserver::KeyType::EcdsaP256)
    );

    // Security.AuthPrivateKey: a static key made by openssl, used as is.
    let managed = Managed::new(ServerConfig::default());
    let static_key = managed.device.root().join("static-key.pem");
    run_ok(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&static_key),
    );
    let before = std::fs::read(&static_key).unwrap();
    let url = managed.server.url();
    managed.device.write_config(&format!(
        r#", "ServerURL": "{url}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1, "Security": {{"AuthPrivateKey": "{}"}}"#,
        static_key.display()
    ));
    let daemon = managed.start();
    managed.wait("the inventory", |m| {
        m.server.inventory().contains_key("artifact_name")
    });
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(
        key_type_of(&managed),
        Some(otalite_testserver::KeyType::Ed25519)
    );
    assert_eq!(
        std::fs::read(&static_key).unwrap(),
        before,
        "a static key is never rewritten"
    );
    assert!(!managed.device.root().join("data/mender-agent.pem").exists());
    managed.server.assert_conformant();
}

#[test]
fn new_system_that_cannot_reach_the_server_rolls_back_and_reboots() {
    use otalite_testserver::Endpoint;
    let managed = Managed::new(ServerConfig::default());
    let image = image_bytes(1 << 20, 13);
    let artifact = managed.device.artifact("release-2", &image, &[]);
    let id = managed
        .server
        .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    let mut daemon = managed.start();
    managed.wait("the reboot", |m| m.reboots() == 1);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    managed.trial_boot();
    // The new system cannot authenticate: it must not commit.
    managed
        .server
        .inject(Fault::status(Endpoint::Auth, 503).always());
    let mut daemon = managed.start();
    managed.wait("the rollback reboot", |m| m.reboots() == 2);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    // The env still shows the counted trial until the reboot: the
    // bootloader's fallback boots the old slot (README: departures).
    assert_eq!(managed.device.env_var("mender_boot_part"), "3");
    assert_eq!(managed.device.env_var("upgrade_available"), "1");
    managed.bootloader_fallback();
    assert_eq!(managed.device.env_var("mender_boot_part"), "2");
    assert_eq!(managed.device.env_var("upgrade_available"), "0");
    assert_eq!(managed.device.show_artifact(), "release-1");
    // Back on the old system the server is reachable again: failure, once.
    managed.server.clear_faults();
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    managed.assert_one_final(&id, "failure");
    managed.server.assert_conformant();
}

/// `otalite control-map` on a device without D-Bus: a running daemon takes
/// the map (SIGHUP and a request file) and pauses before the install, goes
/// on when the map says so; `show` prints the map, `clear` removes it;
/// without a daemon the stored maps change for its next start, and an
/// invalid map is refused with the reason.
#[test]
fn control_map_cli_pauses_and_continues_without_dbus() {
    let managed = Managed::with_config(ServerConfig::default(), |server, root| {
        format!(
            r#"{}, "UpdateControlMapExpirationTimeSeconds": 120"#,
            fast_polling(server, root)
        )
    });
    let map = |action: &str| {
        let path = managed.device.root().join("map.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"id": "01234567-89ab-cdef-0123-456789abcdef", "priority": 2, "states": {{"ArtifactInstall_Enter": {{"action": "{action}"}}}}}}"#
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    // Offline: stored for the next start; refused with the reason.
    let bad = managed.device.root().join("bad.json");
    std::fs::write(&bad, r#"{"id": "not-a-uuid", "priority": 0}"#).unwrap();
    let out = managed
        .device
        .otalite(&["control-map", "set", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid update control map"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        managed
            .device
            .otalite_ok(&["control-map", "set", &map("pause")])
            .trim(),
        "60"
    );
    assert!(managed
        .device
        .otalite_ok(&["control-map", "show"])
        .contains(r#""action":"pause""#));
    let daemon = managed.start();
    let (id, _) = managed.deployment(1 << 20);
    managed.wait("pause_before_installing", |m| {
        m.statuses(&id)
            .iter()
            .any(|s| s == "pause_before_installing")
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        !managed.statuses(&id).iter().any(|s| s == "installing"),
        "not held"
    );
    // Through the running daemon.
    assert_eq!(
        managed
            .device
            .otalite_ok(&["control-map", "set", &map("continue")])
            .trim(),
        "60"
    );
    managed.wait("installing", |m| {
        m.statuses(&id).iter().any(|s| s == "installing")
    });
    managed.wait("the reboot", |m| m.reboots() > 0);
    managed.device.otalite_ok(&["control-map", "clear"]);
    assert_eq!(managed.device.otalite_ok(&["control-map", "show"]), "");
    drop(daemon);
    managed.done("control-map CLI");
}

/// Maps from the deployment (an Enterprise server's): the `next` answer
/// pauses the deployment before the install; the server's new map, fetched
/// again while paused, lets it go on to `success`. A map saying `fail`
/// before the commit rolls the update back from the new system.
#[test]
fn server_control_maps_pause_continue_and_fail() {
    // An Enterprise server: v2 `next` (the maps come with it).
    let managed = Managed::new(ServerConfig {
        next_v2: true,
        ..ServerConfig::default()
    });
    let (id, _) = managed.deployment(1 << 20);
    let map = |state: &str, action: &str| {
        format!(
            r#"{{"id": "{id}", "priority": 0, "states": {{"{state}": {{"action": "{action}"}}}}}}"#
        )
    };
    managed
        .server
        .set_control_map(&id, Some(&map("ArtifactInstall_Enter", "pause")));
    let mut daemon = managed.start();
    managed.wait("pause_before_installing", |m| {
        m.statuses(&id)
            .iter()
            .any(|s| s == "pause_before_installing")
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !managed.statuses(&id).iter().any(|s| s == "installing"),
        "not held"
    );
    assert!(
        managed
            .server
            .requests()
            .iter()
            .any(|r| r.path.ends_with(&format!("{id}/update_control_map"))),
        "the map was not fetched again while paused"
    );
    // Go on, but fail before the commit.
    managed
        .server
        .set_control_map(&id, Some(&map("ArtifactCommit_Enter", "fail")));
    managed.wait("the reboot", |m| m.reboots() == 1);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    managed.trial_boot();
    let mut daemon = managed.start();
    // The rollback reboot: U-Boot falls back from the counted trial.
    managed.wait("the rollback reboot", |m| m.reboots() == 2);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    managed.bootloader_fallback();
    let daemon = managed.start();
    managed.wait("failure", |m| m.finished(&id, "failure"));
    assert_eq!(stop(daemon), Some(0));
    assert_eq!(managed.device.env_var("mender_boot_part"), "2");
    assert!(
        managed.log().contains("Forced a failed update"),
        "{}",
        managed.log()
    );
    managed.done("server control maps");
}
