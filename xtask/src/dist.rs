//! `cargo xtask dist [--target TRIPLE]...`: static, stripped musl release
//! binaries of `otalite` (one per `targets/triples/<triple>.toml`) and
//! Debian packages in `target/dist/`, with `SHA256SUMS`.
//!
//! `cargo xtask dist-check`: installs the packages `dist` made into
//! throwaway roots with `dpkg --root` and checks their files, modes, that
//! the installed binary runs (the ARM ones through the qemu-user runner of
//! their `targets/triples/` file), that
//! an existing `/etc/mender/mender.conf` survives, that the shipped example
//! configuration parses, that they replace an installed mender-client
//! without losing its configuration and state, that `systemd-analyze
//! verify` accepts the units and that `dbus-daemon` loads the D-Bus
//! policies and enforces them.
//!
//! The packages are assembled here and built by `dpkg-deb --build` (part of
//! `dpkg`, on every Debian machine): cargo-deb would be one more tool to
//! install and pin for packages of a handful of files, and the second,
//! architecture-independent `otalite-mender-compat` package would need a
//! variant section of its own in the manifest.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::util::{path_str, run_quiet, target_dir};

/// One target `dist` builds, from `targets/triples/<triple>.toml` (the keys
/// are described in targets/triples/README.md).
pub struct Target {
    /// The Rust target triple.
    pub triple: String,
    /// The Debian architecture of its package.
    pub deb_arch: String,
    /// The ELF `e_machine` its binary must have.
    pub elf_machine: u16,
    /// `CARGO_TARGET_<TRIPLE>_LINKER`, if set.
    pub linker: Option<String>,
    /// `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` (empty: not set).
    pub rustflags: Vec<String>,
    /// The C compiler for crates with C code (`CC_<triple>`), if set.
    pub cc: Option<String>,
    /// The archiver for crates with C code (`AR_<triple>`), if set.
    pub ar: Option<String>,
    /// std is built from rust-src (`-Zbuild-std`): rustup has no prebuilt
    /// std for the target.
    pub build_std: bool,
    /// How to run its binaries here (empty: natively).
    pub runner: Vec<String>,
}

/// The directory of the target files.
const TRIPLES_DIR: &str = "targets/triples";

/// The targets in targets/triples/, sorted by triple.
pub fn targets(root: &Path) -> Result<Vec<Target>> {
    let dir = root.join(TRIPLES_DIR);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let targets = files
        .iter()
        .map(|file| read_target(file).with_context(|| file.display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!targets.is_empty(), "no <triple>.toml in {}", dir.display());
    Ok(targets)
}

fn read_target(file: &Path) -> Result<Target> {
    let table: toml::Table = fs::read_to_string(file)?.parse()?;
    for key in table.keys() {
        ensure!(
            [
                "triple",
                "deb-arch",
                "elf-machine",
                "linker",
                "rustflags",
                "cc",
                "ar",
                "build-std",
                "runner"
            ]
            .contains(&key.as_str()),
            "unknown key {key}"
        );
    }
    let string = |key: &str| -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(value) => Ok(Some(
                value
                    .as_str()
                    .with_context(|| format!("{key} must be a string"))?
                    .to_string(),
            )),
        }
    };
    let list = |key: &str| -> Result<Vec<String>> {
        let Some(value) = table.get(key) else {
            return Ok(Vec::new());
        };
        let items = value
            .as_array()
            .with_context(|| format!("{key} must be a list of strings"))?;
        items
            .iter()
            .map(|item| {
                let item = item
                    .as_str()
                    .with_context(|| format!("{key} must be a list of strings"))?;
                ensure!(
                    !item.is_empty() && !item.contains(char::is_whitespace),
                    "{key}: {item:?} is empty or has a space (cargo splits the variable at spaces)"
                );
                Ok(item.to_string())
            })
            .collect()
    };
    let triple = string("triple")?.context("no triple")?;
    ensure!(
        file.file_stem().is_some_and(|stem| *stem == *triple),
        "triple {triple} does not match the file name"
    );
    let machine = table
        .get("elf-machine")
        .and_then(|v| v.as_integer())
        .context("no elf-machine (an integer)")?;
    Ok(Target {
        deb_arch: string("deb-arch")?.context("no deb-arch")?,
        elf_machine: u16::try_from(machine).context("elf-machine out of range")?,
        linker: string("linker")?,
        rustflags: list("rustflags")?,
        cc: string("cc")?,
        ar: string("ar")?,
        build_std: match table.get("build-std") {
            None => false,
            Some(value) => value.as_bool().context("build-std must be true or false")?,
        },
        runner: list("runner")?,
        triple,
    })
}

impl Target {
    /// The triple as cargo's `CARGO_TARGET_<TRIPLE>_*` variables spell it.
    fn cargo_key(&self) -> String {
        self.triple.to_uppercase().replace(['-', '.'], "_")
    }

    /// Sets this target's settings on a cargo command that builds or tests
    /// for it (the command must not have run `+toolchain` selection).
    pub fn configure(&self, command: &mut Command) -> Result<()> {
        self.configure_with(command, false)
    }

    /// [`Target::configure`], plus with `dist` the settings of the shipped
    /// binaries (`DIST_*` below: std rebuilt without unwinding and without
    /// its backtrace printer).
    fn configure_with(&self, command: &mut Command, dist: bool) -> Result<()> {
        self.configure_env(command, dist)?;
        if self.build_std || dist {
            add_build_std(command, dist)?;
        }
        Ok(())
    }

