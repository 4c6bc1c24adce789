//! Helpers shared by `cargo xtask demo`, `bench install` and `bench daemon`:
//! running commands quietly, paths, and the fake device's pieces (U-Boot
//! env, filled slots, the rootfs payload).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

// ---------------------------------------------------------------------------
// Commands and paths

/// A path as a `String` (lossy), for argument lists.
pub(crate) fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Runs `argv` (C locale, no stdin) and returns its stdout; its stderr
/// goes into the error when it fails.
pub(crate) fn run_quiet(argv: &[&str]) -> Result<String> {
    let (program, args) = argv.split_first().context("empty command")?;
    output(Command::new(program).args(args))
}

/// Runs `command` (C locale, no stdin) and returns its stdout; a failure
/// names the command and carries its stdout and stderr.
pub(crate) fn output(command: &mut Command) -> Result<String> {
    let out = command
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The first line of `cmd`'s output, trimmed; empty when it fails (for
/// tool versions in reports).
pub(crate) fn one_line(cmd: &[&str]) -> String {
    run_quiet(cmd)
        .ok()
        .and_then(|s| s.lines().next().map(str::trim).map(String::from))
        .unwrap_or_default()
}

/// The most telling line of a command's output: the last one that reads like
/// an error, else the last one; shortened and safe inside a table cell.
pub(crate) fn error_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error")
                || l.contains("fail")
                || l.contains("refus")
                || l.contains("unsupported")
        })
        .or(lines.last())?;
    let mut s: String = pick.replace('|', "/");
    if let Some(i) = s.find("msg=") {
        s = s[i + 4..].trim_matches('"').to_string();
    }
    if s.len() > 160 {
        let mut cut = 157;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    Some(s)
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub(crate) fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

// ---------------------------------------------------------------------------
// The fake device: boot environment, slots, payload

/// Writes a fresh redundant U-Boot env (two 0x4000 copies in `env`, as
/// `device.sh` makes it: copy 0 current, copy 1 with flag 0) booting
/// partition 2, made by the real `mkenvimage`, and its `fw_env.config`.
pub(crate) fn write_uboot_env(env: &Path, fw_env_config: &Path) -> Result<()> {
    let dir = env.parent().unwrap_or(Path::new("."));
    let txt = dir.join("uboot.env.txt");
    fs::write(
        &txt,
        "mender_boot_part=2\nmender_boot_part_hex=2\nupgrade_available=0\nbootcount=0\n",
    )?;
    let copy = dir.join("uboot.env.copy");
    run_quiet(&[
        "mkenvimage",
        "-r",
        "-s",
        "0x4000",
        "-o",
        &path_str(&copy),
        &path_str(&txt),
    ])?;
    let mut image = fs::read(&copy)?;
    let mut second = image.clone();
    second[4] = 0;
    image.extend_from_slice(&second);
    fs::write(env, image)?;
    fs::write(
        fw_env_config,
        format!("{e} 0x0 0x4000\n{e} 0x4000 0x4000\n", e = path_str(env)),
    )?;
    Ok(())
}

/// Writes `size_mib` MiB of 0xFF bytes to `path` (file or block device) and
/// syncs, so that no block of the image matches and every install writes
/// the whole image (a zeroed slot would let both writers skip empty blocks).
pub(crate) fn fill_slot(path: &Path, size_mib: u64) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let block = vec![0xffu8; 1 << 20];
    for _ in 0..size_mib {
        f.write_all(&block)?;
    }
    f.sync_all()
}

