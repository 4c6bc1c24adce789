//! `examples/supervisor.rs` against the project's Mender test server: a
//! whole managed deployment through the simulated reboot to `success`, then
//! a second device that loses power in the middle of its download,
//! reports the interrupted deployment as failed from its persisted state,
//! and takes the next deployment to `success`.
#![allow(clippy::std_instead_of_core, unreachable_pub)]

#[path = "../examples/supervisor.rs"]
#[allow(dead_code)]
mod supervisor;

use otalite_testserver::{ServerConfig, TestServer};
use std::path::Path;
use supervisor::{Memory, Options, PowerCut};

const ARTIFACT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/artifacts/rootfs-gzip.mender"
);
const IMAGE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/artifacts/img.ext4"
);

fn statuses(server: &TestServer, id: &str) -> Vec<String> {
    server.statuses(id).into_iter().map(|(s, _)| s).collect()
}

/// The status reports and artifact downloads the server saw, in order.
fn reports_and_downloads(server: &TestServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter_map(|r| match r.reported {
            Some(status) => Some(status),
            None if r.path.starts_with("/download/") => Some(format!("GET {}", r.status)),
            None => None,
        })
        .collect()
}

fn env_var(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("bootenv"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")).map(str::to_string))
        .unwrap_or_default()
}

fn slot(dir: &Path, part: u32) -> Vec<u8> {
    std::fs::read(dir.join(format!("slot-{part}.img"))).unwrap()
}

#[test]
fn supervisor_deploys_and_recovers_from_a_power_cut() {
    let server = TestServer::start(ServerConfig::default());
    let image = std::fs::read(IMAGE).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut memory = Box::new(Memory::new());

    // A whole deployment, through the reboot into the new slot.
    let first = server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
    let dir = temp.path().join("device-a");
    let options = Options {
        server: server.url(),
        dir: dir.clone(),
        power_cut: None,
        identity: "mac=02:00:00:00:5e:0a\n".into(),
    };
    let summary = supervisor::run(&options, &mut memory).unwrap();
    // `downloading` before the open, once open, once verified (as the
    // reference).
    assert_eq!(
        statuses(&server, &first),
        [
            "downloading",
            "downloading",
            "downloading",
            "installing",
            "rebooting",
            "installing",
            "success"
        ]
    );
    assert_eq!(
        reports_and_downloads(&server),
        [
            "downloading",
            "GET 200",
            "downloading",
            "downloading",
            "installing",
            "rebooting",
            "installing",
            "success"
        ]
    );
    assert_eq!((summary.boots, summary.active), (2, 3));
    assert_eq!(summary.installed, "release-2");
    assert_eq!(&slot(&dir, 3)[..image.len()], &image[..]);
    assert_eq!(env_var(&dir, "mender_boot_part"), "3");
    assert_eq!(env_var(&dir, "upgrade_available"), "0");

    // Another device loses power 2000 bytes into the download.
    let second = server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
    let dir = temp.path().join("device-b");
    let options = Options {
        dir: dir.clone(),
        power_cut: Some(PowerCut::AfterBytes(2000)),
        identity: "mac=02:00:00:00:5e:0b\n".into(),
        ..options
    };
    let summary = supervisor::run(&options, &mut memory).unwrap();
    assert!(summary.power_cut);
    // Cut after the open's `downloading`, before the verified one.
    assert_eq!(
        statuses(&server, &second),
        ["downloading", "downloading", "failure"]
    );
    assert!(!server.logs(&second).is_empty(), "the failure's log");
    assert_eq!(
        (summary.active, summary.installed.as_str()),
        (2, "release-1")
    );
    assert_eq!(env_var(&dir, "mender_boot_part"), "2");
    assert_eq!(env_var(&dir, "upgrade_available"), "0");

    // It recovered: the next deployment goes through.
    let third = server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
    let options = Options {
        power_cut: None,
        ..options
    };
    let summary = supervisor::run(&options, &mut memory).unwrap();
    assert_eq!(statuses(&server, &third).last().unwrap(), "success");
    assert_eq!(
        (summary.active, summary.installed.as_str()),
        (3, "release-2")
    );
    assert_eq!(&slot(&dir, 3)[..image.len()], &image[..]);
    server.assert_conformant();
}

/// The power goes out right after each durable write of a deployment in
/// turn (every state record and boot environment write): the device
/// always ends consistent, with exactly one final status on the server.
#[test]
fn power_cut_after_every_durable_write() {
    let server = TestServer::start(ServerConfig::default());
    let temp = tempfile::tempdir().unwrap();
    let mut memory = Box::new(Memory::new());
    // How many durable writes a deployment makes.
    server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
    let clean = supervisor::run(
        &Options {
            server: server.url(),
            dir: temp.path().join("clean"),
            power_cut: None,
            identity: "mac=02:00:00:00:5e:c0\n".into(),
        },
        &mut memory,
    )
    .unwrap();
    let mut results = Vec::new();
    for write in 1..=clean.writes {
        let id = server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
        let dir = temp.path().join(format!("cut-{write}"));
        let summary = supervisor::run(
            &Options {
                server: server.url(),
                dir: dir.clone(),
                power_cut: Some(PowerCut::AfterWrite(write)),
                identity: format!("mac=02:00:00:00:5e:{write:02x}\n"),
            },
            &mut memory,
        )
        .unwrap();
        let statuses = statuses(&server, &id);
        let finals: Vec<&String> = statuses
            .iter()
            .filter(|s| *s == "success" || *s == "failure")
            .collect();
        results.push(format!(
            "cut after write {write}: {statuses:?}, runs {} with {} installed, env part {} upgrade {}",
            summary.active,
            summary.installed,
            env_var(&dir, "mender_boot_part"),
            env_var(&dir, "upgrade_available")
        ));
        assert!(summary.power_cut, "{results:#?}");
        assert_eq!(finals.len(), 1, "{results:#?}");
        let expected_part = if summary.installed == "release-2" {
            "3"
        } else {
            "2"
        };
        assert_eq!(
            (finals[0].as_str() == "success"),
            summary.installed == "release-2",
            "{results:#?}"
        );
        assert_eq!(
            env_var(&dir, "mender_boot_part"),
            expected_part,
            "{results:#?}"
        );
        assert_eq!(env_var(&dir, "upgrade_available"), "0", "{results:#?}");
        assert_eq!(summary.active.to_string(), expected_part, "{results:#?}");
    }
    eprintln!("{}", results.join("\n"));
    server.assert_conformant();
}

/// Network faults: the download drops twice (the agent resumes with
/// `Range`, the host frames it with `write_download_head`), the token
/// expires before a status report (401, authenticate again), the server
/// answers 503 once to the update check.
#[test]
fn supervisor_rides_out_network_faults() {
    use otalite_testserver::{Endpoint, Fault};
    let server = TestServer::start(ServerConfig::default());
    let image = std::fs::read(IMAGE).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut memory = Box::new(Memory::new());
    let id = server.add_deployment(ARTIFACT, "release-2", &[supervisor::DEVICE_TYPE]);
    server.inject(Fault::status(Endpoint::NextV1, 503));
    server.inject(Fault::drop_download_after(1500));
    server.inject(Fault::drop_download_after(1000));
    server.inject(Fault::expire_token(Endpoint::Status(Some(
        "installing".into(),
    ))));
    let dir = temp.path().join("device");
    let summary = supervisor::run(
        &Options {
            server: server.url(),
            dir: dir.clone(),
            power_cut: None,
            identity: "mac=02:00:00:00:5e:fa\n".into(),
        },
        &mut memory,
    )
    .unwrap();
    assert_eq!(server.pending_faults(), 0);
    assert_eq!(statuses(&server, &id).last().unwrap(), "success");
    assert_eq!(
        (summary.active, summary.installed.as_str()),
        (3, "release-2")
    );
    assert_eq!(&slot(&dir, 3)[..image.len()], &image[..]);
    let downloads: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/download/"))
        .map(|r| r.status)
        .collect();
    assert_eq!(downloads, [200, 206, 206], "resumed with Range");
    server.assert_conformant();
}
