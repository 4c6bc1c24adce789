//! `GrubEnv` over the grub-mender-grubenv layout and single files, checked
//! with the real `grub-editenv` and `sha256sum`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::editenv;
use otalite::board::BootEnv as _;
use otalite_grub::{find_env_dir, BlockError, Error, GrubEnv};

/// Builds the layout like grub-mender-grubenv's `make-env-and-lock-files`,
/// with grub-editenv. Returns `false` when grub-editenv is missing.
fn make_layout(env_dir: &Path, part: &str) -> bool {
    for n in 1..=2 {
        let dir = env_dir.join(format!("mender_grubenv{n}"));
        fs::create_dir_all(&dir).unwrap();
        let env = dir.join("env");
        if editenv(&env, &["create"]).is_none() {
            return false;
        }
        let boot_part = format!("mender_boot_part={part}");
        editenv(
            &env,
            &["set", "bootcount=0", &boot_part, "upgrade_available=0"],
        )
        .unwrap();
        editenv(&dir.join("lock"), &["set", "editing=0"]).unwrap();
        let out = Command::new("sha256sum")
            .arg("lock")
            .current_dir(&dir)
            .output()
            .unwrap();
        fs::write(dir.join("lock.sha256sum"), out.stdout).unwrap();
    }
    true
}

fn open(env_dir: &Path) -> GrubEnv {
    GrubEnv::open(env_dir)
        .unwrap()
        .with_process_lock(Some(env_dir.join("test.lock")))
}

fn read(env: &mut GrubEnv, name: &str) -> Option<String> {
    let mut buf = [0u8; 64];
    env.read(name, &mut buf)
        .unwrap()
        .map(|len| String::from_utf8(buf[..len].to_vec()).unwrap())
}

fn listed(file: &Path) -> String {
    String::from_utf8(editenv(file, &["list"]).unwrap()).unwrap()
}

fn sha_ok(dir: &Path) -> bool {
    Command::new("sha256sum")
        .args(["-c", "--status", "lock.sha256sum"])
        .current_dir(dir)
        .status()
        .unwrap()
        .success()
}

fn assert_clean(env_dir: &Path) {
    for n in 1..=2 {
        let dir = env_dir.join(format!("mender_grubenv{n}"));
        assert!(
            listed(&dir.join("lock")).contains("editing=0\n"),
            "lock {n}"
        );
        assert!(sha_ok(&dir), "lock.sha256sum {n}");
    }
}

#[test]
fn write_updates_both_copies() {
    let tmp = tempfile::tempdir().unwrap();
    if !make_layout(tmp.path(), "2") {
        return;
    }
    let mut env = open(tmp.path());
    assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("2"));
    env.write(&[
        ("upgrade_available", Some("1")),
        ("mender_boot_part", Some("3")),
        ("mender_boot_part_hex", Some("3")),
        ("bootcount", None),
    ])
    .unwrap();
    let expected = "mender_boot_part=3\nupgrade_available=1\nmender_boot_part_hex=3\n";
    for n in 1..=2 {
        let file = tmp.path().join(format!("mender_grubenv{n}/env"));
        assert_eq!(listed(&file), expected, "copy {n}");
        assert_eq!(fs::metadata(&file).unwrap().len(), 1024);
    }
    assert_clean(tmp.path());
    assert_eq!(read(&mut env, "upgrade_available").as_deref(), Some("1"));
    assert_eq!(read(&mut env, "bootcount"), None);
    // A value longer than the caller's buffer is an error, not a truncation.
    let mut small = [0u8; 0];
    assert!(matches!(
        env.read("mender_boot_part", &mut small),
        Err(Error::ValueTooLong { len: 1, .. })
    ));
}

#[test]
fn interrupted_copy1_reads_copy2_and_write_restores() {
    let tmp = tempfile::tempdir().unwrap();
    if !make_layout(tmp.path(), "2") {
        return;
    }
    let one = tmp.path().join("mender_grubenv1");
    let two = tmp.path().join("mender_grubenv2");
    editenv(&two.join("env"), &["set", "mender_boot_part=3"]).unwrap();
    editenv(&one.join("lock"), &["set", "editing=1"]).unwrap();
    fs::write(one.join("env"), b"garbage, not an env block").unwrap();

    let mut env = open(tmp.path());
    assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("3"));
    env.write(&[("bootcount", Some("1"))]).unwrap();
    let expected = "bootcount=1\nmender_boot_part=3\nupgrade_available=0\n";
    assert_eq!(listed(&one.join("env")), expected);
    assert_eq!(listed(&two.join("env")), expected);
    assert_clean(tmp.path());
}

