//! `cargo xtask bench install [--size-mib N] [--runs N] [--all]`: times
//! `otalite install` against the reference `mender install` and the
//! physical limits on the same artifacts.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::{STATIC_TRIPLE, USAGE};
use crate::dist::PROFILE;
use crate::util::{
    error_line, fill_slot, make_payload, one_line, path_str, run_quiet, target_dir, write_uboot_env,
};

/// `cargo xtask bench install <args>`.
pub(crate) fn bench_install(args: &[&str]) -> Result<()> {
    run(BenchOpts::parse(args)?)
}

struct BenchOpts {
    size_mib: u64,
    runs: usize,
    all: bool,
}

impl BenchOpts {
    fn parse(args: &[&str]) -> Result<Self> {
        let mut opts = Self {
            size_mib: 256,
            runs: 3,
            all: false,
        };
        let mut it = args.iter();
        while let Some(&arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg, None),
            };
            let mut value = || -> Result<u64> {
                let v = inline
                    .or_else(|| it.next().copied())
                    .with_context(|| format!("{name} needs a value"))?;
                v.parse()
                    .with_context(|| format!("{name}: not a number: {v}"))
            };
            match name {
                "--size-mib" => opts.size_mib = value()?,
                "--runs" => opts.runs = usize::try_from(value()?)?,
                "--all" => opts.all = true,
                _ => bail!("unknown option {arg}\n{USAGE}"),
            }
        }
        if opts.size_mib == 0 || opts.runs == 0 {
            bail!("--size-mib and --runs must be at least 1");
        }
        Ok(opts)
    }
}

// ---------------------------------------------------------------------------
// Measuring one command

/// Writes standard input (or `if=`, appended) into the device's inactive
/// loop slot and fsyncs it, as an installer must: `iflag=fullblock` so
/// that short reads from a pipe do not shrink the writes.
const DD_SLOT: &str = "dd of=/dev/mmcblk0p3 bs=1M iflag=fullblock conv=fsync,notrunc status=none";

/// Before a timed run: writes back every dirty page of the machine (`sync`:
/// the slot refill and other processes' writes would otherwise be written
/// back during the run), drops the page cache of the slot's backing file
/// (`dd iflag=nocache count=0`, this file only) and the buffer cache of the
/// loop device the bench attached (`blockdev --flushbufs`, that device
/// only), so that every run reads the old slot content from the disk, as
/// on a device after boot.
fn quiesce_slot(slot_file: &Path, loop_dev: Option<&str>) -> Result<(), String> {
    run_quiet(&["sync"]).map_err(|e| e.to_string())?;
    if let Some(dev) = loop_dev {
        run_quiet(&["blockdev", "--flushbufs", dev]).map_err(|e| e.to_string())?;
    }
    run_quiet(&[
        "dd",
        &format!("if={}", path_str(slot_file)),
        "iflag=nocache",
        "count=0",
        "status=none",
    ])
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// The loop device device.sh attached for `slot` (`a` or `b`) of `dev`.
fn loop_of(dev: &Path, slot: &str) -> Option<String> {
    fs::read_to_string(dev.join("loops"))
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(slot)).then(|| f.next().map(str::to_string))?
        })
}

const TIME: &str = "/usr/bin/time";
const TIME_FORMAT: &str = "%e %U %S %M";

#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: f64,
    cpu: f64,
    rss_kib: u64,
}

type Outcome = Result<Sample, String>;

