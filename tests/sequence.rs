//! The daemon's request sequence against the reference's: the real
//! `otalite daemon` and the real `mender daemon` 3.4 (Debian's
//! `mender-client`, run by `tests/refdevice/device.sh` with loop-device
//! slots) each go through the same deployments against the project's test
//! server, and the device-API requests the server saw are compared.
//!
//! Cases: a rootfs deployment through the reboot to `success` (the reboot
//! is a fake `reboot` in `PATH`; the test kills the daemon as the machine
//! would, sets `bootcount=1` as the bootloader's trial boot would, and
//! starts it again); a corrupted artifact reported as `failure` with the
//! deployment log, before any reboot; an artifact for another device type,
//! likewise. Polls are 1 s, so each run takes seconds.
//!
//! The reference runs live when it can (root, `mender` installed: CI, see
//! `.ci/setup`); its sequence must then also match the recording checked in
//! under `tests/fixtures/sequences/` (a stale recording fails: re-record
//! with `cargo xtask record-sequences`). Without root or `mender`, otalite
//! is compared with the recording alone. The server's conformance checks
//! are asserted for otalite only: the reference sends every body but the
//! auth request with `Transfer-Encoding: chunked`, which otalite-testserver
//! flags (mender-protocol.md section 1 asks for a `Content-Length`).
//!
//! # What is compared
//!
//! Every request becomes one line: method, path with the deployment and
//! artifact ids replaced by `{id}` / `{artifact}`, the `status` value of a
//! status report, and the answer's code; `(reboot)` marks where the daemon
//! was killed by the reboot. The sequence ends with the first update check
//! after the first inventory that follows the final report.
//!
//! Exact (order and count): every authentication (the reference
//! authenticates once per start and again only after a 401, never before a
//! report), every status report with its value, the download, the log
//! upload, the inventory after the deployment, the re-authentication after
//! the reboot.
//!
//! Normalized, and why:
//! - **The form of an update check.** The reference asks `POST v2 next`,
//!   and on 404 (the OSS server, as here) `POST v1 next`, on every check;
//!   otalite remembers the v2 404 for the life of the process and asks
//!   `GET v1 next?artifact_name=&device_type=` (like the C++ client): a
//!   documented departure, both valid on every server. A v2 `next` answered
//!   404 and followed by a v1 `next` is dropped, and any `next` becomes
//!   `update check -> <code>`.
//! - **Idle repeats.** How many inventories and empty update checks fit in
//!   a stretch of idling depends on the clock (1 s polls against the time a
//!   step takes), so in a run of consecutive idle requests (inventory
//!   answered 200, update check answered 204) only the first of each kind
//!   is kept, in the order they first appear: "inventory first, then a
//!   check" stays significant, the number of polls does not.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::managed::*;
use common::reference::*;
use common::*;
use otalite_testserver::{RequestRecord, ServerConfig, TestServer};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to re-record the reference's sequences into the fixtures (root and
/// `mender` needed; `cargo xtask record-sequences` sets it).
const RECORD: &str = "OTALITE_RECORD_SEQUENCES";
const REBOOT: &str = "(reboot)";
const UPDATE_CHECK: &str = "update check";
const INVENTORY: &str = "/api/devices/v1/inventory/device/attributes";
const NEXT_V2: &str = "POST /api/devices/v2/deployments/device/deployments/next -> 404";
const DEPLOYMENTS: &str = "/api/devices/v1/deployments/device/deployments/";

