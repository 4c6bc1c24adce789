//! `cargo xtask record-sequences`: re-records the reference's device-API
//! request sequences in `tests/fixtures/sequences/` by running the real
//! `mender daemon` (Debian's mender-client 3.4, in `tests/refdevice/device.sh`)
//! through the cases of `tests/sequence.rs` against `otalite-testserver`.
//! The recording code is the test's own (`OTALITE_RECORD_SEQUENCES=1`), so
//! the fixtures are made exactly as the test runs the reference live.

use anyhow::{bail, Context, Result};
use std::process::Command;

/// Runs the recording and shows what changed.
pub fn record_sequences(args: &[&str]) -> Result<()> {
    if !args.is_empty() {
        bail!("usage: cargo xtask record-sequences");
    }
    let root = crate::workspace_root();
    let uid = Command::new("id").arg("-u").output().context("id -u")?;
    if !uid.stdout.starts_with(b"0\n") {
        bail!("must run as root (the reference device uses loop devices and mount namespaces)");
    }
    for tool in ["mender", "mender-artifact", "fw_setenv", "mkenvimage"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            bail!("{tool} is not installed (run .ci/setup)");
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(["test", "-p", "otalite-linux", "--test", "sequence", "--"])
        .args(["--test-threads=1", "--nocapture"])
        .env("OTALITE_RECORD_SEQUENCES", "1")
        .status()
        .context("cargo test")?;
    if !status.success() {
        bail!("recording failed ({status})");
    }
    let _ = Command::new("git")
        .current_dir(&root)
        .args(["diff", "--stat", "--", "tests/fixtures/sequences"])
        .status();
    eprintln!("xtask: recorded in tests/fixtures/sequences/ (review the diff, then run the test)");
    Ok(())
}
