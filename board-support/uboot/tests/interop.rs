//! Interoperability with the real tools: `mkenvimage` (u-boot-tools) and
//! `fw_printenv` / `fw_setenv` (libubootenv), on image files in temp dirs.
//!
//! Layout used throughout: a 0x20000-byte file filled with 0x5A, env copies
//! of 0x4000 bytes at 0x8000 (copy 0) and 0xC000 (copy 1).
#![allow(missing_docs)]

use core::time::Duration;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use otalite::board::BootEnv as _;
use otalite_uboot::image::{check_copy, Layout};
use otalite_uboot::{Error, ImageError, UbootEnv};

const SIZE: usize = 0x4000;
const OFF0: usize = 0x8000;
const OFF1: usize = 0xC000;
const FILE_LEN: usize = 0x2_0000;
const FILLER: u8 = 0x5A;

fn have_tools() -> bool {
    for tool in ["mkenvimage", "fw_printenv", "fw_setenv"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output();
        if !found.is_ok_and(|out| out.status.success()) {
            eprintln!(
                "SKIPPED: `{tool}` not installed (apt-get install u-boot-tools libubootenv-tool)"
            );
            return false;
        }
    }
    true
}

struct Setup {
    dir: tempfile::TempDir,
    disk: PathBuf,
    config: PathBuf,
    redundant: bool,
}

impl Setup {
    fn new(redundant: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        fs::write(&disk, vec![FILLER; FILE_LEN]).unwrap();
        let config = dir.path().join("fw_env.config");
        let mut text = format!("# test config\n{} {OFF0:#x} {SIZE:#x}\n", disk.display());
        if redundant {
            text.push_str(&format!(
                "{} {OFF1:#x} {SIZE:#x}  # copy 1\n",
                disk.display()
            ));
        }
        fs::write(&config, text).unwrap();
        Self {
            dir,
            disk,
            config,
            redundant,
        }
    }

    fn env(&self) -> UbootEnv {
        UbootEnv::open(&self.config)
            .unwrap()
            .with_lock_path(Some(self.dir.path().join("fw_printenv.lock")))
    }

