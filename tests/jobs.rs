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