/// Runs `prefix... /usr/bin/time -f FMT -o <out> argv...`, output to `log`.
/// `prefix` lets the timer run inside the device namespace, so that only the
/// agent is measured (not unshare and the mounts).
fn measure(prefix: &[String], argv: &[String], out: &Path, log: &Path) -> Outcome {
    let _ = fs::remove_file(out);
    let log_file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut full: Vec<String> = prefix.to_vec();
    full.extend([
        TIME.into(),
        "-f".into(),
        TIME_FORMAT.into(),
        "-o".into(),
        path_str(out),
    ]);
    full.extend(argv.iter().cloned());
    let status = Command::new(&full[0])
        .args(&full[1..])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .status()
        .map_err(|e| format!("{}: {e}", full[0]))?;
    if !status.success() {
        return Err(last_error_line(log).unwrap_or_else(|| format!("exit status {status}")));
    }
    let text =
        fs::read_to_string(out).map_err(|e| format!("no timing ({}): {e}", out.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let f: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    match (
        num(0),
        num(1),
        num(2),
        f.get(3).and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(wall), Some(user), Some(sys), Some(rss_kib)) => Ok(Sample {
            wall,
            cpu: user + sys,
            rss_kib,
        }),
        _ => Err(format!("cannot parse {TIME} output: {line:?}")),
    }
}

/// The most telling line of a failed command's log (an error if there is one).
fn last_error_line(log: &Path) -> Option<String> {
    error_line(&fs::read_to_string(log).ok()?)
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", path_str(p).replace('\'', r"'\''"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------
// The benchmark

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comp {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Comp {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }
    fn data_member(self) -> &'static str {
        match self {
            Self::None => "data/0000.tar",
            Self::Gzip => "data/0000.tar.gz",
            Self::Xz => "data/0000.tar.xz",
            Self::Zstd => "data/0000.tar.zst",
        }
    }
    /// The decompressor's name and the shell pipeline that decompresses (or
    /// just reads) the data stream to `sink` (another shell command reading
    /// standard input, or `> /dev/null`).
    fn decompress_cmd(self, artifact: &Path, sink: &str) -> (String, String) {
        let tar = format!("tar -xOf {} {}", sh_quote(artifact), self.data_member());
        match self {
            Self::None => ("tar -xO (read data)".into(), format!("{tar} {sink}")),
            Self::Gzip => ("zcat".into(), format!("{tar} | zcat {sink}")),
            Self::Xz => ("xz -dc".into(), format!("{tar} | xz -dc {sink}")),
            Self::Zstd => ("zstd -dc".into(), format!("{tar} | zstd -dc {sink}")),
        }
    }
    /// The issue's target for otalite's loop-slot wall time: (ratio, what it
    /// is a ratio to).
    fn target(self) -> (f64, Kind) {
        match self {
            Self::None => (0.5, Kind::Mender),
            Self::Gzip => (0.75, Kind::Mender),
            Self::Xz => (0.6, Kind::Mender),
            Self::Zstd => (1.2, Kind::LimitDecompress),
        }
    }
}

/// One row of the table: a tool on one compression, with its samples.
struct Row {
    comp: Comp,
    tool: String,
    kind: Kind,
    samples: Vec<Outcome>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `otalite install` (release build), file slot.
    Otalite,
    /// `otalite install` (release build) in device.sh: loop slot.
    OtaliteDevice,
    /// The static musl `release-dist` binary (what devices run), loop slot.
    OtaliteStatic,
    /// `mender install` in device.sh: loop slot.
    Mender,
    /// `dd` of the image into the loop slot, `conv=fsync`.
    LimitWrite,
    /// The data stream decompressed (`tar -xO` of the image) and written
    /// into the loop slot by `dd conv=fsync`: a pipeline of standard tools
    /// on all cores.
    LimitPipeSlot,
    /// The data stream decompressed to /dev/null.
    LimitDecompress,
    /// Hashing the image.
    LimitHash,
}

impl Row {
    fn ok(&self) -> Vec<Sample> {
        self.samples
            .iter()
            .filter_map(|s| s.as_ref().ok().copied())
            .collect()
    }
    fn median_wall(&self) -> Option<f64> {
        let ok = self.ok();
        (!ok.is_empty()).then(|| median(ok.iter().map(|s| s.wall).collect()))
    }
    fn first_error(&self) -> Option<&str> {
        self.samples
            .iter()
            .find_map(|s| s.as_ref().err().map(String::as_str))
    }
}

struct Bench {
    work: PathBuf,
    device_sh: PathBuf,
    size_mib: u64,
    otalite: Result<PathBuf, String>,
    /// The static musl `release-dist` build (`cargo xtask dist`'s).
    otalite_static: Result<PathBuf, String>,
    /// Device workdirs currently created (destroyed on drop).
    devices: Vec<PathBuf>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for dev in std::mem::take(&mut self.devices) {
            let _ = Command::new(&self.device_sh)
                .args(["destroy", &path_str(&dev)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run(opts: BenchOpts) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let target = target_dir(&root);
    let out_dir = target.join("bench");
    let work = out_dir.join("work-install");
    let device_sh = root.join("tests/refdevice/device.sh");

    if !Path::new(TIME).exists() {
        bail!("{TIME} is missing (apt-get install -y time)");
    }
    for tool in [
        "mender",
        "mender-artifact",
        "mkenvimage",
        "fw_printenv",
        "unshare",
        "losetup",
    ] {
        if run_quiet(&["sh", "-c", &format!("command -v {tool}")]).is_err() {
            bail!("{tool} is not installed");
        }
    }
    if run_quiet(&["id", "-u"])?.trim() != "0" {
        bail!("must run as root (the reference device uses loop devices and mount namespaces)");
    }

    // Leftovers of an interrupted run: detach their loop devices first.
    if work.exists() {
        for entry in fs::read_dir(&work)?.flatten() {
            if entry.path().join("loops").exists() {
                let _ = run_quiet(&[&path_str(&device_sh), "destroy", &path_str(&entry.path())]);
            }
        }
        fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;

    eprintln!("xtask: building otalite (release)...");
    let otalite = build_otalite(&root, &target);
    if let Err(e) = &otalite {
        eprintln!("xtask: otalite build failed: {e}");
    }
    eprintln!("xtask: building the static otalite ({STATIC_TRIPLE}, {PROFILE})...");
    let otalite_static = super::build_static(&root).map_err(|e| format!("{e:#}"));
    if let Err(e) = &otalite_static {
        eprintln!("xtask: static otalite build failed: {e}");
    }
    drop(root);

    let mut bench = Bench {
        work: work.clone(),
        device_sh,
        size_mib: opts.size_mib,
        otalite,
        otalite_static,
        devices: Vec::new(),
    };

    eprintln!("xtask: making a {} MiB payload...", opts.size_mib);
    let (image, payload_desc) = bench.make_payload()?;

    let comps: Vec<Comp> = if opts.all {
        vec![Comp::None, Comp::Gzip, Comp::Xz, Comp::Zstd]
    } else {
        vec![Comp::None, Comp::Gzip]
    };
    let mut artifacts = Vec::new();
    for &c in &comps {
        eprintln!("xtask: writing the {} artifact...", c.name());
        artifacts.push((c, bench.make_artifact(&image, c, &artifacts)?));
    }
    let art_size = |c: Comp| {
        artifacts
            .iter()
            .find(|(a, _)| *a == c)
            .and_then(|(_, p)| fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    };
    let img_size = fs::metadata(&image)?.len();

    // Rows, in table order.
    let mut rows: Vec<Row> = Vec::new();
    for &c in &comps {
        let (dname, _) = c.decompress_cmd(Path::new("x"), "");
        let mut add = |tool: &str, kind| {
            rows.push(Row {
                comp: c,
                tool: tool.into(),
                kind,
                samples: Vec::new(),
            })
        };
        add("**otalite install, loop slot**", Kind::OtaliteDevice);
        add(
            "otalite install, loop slot, static musl (release-dist)",
            Kind::OtaliteStatic,
        );
        add("mender install (reference), loop slot", Kind::Mender);
        add("otalite install, file slot", Kind::Otalite);
        add("limit: dd image → loop slot, conv=fsync", Kind::LimitWrite);
        add(
            &format!("limit: {dname} → dd loop slot, conv=fsync"),
            Kind::LimitPipeSlot,
        );
        add(
            &format!("limit: {dname} → /dev/null"),
            Kind::LimitDecompress,
        );
    }
    rows.push(Row {
        comp: Comp::None,
        tool: "limit: sha256sum image".into(),
        kind: Kind::LimitHash,
        samples: Vec::new(),
    });
    rows.push(Row {
        comp: Comp::None,
        tool: "limit: openssl dgst -sha256 image".into(),
        kind: Kind::LimitHash,
        samples: Vec::new(),
    });

    for round in 0..opts.runs {
        // Odd rounds run the rows backwards: a row's place in the round
        // (after a heavy writer, say) does not favour it every time.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).rev().collect()
        };
        for i in order {
            let row = &mut rows[i];
            eprintln!(
                "xtask: round {}/{}: {} / {}",
                round + 1,
                opts.runs,
                row.tool,
                row.comp.name()
            );
            let artifact = &artifacts
                .iter()
                .find(|(c, _)| *c == row.comp)
                .expect("artifact")
                .1;
            let outcome = match row.kind {
                Kind::Otalite => bench.run_otalite(artifact, false),
                Kind::OtaliteDevice => bench.run_otalite_device(artifact, false, false),
                Kind::OtaliteStatic => bench.run_otalite_device(artifact, true, false),
                Kind::Mender => bench.run_mender(artifact, false),
                Kind::LimitWrite => bench.run_dd(&image),
                Kind::LimitPipeSlot => {
                    let (_, cmd) = row
                        .comp
                        .decompress_cmd(artifact, &format!("| tar -xOf - | {DD_SLOT}"));
                    bench.run_in_device(&["sh".into(), "-c".into(), cmd], None)
                }
                Kind::LimitDecompress => {
                    let (_, cmd) = row.comp.decompress_cmd(artifact, "> /dev/null");
                    bench.run_shell(&cmd)
                }
                Kind::LimitHash if row.tool.contains("openssl") => bench.run_shell(&format!(
                    "openssl dgst -sha256 {} > /dev/null",
                    sh_quote(&image)
                )),
                Kind::LimitHash => {
                    bench.run_shell(&format!("sha256sum {} > /dev/null", sh_quote(&image)))
                }
            };
            if let Err(e) = &outcome {
                eprintln!("xtask:   failed: {e}");
            }
            row.samples.push(outcome);
        }
    }

    // Re-installing the same image: both writers read each block first and
    // skip identical ones, so this measures read + compare instead of write.
    let reinstall_comp = Comp::Gzip;
    let reinstall_art = artifacts
        .iter()
        .find(|(c, _)| *c == reinstall_comp)
        .expect("gzip artifact")
        .1
        .clone();
    eprintln!("xtask: re-install runs...");
    let re_otalite = bench.run_otalite_device(&reinstall_art, false, true);
    let re_mender = bench.run_mender(&reinstall_art, true);

    let report = render(
        &bench,
        &opts,
        &rows,
        &payload_desc,
        img_size,
        &art_size,
        (&re_otalite, &re_mender),
    );
    print!("{report}");
    fs::create_dir_all(&out_dir)?;
    let md = out_dir.join("install.md");
    fs::write(&md, &report)?;
    eprintln!("xtask: report written to {}", md.display());

    drop(bench);
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

fn build_otalite(root: &Path, target: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "otalite-linux",
            "--bin",
            "otalite",
        ])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("cargo build --release -p otalite-linux: {status}"));
    }
    let bin = target.join("release/otalite");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("{} not found after build", bin.display()))
    }
}

