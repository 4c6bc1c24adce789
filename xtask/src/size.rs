//! `cargo xtask size [--top N] [--elf PATH]`: builds the Cortex-M firmware
//! (`targets/cortex-m`, `thumbv7em-none-eabihf`, profile `mcu`) and
//! reports its flash and RAM: section sizes, the type sizes the firmware
//! records, `.text` by part (inflate, SHA-256, P-256, reader, agent...),
//! by source file and by symbol, and the static RAM by symbol.
//!
//! The ELF is read here (`elf.rs`) instead of with `llvm-size` / `cargo
//! bloat`: no tool to install, and the line tables attribute the code that
//! LTO inlined into a caller to the file it came from (a symbol-size list
//! puts most of the agent under the firmware's loop).

use crate::util::{kib, percent, print_table};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::process::Command;

use crate::elf::{demangle, symbol_crate, Elf};

/// The firmware package, its target and profile.
pub const PACKAGE: &str = "otalite-cortex-m";
pub const TARGET: &str = "thumbv7em-none-eabihf";
pub const PROFILE: &str = "mcu";
/// The goal for `.text` with gzip, SHA-256 and P-256.
const TEXT_GOAL: u64 = 64 * 1024;
/// Names of the firmware's `SIZES` entries, in order.
const SIZE_NAMES: &[&str] = &[
    "size_of::<Agent>()",
    "size_of::<ArtifactReader>() (inside the agent)",
    "size_of::<StateRecord>() (inside the agent)",
    "agent buffers (record, request, auth, output, window, block, compare)",
    "host socket stream (HTTP head parser, receive buffer)",
];

/// The build command for the firmware.
pub fn build_command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.args([
        "build",
        "-p",
        PACKAGE,
        "--target",
        TARGET,
        "--profile",
        PROFILE,
    ]);
    command
}

/// Builds the firmware and prints the report (`--elf PATH`: report on that
/// ELF file instead, without building; source paths are shortened for a
/// build of this checkout).
pub fn size(args: &[&str]) -> Result<()> {
    let mut top = 15;
    let mut elf_path = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match *arg {
            "--top" => {
                top = rest
                    .next()
                    .context("--top needs a number")?
                    .parse()
                    .context("--top N")?
            }
            "--elf" => {
                elf_path = Some(std::path::PathBuf::from(rest.next().context("--elf PATH")?))
            }
            other => {
                bail!("unknown argument {other} (usage: cargo xtask size [--top N] [--elf PATH])")
            }
        }
    }
    let path = match elf_path {
        Some(path) => path,
        None => {
            let root = crate::workspace_root();
            std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
            let mut build = build_command();
            eprintln!("==> {build:?}");
            if !build.status().context("running cargo")?.success() {
                bail!("the firmware did not build");
            }
            crate::util::target_dir(&root)
                .join(TARGET)
                .join(PROFILE)
                .join(PACKAGE)
        }
    };
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let elf = Elf::parse(data).with_context(|| path.display().to_string())?;
    report(&elf, &path.display().to_string(), top)
}

