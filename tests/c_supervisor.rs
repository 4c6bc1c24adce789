//! The C API from C: builds `libotalite_capi.a` (`cargo build -p
//! otalite-capi`, the real no_std configuration), compiles
//! `examples/c-supervisor/supervisor.c` with gcc (C99, `-Werror`) against
//! it and `targets/capi/include/otalite.h`, and runs it against the
//! project's Mender test server: a whole managed deployment of a real
//! artifact through the simulated reboot to `success`, then a device that
//! loses power in the middle of its download and recovers, then a device
//! whose download drops twice and is resumed.
#![allow(clippy::std_instead_of_core, unreachable_pub)]

use otalite_testserver::{AuthOutcome, Fault, KeyType, ServerConfig, TestServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

/// `cargo build -p otalite-capi`; the path of the static library.
fn build_library() -> PathBuf {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root())
        .args([
            "build",
            "-p",
            "otalite-capi",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build -p otalite-capi failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .filter(|line| line.contains("\"name\":\"otalite_capi\""))
        .find_map(|line| {
            let files = line.split("\"filenames\":[\"").nth(1)?;
            let file = files.split('"').next()?;
            file.ends_with(".a").then(|| PathBuf::from(file))
        })
        .expect("no libotalite_capi.a in cargo's output")
}

/// gcc -std=c99 ... supervisor.c libotalite_capi.a -o `out`.
fn compile(library: &Path, out: &Path) {
    let source = root().join("examples/c-supervisor/supervisor.c");
    let output = Command::new("gcc")
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
            "-I",
        ])
        .arg(root().join("targets/capi/include"))
        .arg(&source)
        .arg(library)
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .output()
        .expect("gcc is not installed");
    assert!(
        output.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the C supervisor (killed after a minute).
fn run(binary: &Path, server: &TestServer, dir: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(binary)
        .arg("--server")
        .arg(server.url())
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C supervisor");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

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

#[test]
fn c_supervisor_deploys_through_the_c_api() {
    let temp = tempfile::tempdir().unwrap();
    let binary = temp.path().join("c-supervisor");
    compile(&build_library(), &binary);

    let server = TestServer::start(ServerConfig::default());
    let artifact = root().join("tests/fixtures/artifacts/rootfs-gzip.mender");
    let image = std::fs::read(root().join("tests/fixtures/artifacts/img.ext4")).unwrap();

    // A whole deployment through the reboot into slot B.
    let first = server.add_deployment(&artifact, "release-2", &["beaglebone"]);
    let dir = temp.path().join("device-a");
    let output = run(&binary, &server, &dir, &[]);
    assert!(output.status.success(), "the C supervisor failed");
    // `downloading` before the open, once open, once verified.
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
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("partition 3 runs release-2"), "{stdout}");
    let slot = std::fs::read(dir.join("slot-3.img")).unwrap();
    assert_eq!(&slot[..image.len()], &image[..], "slot B holds the image");
    assert_eq!(env_var(&dir, "mender_boot_part"), "3");
    assert_eq!(env_var(&dir, "upgrade_available"), "0");
    // The device authenticated with its P-256 key, signed by the library.
    let auths = server.auth_requests();
    assert!(auths
        .iter()
        .all(|a| a.key_type == Some(KeyType::EcdsaP256) && a.outcome == AuthOutcome::Accepted));

    // Another device loses power 2000 bytes into its download: the next
    // power-on reports the interrupted deployment as failed...
    let second = server.add_deployment(&artifact, "release-2", &["beaglebone"]);
    let dir = temp.path().join("device-b");
    let identity = ["--identity", "mac=02:00:00:00:c0:0b\n"];
    let output = run(
        &binary,
        &server,
        &dir,
        &[&identity[..], &["--power-cut-after", "2000"]].concat(),
    );
    assert!(output.status.success(), "the C supervisor failed");
    assert!(String::from_utf8_lossy(&output.stdout).contains("POWER CUT"));
    assert_eq!(
        statuses(&server, &second),
        ["downloading", "downloading", "failure"]
    );
    assert!(!server.logs(&second).is_empty(), "the failure's log");
    assert_eq!(env_var(&dir, "mender_boot_part"), "2");
    assert_eq!(env_var(&dir, "upgrade_available"), "0");

    // ...and takes the next one to success.
    let third = server.add_deployment(&artifact, "release-2", &["beaglebone"]);
    let output = run(&binary, &server, &dir, &identity);
    assert!(output.status.success(), "the C supervisor failed");
    assert_eq!(statuses(&server, &third).last().unwrap(), "success");
    assert_eq!(env_var(&dir, "mender_boot_part"), "3");

    // A third device's download drops twice: the agent opens it again
    // where it stopped (OPEN_ARTIFACT with `from`, a `Range` request
    // framed by otalite_download_head) and the deployment succeeds, with
    // the open's `downloading` reported once.
    let downloads_before = downloads(&server).len();
    let fourth = server.add_deployment(&artifact, "release-2", &["beaglebone"]);
    server.inject(Fault::drop_download_after(1500));
    server.inject(Fault::drop_download_after(1000));
    let dir = temp.path().join("device-c");
    let output = run(
        &binary,
        &server,
        &dir,
        &["--identity", "mac=02:00:00:00:c0:0c\n"],
    );
    assert!(output.status.success(), "the C supervisor failed");
    assert_eq!(server.pending_faults(), 0);
    assert_eq!(
        statuses(&server, &fourth),
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
    assert_eq!(downloads(&server)[downloads_before..], [200, 206, 206]);
    let slot = std::fs::read(dir.join("slot-3.img")).unwrap();
    assert_eq!(&slot[..image.len()], &image[..], "slot B holds the image");
    server.assert_conformant();
}

/// The answers to the artifact downloads so far.
fn downloads(server: &TestServer) -> Vec<u16> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/download/"))
        .map(|r| r.status)
        .collect()
}