    /// The per-target part of [`Target::configure_with`]: its variables
    /// (all named after the triple, so several targets can share one cargo
    /// command) and the check that the files its flags name exist.
    fn configure_env(&self, command: &mut Command, dist: bool) -> Result<()> {
        let key = self.cargo_key();
        let var = self.triple.replace(['-', '.'], "_");
        if let Some(linker) = &self.linker {
            command.env(format!("CARGO_TARGET_{key}_LINKER"), linker);
        }
        let mut rustflags = self.rustflags.clone();
        if dist {
            rustflags.extend(DIST_RUSTFLAGS.iter().map(|flag| flag.to_string()));
        }
        if !rustflags.is_empty() {
            command.env(format!("CARGO_TARGET_{key}_RUSTFLAGS"), rustflags.join(" "));
        }
        if !self.runner.is_empty() {
            command.env(format!("CARGO_TARGET_{key}_RUNNER"), self.runner.join(" "));
        }
        if let Some(cc) = &self.cc {
            command.env(format!("CC_{var}"), cc);
        }
        if let Some(ar) = &self.ar {
            command.env(format!("AR_{var}"), ar);
        }
        // Files the flags name (the crt objects and libraries of the
        // build-std link) must be there, or the link fails far from the
        // cause.
        for flag in &self.rustflags {
            let path = flag.rsplit('=').next().unwrap_or(flag);
            if path.starts_with('/') {
                ensure!(
                    Path::new(path).exists(),
                    "{path} (named in {TRIPLES_DIR}/{}.toml) is missing: run `bash .ci/setup`",
                    self.triple
                );
            }
        }
        Ok(())
    }

    /// `cargo build` of the `otalite` binary for this target in `profile`,
    /// as `cargo xtask dist` builds it (`cargo xtask bloat` builds the
    /// same with its symbols kept).
    pub fn dist_build(&self, root: &Path, profile: &str) -> Result<Command> {
        dist_build_all(root, profile, &[self])
    }
}

/// `-Zbuild-std` (and with `dist` the shipped std features) on a cargo
/// command, once for all its targets.
fn add_build_std(command: &mut Command, dist: bool) -> Result<()> {
    let sysroot = run_quiet(&["rustc", "--print", "sysroot"])?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
    ensure!(
        src.exists(),
        "std is built from source for the musl targets, and rust-src is not installed \
         (run `rustup component add rust-src` or `bash .ci/setup`)"
    );
    // -Zbuild-std is unstable; the stable toolchain (the one every
    // other target uses) accepts it with RUSTC_BOOTSTRAP=1.
    command
        .env("RUSTC_BOOTSTRAP", "1")
        .arg("-Zbuild-std=std,panic_abort");
    if dist {
        command.arg(format!(
            "-Zbuild-std-features={}",
            DIST_STD_FEATURES.join(",")
        ));
    }
    Ok(())
}

/// One `cargo build` of the `otalite` binary for all of `targets` in
/// `profile`, as `cargo xtask dist` builds them. One command, so cargo
/// schedules the targets' crates together: each final link (fat LTO, one
/// codegen unit) runs on one core, and the targets' links overlap instead
/// of following each other (`cargo xtask dist` for the three targets on the
/// 2-core VM: 288 s, against 479 s with one command per target).
pub fn dist_build_all(root: &Path, profile: &str, targets: &[&Target]) -> Result<Command> {
    let mut build = crate::util::nested_cargo(root);
    build.args([
        "build",
        "--profile",
        profile,
        "-p",
        "otalite-linux",
        "--bin",
        "otalite",
    ]);
    for target in targets {
        build.args(["--target", &target.triple]);
        target.configure_env(&mut build, true)?;
    }
    // A profile override for std only works with -Zbuild-std; in
    // Cargo.toml it would warn on every other cargo command.
    build.args([
        "--config",
        &format!("profile.{profile}.package.std.opt-level={DIST_STD_OPT_LEVEL}"),
    ]);
    add_build_std(&mut build, true)?;
    Ok(build)
}

/// std's features in the shipped binaries (`-Zbuild-std-features`, std is
/// rebuilt from rust-src for every target): none, so no `panic-unwind`
/// (the profile aborts on panic) and no `backtrace` (std's symbolizing
/// backtrace printer: gimli, addr2line, rustc-demangle, about 90 KiB). A
/// panic still prints its message and location.
const DIST_STD_FEATURES: &[&str] = &[];

/// std's opt-level in the shipped binaries (the profile's is "z"): at "z"
/// std's backtrace printer is not optimized out and links LLVM's libunwind
/// (35 KiB); at "s" it is (`cargo xtask bloat`: 35,064 bytes smaller).
const DIST_STD_OPT_LEVEL: &str = "\"s\"";

/// Rust flags the shipped binaries add to their target's: no unwind
/// tables (`.eh_frame`; nothing unwinds in a `panic = "abort"` build
/// whose std has no backtrace printer).
const DIST_RUSTFLAGS: &[&str] = &["-C", "force-unwind-tables=no"];

/// The cargo profile of the shipped binaries (Cargo.toml: release with
/// opt-level "z", 3 for the per-byte decoders; README, Size).
pub const PROFILE: &str = "release-dist";

/// The Debian maintainer field.
const MAINTAINER: &str = "otalite maintainers <otalite@example.invalid>";

/// One file or directory of a package: path inside the package, what it is,
/// and its mode.
struct Entry {
    path: &'static str,
    kind: Kind,
    mode: u32,
}