impl Bench {
    /// A rootfs-like ext4 image: `mke2fs -d` over hard links (or copies) of
    /// /usr/lib files, about 75% full. Falls back to a deterministic mix of
    /// random and repetitive blocks when mke2fs is unusable.
    fn make_payload(&self) -> Result<(PathBuf, String)> {
        make_payload(&self.work, self.size_mib)
    }
}

impl Bench {
    /// `mender-artifact write rootfs-image --compression ...`; zstd is made by
    /// re-packing the uncompressed artifact with the `zstd` CLI.
    fn make_artifact(&self, image: &Path, comp: Comp, made: &[(Comp, PathBuf)]) -> Result<PathBuf> {
        let out = self.work.join(format!("a-{}.mender", comp.name()));
        let mac = match comp {
            Comp::None => "none",
            Comp::Gzip => "gzip",
            Comp::Xz => "lzma",
            Comp::Zstd => {
                let none = &made
                    .iter()
                    .find(|(c, _)| *c == Comp::None)
                    .context("zstd needs the none artifact")?
                    .1;
                repack_zstd(none, &out, &self.work.join("zstd-repack"))?;
                return Ok(out);
            }
        };
        run_quiet(&[
            "mender-artifact",
            "write",
            "rootfs-image",
            "-t",
            "bench-device",
            "-n",
            "bench-2",
            "--compression",
            mac,
            "-f",
            &path_str(image),
            "-o",
            &path_str(&out),
        ])?;
        Ok(out)
    }

