//! A private system bus for tests: a real `dbus-daemon` with the default
//! policy of Debian's system bus and the policy files otalite's package
//! ships (targets/linux/dist/dbus/, the reference's content). Shared by
//! tests/dbus.rs (the service) and tests/daemon_dbus.rs (the daemon).
#![allow(dead_code, unreachable_pub, clippy::std_instead_of_core)]

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Panics with a clear message when `tool` is not installed.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed (bash .ci/setup: dbus-daemon, dbus-bin)"
    );
}

/// A private system bus with the shipped policy; killed (by its PID) and
/// its directory removed on drop.
pub struct Bus {
    daemon: Child,
    /// The bus's directory (socket, config); tests may put files here.
    pub dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Self {
        require("dbus-daemon");
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("system.d");
        std::fs::create_dir(&policies).unwrap();
        for name in [
            "io.mender.UpdateManager.conf",
            "io.mender.AuthenticationManager.conf",
        ] {
            std::fs::copy(
                root().join("targets/linux/dist/dbus").join(name),
                policies.join(name),
            )
            .unwrap();
        }
        // The default policy of Debian's system bus (/usr/share/dbus-1/
        // system.conf): nobody owns names or calls methods unless a policy
        // file allows it.
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <includedir>{policies}</includedir>
</busconfig>
"#,
            bus = dir.path().join("bus").display(),
            policies = policies.display(),
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let bus = Self { daemon, dir };
        let start = Instant::now();
        while !bus.socket().exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "dbus-daemon did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bus
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("bus")
    }

    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket().display())
    }

    /// A client command on this bus.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", self.address())
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
