//! `cargo xtask qemu [--all] [--scenario N]... [--keep]`: otalite on an
//! emulated board with the real bootloader.
//!
//! The board (`board-support/qemu-virt/`) is QEMU's `virt` machine with
//! Debian's `qemu_arm64` U-Boot as firmware, Debian's cloud arm64 kernel, a
//! busybox userland and the static aarch64 `otalite` from `cargo xtask
//! dist`'s build (`--arch armv7`: `qemu-system-arm`, `qemu_arm` U-Boot,
//! the armmp `zImage`, the armv7 musl build). U-Boot's `bootcmd` (in a read-only pflash env) reads and
//! writes the A/B state in a raw libubootenv block on the virtio disk, which
//! otalite writes through `/etc/fw_env.config`. The guest reaches the
//! project's test server (`otalite-testserver`) at 10.0.2.2 through QEMU's
//! user network and a TCP relay written here (it records the first poll,
//! holds a download to cut the power in the middle of it, and serves the
//! artifact file for the standalone scenario).
//!
//! | scenario | what happens | checked |
//! |---|---|---|
//! | 1 managed update | daemon polls, downloads, writes B, switches the env, reboots; U-Boot boots B; otalite commits | server `success`; env `mender_boot_part=3 upgrade_available=0`; B holds the v2 image byte for byte; state on the data partition idle |
//! | 2 health check fails | v2 reboots before otalite can commit; bootcount passes bootlimit; U-Boot boots A | server `failure`; env back on 2 |
//! | 3 B hangs | v2 hangs; the harness resets the board over QMP after 5 s without console output; then again with Debian's generic kernel and QEMU's i6300esb, where v2 opens `/dev/watchdog` and never feeds it | as 2 |
//! | 4 power cuts | QEMU `kill -9` in the download, in the write, at the env switch; a new QEMU on the same files | the board boots; the run ends with `success` (env on 3) or `failure` (env on 2) |
//! | 5 standalone | `otalite install URL`, reboot, `otalite commit` | env on 3, B holds the v2 image |
//! | 6 idle | the daemon polls over HTTP, then over HTTPS (server certificate in the image), with nothing to install | auth and inventory answered 200, three polls; VmRSS reported |
//! | 7 jobs idle | `otalite jobs -c <upparat.ini>` connects to a `mosquitto` on the host (10.0.2.2) with mutual TLS (certificates made here, on the data partition) and subscribes; no job comes | the broker logs the connection and the `notify` subscription; VmRSS reported |
//!
//! Scenarios 1, 2 and 4 run by default (CI); `--all` runs all six on both
//! boards.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{path_str, run_quiet, target_dir};

const USAGE: &str = "usage: cargo xtask qemu [--all] [--arch aarch64|armv7] [--scenario N]... [--keep]
  Boots the emulated aarch64 board (QEMU virt + Debian's U-Boot) and runs
  otalite's update scenarios on it:
    1 managed update   2 health check fails -> rollback
    3 B hangs -> QMP reset, and i6300esb watchdog (generic kernel) -> rollback
    4 power cuts (download, write, env switch)   5 standalone install + commit
    6 idle daemon over HTTP and HTTPS (memory)
  Default: 1, 2, 4 on aarch64. --all: every scenario on aarch64, then on
  armv7 (qemu-system-arm -cpu cortex-a15, qemu_arm U-Boot, armmp zImage). --keep keeps the work directory (target/qemu-run-PID, until the next run).";

/// One emulated board: QEMU machine, firmware, kernel, otalite build.
struct Arch {
    /// `--arch` name.
    name: &'static str,
    /// otalite's target (settings from targets/triples/).
    triple: &'static str,
    /// Debian architecture of the guest packages.
    deb_arch: &'static str,
    qemu: &'static str,
    cpu: &'static str,
    uboot: &'static str,
    /// U-Boot's env program in board-support/qemu-virt/.
    env: &'static str,
    /// Runs the guest's binaries on the host.
    user_static: &'static str,
    device_type: &'static str,
    kernel: Kernel,
    /// U-Boot decompresses a gzip'd `Image` (arm64); a `zImage` decompresses
    /// itself (armv7).
    gzip_kernel: bool,
}

const AARCH64: Arch = Arch {
    name: "aarch64",
    triple: "aarch64-unknown-linux-musl",
    deb_arch: "arm64",
    qemu: "qemu-system-aarch64",
    cpu: "cortex-a57",
    uboot: "/usr/lib/u-boot/qemu_arm64/u-boot.bin",
    env: "uboot-env.txt",
    user_static: "qemu-aarch64-static",
    device_type: "qemu-virt-arm64",
    kernel: CLOUD,
    gzip_kernel: true,
};

const ARMV7: Arch = Arch {
    name: "armv7",
    triple: "armv7-unknown-linux-musleabihf",
    deb_arch: "armhf",
    qemu: "qemu-system-arm",
    cpu: "cortex-a15",
    uboot: "/usr/lib/u-boot/qemu_arm/u-boot.bin",
    env: "uboot-env-armv7.txt",
    user_static: "qemu-arm-static",
    device_type: "qemu-virt-armv7",
    kernel: Kernel {
        metapackage: "linux-image-armmp",
        modules: &[
            "virtio_mmio",
            "virtio_blk",
            "failover",
            "net_failover",
            "virtio_net",
            "crc32c_generic",
            "ext4",
        ],
    },
    gzip_kernel: false,
};
const BOARD_DIR: &str = "board-support/qemu-virt";
/// Every boot stage gets this long (typical: 3-4 s; TCG under load is slower).
const STAGE: Duration = Duration::from_secs(90);
/// A Debian arm64 kernel: its metapackage and the modules the board needs
/// (their dependencies are added and ordered from `modinfo`).
struct Kernel {
    metapackage: &'static str,
    modules: &'static [&'static str],
}

/// The cloud kernel (27 MB Image; ext4 built in, virtio as modules).
const CLOUD: Kernel = Kernel {
    metapackage: "linux-image-cloud-arm64",
    modules: &[
        "virtio",
        "virtio_ring",
        "virtio_mmio",
        "virtio_blk",
        "failover",
        "net_failover",
        "virtio_net",
    ],
};

/// The generic kernel: ext4 as modules, and the i6300esb watchdog driver
/// the cloud kernel lacks.
const GENERIC: Kernel = Kernel {
    metapackage: "linux-image-arm64",
    modules: &[
        "virtio_mmio",
        "virtio_blk",
        "failover",
        "net_failover",
        "virtio_net",
        "crc32c_generic",
        "ext4",
        "i6300esb",
    ],
};

/// Parameters for a module (`insmod` arguments in the initramfs).
fn module_args(name: &str) -> &'static str {
    match name {
        // Resets 5 s after /dev/watchdog was last fed (default 30 s).
        "i6300esb.ko" => " heartbeat=5",
        _ => "",
    }
}

/// Disk layout (512-byte sectors): MBR, the A/B env at 0x100000, p1..p4.
const DISK_MIB: u64 = 160;
const ENV_OFFSET: u64 = 0x10_0000;
const ENV_SIZE: u64 = 0x2_0000;
const PART_A: (u64, u64) = (24576, 131_072);
const PART_B: (u64, u64) = (155_648, 131_072);
const PART_DATA: (u64, u64) = (286_720, 32768);
const SFDISK: &str = "label: dos
start=8192, size=16384, type=c
start=24576, size=131072, type=83
start=155648, size=131072, type=83
start=286720, size=32768, type=83
";

fn need(tool: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    ensure!(
        found,
        "{tool} is missing: run `bash .ci/setup` (or apt-get install {package})"
    );
    Ok(())
}

fn run(command: &mut Command) -> Result<String> {
    crate::util::output(command)
}

fn sh(script: &str) -> Result<String> {
    run(Command::new("sh").args(["-ec", script]))
}

// ---------------------------------------------------------------------------
// Guest ingredients: Debian debs (cached), otalite, images

/// The extracted kernel and busybox for the guest.
struct Debs {
    /// gzip'd arm64 `Image` (U-Boot's `booti` decompresses it).
    kernel_gz: PathBuf,
    /// Kernel release (`lib/modules/<release>`).
    release: String,
    /// The `.ko` files of the kernel's modules and their dependencies, in
    /// load order.
    modules: Vec<PathBuf>,
    /// Static arm64 busybox.
    busybox: PathBuf,
}