    fn run_shell(&self, script: &str) -> Outcome {
        measure(
            &[],
            &["sh".into(), "-c".into(), script.into()],
            &self.work.join("time.out"),
            &self.work.join("limit.log"),
        )
    }

    /// `dd` of the image into the loop slot of a fresh device, `conv=fsync`.
    fn run_dd(&mut self, image: &Path) -> Outcome {
        self.run_in_device(
            &[
                "sh".into(),
                "-c".into(),
                format!("{DD_SLOT} if={}", sh_quote(image)),
            ],
            None,
        )
    }

    /// The real `mender install` in a fresh fake device (fresh loop slots,
    /// the inactive one filled with 0xFF, fresh env). `reinstall`: install
    /// once untimed, reset env and data (slots kept), then time the second
    /// install.
    fn run_mender(&mut self, artifact: &Path, reinstall: bool) -> Outcome {
        let argv: Vec<String> = vec![
            "mender".into(),
            "--no-syslog".into(),
            "install".into(),
            path_str(artifact),
        ];
        self.run_in_device(&argv, reinstall.then_some(argv.as_slice()))
    }

    /// `otalite install` in the same fake device as the reference (loop
    /// slot): the release build, or the static musl one (`static_build`).
    fn run_otalite_device(
        &mut self,
        artifact: &Path,
        static_build: bool,
        reinstall: bool,
    ) -> Outcome {
        let bin = if static_build {
            &self.otalite_static
        } else {
            &self.otalite
        }
        .clone()
        .map_err(|e| format!("otalite not built: {e}"))?;
        let argv = vec![path_str(&bin), "install".into(), path_str(artifact)];
        self.run_in_device(&argv, reinstall.then_some(argv.as_slice()))
    }

