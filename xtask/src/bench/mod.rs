//! `cargo xtask bench install | daemon | tls`: dispatch only. The benchmarks
//! are in `install.rs`, `daemon.rs` and `tls.rs` next to this file, the helpers they
//! share with `cargo xtask demo` in `util.rs`.

mod daemon;
mod install;
mod tls;

use anyhow::{bail, Result};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench install [--size-mib N] [--runs N] [--all]
       cargo xtask bench daemon [options]   (see `cargo xtask bench daemon --help`)
       cargo xtask bench tls [--rounds N] [--per-round N]

  bench install   time `otalite install`, the reference `mender install` (in the
                  fake device tests/refdevice/device.sh) and the physical limits
                  (write+fsync, hash, decompress) on the same artifacts; writes a
                  Markdown report to stdout and <target>/bench/install.md
    --size-mib N  payload (rootfs image) size in MiB (default 256)
    --runs N      rounds; tools alternate round-robin within each (default 3)
    --all         also xz (mender-artifact --compression lzma) and zstd

  bench tls       full TLS handshakes of otalite's crypto provider (RustCrypto)
                  and rustls' ring provider, alternating, against openssl
                  s_server on 127.0.0.1 (RSA, P-256, P-384, Ed25519); Markdown
                  report on stdout and in <target>/bench/tls.md
    --rounds N    rounds (default 5)
    --per-round N handshakes per provider and round (default 40)
";

/// `cargo xtask bench <args>`.
pub(crate) fn bench(args: &[&str]) -> Result<()> {
    match args {
        ["install", rest @ ..] => install::bench_install(rest),
        ["daemon", rest @ ..] => daemon::bench_daemon(rest),
        ["tls", rest @ ..] => tls::bench_tls(rest),
        _ => bail!("{USAGE}"),
    }
}

/// The triple of the static binary the benchmarks measure beside the
/// release build: what `cargo xtask dist` ships for x86_64 devices.
pub(crate) const STATIC_TRIPLE: &str = "x86_64-unknown-linux-musl";

/// Builds `otalite` for [`STATIC_TRIPLE`] exactly as `cargo xtask dist`
/// does (profile `release-dist`, the target's settings from
/// `targets/triples/`) and returns the binary's path.
pub(crate) fn build_static(root: &std::path::Path) -> Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let spec = crate::dist::targets(root)?
        .into_iter()
        .find(|t| t.triple == STATIC_TRIPLE)
        .with_context(|| format!("targets/triples/{STATIC_TRIPLE}.toml is missing"))?;
    // Exactly the shipped binary: `cargo xtask dist`'s build command.
    let mut build = spec.dist_build(root, crate::dist::PROFILE)?;
    if !build.status().context("run cargo")?.success() {
        bail!(
            "cargo build --profile {} --target {STATIC_TRIPLE} failed (run `bash .ci/setup`)",
            crate::dist::PROFILE
        );
    }
    let bin = crate::util::target_dir(root)
        .join(STATIC_TRIPLE)
        .join(crate::dist::PROFILE)
        .join("otalite");
    if !bin.exists() {
        bail!("{} not found after the build", bin.display());
    }
    Ok(bin)
}
