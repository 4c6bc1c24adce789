//! The managed-mode test harness: a device (see [`super::Device`]) with
//! identity and inventory scripts and a fake `reboot`, the project's Mender
//! test server, and helpers to run the real daemon through deployments.
#![allow(dead_code, unreachable_pub, clippy::std_instead_of_core)]

use super::*;
use otalite_testserver::{DeploymentState, ServerConfig, TestServer};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A daemon started by a test. Dropping it kills it (by its PID) and reaps
/// it, so a failing test never leaves a daemon behind.
pub struct DaemonProcess(pub Child);

impl std::ops::Deref for DaemonProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for DaemonProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub const WAIT: Duration = Duration::from_secs(60);

pub struct Managed {
    pub device: Device,
    pub server: TestServer,
    env: Vec<(&'static str, String)>,
    pub started: Instant,
}

pub fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The usual fast polling against the plain HTTP listener.
pub fn fast_polling(server: &TestServer, _root: &Path) -> String {
    format!(
        r#", "ServerURL": "{}", "UpdatePollIntervalSeconds": 1, "InventoryPollIntervalSeconds": 1, "RetryPollIntervalSeconds": 1"#,
        server.url()
    )
}

impl Managed {
    pub fn new(config: ServerConfig) -> Self {
        Self::with_config(config, fast_polling)
    }

    /// `conf` builds the extra `mender.conf` members (it may write files
    /// under the device root, e.g. a certificate).
    pub fn with_config(
        config: ServerConfig,
        conf: impl FnOnce(&TestServer, &Path) -> String,
    ) -> Self {
        let server = TestServer::start(config);
        let device = Device::new();
        let root = device.root();
        device.write_config(&conf(&server, &root));
        executable(
            &root.join("share/identity/mender-device-identity"),
            "#!/bin/sh\necho mac=02:00:00:00:00:01\n",
        );
        executable(
            &root.join("share/inventory/mender-inventory-test"),
            "#!/bin/sh\necho kernel=test-kernel\necho ipv4=10.0.0.2/8\necho ipv4=192.168.1.10/24\n",
        );
        executable(
            &root.join("bin/reboot"),
            &format!(
                "#!/bin/sh\necho reboot >> {}\n",
                root.join("reboot.log").display()
            ),
        );
        Self {
            device,
            server,
            env: vec![("OTALITE_TEST_BACKOFF_MS", "50".into())],
            started: Instant::now(),
        }
    }

    /// Sets `OTALITE_TEST_IO_TIMEOUT_MS` for the daemons started from now on.
    pub fn io_timeout_ms(mut self, ms: u64) -> Self {
        self.env
            .push(("OTALITE_TEST_IO_TIMEOUT_MS", ms.to_string()));
        self
    }

    pub fn start(&self) -> DaemonProcess {
        self.start_with(&[])
    }

    /// Starts the daemon with extra environment variables (e.g. a crash point).
    pub fn start_with(&self, extra_env: &[(&str, &str)]) -> DaemonProcess {
        let path = format!(
            "{}:{}",
            self.device.root().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = self.device.command();
        command
            .arg("daemon")
            .env("PATH", path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.device.root().join("daemon.log"))
                    .unwrap(),
            ));
        for (name, value) in &self.env {
            command.env(name, value);
        }
        for (name, value) in extra_env {
            command.env(name, value);
        }
        DaemonProcess(command.spawn().expect("start the daemon"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.device.root().join("daemon.log")).unwrap_or_default()
    }