    /// Times `argv` inside a fresh device.sh device whose inactive slot
    /// (p3, a loop device) holds 0xFF bytes, with the slot's caches dropped
    /// and the machine's dirty pages written back before the timer starts.
    /// `first`: a command run (untimed) before, followed by `device.sh
    /// reset` (env and data fresh, slots kept): the re-install case.
    fn run_in_device(&mut self, argv: &[String], first: Option<&[String]>) -> Outcome {
        let dev = self.work.join("mender-dev");
        let dev_s = path_str(&dev);
        let sh = path_str(&self.device_sh);
        if dev.join("loops").exists() {
            run_quiet(&[&sh, "destroy", &dev_s]).map_err(|e| e.to_string())?;
        }
        let _ = fs::remove_dir_all(&dev);
        self.devices.retain(|d| d != &dev);
        run_quiet(&[
            &sh,
            "create",
            &dev_s,
            &self.size_mib.to_string(),
            "bench-device",
            "bench-1",
        ])
        .map_err(|e| e.to_string())?;
        self.devices.push(dev.clone());
        let r = (|| {
            fill_slot(&dev.join("slot-b.img"), self.size_mib)
                .map_err(|e| format!("filling the slot: {e}"))?;
            let prefix = vec![sh.clone(), "run".into(), dev_s.clone(), "--".into()];
            if let Some(first) = first {
                let mut full = prefix.clone();
                full.extend(first.iter().cloned());
                let refs: Vec<&str> = full.iter().map(String::as_str).collect();
                run_quiet(&refs).map_err(|e| {
                    format!(
                        "first install: {}",
                        error_line(&e.to_string()).unwrap_or_default()
                    )
                })?;
                run_quiet(&[&sh, "reset", &dev_s]).map_err(|e| e.to_string())?;
            }
            quiesce_slot(&dev.join("slot-b.img"), loop_of(&dev, "b").as_deref())?;
            measure(
                &prefix,
                argv,
                &dev.join("time.out"),
                &self.work.join("device.log"),
            )
        })();
        let _ = run_quiet(&[&sh, "destroy", &dev_s]);
        self.devices.retain(|d| d != &dev);
        let _ = fs::remove_dir_all(&dev);
        r
    }

    /// `otalite install` into file slots in a temp dir: mender.conf with
    /// RootfsPartA/B = files and FwEnvConfig = a file env made by mkenvimage.
    fn run_otalite(&self, artifact: &Path, reinstall: bool) -> Outcome {
        let bin = self
            .otalite
            .clone()
            .map_err(|e| format!("otalite not built: {e}"))?;
        let dir = self.work.join("otalite-dev");
        let _ = fs::remove_dir_all(&dir);
        let r = (|| -> Result<Sample, String> {
            self.otalite_fresh(&dir, true)
                .map_err(|e| format!("{e:#}"))?;
            let argv = |d: &Path| -> Vec<String> {
                vec![
                    path_str(&bin),
                    "-c".into(),
                    path_str(&d.join("etc/mender.conf")),
                    "-b".into(),
                    path_str(&d.join("etc/fallback.conf")),
                    "-d".into(),
                    path_str(&d.join("data")),
                    "install".into(),
                    path_str(artifact),
                ]
            };
            if reinstall {
                let a = argv(&dir);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                run_quiet(&refs).map_err(|e| {
                    format!(
                        "first install: {}",
                        error_line(&e.to_string()).unwrap_or_default()
                    )
                })?;
                self.otalite_fresh(&dir, false)
                    .map_err(|e| format!("{e:#}"))?;
            }
            quiesce_slot(&dir.join("mmcblk0p3"), None)?;
            measure(
                &[],
                &argv(&dir),
                &dir.join("time.out"),
                &self.work.join("otalite.log"),
            )
        })();
        let _ = fs::remove_dir_all(&dir);
        r
    }