#[derive(Clone, Copy, Debug)]
enum Case {
    /// Deploy, reboot into the trial slot, commit, report `success`.
    Success,
    /// A corrupted payload: `failure` and the log, no reboot.
    Failure,
    /// An artifact for another device type (the server offers it: its
    /// deployment says this device type): `failure` and the log.
    WrongDeviceType,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::WrongDeviceType => "wrong-device-type",
        }
    }

    fn fixture(self) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/sequences")
            .join(format!("{}.txt", self.name()))
    }

    /// Writes the case's artifact (`release-2` for [`DEVICE_TYPE`]) in `dir`.
    fn artifact(self, dir: &Path) -> PathBuf {
        match self {
            Self::Success => write_artifact(dir, "release-2", &image_bytes(1 << 20, 31), &[]),
            Self::Failure => {
                let artifact = write_artifact(
                    dir,
                    "release-2",
                    &image_bytes(1 << 20, 5),
                    &["--compression", "none"],
                );
                // One byte of the (uncompressed) image's tail: the payload
                // checksum fails once the whole payload was streamed.
                let mut bytes = std::fs::read(&artifact).unwrap();
                let at = bytes.len() - 4096;
                bytes[at] ^= 0xFF;
                std::fs::write(&artifact, bytes).unwrap();
                artifact
            }
            Self::WrongDeviceType => {
                let image = dir.join("other.img");
                std::fs::write(&image, image_bytes(1 << 20, 7)).unwrap();
                let artifact = dir.join("other.mender");
                run_ok(
                    Command::new("mender-artifact")
                        .args([
                            "write",
                            "rootfs-image",
                            "-t",
                            "other-board",
                            "-n",
                            "release-2",
                            "-f",
                        ])
                        .arg(&image)
                        .arg("-o")
                        .arg(&artifact),
                );
                artifact
            }
        }
    }
}

/// One request as a comparable line (see the module documentation).
fn line(request: &RequestRecord) -> String {
    let mut path = request.path.clone();
    if let Some(rest) = path.strip_prefix(DEPLOYMENTS) {
        if let Some((_, tail)) = rest.split_once('/') {
            path = format!("{DEPLOYMENTS}{{id}}/{tail}");
        }
    } else if path.starts_with("/download/") {
        path = "/download/{artifact}".into();
    }
    match &request.reported {
        Some(status) => format!("{} {path} {status} -> {}", request.method, request.status),
        None => format!("{} {path} -> {}", request.method, request.status),
    }
}

fn is_next(line: &str) -> bool {
    line.contains("/deployments/device/deployments/next ")
}

fn is_final_report(line: &str) -> bool {
    line.contains("/status success ") || line.contains("/status failure ")
}

/// Where the recorded sequence ends: the end of the first update check after
/// the first inventory after the final report; `None` until it happened.
fn end_of_sequence(lines: &[String]) -> Option<usize> {
    let report = lines.iter().position(|l| is_final_report(l))?;
    let inventory = report
        + 1
        + lines[report + 1..]
            .iter()
            .position(|l| l.contains(INVENTORY))?;
    let check = inventory
        + 1
        + lines[inventory + 1..]
            .iter()
            .position(|l| is_next(l) && l != NEXT_V2)?;
    Some(check + 1)
}

fn lines_of(server: &TestServer) -> Vec<String> {
    server.requests().iter().map(line).collect()
}

/// Runs `case` on `client` and returns the raw sequence of lines.
fn run(client: &dyn Client, case: Case) -> Vec<String> {
    let server = client.server();
    let artifact = case.artifact(&client.dir());
    let id = server.add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    let mut reboot_at = None;
    let mut daemon = client.start();
    if let Case::Success = case {
        wait_for(client, "the reboot", || client.reboots() > 0);
        // The machine goes down: the daemon dies with it.
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        reboot_at = Some(server.requests().len());
        client.trial_boot();
        daemon = client.start();
    }
    wait_for(
        client,
        "the final report, then an inventory and an update check",
        || end_of_sequence(&lines_of(server)).is_some(),
    );
    drop(daemon);
    let finals: Vec<String> = server
        .statuses(&id)
        .into_iter()
        .map(|(status, _)| status)
        .filter(|s| s == "success" || s == "failure")
        .collect();
    let expected = match case {
        Case::Success => "success",
        Case::Failure | Case::WrongDeviceType => "failure",
    };
    assert_eq!(finals, [expected], "{}", client.log());
    let mut lines = lines_of(server);
    let end = end_of_sequence(&lines).unwrap();
    lines.truncate(end);
    if let Some(at) = reboot_at {
        lines.insert(at, REBOOT.into());
    }
    lines
}

/// The comparable form (see the module documentation).
fn normalize(lines: &[String]) -> Vec<String> {
    // Update checks, whatever their form.
    let mut checks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line == NEXT_V2 && lines.get(i + 1).is_some_and(|next| is_next(next)) {
            continue;
        }
        if is_next(line) {
            let code = line.rsplit(" -> ").next().unwrap_or("?");
            checks.push(format!("{UPDATE_CHECK} -> {code}"));
        } else {
            checks.push(line.clone());
        }
    }
    // Idle repeats.
    let idle = |line: &str| {
        line == format!("{UPDATE_CHECK} -> 204")
            || (line.contains(INVENTORY) && line.ends_with(" -> 200"))
    };
    let mut out: Vec<String> = Vec::new();
    let mut run_start = 0;
    for line in checks {
        if !idle(&line) {
            out.push(line);
            run_start = out.len();
        } else if !out[run_start..].contains(&line) {
            out.push(line);
        }
    }
    out
}

