//! The AWS IoT Jobs mode against upparat 1.12, scenario by scenario: the
//! real `otalite jobs` (as `upparat -c <ini>` would run) against a real
//! `mosquitto` with mutual TLS on loopback, the test jobs service
//! (`tests/jobs/jobs_service.py`, the AWS IoT Jobs MQTT API) and scripted
//! hooks; its published topics and payloads, hook calls and artifact
//! requests are compared with the transcripts the real upparat produced
//! on the same scenario (`tests/fixtures/jobs/`, re-checked against the
//! live upparat by `tests/jobs/check_reference.sh` in CI). The allowed
//! differences are listed in `tests/jobs/compare.py` (QoS 1 updates, no
//! `Range` on a fresh download).

#![allow(clippy::std_instead_of_core)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(found, "{tool} is required (bash .ci/setup installs it)");
}

fn scenario(name: &str) {
    require("mosquitto");
    require("openssl");
    assert!(
        Path::new("/opt/otalite-ci/upparat-venv/bin/python").exists(),
        "the upparat venv is required (bash .ci/setup makes it)"
    );
    let root = root();
    let out = tempfile::tempdir().unwrap();
    let transcript = out.path().join(format!("{name}.json"));
    let client = format!("{} jobs", env!("CARGO_BIN_EXE_otalite"));
    let run = Command::new("python3")
        .arg(root.join("tests/jobs/run_scenario.py"))
        .arg(root.join(format!("tests/jobs/scenarios/{name}.json")))
        .args(["--client", &client, "--out"])
        .arg(&transcript)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "scenario {name} did not finish:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let compare = Command::new("python3")
        .arg(root.join("tests/jobs/compare.py"))
        .arg(root.join(format!("tests/fixtures/jobs/{name}.json")))
        .arg(&transcript)
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "otalite differs from upparat 1.12 in scenario {name}:\n{}\n{}",
        String::from_utf8_lossy(&compare.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scenario(stringify!($name));
            }
        )*
    };
}

scenarios!(
    success,
    retry_later,
    max_retries,
    install_fails,
    already_installed,
    force,
    cancel_mid_download,
    delete_mid_install,
    broker_restart,
    killed_mid_download,
    killed_mid_install,
    reboot,
    reboot_version_mismatch,
    expired_url,
    prefix_and_queue,
    multiple_in_progress,
    no_install_hook,
);

/// Every scenario in the directory has its test above.
#[test]
fn every_scenario_is_run() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/jobs/scenarios"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    let source = std::fs::read_to_string(root().join("tests/jobs.rs")).unwrap();
    for name in names {
        assert!(
            source.contains(&format!("    {name},")),
            "scenario {name} has no test in tests/jobs.rs"
        );
    }
}

// -------------------------------------------------------------------
// No `install` hook and a Mender Artifact: otalite streams it into the
// inactive slot itself (the standalone install of the same binary), then
// reboots (a fake `reboot` on PATH), and after the restart runs the ready
// hook and commits. The device is the test A/B device (`common::Device`:
// file slots, a U-Boot env read back with the real `fw_printenv`); the
// artifact is written by the real `mender-artifact`.

mod common;

