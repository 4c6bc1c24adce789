//! Build facts for `otalite --version`: the git commit, the target triple
//! and the profile (plain `env!`s; no build-info crate needed for three
//! strings).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map_or_else(
        || "unknown".to_string(),
        |commit| {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some();
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        },
    );
    println!("cargo:rustc-env=OTALITE_GIT_COMMIT={commit}");
    println!(
        "cargo:rustc-env=OTALITE_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=OTALITE_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    // Rebuilt when HEAD moves (a commit, a checkout).
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