/// Makes the benchmarks' rootfs payload `work/rootfs.ext4` of `size_mib`
/// MiB (an ext4 image of files from /usr/lib, or synthetic data when
/// `mke2fs -d` fails) and returns it with a one-line description.
pub(crate) fn make_payload(work: &Path, size_mib: u64) -> Result<(PathBuf, String)> {
    {
        let image = work.join("rootfs.ext4");
        let bytes = size_mib << 20;
        let tree = work.join("rootfs-tree");
        fs::create_dir_all(&tree)?;
        let budget = bytes * 3 / 4;
        let mut used = 0u64;
        let mut files = 0u64;
        fill_tree(Path::new("/usr/lib"), &tree, budget, &mut used, &mut files);
        let _ = fs::remove_file(&image);
        fs::File::create(&image)?.set_len(bytes)?;
        let made = Command::new("mke2fs")
            .env("E2FSPROGS_FAKE_TIME", "1700000000")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "rootfs"])
            .args(["-U", "5d0e2b3c-0d7a-4c41-9c1e-07a117e00000"])
            .args([
                "-E",
                "root_owner=0:0,hash_seed=8a3cd5f1-30b3-4ac5-8f5d-c1a41ab3b41d",
            ])
            .arg("-d")
            .arg(&tree)
            .arg(&image)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let _ = fs::remove_dir_all(&tree);
        match made {
            Ok(out) if out.status.success() => Ok((
                image,
                format!(
                    "ext4 image (`mke2fs -t ext4 -d`) holding {files} files, {:.0} MiB, copied from /usr/lib \
                     (first files in path order), rest of the filesystem empty",
                    used as f64 / 1048576.0
                ),
            )),
            other => {
                let why = match other {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                eprintln!("xtask: mke2fs -d failed ({why}); using a synthetic payload");
                write_synthetic(&image, bytes)?;
                Ok((
                    image,
                    "synthetic: per 64 KiB block, 2 of 5 blocks xorshift random, 3 of 5 a repeated text line".into(),
                ))
            }
        }
    }
}

/// Hard-links (or copies) regular files from `src` into `dst`, in path order,
/// until `budget` bytes (rounded to 4 KiB blocks) are used.
fn fill_tree(src: &Path, dst: &Path, budget: u64, used: &mut u64, files: &mut u64) {
    let Ok(rd) = fs::read_dir(src) else { return };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if *used >= budget {
            return;
        }
        let Ok(meta) = e.path().symlink_metadata() else {
            continue;
        };
        let target = dst.join(e.file_name());
        if meta.is_dir() {
            if fs::create_dir(&target).is_ok() {
                *used += 4096;
                fill_tree(&e.path(), &target, budget, used, files);
            }
        } else if meta.is_file() {
            let cost = meta.len().div_ceil(4096) * 4096 + 256;
            if *used + cost > budget {
                continue;
            }
            if fs::hard_link(e.path(), &target).is_ok() || fs::copy(e.path(), &target).is_ok() {
                *used += cost;
                *files += 1;
            }
        }
    }
}

fn write_synthetic(path: &Path, bytes: u64) -> Result<()> {
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let text: Vec<u8> = b"otalite synthetic rootfs block: lorem ipsum dolor sit amet 0123456789\n"
        .iter()
        .copied()
        .cycle()
        .take(65536)
        .collect();
    let mut block = vec![0u8; 65536];
    for i in 0..bytes / 65536 {
        if i % 5 < 2 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block)?;
        } else {
            f.write_all(&text)?;
        }
    }
    f.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Size reports (`cargo xtask size`, `cargo xtask bloat`)

/// `bytes` in KiB with one decimal.
pub(crate) fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// `part` as a percentage of `whole` with one decimal (`-` for an empty whole).
pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    format!("{:.1}", part as f64 * 100.0 / whole as f64)
}

/// Prints `(name, bytes)` rows, largest first, with the share of `whole`
/// (at most `limit` rows; names cut to 78 characters).
pub(crate) fn print_table(rows: &mut [(&str, u64)], whole: u64, limit: usize) {
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (name, bytes) in rows.iter().filter(|r| r.1 > 0).take(limit) {
        let mut name = name.to_string();
        if name.len() > 78 {
            let mut cut = 75;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
            name.push_str("...");
        }
        println!(
            "  {name:<78} {bytes:>8} {:>7} KiB {:>5}%",
            kib(*bytes),
            percent(*bytes, whole)
        );
    }
}

/// `cargo` (the one running xtask) for a nested build, without the xtask
/// package's own `CARGO_PKG_*`, `CARGO_MANIFEST_*` and similar variables
/// that `cargo run` set: ring's build script reruns when they change, so
/// passing them on would rebuild ring and relink (about 2 min per target)
/// whenever the previous build came from a plain `cargo build`.
pub(crate) fn nested_cargo(root: &Path) -> Command {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(root);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo
}