#[test]
fn interrupted_copy2_reads_copy1() {
    let tmp = tempfile::tempdir().unwrap();
    if !make_layout(tmp.path(), "2") {
        return;
    }
    let one = tmp.path().join("mender_grubenv1");
    let two = tmp.path().join("mender_grubenv2");
    editenv(&one.join("env"), &["set", "mender_boot_part=4"]).unwrap();
    editenv(&two.join("lock"), &["set", "editing=1"]).unwrap();
    fs::write(two.join("env"), [0xffu8; 1024]).unwrap();

    let mut env = open(tmp.path());
    assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("4"));
    env.write(&[("upgrade_available", Some("1"))]).unwrap();
    let expected = "bootcount=0\nmender_boot_part=4\nupgrade_available=1\n";
    assert_eq!(listed(&one.join("env")), expected);
    assert_eq!(listed(&two.join("env")), expected);
    assert_clean(tmp.path());
}

#[test]
fn both_clean_reads_copy1_like_grub() {
    let tmp = tempfile::tempdir().unwrap();
    if !make_layout(tmp.path(), "2") {
        return;
    }
    editenv(
        &tmp.path().join("mender_grubenv2/env"),
        &["set", "mender_boot_part=9"],
    )
    .unwrap();
    assert_eq!(
        read(&mut open(tmp.path()), "mender_boot_part").as_deref(),
        Some("2")
    );
}

#[test]
fn full_block_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    if !make_layout(tmp.path(), "2") {
        return;
    }
    let snapshot = |dir: &Path| -> Vec<Vec<u8>> {
        ["1/env", "1/lock", "2/env", "2/lock", "1/lock.sha256sum"]
            .iter()
            .map(|f| fs::read(dir.join(format!("mender_grubenv{f}"))).unwrap())
            .collect()
    };
    let before = snapshot(tmp.path());
    let big = "x".repeat(2000);
    let err = open(tmp.path())
        .write(&[("mender_boot_part", Some("3")), ("big", Some(&big))])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Block {
                source: BlockError::TooSmall { size: 1024, .. },
                ..
            }
        ),
        "{err}"
    );
    let err = open(tmp.path())
        .write(&[("bad=name", Some("1"))])
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Block {
            source: BlockError::InvalidName { .. },
            ..
        }
    ));
    assert!(snapshot(tmp.path()) == before, "files changed");
}

#[test]
fn finds_env_dir_like_the_reference() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    assert!(matches!(find_env_dir(r), Err(Error::NoEnvDir { .. })));
    // /boot/grub counts only with a mender_grubenv1 inside.
    fs::create_dir_all(r.join("boot/grub")).unwrap();
    assert!(find_env_dir(r).is_err());
    fs::create_dir_all(r.join("boot/grub/mender_grubenv1")).unwrap();
    assert_eq!(find_env_dir(r).unwrap(), r.join("boot/grub"));
    fs::create_dir_all(r.join("boot/efi/EFI/BOOT/mender_grubenv1")).unwrap();
    assert_eq!(find_env_dir(r).unwrap(), r.join("boot/efi/EFI/BOOT"));
    fs::create_dir_all(r.join("boot/grub/grub-mender-grubenv")).unwrap();
    assert_eq!(
        find_env_dir(r).unwrap(),
        r.join("boot/grub/grub-mender-grubenv")
    );
    fs::create_dir_all(r.join("boot/efi/grub-mender-grubenv")).unwrap();
    assert_eq!(
        find_env_dir(r).unwrap(),
        r.join("boot/efi/grub-mender-grubenv")
    );
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(
        r.join("etc/mender_grubenv.config"),
        "ENV_DIR=/first\n# ENV_DIR=/no\nENV_DIR = /data/grubenv\n",
    )
    .unwrap();
    assert_eq!(find_env_dir(r).unwrap(), r.join("data/grubenv"));
    // GrubEnv::find opens it (and fails when the copies are missing).
    assert!(GrubEnv::find(r).is_err());
    if make_layout(&r.join("data/grubenv"), "5") {
        let mut env = GrubEnv::find(r).unwrap();
        assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("5"));
        env.write(&[("bootcount", Some("1"))]).unwrap();
        assert!(r.join("var/lock/grub-mender-grubenv-set.lock").exists());
    }
}

#[test]
fn single_file_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    let mut env = GrubEnv::single(&file);
    assert_eq!(read(&mut env, "a"), None);
    env.write(&[("a", Some("1 2=3\\")), ("b", Some("x\ny"))])
        .unwrap();
    assert_eq!(fs::metadata(&file).unwrap().len(), 1024);
    let Some(out) = editenv(&file, &["list"]) else {
        return;
    };
    assert_eq!(out, b"a=1 2=3\\\nb=x\ny\n");
    editenv(&file, &["set", "c=from grub"]).unwrap();
    env.write(&[("a", None)]).unwrap();
    assert_eq!(read(&mut env, "c").as_deref(), Some("from grub"));
    assert_eq!(editenv(&file, &["list"]).unwrap(), b"b=x\ny\nc=from grub\n");
    // Only the env file is left: the temporary file was renamed.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    let big = "z".repeat(1024);
    assert!(env.write(&[("big", Some(&big))]).is_err());
    assert_eq!(editenv(&file, &["list"]).unwrap(), b"b=x\ny\nc=from grub\n");
}