fn report(elf: &Elf, path: &str, top: usize) -> Result<()> {
    let size_of = |name: &str| elf.section(name).map_or(0, |s| u64::from(s.size));
    let text = elf.section(".text").context("no .text")?;
    let (vectors, text_len, rodata, data, bss, uninit) = (
        size_of(".vector_table"),
        u64::from(text.size),
        size_of(".rodata"),
        size_of(".data"),
        size_of(".bss"),
        size_of(".uninit"),
    );

    println!("{PACKAGE} ({TARGET}, profile {PROFILE}: opt-level z, fat LTO, 1 codegen unit, panic=abort)");
    println!("ELF: {path}\n");
    println!("{:<16} {:>9} {:>8}", "section", "bytes", "KiB");
    for (name, len) in [
        (".vector_table", vectors),
        (".text", text_len),
        (".rodata", rodata),
        (".data", data),
        (".bss", bss),
    ] {
        println!("{name:<16} {len:>9} {:>8}", kib(len));
    }
    let flash = vectors + text_len + rodata + data;
    let ram = data + bss + uninit;
    println!("{:<16} {flash:>9} {:>8}", "flash", kib(flash));
    println!("{:<16} {ram:>9} {:>8}", "static RAM", kib(ram));
    println!("  (flash: vector table + .text + .rodata + .data; static RAM: .data + .bss, without the stack)");
    if text_len > TEXT_GOAL {
        println!(
            "  goal: .text <= {} KiB with gzip, SHA-256 and P-256: {} KiB over",
            TEXT_GOAL / 1024,
            kib(text_len - TEXT_GOAL)
        );
    } else {
        println!("  goal: .text <= {} KiB: met", TEXT_GOAL / 1024);
    }

    let symbols = elf.symbols()?;
    let demangled: Vec<String> = symbols.iter().map(|s| demangle(&s.name)).collect();

    // Type sizes recorded by the firmware.
    let sizes = symbols
        .iter()
        .zip(&demangled)
        .find(|(_, name)| name.ends_with("firmware::SIZES"))
        .map(|(symbol, _)| symbol)
        .context("the firmware's SIZES table is missing: is the agent still linked?")?;
    println!();
    for (index, name) in SIZE_NAMES.iter().enumerate() {
        let value = elf
            .read_u32(sizes.addr + 4 * index as u32)
            .context("reading SIZES")?;
        println!("{name:<72} {value:>7} B {:>6} KiB", kib(u64::from(value)));
    }

    // .text: the source file of every byte, from the line tables; the
    // enclosing symbol where there is no line information.
    let start = text.addr;
    let end = text.addr + text.size;
    let mut origins: Vec<String> = vec!["(no symbol, no line info: padding)".into()];
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut intern = |key: String, origins: &mut Vec<String>| -> u32 {
        *index.entry(key.clone()).or_insert_with(|| {
            origins.push(key);
            (origins.len() - 1) as u32
        })
    };
    let mut owner = vec![0u32; text.size as usize];
    for symbol in symbols.iter().zip(&demangled) {
        let (symbol, name) = symbol;
        if !symbol.is_func || symbol.addr < start || symbol.addr >= end {
            continue;
        }
        let key = if name.starts_with("OUTLINED_FUNCTION") {
            "symbol OUTLINED_FUNCTION".to_string()
        } else {
            format!("symbol {}", symbol_crate(name))
        };
        let id = intern(key, &mut origins);
        let from = (symbol.addr - start) as usize;
        let to = (from + symbol.size as usize).min(owner.len());
        owner[from..to].fill(id);
    }
    // `owner`: the file each byte's line row names (the innermost inlined
    // frame); `charged`: the same, except that generic helpers (core,
    // heapless, hybrid-array) inlined into a function are charged to the
    // nearest row of that function that is not a helper: the `?`, the
    // `Option` and slice methods, the integer ops the agent uses count as
    // the agent's.
    let mut charged = owner.clone();
    let mut line_bytes = 0u64;
    for sequence in elf.line_sequences()? {
        let ids: Vec<u32> = sequence
            .iter()
            .map(|(_, _, file)| intern(short_path(file), &mut origins))
            .collect();
        let not_helper: Vec<Option<u32>> = ids
            .iter()
            .map(|&id| (!is_helper(&origins[id as usize])).then_some(id))
            .collect();
        for (i, &(from, to, _)) in sequence.iter().enumerate() {
            let (from, to) = (from.max(start), to.min(end));
            if from >= to {
                continue;
            }
            let range = (from - start) as usize..(to - start) as usize;
            owner[range.clone()].fill(ids[i]);
            let caller = not_helper[..=i]
                .iter()
                .rev()
                .flatten()
                .next()
                .or_else(|| not_helper[i..].iter().flatten().next())
                .copied()
                .unwrap_or(ids[i]);
            charged[range].fill(caller);
            line_bytes += u64::from(to - from);
        }
    }
    let count = |owners: &[u32]| {
        let mut bytes = vec![0u64; origins.len()];
        for &id in owners {
            bytes[id as usize] += 1;
        }
        bytes
    };
    let by_origin = count(&owner);
    let mut by_part: HashMap<&'static str, u64> = HashMap::new();
    for (origin, &bytes) in origins.iter().zip(&count(&charged)) {
        *by_part.entry(part(origin)).or_default() += bytes;
    }
    println!(
        "\n.text by part ({}% of the bytes from DWARF line tables, the rest by symbol; \
         core/heapless helpers inlined into a function are charged to it):",
        percent(line_bytes, text_len)
    );
    print_table(
        &mut by_part.into_iter().collect::<Vec<_>>(),
        text_len,
        usize::MAX,
    );

    println!("\n.text by source file (top {top}; innermost inlined frame):");
    let mut files: Vec<(&str, u64)> = origins
        .iter()
        .map(String::as_str)
        .zip(by_origin.iter().copied())
        .collect();
    print_table(&mut files, text_len, top);

    println!("\n.text by symbol (top {top}; LTO inlines most of the agent into the loop):");
    let mut funcs: Vec<(&str, u64)> = symbols
        .iter()
        .zip(&demangled)
        .filter(|(s, _)| s.is_func && s.addr >= start && s.addr < end)
        .map(|(s, name)| (name.as_str(), u64::from(s.size)))
        .collect();
    print_table(&mut funcs, text_len, top);

    let section_index = |name: &str| elf.sections.iter().position(|s| s.name == name);
    if let Some(rodata_index) = section_index(".rodata") {
        println!(
            "\n.rodata by symbol (top {top}; `.Lanon` are unnamed constants: strings, tables):"
        );
        let mut objects: Vec<(&str, u64)> = symbols
            .iter()
            .zip(&demangled)
            .filter(|(s, _)| usize::from(s.section) == rodata_index && s.size > 0)
            .map(|(s, name)| (name.as_str(), u64::from(s.size)))
            .collect();
        print_table(&mut objects, rodata, top);
    }

    println!("\nstatic RAM by symbol:");
    let ram_sections: Vec<usize> = [".data", ".bss", ".uninit"]
        .iter()
        .filter_map(|name| section_index(name))
        .collect();
    let mut objects: Vec<(&str, u64)> = symbols
        .iter()
        .zip(&demangled)
        .filter(|(s, _)| s.is_object && ram_sections.contains(&usize::from(s.section)))
        .map(|(s, name)| (name.as_str(), u64::from(s.size)))
        .collect();
    print_table(&mut objects, ram, top);

    if !demangled
        .iter()
        .any(|name| name.starts_with("otalite::agent::"))
    {
        bail!("no otalite::agent code in the firmware: the agent was optimized out");
    }
    Ok(())
}

