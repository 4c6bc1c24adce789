//! `cargo xtask capi-header [--check]`: generates the C API's header,
//! `targets/capi/include/otalite.h`, with cbindgen (configured by
//! `targets/capi/cbindgen.toml`); `--check` fails when the checked-in
//! header differs from what the sources give.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The header's path in the workspace.
pub fn header_path(root: &Path) -> PathBuf {
    root.join("targets/capi/include/otalite.h")
}

/// The header the sources give.
pub fn generate(root: &Path) -> Result<Vec<u8>> {
    let crate_dir = root.join("targets/capi");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .context("cbindgen")?;
    let mut out = Vec::new();
    bindings.write(&mut out);
    Ok(out)
}

/// Writes the header, or with `--check` compares it.
pub fn header(args: &[&str]) -> Result<()> {
    let root = crate::workspace_root();
    let path = header_path(&root);
    let generated = generate(&root)?;
    if args.contains(&"--check") {
        let current = std::fs::read(&path).unwrap_or_default();
        if current != generated {
            bail!(
                "{} is out of date: run `cargo xtask capi-header` and commit it",
                path.display()
            );
        }
        eprintln!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(&path, generated).with_context(|| format!("write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
