//! End-to-end tests of the standalone CLI on a file-backed A/B device:
//! artifacts from the real `mender-artifact`, the env read back by the real
//! `fw_printenv`, slot bytes compared exactly.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::*;
use std::process::Command;

fn assert_untouched(device: &Device) {
    let env = device.env();
    assert_eq!(
        env.get("mender_boot_part").map(String::as_str),
        Some("2"),
        "{env:?}"
    );
    assert_eq!(
        env.get("upgrade_available").map(String::as_str),
        Some("0"),
        "{env:?}"
    );
    assert_eq!(device.show_artifact(), "release-1");
    assert_eq!(device.otalite(&["commit"]).status.code(), Some(2));
}

#[test]
fn install_commit_every_compression() {
    for compression in ["none", "gzip", "lzma"] {
        let device = Device::new();
        let image = image_bytes(3 << 20 | 1234, 7);
        let artifact = device.artifact("release-2", &image, &["--compression", compression]);
        let out = device.otalite(&["install", artifact.to_str().unwrap()]);
        assert!(out.status.success(), "{compression}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Use 'commit' to update"));
        // The image is in slot B, byte for byte; slot A is untouched.
        let slot_b = device.slot(3);
        assert_eq!(&slot_b[..image.len()], &image[..], "{compression}");
        assert!(device.slot(2).iter().all(|&b| b == 0));
        let env = device.env();
        assert_eq!(env["mender_boot_part"], "3");
        assert_eq!(env["mender_boot_part_hex"], "3");
        assert_eq!(env["upgrade_available"], "1");
        assert_eq!(env["bootcount"], "0");
        // The name changes only at commit.
        assert_eq!(device.show_artifact(), "release-1");
        device.otalite_ok(&["commit"]);
        assert_eq!(device.env_var("upgrade_available"), "0");
        assert_eq!(device.env_var("mender_boot_part"), "3");
        assert_eq!(device.show_artifact(), "release-2");
        let provides = device.otalite_ok(&["show-provides"]);
        assert!(provides.contains("artifact_name=release-2\n"), "{provides}");
        assert!(
            provides.contains("rootfs-image.version=release-2\n"),
            "{provides}"
        );
        assert_eq!(device.otalite(&["commit"]).status.code(), Some(2));
    }
}

