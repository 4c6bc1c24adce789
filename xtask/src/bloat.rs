//! `cargo xtask bloat [--target TRIPLE] [--top N] [--elf PATH] [-- CARGO
//! ARGS...]`: builds the Linux binary (`otalite-linux`, bin `otalite`) as
//! `cargo xtask dist` ships it but with its symbols kept (profile
//! `release-dist-syms`: profile `release-dist` with `strip = false`, no
//! debug info, so the code is the same), and prints what it is made of: the size once stripped
//! (what `dist` ships), the sections, `.text` per crate and per function,
//! and the largest read-only objects (the webpki-roots bundle...).
//!
//! Arguments after `--` go to `cargo build`, to measure an option without
//! editing a manifest, e.g. `-- --config 'profile.release-dist-syms.opt-level="z"'`.
//!
//! The ELF is read by `elf.rs` (shared with `cargo xtask size`): no
//! `cargo bloat` to install; it needs the symbols, so it cannot reuse the
//! stripped `dist` build. Attribution is by symbol: a function's bytes go to
//! the crate of its path (the `Self` type's crate for `<T as Trait>::f`),
//! so a generic function counts under the crate that defines the type it
//! was instantiated for, and code LTO inlined counts under its caller.
//! Symbols without a Rust mangling are C: ring's (prefixed `ring_core_`),
//! the rest musl's libc and compiler-rt's builtins.

use crate::util::{kib, print_table};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use crate::elf::{demangle, symbol_crate, Elf};

/// The binary's name, the default target and the profile.
const BINARY: &str = "otalite";
const DEFAULT_TARGET: &str = "aarch64-unknown-linux-musl";
const PROFILE: &str = "release-dist-syms";
/// Issue 8's goal for the stripped aarch64 binary.
const GOAL: u64 = 1536 * 1024;

const USAGE: &str =
    "usage: cargo xtask bloat [--target TRIPLE] [--top N] [--elf PATH] [-- CARGO BUILD ARGS...]";

/// Builds the binary with symbols and prints the report (`--elf PATH`:
/// report on that unstripped ELF file (64 or 32 bit) instead, without building).
pub fn bloat(args: &[&str]) -> Result<()> {
    let mut target = DEFAULT_TARGET.to_string();
    let mut top = 20;
    let mut elf_path = None;
    let mut cargo_args: Vec<&str> = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--target" => target = rest.next().context(USAGE)?.to_string(),
            "--top" => top = rest.next().context(USAGE)?.parse().context("--top N")?,
            "--elf" => elf_path = Some(PathBuf::from(rest.next().context(USAGE)?)),
            "--" => cargo_args.extend(rest.by_ref()),
            other => bail!("unknown argument {other} ({USAGE})"),
        }
    }
    let path = match elf_path {
        Some(path) => path,
        None => {
            let root = crate::workspace_root();
            let spec = crate::dist::targets(&root)?
                .into_iter()
                .find(|t| t.triple == target)
                .with_context(|| format!("no targets/triples/{target}.toml"))?;
            let mut build = spec.dist_build(&root, PROFILE)?;
            build.args(&cargo_args);
            eprintln!("==> {build:?}");
            if !build.status().context("running cargo")?.success() {
                bail!(
                    "cargo build for {target} failed (missing target? run `bash .ci/setup`, \
                     which adds the musl targets and the aarch64 cross compiler ring needs)"
                );
            }
            crate::util::target_dir(&root)
                .join(&target)
                .join(PROFILE)
                .join(BINARY)
        }
    };
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let file_len = data.len() as u64;
    let elf = Elf::parse(data).with_context(|| path.display().to_string())?;
    let stripped = stripped_size(&path);
    report(&elf, &path.display().to_string(), file_len, stripped, top)
}

