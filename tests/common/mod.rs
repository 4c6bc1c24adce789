//! A fake A/B device in a temp dir, driven through the real `otalite`
//! binary, with artifacts written by the real `mender-artifact` and the
//! boot environment read back by the real `fw_printenv`.
#![allow(dead_code, unreachable_pub, clippy::std_instead_of_core)]

pub mod bus;
pub mod managed;
pub mod reference;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SLOT_SIZE: u64 = 8 << 20;
pub const ENV_SIZE: u32 = 0x4000;
pub const DEVICE_TYPE: &str = "test-board";

/// Panics with a clear message when a real peer is missing: these tests
/// prove interop and must not pass silently without it.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed (apt-get install mender-artifact libubootenv-tool u-boot-tools)"
    );
}

pub fn run(cmd: &mut Command) -> Output {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    output
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let output = run(cmd);
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Deterministic test data that compresses somewhat (like a filesystem).
pub fn image_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let block = (state % 4) as usize;
        let run = 512usize.min(len - bytes.len());
        if block == 0 {
            bytes.extend(std::iter::repeat_n(0u8, run));
        } else {
            for i in 0..run {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                bytes.push(if block == 1 {
                    b"otalite "[i % 8]
                } else {
                    state as u8
                });
            }
        }
    }
    bytes
}

pub struct Device {
    pub dir: tempfile::TempDir,
}

impl Device {
    /// A device running slot A (partition 2) with artifact `release-1`.
    pub fn new() -> Self {
        Self::with_config("")
    }

    /// Same, with extra mender.conf members (a JSON fragment starting with
    /// a comma, or empty).
    pub fn with_config(extra: &str) -> Self {
        require("mkenvimage");
        require("fw_printenv");
        let dir = tempfile::tempdir().expect("temp dir");
        let device = Self { dir };
        let root = device.root();
        for sub in ["etc", "data", "share"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for slot in ["mmcblk0p2", "mmcblk0p3"] {
            let file = std::fs::File::create(root.join(slot)).unwrap();
            file.set_len(SLOT_SIZE).unwrap();
        }
        std::fs::write(root.join("etc/env.txt"), "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\nbootlimit=1\n").unwrap();
        // Redundant environment: two copies in one file, as on real boards.
        let copy = root.join("etc/copy.bin");
        run_ok(
            Command::new("mkenvimage")
                .args(["-r", "-s", &ENV_SIZE.to_string(), "-o"])
                .arg(&copy)
                .arg(root.join("etc/env.txt")),
        );
        let copy = std::fs::read(&copy).unwrap();
        let mut env = copy.clone();
        let mut second = copy;
        second[4] = 0; // older flags on the second copy
        env.extend(second);
        std::fs::write(root.join("uboot.env"), env).unwrap();
        std::fs::write(
            root.join("etc/fw_env.config"),
            format!(
                "{0} 0x0 {1:#x}\n{0} {1:#x} {1:#x}\n",
                root.join("uboot.env").display(),
                ENV_SIZE
            ),
        )
        .unwrap();
        std::fs::write(root.join("etc/artifact_info"), "artifact_name=release-1\n").unwrap();
        std::fs::write(
            root.join("data/device_type"),
            format!("device_type={DEVICE_TYPE}\n"),
        )
        .unwrap();
        device.write_config(extra);
        device
    }

    pub fn write_config(&self, extra: &str) {
        let root = self.root();
        std::fs::write(
            root.join("etc/mender.conf"),
            format!(
                r#"{{"RootfsPartA": "{}", "RootfsPartB": "{}", "FwEnvConfig": "{}"{extra}}}"#,
                root.join("mmcblk0p2").display(),
                root.join("mmcblk0p3").display(),
                root.join("etc/fw_env.config").display()
            ),
        )
        .unwrap();
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otalite"));
        cmd.env("MENDER_CONF_DIR", self.root().join("etc"))
            .env("MENDER_DATA_DIR", self.root().join("share"))
            .env_remove("OTALITE_TEST_CRASH_AT")
            // Never the machine's system bus: a test that wants D-Bus
            // starts its own (common::bus) and sets this again.
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", self.root().join("no-bus").display()),
            )
            .arg("-c")
            .arg(self.root().join("etc/mender.conf"))
            .arg("-d")
            .arg(self.root().join("data"));
        cmd
    }

    pub fn otalite(&self, args: &[&str]) -> Output {
        run(self.command().args(args))
    }

    pub fn otalite_ok(&self, args: &[&str]) -> String {
        String::from_utf8(run_ok(self.command().args(args)).stdout).unwrap()
    }

    /// The boot environment as the real `fw_printenv` reads it.
    pub fn env(&self) -> BTreeMap<String, String> {
        let output = run_ok(
            Command::new("fw_printenv")
                .arg("-c")
                .arg(self.root().join("etc/fw_env.config")),
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                line.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    pub fn env_var(&self, name: &str) -> String {
        self.env().get(name).cloned().unwrap_or_default()
    }

    pub fn slot(&self, part: u32) -> Vec<u8> {
        std::fs::read(self.root().join(format!("mmcblk0p{part}"))).unwrap()
    }

    /// Writes an image file and an artifact for it with `mender-artifact`.
    pub fn artifact(&self, name: &str, image: &[u8], extra: &[&str]) -> PathBuf {
        write_artifact(&self.root(), name, image, extra)
    }

    pub fn show_artifact(&self) -> String {
        self.otalite_ok(&["show-artifact"]).trim().to_string()
    }
}

/// `mender-artifact write rootfs-image` into `dir`.
pub fn write_artifact(dir: &Path, name: &str, image: &[u8], extra: &[&str]) -> PathBuf {
    require("mender-artifact");
    let image_path = dir.join(format!("{name}.img"));
    std::fs::write(&image_path, image).unwrap();
    let out = dir.join(format!("{name}.mender"));
    let mut cmd = Command::new("mender-artifact");
    cmd.args(["write", "rootfs-image", "-t", DEVICE_TYPE, "-n", name, "-f"])
        .arg(&image_path)
        .arg("-o")
        .arg(&out)
        .args(extra);
    run_ok(&mut cmd);
    out
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What U-Boot (`bootlimit=1`) does at a boot when a counted trial is still
/// pending (`upgrade_available=1`, `bootcount` past 0): boot the other
/// slot, end the trial; nothing otherwise. `get` reads the env, the change
/// goes through the real `fw_setenv -c fw_env_config -s script`.
pub fn uboot_fallback(get: &dyn Fn(&str) -> String, fw_env_config: &Path, script: &Path) {
    if get("upgrade_available") != "1" || get("bootcount") == "0" {
        return;
    }
    let back = if get("mender_boot_part") == "3" {
        "2"
    } else {
        "3"
    };
    std::fs::write(
        script,
        format!("mender_boot_part={back}\nmender_boot_part_hex={back}\nupgrade_available=0\nbootcount=0\n"),
    )
    .unwrap();
    run_ok(
        Command::new("fw_setenv")
            .arg("-c")
            .arg(fw_env_config)
            .arg("-s")
            .arg(script),
    );
}