#[test]
fn zstd_artifact_made_by_repacking() {
    // Debian's mender-artifact cannot write zstd: repack the data member.
    let device = Device::new();
    let image = image_bytes(1 << 20, 3);
    let plain = device.artifact("release-2", &image, &["--compression", "none"]);
    let work = device.root().join("repack");
    std::fs::create_dir_all(&work).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&plain)
            .arg("-C")
            .arg(&work),
    );
    run_ok(
        Command::new("zstd")
            .args(["-q", "--rm", "-19"])
            .arg(work.join("data/0000.tar")),
    );
    let members: Vec<&str> = vec!["version", "manifest", "header.tar", "data/0000.tar.zst"];
    let zstd = device.root().join("release-2-zstd.mender");
    run_ok(
        Command::new("tar")
            .args(["--format=ustar", "-cf"])
            .arg(&zstd)
            .arg("-C")
            .arg(&work)
            .args(&members),
    );
    let out = device.otalite(&["install", zstd.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
}

#[test]
fn rollback_restores_the_old_slot() {
    let device = Device::new();
    let artifact = device.artifact("release-2", &image_bytes(1 << 20, 1), &[]);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    assert_eq!(device.env_var("mender_boot_part"), "3");
    device.otalite_ok(&["rollback"]);
    let env = device.env();
    assert_eq!(env["mender_boot_part"], "2");
    assert_eq!(env["mender_boot_part_hex"], "2");
    assert_eq!(env["upgrade_available"], "0");
    assert_eq!(device.show_artifact(), "release-1");
    assert_eq!(device.otalite(&["rollback"]).status.code(), Some(2));
}

#[test]
fn reboot_exit_code_and_second_install_refused_while_pending() {
    let device = Device::new();
    let artifact = device.artifact("release-2", &image_bytes(1 << 20, 1), &[]);
    let out = device.otalite(&["install", "--reboot-exit-code", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let again = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already installed"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn bootloader_fallback_discards_the_pending_update() {
    let device = Device::new();
    let artifact = device.artifact("release-2", &image_bytes(1 << 20, 1), &[]);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    // What U-Boot's altbootcmd does when the trial boot fails.
    run_ok(
        Command::new("fw_setenv")
            .arg("-c")
            .arg(device.root().join("etc/fw_env.config"))
            .args(["mender_boot_part", "2"]),
    );
    run_ok(
        Command::new("fw_setenv")
            .arg("-c")
            .arg(device.root().join("etc/fw_env.config"))
            .args(["upgrade_available", "0"]),
    );
    let out = device.otalite(&["commit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert_eq!(device.otalite(&["commit"]).status.code(), Some(2));
    assert_eq!(device.show_artifact(), "release-1");
    // A new install is possible again.
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
}

#[test]
fn corrupted_payload_is_refused_and_nothing_activated() {
    let device = Device::new();
    let artifact = device.artifact(
        "release-2",
        &image_bytes(1 << 20, 5),
        &["--compression", "none"],
    );
    let mut bytes = std::fs::read(&artifact).unwrap();
    // Flip one byte near the end of the payload (inside data/0000.tar).
    let at = bytes.len() - 4096;
    bytes[at] ^= 0xFF;
    std::fs::write(&artifact, bytes).unwrap();
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("nothing was activated"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&device);
}

#[test]
fn truncated_artifacts_are_refused() {
    let device = Device::new();
    let artifact = device.artifact("release-2", &image_bytes(256 << 10, 5), &[]);
    let bytes = std::fs::read(&artifact).unwrap();
    for cut in [
        0,
        100,
        512,
        1536,
        3000,
        bytes.len() / 2,
        // Inside the last member (its end-of-archive blocks may be missing:
        // see tests/hostile_artifacts.rs).
        bytes.len() - 1025,
        bytes.len() - 1,
    ] {
        let truncated = device.root().join("truncated.mender");
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let out = device.otalite(&["install", truncated.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "cut {cut}: {}", stderr(&out));
        assert_untouched(&device);
    }
}

#[test]
fn wrong_device_type_is_refused_before_writing() {
    let device = Device::new();
    let image = image_bytes(1 << 20, 5);
    let image_path = device.root().join("other.img");
    std::fs::write(&image_path, &image).unwrap();
    let artifact = device.root().join("other.mender");
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
            .arg(&image_path)
            .arg("-o")
            .arg(&artifact),
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("device type"), "{}", stderr(&out));
    assert!(
        device.slot(3).iter().all(|&b| b == 0),
        "no byte may be written"
    );
    assert_untouched(&device);
}

#[test]
fn depends_and_provides() {
    let device = Device::new();
    let artifact = device.artifact(
        "release-2",
        &image_bytes(256 << 10, 5),
        &[
            "--provides",
            "fw.version:7",
            "--artifact-name-depends",
            "release-0",
        ],
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("dependency"), "{}", stderr(&out));
    assert_untouched(&device);

    let ok = device.artifact(
        "release-3",
        &image_bytes(256 << 10, 5),
        &[
            "--provides",
            "fw.version:7",
            "--artifact-name-depends",
            "release-1",
            "--clears-provides",
            "rootfs-image.*",
        ],
    );
    device.otalite_ok(&["install", ok.to_str().unwrap()]);
    device.otalite_ok(&["commit"]);
    let provides = device.otalite_ok(&["show-provides"]);
    assert!(provides.contains("fw.version=7\n"), "{provides}");
    assert!(provides.contains("artifact_name=release-3\n"), "{provides}");
}

#[test]
fn module_images_are_refused_clearly() {
    let device = Device::new();
    let file = device.root().join("payload.bin");
    std::fs::write(&file, b"hello").unwrap();
    let artifact = device.root().join("module.mender");
    run_ok(
        Command::new("mender-artifact")
            .args([
                "write",
                "module-image",
                "-T",
                "my-module",
                "-t",
                DEVICE_TYPE,
                "-n",
                "mod-1",
                "-f",
            ])
            .arg(&file)
            .arg("-o")
            .arg(&artifact),
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("rootfs-image"), "{}", stderr(&out));
    assert_untouched(&device);
}

#[test]
fn image_larger_than_the_slot_is_refused() {
    let device = Device::new();
    let artifact = device.artifact("release-2", &image_bytes(SLOT_SIZE as usize + 4096, 5), &[]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("larger than the inactive partition"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&device);
}

#[test]
fn reinstalling_the_same_image_writes_nothing() {
    let device = Device::new();
    let image = image_bytes(3 << 20, 9);
    let artifact = device.artifact("release-2", &image, &[]);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    device.otalite_ok(&["rollback"]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("0 blocks written, 3 unchanged blocks skipped"),
        "{}",
        stderr(&out)
    );
}

fn keys(
    device: &Device,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    require("openssl");
    let root = device.root();
    let rsa = root.join("rsa.pem");
    let ec = root.join("ec.pem");
    // mender-artifact 3.9 reads only the traditional (PKCS#1 / SEC1) forms.
    run_ok(
        Command::new("openssl")
            .args(["genrsa", "-traditional", "-out"])
            .arg(&rsa)
            .arg("3072"),
    );
    run_ok(
        Command::new("openssl")
            .args([
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
            ])
            .arg(&ec),
    );
    let rsa_pub = root.join("rsa.pub.pem");
    let ec_pub = root.join("ec.pub.pem");
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&rsa)
            .arg("-out")
            .arg(&rsa_pub),
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&ec)
            .arg("-out")
            .arg(&ec_pub),
    );
    (rsa, rsa_pub, ec, ec_pub)
}

#[test]
fn signatures_rsa_and_ecdsa() {
    let device = Device::new();
    let (rsa, rsa_pub, ec, ec_pub) = keys(&device);
    device.write_config(&format!(
        r#", "ArtifactVerifyKeys": ["{}", "{}"]"#,
        ec_pub.display(),
        rsa_pub.display()
    ));
    let image = image_bytes(512 << 10, 2);
    // Unsigned: refused when a key is configured.
    let unsigned = device.artifact("unsigned", &image, &[]);
    let out = device.otalite(&["install", unsigned.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).to_lowercase().contains("sign"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&device);
    // Signed with an unknown key: refused.
    let other_device = Device::new();
    let (other, _, _, _) = keys(&other_device);
    let wrong = device.artifact("wrong", &image, &["-k", other.to_str().unwrap()]);
    assert_eq!(
        device
            .otalite(&["install", wrong.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    assert_untouched(&device);
    // RSA and ECDSA signed: accepted (the second and first key).
    for (name, key) in [("release-rsa", &rsa), ("release-ec", &ec)] {
        let signed = device.artifact(name, &image, &["-k", key.to_str().unwrap()]);
        let out = device.otalite(&["install", signed.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        device.otalite_ok(&["commit"]);
        assert_eq!(device.show_artifact(), name);
        // Back to a state where the next install goes to the other slot.
    }
}

#[test]
fn state_scripts_run_in_order_and_a_failing_one_aborts() {
    let device = Device::new();
    let log = device.root().join("scripts.log");
    let scripts = device.root().join("scripts-src");
    std::fs::create_dir_all(&scripts).unwrap();
    let mut args: Vec<String> = Vec::new();
    for name in [
        "ArtifactInstall_Enter_01",
        "ArtifactInstall_Leave_01",
        "ArtifactCommit_Enter_01",
        "ArtifactCommit_Leave_01",
    ] {
        let path = scripts.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho {name} >> {}\n", log.display()),
        )
        .unwrap();
        args.push("--script".into());
        args.push(path.to_str().unwrap().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let artifact = device.artifact("release-2", &image_bytes(256 << 10, 1), &args);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    device.otalite_ok(&["commit"]);
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran, "ArtifactInstall_Enter_01\nArtifactInstall_Leave_01\nArtifactCommit_Enter_01\nArtifactCommit_Leave_01\n");

    // A failing ArtifactInstall_Enter script: nothing is activated.
    let device = Device::new();
    let failing = scripts.join("ArtifactInstall_Enter_02_fail");
    std::fs::write(&failing, "#!/bin/sh\necho failing >&2\nexit 3\n").unwrap();
    let artifact = device.artifact(
        "release-2",
        &image_bytes(256 << 10, 1),
        &["--script", failing.to_str().unwrap()],
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("exit code 3"), "{}", stderr(&out));
    assert_untouched(&device);
}

#[test]
fn configuration_errors_are_clear() {
    let device = Device::new();
    std::fs::write(device.root().join("etc/mender.conf"), "{ not json").unwrap();
    let out = device.otalite(&["commit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid configuration"),
        "{}",
        stderr(&out)
    );

    let device = Device::new();
    std::fs::write(
        device.root().join("etc/mender.conf"),
        format!(
            r#"{{"FwEnvConfig": "{}"}}"#,
            device.root().join("etc/fw_env.config").display()
        ),
    )
    .unwrap();
    let artifact = device.artifact("release-2", &image_bytes(4096, 1), &[]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("RootfsPartA and RootfsPartB must be set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fallback_config_and_case_insensitive_keys() {
    let device = Device::new();
    let root = device.root();
    // Slots in the fallback file (as Yocto builds do), lower-case keys.
    std::fs::write(
        root.join("data/mender.conf"),
        format!(
            r#"{{"rootfsparta": "{}", "ROOTFSPARTB": "{}"}}"#,
            root.join("mmcblk0p2").display(),
            root.join("mmcblk0p3").display()
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/mender.conf"),
        format!(
            r#"{{"fwenvconfig": "{}"}}"#,
            root.join("etc/fw_env.config").display()
        ),
    )
    .unwrap();
    let artifact = device.artifact("release-2", &image_bytes(4096 * 3, 1), &[]);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    assert_eq!(device.env_var("mender_boot_part"), "3");
}

#[test]
fn show_commands_match_the_reference_on_a_fresh_device() {
    let device = Device::new();
    assert_eq!(device.show_artifact(), "release-1");
    assert_eq!(device.otalite_ok(&["show-provides"]), "");
    std::fs::remove_file(device.root().join("etc/artifact_info")).unwrap();
    assert_eq!(device.otalite(&["show-artifact"]).status.code(), Some(1));
    assert_eq!(device.otalite(&["rollback"]).status.code(), Some(2));
}

#[test]
fn install_over_http() {
    let device = Device::new();
    let image = image_bytes(2 << 20, 4);
    let artifact = device.artifact("release-2", &image, &[]);
    let bytes = std::fs::read(&artifact).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).unwrap();
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )
        .unwrap();
        stream.write_all(&bytes).unwrap();
    });
    device.otalite_ok(&[
        "install",
        &format!("http://127.0.0.1:{port}/release-2.mender"),
    ]);
    server.join().unwrap();
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    // A server error is reported clearly.
    device.otalite_ok(&["rollback"]);
    let out = device.otalite(&["install", "http://127.0.0.1:1/none.mender"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot download"), "{}", stderr(&out));
}

/// `install https://...` goes through the managed mode's client: the test
/// server's self-signed certificate is refused until `ServerCertificate`
/// names it, and `--skipverify` accepts it too.
#[test]
fn install_over_https_honours_server_certificate_and_skipverify() {
    use otalite_testserver::{ServerConfig, TestServer};
    let server = TestServer::start(ServerConfig::default());
    let device = Device::new();
    let image = image_bytes(1 << 20, 5);
    let artifact = device.artifact("release-2", &image, &[]);
    let id = server.add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
    let url = server.artifact_url(&id, true).unwrap();

    let out = device.otalite(&["install", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("certificate rejected"),
        "{}",
        stderr(&out)
    );
    assert_untouched(&device);

    let cert = device.root().join("etc/server.crt");
    std::fs::write(&cert, server.cert_pem()).unwrap();
    device.write_config(&format!(r#", "ServerCertificate": "{}""#, cert.display()));
    device.otalite_ok(&["install", &url]);
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    assert_eq!(device.env_var("upgrade_available"), "1");

    device.otalite_ok(&["rollback"]);
    device.write_config("");
    device.otalite_ok(&["--skipverify", "install", &url]);
    assert_eq!(device.env_var("upgrade_available"), "1");
    assert!(server.requests().iter().all(|r| r.tls));
}

#[test]
fn format_v2_artifact_installs() {
    let device = Device::new();
    let image = image_bytes(1 << 20, 17);
    let artifact = device.artifact("release-v2", &image, &["-v", "2"]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    device.otalite_ok(&["commit"]);
    assert_eq!(device.show_artifact(), "release-v2");
    // A v2 artifact carries no type-info provides: the stored ones are cleared.
    let provides = device.otalite_ok(&["show-provides"]);
    assert_eq!(provides, "artifact_name=release-v2\n");
}

#[test]
fn long_payload_file_name_uses_pax_or_gnu_headers() {
    // Go's tar writer switches to extended headers for names over 100 bytes.
    let device = Device::new();
    let image = image_bytes(300 << 10, 19);
    let long_name = "r".repeat(150);
    let image_path = device.root().join(format!("{long_name}.img"));
    std::fs::write(&image_path, &image).unwrap();
    let artifact = device.root().join("long.mender");
    run_ok(
        Command::new("mender-artifact")
            .args([
                "write",
                "rootfs-image",
                "-t",
                DEVICE_TYPE,
                "-n",
                "release-long",
                "-f",
            ])
            .arg(&image_path)
            .arg("-o")
            .arg(&artifact),
    );
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
}

#[test]
fn a_hanging_state_script_is_killed_with_its_children() {
    let device = Device::with_config(r#", "StateScriptTimeoutSeconds": 1"#);
    let pid_file = device.root().join("child.pid");
    let script = device.root().join("ArtifactInstall_Enter_01_hang");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 300 &\necho $! > {}\nsleep 300\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let artifact = device.artifact(
        "release-2",
        &image_bytes(64 << 10, 1),
        &["--script", script.to_str().unwrap()],
    );
    let started = std::time::Instant::now();
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_untouched(&device);
    // The script's background child died with its process group.
    let child = std::fs::read_to_string(&pid_file).unwrap();
    // Dead means gone or a zombie waiting for init to reap it.
    let state =
        std::fs::read_to_string(format!("/proc/{}/status", child.trim())).unwrap_or_default();
    let running = state
        .lines()
        .any(|l| l.starts_with("State:") && !l.contains("Z (zombie)"));
    assert!(
        !running,
        "the script's child {} survived: {state}",
        child.trim()
    );
}

/// `otalite` and the reference `mender` on the same command line: same
/// exit code (usage errors 1, unknown verbs 3, help 0).
#[test]
fn usage_exit_codes_match_the_reference() {
    require("mender");
    let device = Device::new();
    for args in [
        &["frob"][..],
        &["help", "frob"],
        &["--bogus"],
        &["install"],
        &["commit", "extra"],
        &["-l"],
        &["-l", "bogus", "show-artifact"],
        &["--help"],
        &["install", "--help"],
        &["help", "install"],
        &["commit", "-h"],
        &["version"],
        &[],
        &["h", "install"],
        &["-v", "install", "x"],
    ] {
        let reference = run(Command::new("mender")
            .arg("--no-syslog")
            .arg("-d")
            .arg(device.root().join("data"))
            .args(args));
        let ours = run(device.command().arg("--no-syslog").args(args));
        assert_eq!(
            ours.status.code(),
            reference.status.code(),
            "{args:?}: {}",
            stderr(&ours)
        );
    }
    // The per-verb help documents the verb's options, as the reference's.
    let help = device.otalite_ok(&["install", "--help"]);
    assert!(help.contains("--reboot-exit-code"), "{help}");
    let reference = run_ok(Command::new("mender").args(["install", "--help"]));
    assert!(String::from_utf8_lossy(&reference.stdout).contains("--reboot-exit-code"));
    let out = device.otalite(&["snapshot"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
}

#[test]
fn non_utf8_arguments_never_panic() {
    use std::os::unix::ffi::OsStrExt;
    let device = Device::new();
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    // As a verb: unknown (3), not a panic (134).
    let out = run(device.command().arg(bad));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown command"), "{}", stderr(&out));
    // As a log level: a usage error.
    let out = run(device.command().arg("-l").arg(bad).arg("commit"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
    // As a path: kept as bytes; the missing file is named.
    let mut config = device.root().into_os_string();
    config.push("/\u{1}");
    config.push(bad);
    let out = run(device.command().arg("-c").arg(&config).arg("commit"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    // A non-UTF-8 artifact path: a clear refusal.
    let mut artifact = device.root().into_os_string();
    artifact.push("/");
    artifact.push(bad);
    std::fs::write(&artifact, b"x").unwrap();
    let out = run(device.command().arg("install").arg(&artifact));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not valid UTF-8"), "{}", stderr(&out));
}

#[test]
fn configuration_errors_say_where_and_what() {
    let device = Device::new();
    let conf = device.root().join("etc/mender.conf");
    std::fs::write(&conf, "{\n  \"RootfsPartA\": \"/dev/x\", bad\n}\n").unwrap();
    let out = device.otalite(&["commit"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 2, column 28: expected a string key (found 'b')"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&conf, "{\"UpdatePollIntervalSeconds\": \"x\"}").unwrap();
    let out = device.otalite(&["commit"]);
    assert!(
        stderr(&out)
            .contains("UpdatePollIntervalSeconds (line 1, column 31) must be a whole number"),
        "{}",
        stderr(&out)
    );

    // Five verification keys (the old capacity was four) install fine.
    // Four keys that do not match, then the one that does (fifth).
    let (_, other, private, public) = keys(&device);
    let mut list: Vec<String> = (0..4)
        .map(|i| {
            let copy = device.root().join(format!("other{i}.pem"));
            std::fs::copy(&other, &copy).unwrap();
            format!("\"{}\"", copy.display())
        })
        .collect();
    list.push(format!("\"{}\"", public.display()));
    device.write_config(&format!(r#", "ArtifactVerifyKeys": [{}]"#, list.join(",")));
    let artifact = device.artifact(
        "release-2",
        &image_bytes(64 << 10, 1),
        &["-k", private.to_str().unwrap()],
    );
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    // Seventeen: refused, naming the limit.
    let list: Vec<String> = (0..17)
        .map(|_| format!("\"{}\"", public.display()))
        .collect();
    device.write_config(&format!(r#", "ArtifactVerifyKeys": [{}]"#, list.join(",")));
    let out = device.otalite(&["rollback"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ArtifactVerifyKeys (line 1, column")
            && stderr(&out).contains("has 17 entries; otalite supports at most 16"),
        "{}",
        stderr(&out)
    );

    // -E and -c naming missing files are errors, not silently ignored.
    let device = Device::new();
    let out = run(device
        .command()
        .args(["-E", "/nonexistent/ca.pem", "commit"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/ca.pem"),
        "{}",
        stderr(&out)
    );
    let out = run(device
        .command()
        .args(["-c", "/nonexistent/mender.conf", "commit"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/mender.conf given on the command line does not exist"),
        "{}",
        stderr(&out)
    );
}

/// `time="..." level=... msg=...`: the shape of every record, checked on
/// the reference's own output too.
fn is_logrus_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("time=\"") else {
        return false;
    };
    let Some((time, rest)) = rest.split_once("\" level=") else {
        return false;
    };
    let Some((level, msg)) = rest.split_once(" msg=") else {
        return false;
    };
    time.len() == 20
        && time.ends_with('Z')
        && ["debug", "info", "warning", "error"].contains(&level)
        && (msg.is_empty()
            || (msg.len() >= 2 && msg.starts_with('"') && msg.ends_with('"'))
            || !msg.contains([' ', '"']))
}

#[test]
fn log_format_matches_the_reference_and_one_record_is_one_line() {
    require("mender");
    let device = Device::new();
    std::fs::remove_file(device.root().join("etc/artifact_info")).unwrap();
    let reference = run(Command::new("mender")
        .args(["--no-syslog", "-c"])
        .arg(device.root().join("etc/mender.conf"))
        .arg("-d")
        .arg(device.root().join("data"))
        .arg("show-artifact"));
    let ours = device.otalite(&["--no-syslog", "show-artifact"]);
    assert_eq!(ours.status.code(), reference.status.code());
    for out in [&reference, &ours] {
        let text = stderr(out);
        assert!(text.contains("level=error msg=\""), "{text}");
        for line in text.lines() {
            assert!(is_logrus_line(line), "{line:?} in {text}");
        }
    }

    // A state script's multi-line output trying to forge a record.
    let device = Device::new();
    let script = device.root().join("ArtifactInstall_Enter_01");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'first\\ntime=\"2000-01-01T00:00:00Z\" level=error msg=forged\\n\\033[31mred\\n' >&2\n",
    )
    .unwrap();
    let artifact = device.artifact(
        "release-2",
        &image_bytes(64 << 10, 1),
        &["--script", script.to_str().unwrap()],
    );
    let out = device.otalite(&[
        "--no-syslog",
        "-l",
        "debug",
        "install",
        artifact.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(
            r#"first\ntime=\"2000-01-01T00:00:00Z\" level=error msg=forged\n\x1b[31mred"#
        ),
        "{text}"
    );
    for line in text.lines() {
        assert!(is_logrus_line(line), "{line:?} in {text}");
        assert!(!line.starts_with("time=\"2000"), "forged: {line}");
    }
    let debug = text.lines().filter(|l| l.contains("level=debug")).count();
    eprintln!("{debug} debug lines during the install:\n{text}");
    assert!(debug >= 15, "{debug} debug lines in {text}");
}

#[test]
fn syslog_and_journald() {
    let device = Device::new();
    std::fs::remove_file(device.root().join("etc/artifact_info")).unwrap();
    let socket_path = device.root().join("log.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let out = run(device
        .command()
        .env("OTALITE_TEST_SYSLOG_SOCKET", &socket_path)
        .arg("show-artifact"));
    assert_eq!(out.status.code(), Some(1));
    let mut buffer = [0u8; 4096];
    let len = socket.recv(&mut buffer).unwrap();
    let datagram = String::from_utf8_lossy(&buffer[..len]).into_owned();
    // user.err, RFC 3164 stamp, tag with pid, then the logrus record.
    assert!(datagram.starts_with("<11>"), "{datagram}");
    assert!(datagram.contains(" otalite["), "{datagram}");
    assert!(datagram.contains("]: time=\""), "{datagram}");
    assert!(datagram.contains("level=error msg=\""), "{datagram}");
    // --no-syslog: nothing sent.
    socket.set_nonblocking(true).unwrap();
    while socket.recv(&mut buffer).is_ok() {}
    let out = run(device
        .command()
        .env("OTALITE_TEST_SYSLOG_SOCKET", &socket_path)
        .args(["--no-syslog", "show-artifact"]));
    assert_eq!(out.status.code(), Some(1));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(
        socket.recv(&mut buffer).is_err(),
        "sent despite --no-syslog"
    );

    // Under systemd: stderr is the journal stream, lines get <N> priorities.
    use std::os::unix::fs::MetadataExt;
    let journal = device.root().join("journal.txt");
    let file = std::fs::File::create(&journal).unwrap();
    let meta = file.metadata().unwrap();
    let out = run(device
        .command()
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("OTALITE_TEST_SYSLOG_SOCKET", &socket_path)
        .arg("show-artifact")
        .stderr(file));
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.starts_with("<3>time=\""), "{text}");
    assert!(socket.recv(&mut buffer).is_err(), "journald already has it");
}

#[test]
fn daemon_log_level_from_the_config() {
    let device = Device::with_config(r#", "DaemonLogLevel": "debug""#);
    // No server configured: the daemon stops early, after its debug lines.
    let out = device.otalite(&["--no-syslog", "daemon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("level=debug"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no server configured"),
        "{}",
        stderr(&out)
    );
    let out = device.otalite(&["--no-syslog", "-l", "info", "daemon"]);
    assert!(!stderr(&out).contains("level=debug"), "{}", stderr(&out));
}

#[test]
fn check_update_never_signals_a_stale_pid() {
    let device = Device::new();
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(
        device.root().join("data/otalite.pid"),
        format!("{}\n", sleeper.id()),
    )
    .unwrap();
    for verb in ["check-update", "send-inventory"] {
        let out = device.otalite(&["--no-syslog", verb]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert!(
            stderr(&out).contains("no otalite daemon is running") && stderr(&out).contains("stale"),
            "{}",
            stderr(&out)
        );
    }
    // The file locked (here by the test itself, not an otalite daemon):
    // the pid's program is checked too.
    let held = std::fs::File::open(device.root().join("data/otalite.pid")).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let out = device.otalite(&["--no-syslog", "check-update"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not an otalite daemon"),
        "{}",
        stderr(&out)
    );
    // A daemon does not start on a pid file someone holds.
    device.write_config(r#", "ServerURL": "http://127.0.0.1:9""#);
    let out = device.otalite(&["--no-syslog", "daemon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another otalite daemon"),
        "{}",
        stderr(&out)
    );
    drop(held);
    assert!(
        sleeper.try_wait().unwrap().is_none(),
        "the process named by the stale pid file was signalled"
    );
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let out = device.otalite(&["--no-syslog", "check-update"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn status_shows_step_slots_and_boot_env() {
    let device = Device::new();
    let text = device.otalite_ok(&["--no-syslog", "status"]);
    assert!(text.contains("Artifact:        release-1"), "{text}");
    assert!(text.contains("Update step:     idle"), "{text}");
    assert!(text.contains("mmcblk0p2  <- boots next"), "{text}");
    assert!(text.contains("  upgrade_available=0"), "{text}");
    let artifact = device.artifact("release-2", &image_bytes(64 << 10, 1), &[]);
    device.otalite_ok(&["install", artifact.to_str().unwrap()]);
    let text = device.otalite_ok(&["--no-syslog", "status"]);
    assert!(text.contains("Update step:     installed"), "{text}");
    assert!(text.contains("Pending update:  release-2"), "{text}");
    assert!(text.contains("Trial partition: 3 (previous 2)"), "{text}");
    assert!(text.contains("mmcblk0p3  <- boots next"), "{text}");
    assert!(text.contains("  upgrade_available=1"), "{text}");
    let json = device.otalite_ok(&["--no-syslog", "status", "--json"]);
    assert!(
        text.contains("Daemon:          no otalite daemon is running"),
        "{text}"
    );
    assert!(json.starts_with("{\"artifact_name\":\"release-1\",\"daemon_pid\":null,\"step\":\"installed\",\"pending\":{\"artifact_name\":\"release-2\",\"deployment_id\":null,\"trial_part\":3,\"previous_part\":2}"), "{json}");
    assert!(json.contains("\"boots_next\":true"), "{json}");
    assert!(json.contains("\"bootloader\":\"u-boot\""), "{json}");
    assert!(json.contains("\"upgrade_available\":\"1\""), "{json}");
    assert!(json.contains("\"mender_boot_part\":\"3\""), "{json}");
}

#[test]
fn version_describes_the_build() {
    let device = Device::new();
    let text = device.otalite_ok(&["--version"]);
    assert!(text.starts_with("otalite "), "{text}");
    assert!(text.contains("commit "), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("target "), "{text}");
}

#[test]
fn terminal_log_format_is_the_references() {
    require("script");
    require("mender");
    let device = Device::new();
    std::fs::remove_file(device.root().join("etc/artifact_info")).unwrap();
    let root = device.root();
    // `script` gives both programs a terminal as stderr.
    let on_tty = |program: &str| {
        let command = format!(
            "{program} --no-syslog -c {0}/etc/mender.conf -d {0}/data show-artifact",
            root.display()
        );
        let out = run(Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("MENDER_CONF_DIR", root.join("etc")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = on_tty(env!("CARGO_BIN_EXE_otalite"));
    let reference = on_tty("mender");
    for text in [&ours, &reference] {
        assert!(text.contains("\x1b[31mERRO\x1b[0m[0000] "), "{text:?}");
    }
}

#[test]
fn daemon_pid_file_live_then_stale_after_a_crash() {
    // A daemon whose server is unreachable keeps running (and retrying).
    let device = Device::with_config(r#", "ServerURL": "http://127.0.0.1:9""#);
    let mut daemon = device
        .command()
        .args(["--no-syslog", "daemon"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let running = format!("Daemon:          running (pid {})", daemon.id());
    loop {
        let text = device.otalite_ok(&["--no-syslog", "status"]);
        if text.contains(&running) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    device.otalite_ok(&["--no-syslog", "check-update"]);
    device.otalite_ok(&["--no-syslog", "send-inventory"]);
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
    // SIGKILL: the pid file stays behind, its lock goes with the process.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(device.root().join("data/otalite.pid").exists());
    let out = device.otalite(&["--no-syslog", "check-update"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));
}
