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
use supervisor::{Memory, Options};

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
        power_cut_after: None,
        identity: "mac=02:00:00:00:5e:0a\n".into(),
    };
    let summary = supervisor::run(&options, &mut memory).unwrap();
    assert_eq!(
        statuses(&server, &first),
        [
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
        power_cut_after: Some(2000),
        identity: "mac=02:00:00:00:5e:0b\n".into(),
        ..options
    };
    let summary = supervisor::run(&options, &mut memory).unwrap();
    assert!(summary.power_cut);
    assert_eq!(statuses(&server, &second), ["downloading", "failure"]);
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
        power_cut_after: None,
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
