//! Update Modules v3 in standalone mode through the real binary: a custom
//! module that reads its payload through `stream-next` and the stream
//! FIFOs, and one whose `ArtifactInstall` fails (rollback, failure and
//! cleanup calls follow, as in the reference).
mod common;

use common::{require, run_ok, Device, DEVICE_TYPE};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Installs `<share>/modules/v3/<name>` with `body` (a `case "$1"` arm
/// list); every call is logged to `<root>/calls`.
fn install_module(device: &Device, name: &str, body: &str) {
    let dir = device.root().join("share/modules/v3");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let log = device.root().join("calls");
    let out = device.root().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$1\" >>{log}\nOUT={out}\ncase \"$1\" in\n{body}\nesac\nexit 0\n",
            log = log.display(),
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn calls(device: &Device) -> String {
    std::fs::read_to_string(device.root().join("calls"))
        .unwrap_or_default()
        .lines()
        .collect::<Vec<_>>()
        .join(",")
}

fn module_artifact(device: &Device, kind: &str, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    require("mender-artifact");
    let dir = device.root().join(format!("src-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let out = device.root().join(format!("{name}.mender"));
    let mut cmd = Command::new("mender-artifact");
    cmd.args([
        "write",
        "module-image",
        "-T",
        kind,
        "-n",
        name,
        "-t",
        DEVICE_TYPE,
    ]);
    for (file, content) in files {
        let path = dir.join(file);
        std::fs::write(&path, content).unwrap();
        cmd.arg("-f").arg(&path);
    }
    cmd.arg("-o").arg(&out);
    run_ok(&mut cmd);
    out
}

fn tree(device: &Device) -> PathBuf {
    device.root().join("data/modules/v3/payloads/0000/tree")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn download_through_stream_next() {
    let device = Device::new();
    install_module(
        &device,
        "streamer",
        r#"Download)
    while true; do
        next=""
        read -r next <stream-next
        [ -z "$next" ] && break
        cat "$next" >"tmp/$(basename "$next")"
        echo "$next" >>tmp/streams
    done ;;
SupportsRollback) echo Yes ;;
ArtifactInstall) cp tmp/* "$OUT"/ ; cat header/payload_type >"$OUT/type" ;;
NeedsArtifactReboot) echo No ;;"#,
    );
    let big = common::image_bytes(300 * 1024, 7);
    let artifact = module_artifact(
        &device,
        "streamer",
        "mod-stream-1",
        &[("first.bin", &big), ("second.txt", b"second file\n")],
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert_eq!(
        calls(&device),
        "Download,SupportsRollback,ArtifactInstall,NeedsArtifactReboot"
    );
    let out_dir = device.root().join("out");
    assert_eq!(read(&out_dir.join("first.bin")), big);
    assert_eq!(read(&out_dir.join("second.txt")), b"second file\n");
    assert_eq!(read(&out_dir.join("type")), b"streamer");
    assert_eq!(
        String::from_utf8(read(&out_dir.join("streams"))).unwrap(),
        "streams/first.bin\nstreams/second.txt\n"
    );
    // Streamed, never stored by the client.
    assert!(!tree(&device).join("files").exists());
    assert_eq!(
        String::from_utf8(read(&tree(&device).join("header/artifact_name"))).unwrap(),
        "mod-stream-1"
    );
    assert_ne!(device.show_artifact(), "mod-stream-1");
    device.otalite_ok(&["commit"]);
    assert_eq!(
        calls(&device),
        "Download,SupportsRollback,ArtifactInstall,NeedsArtifactReboot,ArtifactCommit,Cleanup"
    );
    assert_eq!(device.show_artifact(), "mod-stream-1");
    assert!(!tree(&device).exists());
}

#[test]
fn failing_artifact_install_rolls_back() {
    let device = Device::new();
    install_module(
        &device,
        "failer",
        r#"SupportsRollback) echo Yes ;;
ArtifactInstall) test -f files/payload.txt && exit 1 ;;"#,
    );
    let before = device.show_artifact();
    let artifact = module_artifact(&device, "failer", "mod-fail-1", &[("payload.txt", b"x\n")]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stderr(&out));
    assert_eq!(
        calls(&device),
        "Download,SupportsRollback,ArtifactInstall,SupportsRollback,ArtifactRollback,ArtifactFailure,Cleanup"
    );
    assert_eq!(device.show_artifact(), before);
    assert!(!tree(&device).exists());
    // Nothing waits: commit has nothing to do.
    assert_eq!(device.otalite(&["commit"]).status.code(), Some(2));
}