fn read_fixture(case: Case) -> Vec<String> {
    fixture_lines(&case.fixture(), "`cargo xtask record-sequences`")
}

fn write_fixture(case: Case, lines: &[String]) {
    write_fixture_lines(
        &case.fixture(),
        &format!(
            "# The reference's device-API requests, case `{}` of tests/sequence.rs.\n\
             # Recorded by `cargo xtask record-sequences` with `{}`\n\
             # (tests/refdevice/device.sh, otalite-testserver, 1 s polls). Raw: the\n\
             # test normalizes it (see tests/sequence.rs) before comparing.\n",
            case.name(),
            Reference::version()
        ),
        lines,
    );
}

fn check(case: Case) {
    let recording = Recording {
        record_var: RECORD,
        fixture: case.fixture(),
        read: &|| read_fixture(case),
        write: &|lines| write_fixture(case, lines),
        same: &|a, b| normalize(a) == normalize(b),
        show: &|live, recorded| side_by_side("live reference", live, "recorded", recorded),
    };
    let Some(reference) = recording.reference(|| run(&Reference::new(), case)) else {
        return;
    };
    let managed = Managed::new(ServerConfig::default());
    let otalite = run(&managed, case);
    assert!(
        normalize(&otalite) == normalize(&reference),
        "otalite's request sequence differs from the reference's (case {}).\nNormalized:\n{}\nRaw:\n{}",
        case.name(),
        side_by_side("otalite", &normalize(&otalite), "reference", &normalize(&reference)),
        side_by_side("otalite", &otalite, "reference", &reference)
    );
    managed.done(&format!("sequence {}", case.name()));
}

#[test]
fn successful_deployment_through_the_reboot() {
    check(Case::Success);
}

#[test]
fn failed_deployment_reports_failure_and_the_log() {
    check(Case::Failure);
}

#[test]
fn artifact_for_another_device_type_reports_failure() {
    check(Case::WrongDeviceType);
}

#[test]
fn normalization() {
    let lines: Vec<String> = [
        "POST /api/devices/v1/authentication/auth_requests -> 200",
        "PUT /api/devices/v1/inventory/device/attributes -> 200",
        NEXT_V2,
        "POST /api/devices/v1/deployments/device/deployments/next -> 204",
        "PUT /api/devices/v1/inventory/device/attributes -> 200",
        NEXT_V2,
        "POST /api/devices/v1/deployments/device/deployments/next -> 204",
        "GET /api/devices/v1/deployments/device/deployments/next -> 200",
        "PUT /api/devices/v1/deployments/device/deployments/{id}/status downloading -> 204",
        "GET /api/devices/v1/deployments/device/deployments/next -> 204",
        "GET /api/devices/v1/deployments/device/deployments/next -> 204",
        "PUT /api/devices/v1/inventory/device/attributes -> 200",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        normalize(&lines),
        [
            "POST /api/devices/v1/authentication/auth_requests -> 200",
            "PUT /api/devices/v1/inventory/device/attributes -> 200",
            "update check -> 204",
            "update check -> 200",
            "PUT /api/devices/v1/deployments/device/deployments/{id}/status downloading -> 204",
            "update check -> 204",
            "PUT /api/devices/v1/inventory/device/attributes -> 200",
        ]
    );
    assert_eq!(end_of_sequence(&lines), None);
    let mut done = lines.clone();
    done.insert(
        9,
        "PUT /api/devices/v1/deployments/device/deployments/{id}/status failure -> 204".into(),
    );
    // Report, check, check, inventory: the sequence ends after the next check.
    assert_eq!(end_of_sequence(&done), None);
    done.push(NEXT_V2.into());
    assert_eq!(end_of_sequence(&done), None);
    done.push("POST /api/devices/v1/deployments/device/deployments/next -> 204".into());
    assert_eq!(end_of_sequence(&done), Some(done.len()));
}