/// apt options for a package index of `arch` kept in the cache (armhf:
/// the system's index has no armhf, and adding it system-wide is flaky);
/// none for arm64 (.ci/setup adds it).
fn apt_options(cache: &Path, arch: &Arch) -> Result<Vec<String>> {
    if arch.deb_arch == "arm64" {
        return Ok(Vec::new());
    }
    let dir = cache.join(format!("apt-{}", arch.deb_arch));
    let options = vec![
        "-o".to_string(),
        format!("Dir::State::Lists={}", path_str(&dir.join("lists"))),
        "-o".into(),
        format!("Dir::Cache={}", path_str(&dir)),
        "-o".into(),
        "Dir::Cache::pkgcache=".into(),
        "-o".into(),
        "Dir::Cache::srcpkgcache=".into(),
        "-o".into(),
        format!("APT::Architecture={}", arch.deb_arch),
        "-o".into(),
        format!("APT::Architectures::={}", arch.deb_arch),
    ];
    if !dir.join("lists").exists() {
        fs::create_dir_all(dir.join("lists/partial"))?;
        fs::create_dir_all(dir.join("archives/partial"))?;
        eprintln!(
            "qemu: apt-get update for {} (index in {})",
            arch.deb_arch,
            dir.display()
        );
        let status = Command::new("apt-get")
            .args(&options)
            .args(["-q", "update"])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            // A mirror syncing one index (seen for bookworm-security armhf)
            // fails the update while the main index loaded.
            eprintln!(
                "qemu: apt-get update for {} failed ({status}); trying the indexes it got",
                arch.deb_arch
            );
        }
    }
    Ok(options)
}

/// Downloads (once) and extracts a Debian kernel for `arch`, found through
/// its metapackage, and `busybox-static`.
fn debs(cache: &Path, arch: &Arch, kernel: &Kernel) -> Result<Debs> {
    let options = apt_options(cache, arch)?;
    let meta = format!("{}:{}", kernel.metapackage, arch.deb_arch);
    let depends = run(Command::new("apt-cache")
        .args(&options)
        .args(["depends", &meta]))
    .with_context(|| {
        format!(
            "no {} package index: run `bash .ci/setup` (dpkg --add-architecture arm64; apt-get update)",
            arch.deb_arch
        )
    })?;
    let kernel_pkg = depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .with_context(|| format!("{meta} names no kernel package"))?
        .to_string();
    let debs = cache.join(format!("debs-{}", arch.deb_arch));
    fs::create_dir_all(&debs)?;
    let name = kernel_pkg.split(':').next().unwrap_or(&kernel_pkg);
    let have = |prefix: &str| -> Option<PathBuf> {
        fs::read_dir(&debs)
            .ok()?
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                (n.starts_with(&format!("{prefix}_"))
                    && n.ends_with(&format!("_{}.deb", arch.deb_arch)))
                .then(|| e.path())
            })
    };
    let package = if kernel_pkg.contains(':') {
        kernel_pkg.clone()
    } else {
        format!("{kernel_pkg}:{}", arch.deb_arch)
    };
    let busybox = format!("busybox-static:{}", arch.deb_arch);
    for (prefix, package) in [
        (name, package.as_str()),
        ("busybox-static", busybox.as_str()),
    ] {
        if have(prefix).is_none() {
            eprintln!("qemu: apt-get download {package}");
            run(Command::new("apt-get")
                .current_dir(&debs)
                .args(&options)
                .args(["download", "-q", package]))?;
        }
    }
    let kernel_deb = have(name).context("kernel deb missing after download")?;
    let busybox_deb = have("busybox-static").context("busybox deb missing after download")?;
    let kroot = cache.join(format!("root-{name}"));
    if !kroot.join("lib/modules").exists() {
        let _ = fs::remove_dir_all(&kroot);
        run(Command::new("dpkg").arg("-x").arg(&kernel_deb).arg(&kroot))?;
    }
    let broot = cache.join(format!("root-busybox-{}", arch.deb_arch));
    if !broot.join("bin/busybox").exists() {
        let _ = fs::remove_dir_all(&broot);
        run(Command::new("dpkg").arg("-x").arg(&busybox_deb).arg(&broot))?;
    }
    let release = fs::read_dir(kroot.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .context("the kernel deb has no lib/modules/<release>")?;
    let kernel_gz = if arch.gzip_kernel {
        cache.join(format!("Image-{release}.gz"))
    } else {
        kroot.join(format!("boot/vmlinuz-{release}"))
    };
    if !kernel_gz.exists() {
        let image = kroot.join(format!("boot/vmlinuz-{release}"));
        let tmp = kernel_gz.with_extension("tmp");
        sh(&format!(
            "gzip -9 -c '{}' > '{}'",
            path_str(&image),
            path_str(&tmp)
        ))?;
        fs::rename(&tmp, &kernel_gz)?;
    }
    let mut found = BTreeMap::new();
    walk(&kroot.join("lib/modules").join(&release), &mut |p| {
        if let Some(stem) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            found.insert(stem.to_string(), p.to_path_buf());
        }
    })?;
    // Dependencies first (`modinfo -F depends`): the order changes between
    // kernel builds (6.1.0-57 needs virtio_ring before virtio).
    let mut modules = Vec::new();
    let mut pending: Vec<String> = kernel
        .modules
        .iter()
        .rev()
        .map(|m| (*m).to_string())
        .collect();
    while let Some(m) = pending.pop() {
        let path = found
            .get(&m)
            .with_context(|| format!("{m}.ko is not in {kernel_pkg}"))?;
        if modules.contains(path) {
            continue;
        }
        let depends = run_quiet(&["modinfo", "-F", "depends", &path_str(path)])?;
        let missing: Vec<String> = depends
            .trim()
            .split(',')
            .filter(|d| !d.is_empty())
            .filter(|d| found.get(*d).is_some_and(|p| !modules.contains(p)))
            .map(str::to_string)
            .collect();
        if missing.is_empty() {
            modules.push(path.clone());
        } else {
            ensure!(pending.len() < 100, "module dependency loop at {m}");
            pending.push(m);
            pending.extend(missing);
        }
    }
    Ok(Debs {
        kernel_gz,
        release,
        modules,
        busybox: broot.join("bin/busybox"),
    })
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| path_str(dir))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            walk(&path, f)?;
        } else {
            f(&path);
        }
    }
    Ok(())
}

/// Builds the board's static binary exactly as `cargo xtask dist` does
/// (`Target::dist_build`; cargo reuses dist's build when it is up to date).
fn build_otalite(root: &Path, arch: &Arch) -> Result<PathBuf> {
    let triple = arch.triple;
    let targets = crate::dist::targets(root)?;
    let target = targets
        .iter()
        .find(|t| t.triple == triple)
        .with_context(|| format!("no targets/triples/{triple}.toml"))?;
    // Exactly the shipped binary: `cargo xtask dist`'s build command.
    let mut build = target.dist_build(root, crate::dist::PROFILE)?;
    eprintln!("qemu: {build:?}");
    ensure!(
        build.status().context("run cargo")?.success(),
        "cargo build for {triple} failed (run `bash .ci/setup` for the target and cross compiler)"
    );
    let mut server = crate::util::nested_cargo(root);
    server.args(["build", "-p", "otalite-testserver"]);
    ensure!(
        server.status().context("run cargo")?.success(),
        "cargo build -p otalite-testserver failed"
    );
    Ok(target_dir(root)
        .join(triple)
        .join(crate::dist::PROFILE)
        .join("otalite"))
}