enum Kind {
    Dir,
    /// Copied from this path (relative to the workspace root; `BINARY`
    /// stands for the built binary).
    File(&'static str),
    Symlink(&'static str),
}

const BINARY: &str = "<binary>";

/// The `otalite` package (one per architecture).
const OTALITE_FILES: &[Entry] = &[
    Entry {
        path: "usr/bin/otalite",
        kind: Kind::File(BINARY),
        mode: 0o755,
    },
    Entry {
        path: "lib/systemd/system/otalite.service",
        kind: Kind::File("targets/linux/dist/systemd/otalite.service"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/dbus-1/system.d/io.mender.AuthenticationManager.conf",
        kind: Kind::File("targets/linux/dist/dbus/io.mender.AuthenticationManager.conf"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/dbus-1/system.d/io.mender.UpdateManager.conf",
        kind: Kind::File("targets/linux/dist/dbus/io.mender.UpdateManager.conf"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/doc/otalite/copyright",
        kind: Kind::File("targets/linux/dist/copyright"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/doc/otalite/mender.conf.example",
        kind: Kind::File("targets/linux/dist/mender.conf.example"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/doc/otalite/README.md",
        kind: Kind::File("README.md"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/mender/modules/v3",
        kind: Kind::Dir,
        mode: 0o755,
    },
    Entry {
        path: "etc/mender",
        kind: Kind::Dir,
        mode: 0o755,
    },
    // The reference package's data directory link (state on the data
    // partition). Shipping it also keeps it when otalite replaces
    // mender-client: dpkg would delete it with mender-client otherwise,
    // and otalite would start over without the device key and state.
    Entry {
        path: "var/lib/mender",
        kind: Kind::Symlink("/data/mender"),
        mode: 0o777,
    },
];

/// The `otalite-mender-compat` package (architecture `all`).
const COMPAT_FILES: &[Entry] = &[
    Entry {
        path: "usr/bin/mender",
        kind: Kind::Symlink("otalite"),
        mode: 0o777,
    },
    Entry {
        path: "lib/systemd/system/mender-client.service",
        kind: Kind::File("targets/linux/dist/systemd/mender-client.service"),
        mode: 0o644,
    },
    Entry {
        path: "usr/share/doc/otalite-mender-compat/copyright",
        kind: Kind::File("targets/linux/dist/copyright"),
        mode: 0o644,
    },
];

/// The version of the `otalite` binary (targets/linux/Cargo.toml).
fn version(root: &Path) -> Result<String> {
    let manifest = root.join("targets/linux/Cargo.toml");
    let text = fs::read_to_string(&manifest).with_context(|| manifest.display().to_string())?;
    text.lines()
        .find_map(|line| {
            let value = line
                .strip_prefix("version")?
                .trim_start()
                .strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_string())
        })
        .context("no version in targets/linux/Cargo.toml")
}

fn dist_dir(root: &Path) -> PathBuf {
    target_dir(root).join("dist")
}

fn deb_name(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{version}_{arch}.deb")
}

fn binary_name(version: &str, target: &str) -> String {
    format!("otalite-{version}-{target}")
}

/// Builds the binaries and packages.
pub fn dist(args: &[&str]) -> Result<()> {
    let mut wanted: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--target" => wanted.push(rest.next().context("--target needs a target triple")?),
            other => bail!("unknown option {other}; usage: cargo xtask dist [--target TRIPLE]..."),
        }
    }
    let root = crate::workspace_root();
    let targets = targets(&root)?;
    for target in &wanted {
        ensure!(
            targets.iter().any(|t| t.triple == *target),
            "unsupported target {target}; dist builds {} (files in {TRIPLES_DIR}/)",
            targets
                .iter()
                .map(|t| t.triple.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let version = version(&root)?;
    let out = dist_dir(&root);
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).with_context(|| out.display().to_string())?;

    let selected: Vec<&Target> = targets
        .iter()
        .filter(|t| wanted.is_empty() || wanted.contains(&t.triple.as_str()))
        .collect();
    let started = std::time::Instant::now();
    let mut build = dist_build_all(&root, PROFILE, &selected)?;
    eprintln!("==> {build:?}");
    if !build.status().context("run cargo")?.success() {
        bail!(
            "cargo build for {} failed (missing target? run `bash .ci/setup`, which adds \
             the musl targets, rust-src, the cross compilers ring needs and the armhf musl)",
            selected
                .iter()
                .map(|t| t.triple.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for spec in selected {
        let (target, arch) = (spec.triple.as_str(), spec.deb_arch.as_str());
        let built = target_dir(&root).join(target).join(PROFILE).join("otalite");
        let image = fs::read(&built).with_context(|| built.display().to_string())?;
        check_elf(&image, spec.elf_machine).with_context(|| format!("{}", built.display()))?;
        let binary = out.join(binary_name(&version, target));
        fs::copy(&built, &binary).with_context(|| binary.display().to_string())?;
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))?;
        eprintln!(
            "    {}: {} bytes, static, stripped (all targets built in {:.0} s)",
            binary.display(),
            image.len(),
            started.elapsed().as_secs_f64()
        );
        build_deb(
            &root,
            &out,
            "otalite",
            &version,
            arch,
            OTALITE_FILES,
            &binary,
        )?;
    }
    build_deb(
        &root,
        &out,
        "otalite-mender-compat",
        &version,
        "all",
        COMPAT_FILES,
        Path::new(""),
    )?;

    let mut names: Vec<String> = fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut sha = Command::new("sha256sum");
    sha.current_dir(&out).args(&names).stderr(Stdio::inherit());
    let sums = sha.output().context("run sha256sum")?;
    ensure!(sums.status.success(), "sha256sum failed");
    fs::write(out.join("SHA256SUMS"), &sums.stdout)?;
    eprintln!("dist: {} files in {}:", names.len(), out.display());
    for name in &names {
        eprintln!("    {name}");
    }
    Ok(())
}

/// Checks that `image` is a little-endian ELF (64- or 32-bit) for `machine`
/// with no program interpreter (static; static-pie keeps a `PT_DYNAMIC` but
/// needs no loader) and no symbol table (stripped).
fn check_elf(image: &[u8], machine: u16) -> Result<()> {
    let u16_at = |at: usize| -> Result<u16> {
        let b = image.get(at..at + 2).context("truncated ELF")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| -> Result<u32> {
        let b = image.get(at..at + 4).context("truncated ELF")?;
        Ok(u32::from_le_bytes(b.try_into()?))
    };
    let u64_at = |at: usize| -> Result<usize> {
        let b = image.get(at..at + 8).context("truncated ELF")?;
        Ok(usize::try_from(u64::from_le_bytes(b.try_into()?))?)
    };
    let wide = match image.get(..6) {
        Some(b"\x7fELF\x02\x01") => true,
        Some(b"\x7fELF\x01\x01") => false,
        _ => bail!("not a little-endian ELF file"),
    };
    let found = u16_at(0x12)?;
    ensure!(found == machine, "ELF machine {found}, expected {machine}");
    // The header fields after e_entry move by the width of the three
    // address-sized fields (ELF64 vs ELF32).
    let (phoff, shoff, rest) = if wide {
        (u64_at(0x20)?, u64_at(0x28)?, 0x36)
    } else {
        (u32_at(0x1c)? as usize, u32_at(0x20)? as usize, 0x2a)
    };
    let (phentsize, phnum) = (u16_at(rest)?, u16_at(rest + 2)?);
    let (shentsize, shnum) = (u16_at(rest + 4)?, u16_at(rest + 6)?);
    for i in 0..usize::from(phnum) {
        let kind = u32_at(phoff + i * usize::from(phentsize))?;
        ensure!(
            kind != 3,
            "has a PT_INTERP program header: not a static binary"
        );
    }
    for i in 0..usize::from(shnum) {
        let kind = u32_at(shoff + i * usize::from(shentsize) + 4)?;
        ensure!(kind != 2, "has a symbol table: not stripped");
    }
    Ok(())
}

/// Assembles `package` for `arch` from `files` in a staging directory and
/// builds it with `dpkg-deb`.
fn build_deb(
    root: &Path,
    out: &Path,
    package: &str,
    version: &str,
    arch: &str,
    files: &[Entry],
    binary: &Path,
) -> Result<()> {
    let stage = out.join(format!("stage-{package}-{arch}"));
    let _ = fs::remove_dir_all(&stage);
    let mut bytes = 0u64;
    for entry in files {
        let path = stage.join(entry.path);
        match entry.kind {
            Kind::Dir => fs::create_dir_all(&path)?,
            Kind::File(source) => {
                let source = if source == BINARY {
                    binary.to_path_buf()
                } else {
                    root.join(source)
                };
                fs::create_dir_all(path.parent().context("no parent")?)?;
                bytes += fs::copy(&source, &path)
                    .with_context(|| format!("copy {}", source.display()))?;
            }
            Kind::Symlink(target) => {
                fs::create_dir_all(path.parent().context("no parent")?)?;
                symlink(target, &path)?;
            }
        }
        if !matches!(entry.kind, Kind::Symlink(_)) {
            fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))?;
        }
    }
    // Every directory 0755 whatever the umask (the listed ones are set
    // above; this covers the parents made on the way).
    set_dir_modes(&stage)?;
    let control = stage.join("DEBIAN");
    fs::create_dir_all(&control)?;
    fs::set_permissions(&control, fs::Permissions::from_mode(0o755))?;
    let text = control_file(package, version, arch, bytes.div_ceil(1024));
    fs::write(control.join("control"), text)?;
    fs::set_permissions(control.join("control"), fs::Permissions::from_mode(0o644))?;
    let deb = out.join(deb_name(package, version, arch));
    run_quiet(&[
        "dpkg-deb",
        "--root-owner-group",
        "-Zxz",
        "--build",
        &path_str(&stage),
        &path_str(&deb),
    ])?;
    fs::remove_dir_all(&stage)?;
    eprintln!("    {}", deb.display());
    Ok(())
}

fn set_dir_modes(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_dir_modes(&entry.path())?;
        }
    }
    Ok(())
}

/// The DEBIAN/control file of `package`.
fn control_file(package: &str, version: &str, arch: &str, installed_kib: u64) -> String {
    // Both packages take over from mender-client: `otalite` holds the same
    // D-Bus policy files and drives the same state and boot environment,
    // the compat package holds /usr/bin/mender and mender-client.service.
    // Neither `Provides: mender-client`: otalite's Conflicts would then hit
    // the compat package too.
    let relations = match package {
        // Recommends: the system CA bundle is what HTTPS trusts (no roots
        // are built in), as for the reference.
        "otalite" => {
            "Recommends: ca-certificates\nConflicts: mender-client\nReplaces: mender-client\n"
                .to_string()
        }
        _ => format!(
            "Depends: otalite (= {version})\nConflicts: mender-client\nReplaces: mender-client\n"
        ),
    };
    let description = match package {
        "otalite" => {
            "over-the-air A/B update agent compatible with Mender\n \
             otalite installs Mender Artifacts (format 3) into the inactive root\n \
             filesystem slot, streaming, and runs as a daemon against a Mender\n \
             server. It reads the reference client's configuration and state files.\n \
             The binary is static (musl) and has no dependencies."
        }
        _ => {
            "run otalite in place of mender-client\n \
             Provides /usr/bin/mender (a symlink to otalite) and a\n \
             mender-client.service unit identical in behaviour to the reference\n \
             client's, so that images, scripts and enablement links made for\n \
             mender-client keep working."
        }
    };
    format!(
        "Package: {package}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: {MAINTAINER}\n\
         Installed-Size: {installed_kib}\nSection: admin\nPriority: optional\n{relations}\
         Homepage: https://example.invalid/otalite\nDescription: {description}\n"
    )
}

// ---------------------------------------------------------------------------
// dist-check

/// Runs `dpkg` on the throwaway root `root` (no scripts, no log, no chroot).
fn dpkg(root: &Path, args: &[&str]) -> Result<String> {
    let root_arg = format!("--root={}", root.display());
    let mut argv = vec![
        "dpkg",
        &root_arg,
        "--force-not-root",
        "--force-script-chrootless",
        "--log=/dev/null",
    ];
    argv.extend_from_slice(args);
    run_quiet(&argv)
}

/// A fresh root with an empty dpkg database.
fn fresh_root(path: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(path);
    for dir in [
        "var/lib/dpkg/updates",
        "var/lib/dpkg/info",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(path.join(dir))?;
    }
    fs::write(path.join("var/lib/dpkg/status"), "")?;
    fs::write(path.join("var/lib/dpkg/available"), "")?;
    Ok(())
}

/// Runs `binary` of `target` on this machine (through its runner).
fn run_binary(target: &Target, binary: &Path, args: &[&str]) -> Result<std::process::Output> {
    let mut argv = target.runner.clone();
    argv.push(path_str(binary));
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    command
        .output()
        .with_context(|| format!("run {}", argv.join(" ")))
}

/// Installs the packages that `cargo xtask dist` made into throwaway roots
/// and checks them (see the module docs).
pub fn check(args: &[&str]) -> Result<()> {
    ensure!(args.is_empty(), "usage: cargo xtask dist-check");
    let root = crate::workspace_root();
    let version = version(&root)?;
    let out = dist_dir(&root);
    let compat = out.join(deb_name("otalite-mender-compat", &version, "all"));
    ensure!(
        compat.exists(),
        "{} is missing: run `cargo xtask dist` first",
        compat.display()
    );
    let native = run_quiet(&["dpkg", "--print-architecture"])?
        .trim()
        .to_string();
    let mut native_root = None;
    let mut checked = 0;
    for spec in &targets(&root)? {
        let arch = spec.deb_arch.as_str();
        let deb = out.join(deb_name("otalite", &version, arch));
        if !deb.exists() {
            eprintln!("    {}: not built, skipped", deb.display());
            continue;
        }
        let instroot = out.join(format!("root-{arch}"));
        check_package(
            &root, &out, &deb, &compat, &instroot, spec, &native, &version,
        )
        .with_context(|| format!("{}", deb.display()))?;
        eprintln!("    {}: ok", deb.display());
        if arch == native {
            native_root = Some(instroot);
        }
        checked += 1;
    }
    ensure!(checked > 0, "no otalite package in {}", out.display());
    let instroot = native_root.with_context(|| {
        format!("the units and policies are checked in the {native} root, which was not built")
    })?;
    check_replaces_mender_client(&out, &version, &native)?;
    eprintln!("    replaces an installed mender-client, keeping its state and configuration: ok");
    verify_units(&instroot)?;
    check_dbus_policies(&out, &instroot)?;
    yocto_crates(&["--check"])?;
    eprintln!("    Yocto crate list matches Cargo.lock: ok");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn check_package(
    root: &Path,
    out: &Path,
    deb: &Path,
    compat: &Path,
    instroot: &Path,
    target: &Target,
    native: &str,
    version: &str,
) -> Result<()> {
    let arch = target.deb_arch.as_str();
    // The control fields, as dpkg reads them.
    let fields = run_quiet(&[
        "dpkg-deb",
        "-f",
        &path_str(deb),
        "Package",
        "Version",
        "Architecture",
        "Depends",
        "Recommends",
        "Conflicts",
    ])?;
    let expected = format!(
        "Package: otalite\nVersion: {version}\nArchitecture: {arch}\n\
         Recommends: ca-certificates\nConflicts: mender-client\n"
    );
    ensure!(
        fields == expected,
        "control fields:\n{fields}expected:\n{expected}"
    );
    // Every file owned by root.
    let listing = run_quiet(&["dpkg-deb", "-c", &path_str(deb)])?;
    for line in listing.lines() {
        ensure!(
            line.split_whitespace().nth(1) == Some("root/root"),
            "not owned by root/root: {line}"
        );
    }

    fresh_root(instroot)?;
    // A configuration the device already has must survive the install.
    let conf = instroot.join("etc/mender/mender.conf");
    fs::create_dir_all(conf.parent().context("no parent")?)?;
    let kept = "{\"RootfsPartA\": \"/dev/keep-me-2\", \"RootfsPartB\": \"/dev/keep-me-3\"}\n";
    fs::write(&conf, kept)?;
    // On a foreign root dpkg (whose native architecture is this machine's)
    // reads the `all` package's `Depends: otalite` as the native otalite:
    // there the dependency is checked from the control fields instead.
    let mut install = vec!["--install"];
    if arch != native {
        dpkg(instroot, &["--add-architecture", arch])?;
        install.insert(0, "--force-depends");
    }
    let depends = run_quiet(&["dpkg-deb", "-f", &path_str(compat), "Depends"])?;
    ensure!(
        depends.trim() == format!("otalite (= {version})"),
        "otalite-mender-compat depends on {depends:?}"
    );
    let (deb_arg, compat_arg) = (path_str(deb), path_str(compat));
    install.extend([deb_arg.as_str(), compat_arg.as_str()]);
    dpkg(instroot, &install)?;

    let owned = dpkg(
        instroot,
        &["--listfiles", "otalite", "otalite-mender-compat"],
    )?;
    for (entries, binary) in [
        (
            OTALITE_FILES,
            out.join(binary_name(version, &target.triple)),
        ),
        (COMPAT_FILES, PathBuf::new()),
    ] {
        for entry in entries {
            let path = instroot.join(entry.path);
            ensure!(
                owned.lines().any(|l| l == format!("/{}", entry.path)),
                "dpkg does not list /{} as installed",
                entry.path
            );
            let meta = fs::symlink_metadata(&path)
                .with_context(|| format!("/{} was not installed", entry.path))?;
            match entry.kind {
                Kind::Dir => ensure!(meta.is_dir(), "/{} is not a directory", entry.path),
                Kind::File(source) => {
                    let source = if source == BINARY {
                        binary.clone()
                    } else {
                        root.join(source)
                    };
                    ensure!(
                        fs::read(&path)? == fs::read(&source)?,
                        "/{} differs from {}",
                        entry.path,
                        source.display()
                    );
                }
                Kind::Symlink(target) => ensure!(
                    fs::read_link(&path)? == Path::new(target),
                    "/{} does not point to {target}",
                    entry.path
                ),
            }
            if !matches!(entry.kind, Kind::Symlink(_)) {
                let mode = meta.permissions().mode() & 0o7777;
                ensure!(
                    mode == entry.mode,
                    "/{} has mode {mode:o}, expected {:o}",
                    entry.path,
                    entry.mode
                );
            }
        }
    }
    ensure!(
        fs::read_to_string(&conf)? == kept,
        "the existing /etc/mender/mender.conf was changed by the install"
    );

    // The installed binary runs, by both names.
    for name in ["usr/bin/otalite", "usr/bin/mender"] {
        let run = run_binary(target, &instroot.join(name), &["--version"])?;
        let text = String::from_utf8_lossy(&run.stdout);
        ensure!(
            run.status.success()
                && text
                    .lines()
                    .next()
                    .is_some_and(|l| l.starts_with(&format!("otalite {version} ("))),
            "/{name} --version: {} {text:?} {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
    }
    check_example_config(out, instroot, target)?;

    // Removing the packages removes their files but not the configuration.
    dpkg(instroot, &["--remove", "otalite-mender-compat", "otalite"])?;
    for gone in [
        "usr/bin/otalite",
        "usr/bin/mender",
        "lib/systemd/system/otalite.service",
    ] {
        ensure!(
            fs::symlink_metadata(instroot.join(gone)).is_err(),
            "/{gone} is still there after dpkg --remove"
        );
    }
    ensure!(
        fs::read_to_string(&conf)? == kept,
        "dpkg --remove changed /etc/mender/mender.conf"
    );
    // Installed again for the unit and policy checks.
    dpkg(instroot, &install)?;
    Ok(())
}

/// The shipped `mender.conf.example` parses: the installed binary runs
/// `commit` with it as the fallback configuration (and a main one that only
/// points at a U-Boot environment made here) and answers "no update in
/// progress" (exit 2). A truncated copy must make it fail with exit 1, so
/// the check can tell a parsed file from an ignored one.
fn check_example_config(out: &Path, instroot: &Path, target: &Target) -> Result<()> {
    let dir = out.join(format!("config-check-{}", target.deb_arch));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("data"))?;
    let fw_env_config = dir.join("fw_env.config");
    crate::util::write_uboot_env(&dir.join("uboot.env"), &fw_env_config)?;
    let main = dir.join("main.conf");
    fs::write(
        &main,
        format!("{{\"FwEnvConfig\": \"{}\"}}\n", path_str(&fw_env_config)),
    )?;
    let example = instroot.join("usr/share/doc/otalite/mender.conf.example");
    let text = fs::read_to_string(&example)?;
    let broken = dir.join("broken.conf");
    fs::write(&broken, &text[..text.len() / 2])?;
    let binary = instroot.join("usr/bin/otalite");
    let commit = |fallback: &Path| {
        run_binary(
            target,
            &binary,
            &[
                "-c",
                &path_str(&main),
                "-b",
                &path_str(fallback),
                "-d",
                &path_str(&dir.join("data")),
                "commit",
            ],
        )
    };
    let good = commit(&example)?;
    ensure!(
        good.status.code() == Some(2),
        "commit with mender.conf.example: {} (expected 2, no update in progress): {}",
        good.status,
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = commit(&broken)?;
    ensure!(
        bad.status.code() == Some(1),
        "commit with a truncated mender.conf.example: {} (expected 1): {}",
        bad.status,
        String::from_utf8_lossy(&bad.stderr)
    );
    fs::remove_dir_all(&dir)?;
    Ok(())
}

/// `systemd-analyze verify` of both units in the installed root (it also
/// checks that ExecStart's binary is there and executable).
fn verify_units(instroot: &Path) -> Result<()> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("systemd-analyze is not installed (package systemd; run `bash .ci/setup`)");
    }
    // What a device has and the package does not bring: the systemd units
    // our units hang off (multi-user.target, sysinit.target, ...), copied
    // from this machine, and the two commands ExecStartPre runs
    // (stand-ins: verify only checks that they are executable).
    let units = instroot.join("usr/lib/systemd");
    fs::create_dir_all(&units)?;
    run_quiet(&["cp", "-a", "/usr/lib/systemd/system", &path_str(&units)])?;
    fs::create_dir_all(instroot.join("bin"))?;
    for command in ["sh", "mkdir"] {
        let path = instroot.join("bin").join(command);
        fs::write(&path, "#!/bin/false\n")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    for unit in ["otalite.service", "mender-client.service"] {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", instroot.display()))
            .arg(instroot.join("lib/systemd/system").join(unit))
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .output()
            .context("run systemd-analyze")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Warnings (a misspelt value is only a warning) count too.
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with(unit) || l.contains(&format!("/{unit}")))
            .collect();
        ensure!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify {unit}: {}\n{stderr}",
            out.status
        );
        eprintln!("    systemd-analyze verify {unit}: ok");
    }
    Ok(())
}

/// A `dbus-daemon` configuration of type `bus_type` listening on `socket`:
/// the default policy of Debian's system bus (nobody owns names or calls
/// methods) plus the policy files in `policies`.
pub(crate) fn system_bus_config(bus_type: &str, socket: &Path, policies: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{bus_type}</type>
  <listen>unix:path={socket}</listen>
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
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <includedir>{policies}</includedir>
</busconfig>
"#,
        socket = path_str(socket),
        policies = path_str(policies),
    )
}

/// A bus with the system bus's default policy (deny owning any name and
/// calling methods) plus the installed policy files: it must start (the
/// files parse), root must be able to own the two names and nobody else,
/// and root must not own a name the files do not grant (so the grant comes
/// from them, not from a permissive default).
fn check_dbus_policies(out: &Path, instroot: &Path) -> Result<()> {
    if Command::new("dbus-daemon")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        bail!("dbus-daemon is not installed (run `bash .ci/setup`)");
    }
    let dir = out.join("dbus-check");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let socket = dir.join("bus");
    let config = dir.join("bus.conf");
    fs::write(
        &config,
        system_bus_config(
            "otalite-check",
            &socket,
            &instroot.join("usr/share/dbus-1/system.d"),
        ),
    )?;
    let mut daemon = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start dbus-daemon")?;
    let result = (|| -> Result<()> {
        use std::io::BufRead as _;
        let stdout = daemon.stdout.take().context("dbus-daemon stdout")?;
        let mut address = String::new();
        std::io::BufReader::new(stdout).read_line(&mut address)?;
        if address.trim().is_empty() {
            let mut stderr = String::new();
            if let Some(mut pipe) = daemon.stderr.take() {
                use std::io::Read as _;
                let _ = pipe.read_to_string(&mut stderr);
            }
            bail!("dbus-daemon refused the policies: {}", stderr.trim());
        }
        let address = address.trim().to_string();
        // Others must reach the socket for the refusal below to be the
        // policy's, not the file mode's.
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o777))?;
        let request = |name: &str, as_nobody: bool| -> Result<std::process::Output> {
            let mut command = if as_nobody {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "dbus-send",
                ]);
                c
            } else {
                Command::new("dbus-send")
            };
            command
                .arg(format!("--bus={address}"))
                .args([
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.RequestName",
                ])
                .arg(format!("string:{name}"))
                .arg("uint32:0")
                .output()
                .context("run dbus-send")
        };
        let is_root = run_quiet(&["id", "-u"])?.trim() == "0";
        for name in ["io.mender.AuthenticationManager", "io.mender.UpdateManager"] {
            let out = request(name, false)?;
            let text = String::from_utf8_lossy(&out.stdout);
            if is_root {
                ensure!(
                    out.status.success() && text.contains("uint32 1"),
                    "root could not own {name}: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let nobody = request(name, true)?;
                let stderr = String::from_utf8_lossy(&nobody.stderr);
                ensure!(
                    !nobody.status.success() && stderr.contains("AccessDenied"),
                    "user nobody was not refused {name}: {} {stderr}",
                    nobody.status
                );
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                ensure!(
                    !out.status.success() && stderr.contains("AccessDenied"),
                    "a non-root user was not refused {name}: {stderr}"
                );
            }
        }
        if is_root {
            let other = request("io.mender.NotGranted", false)?;
            ensure!(
                String::from_utf8_lossy(&other.stderr).contains("AccessDenied"),
                "the test bus let root own a name no policy grants: the check proves nothing"
            );
            eprintln!("    D-Bus policies: root owns both names, nobody is refused: ok");
        } else {
            eprintln!("    D-Bus policies load and refuse non-root (run as root to check root may own the names)");
        }
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = daemon.stderr.take() {
        use std::io::Read as _;
        let _ = pipe.read_to_string(&mut stderr);
    }
    result?;
    // dbus-daemon skips an included file it cannot parse with only this
    // message.
    ensure!(
        !stderr.contains("Encountered error"),
        "dbus-daemon could not parse a policy: {}",
        stderr.trim()
    );
    fs::remove_dir_all(&dir)?;
    Ok(())
}

// ---------------------------------------------------------------------------
// yocto-crates

/// The Yocto recipe's crate list, next to it.
const CRATES_INC: &str =
    "targets/linux/yocto/meta-otalite/recipes-mender/otalite/otalite-crates.inc";

/// The `crate://` fetches and checksums of every crates.io package in
/// `Cargo.lock`, in the form oe-core's `cargo-update-recipe-crates` writes.
fn crates_inc(root: &Path) -> Result<String> {
    let lock = fs::read_to_string(root.join("Cargo.lock")).context("read Cargo.lock")?;
    let mut crates = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
                Some(value.trim().trim_matches('"').to_string())
            })
        };
        if field("source").as_deref()
            != Some("registry+https://github.com/rust-lang/crates.io-index")
        {
            continue;
        }
        let (Some(name), Some(version), Some(checksum)) =
            (field("name"), field("version"), field("checksum"))
        else {
            bail!("Cargo.lock: a crates.io package without name, version or checksum");
        };
        crates.push((name, version, checksum));
    }
    let mut text = String::from(
        "# The crates of the workspace's Cargo.lock, for oe-core's cargo class.\n\
         # Written by `cargo xtask yocto-crates` (checked by `cargo xtask dist-check`);\n\
         # (`bitbake -c update_crates otalite` writes the same, plus fuzz/Cargo.lock's.)\n\nSRC_URI += \" \\\n",
    );
    for (name, version, _) in &crates {
        text.push_str(&format!("    crate://crates.io/{name}/{version} \\\n"));
    }
    text.push_str("\"\n\n");
    for (name, version, checksum) in &crates {
        text.push_str(&format!(
            "SRC_URI[{name}-{version}.sha256sum] = \"{checksum}\"\n"
        ));
    }
    Ok(text)
}

