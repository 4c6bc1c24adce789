//! Project automation: `cargo xtask ci | demo | capi-header | bench | record-sequences | size | bloat | dist | dist-check | qemu | yocto-crates`.

mod bench;
mod bloat;
mod capi;
mod ci;
mod demo;
mod dist;
mod elf;
mod qemu;
mod sequences;
mod size;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: cargo xtask ci [--quick] | demo | capi-header [--check] | bench install [--size-mib N] [--runs N] [--all] | bench daemon [...] | record-sequences | size [--top N] [--elf PATH] | bloat [--target TRIPLE] [--top N] [--elf PATH] [-- CARGO ARGS] | dist [--target TRIPLE]... | dist-check | qemu [--all] [--arch aarch64|armv7] [--scenario N]... [--keep] | yocto-crates [--check]\n";

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["ci", rest @ ..] => ci::ci(rest),
        ["demo", rest @ ..] => demo::demo(rest),
        ["capi-header", rest @ ..] => capi::header(rest),
        ["bench", rest @ ..] => bench::bench(rest),
        ["record-sequences", rest @ ..] => sequences::record_sequences(rest),
        ["size", rest @ ..] => size::size(rest),
        ["bloat", rest @ ..] => bloat::bloat(rest),
        ["dist", rest @ ..] => dist::dist(rest),
        ["dist-check", rest @ ..] => dist::check(rest),
        ["qemu", rest @ ..] => qemu::qemu(rest),
        ["yocto-crates", rest @ ..] => dist::yocto_crates(rest),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