/// The initramfs: busybox, the modules, `board-support/qemu-virt/initramfs/init`.
fn build_initrd(root: &Path, work: &Path, debs: &Debs) -> Result<PathBuf> {
    let dir = work.join("initramfs");
    for d in ["bin", "lib/modules", "proc", "sys", "dev", "newroot"] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy(&debs.busybox, dir.join("bin/busybox"))?;
    fs::copy(
        root.join(BOARD_DIR).join("initramfs/init"),
        dir.join("init"),
    )?;
    fs::set_permissions(dir.join("init"), fs::Permissions::from_mode(0o755))?;
    let mut order = String::new();
    for module in &debs.modules {
        let name = module.file_name().context("module name")?;
        fs::copy(module, dir.join("lib/modules").join(name))?;
        let name = name.to_string_lossy();
        order.push_str(&name);
        order.push_str(module_args(&name));
        order.push('\n');
    }
    fs::write(dir.join("lib/modules/order"), order)?;
    let out = work.join("initrd.img");
    sh(&format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -9 > '{}'",
        path_str(&dir),
        path_str(&out)
    ))?;
    Ok(out)
}

/// Which rootfs image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    /// `release-1`, the factory image in A.
    V1,
    /// `release-2`, a good update.
    V2,
    /// `release-2-bad`: `/etc/bad`, its health check fails.
    V2Bad,
    /// `release-2-hang`: `/etc/hang`, it hangs before otalite starts.
    V2Hang,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Self::V1 => "release-1",
            Self::V2 => "release-2",
            Self::V2Bad => "release-2-bad",
            Self::V2Hang => "release-2-hang",
        }
    }
    fn version(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            _ => "v2",
        }
    }
}

struct Images {
    arch: &'static Arch,
    debs: Debs,
    initrd: PathBuf,
    work: PathBuf,
    flash: PathBuf,
    otalite: PathBuf,
    rootfs: BTreeMap<&'static str, PathBuf>,
    artifacts: BTreeMap<&'static str, PathBuf>,
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| path_str(from))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// What every rootfs image holds.
struct Inputs<'a> {
    arch: &'a Arch,
    root: &'a Path,
    debs: &'a Debs,
    otalite: &'a Path,
    initrd: &'a Path,
}

/// A rootfs image (ext4, 32 MiB, made by `mke2fs -d` without root).
fn build_rootfs(
    inputs: &Inputs<'_>,
    work: &Path,
    url: &str,
    flavor: Flavor,
    cert: Option<&Path>,
) -> Result<PathBuf> {
    let tag = format!(
        "{}{}",
        flavor.name(),
        if cert.is_some() { "-https" } else { "" }
    );
    let dir = work.join(format!("rootfs-{tag}"));
    let _ = fs::remove_dir_all(&dir);
    copy_tree(&inputs.root.join(BOARD_DIR).join("rootfs"), &dir)?;
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "run", "tmp", "data", "boot",
        "var/lib",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy(&inputs.debs.busybox, dir.join("bin/busybox"))?;
    let applets = run_quiet(&[
        inputs.arch.user_static,
        &path_str(&inputs.debs.busybox),
        "--list-full",
    ])?;
    for applet in applets.lines().map(str::trim).filter(|a| !a.is_empty()) {
        let link = dir.join(applet);
        if applet != "bin/busybox" && fs::symlink_metadata(&link).is_err() {
            symlink("/bin/busybox", &link)?;
        }
    }
    fs::copy(inputs.otalite, dir.join("usr/bin/otalite"))?;
    symlink("/data/mender", dir.join("var/lib/mender"))?;
    symlink("/run/lock", dir.join("var/lock"))?;
    let conf = dir.join("etc/mender/mender.conf");
    let mut text = fs::read_to_string(&conf)?.replace("@SERVER_URL@", url);
    if let Some(cert) = cert {
        // The server's self-signed certificate, as a device's CA bundle.
        fs::copy(cert, dir.join("etc/mender/server.crt"))?;
        text = text.replacen(
            "{\n",
            "{\n  \"ServerCertificate\": \"/etc/mender/server.crt\",\n",
            1,
        );
    }
    fs::write(&conf, text)?;
    fs::write(
        dir.join("etc/mender/artifact_info"),
        format!("artifact_name={}\n", flavor.name()),
    )?;
    fs::write(dir.join("etc/version"), format!("{}\n", flavor.version()))?;
    match flavor {
        Flavor::V2Bad => fs::write(dir.join("etc/bad"), "")?,
        Flavor::V2Hang => fs::write(dir.join("etc/hang"), "")?,
        _ => {}
    }
    fs::copy(&inputs.debs.kernel_gz, dir.join("boot/Image"))?;
    fs::copy(inputs.initrd, dir.join("boot/initrd.img"))?;
    let image = work.join(format!("rootfs-{tag}.img"));
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "rootfs", "-d"])
        .arg(&dir)
        .arg(&image)
        .arg("32M"))?;
    fs::remove_dir_all(&dir)?;
    Ok(image)
}

/// Builds everything the scenarios share.
fn build_images(root: &Path, arch: &'static Arch, work: &Path, url: &str) -> Result<Images> {
    let started = Instant::now();
    let cache = target_dir(root).join("qemu-cache");
    let debs = debs(&cache, arch, &arch.kernel)?;
    let otalite = build_otalite(root, arch)?;
    let started_images = Instant::now();
    let initrd = build_initrd(root, work, &debs)?;
    let mut rootfs = BTreeMap::new();
    let mut artifacts = BTreeMap::new();
    for flavor in [Flavor::V1, Flavor::V2, Flavor::V2Bad, Flavor::V2Hang] {
        let inputs = Inputs {
            arch,
            root,
            debs: &debs,
            otalite: &otalite,
            initrd: &initrd,
        };
        let image = build_rootfs(&inputs, work, url, flavor, None)?;
        if flavor != Flavor::V1 {
            let artifact = work.join(format!("{}.mender", flavor.name()));
            run(Command::new("mender-artifact")
                .args([
                    "write",
                    "rootfs-image",
                    "-t",
                    arch.device_type,
                    "-n",
                    flavor.name(),
                    "-f",
                ])
                .arg(&image)
                .arg("-o")
                .arg(&artifact))?;
            artifacts.insert(flavor.name(), artifact);
        }
        rootfs.insert(flavor.name(), image);
    }
    // U-Boot's own env (the program) in the second pflash bank, 64 MiB.
    let flash = work.join("flash1.img");
    let env_bin = work.join("uboot-env.bin");
    run(Command::new("mkenvimage")
        .args(["-s", "0x40000", "-o"])
        .arg(&env_bin)
        .arg(root.join(BOARD_DIR).join(arch.env)))?;
    fs::File::create(&flash)?.set_len(64 << 20)?;
    run(Command::new("dd")
        .arg(format!("if={}", path_str(&env_bin)))
        .arg(format!("of={}", path_str(&flash)))
        .args(["conv=notrunc", "status=none"]))?;
    eprintln!(
        "qemu: kernel {}, images built in {:.1} s (total with debs and cargo {:.1} s)",
        debs.release,
        started_images.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(Images {
        arch,
        debs,
        initrd,
        work: work.to_path_buf(),
        flash,
        otalite,
        rootfs,
        artifacts,
    })
}

/// A fresh disk: MBR, the A/B env (boot A), release-1 in A, an empty B, a
/// data partition with `mender/device_type` and the scenario's files.
fn make_disk(images: &Images, dir: &Path, extra: &[(&str, &str)]) -> Result<PathBuf> {
    make_disk_with(images.arch, dir, extra, &images.rootfs[Flavor::V1.name()])
}

/// [`make_disk`] with `slot_a` in A.
fn make_disk_with(
    arch: &Arch,
    dir: &Path,
    extra: &[(&str, &str)],
    slot_a: &Path,
) -> Result<PathBuf> {
    let disk = dir.join("disk.img");
    fs::File::create(&disk)?.set_len(DISK_MIB << 20)?;
    // sfdisk reads the partition script from stdin.
    let mut sfdisk = Command::new("sfdisk")
        .args(["-q", "--no-reread", "--no-tell-kernel"])
        .arg(&disk)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("run sfdisk")?;
    sfdisk
        .stdin
        .take()
        .context("sfdisk stdin")?
        .write_all(SFDISK.as_bytes())?;
    ensure!(
        sfdisk.wait()?.success(),
        "sfdisk failed on {}",
        disk.display()
    );
    let ab_txt = dir.join("ab.txt");
    fs::write(
        &ab_txt,
        "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\nbootlimit=1\n",
    )?;
    let ab_bin = dir.join("ab.bin");
    run(Command::new("mkenvimage")
        .args(["-s", &format!("{ENV_SIZE:#x}"), "-o"])
        .arg(&ab_bin)
        .arg(&ab_txt))?;
    put(&disk, &ab_bin, ENV_OFFSET / 512)?;
    put(&disk, slot_a, PART_A.0)?;
    let data_dir = dir.join("data");
    fs::create_dir_all(data_dir.join("mender"))?;
    fs::write(
        data_dir.join("mender/device_type"),
        format!("device_type={}\n", arch.device_type),
    )?;
    for (path, text) in extra {
        let file = data_dir.join(path);
        fs::create_dir_all(file.parent().context("path")?)?;
        fs::write(file, text)?;
    }
    let data_img = dir.join("data.img");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "data", "-d"])
        .arg(&data_dir)
        .arg(&data_img)
        .arg("16M"))?;
    put(&disk, &data_img, PART_DATA.0)?;
    fs::write(
        dir.join("fw_env.config"),
        format!("{} {ENV_OFFSET:#x} {ENV_SIZE:#x}\n", path_str(&disk)),
    )?;
    Ok(disk)
}

