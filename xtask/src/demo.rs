//! `cargo xtask demo`: a full A/B update on file-backed slots, with the real
//! artifact tool and the real U-Boot env tools, and no server to set up.
//!
//! 1. builds `otalite` (release);
//! 2. makes a device in `target/demo/`: two 64 MiB slot files
//!    (`mmcblk0p2` running `release-1`, `mmcblk0p3` inactive), a redundant
//!    U-Boot env made by `mkenvimage`, `mender.conf`, `device_type`;
//! 3. writes a 32 MiB rootfs image and `release-2.mender` with `mender-artifact`;
//! 4. shows a corrupted copy being refused with nothing changed;
//! 5. `otalite install`, the bootloader's trial boot (`bootcount=1`, as U-Boot
//!    does it), `otalite commit`, and prints the env and provides after each step;
//! 6. managed mode: starts the project's Mender test server over HTTPS with a
//!    self-signed certificate serving `release-3`, runs `otalite daemon`
//!    (auth, inventory, update check, download, install, reboot), simulates
//!    the reboot and the trial boot, runs the daemon again (verify, confirm,
//!    commit, report success), narrating the server's view.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const SLOT_MIB: u64 = 64;
const IMAGE_MIB: usize = 32;

fn need(tool: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        bail!("{tool} is missing: run .ci/setup first (or apt-get install {package})");
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<String> {
    crate::util::output(command)
}

fn say(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

struct Demo {
    dir: PathBuf,
    binary: PathBuf,
}

impl Demo {
    fn otalite(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env("MENDER_CONF_DIR", self.dir.join("etc"))
            .arg("-c")
            .arg(self.dir.join("etc/mender.conf"))
            .arg("-d")
            .arg(self.dir.join("data"))
            .args(args);
        command
    }

    fn show_env(&self) -> Result<()> {
        let env = run(Command::new("fw_printenv")
            .arg("-c")
            .arg(self.dir.join("etc/fw_env.config"))
            .args(["mender_boot_part", "upgrade_available", "bootcount"]))?;
        println!(
            "   boot env (fw_printenv): {}",
            env.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let name = run(&mut self.otalite(&["show-artifact"]))?;
        println!(
            "   running artifact (otalite show-artifact): {}",
            name.trim()
        );
        Ok(())
    }

    fn set_env(&self, lines: &str) -> Result<()> {
        let script = self.dir.join("setenv.txt");
        std::fs::write(&script, lines)?;
        run(Command::new("fw_setenv")
            .arg("-c")
            .arg(self.dir.join("etc/fw_env.config"))
            .arg("-s")
            .arg(&script))?;
        Ok(())
    }
}

fn image(len: usize) -> Vec<u8> {
    // Rootfs-like: a mix of zeros, repeated text and noise (compresses ~2.5x).
    let mut state = 0x9E37_79B9u32;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let kind = state % 4;
        for i in 0..4096.min(len - bytes.len()) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            bytes.push(match kind {
                0 => 0,
                1 => b"#!/bin/sh\nexec /sbin/init\n"[i % 26],
                _ => state as u8,
            });
        }
    }
    bytes
}

/// Runs the demo.
pub fn demo(_args: &[&str]) -> Result<()> {
    for (tool, package) in [
        ("mender-artifact", "mender-artifact"),
        ("mkenvimage", "u-boot-tools"),
        ("fw_printenv", "libubootenv-tool"),
        ("fw_setenv", "libubootenv-tool"),
    ] {
        need(tool, package)?;
    }
    let root = crate::workspace_root();
    say("building otalite (release)");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "otalite-linux",
            "-p",
            "otalite-testserver",
        ])
        .status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let demo = Demo {
        dir: root.join("target/demo"),
        binary: root.join("target/release/otalite"),
    };
    let dir = &demo.dir;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    for sub in ["etc", "data"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }

    say(&format!(
        "device: two {SLOT_MIB} MiB file-backed slots and a redundant U-Boot env in {}",
        dir.display()
    ));
    for slot in ["mmcblk0p2", "mmcblk0p3"] {
        std::fs::File::create(dir.join(slot))?.set_len(SLOT_MIB << 20)?;
    }
    // A redundant env made by the real mkenvimage, booting partition 2.
    crate::util::write_uboot_env(&dir.join("uboot.env"), &dir.join("etc/fw_env.config"))?;
    std::fs::write(
        dir.join("etc/mender.conf"),
        format!(
            "{{\n  \"RootfsPartA\": \"{}\",\n  \"RootfsPartB\": \"{}\",\n  \"FwEnvConfig\": \"{}\"\n}}\n",
            dir.join("mmcblk0p2").display(),
            dir.join("mmcblk0p3").display(),
            dir.join("etc/fw_env.config").display()
        ),
    )?;
    std::fs::write(dir.join("data/device_type"), "device_type=demo-board\n")?;
    std::fs::write(dir.join("etc/artifact_info"), "artifact_name=release-1\n")?;
    demo.show_env()?;

    say(&format!(
        "artifact: a {IMAGE_MIB} MiB rootfs image packed by mender-artifact (gzip)"
    ));
    let image_path = dir.join("rootfs-release-2.img");
    let image_bytes = image(IMAGE_MIB << 20);
    std::fs::write(&image_path, &image_bytes)?;
    let artifact = dir.join("release-2.mender");
    run(Command::new("mender-artifact")
        .args([
            "write",
            "rootfs-image",
            "-t",
            "demo-board",
            "-n",
            "release-2",
            "--compression",
            "gzip",
            "-f",
        ])
        .arg(&image_path)
        .arg("-o")
        .arg(&artifact))?;
    println!(
        "   {} ({} bytes)",
        artifact.display(),
        std::fs::metadata(&artifact)?.len()
    );

    say("a corrupted copy is refused, and nothing changes");
    let mut corrupted = std::fs::read(&artifact)?;
    let at = corrupted.len() - 8192;
    corrupted[at] ^= 0x55;
    let corrupted_path = dir.join("corrupted.mender");
    std::fs::write(&corrupted_path, corrupted)?;
    let output = demo
        .otalite(&["install", corrupted_path.to_str().unwrap_or_default()])
        .output()?;
    println!("   exit code {:?}", output.status.code());
    for line in String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains("level=error"))
    {
        println!("   {line}");
    }
    demo.show_env()?;

    say("otalite install release-2.mender (streams into the inactive slot, then switches the bootloader)");
    let status = demo
        .otalite(&["install", artifact.to_str().unwrap_or_default()])
        .status()?;
    if !status.success() {
        bail!("otalite install failed: {status}");
    }
    demo.show_env()?;
    let slot = std::fs::read(dir.join("mmcblk0p3"))?;
    let identical = slot.get(..image_bytes.len()) == Some(&image_bytes[..]);
    println!("   slot B holds the image byte for byte: {identical}");
    if !identical {
        bail!("slot B does not hold the image");
    }

    say("reboot (simulated): U-Boot boots partition 3 once on trial and counts it");
    demo.set_env("bootcount=1\n")?;
    demo.show_env()?;

    say("otalite commit (on the new system)");
    let status = demo.otalite(&["commit"]).status()?;
    if !status.success() {
        bail!("otalite commit failed: {status}");
    }
    demo.show_env()?;
    println!("   provides:");
    for line in run(&mut demo.otalite(&["show-provides"]))?.lines() {
        println!("     {line}");
    }
    say("standalone done: the device runs release-2 from slot B; slot A keeps release-1");
    managed(&demo, &image_bytes)
}

