//! `cargo xtask bench install [--size-mib N] [--runs N] [--all]`: times
//! `otalite install` against the reference `mender install` and the
//! physical limits on the same artifacts.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::USAGE;
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
    /// The shell pipeline that decompresses (or just reads) the data stream.
    fn decompress_cmd(self, artifact: &Path) -> (String, String) {
        let tar = format!("tar -xOf {} {}", sh_quote(artifact), self.data_member());
        match self {
            Self::None => ("tar -xO (read data)".into(), format!("{tar} > /dev/null")),
            Self::Gzip => ("zcat".into(), format!("{tar} | zcat > /dev/null")),
            Self::Xz => ("xz -dc".into(), format!("{tar} | xz -dc > /dev/null")),
            Self::Zstd => ("zstd -dc".into(), format!("{tar} | zstd -dc > /dev/null")),
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
    Otalite,
    OtaliteDevice,
    Mender,
    LimitWrite,
    LimitDecompress,
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
    drop(root);
    if let Err(e) = &otalite {
        eprintln!("xtask: otalite build failed: {e}");
    }

    let mut bench = Bench {
        work: work.clone(),
        device_sh,
        size_mib: opts.size_mib,
        otalite,
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
        let (dname, _) = c.decompress_cmd(Path::new("x"));
        let mut add = |tool: &str, kind| {
            rows.push(Row {
                comp: c,
                tool: tool.into(),
                kind,
                samples: Vec::new(),
            })
        };
        add("otalite install", Kind::Otalite);
        add(
            "otalite install in device.sh (loop slot)",
            Kind::OtaliteDevice,
        );
        add("mender install (reference)", Kind::Mender);
        add("limit: dd image to slot, conv=fsync", Kind::LimitWrite);
        add(&format!("limit: {dname}"), Kind::LimitDecompress);
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
        for row in rows.iter_mut() {
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
                Kind::OtaliteDevice => bench.run_otalite_device(artifact),
                Kind::Mender => bench.run_mender(artifact, false),
                Kind::LimitWrite => bench.run_dd(&image),
                Kind::LimitDecompress => {
                    let (_, cmd) = row.comp.decompress_cmd(artifact);
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
    let re_otalite = bench.run_otalite(&reinstall_art, true);
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

    fn run_dd(&self, image: &Path) -> Outcome {
        let slot = self.work.join("limit-slot");
        let _ = fs::remove_file(&slot);
        let r = measure(
            &[],
            &[
                "dd".into(),
                format!("if={}", path_str(image)),
                format!("of={}", path_str(&slot)),
                "bs=1M".into(),
                "conv=fsync".into(),
                "status=none".into(),
            ],
            &self.work.join("time.out"),
            &self.work.join("limit.log"),
        );
        let _ = fs::remove_file(&slot);
        r
    }

    /// The real `mender install` in a fresh fake device (fresh zeroed loop
    /// slots, fresh env). `reinstall`: install once untimed, reset env and
    /// data (slots kept), then time the second install.
    fn run_mender(&mut self, artifact: &Path, reinstall: bool) -> Outcome {
        self.run_in_device(
            &["mender".into(), "--no-syslog".into()],
            artifact,
            reinstall,
        )
    }

    /// `otalite install` in the same fake device as the reference (loop slot).
    fn run_otalite_device(&mut self, artifact: &Path) -> Outcome {
        let bin = self
            .otalite
            .clone()
            .map_err(|e| format!("otalite not built: {e}"))?;
        self.run_in_device(&[path_str(&bin)], artifact, false)
    }

    fn run_in_device(&mut self, program: &[String], artifact: &Path, reinstall: bool) -> Outcome {
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
        let mut install: Vec<String> = program.to_vec();
        install.extend(["install".into(), path_str(artifact)]);
        if reinstall {
            let mut argv = vec![sh.clone(), "run".into(), dev_s.clone(), "--".into()];
            argv.extend(install.iter().cloned());
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            run_quiet(&refs).map_err(|e| {
                format!(
                    "first install: {}",
                    error_line(&e.to_string()).unwrap_or_default()
                )
            })?;
            run_quiet(&[&sh, "reset", &dev_s]).map_err(|e| e.to_string())?;
        }
        let prefix = vec![sh.clone(), "run".into(), dev_s.clone(), "--".into()];
        let r = measure(
            &prefix,
            &install,
            &dev.join("time.out"),
            &self.work.join("mender.log"),
        );
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
        "otalite: {}.\n",
        match &bench.otalite {
            Ok(p) => format!("`{}` (release build of `-p otalite-linux`)", p.display()),
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
        "How it was measured: {runs} rounds; in every round each row below runs once, in table order \
         (round-robin), so slow drift of the machine hits all tools alike. Every install starts from a fresh \
         {size} MiB slot filled with 0xFF bytes (written and synced before the timer starts) and a fresh U-Boot \
         env (mender_boot_part=2): no block of the image matches, so the full image is written (both writers \
         skip blocks that already match, and a zeroed slot would let them skip the image's empty blocks). `otalite install` writes to a plain file slot (mender.conf RootfsPartA/B = files, FwEnvConfig = \
         a redundant env file); `mender install` runs in the fake device `tests/refdevice/device.sh` (slot = loop \
         device on a file on the same disk), timed inside the namespace; the row \"otalite install in device.sh\" \
         runs otalite exactly the same way (same loop slot, /etc/fw_env.config), the like-for-like comparison. Files are warm in the page cache. \
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
        "- **÷ ref**: otalite row median wall / `mender install` median wall, same compression;"
    );
    let _ = writeln!(
        s,
        "- **÷ limit**: median wall / limit wall, where limit = max(dd write+fsync of the image, decompress/read \
         of the data stream) for that compression: what even a perfectly pipelined installer cannot beat.\n"
    );
    let _ = writeln!(s, "Wall times on a shared 2-core VM swing by tens of percent; compare medians and CPU seconds. \
                         This is a report, not a test: nothing here passes or fails.\n");

    let _ = writeln!(
        s,
        "| compression | tool | wall s | CPU s | peak RSS MiB | ÷ ref | ÷ limit | note |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |");
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
        let (ratio_ref, ratio_lim) =
            if matches!(r.kind, Kind::Otalite | Kind::OtaliteDevice | Kind::Mender) {
                let reference = find(r.comp, Kind::Mender);
                let limit = match (
                    find(r.comp, Kind::LimitWrite),
                    find(r.comp, Kind::LimitDecompress),
                ) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                let div = |x: Option<f64>| match (wall, x) {
                    (Some(w), Some(x)) if x > 0.0 => Some(w / x),
                    _ => None,
                };
                (
                    if r.kind != Kind::Mender {
                        div(reference)
                    } else {
                        None
                    },
                    div(limit),
                )
            } else {
                (None, None)
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
            "| {comp} | {} | {} | {} | {} | {} | {} | {note} |",
            r.tool,
            fmt_opt(wall, 2),
            fmt_opt(cpu, 2),
            fmt_opt(rss, 1),
            fmt_opt(ratio_ref, 2),
            fmt_opt(ratio_lim, 2),
        );
    }

    let _ = writeln!(
        s,
        "\nRe-install of the same image (gzip artifact, one run each; slot already holds the image, env and \
         state reset): both writers read each block and skip identical ones, so this is read + compare, not \
         write.\n"
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
