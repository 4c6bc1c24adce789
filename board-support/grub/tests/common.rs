//! Helpers shared by the integration tests (included with `mod common`).
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::path::Path;
use std::process::Command;

/// Runs `grub-editenv FILE args...` and returns stdout; `None` when
/// grub-editenv is not installed (then the test is skipped with a note).
pub fn editenv(file: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let out = match Command::new("grub-editenv").arg(file).args(args).output() {
        Ok(out) => out,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIP: grub-editenv is not installed (apt-get install grub-common)");
            return None;
        }
        Err(err) => panic!("grub-editenv: {err}"),
    };
    assert!(
        out.status.success(),
        "grub-editenv {} {args:?} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// `grub-editenv FILE list` as a status and raw stdout (for garbage input).
pub fn list_raw(file: &Path) -> Option<(bool, Vec<u8>)> {
    match Command::new("grub-editenv").arg(file).arg("list").output() {
        Ok(out) => Some((out.status.success(), out.stdout)),
        Err(_) => None,
    }
}

pub fn has_editenv() -> bool {
    Command::new("grub-editenv")
        .arg("--version")
        .output()
        .is_ok()
}