/// The job's (status, statusDetails.state) updates, in order.
fn job_updates(transcript: &serde_json::Value) -> Vec<(String, String)> {
    transcript["published"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"].as_str().unwrap().ends_with("/update"))
        .map(|p| {
            let payload = &p["payload"];
            (
                payload["status"].as_str().unwrap_or("").to_string(),
                payload["statusDetails"]["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .filter(|(_, state)| state != "installation_progress")
        .collect()
}

/// Runs a jobs scenario (JSON text) against `otalite jobs` on `device`;
/// the transcript.
fn run_on_device(device: &common::Device, scenario: &serde_json::Value) -> serde_json::Value {
    require("mosquitto");
    require("openssl");
    let root = root();
    let dir = device.root();
    let path = dir.join("scenario.json");
    std::fs::write(&path, serde_json::to_vec_pretty(scenario).unwrap()).unwrap();
    let transcript = dir.join("transcript.json");
    let client = format!("{} jobs", env!("CARGO_BIN_EXE_otalite"));
    let run = Command::new("python3")
        .arg(root.join("tests/jobs/run_scenario.py"))
        .arg(&path)
        .args(["--client", &client, "--out"])
        .arg(&transcript)
        .args(std::env::var_os("JOBS_KEEP").map(|_| "--keep"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "the scenario did not finish:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&std::fs::read(&transcript).unwrap()).unwrap()
}

/// A scenario over `device` with one job for `artifact` (version
/// `version`), the hooks `hooks` in the INI and a fake `reboot` that
/// blocks (a reboot never returns) until the driver "reboots" the device:
/// the agent is killed, U-Boot counts the boot, the agent starts again.
fn slot_scenario(
    device: &common::Device,
    artifact: &Path,
    version: &str,
    hooks: &[&str],
    behaviours: serde_json::Value,
) -> serde_json::Value {
    let dir = device.root();
    let fw_env = dir.join("etc/fw_env.config");
    serde_json::json!({
        "installed_version": "release-1",
        "jobs": [{
            "jobId": "upparat_slot-1",
            "status": "QUEUED",
            "document": {
                "file": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/otalite-test/release.mender}",
                "version": version,
                "meta": "meta-1"
            }
        }],
        "artifacts": {"release.mender": {"file": artifact}},
        "ini_hooks": hooks,
        "path_commands": ["reboot"],
        "hooks": behaviours,
        "hook_settings": {"retry_interval": 1, "max_retries": 3},
        "actions": [{
            "when": {"hook": "reboot", "delay_s": 0.5},
            "do": "reboot",
            "boot": format!(
                "fw_setenv -c {} bootcount 1",
                fw_env.display()
            )
        }],
        "ini_extra": format!(
            "\n[otalite]\nmender_config = {}\nmender_data = {}\n",
            dir.join("etc/mender.conf").display(),
            dir.join("data").display()
        ),
        "client_env": {
            "MENDER_CONF_DIR": dir.join("etc"),
            "MENDER_DATA_DIR": dir.join("share"),
            "DBUS_SYSTEM_BUS_ADDRESS": format!("unix:path={}", dir.join("no-bus").display()),
        },
        "timeout_s": 60
    })
}

#[test]
fn mender_artifact_streamed_into_the_slot() {
    let device = common::Device::new();
    let image = common::image_bytes(1 << 20, 7);
    let artifact = device.artifact("release-2", &image, &[]);
    let scenario = slot_scenario(
        &device,
        &artifact,
        "release-2",
        &["version", "ready"],
        serde_json::json!({"reboot": [{"sleep": 30}]}),
    );
    // The version hook prints what runs: release-2 after the reboot.
    let mut scenario = scenario;
    scenario["new_version"] = "release-2".into();
    scenario["actions"][0]["set_installed"] = "release-2".into();
    let transcript = run_on_device(&device, &scenario);
    assert_eq!(
        job_updates(&transcript),
        [
            ("IN_PROGRESS", "download_start"),
            ("IN_PROGRESS", "installation_start"),
            ("IN_PROGRESS", "reboot_start"),
            ("SUCCEEDED", "complete_ready"),
        ]
        .map(|(status, state)| (status.to_string(), state.to_string())),
        "{transcript:#}"
    );
    let hooks: Vec<&str> = transcript["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hook"].as_str().unwrap())
        .collect();
    assert_eq!(
        hooks,
        ["version", "reboot", "version", "ready"],
        "{transcript:#}"
    );
    // The first request looked at the head and stopped; the install read
    // the whole artifact: no file was stored.
    let gets = transcript["http"].as_array().unwrap();
    assert_eq!(gets.len(), 2, "{transcript:#}");
    // The new slot holds the image, boots for good, and is the artifact.
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    assert_eq!(device.env_var("mender_boot_part"), "3");
    assert_eq!(device.env_var("upgrade_available"), "0");
    assert_eq!(device.show_artifact(), "release-2");
    assert_eq!(
        transcript["final_jobs"]["upparat_slot-1"]["status"],
        "SUCCEEDED"
    );
}

#[test]
fn mender_artifact_rolled_back_when_not_ready() {
    let device = common::Device::new();
    let image = common::image_bytes(256 << 10, 9);
    let artifact = device.artifact("release-2", &image, &[]);
    let scenario = slot_scenario(
        &device,
        &artifact,
        "release-2",
        &["ready"],
        serde_json::json!({"reboot": [{"sleep": 30}], "ready": [{"exit": 1}]}),
    );
    let transcript = run_on_device(&device, &scenario);
    assert_eq!(
        job_updates(&transcript),
        [
            ("IN_PROGRESS", "download_start"),
            ("IN_PROGRESS", "installation_start"),
            ("IN_PROGRESS", "reboot_start"),
            ("FAILED", "ready_hook_failed"),
        ]
        .map(|(status, state)| (status.to_string(), state.to_string())),
        "{transcript:#}"
    );
    // Given up: the previous slot boots again, nothing was committed.
    assert_eq!(device.env_var("mender_boot_part"), "2");
    assert_eq!(device.env_var("upgrade_available"), "0");
    assert_eq!(device.show_artifact(), "release-1");
}

#[test]
fn mender_artifact_for_another_device_type_is_refused() {
    let device = common::Device::new();
    let other = tempfile::tempdir().unwrap();
    let image = common::image_bytes(64 << 10, 3);
    // Same name, another device type: the install refuses it before the
    // first payload byte; no reboot, the slot untouched.
    let image_path = other.path().join("other.img");
    std::fs::write(&image_path, &image).unwrap();
    let artifact = other.path().join("other.mender");
    common::run_ok(
        Command::new("mender-artifact")
            .args([
                "write",
                "rootfs-image",
                "-t",
                "another-board",
                "-n",
                "release-2",
                "-f",
            ])
            .arg(&image_path)
            .arg("-o")
            .arg(&artifact),
    );
    let before = device.slot(3);
    let mut scenario = slot_scenario(
        &device,
        &artifact,
        "release-2",
        &["ready"],
        serde_json::json!({}),
    );
    scenario["actions"] = serde_json::json!([]);
    let transcript = run_on_device(&device, &scenario);
    let updates = job_updates(&transcript);
    assert_eq!(
        updates.last().map(|(s, st)| (s.as_str(), st.as_str())),
        Some(("FAILED", "installation_hook_failed")),
        "{transcript:#}"
    );
    assert!(
        transcript["hooks"].as_array().unwrap().is_empty(),
        "{transcript:#}"
    );
    // The install's own words, not a log line.
    let message = transcript["final_jobs"]["upparat_slot-1"]["statusDetails"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message
            .starts_with("artifact refused: the artifact is not compatible with this device type"),
        "{message}"
    );
    assert_eq!(device.slot(3), before);
    assert_eq!(device.env_var("mender_boot_part"), "2");
    assert_eq!(device.show_artifact(), "release-1");
}

#[test]
fn mender_artifact_agent_killed_mid_install() {
    // The agent and its install are killed (SIGKILL to the process group)
    // while the install streams (the server stalls the install's request
    // after 1 MiB: the first request, the head, goes through); the next
    // agent redoes the job (the standalone install repairs what the killed
    // one left) and ends it.
    let device = common::Device::new();
    let image = common::image_bytes(4 << 20, 11);
    let artifact = device.artifact("release-2", &image, &[]);
    let mut scenario = slot_scenario(
        &device,
        &artifact,
        "release-2",
        &["ready"],
        serde_json::json!({"reboot": [{"sleep": 30}]}),
    );
    let reboot = scenario["actions"][0].clone();
    scenario["actions"] = serde_json::json!([
        {"when": {"event": "http-stalled"}, "do": "restart_client", "down_s": 0.2},
        reboot,
    ]);
    scenario["http"] =
        serde_json::json!({"stall_after_bytes": 1 << 20, "stall_skip": 1, "stall_release_s": 3});
    let transcript = run_on_device(&device, &scenario);
    let events: Vec<&str> = transcript["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["event"].as_str())
        .collect();
    assert!(
        events.contains(&"http-stalled") && events.contains(&"restart_client"),
        "{events:?}"
    );
    // Three agents: killed mid-install, rebooted, verified.
    assert_eq!(transcript["client_starts"], 3, "{transcript:#}");
    assert_eq!(
        transcript["final_jobs"]["upparat_slot-1"]["status"], "SUCCEEDED",
        "{transcript:#}"
    );
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    assert_eq!(device.env_var("mender_boot_part"), "3");
    assert_eq!(device.env_var("upgrade_available"), "0");
    assert_eq!(device.show_artifact(), "release-2");
}