fn put(disk: &Path, image: &Path, sector: u64) -> Result<()> {
    run(Command::new("dd")
        .arg(format!("if={}", path_str(image)))
        .arg(format!("of={}", path_str(disk)))
        .args([
            "bs=512",
            &format!("seek={sector}"),
            "conv=notrunc,sparse",
            "status=none",
        ]))?;
    Ok(())
}

fn read_part(disk: &Path, (start, sectors): (u64, u64)) -> Result<Vec<u8>> {
    let mut file = fs::File::open(disk)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start * 512))?;
    let mut bytes = vec![0; usize::try_from(sectors * 512)?];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// The relay between the guest (10.0.2.2:PORT) and the test server

#[derive(Default)]
struct RelayState {
    upstream: Mutex<Option<SocketAddr>>,
    /// When the guest asked for a deployment for the first time.
    first_poll: Mutex<Option<Instant>>,
    polls: AtomicU64,
    /// Artifact bytes sent to the guest.
    download_bytes: AtomicU64,
    /// Hold every download after this many bytes (0 = never).
    hold_after: AtomicU64,
    /// A download is being held.
    held: AtomicBool,
    /// `GET /static/<name>` serves this file (the standalone scenario).
    files: Mutex<BTreeMap<String, PathBuf>>,
}

struct Relay {
    port: u16,
    state: Arc<RelayState>,
}