    pub fn reboots(&self) -> usize {
        std::fs::read_to_string(self.device.root().join("reboot.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    pub fn wait(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(
                started.elapsed() < WAIT,
                "timed out waiting for {what}; requests: {:?}\ndaemon log:\n{}",
                self.server
                    .requests()
                    .iter()
                    .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                    .collect::<Vec<_>>(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn finished(&self, id: &str, status: &str) -> bool {
        self.server.deployment_state(id) == Some(DeploymentState::Finished(status.into()))
    }

    /// What the bootloader does on the trial boot: count it.
    pub fn trial_boot(&self) {
        let script = self.device.root().join("boot.env");
        std::fs::write(&script, "bootcount=1\n").unwrap();
        run_ok(
            Command::new("fw_setenv")
                .arg("-c")
                .arg(self.device.root().join("etc/fw_env.config"))
                .arg("-s")
                .arg(&script),
        );
    }

    /// What U-Boot (`bootlimit=1`) does at the next boot when the counted
    /// trial is still pending: boot the other slot, end the trial.
    pub fn bootloader_fallback(&self) {
        let env = self.device.env();
        uboot_fallback(
            &|name| env.get(name).cloned().unwrap_or_default(),
            &self.device.root().join("etc/fw_env.config"),
            &self.device.root().join("boot.env"),
        );
    }

    pub fn statuses(&self, id: &str) -> Vec<String> {
        self.server
            .statuses(id)
            .into_iter()
            .map(|(status, _)| status)
            .collect()
    }

    /// Exactly one final status, and it is `expected`.
    pub fn assert_one_final(&self, id: &str, expected: &str) {
        let statuses = self.statuses(id);
        let finals: Vec<&String> = statuses
            .iter()
            .filter(|s| *s == "success" || *s == "failure")
            .collect();
        assert_eq!(finals, [expected], "{statuses:?}");
    }

    /// Requests (method, status) to paths containing `part`.
    pub fn requests_to(&self, part: &str) -> Vec<(String, u16)> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.path.contains(part))
            .map(|r| (r.method, r.status))
            .collect()
    }

    /// A deployment of a fresh artifact of `len` bytes (uncompressed, so
    /// the download is about `len` bytes).
    pub fn deployment(&self, len: usize) -> (String, Vec<u8>) {
        let image = image_bytes(len, 17);
        let artifact = self
            .device
            .artifact("release-2", &image, &["--compression", "none"]);
        let id = self
            .server
            .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
        (id, image)
    }

    /// A `release-2` deployment of a `len`-byte image (seeded `seed`):
    /// the artifact's path and the deployment id.
    pub fn deploy_release_2(&self, len: usize, seed: u32) -> (std::path::PathBuf, String) {
        let artifact = self
            .device
            .artifact("release-2", &image_bytes(len, seed), &[]);
        let id = self
            .server
            .add_deployment(&artifact, "release-2", &[DEVICE_TYPE]);
        (artifact, id)
    }

    /// The messages of deployment `id`'s log as the server received it.
    pub fn log_messages(&self, id: &str) -> Vec<String> {
        self.server
            .logs(id)
            .into_iter()
            .map(|entry| entry.message)
            .collect()
    }

    /// Runs the daemon through the reboot, simulates the trial boot, runs
    /// it again until the server has `success`, stops it (exit 0) and
    /// checks the device runs the new artifact.
    pub fn deploy_to_success(&self, id: &str, image: &[u8]) {
        let mut daemon = self.start();
        self.wait("the reboot", |m| m.reboots() > 0);
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        assert_eq!(&self.device.slot(3)[..image.len()], image);
        self.trial_boot();
        let daemon = self.start();
        self.wait("success", |m| m.finished(id, "success"));
        assert_eq!(stop(daemon), Some(0));
        assert_eq!(self.device.show_artifact(), "release-2");
        assert_eq!(self.device.env_var("mender_boot_part"), "3");
        assert_eq!(self.device.env_var("upgrade_available"), "0");
        self.assert_one_final(id, "success");
    }

    /// Runs the daemon until the server has `failure` and the log, stops it
    /// (exit 0) and checks nothing changed on the active side.
    pub fn deploy_to_failure(&self, id: &str) {
        let active = self.device.slot(2);
        let daemon = self.start();
        self.wait("failure", |m| m.finished(id, "failure"));
        self.wait("the log upload", |m| !m.server.logs(id).is_empty());
        assert_eq!(stop(daemon), Some(0));
        self.assert_untouched(&active);
        self.assert_one_final(id, "failure");
        assert!(
            !self.statuses(id).iter().any(|s| s == "installing"),
            "{:?}",
            self.statuses(id)
        );
    }

    pub fn assert_untouched(&self, active: &[u8]) {
        assert_eq!(self.reboots(), 0);
        assert_eq!(self.device.env_var("mender_boot_part"), "2");
        assert_eq!(self.device.env_var("upgrade_available"), "0");
        assert_eq!(self.device.show_artifact(), "release-1");
        assert!(self.device.slot(2) == active, "the active slot changed");
    }

    pub fn done(&self, name: &str) {
        self.server.assert_conformant();
        eprintln!(
            "TIMING {name}: {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

pub fn stop(mut child: DaemonProcess) -> Option<i32> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the daemon did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