/// A source path without the machine's prefixes: `crate-1.2.3/src/x.rs`,
/// `library/core/src/x.rs`, `src/agent/mod.rs` (the core),
/// `targets/cortex-m/src/main.rs`.
fn short_path(path: &str) -> String {
    if let Some(at) = path.find("/registry/src/") {
        let rest = &path[at + "/registry/src/".len()..];
        return rest.split_once('/').map_or(rest, |(_, p)| p).to_string();
    }
    if let Some(at) = path.find("library/") {
        return path[at..].to_string();
    }
    let root = crate::workspace_root();
    let root = root.to_string_lossy();
    path.strip_prefix(&format!("{root}/"))
        .unwrap_or(path)
        .to_string()
}

/// Generic code that is charged to the function it was inlined into.
fn is_helper(origin: &str) -> bool {
    origin.starts_with("library/core/")
        || origin.starts_with("heapless-")
        || origin.starts_with("hybrid-array-")
}

/// The crate of a short path (`miniz_oxide-0.9.1/src/...` → `miniz_oxide`)
/// or of a `symbol <crate>` origin.
fn crate_of(origin: &str) -> &str {
    if let Some(name) = origin.strip_prefix("symbol ") {
        return name;
    }
    if let Some(rest) = origin.strip_prefix("library/") {
        return rest.split('/').next().unwrap_or(rest);
    }
    let first = origin.split('/').next().unwrap_or(origin);
    // `name-1.2.3`: cut at the dash that starts the version.
    match first
        .char_indices()
        .find(|&(i, c)| c == '-' && first[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
    {
        Some((i, _)) => &first[..i],
        None => first,
    }
}

/// The part of the firmware an origin (short path or `symbol <crate>`)
/// belongs to.
fn part(origin: &str) -> &'static str {
    let krate = crate_of(origin);
    if origin.starts_with("src/") {
        return match origin {
            o if o.starts_with("src/agent/") => "agent (src/agent)",
            "src/protocol/http.rs" => "HTTP/1.1 framing (src/protocol/http.rs)",
            o if o.starts_with("src/protocol/") => "device-API messages (src/protocol)",
            "src/artifact/inflate.rs" => "inflate (miniz_oxide, artifact/inflate.rs)",
            "src/artifact/verify/rsa.rs" => "RSA verify (artifact/verify/rsa.rs)",
            "src/artifact/verify/ecdsa.rs" => "P-256 ECDSA (p256 and its RustCrypto deps)",
            o if o.starts_with("src/artifact/verify") => "key parsing: PEM, DER (artifact/verify)",
            "src/artifact/json.rs" => "JSON (artifact/json.rs, serde-json-core, serde)",
            o if o.starts_with("src/artifact/") => "artifact reader (tar, manifest, header)",
            "src/install.rs" | "src/partition.rs" => "install pipeline, slot writer",
            "src/store.rs" => "state record (store.rs, postcard)",
            "src/crc32.rs" => "CRC-32 (crc32.rs, crc32fast)",
            _ => "other core (device, config, base64, board)",
        };
    }
    if origin.starts_with("targets/") {
        return "firmware host (targets/cortex-m, cortex-m-rt)";
    }
    match krate {
        "miniz_oxide" | "adler2" => "inflate (miniz_oxide, artifact/inflate.rs)",
        "sha2" | "digest" | "block-buffer" | "block_buffer" | "crypto-common" => {
            "SHA-256 (sha2, digest)"
        }
        "p256" | "primeorder" | "elliptic-curve" | "elliptic_curve" | "crypto-bigint"
        | "crypto_bigint" | "ecdsa" | "primefield" | "ff" | "group" | "subtle" | "ctutils"
        | "wnaf" | "sec1" | "base16ct" | "rfc6979" | "hmac" | "signature" | "hybrid-array"
        | "hybrid_array" | "cmov" => "P-256 ECDSA (p256 and its RustCrypto deps)",
        "serde-json-core" | "serde_json_core" | "serde" | "serde_core" => {
            "JSON (artifact/json.rs, serde-json-core, serde)"
        }
        "postcard" | "cobs" => "state record (store.rs, postcard)",
        "crc32fast" => "CRC-32 (crc32.rs, crc32fast)",
        "heapless" | "hash32" => "heapless",
        "otalite" => "otalite (inlined, no line info)",
        "otalite_cortex_m" | "cortex-m-rt" | "cortex_m_rt" | "static_cell" | "embedded-io"
        | "embedded_io" | "portable-atomic" | "portable_atomic" | "Reset" | "DefaultHandler_"
        | "DefaultPreInit" | "HardFault_" | "__pre_init" | "DefaultHandler" | "HardFault"
        | "NonMaskableInt" | "MemoryManagement" | "BusFault" | "UsageFault" | "SVCall"
        | "DebugMonitor" | "PendSV" | "SysTick" | "main" => {
            "firmware host (targets/cortex-m, cortex-m-rt)"
        }
        "OUTLINED_FUNCTION" => "machine outliner (shared instruction runs)",
        k if k.starts_with("compiler")
            || k.starts_with("__aeabi_")
            || k.starts_with("__udiv")
            || k.starts_with("mem") =>
        {
            "compiler_builtins (mem*, 64-bit division, soft f64)"
        }
        "core" => {
            if origin.starts_with("library/core/src/fmt") {
                "core::fmt"
            } else if origin.starts_with("library/core/src/num/dec2flt")
                || origin.starts_with("library/core/src/num/flt2dec")
            {
                "core: float parsing and printing"
            } else {
                "core (other)"
            }
        }
        _ if origin.starts_with("(no symbol") => "alignment padding",
        _ => "other",
    }
}
