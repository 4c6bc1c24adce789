//! Realistic and broken artifact headers through the real `otalite`
//! binary, each compared with the real `mender` (3.4, Debian's
//! `mender-client`) on the same artifact in a `tests/refdevice/device.sh`
//! device when it can run here (root, loop devices): artifacts written by
//! the real `mender-artifact`; the tar variants (no end-of-archive blocks,
//! a single zero block, an empty payload list) cut or assembled here.
//!
//! | case | reference | otalite |
//! |---|---|---|
//! | 12 `artifact_depends` names, 12 depends keys, 20 device types, a 200-byte name, 20 provides | installs | installs |
//! | no tar end-of-archive blocks, or a single zero block | installs | installs |
//! | cut inside the payload | refuses | refuses |
//! | cut by one byte (gzip trailer) | installs (stops reading after the image) | refuses |
//! | empty payload list | refuses | refuses, nothing changes |
//! | device types beyond [`MAX_DEVICE_TYPES_LEN`] bytes | installs | refuses naming the limit |

#![allow(clippy::std_instead_of_core)]

mod common;

use common::*;
use otalite::artifact::MAX_DEVICE_TYPES_LEN;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const IMAGE_LEN: usize = 64 << 10;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The real `mender` in a `device.sh` device (slot A, `release-1`,
/// [`DEVICE_TYPE`]); destroyed (its loop devices detached) on drop.
struct Reference {
    dir: tempfile::TempDir,
}

impl Reference {
    /// `None` (with a note) where the reference cannot run: not root, or a
    /// tool `device.sh` needs is missing.
    fn new() -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let tools = ["mender", "fw_setenv", "mkenvimage", "losetup", "unshare"];
        if !root || !tools.iter().all(|tool| on_path(tool)) {
            eprintln!("NOTE: the reference mender cannot run here; otalite checked alone");
            return None;
        }
        let reference = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        run_ok(
            Command::new(Self::script())
                .arg("create")
                .arg(reference.workdir())
                .args(["16", DEVICE_TYPE, "release-1"]),
        );
        Some(reference)
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/refdevice/device.sh")
    }

    fn workdir(&self) -> PathBuf {
        self.dir.path().join("device")
    }

    fn mender(&self, args: &[&str]) -> Output {
        run(Command::new(Self::script())
            .arg("run")
            .arg(self.workdir())
            .arg("--")
            .arg("mender")
            .args(args))
    }

    fn show_artifact(&self) -> String {
        let out = self.mender(&["show-artifact"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Back to a fresh `release-1` device (slots kept).
    fn reset(&self) {
        run_ok(
            Command::new(Self::script())
                .arg("reset")
                .arg(self.workdir()),
        );
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("destroy")
            .arg(self.workdir())
            .status();
    }
}

/// Installs `artifact` with otalite on a fresh device and, if available,
/// with the reference; both must agree with `installs`. When it installs,
/// both commit and must show `name`. Returns otalite's stderr.
fn check(reference: Option<&Reference>, artifact: &Path, installs: bool, name: &str) -> String {
    let device = Device::new();
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    let text = stderr(&out);
    assert_eq!(out.status.success(), installs, "otalite: {text}");
    if installs {
        device.otalite_ok(&["commit"]);
        assert_eq!(device.show_artifact(), name);
        assert_eq!(device.env_var("mender_boot_part"), "3");
    } else {
        assert_eq!(device.show_artifact(), "release-1");
        assert_eq!(device.env_var("mender_boot_part"), "2");
        assert_eq!(device.env_var("upgrade_available"), "0");
        // Header refusals come before any payload byte; a truncation is
        // only known at the end (the inactive slot holds a partial image).
        if !text.contains("truncated") {
            assert!(device.slot(3).iter().all(|&b| b == 0), "slot B written");
        }
    }
    if let Some(reference) = reference {
        reference.reset();
        let out = reference.mender(&["install", artifact.to_str().unwrap()]);
        assert_eq!(
            out.status.success(),
            installs,
            "reference on {}: {}",
            artifact.display(),
            stderr(&out)
        );
        if installs {
            let commit = reference.mender(&["commit"]);
            assert!(commit.status.success(), "{}", stderr(&commit));
            assert_eq!(reference.show_artifact(), name);
        } else {
            assert_eq!(reference.show_artifact(), "release-1");
        }
    }
    text
}

fn artifact(dir: &Path, file: &str, name: &str, extra: &[String]) -> PathBuf {
    let image = dir.join(format!("{file}.img"));
    std::fs::write(&image, image_bytes(IMAGE_LEN, 9)).unwrap();
    let out = dir.join(format!("{file}.mender"));
    run_ok(
        Command::new("mender-artifact")
            .args(["write", "rootfs-image", "-t", DEVICE_TYPE, "-n", name, "-f"])
            .arg(&image)
            .arg("-o")
            .arg(&out)
            .args(extra),
    );
    out
}

fn repeated(flag: &str, count: usize, value: impl Fn(usize) -> String) -> Vec<String> {
    (1..=count)
        .flat_map(|i| [flag.to_string(), value(i)])
        .collect()
}

#[test]
fn realistic_headers_install_as_with_the_reference() {
    require("mender-artifact");
    let reference = Reference::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // 12 artifact_depends names (the device's among them).
    let mut names = repeated("-N", 11, |i| format!("release-old-{i}"));
    names.extend(["-N".to_string(), "release-1".to_string()]);
    let cases = [
        ("depends-names", "release-2".to_string(), names),
        (
            "device-types",
            "release-2".to_string(),
            repeated("-t", 20, |i| format!("board-family-revision-{i}")),
        ),
        ("long-name", "n".repeat(200), vec![]),
        (
            "provides",
            "release-2".to_string(),
            repeated("-p", 20, |i| format!("fleet.key-{i}:value-{i}")),
        ),
    ];
    for (file, name, extra) in &cases {
        let artifact = artifact(dir, file, name, extra);
        check(reference.as_ref(), &artifact, true, name);
    }
}

#[test]
fn twelve_depends_keys_install_as_with_the_reference() {
    // A first artifact provides 12 keys; the second depends on all of them.
    require("mender-artifact");
    let reference = Reference::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let provides = artifact(
        dir,
        "provides",
        "release-2",
        &repeated("-p", 12, |i| format!("dep.key-{i}:v{i}")),
    );
    let depends = artifact(
        dir,
        "depends",
        "release-3",
        &repeated("-d", 12, |i| format!("dep.key-{i}:v{i}")),
    );
    let device = Device::new();
    for artifact in [&provides, &depends] {
        let out = device.otalite(&["install", artifact.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        device.otalite_ok(&["commit"]);
    }
    assert_eq!(device.show_artifact(), "release-3");
    if let Some(reference) = &reference {
        reference.reset();
        for artifact in [&provides, &depends] {
            let out = reference.mender(&["install", artifact.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
            assert!(reference.mender(&["commit"]).status.success());
        }
        assert_eq!(reference.show_artifact(), "release-3");
    }
    // Unmet: a fresh device provides none of the keys (both refuse).
    check(reference.as_ref(), &depends, false, "");
}

/// Where the outer archive's last member ends (its end-of-archive blocks
/// start), walking the ustar headers.
fn content_end(tar: &[u8]) -> usize {
    let mut offset = 0;
    while offset + 512 <= tar.len() && tar[offset..offset + 512].iter().any(|&b| b != 0) {
        let size = std::str::from_utf8(&tar[offset + 124..offset + 135])
            .ok()
            .and_then(|octal| usize::from_str_radix(octal.trim_matches(['\0', ' ']), 8).ok())
            .expect("ustar size");
        offset += 512 + size.div_ceil(512) * 512;
    }
    offset
}

#[test]
fn archives_without_end_blocks_install_as_with_the_reference() {
    require("mender-artifact");
    let reference = Reference::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let full = std::fs::read(artifact(dir, "full", "release-2", &[])).unwrap();
    let end = content_end(&full);
    assert!(end + 1024 <= full.len() && full[end..].iter().all(|&b| b == 0));
    for (file, bytes) in [
        ("no-end-blocks", full[..end].to_vec()),
        ("one-zero-block", full[..end + 512].to_vec()),
    ] {
        let path = dir.join(format!("{file}.mender"));
        std::fs::write(&path, bytes).unwrap();
        check(reference.as_ref(), &path, true, "release-2");
    }
    // Cut inside the payload: truncated for both.
    let path = dir.join("cut.mender");
    std::fs::write(&path, &full[..end - 4096]).unwrap();
    let text = check(reference.as_ref(), &path, false, "");
    assert!(text.contains("truncated"), "{text}");
    // Cut by one byte (the end of the gzip trailer): the reference stops
    // reading after the image and installs; otalite checks the whole
    // member (gzip CRC and size) and refuses.
    std::fs::write(&path, &full[..end - 1]).unwrap();
    let text = check(None, &path, false, "");
    assert!(text.contains("truncated"), "{text}");
}

/// A ustar archive of `entries` with its end-of-archive blocks.
fn ustar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        header[100..108].copy_from_slice(b"0000600\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn sha256_hex(dir: &Path, bytes: &[u8]) -> String {
    require("sha256sum");
    let path = dir.join("hash.tmp");
    std::fs::write(&path, bytes).unwrap();
    let out = run_ok(Command::new("sha256sum").arg(&path));
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn empty_payload_list_is_refused_as_by_the_reference() {
    let reference = Reference::new();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let version = br#"{"format":"mender","version":3}"#;
    let header_info = br#"{"payloads":[],"artifact_provides":{"artifact_name":"release-2"},"artifact_depends":{"device_type":["test-board"]}}"#;
    let header = ustar(&[("header-info", header_info)]);
    let manifest = format!(
        "{}  header.tar\n{}  version\n",
        sha256_hex(dir, &header),
        sha256_hex(dir, version)
    );
    let artifact = ustar(&[
        ("version", version),
        ("manifest", manifest.as_bytes()),
        ("header.tar", &header),
    ]);
    let path = dir.join("empty-payloads.mender");
    std::fs::write(&path, artifact).unwrap();
    let text = check(reference.as_ref(), &path, false, "");
    assert!(text.contains("empty payload list"), "{text}");
}

#[test]
fn device_types_beyond_the_limit_are_refused_naming_it() {
    require("mender-artifact");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // 70 names of 64 bytes: more than the pool, still under the 8 KiB
    // header-info limit.
    let types = repeated("-t", 70, |i| format!("{i:02}{}", "t".repeat(62)));
    let path = artifact(dir, "many-types", "release-2", &types);
    let text = check(None, &path, false, "");
    assert!(
        text.contains(&format!(
            "more than {MAX_DEVICE_TYPES_LEN} bytes of compatible device types"
        )),
        "{text}"
    );
}
