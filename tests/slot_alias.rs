//! The brick risk: `RootfsPartA`/`RootfsPartB` naming the running slot
//! through another path (symlink, hard link, a second device node with the
//! same major/minor, the mounted root's device) must be refused before a
//! byte is written. Driven through the real `otalite` binary on a
//! file-backed device (artifacts from the real `mender-artifact`, the env
//! read back by the real `fw_printenv`); the root-device case only reads
//! metadata, so it calls the check directly and never opens a real disk.

#![allow(clippy::std_instead_of_core)]

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Points `RootfsPartA`/`RootfsPartB` at `a`/`b`.
fn configure(device: &Device, a: &Path, b: &Path) {
    let root = device.root();
    std::fs::write(
        root.join("etc/mender.conf"),
        format!(
            r#"{{"RootfsPartA": "{}", "RootfsPartB": "{}", "FwEnvConfig": "{}"}}"#,
            a.display(),
            b.display(),
            root.join("etc/fw_env.config").display()
        ),
    )
    .unwrap();
}

/// Installs and asserts the refusal names the alias, and that slot A (the
/// running one), the env and the artifact name are untouched.
fn assert_refused(device: &Device, expected: &str) {
    let image = image_bytes(256 << 10, 5);
    let artifact = device.artifact("release-2", &image, &[]);
    let before = device.slot(2);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("refusing to install"), "{text}");
    assert!(text.contains(expected), "{text}");
    assert_eq!(device.slot(2), before, "the running slot was written");
    assert!(device.slot(2).iter().all(|&b| b == 0));
    let env = device.env();
    assert_eq!(env["mender_boot_part"], "2", "{env:?}");
    assert_eq!(env["upgrade_available"], "0", "{env:?}");
    assert_eq!(device.show_artifact(), "release-1");
}

#[test]
fn symlink_to_the_running_slot_is_refused() {
    let device = Device::new();
    let root = device.root();
    let alias = root.join("link-to-a3");
    std::os::unix::fs::symlink(root.join("mmcblk0p2"), &alias).unwrap();
    configure(&device, &root.join("mmcblk0p2"), &alias);
    assert_refused(&device, "is the running slot");
}

#[test]
fn hard_link_to_the_running_slot_is_refused() {
    let device = Device::new();
    let root = device.root();
    let alias = root.join("hard3");
    std::fs::hard_link(root.join("mmcblk0p2"), &alias).unwrap();
    configure(&device, &root.join("mmcblk0p2"), &alias);
    assert_refused(&device, "is the running slot");
}

#[test]
fn an_honest_layout_still_installs() {
    // The control case: the same device with distinct slots installs.
    let device = Device::new();
    let image = image_bytes(256 << 10, 5);
    let artifact = device.artifact("release-2", &image, &[]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(&device.slot(3)[..image.len()], &image[..]);
    assert!(device.slot(2).iter().all(|&b| b == 0));
}

/// A loop device this test attaches (detached on drop).
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Self {
        require("losetup");
        let out = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(file));
        Self(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn mknod(path: &Path, rdev: u64) {
    require("mknod");
    let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    run_ok(
        Command::new("mknod")
            .arg(path)
            .arg("b")
            .arg(major.to_string())
            .arg(minor.to_string()),
    );
}

#[test]
fn second_device_node_with_the_same_numbers_is_refused() {
    let device = Device::new();
    let root = device.root();
    // Slot A is a loop device over the test's own file; "node3" is a
    // second node with the same major/minor.
    let backing = root.join("backing.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(SLOT_SIZE)
        .unwrap();
    let attached = Loop::attach(&backing);
    let rdev = std::fs::metadata(&attached.0).unwrap().rdev();
    let (node2, node3) = (root.join("node2"), root.join("node3"));
    mknod(&node2, rdev);
    mknod(&node3, rdev);
    configure(&device, &node2, &node3);
    let image = image_bytes(256 << 10, 5);
    let artifact = device.artifact("release-2", &image, &[]);
    let out = device.otalite(&["install", artifact.to_str().unwrap()]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("is the running slot"), "{text}");
    assert!(
        std::fs::read(&backing).unwrap().iter().all(|&b| b == 0),
        "the running slot's device was written"
    );
    assert_eq!(device.env_var("mender_boot_part"), "2");
    assert_eq!(device.env_var("upgrade_available"), "0");
}

#[test]
fn a_node_of_the_mounted_root_device_is_refused() {
    // Only metadata is read: the node is never opened.
    let dir = tempfile::tempdir().unwrap();
    let root_dev = std::fs::metadata("/").unwrap().dev();
    let node = dir.path().join("rootalias3");
    mknod(&node, root_dev);
    let error = otalite_host::slot::refuse_root_device(&node).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("mounted root filesystem"), "{text}");
    assert!(text.contains("refusing to install"), "{text}");
    // A regular file or another device is not the root.
    assert!(otalite_host::slot::refuse_root_device(dir.path()).is_ok());
    let other = dir.path().join("other3");
    mknod(&other, root_dev ^ 0x7f);
    assert!(otalite_host::slot::refuse_root_device(&other).is_ok());
}
