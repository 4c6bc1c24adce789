//! The hook sets in `examples/hooks/` (RAUC, SWUpdate), run as the jobs
//! mode runs them (`<hook> <elapsed> <retry> <meta> [file|force]`) with
//! stub `rauc`, `swupdate`, `fw_printenv`, `fw_setenv`, `reboot` and a
//! health check on the `PATH` that record their arguments: what each hook
//! calls, prints and exits with. Their `upparat.ini` files parse as
//! upparat reads them.

#![allow(clippy::std_instead_of_core)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hooks")
}

/// A temp dir with stubs in `bin/` that append `name args` to `calls`.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let me = Self { dir };
        for name in ["rauc", "swupdate", "fw_setenv", "reboot"] {
            me.stub(name, "");
        }
        me
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A stub that records its call, then runs `body`.
    fn stub(&self, name: &str, body: &str) {
        let path = self.path("bin").join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> {}\n{body}\n",
                self.path("calls").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn run(&self, hook: &str, args: &[&str], env: &[(&str, PathBuf)]) -> Output {
        let mut command = Command::new(examples().join(hook));
        command.args(args).env(
            "PATH",
            format!(
                "{}:{}",
                self.path("bin").display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        command.env("OTALITE_CRITICAL_LOCK", self.path("critical.lock"));
        command.env("OTALITE_HEALTH_CHECK", self.path("bin/healthcheck"));
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn rauc_hooks() {
    let b = Sandbox::new();
    // version: from the file, or from `rauc status`.
    std::fs::write(b.path("version"), "2.0.0\n").unwrap();
    let out = b.run(
        "rauc/version",
        &["0", "0", ""],
        &[("OTALITE_VERSION_FILE", b.path("version"))],
    );
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "2.0.0"));
    b.stub(
        "rauc",
        "echo \"RAUC_SYSTEM_COMPATIBLE='board'\"\necho \"RAUC_SYSTEM_VERSION='1.4.2'\"",
    );
    let out = b.run(
        "rauc/version",
        &["0", "0", ""],
        &[("OTALITE_VERSION_FILE", b.path("none"))],
    );
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "1.4.2"));
    b.stub("rauc", "");
    // download and install wait for the critical section (exit 3).
    std::fs::write(b.path("critical.lock"), "").unwrap();
    assert_eq!(
        b.run("rauc/download", &["0", "0", "m"], &[]).status.code(),
        Some(3)
    );
    assert_eq!(
        b.run("rauc/install", &["0", "0", "m", "/d/job"], &[])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        b.run("rauc/restart", &["0", "0", "m", ""], &[])
            .status
            .code(),
        Some(3)
    );
    std::fs::remove_file(b.path("critical.lock")).unwrap();
    assert_eq!(
        b.run("rauc/download", &["5", "1", "m"], &[]).status.code(),
        Some(0)
    );
    let out = b.run("rauc/install", &["0", "0", "m", "/d/upparat_job-1"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "installing upparat_job-1\ninstalled\n");
    // A failing `rauc install` fails the hook (exit 1: the job fails).
    b.stub("rauc", "exit 1");
    assert_eq!(
        b.run("rauc/install", &["0", "0", "m", "/d/x"], &[])
            .status
            .code(),
        Some(1)
    );
    b.stub("rauc", "");
    // restart reboots; ready marks the slot good once healthy.
    assert_eq!(
        b.run("rauc/restart", &["0", "0", "m", ""], &[])
            .status
            .code(),
        Some(0)
    );
    b.stub("healthcheck", "exit 1");
    assert_eq!(
        b.run("rauc/ready", &["0", "0", "m"], &[]).status.code(),
        Some(3)
    );
    b.stub("healthcheck", "exit 0");
    assert_eq!(
        b.run("rauc/ready", &["60", "1", "m"], &[]).status.code(),
        Some(0)
    );
    let calls = b.calls();
    assert!(
        calls.contains(&"rauc install /d/upparat_job-1".to_string()),
        "{calls:?}"
    );
    assert!(calls.contains(&"reboot ".to_string()), "{calls:?}");
    assert_eq!(
        calls.last().map(String::as_str),
        Some("rauc status mark-good"),
        "{calls:?}"
    );
}

#[test]
fn swupdate_hooks() {
    let b = Sandbox::new();
    std::fs::write(b.path("sw-versions"), "bootloader 2023.04\nrootfs 3.1.0\n").unwrap();
    let out = b.run(
        "swupdate/version",
        &["0", "0", ""],
        &[("OTALITE_SW_VERSIONS", b.path("sw-versions"))],
    );
    assert_eq!((out.status.code(), stdout(&out).trim()), (Some(0), "3.1.0"));
    let out = b.run(
        "swupdate/install",
        &["0", "0", "stable,copy2", "/d/upparat_job-2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0));
    let out = b.run("swupdate/install", &["0", "0", "", "/d/upparat_job-3"], &[]);
    assert_eq!(out.status.code(), Some(0));
    b.stub("swupdate", "exit 1");
    assert_eq!(
        b.run("swupdate/install", &["0", "0", "", "/d/x"], &[])
            .status
            .code(),
        Some(1)
    );
    // ready: ustate 1 is confirmed, 2 (fell back) fails, 0 is fine.
    for (state, code) in [("1", 0), ("2", 1), ("0", 0)] {
        b.stub("fw_printenv", &format!("echo {state}"));
        let out = b.run("swupdate/ready", &["0", "0", ""], &[]);
        assert_eq!(out.status.code(), Some(code), "ustate {state}");
    }
    assert_eq!(
        b.run("swupdate/restart", &["0", "0", "", ""], &[])
            .status
            .code(),
        Some(0)
    );
    let calls = b.calls();
    for expected in [
        "swupdate -v -e stable,copy2 -i /d/upparat_job-2",
        "swupdate -v -i /d/upparat_job-3",
        "fw_setenv ustate 0",
        "reboot ",
    ] {
        assert!(
            calls.contains(&expected.to_string()),
            "{expected} missing: {calls:?}"
        );
    }
    // ustate 2 and 0 set nothing.
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("fw_setenv")).count(),
        1
    );
}

#[test]
fn example_configs_parse_as_upparat_reads_them() {
    for set in ["rauc", "swupdate"] {
        let text = std::fs::read_to_string(examples().join(set).join("upparat.ini")).unwrap();
        let config = otalite::protocol::upparat_ini::UpparatConfig::parse(&text, "host")
            .unwrap_or_else(|e| panic!("{set}: {e}"));
        assert_eq!(config.broker.port, 8883);
        assert!(config.broker.tls.is_some(), "{set}: mutual TLS");
        let install = config.hooks.install.unwrap();
        assert!(install.ends_with(&format!("{set}/install")), "{install}");
        assert_eq!(config.hooks.retry_interval, 60);
    }
}