    /// (Re)creates the otalite file device; `slots`: also fresh zeroed slots.
    fn otalite_fresh(&self, dir: &Path, slots: bool) -> Result<()> {
        let etc = dir.join("etc");
        let data = dir.join("data");
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&etc)?;
        fs::create_dir_all(&data)?;
        let (a, b, cfg, env) = (
            dir.join("mmcblk0p2"),
            dir.join("mmcblk0p3"),
            dir.join("fw_env.config"),
            dir.join("uboot.env"),
        );
        fs::write(
            etc.join("mender.conf"),
            format!(
                "{{\n  \"RootfsPartA\": \"{}\",\n  \"RootfsPartB\": \"{}\",\n  \"FwEnvConfig\": \"{}\"\n}}\n",
                path_str(&a),
                path_str(&b),
                path_str(&cfg)
            ),
        )?;
        fs::write(etc.join("artifact_info"), "artifact_name=bench-1\n")?;
        fs::write(data.join("device_type"), "device_type=bench-device\n")?;
        if slots {
            let _ = fs::remove_file(&a);
            fs::File::create(&a)?.set_len(self.size_mib << 20)?;
            fill_slot(&b, self.size_mib)?;
        }
        write_uboot_env(&env, &cfg)?;
        Ok(())
    }
}

/// Re-packs an uncompressed artifact with zstd: header.tar -> header.tar.zst,
/// data/0000.tar -> data/0000.tar.zst, the manifest's header line updated.
fn repack_zstd(none: &Path, out: &Path, dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let d = path_str(dir);
    run_quiet(&["tar", "-xf", &path_str(none), "-C", &d])?;
    for member in ["header.tar", "data/0000.tar"] {
        run_quiet(&["zstd", "-q", "-f", "--rm", &path_str(&dir.join(member))])?;
    }
    let sha = run_quiet(&["sha256sum", &path_str(&dir.join("header.tar.zst"))])?;
    let sha = sha
        .split_whitespace()
        .next()
        .context("sha256sum output")?
        .to_string();
    let manifest = fs::read_to_string(dir.join("manifest"))?;
    let mut new = String::new();
    for line in manifest.lines() {
        if line.ends_with("  header.tar") {
            let _ = writeln!(new, "{sha}  header.tar.zst");
        } else {
            let _ = writeln!(new, "{line}");
        }
    }
    fs::write(dir.join("manifest"), new)?;
    let _ = fs::remove_file(out);
    run_quiet(&[
        "tar",
        "--format=gnu",
        "--owner=0",
        "--group=0",
        "--numeric-owner",
        "--mtime=@0",
        "-cf",
        &path_str(out),
        "-C",
        &d,
        "version",
        "manifest",
        "header.tar.zst",
        "data/0000.tar.zst",
    ])?;
    let _ = fs::remove_dir_all(dir);
    Ok(())
}

// ---------------------------------------------------------------------------
// The report

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.prec$}"))
}

