//! `cargo xtask bench install | daemon`: dispatch only. The benchmarks are
//! in `install.rs` and `daemon.rs` next to this file, the helpers they
//! share with `cargo xtask demo` in `util.rs`.

mod daemon;
mod install;

use anyhow::{bail, Result};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench install [--size-mib N] [--runs N] [--all]
       cargo xtask bench daemon [options]   (see `cargo xtask bench daemon --help`)

  bench install   time `otalite install`, the reference `mender install` (in the
                  fake device tests/refdevice/device.sh) and the physical limits
                  (write+fsync, hash, decompress) on the same artifacts; writes a
                  Markdown report to stdout and <target>/bench/install.md
    --size-mib N  payload (rootfs image) size in MiB (default 256)
    --runs N      rounds; tools alternate round-robin within each (default 3)
    --all         also xz (mender-artifact --compression lzma) and zstd
";

/// `cargo xtask bench <args>`.
pub(crate) fn bench(args: &[&str]) -> Result<()> {
    match args {
        ["install", rest @ ..] => install::bench_install(rest),
        ["daemon", rest @ ..] => daemon::bench_daemon(rest),
        _ => bail!("{USAGE}"),
    }
}