/// Part two: the same device, managed by a Mender server (the project's
/// test server over HTTPS with a self-signed certificate).
fn managed(demo: &Demo, image_bytes: &[u8]) -> Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::sync::mpsc;
    let dir = &demo.dir;
    let root = crate::workspace_root();
    say("managed mode: a Mender server (test server, HTTPS, self-signed) deploys release-3");
    let mut image3 = image_bytes.to_vec();
    image3.reverse();
    let image_path = dir.join("rootfs-release-3.img");
    std::fs::write(&image_path, &image3)?;
    let artifact = dir.join("release-3.mender");
    run(Command::new("mender-artifact")
        .args([
            "write",
            "rootfs-image",
            "-t",
            "demo-board",
            "-n",
            "release-3",
            "--compression",
            "gzip",
            "-f",
        ])
        .arg(&image_path)
        .arg("-o")
        .arg(&artifact))?;
    let share = dir.join("share");
    for (path, text) in [
        (
            "identity/mender-device-identity",
            "#!/bin/sh\necho mac=02:00:00:00:00:01\n",
        ),
        (
            "inventory/mender-inventory-demo",
            "#!/bin/sh\necho kernel=$(uname -r)\necho demo=yes\n",
        ),
    ] {
        let file = share.join(path);
        std::fs::create_dir_all(file.parent().unwrap_or(&share))?;
        std::fs::write(&file, text)?;
        executable(&file)?;
    }
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    let reboot_log = dir.join("reboot.log");
    std::fs::write(
        bin.join("reboot"),
        format!("#!/bin/sh\necho reboot >> {}\n", reboot_log.display()),
    )?;
    executable(&bin.join("reboot"))?;

    let cert = dir.join("server.pem");
    let mut server = Command::new(root.join("target/release/otalite-testserver"))
        .arg("--artifact")
        .arg(&artifact)
        .args([
            "--name",
            "release-3",
            "--device-type",
            "demo-board",
            "--https",
            "--quiet",
            "--cert-out",
        ])
        .arg(&cert)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start otalite-testserver")?;
    let server_pid = server.id();
    let (lines, from_server) = mpsc::channel::<String>();
    let stdout = server.stdout.take().context("no server stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let result = (|| -> Result<()> {
        let url = from_server
            .recv_timeout(std::time::Duration::from_secs(20))
            .context("the server printed no URL")?;
        println!("   server: {url} (certificate {})", cert.display());
        std::fs::write(
            dir.join("etc/mender.conf"),
            format!(
                "{{\n  \"ServerURL\": \"{url}\",\n  \"ServerCertificate\": \"{}\",\n  \"UpdatePollIntervalSeconds\": 2,\n  \"InventoryPollIntervalSeconds\": 2,\n  \"RetryPollIntervalSeconds\": 2,\n  \"RootfsPartA\": \"{}\",\n  \"RootfsPartB\": \"{}\",\n  \"FwEnvConfig\": \"{}\"\n}}\n",
                cert.display(),
                dir.join("mmcblk0p2").display(),
                dir.join("mmcblk0p3").display(),
                dir.join("etc/fw_env.config").display()
            ),
        )?;
        let start_daemon = || -> Result<std::process::Child> {
            let path = format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            Ok(demo
                .otalite(&["daemon"])
                .env("MENDER_DATA_DIR", &share)
                .env("PATH", path)
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(dir.join("daemon.log"))?,
                ))
                .spawn()?)
        };
        let wait_for = |what: &str, done: &dyn Fn() -> bool| -> Result<()> {
            let started = std::time::Instant::now();
            loop {
                while let Ok(line) = from_server.try_recv() {
                    println!("   server | {line}");
                }
                if done() {
                    return Ok(());
                }
                if started.elapsed() > std::time::Duration::from_secs(120) {
                    bail!(
                        "timed out waiting for {what}; see {}",
                        dir.join("daemon.log").display()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        };
        say("otalite daemon: authenticate, inventory, update check, download, install, reboot");
        let mut daemon = start_daemon()?;
        wait_for("the reboot", &|| reboot_log.exists())?;
        daemon.kill()?;
        daemon.wait()?;
        say("reboot (simulated): the daemon stops with the machine; U-Boot boots partition 2 on trial");
        demo.set_env("bootcount=1\n")?;
        demo.show_env()?;
        say("otalite daemon after the reboot: verify, confirm with the server, commit, report success");
        let mut daemon = start_daemon()?;
        let log = dir.join("daemon.log");
        wait_for("success", &|| {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("reported success"))
        })?;
        let _ = Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status();
        daemon.wait()?;
        demo.show_env()?;
        let slot = std::fs::read(dir.join("mmcblk0p2"))?;
        let identical = slot.get(..image3.len()) == Some(&image3[..]);
        println!("   slot A holds release-3 byte for byte: {identical}");
        if !identical {
            bail!("slot A does not hold the image");
        }
        println!("   daemon log: {}", log.display());
        Ok(())
    })();
    let _ = Command::new("kill").arg(server_pid.to_string()).status();
    let _ = server.wait();
    result?;
    say("done: release-3 deployed by the server and committed; slot B keeps release-2 for a rollback");
    Ok(())
}

fn executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