impl Relay {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the relay")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(RelayState::default());
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let state = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = relay_connection(client, &state);
                });
            }
        });
        Ok(Self { port, state })
    }

    fn reset(&self, upstream: SocketAddr) {
        *lock(&self.state.upstream) = Some(upstream);
        *lock(&self.state.first_poll) = None;
        self.state.polls.store(0, Ordering::SeqCst);
        self.state.download_bytes.store(0, Ordering::SeqCst);
        self.state.hold_after.store(0, Ordering::SeqCst);
        self.state.held.store(false, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Notes what the guest asks for (plain HTTP only): update checks, and
/// whether this connection carries an artifact download.
fn note_request(state: &RelayState, downloading: &AtomicBool, chunk: &[u8]) {
    if contains(chunk, b"/deployments/next") {
        state.polls.fetch_add(1, Ordering::SeqCst);
        lock(&state.first_poll).get_or_insert_with(Instant::now);
    }
    if contains(chunk, b"GET /download/") {
        downloading.store(true, Ordering::SeqCst);
    }
}

fn relay_connection(mut client: TcpStream, state: &Arc<RelayState>) -> Result<()> {
    let mut first = vec![0; 64 * 1024];
    let n = client.read(&mut first)?;
    first.truncate(n);
    if let Some(rest) = first.strip_prefix(b"GET /static/") {
        let name: String = rest
            .iter()
            .take_while(|b| !b.is_ascii_whitespace())
            .map(|&b| char::from(b))
            .collect();
        let file = lock(&state.files).get(&name).cloned();
        let Some(file) = file else {
            client.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        let bytes = fs::read(file)?;
        write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )?;
        client.write_all(&bytes)?;
        state
            .download_bytes
            .fetch_add(u64::try_from(bytes.len())?, Ordering::SeqCst);
        return Ok(());
    }
    let upstream = lock(&state.upstream).context("no upstream")?;
    let mut server = TcpStream::connect(upstream)?;
    let downloading = Arc::new(AtomicBool::new(false));
    note_request(state, &downloading, &first);
    server.write_all(&first)?;
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    let up = {
        let state = Arc::clone(state);
        let downloading = Arc::clone(&downloading);
        thread::spawn(move || {
            let mut buf = vec![0; 64 * 1024];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                note_request(&state, &downloading, chunk);
                if s_write.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(Shutdown::Write);
        })
    };
    let mut buf = vec![0; 64 * 1024];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        if downloading.load(Ordering::SeqCst) {
            let total = state
                .download_bytes
                .fetch_add(u64::try_from(n)?, Ordering::SeqCst)
                + u64::try_from(n)?;
            let hold = state.hold_after.load(Ordering::SeqCst);
            if hold > 0 && total >= hold {
                // Half-open: the guest sees a stalled download until the
                // harness cuts its power.
                state.held.store(true, Ordering::SeqCst);
                while state.hold_after.load(Ordering::SeqCst) > 0 {
                    thread::sleep(Duration::from_millis(50));
                }
                break;
            }
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

// ---------------------------------------------------------------------------
// The test server

struct Server {
    child: Child,
    statuses: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
    /// The server's request log (`[testserver] http GET /path -> 200`).
    log: PathBuf,
}

impl Server {
    /// `cert`: serve HTTPS and write the certificate there.
    fn start(
        root: &Path,
        (artifact, name, device_type): (&Path, &str, &str),
        public_url: &str,
        cert: Option<&Path>,
        log: &Path,
    ) -> Result<Self> {
        let mut command = Command::new(target_dir(root).join("debug/otalite-testserver"));
        if let Some(cert) = cert {
            command.arg("--https").arg("--cert-out").arg(cert);
        }
        let mut child = command
            .arg("--artifact")
            .arg(artifact)
            .args(["--name", name, "--device-type", device_type])
            .args(["--public-url", public_url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log)?)
            .spawn()
            .context("start otalite-testserver")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = mpsc::channel();
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&statuses);
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            if let Some(url) = lines.next() {
                let _ = tx.send(url);
            }
            for line in lines {
                if let Some(status) = line.strip_prefix("status ") {
                    lock(&shared).push(status.to_string());
                } else if line.starts_with("violation") {
                    lock(&shared).push(line);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .context("otalite-testserver printed no URL")?;
        let addr = url
            .trim()
            .split_once("://")
            .and_then(|(_, a)| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("cannot parse the server URL {url:?}"))?;
        Ok(Self {
            child,
            statuses,
            addr,
            log: log.to_path_buf(),
        })
    }

    fn statuses(&self) -> Vec<String> {
        lock(&self.statuses).clone()
    }

    /// Update checks the server answered (v1 `next`; clients try v2
    /// first, which answers 404 like the OSS server).
    fn polls(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("GET /api/devices/v1/deployments/device/deployments/next -> ")
            .count()
    }

    fn has(&self, status: &str) -> bool {
        lock(&self.statuses).iter().any(|s| s == status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The board

struct Board {
    child: Child,
    console: PathBuf,
    qmp: PathBuf,
    started: Instant,
}

impl Board {
    /// Powers the board on: a new QEMU on the scenario's disk.
    fn power_on(images: &Images, dir: &Path, run: usize) -> Result<Self> {
        Self::power_on_with(images, dir, run, &[])
    }

    /// [`Board::power_on`] with more QEMU arguments (devices).
    fn power_on_with(images: &Images, dir: &Path, run: usize, extra: &[&str]) -> Result<Self> {
        let console = dir.join(format!("console-{run}.log"));
        let qmp = dir.join(format!("qmp-{run}.sock"));
        let disk = dir.join("disk.img");
        let arch = images.arch;
        let child = Command::new(arch.qemu)
            .args(["-M", "virt", "-cpu", arch.cpu, "-smp", "1", "-m", "512"])
            .args(["-display", "none", "-monitor", "none", "-no-user-config"])
            .args(["-bios", arch.uboot])
            .arg("-drive")
            .arg(format!(
                "if=pflash,unit=1,format=raw,file={},readonly=on",
                path_str(&images.flash)
            ))
            .arg("-drive")
            .arg(format!(
                "if=none,id=hd0,format=raw,file={}",
                path_str(&disk)
            ))
            .args(["-device", "virtio-blk-device,drive=hd0"])
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-device,netdev=n0",
            ])
            .arg("-serial")
            .arg(format!("file:{}", path_str(&console)))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", path_str(&qmp)))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join(format!("qemu-{run}.out")))?)
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {}", arch.qemu))?;
        Ok(Self {
            child,
            console,
            qmp,
            started: Instant::now(),
        })
    }

    fn console(&self) -> String {
        fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn count(&self, marker: &str) -> usize {
        self.console().matches(marker).count()
    }

    /// Pulls the plug (SIGKILL to the QEMU this harness started).
    fn power_cut(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Presses reset through QMP.
    fn reset(&self) -> Result<()> {
        let mut qmp = UnixStream::connect(&self.qmp).context("connect QMP")?;
        qmp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(qmp.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        for command in ["qmp_capabilities", "system_reset"] {
            writeln!(qmp, "{{\"execute\":\"{command}\"}}")?;
            loop {
                line.clear();
                reader.read_line(&mut line)?;
                if line.contains("\"return\"") {
                    break;
                }
                ensure!(
                    !line.is_empty() && !line.contains("\"error\""),
                    "QMP {command}: {line}"
                );
            }
        }
        Ok(())
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.power_cut();
    }
}

/// Waits until `done` holds (checked every 20 ms); the error names the
/// stage and quotes the end of the console.
fn wait(
    board: &Board,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<f64> {
    let started = Instant::now();
    loop {
        if done() {
            return Ok(board.started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout {
            let console = board.console();
            let tail: Vec<&str> = console.lines().rev().take(25).collect();
            bail!(
                "timed out after {} s waiting for {what}; console ({}) ends:\n{}",
                timeout.as_secs(),
                board.console.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_console(board: &Board, marker: &str, nth: usize) -> Result<f64> {
    wait(
        board,
        &format!("console line {marker:?} (#{nth})"),
        STAGE,
        || board.count(marker) >= nth,
    )
}

// ---------------------------------------------------------------------------
// Checks on the disk after a run

/// The A/B env as the host's `fw_printenv -c` reads it from the image.
fn env(dir: &Path) -> Result<BTreeMap<String, String>> {
    let out = run(Command::new("fw_printenv")
        .arg("-c")
        .arg(dir.join("fw_env.config")))?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn expect_env(dir: &Path, part: &str) -> Result<BTreeMap<String, String>> {
    let env = env(dir)?;
    let get = |k: &str| env.get(k).map_or("<unset>", String::as_str);
    ensure!(
        get("mender_boot_part") == part
            && get("mender_boot_part_hex") == part
            && get("upgrade_available") == "0",
        "env after the run: expected mender_boot_part={part} upgrade_available=0, fw_printenv says {env:?}"
    );
    Ok(env)
}

/// The data partition: copied out, its journal replayed by `e2fsck` (as
/// the next mount would), otalite's files listed by `debugfs`, and the
/// persisted state read by the guest's own `otalite status` (under
/// qemu-user, on a copy of `/data/mender`).
fn data_state(images: &Images, dir: &Path) -> Result<(String, String)> {
    let data = dir.join("data-after.img");
    fs::write(&data, read_part(&dir.join("disk.img"), PART_DATA)?)?;
    let status = Command::new("e2fsck")
        .args(["-fy"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(
        matches!(status.code(), Some(0 | 1)),
        "e2fsck on the data partition: {status}"
    );
    let listing = run(Command::new("debugfs")
        .args(["-R", "ls -l /mender"])
        .arg(&data)
        .stderr(Stdio::null()))?;
    let copy = dir.join("data-after");
    let _ = fs::remove_dir_all(&copy);
    fs::create_dir_all(&copy)?;
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /mender {}", path_str(&copy)))
        .arg(&data)
        .stderr(Stdio::null()))?;
    let conf = dir.join("host-mender.conf");
    fs::write(
        &conf,
        format!(
            "{{\"RootfsPartA\": \"/dev/vda2\", \"RootfsPartB\": \"/dev/vda3\", \"FwEnvConfig\": \"{}\"}}\n",
            path_str(&dir.join("fw_env.config"))
        ),
    )?;
    let status = run(Command::new(images.arch.user_static)
        .arg(&images.otalite)
        .arg("-c")
        .arg(&conf)
        .arg("-d")
        .arg(copy.join("mender"))
        .args(["status", "--json"]))?;
    Ok((listing, status))
}

/// The `key` value (`VmRSS=`, `VmHWM=`) of the guest's `n`th memory sample
/// in `console` (`usize::MAX`: the last one).
fn rss_sample(console: &str, n: usize, key: &str) -> String {
    let samples: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split("BOARD: otalite ").nth(1))
        .filter(|l| l.starts_with("VmRSS="))
        .collect();
    let sample = if n == usize::MAX {
        samples.last()
    } else {
        samples.get(n)
    };
    sample
        .and_then(|l| l.split(key).nth(1))
        .map(|v| v.split(" kB").next().unwrap_or(v).trim().to_string() + " kB")
        .unwrap_or_else(|| "?".into())
}

/// `otalite status --json` on the data partition: no update in progress,
/// and the installed artifact is `artifact`.
fn expect_idle(status: &str, artifact: &str) -> Result<()> {
    ensure!(
        status.contains("\"step\":\"idle\"")
            && status.contains("\"pending\":null")
            && status.contains(&format!("\"artifact_name\":\"{artifact}\"")),
        "otalite's state on the data partition: expected idle with {artifact}, status says {status}"
    );
    Ok(())
}

/// The board settled on `flavor` after its last power-off: the env boots
/// its slot (A for `V1`, B otherwise) with no upgrade pending, that slot
/// holds `image` byte for byte, and otalite's state on the data partition
/// is idle with `flavor`'s artifact. Returns the data partition's listing
/// and otalite's status, as `data_state`.
fn expect_settled(
    images: &Images,
    dir: &Path,
    image: &Path,
    flavor: Flavor,
) -> Result<(String, String)> {
    let (part, slot, what) = match flavor {
        Flavor::V1 => ("2", PART_A, "A (/dev/vda2)"),
        _ => ("3", PART_B, "B (/dev/vda3)"),
    };
    expect_env(dir, part)?;
    expect_slot(dir, image, slot, what)?;
    let (listing, status) = data_state(images, dir)?;
    expect_idle(&status, flavor.name())?;
    Ok((listing, status))
}

fn expect_slot(dir: &Path, image: &Path, part: (u64, u64), what: &str) -> Result<()> {
    let want = fs::read(image)?;
    let have = read_part(&dir.join("disk.img"), part)?;
    ensure!(
        have.get(..want.len()) == Some(&want[..]),
        "{what} does not hold {} byte for byte",
        image.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Scenarios

struct Ctx<'a> {
    root: &'a Path,
    images: &'a Images,
    relay: &'a Relay,
    /// Lines for the final report.
    report: Vec<String>,
}

impl Ctx<'_> {
    fn scenario_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.images.work.join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn server(&self, dir: &Path, flavor: Flavor) -> Result<Server> {
        let server = Server::start(
            self.root,
            (
                &self.images.artifacts[flavor.name()],
                flavor.name(),
                self.images.arch.device_type,
            ),
            &format!("http://10.0.2.2:{}", self.relay.port),
            None,
            &dir.join("server.log"),
        )?;
        self.relay.reset(server.addr);
        Ok(server)
    }

    fn final_status(&self, board: &Board, server: &Server, what: &str) -> Result<(String, f64)> {
        let t = wait(board, what, STAGE * 2, || {
            server.has("success") || server.has("failure")
        })?;
        let statuses = server.statuses();
        ensure!(
            !statuses.iter().any(|s| s.starts_with("violation")),
            "the server saw spec violations: {statuses:?}"
        );
        let last = if server.has("success") {
            "success"
        } else {
            "failure"
        };
        Ok((last.to_string(), t))
    }

    /// 1: the managed update, with the timing and memory numbers.
    fn managed(&mut self) -> Result<()> {
        let dir = self.scenario_dir("1-managed")?;
        make_disk(self.images, &dir, &[])?;
        let server = self.server(&dir, Flavor::V2)?;
        let mut board = Board::power_on(self.images, &dir, 1)?;
        let up = wait_console(&board, "BOARD: up version=v1", 1)?;
        let first_poll = wait(&board, "the first poll", STAGE, || {
            lock(&self.relay.state.first_poll).is_some()
        })?;
        wait(&board, "status rebooting", STAGE * 2, || {
            server.has("rebooting")
        })?;
        // The peak while downloading and writing B: the last VmHWM sample
        // of the first boot (VmHWM only grows).
        let hwm = {
            let console = board.console();
            let first_boot = console.split("BOARD: shutdown").next().unwrap_or_default();
            rss_sample(first_boot, usize::MAX, "VmHWM=")
        };
        wait_console(&board, "AB: loaded part 3", 1)?;
        wait_console(&board, "BOARD: up version=v2", 1)?;
        let (last, done) = self.final_status(&board, &server, "the final status")?;
        ensure!(last == "success", "server: {:?}", server.statuses());
        // Idle: on B after the commit, a poll that finds nothing to do,
        // then the next memory sample.
        let polls = self.relay.state.polls.load(Ordering::SeqCst);
        wait(&board, "a poll after the commit", STAGE, || {
            self.relay.state.polls.load(Ordering::SeqCst) > polls
        })?;
        let samples = board.count("BOARD: otalite VmRSS=");
        wait(&board, "a VmRSS sample after that poll", STAGE, || {
            board.count("BOARD: otalite VmRSS=") > samples
        })?;
        let rss = rss_sample(&board.console(), samples, "VmRSS=");
        thread::sleep(Duration::from_secs(1));
        board.power_cut();
        let (listing, status) = expect_settled(
            self.images,
            &dir,
            &self.images.rootfs[Flavor::V2.name()],
            Flavor::V2,
        )?;
        ensure!(
            listing.contains("mender-agent.pem"),
            "no device key on the data partition: {listing}"
        );
        self.report.push(format!(
            "1 managed update: ok; statuses {:?}; power-on -> BOARD up {up:.1} s, -> first poll {first_poll:.1} s, -> success {done:.1} s; otalite VmRSS idle on B after the commit {rss}, VmHWM while installing on A {hwm}",
            server.statuses()
        ));
        eprintln!("qemu: otalite status after scenario 1: {}", status.trim());
        Ok(())
    }

    /// 2 and 3: a v2 that never commits; U-Boot rolls back; otalite reports.
    fn rollback(&mut self, flavor: Flavor) -> Result<()> {
        let hang = flavor == Flavor::V2Hang;
        let dir = self.scenario_dir(if hang { "3-hang" } else { "2-bad" })?;
        make_disk(self.images, &dir, &[])?;
        let server = self.server(&dir, flavor)?;
        let mut board = Board::power_on(self.images, &dir, 1)?;
        wait_console(&board, "BOARD: up version=v1", 1)?;
        wait(&board, "status rebooting", STAGE * 2, || {
            server.has("rebooting")
        })?;
        wait_console(&board, "AB: loaded part 3", 1)?;
        let mut resets = 0;
        if hang {
            wait_console(&board, "BOARD: hanging", 1)?;
            // The watchdog stand-in: reset after 5 s without console output.
            let mut last = board.console().len();
            let mut quiet_since = Instant::now();
            while board.count("AB: bootlimit exceeded") == 0 {
                let len = board.console().len();
                if len != last {
                    last = len;
                    quiet_since = Instant::now();
                } else if quiet_since.elapsed() > Duration::from_secs(5) {
                    board.reset()?;
                    resets += 1;
                    ensure!(resets <= 3, "the board did not roll back after 3 resets");
                    quiet_since = Instant::now();
                }
                ensure!(
                    board.started.elapsed() < STAGE * 4,
                    "no rollback after {} s",
                    board.started.elapsed().as_secs()
                );
                thread::sleep(Duration::from_millis(100));
            }
        } else {
            wait_console(&board, "BOARD: health check failed", 1)?;
        }
        wait_console(&board, "AB: bootlimit exceeded, rolling back", 1)?;
        wait_console(&board, "BOARD: up version=v1", 2)?;
        let (last, done) = self.final_status(&board, &server, "the final status")?;
        ensure!(last == "failure", "server: {:?}", server.statuses());
        thread::sleep(Duration::from_secs(1));
        board.power_cut();
        expect_settled(
            self.images,
            &dir,
            &self.images.rootfs[Flavor::V1.name()],
            Flavor::V1,
        )?;
        self.report.push(format!(
            "{} {}: ok ({resets} QMP resets); statuses {:?}; power-on -> failure reported {done:.1} s",
            if hang { 3 } else { 2 },
            if hang { "B hangs" } else { "B fails its health check" },
            server.statuses()
        ));
        Ok(())
    }

    /// 3 with a real watchdog: Debian's generic kernel (it has the i6300esb
    /// driver), QEMU's `-device i6300esb`; the hanging v2 opens
    /// `/dev/watchdog` and never feeds it. No reset from the harness.
    fn watchdog(&mut self) -> Result<()> {
        let dir = self.scenario_dir("3-watchdog")?;
        let cache = target_dir(self.root).join("qemu-cache");
        let debs = debs(&cache, self.images.arch, &GENERIC)?;
        let initrd = build_initrd(self.root, &dir, &debs)?;
        let url = format!("http://10.0.2.2:{}", self.relay.port);
        let inputs = Inputs {
            arch: self.images.arch,
            root: self.root,
            debs: &debs,
            otalite: &self.images.otalite,
            initrd: &initrd,
        };
        let v1 = build_rootfs(&inputs, &dir, &url, Flavor::V1, None)?;
        let v2 = build_rootfs(&inputs, &dir, &url, Flavor::V2Hang, None)?;
        let artifact = dir.join("release-2-hang.mender");
        run(Command::new("mender-artifact")
            .args(["write", "rootfs-image", "-t", self.images.arch.device_type])
            .args(["-n", Flavor::V2Hang.name(), "-f"])
            .arg(&v2)
            .arg("-o")
            .arg(&artifact))?;
        let server = Server::start(
            self.root,
            (
                &artifact,
                Flavor::V2Hang.name(),
                self.images.arch.device_type,
            ),
            &url,
            None,
            &dir.join("server.log"),
        )?;
        self.relay.reset(server.addr);
        make_disk_with(self.images.arch, &dir, &[], &v1)?;
        let mut board = Board::power_on_with(self.images, &dir, 1, &["-device", "i6300esb"])?;
        wait_console(&board, "BOARD: up version=v1", 1)?;
        wait(&board, "status rebooting", STAGE * 2, || {
            server.has("rebooting")
        })?;
        wait_console(&board, "AB: loaded part 3", 1)?;
        let opened = wait_console(&board, "BOARD: hanging with /dev/watchdog open", 1)?;
        let reset = wait_console(&board, "AB: bootlimit exceeded, rolling back", 1)?;
        wait_console(&board, "BOARD: up version=v1", 2)?;
        let (last, done) = self.final_status(&board, &server, "the final status")?;
        ensure!(last == "failure", "server: {:?}", server.statuses());
        thread::sleep(Duration::from_secs(1));
        board.power_cut();
        expect_settled(self.images, &dir, &v1, Flavor::V1)?;
        self.report.push(format!(
            "3 B hangs, i6300esb watchdog (kernel {}): ok; /dev/watchdog opened at {opened:.1} s, U-Boot rolled back at {reset:.1} s; statuses {:?}; power-on -> failure reported {done:.1} s",
            debs.release,
            server.statuses()
        ));
        Ok(())
    }

    /// 4: power cuts at three points, then a new QEMU on the same files.
    fn power_cuts(&mut self) -> Result<()> {
        let artifact_len = fs::metadata(&self.images.artifacts[Flavor::V2.name()])?.len();
        for point in ["download", "write", "env-switch"] {
            let dir = self.scenario_dir(&format!("4-power-cut-{point}"))?;
            make_disk(self.images, &dir, &[])?;
            let server = self.server(&dir, Flavor::V2)?;
            let state = &self.relay.state;
            if point == "download" {
                state.hold_after.store(2 << 20, Ordering::SeqCst);
            }
            let mut board = Board::power_on(self.images, &dir, 1)?;
            wait_console(&board, "BOARD: up version=v1", 1)?;
            let cut_at = match point {
                // Held half-open after 2 MiB: the guest waits in the middle
                // of the download (and of writing B).
                "download" => wait(&board, "the held download", STAGE * 2, || {
                    state.held.load(Ordering::SeqCst)
                })?,
                // Streaming: the artifact is half sent, B half written.
                "write" => wait(&board, "half the download", STAGE * 2, || {
                    state.download_bytes.load(Ordering::SeqCst) >= artifact_len / 2
                })?,
                // The env switch happens between the end of the write and
                // the reboot: cut at the rebooting report.
                _ => wait(&board, "status rebooting", STAGE * 2, || {
                    server.has("rebooting") || board.count("AB: loaded part 3") > 0
                })?,
            };
            board.power_cut();
            state.hold_after.store(0, Ordering::SeqCst);
            let env_at_cut = env(&dir)?;
            let before = server.statuses();
            let board = Board::power_on(self.images, &dir, 2)?;
            wait(
                &board,
                "the board to boot after the power cut",
                STAGE,
                || board.count("BOARD: up version=") > 0,
            )?;
            let (last, done) =
                self.final_status(&board, &server, "the final status after the power cut")?;
            thread::sleep(Duration::from_secs(1));
            drop(board);
            let part = if last == "success" { "3" } else { "2" };
            expect_env(&dir, part)?;
            if last == "success" {
                expect_slot(&dir, &self.images.rootfs[Flavor::V2.name()], PART_B, "B")?;
            }
            let (_, status) = data_state(self.images, &dir)?;
            expect_idle(
                &status,
                if last == "success" {
                    Flavor::V2.name()
                } else {
                    Flavor::V1.name()
                },
            )?;
            self.report.push(format!(
                "4 power cut at {point}: ok; cut {cut_at:.1} s after power-on (statuses then {before:?}, env mender_boot_part={} upgrade_available={}); new QEMU -> {last} in {done:.1} s; statuses {:?}",
                env_at_cut.get("mender_boot_part").map_or("?", String::as_str),
                env_at_cut.get("upgrade_available").map_or("?", String::as_str),
                server.statuses()
            ));
        }
        Ok(())
    }

    /// 6: the idle daemon over HTTP and over HTTPS (the server's
    /// self-signed certificate in `/etc/mender/server.crt`): the server's
    /// deployment is for another device type, so the daemon authenticates,
    /// sends its inventory and polls; its memory after the third poll.
    fn idle(&mut self) -> Result<()> {
        let fixture = self
            .root
            .join("tests/fixtures/artifacts/rootfs-gzip.mender");
        let mut results = Vec::new();
        for https in [false, true] {
            let scheme = if https { "https" } else { "http" };
            let dir = self.scenario_dir(&format!("6-idle-{scheme}"))?;
            let cert = dir.join("server.pem");
            let url = format!("{scheme}://10.0.2.2:{}", self.relay.port);
            let server = Server::start(
                self.root,
                (&fixture, "release-2", "another-board"),
                &url,
                https.then_some(cert.as_path()),
                &dir.join("server.log"),
            )?;
            self.relay.reset(server.addr);
            let slot_a = if https {
                let inputs = Inputs {
                    arch: self.images.arch,
                    root: self.root,
                    debs: &self.images.debs,
                    otalite: &self.images.otalite,
                    initrd: &self.images.initrd,
                };
                build_rootfs(&inputs, &dir, &url, Flavor::V1, Some(&cert))?
            } else {
                self.images.rootfs[Flavor::V1.name()].clone()
            };
            make_disk_with(self.images.arch, &dir, &[], &slot_a)?;
            let board = Board::power_on(self.images, &dir, 1)?;
            wait_console(&board, "BOARD: up version=v1", 1)?;
            let first_poll = wait(&board, "the first poll", STAGE, || server.polls() > 0)?;
            wait(&board, "the third poll", STAGE, || server.polls() >= 3)?;
            let samples = board.count("BOARD: otalite VmRSS=");
            wait(&board, "a VmRSS sample after the third poll", STAGE, || {
                board.count("BOARD: otalite VmRSS=") > samples
            })?;
            let console = board.console();
            let rss = rss_sample(&console, samples, "VmRSS=");
            let hwm = rss_sample(&console, samples, "VmHWM=");
            drop(board);
            let log = fs::read_to_string(&server.log)?;
            ensure!(
                log.contains(&format!(
                    "{scheme} POST /api/devices/v1/authentication/auth_requests -> 200"
                )) && log.contains(&format!(
                    "{scheme} PUT /api/devices/v1/inventory/device/attributes -> 200"
                )),
                "the daemon did not authenticate and send its inventory over {scheme}; see {}",
                server.log.display()
            );
            ensure!(
                server.statuses().is_empty(),
                "unexpected statuses {:?}",
                server.statuses()
            );
            results.push(format!(
                "{scheme}: first poll {first_poll:.1} s after power-on, VmRSS {rss} (VmHWM {hwm})"
            ));
        }
        self.report
            .push(format!("6 idle daemon: ok; {}", results.join("; ")));
        Ok(())
    }

    /// 7: the idle AWS IoT Jobs agent: connected over mutual TLS to a
    /// `mosquitto` on the host, subscribed, no job; its memory after that.
    fn jobs_idle(&mut self) -> Result<()> {
        need("mosquitto", "mosquitto")?;
        need("openssl", "openssl")?;
        let dir = self.scenario_dir("7-jobs-idle")?;
        let certs = dir.join("certs");
        fs::create_dir_all(&certs)?;
        let openssl = |args: &[&str]| -> Result<()> {
            run(Command::new("openssl")
                .args(args)
                .current_dir(&certs)
                .stderr(Stdio::null()))
            .map(drop)
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=otalite qemu CA",
                ],
            ]
            .concat(),
        )?;
        for (name, ext) in [
            ("server", "subjectAltName=IP:10.0.2.2,IP:127.0.0.1"),
            ("device", "extendedKeyUsage=clientAuth"),
        ] {
            openssl(
                &[
                    &["req"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{name}.key"),
                        "-out",
                        &format!("{name}.csr"),
                        "-subj",
                        &format!("/CN={name}"),
                    ],
                ]
                .concat(),
            )?;
            fs::write(certs.join(format!("{name}.ext")), format!("{ext}\n"))?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ])?;
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let broker_log = dir.join("mosquitto.log");
        let conf = dir.join("mosquitto.conf");
        fs::write(
            &conf,
            format!(
                "user {user}\nper_listener_settings false\nallow_anonymous true\npersistence false\n\
                 log_dest file {log}\nlog_type notice\nlog_type subscribe\n\
                 listener {port} 127.0.0.1\ncafile {c}/ca.pem\ncertfile {c}/server.pem\n\
                 keyfile {c}/server.key\nrequire_certificate true\n",
                log = path_str(&broker_log),
                c = path_str(&certs)
            ),
        )?;
        let mut broker = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start mosquitto")?;
        let result = (|| -> Result<String> {
            let read = |name: &str| fs::read_to_string(certs.join(name));
            let ini = format!(
                "[service]\nlog_level = INFO\ndownload_location = /data\n\n[broker]\nhost = 10.0.2.2\n\
                 port = {port}\nthing_name = qemu-virt\nclient_id = qemu-virt\n\
                 cafile = /data/board/ca.pem\ncertfile = /data/board/device.pem\n\
                 keyfile = /data/board/device.key\n"
            );
            let (ca, cert, key) = (read("ca.pem")?, read("device.pem")?, read("device.key")?);
            let extra = [
                ("board/jobs.ini", ini.as_str()),
                ("board/ca.pem", ca.as_str()),
                ("board/device.pem", cert.as_str()),
                ("board/device.key", key.as_str()),
            ];
            make_disk_with(
                self.images.arch,
                &dir,
                &extra,
                &self.images.rootfs[Flavor::V1.name()],
            )?;
            let board = Board::power_on(self.images, &dir, 1)?;
            wait_console(&board, "BOARD: otalite jobs started", 1)?;
            let topic = "$aws/things/qemu-virt/jobs/notify";
            let subscribed = wait(&board, "the notify subscription", STAGE, || {
                fs::read_to_string(&broker_log).is_ok_and(|log| log.contains(topic))
            })?;
            // Three samples after the subscription: the connection idles.
            let samples = board.count("BOARD: otalite VmRSS=");
            wait(
                &board,
                "three VmRSS samples after the subscription",
                STAGE,
                || board.count("BOARD: otalite VmRSS=") >= samples + 3,
            )?;
            let console = board.console();
            let rss = rss_sample(&console, usize::MAX, "VmRSS=");
            let hwm = rss_sample(&console, usize::MAX, "VmHWM=");
            drop(board);
            let log = fs::read_to_string(&broker_log)?;
            ensure!(
                log.contains("New client connected") && log.contains("qemu-virt"),
                "the broker saw no connection from the board; see {}",
                broker_log.display()
            );
            Ok(format!(
                "subscribed {subscribed:.1} s after power-on (TLS, client certificate), VmRSS {rss} (VmHWM {hwm})"
            ))
        })();
        let _ = broker.kill();
        let _ = broker.wait();
        self.report
            .push(format!("7 idle jobs agent: ok; {}", result?));
        Ok(())
    }

    /// 5: `otalite install URL`, reboot, `otalite commit`.
    fn standalone(&mut self) -> Result<()> {
        let dir = self.scenario_dir("5-standalone")?;
        let artifact = &self.images.artifacts[Flavor::V2.name()];
        lock(&self.relay.state.files).insert("release-2.mender".into(), artifact.clone());
        let url = format!(
            "http://10.0.2.2:{}/static/release-2.mender",
            self.relay.port
        );
        make_disk(self.images, &dir, &[("board/standalone", &url)])?;
        let board = Board::power_on(self.images, &dir, 1)?;
        wait_console(&board, "BOARD: up version=v1", 1)?;
        wait(&board, "the standalone install", STAGE * 2, || {
            board.count("BOARD: standalone install") > 0
        })?;
        ensure!(
            board.count("BOARD: standalone install done") == 1,
            "otalite install failed; see {}",
            board.console.display()
        );
        wait_console(&board, "AB: loaded part 3", 1)?;
        wait_console(&board, "BOARD: up version=v2", 1)?;
        let done = wait(&board, "the standalone commit", STAGE, || {
            board.count("BOARD: standalone commit") > 0
        })?;
        ensure!(
            board.count("BOARD: standalone commit done") == 1,
            "otalite commit failed; see {}",
            board.console.display()
        );
        thread::sleep(Duration::from_secs(1));
        drop(board);
        expect_settled(
            self.images,
            &dir,
            &self.images.rootfs[Flavor::V2.name()],
            Flavor::V2,
        )?;
        self.report.push(format!(
            "5 standalone install + commit: ok; power-on -> committed {done:.1} s"
        ));
        Ok(())
    }
}

/// `cargo xtask qemu`.
pub fn qemu(args: &[&str]) -> Result<()> {
    let mut scenarios = Vec::new();
    let mut keep = false;
    let mut all = false;
    let mut arch: &'static Arch = &AARCH64;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--all" => all = true,
            "--keep" => keep = true,
            "--arch" => {
                arch = match rest.next().copied() {
                    Some("aarch64") => &AARCH64,
                    Some("armv7") => &ARMV7,
                    other => bail!("--arch needs aarch64 or armv7, not {other:?}\n{USAGE}"),
                }
            }
            "--scenario" => {
                let n: u32 = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=7).contains(n))
                    .with_context(|| format!("--scenario needs 1..7\n{USAGE}"))?;
                scenarios.push(n);
            }
            _ => bail!("unknown argument {arg:?}\n{USAGE}"),
        }
    }
    if scenarios.is_empty() {
        scenarios = vec![1, 2, 4];
    }
    scenarios.dedup();
    let runs: Vec<(&'static Arch, Vec<u32>)> = if all {
        vec![
            (&AARCH64, vec![1, 2, 4, 5, 3, 6, 7]),
            (&ARMV7, vec![1, 2, 4, 5, 3, 6, 7]),
        ]
    } else {
        vec![(arch, scenarios)]
    };
    // mke2fs, debugfs, e2fsck, sfdisk and modinfo live in /usr/sbin, which
    // is not on a normal user's PATH.
    let path = std::env::var("PATH").unwrap_or_default();
    if !path.split(':').any(|d| d == "/usr/sbin") {
        std::env::set_var("PATH", format!("{path}:/usr/sbin:/sbin"));
    }
    for (tool, package) in [
        ("qemu-system-aarch64", "qemu-system-arm"),
        ("qemu-system-arm", "qemu-system-arm"),
        ("qemu-arm-static", "qemu-user-static"),
        ("apt-get", "apt"),
        ("dpkg", "dpkg"),
        ("modinfo", "kmod"),
        ("gzip", "gzip"),
        ("e2fsck", "e2fsprogs"),
        ("qemu-aarch64-static", "qemu-user-static"),
        ("mkenvimage", "u-boot-tools"),
        ("fw_printenv", "libubootenv-tool"),
        ("mender-artifact", "mender-artifact"),
        ("mke2fs", "e2fsprogs"),
        ("debugfs", "e2fsprogs"),
        ("sfdisk", "fdisk"),
        ("cpio", "cpio"),
    ] {
        need(tool, package)?;
    }
    for (arch, _) in &runs {
        ensure!(
            Path::new(arch.uboot).exists(),
            "{} is missing: run `bash .ci/setup` (or apt-get install u-boot-qemu)",
            arch.uboot
        );
    }
    let root = crate::workspace_root();
    // Work directories of earlier runs whose xtask is gone (kept by
    // `--keep` or a failure) are removed; a running one is left alone.
    if let Ok(entries) = fs::read_dir(target_dir(&root)) {
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("qemu-run-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let work = target_dir(&root).join(format!("qemu-run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let started = Instant::now();
    let result = (|| -> Result<Vec<String>> {
        let relay = Relay::start()?;
        let url = format!("http://10.0.2.2:{}", relay.port);
        let mut report = Vec::new();
        for (arch, scenarios) in &runs {
            let work = work.join(arch.name);
            fs::create_dir_all(&work)?;
            let images = build_images(&root, arch, &work, &url)?;
            let mut ctx = Ctx {
                root: &root,
                images: &images,
                relay: &relay,
                report: Vec::new(),
            };
            for n in scenarios {
                let t = Instant::now();
                eprintln!("qemu: {} scenario {n}", arch.name);
                match n {
                    1 => ctx.managed(),
                    2 => ctx.rollback(Flavor::V2Bad),
                    3 if images.arch.name == "aarch64" => {
                        ctx.rollback(Flavor::V2Hang).and_then(|()| ctx.watchdog())
                    }
                    3 => ctx.rollback(Flavor::V2Hang),
                    4 => ctx.power_cuts(),
                    5 => ctx.standalone(),
                    6 => ctx.idle(),
                    _ => ctx.jobs_idle(),
                }
                .with_context(|| format!("scenario {n} (files in {})", work.display()))?;
                let line = format!(
                    "{} [{:.1} s]",
                    ctx.report.last().cloned().unwrap_or_default(),
                    t.elapsed().as_secs_f64()
                );
                eprintln!("qemu: {line}");
                if let Some(last) = ctx.report.last_mut() {
                    *last = line;
                }
            }
            report.extend(
                ctx.report
                    .into_iter()
                    .map(|l| format!("{}: {l}", arch.name)),
            );
        }
        Ok(report)
    })();
    match result {
        Ok(report) => {
            println!(
                "qemu: {} passed in {:.1} s:",
                runs.iter()
                    .map(|(a, s)| format!("{} {s:?}", a.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                started.elapsed().as_secs_f64()
            );
            for line in report {
                println!("  {line}");
            }
            if !keep {
                let _ = fs::remove_dir_all(&work);
            }
            Ok(())
        }
        Err(error) => Err(error.context(format!("the work directory {} is kept", work.display()))),
    }
}