/// The size of a stripped copy of `path` (`llvm-strip --strip-all`, the
/// same as the linker's `--strip-all` that `strip = true` passes, to within
/// a few hundred bytes of section alignment), or an error message.
fn stripped_size(path: &std::path::Path) -> Result<u64, String> {
    let dir = tempfile_dir().map_err(|e| e.to_string())?;
    let copy = dir.join("stripped");
    let result = (|| {
        let status = Command::new("llvm-strip")
            .arg("--strip-all")
            .arg("-o")
            .arg(&copy)
            .arg(path)
            .status()
            .map_err(|e| format!("llvm-strip: {e} (apt-get install llvm)"))?;
        if !status.success() {
            return Err(format!("llvm-strip failed: {status}"));
        }
        std::fs::metadata(&copy)
            .map(|m| m.len())
            .map_err(|e| e.to_string())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A fresh private directory under the target directory.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = crate::util::target_dir(&crate::workspace_root())
        .join(format!("xtask-bloat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    Ok(dir)
}

/// The crate a symbol is charged to.
fn crate_of(mangled: &str, demangled: &str) -> String {
    if mangled.starts_with("_ZN") || mangled.starts_with("_R") {
        // `<T as Trait>::f`, `<[T] as Trait>::f`, `<u8 as Trait>::f`: a
        // blanket or primitive impl, charged to the trait's crate.
        if let Some((self_type, trait_path)) = demangled
            .strip_prefix('<')
            .and_then(|rest| rest.split_once(" as "))
        {
            if !self_type.contains("::") {
                return symbol_crate(trait_path).to_string();
            }
            return symbol_crate(strip_pointers(self_type)).to_string();
        }
        return symbol_crate(demangled).to_string();
    }
    if mangled.starts_with("ring_core_") {
        return "ring (C, assembly)".into();
    }
    "(C: musl libc, compiler-rt)".into()
}

/// `&mut T`, `*const T`, `[T]`, `dyn T` → `T`.
fn strip_pointers(mut text: &str) -> &str {
    loop {
        let before = text.len();
        for prefix in ["&", "*", "[", "<", "mut ", "const ", "dyn "] {
            text = text.strip_prefix(prefix).unwrap_or(text).trim_start();
        }
        if text.len() == before {
            return text;
        }
    }
}

/// ARM and AArch64 mapping symbols (`$a`, `$t`, `$x`: code starts; `$d`:
/// a literal pool inside a function; optionally `.suffix`): markers, not
/// functions. Taken as functions they would cut every function at its
/// first literal pool and count the rest under C.
fn is_mapping_symbol(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or(name);
    matches!(base, "$a" | "$t" | "$x" | "$d")
}

fn report(
    elf: &Elf,
    path: &str,
    file_len: u64,
    stripped: Result<u64, String>,
    top: usize,
) -> Result<()> {
    let symbols = elf.symbols()?;
    println!("{path}: {file_len} bytes with symbols");
    match stripped {
        Ok(len) => {
            let goal = if len > GOAL {
                format!("{} KiB over", kib(len - GOAL))
            } else {
                "met".into()
            };
            println!(
                "stripped (as `cargo xtask dist` ships it): {len} bytes = {} KiB = {:.2} MiB; \
                 goal <= 1.5 MiB: {goal}",
                kib(len),
                len as f64 / 1048576.0
            );
        }
        Err(error) => println!("stripped size unknown: {error}"),
    }

    println!("\nsections that are loaded (bytes):");
    let mut alloc: Vec<(&str, u64)> = elf
        .sections
        .iter()
        .filter(|s| s.is_alloc() && s.size > 0)
        .map(|s| (s.name.as_str(), u64::from(s.size)))
        .collect();
    let loaded: u64 = elf
        .sections
        .iter()
        .filter(|s| s.is_alloc() && !s.is_nobits())
        .map(|s| u64::from(s.size))
        .sum();
    print_table(&mut alloc, loaded, usize::MAX);
    let size_of = |name: &str| elf.section(name).map_or(0, |s| u64::from(s.size));
    println!(
        "  .text {}  .rodata {}  .data {} (+ .data.rel.ro {})  .bss {}  (file bytes loaded: {loaded})",
        size_of(".text"),
        size_of(".rodata"),
        size_of(".data"),
        size_of(".data.rel.ro"),
        size_of(".bss"),
    );

    let index_of = |name: &str| elf.sections.iter().position(|s| s.name == name);
    let text_index = index_of(".text").context("no .text")?;
    let text = &elf.sections[text_index];
    let text_len = u64::from(text.size);

    // Functions in .text, in address order, one per address; a symbol
    // without a size (assembly) runs to the next one.
    let mut funcs: Vec<(u32, u32, &str)> = symbols
        .iter()
        .filter(|s| {
            usize::from(s.section) == text_index
                && (s.is_func || s.size == 0)
                && !s.name.is_empty()
                && !is_mapping_symbol(&s.name)
        })
        .map(|s| (s.addr, s.size, s.name.as_str()))
        .collect();
    funcs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    funcs.dedup_by_key(|f| f.0);
    let end = text.addr + text.size;
    let mut sized: Vec<(String, String, u64)> = Vec::with_capacity(funcs.len());
    for (i, &(addr, size, name)) in funcs.iter().enumerate() {
        let next = funcs.get(i + 1).map_or(end, |f| f.0);
        let len = if size == 0 {
            next.saturating_sub(addr)
        } else {
            size.min(next.saturating_sub(addr))
        };
        let pretty = demangle(name);
        sized.push((crate_of(name, &pretty), pretty, u64::from(len)));
    }
    let named: u64 = sized.iter().map(|f| f.2).sum();

    let mut by_crate: HashMap<&str, u64> = HashMap::new();
    for (krate, _, len) in &sized {
        *by_crate.entry(krate.as_str()).or_default() += len;
    }
    by_crate.insert("(no symbol: padding)", text_len.saturating_sub(named));
    println!(
        "\n.text by crate (top {top}; by symbol: generics count under the type's crate, \
         inlined code under its caller):"
    );
    print_table(&mut by_crate.into_iter().collect::<Vec<_>>(), text_len, top);

    println!("\n.text by function (top {top}):");
    let mut rows: Vec<(&str, u64)> = sized.iter().map(|f| (f.1.as_str(), f.2)).collect();
    print_table(&mut rows, text_len, top);

    for section in [".rodata", ".data.rel.ro"] {
        let Some(index) = index_of(section) else {
            continue;
        };
        let whole = u64::from(elf.sections[index].size);
        let objects: Vec<(String, u64)> = symbols
            .iter()
            .filter(|s| usize::from(s.section) == index && s.size > 0)
            .map(|s| (demangle(&s.name), u64::from(s.size)))
            .collect();
        let named: u64 = objects.iter().map(|o| o.1).sum();
        println!(
            "\n{section} by object (top {top}; {} of {whole} bytes have a symbol, the rest are \
             unnamed constants: strings, tables, certificate DER):",
            named
        );
        let mut rows: Vec<(&str, u64)> = objects.iter().map(|o| (o.0.as_str(), o.1)).collect();
        print_table(&mut rows, whole, top);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_mapping_symbol;

    #[test]
    fn mapping_symbols_are_not_functions() {
        for name in ["$a", "$t", "$x", "$d", "$d.12", "$x.0"] {
            assert!(is_mapping_symbol(name), "{name}");
        }
        for name in ["main", "$dollar", "_RNvCs1_4sha2", "$"] {
            assert!(!is_mapping_symbol(name), "{name}");
        }
    }
}