/// `cargo xtask yocto-crates [--check]`: writes (or compares) the Yocto
/// recipe's crate list.
pub fn yocto_crates(args: &[&str]) -> Result<()> {
    let root = crate::workspace_root();
    let path = root.join(CRATES_INC);
    let text = crates_inc(&root)?;
    match args {
        [] => {
            let tmp = path.with_extension("inc.tmp");
            fs::write(&tmp, &text)?;
            fs::rename(&tmp, &path)?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        ["--check"] => {
            let current = fs::read_to_string(&path).unwrap_or_default();
            ensure!(
                current == text,
                "{} does not match Cargo.lock: run `cargo xtask yocto-crates`",
                path.display()
            );
            Ok(())
        }
        _ => bail!("usage: cargo xtask yocto-crates [--check]"),
    }
}

/// Replacing the reference client: a stand-in for this machine's installed
/// `mender-client` (same name, version, architecture and files, rebuilt from
/// `dpkg -L`, without its maintainer scripts, which would act on this
/// machine) is installed in a throwaway root with a configuration and a
/// state file, then otalite and the compat package. dpkg must remove
/// mender-client by itself (Conflicts + Replaces), and the configuration,
/// the state and the `/var/lib/mender` link must be there afterwards, with
/// `mender` and `mender-client.service` now otalite's.
fn check_replaces_mender_client(out: &Path, version: &str, native: &str) -> Result<()> {
    let status = run_quiet(&[
        "dpkg-query",
        "-W",
        "-f=${Status}|${Version}|${Architecture}",
        "mender-client",
    ])
    .context("mender-client is not installed here (run `bash .ci/setup`)")?;
    let fields: Vec<&str> = status.split('|').collect();
    ensure!(
        fields.len() == 3 && fields[0] == "install ok installed",
        "mender-client is not installed here (run `bash .ci/setup`): {status}"
    );
    let (reference_version, reference_arch) = (fields[1], fields[2]);
    ensure!(
        reference_arch == native,
        "mender-client is {reference_arch}, not {native}"
    );

    let stage = out.join("stage-mender-client");
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(stage.join("DEBIAN"))?;
    let listed = run_quiet(&["dpkg", "-L", "mender-client"])?;
    let paths: Vec<&str> = listed.lines().collect();
    for &path in &paths {
        let Some(relative) = path.strip_prefix('/').filter(|p| !p.is_empty()) else {
            continue;
        };
        let meta = fs::symlink_metadata(path).with_context(|| path.to_string())?;
        let to = stage.join(relative);
        // A directory in the package even where this machine has a link
        // (merged /usr: /lib -> usr/lib): the package lists files below it.
        let parent = format!("{path}/");
        if meta.is_dir() || paths.iter().any(|p| p.starts_with(&parent)) {
            fs::create_dir_all(&to)?;
            continue;
        }
        fs::create_dir_all(to.parent().context("no parent")?)?;
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(path)?, &to)?;
        } else {
            fs::copy(path, &to).with_context(|| path.to_string())?;
        }
    }
    set_dir_modes(&stage)?;
    fs::write(
        stage.join("DEBIAN/control"),
        format!(
            "Package: mender-client\nVersion: {reference_version}\nArchitecture: {reference_arch}\n\
             Maintainer: stand-in <nobody@example.invalid>\n\
             Description: stand-in for the installed mender-client (files only)\n"
        ),
    )?;
    let reference = out.join("mender-client-stand-in.deb");
    run_quiet(&[
        "dpkg-deb",
        "--root-owner-group",
        "-Zgzip",
        "--build",
        &path_str(&stage),
        &path_str(&reference),
    ])?;
    fs::remove_dir_all(&stage)?;

    let instroot = out.join("root-replace");
    fresh_root(&instroot)?;
    // Its libraries are not in the throwaway root.
    dpkg(
        &instroot,
        &["--force-depends", "--install", &path_str(&reference)],
    )?;
    ensure!(
        fs::read_link(instroot.join("var/lib/mender"))
            .ok()
            .as_deref()
            == Some(Path::new("/data/mender")),
        "the stand-in has no /var/lib/mender -> /data/mender link"
    );
    let conf = instroot.join("etc/mender/mender.conf");
    let kept = "{\"RootfsPartA\": \"/dev/keep-me-2\", \"RootfsPartB\": \"/dev/keep-me-3\"}\n";
    fs::write(&conf, kept)?;
    let state = instroot.join("data/mender/device_type");
    fs::create_dir_all(state.parent().context("no parent")?)?;
    fs::write(&state, "device_type=keep-me\n")?;

    let deb = out.join(deb_name("otalite", version, native));
    let compat = out.join(deb_name("otalite-mender-compat", version, "all"));
    dpkg(
        &instroot,
        &["--install", &path_str(&deb), &path_str(&compat)],
    )?;
    let left = run_quiet(&[
        "dpkg-query",
        &format!("--admindir={}", instroot.join("var/lib/dpkg").display()),
        "-W",
        "-f=${Package} ${Status}\n",
    ])?;
    ensure!(
        !left.contains("mender-client install ok installed"),
        "mender-client is still installed next to otalite:\n{left}"
    );
    ensure!(
        fs::read_to_string(&conf)? == kept,
        "replacing mender-client changed /etc/mender/mender.conf"
    );
    ensure!(
        fs::read_to_string(&state)? == "device_type=keep-me\n",
        "replacing mender-client lost /data/mender/device_type"
    );
    ensure!(
        fs::read_link(instroot.join("var/lib/mender"))
            .ok()
            .as_deref()
            == Some(Path::new("/data/mender")),
        "replacing mender-client removed the /var/lib/mender link"
    );
    ensure!(
        fs::read_link(instroot.join("usr/bin/mender"))
            .ok()
            .as_deref()
            == Some(Path::new("otalite")),
        "/usr/bin/mender is not otalite's after the replacement"
    );
    let root = crate::workspace_root();
    ensure!(
        fs::read(instroot.join("lib/systemd/system/mender-client.service"))?
            == fs::read(root.join("targets/linux/dist/systemd/mender-client.service"))?,
        "mender-client.service is not otalite's after the replacement"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped target files parse, and name distinct triples and
    /// Debian architectures.
    #[test]
    fn target_files_parse() {
        let targets = targets(&crate::workspace_root()).unwrap();
        let mut triples: Vec<&str> = targets.iter().map(|t| t.triple.as_str()).collect();
        let mut arches: Vec<&str> = targets.iter().map(|t| t.deb_arch.as_str()).collect();
        triples.sort();
        triples.dedup();
        arches.sort();
        arches.dedup();
        assert_eq!(triples.len(), targets.len());
        assert_eq!(arches, ["amd64", "arm64", "armhf"]);
        let armv7 = targets
            .iter()
            .find(|t| t.triple == "armv7-unknown-linux-musleabihf")
            .unwrap();
        assert!(armv7.build_std);
        assert_eq!(armv7.runner, ["qemu-arm-static"]);
    }

    /// A minimal ELF32 ARM image: header, one program header of `kind`,
    /// no sections.
    fn elf32(kind: u32) -> Vec<u8> {
        let mut image = vec![0u8; 52 + 32];
        image[..6].copy_from_slice(b"\x7fELF\x01\x01");
        image[0x12..0x14].copy_from_slice(&40u16.to_le_bytes());
        image[0x1c..0x20].copy_from_slice(&52u32.to_le_bytes());
        image[0x2a..0x2c].copy_from_slice(&32u16.to_le_bytes());
        image[0x2c..0x2e].copy_from_slice(&1u16.to_le_bytes());
        image[52..56].copy_from_slice(&kind.to_le_bytes());
        image
    }

    #[test]
    fn check_elf_reads_elf32() {
        check_elf(&elf32(1), 40).unwrap();
        let interp = check_elf(&elf32(3), 40).unwrap_err().to_string();
        assert!(interp.contains("PT_INTERP"), "{interp}");
        let machine = check_elf(&elf32(1), 183).unwrap_err().to_string();
        assert!(machine.contains("ELF machine 40"), "{machine}");
    }
}