#[allow(clippy::too_many_arguments)]
fn render(
    bench: &Bench,
    opts: &BenchOpts,
    rows: &[Row],
    payload: &str,
    img_size: u64,
    art_size: &dyn Fn(Comp) -> u64,
    reinstall: (&Outcome, &Outcome),
) -> String {
    let mut s = String::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let date = one_line(&[
        "date",
        "-u",
        "-d",
        &format!("@{now}"),
        "+%Y-%m-%d %H:%M UTC",
    ]);
    let cmdline = format!(
        "cargo xtask bench install --size-mib {} --runs {}{}",
        opts.size_mib,
        opts.runs,
        if opts.all { " --all" } else { "" }
    );
    let _ = writeln!(s, "# otalite install benchmark\n");
    let _ = writeln!(s, "Command: `{cmdline}` (as root), {date}.  ");
    let _ = writeln!(
        s,
        "Machine: {} CPUs, `{}`, load average at the end: {}.  ",
        one_line(&["nproc"]),
        one_line(&["uname", "-sr"]),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        s,
        "Reference: `{}`; `{}`.  ",
        one_line(&["mender", "--version"])
            .split_whitespace()
            .next()
            .map_or("mender ?".into(), |v| format!("mender {v}")),
        one_line(&["mender-artifact", "--version"])
    );
    let _ = writeln!(
        s,
        "otalite: {}; static: {}.\n",
        match &bench.otalite {
            Ok(p) => format!("`{}` (release build of `-p otalite-linux`)", p.display()),
            Err(e) => format!("not built: {e}"),
        },
        match &bench.otalite_static {
            Ok(p) => format!(
                "`{}` ({STATIC_TRIPLE}, profile {PROFILE}: what `cargo xtask dist` ships)",
                p.display()
            ),
            Err(e) => format!("not built: {e}"),
        }
    );
    let _ = writeln!(s, "Payload: {} MiB {payload}.  ", opts.size_mib);
    let mut sizes = Vec::new();
    for c in [Comp::None, Comp::Gzip, Comp::Xz, Comp::Zstd] {
        let n = art_size(c);
        if n > 0 {
            sizes.push(format!(
                "{} {:.1} MiB ({:.2}x)",
                c.name(),
                n as f64 / 1048576.0,
                img_size as f64 / n as f64
            ));
        }
    }
    let _ = writeln!(
        s,
        "Artifacts (size, image/artifact ratio): {}.\n",
        sizes.join(", ")
    );
    let _ = writeln!(
        s,
        "How it was measured: {runs} rounds; in every round each row below runs once, round-robin, in table \
         order in even rounds and backwards in odd ones, so drift of the machine and a row's place after a \
         heavy writer hit all tools alike. The loop-slot rows run in the fake device \
         `tests/refdevice/device.sh` (slot = loop device on a file on the same disk, /etc/fw_env.config, timed \
         inside the mount namespace), each in a fresh device whose inactive {size} MiB slot is filled with 0xFF \
         bytes: no block of the image matches, so the full image is written (both writers skip blocks that \
         already match, and a zeroed slot would let them skip the image's empty blocks). Before every timed \
         run: `sync` (the refill and everything else dirty is written back first), the slot file's page cache \
         dropped (`dd iflag=nocache count=0`, that file only) and the loop device's buffers flushed \
         (`blockdev --flushbufs`, only the device the bench attached): the old slot content is read from the \
         disk as on a device. The file-slot row writes a plain file (mender.conf RootfsPartA/B = files, \
         FwEnvConfig = a redundant env file), prepared the same way. The artifacts are warm in the page cache. \
         Timing: `{TIME} -f '{TIME_FORMAT}'` (GNU time: wait4 rusage of the command and its children).\n",
        runs = opts.runs,
        size = opts.size_mib
    );
    let _ = writeln!(s, "Columns:\n");
    let _ = writeln!(
        s,
        "- **wall s**: median elapsed seconds (min-max in the note);"
    );
    let _ = writeln!(
        s,
        "- **CPU s**: median user+system CPU seconds (all processes of the command);"
    );
    let _ = writeln!(
        s,
        "- **peak RSS MiB**: median of the peak resident set size of the largest process;"
    );
    let _ = writeln!(
        s,
        "- **÷ ref**: median wall / `mender install` median wall, same compression, same kind of slot;"
    );
    let _ = writeln!(
        s,
        "- **÷ limit**: median wall / the median wall of the standard tools' pipeline that decompresses the \
         data stream and writes the image into the same kind of loop slot with fsync (`tar | zcat | tar | dd \
         conv=fsync`, processes on all cores): what a pipelined installer (minus hashing) takes;"
    );
    let _ = writeln!(
        s,
        "- **÷ decomp**: median wall / decompressing (or reading) the data stream to /dev/null.\n"
    );
    let _ = writeln!(s, "Wall times on a shared 2-core VM swing by tens of percent; compare medians and CPU seconds. \
                         This is a report, not a test: nothing here passes or fails.\n");

    let _ = writeln!(
        s,
        "| compression | tool | wall s | CPU s | peak RSS MiB | ÷ ref | ÷ limit | ÷ decomp | note |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let find = |c: Comp, k: Kind| {
        rows.iter()
            .find(|r| r.comp == c && r.kind == k)
            .and_then(Row::median_wall)
    };
    for r in rows {
        let ok = r.ok();
        let wall = r.median_wall();
        let cpu = (!ok.is_empty()).then(|| median(ok.iter().map(|x| x.cpu).collect()));
        let rss = (!ok.is_empty())
            .then(|| median(ok.iter().map(|x| x.rss_kib as f64 / 1024.0).collect()));
        let div = |x: Option<f64>| match (wall, x) {
            (Some(w), Some(x)) if x > 0.0 => Some(w / x),
            _ => None,
        };
        let installer = matches!(
            r.kind,
            Kind::Otalite | Kind::OtaliteDevice | Kind::OtaliteStatic | Kind::Mender
        );
        let (ratio_ref, ratio_lim, ratio_dec) = if installer {
            (
                if r.kind == Kind::Mender {
                    None
                } else {
                    div(find(r.comp, Kind::Mender))
                },
                div(find(r.comp, Kind::LimitPipeSlot)),
                div(find(r.comp, Kind::LimitDecompress)),
            )
        } else if r.kind == Kind::LimitWrite {
            (None, None, div(find(r.comp, Kind::LimitDecompress)))
        } else {
            (None, None, None)
        };
        let mut note = String::new();
        if !ok.is_empty() {
            let lo = ok.iter().map(|x| x.wall).fold(f64::INFINITY, f64::min);
            let hi = ok.iter().map(|x| x.wall).fold(0.0, f64::max);
            let _ = write!(
                note,
                "{lo:.2}-{hi:.2} s, {}/{} ok",
                ok.len(),
                r.samples.len()
            );
        }
        if let Some(e) = r.first_error() {
            if !note.is_empty() {
                note.push_str("; ");
            }
            let na = r.kind == Kind::Mender && r.comp == Comp::Zstd;
            let _ = write!(
                note,
                "{}error: {e}",
                if na {
                    "n/a (Debian build has no zstd): "
                } else {
                    ""
                }
            );
        }
        let comp = if r.kind == Kind::LimitHash {
            "(image)"
        } else {
            r.comp.name()
        };
        let _ = writeln!(
            s,
            "| {comp} | {} | {} | {} | {} | {} | {} | {} | {note} |",
            r.tool,
            fmt_opt(wall, 2),
            fmt_opt(cpu, 2),
            fmt_opt(rss, 1),
            fmt_opt(ratio_ref, 2),
            fmt_opt(ratio_lim, 2),
            fmt_opt(ratio_dec, 2),
        );
    }

    let _ = writeln!(
        s,
        "\nIssue 8's targets (otalite's loop-slot median wall; the static row in brackets):\n"
    );
    let _ = writeln!(
        s,
        "| compression | target | release build | static musl | met |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | --- |");
    let mut comps: Vec<Comp> = Vec::new();
    for r in rows.iter().filter(|r| r.kind != Kind::LimitHash) {
        if !comps.contains(&r.comp) {
            comps.push(r.comp);
        }
    }
    for c in comps {
        let (goal, against) = c.target();
        let what = if against == Kind::Mender {
            "the reference"
        } else {
            "decompressing to /dev/null"
        };
        let ratio = |k: Kind| match (find(c, k), find(c, against)) {
            (Some(w), Some(x)) if x > 0.0 => Some(w / x),
            _ => None,
        };
        let (rel, st) = (ratio(Kind::OtaliteDevice), ratio(Kind::OtaliteStatic));
        let met = match rel {
            Some(v) if v <= goal => "yes",
            Some(_) => "no",
            None => "-",
        };
        let _ = writeln!(
            s,
            "| {} | ≤ {goal:.2}x {what} | {} | {} | {met} |",
            c.name(),
            fmt_opt(rel, 2),
            fmt_opt(st, 2),
        );
    }

    let _ = writeln!(
        s,
        "\nRe-install of the same image (gzip artifact, loop slot, one run each; slot already holds the image, \
         env and state reset, caches dropped as above): both writers read each block and skip identical ones, \
         so this is read + compare, not write.\n"
    );
    let _ = writeln!(s, "| tool | wall s | CPU s | peak RSS MiB | note |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | --- |");
    for (tool, o) in [
        ("otalite install (re-install)", reinstall.0),
        ("mender install (re-install)", reinstall.1),
    ] {
        match o {
            Ok(x) => {
                let _ = writeln!(
                    s,
                    "| {tool} | {:.2} | {:.2} | {:.1} | |",
                    x.wall,
                    x.cpu,
                    x.rss_kib as f64 / 1024.0
                );
            }
            Err(e) => {
                let _ = writeln!(s, "| {tool} | - | - | - | error: {e} |");
            }
        }
    }
    s
}