    /// Runs `mkenvimage` on `lines` (with `-r` for a redundant setup).
    fn mkenvimage(&self, lines: &[&str], extra: &[&str]) -> Vec<u8> {
        let text = self.dir.path().join("env.txt");
        let out = self.dir.path().join("env.bin");
        fs::write(
            &text,
            lines
                .iter()
                .map(|line| format!("{line}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let mut command = Command::new("mkenvimage");
        command.arg("-s").arg(format!("{SIZE:#x}"));
        if self.redundant {
            command.arg("-r");
        }
        let status = command
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg(&text)
            .status()
            .unwrap();
        assert!(status.success(), "mkenvimage failed");
        let image = fs::read(&out).unwrap();
        assert_eq!(image.len(), SIZE);
        image
    }

    fn put(&self, offset: usize, bytes: &[u8]) {
        let mut disk = fs::read(&self.disk).unwrap();
        disk[offset..offset + bytes.len()].copy_from_slice(bytes);
        fs::write(&self.disk, disk).unwrap();
    }

    fn copy(&self, index: usize) -> Vec<u8> {
        let offset = if index == 0 { OFF0 } else { OFF1 };
        fs::read(&self.disk).unwrap()[offset..offset + SIZE].to_vec()
    }

    /// `fw_printenv -c CONFIG [names]`: (success, stdout lines, stderr).
    fn fw_printenv(&self, names: &[&str]) -> (bool, Vec<String>, String) {
        let out = Command::new("fw_printenv")
            .arg("-c")
            .arg(&self.config)
            .args(names)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines = stdout
            .lines()
            .filter(|line| !line.starts_with("Environment "))
            .map(str::to_owned)
            .collect();
        (
            out.status.success(),
            lines,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn printed(&self) -> Vec<String> {
        let (ok, lines, stderr) = self.fw_printenv(&[]);
        assert!(ok, "fw_printenv failed: {stderr}");
        lines
    }

    fn fw_setenv(&self, args: &[&str]) {
        let out = Command::new("fw_setenv")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fw_setenv {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn filler_intact(&self) {
        let disk = fs::read(&self.disk).unwrap();
        assert_eq!(disk.len(), FILE_LEN);
        let env_end = if self.redundant {
            OFF1 + SIZE
        } else {
            OFF0 + SIZE
        };
        assert!(
            disk[..OFF0].iter().all(|&b| b == FILLER),
            "bytes before the env changed"
        );
        if self.redundant {
            assert!(
                disk[OFF0 + SIZE..OFF1].iter().all(|&b| b == FILLER),
                "bytes between copies changed"
            );
        }
        assert!(
            disk[env_end..].iter().all(|&b| b == FILLER),
            "bytes after the env changed"
        );
    }
}

fn read(env: &mut UbootEnv, name: &str) -> Option<String> {
    let mut buffer = [0u8; 256];
    env.read(name, &mut buffer)
        .unwrap()
        .map(|len| String::from_utf8(buffer[..len].to_vec()).unwrap())
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|line| (*line).to_owned()).collect()
}

fn flags_of(setup: &Setup, index: usize) -> (bool, u8) {
    let header = check_copy(&setup.copy(index), Layout::Redundant).unwrap();
    (header.crc_ok(), header.flags.unwrap())
}

#[test]
fn reads_mkenvimage_single_and_redundant() {
    if !have_tools() {
        return;
    }
    for redundant in [false, true] {
        let setup = Setup::new(redundant);
        let image = setup.mkenvimage(
            &[
                "mender_boot_part=2",
                "bootcount=0",
                "bootcmd=run a; run b",
                "empty=",
            ],
            &[],
        );
        setup.put(OFF0, &image);
        let mut env = setup.env();
        assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("2"));
        assert_eq!(read(&mut env, "bootcount").as_deref(), Some("0"));
        assert_eq!(read(&mut env, "bootcmd").as_deref(), Some("run a; run b"));
        assert_eq!(read(&mut env, "missing"), None);
        assert_eq!(env.vars().unwrap().len(), 4, "redundant={redundant}");
        // A too-small buffer is an error, not a truncation.
        let mut tiny = [0u8; 3];
        assert!(matches!(
            env.read("bootcmd", &mut tiny),
            Err(Error::ValueTooLong { len: 12, .. })
        ));
    }
}

fn write_and_cross_check(redundant: bool) {
    let setup = Setup::new(redundant);
    setup.put(OFF0, &setup.mkenvimage(&["a=1", "b=2", "c=3"], &[]));
    let mut env = setup.env();
    env.write(&[
        ("mender_boot_part", Some("3")),
        ("b", None),
        ("a", Some("one")),
        ("upgrade_available", Some("1")),
    ])
    .unwrap();
    assert_eq!(
        setup.printed(),
        lines(&["a=one", "c=3", "mender_boot_part=3", "upgrade_available=1"])
    );
    // libubootenv 0.3.2 prints `name=` (and succeeds) for an unset name.
    let (_, only, _) = setup.fw_printenv(&["b"]);
    assert!(
        only.iter().all(|line| line == "b="),
        "deleted variable still set: {only:?}"
    );
    setup.filler_intact();

    // fw_setenv writes, we read.
    setup.fw_setenv(&["bootcount", "1"]);
    let script = setup.dir.path().join("script.txt");
    fs::write(
        &script,
        "# comment\nmender_boot_part=2\nupgrade_available=\nx=y z\n",
    )
    .unwrap();
    setup.fw_setenv(&["-s", script.to_str().unwrap()]);
    assert_eq!(read(&mut env, "bootcount").as_deref(), Some("1"));
    assert_eq!(read(&mut env, "mender_boot_part").as_deref(), Some("2"));
    assert_eq!(read(&mut env, "upgrade_available"), None);
    assert_eq!(read(&mut env, "x").as_deref(), Some("y z"));
    assert_eq!(read(&mut env, "a").as_deref(), Some("one"));

    // And back: an empty value deletes, like fw_setenv.
    env.write(&[("x", Some("")), ("bootcount", Some("2"))])
        .unwrap();
    assert_eq!(
        setup.printed(),
        lines(&["a=one", "bootcount=2", "c=3", "mender_boot_part=2"])
    );
    setup.filler_intact();
    if !redundant {
        let leftovers: Vec<_> = fs::read_dir(setup.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("otalite-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }
}

#[test]
fn single_copy_write_interop_at_offset() {
    if have_tools() {
        write_and_cross_check(false);
    }
}

#[test]
fn redundant_write_interop_at_offset() {
    if have_tools() {
        write_and_cross_check(true);
    }
}

#[test]
fn redundant_corrupt_copy_falls_back() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(true);
    let mut old = setup.mkenvimage(&["gen=old"], &[]);
    let mut new = setup.mkenvimage(&["gen=new"], &[]);
    old[4] = 5;
    new[4] = 6;
    setup.put(OFF0, &old);
    setup.put(OFF1, &new);
    let mut env = setup.env();
    assert_eq!(read(&mut env, "gen").as_deref(), Some("new"));
    assert_eq!(setup.printed(), lines(&["gen=new"]));

    // Flip one data byte of the newer copy: both fall back to the older one.
    let mut flipped = new.clone();
    flipped[100] ^= 0x01;
    setup.put(OFF1, &flipped);
    assert_eq!(read(&mut env, "gen").as_deref(), Some("old"));
    assert_eq!(setup.printed(), lines(&["gen=old"]));

    // Half-written newer copy: higher flags, new data start, old tail.
    let mut half = setup.mkenvimage(&["gen=half", "big=xxxxxxxxxxxxxxxxxxxxxxxx"], &[]);
    half[4] = 7;
    half[5..].fill(0xFF);
    half[5..9].copy_from_slice(b"gen=");
    setup.put(OFF1, &half);
    assert_eq!(read(&mut env, "gen").as_deref(), Some("old"));
    assert_eq!(setup.printed(), lines(&["gen=old"]));

    // Our write goes to the bad copy (not current) and becomes current.
    env.write(&[("gen", Some("ours"))]).unwrap();
    assert_eq!(flags_of(&setup, 1), (true, 6));
    assert_eq!(setup.copy(0), old, "current copy must not be touched");
    assert_eq!(setup.printed(), lines(&["gen=ours"]));
}

#[test]
fn redundant_flag_choice_matches_fw_printenv() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(true);
    let base0 = setup.mkenvimage(&["gen=copy0"], &[]);
    let base1 = setup.mkenvimage(&["gen=copy1"], &[]);
    let pairs = [
        (1, 2),
        (2, 1),
        (5, 5),
        (255, 0),
        (0, 255),
        (254, 255),
        (255, 254),
        (254, 0),
        (0, 254),
        (0, 1),
        (128, 3),
    ];
    for (f0, f1) in pairs {
        // The CRC does not cover the flags byte, so patching it keeps both valid.
        let (mut c0, mut c1) = (base0.clone(), base1.clone());
        c0[4] = f0;
        c1[4] = f1;
        setup.put(OFF0, &c0);
        setup.put(OFF1, &c1);
        let ours = read(&mut setup.env(), "gen").unwrap();
        let theirs = setup.printed();
        assert_eq!(vec![format!("gen={ours}")], theirs, "flags {f0}/{f1}");
    }
    // Spot-check the expected wrap results themselves.
    for ((f0, f1), expected) in [((255, 0), "copy1"), ((0, 255), "copy0"), ((5, 5), "copy0")] {
        let (mut c0, mut c1) = (base0.clone(), base1.clone());
        c0[4] = f0;
        c1[4] = f1;
        setup.put(OFF0, &c0);
        setup.put(OFF1, &c1);
        assert_eq!(
            read(&mut setup.env(), "gen").as_deref(),
            Some(expected),
            "flags {f0}/{f1}"
        );
    }

    // Our write at 255 wraps to 0, and fw_printenv picks it.
    let (mut c0, c1) = (base0.clone(), base1.clone());
    c0[4] = 255;
    let mut c1_old = c1;
    c1_old[4] = 200;
    setup.put(OFF0, &c0);
    setup.put(OFF1, &c1_old);
    let mut env = setup.env();
    env.write(&[("gen", Some("wrapped"))]).unwrap();
    assert_eq!(flags_of(&setup, 1), (true, 0));
    assert_eq!(setup.printed(), lines(&["gen=wrapped"]));
    // fw_setenv continues from there: 0 -> 1 in copy 0.
    setup.fw_setenv(&["gen", "theirs"]);
    assert_eq!(flags_of(&setup, 0), (true, 1));
    assert_eq!(read(&mut env, "gen").as_deref(), Some("theirs"));
}

#[test]
fn repeated_writes_alternate_and_survive_torn_writes() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(true);
    setup.put(OFF0, &setup.mkenvimage(&["n=0"], &[]));
    let mut env = setup.env();
    // mkenvimage -r writes flags 1; copy 1 holds filler (bad CRC).
    assert_eq!(flags_of(&setup, 0), (true, 1));
    // (current copy, its flags)
    let mut state = (0usize, 1u8);
    fn check_next(setup: &Setup, state: &mut (usize, u8), what: &str) {
        *state = (1 - state.0, state.1 + 1);
        assert_eq!(
            flags_of(setup, state.0),
            (true, state.1),
            "{what} did not go to copy {}",
            state.0
        );
    }
    for n in 1..=6u8 {
        let value = n.to_string();
        env.write(&[("n", Some(&value))]).unwrap();
        check_next(&setup, &mut state, &format!("our write {n}"));
        assert_eq!(setup.printed(), vec![format!("n={n}")]);
        // Unchanged values are not rewritten (fw_setenv skips them too).
        env.write(&[("n", Some(&value))]).unwrap();
        assert_eq!(flags_of(&setup, 1 - state.0).1, state.1 - 1);
        if n % 3 == 0 {
            // Interleave the real tool: it continues the same sequence.
            setup.fw_setenv(&["n", "theirs"]);
            check_next(&setup, &mut state, "fw_setenv");
            assert_eq!(read(&mut env, "n").as_deref(), Some("theirs"));
            env.write(&[("n", Some(&value))]).unwrap();
            check_next(&setup, &mut state, "our write after fw_setenv");
        }
    }

    // Simulate a power cut during the next write: the copy being written
    // ends up truncated (its tail never reached the disk).
    let before = env.vars().unwrap();
    let target = 1 - state.0;
    let target_offset = if target == 0 { OFF0 } else { OFF1 };
    env.write(&[("n", Some("torn")), ("extra", Some("1"))])
        .unwrap();
    let mut torn = setup.copy(target);
    torn[SIZE / 2..].fill(0);
    torn[8] ^= 0xFF; // make sure the CRC cannot match by luck
    setup.put(target_offset, &torn);
    assert_eq!(env.vars().unwrap(), before, "torn copy must be ignored");
    let expected: Vec<String> = before
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(value)
            )
        })
        .collect();
    assert_eq!(setup.printed(), expected);
    // The next write repairs the torn copy and wins.
    env.write(&[("n", Some("after"))]).unwrap();
    assert!(flags_of(&setup, target).0);
    assert_eq!(setup.printed(), lines(&["n=after"]));
}

#[test]
fn single_copy_crash_leftovers_and_crc_errors() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(false);
    setup.put(OFF0, &setup.mkenvimage(&["a=1"], &["-p", "0"]));
    // A temp file left by a crash before the rename: the env is untouched
    // and the next write cleans it up.
    let stale = setup.dir.path().join(".disk.img.otalite-tmp");
    fs::write(&stale, b"garbage").unwrap();
    let mut env = setup.env();
    assert_eq!(read(&mut env, "a").as_deref(), Some("1"));
    env.write(&[("a", Some("2"))]).unwrap();
    assert!(!stale.exists());
    assert_eq!(setup.printed(), lines(&["a=2"]));
    // Zero padding from `mkenvimage -p 0` is kept.
    assert_eq!(*setup.copy(0).last().unwrap(), 0);

    // CRC mismatch: both we and fw_printenv refuse (no default env).
    let mut bad = setup.copy(0);
    bad[6] ^= 0x20;
    setup.put(OFF0, &bad);
    let error = env.vars().unwrap_err();
    assert!(
        matches!(error, Error::Image(ImageError::CrcMismatch { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("CRC mismatch"), "{error}");
    let (ok, _, stderr) = setup.fw_printenv(&[]);
    assert!(
        !ok && stderr.contains("Cannot read environment"),
        "{stderr}"
    );
    assert!(env.write(&[("a", Some("3"))]).is_err());
    assert_eq!(setup.copy(0), bad, "nothing written on error");
}

#[test]
fn both_copies_bad_error_or_default_env() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(true);
    // Both copies hold filler: no valid environment anywhere.
    let error = setup.env().vars().unwrap_err();
    assert!(
        matches!(error, Error::Image(ImageError::BothCopiesBad { .. })),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("both redundant environment copies"),
        "{error}"
    );
    let (ok, _, stderr) = setup.fw_printenv(&[]);
    assert!(!ok, "fw_printenv accepted a bad env");
    assert!(stderr.contains("Cannot read"), "{stderr}");
    let mut plain = setup.env();
    assert!(plain.write(&[("a", Some("1"))]).is_err());
    assert!(
        !flags_of(&setup, 0).0 && !flags_of(&setup, 1).0,
        "nothing may be written"
    );

    // With a default environment (like `fw_setenv -f`), the write creates a
    // valid copy 1 with flags = copy 0's flags byte + 1.
    let mut defaults = otalite_uboot::EnvVars::new();
    defaults.set("bootlimit", "1");
    let mut env = setup.env().with_default_env(Some(defaults));
    assert_eq!(read(&mut env, "bootlimit").as_deref(), Some("1"));
    env.write(&[("mender_boot_part", Some("2"))]).unwrap();
    assert_eq!(flags_of(&setup, 1), (true, FILLER.wrapping_add(1)));
    assert_eq!(
        setup.printed(),
        lines(&["bootlimit=1", "mender_boot_part=2"])
    );
    assert_eq!(read(&mut plain, "mender_boot_part").as_deref(), Some("2"));
}

#[test]
fn invalid_changes_are_rejected_before_writing() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(false);
    setup.put(OFF0, &setup.mkenvimage(&["a=1"], &[]));
    let before = fs::read(&setup.disk).unwrap();
    let mut env = setup.env();
    for changes in [
        vec![("ok", Some("1")), ("bad=name", Some("1"))],
        vec![("ok", Some("1")), ("", Some("1"))],
        vec![("ok", Some("nul\0byte"))],
        vec![("ok", Some(&*"x".repeat(SIZE)))],
    ] {
        assert!(env.write(&changes).is_err(), "{changes:?}");
    }
    assert_eq!(fs::read(&setup.disk).unwrap(), before);
}

#[test]
fn writes_wait_for_the_libubootenv_lock() {
    if !have_tools() {
        return;
    }
    let setup = Setup::new(true);
    setup.put(OFF0, &setup.mkenvimage(&["a=1"], &[]));
    let lock_path = setup.dir.path().join("fw_printenv.lock");
    fs::write(&lock_path, b"").unwrap();
    let held = fs::File::open(&lock_path).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();

    let mut env = setup.env();
    let (done_tx, done_rx) = mpsc::channel();
    let writer = std::thread::spawn(move || {
        env.write(&[("a", Some("2"))]).unwrap();
        done_tx.send(()).unwrap();
    });
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "write did not wait for the lock"
    );
    assert!(!flags_of(&setup, 1).0);
    drop(held);
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("write finished after unlock");
    writer.join().unwrap();
    assert_eq!(setup.printed(), lines(&["a=2"]));
}

#[test]
fn open_reports_config_errors_with_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fw_env.config");
    fs::write(&config, "# c\n/dev/mtd1 0x0 0x4000\n").unwrap();
    assert!(matches!(
        UbootEnv::open(&config),
        Err(Error::UnsupportedDevice(_))
    ));
    fs::write(&config, "# c\n/dev/vda 0x100000\n").unwrap();
    let message = UbootEnv::open(&config).unwrap_err().to_string();
    assert!(
        message.contains("fw_env.config line 2") && message.contains("missing size"),
        "{message}"
    );
    let missing = UbootEnv::open(Path::new("/nonexistent/fw_env.config")).unwrap_err();
    assert!(matches!(missing, Error::ReadConfig { .. }));
    // A device shorter than the configured region.
    let disk = dir.path().join("short.img");
    fs::write(&disk, vec![0u8; 100]).unwrap();
    fs::write(&config, format!("{} 0 0x4000\n", disk.display())).unwrap();
    let mut env = UbootEnv::open(&config).unwrap().with_lock_path(None);
    assert!(matches!(env.vars(), Err(Error::ShortDevice { .. })));
}
