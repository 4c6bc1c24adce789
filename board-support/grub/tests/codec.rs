//! The env block codec against the real `grub-editenv`.

mod common;

use std::fs;

use common::{editenv, has_editenv, list_raw};
use otalite_grub::block::{self, BlockError, Variable};

/// Output of `grub-editenv list` for these variables.
fn listing(vars: &[Variable]) -> Vec<u8> {
    let mut out = Vec::new();
    for var in vars {
        out.extend_from_slice(&var.name);
        out.push(b'=');
        out.extend_from_slice(&var.value);
        out.push(b'\n');
    }
    out
}

fn tricky() -> Vec<Variable> {
    vec![
        Variable::new("plain", "1"),
        Variable::new("spaces", "a value with  spaces "),
        Variable::new("equals", "x=y==z="),
        Variable::new("backslashes", "C:\\dir\\\\end\\"),
        Variable::new("newlines", "line1\nline2\n"),
        Variable::new("empty", ""),
        Variable::new("hashes", "#not a comment#"),
        Variable::new("mender_boot_part", "3"),
    ]
}

#[test]
fn reads_blocks_written_by_grub_editenv() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    let Some(_) = editenv(&file, &["create"]) else {
        return;
    };
    for var in tricky() {
        let arg = format!(
            "{}={}",
            String::from_utf8(var.name.clone()).unwrap(),
            String::from_utf8(var.value.clone()).unwrap()
        );
        editenv(&file, &["set", &arg]).unwrap();
    }
    // Edit in place, shrink, grow and delete, as grub-editenv does.
    editenv(&file, &["set", "plain=a much longer value than before"]).unwrap();
    editenv(&file, &["set", "spaces=s"]).unwrap();
    editenv(&file, &["unset", "empty"]).unwrap();
    let bytes = fs::read(&file).unwrap();
    assert_eq!(bytes.len(), block::DEFAULT_SIZE);

    let mut expected = tricky();
    block::set(
        &mut expected,
        b"plain",
        Some(b"a much longer value than before"),
    );
    block::set(&mut expected, b"spaces", Some(b"s"));
    block::set(&mut expected, b"empty", None);
    assert_eq!(block::parse(&bytes).unwrap(), expected);
    assert_eq!(block::parse_strict(&bytes).unwrap(), expected);
    assert_eq!(editenv(&file, &["list"]).unwrap(), listing(&expected));
    // Our editor reproduces grub-editenv's bytes (warning comment kept).
    assert!(block::edit(&bytes, &[]).unwrap() == bytes);
    editenv(&file, &["set", "plain=1", "new=n"]).unwrap();
    let edited = block::edit(&bytes, &[(b"plain", Some(b"1")), (b"new", Some(b"n"))]).unwrap();
    assert!(
        edited == fs::read(&file).unwrap(),
        "edit differs from grub-editenv set"
    );
}

#[test]
fn blocks_we_write_are_listed_by_grub_editenv() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    let vars = tricky();
    for size in [
        block::DEFAULT_SIZE,
        4096,
        block::encoded_len(&vars).unwrap(),
    ] {
        fs::write(&file, block::serialize(&vars, size).unwrap()).unwrap();
        let Some(listed) = editenv(&file, &["list"]) else {
            return;
        };
        assert_eq!(listed, listing(&vars), "size {size}");
        // grub-editenv can still edit what we wrote (its free-space check).
        if size > block::encoded_len(&vars).unwrap() {
            editenv(&file, &["set", "x=1"]).unwrap();
            let mut more = vars.clone();
            more.push(Variable::new("x", "1"));
            assert_eq!(block::parse(&fs::read(&file).unwrap()).unwrap(), more);
        }
    }
    assert_eq!(
        fs::read(&file).unwrap().len(),
        block::encoded_len(&vars).unwrap()
    );
}

#[test]
fn empty_block_equals_grub_editenv_create() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    let Some(_) = editenv(&file, &["create"]) else {
        return;
    };
    let created = fs::read(&file).unwrap();
    assert_eq!(created.len(), block::DEFAULT_SIZE);
    assert_eq!(block::parse_strict(&created).unwrap(), vec![]);
    assert!(
        block::parse_strict(&block::empty(block::DEFAULT_SIZE).unwrap())
            .unwrap()
            .is_empty()
    );
    editenv(&file, &["list"]).unwrap();
}

#[test]
fn full_block_is_an_error() {
    let big = "v".repeat(1000);
    let vars = vec![Variable::new("a", "1"), Variable::new("big", &big)];
    let err = block::serialize(&vars, block::DEFAULT_SIZE).unwrap_err();
    assert_eq!(
        err,
        BlockError::TooSmall {
            needed: block::SIGNATURE.len() + 4 + 1005,
            size: block::DEFAULT_SIZE
        }
    );
    assert!(err.to_string().contains("1024"));
    // grub-editenv refuses the same value.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    if editenv(&file, &["create"]).is_none() {
        return;
    }
    let status = std::process::Command::new("grub-editenv")
        .arg(&file)
        .arg("set")
        .arg(format!("big={big}"))
        .status()
        .unwrap();
    assert!(!status.success());
}

/// Small deterministic PRNG (xorshift), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes biased towards the block's special characters.
fn random_block(rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"#=\\\n\0ab ";
    let mut out = Vec::new();
    if rng.below(8) != 0 {
        out.extend_from_slice(block::SIGNATURE);
    }
    let len = rng.below(80);
    for _ in 0..len {
        out.push(if rng.below(6) == 0 {
            rng.next() as u8
        } else {
            ALPHABET[rng.below(ALPHABET.len())]
        });
    }
    if rng.below(4) == 0 {
        let pad = rng.below(40);
        out.extend(core::iter::repeat_n(b'#', pad));
    }
    out
}

#[test]
fn parser_never_panics_on_garbage() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let good = block::serialize(&tricky(), 256).unwrap();
    for round in 0..100_000 {
        let input = match round % 3 {
            0 => random_block(&mut rng),
            1 => good[..rng.below(good.len() + 1)].to_vec(),
            _ => {
                let mut flipped = good.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(flipped.len());
                    flipped[at] = rng.next() as u8;
                }
                flipped
            }
        };
        let lenient = block::parse(&input);
        let strict = block::parse_strict(&input);
        if let Ok(vars) = &strict {
            // Canonical blocks parse the same both ways and round-trip.
            assert_eq!(lenient.as_ref().ok(), Some(vars), "{input:?}");
            assert!(block::edit(&input, &[]).unwrap() == input, "{input:?}");
            let _ = block::edit(&input, &[(b"a", Some(b"\\\n")), (b"b", None)]);
        }
        if let Ok(vars) = lenient {
            // Whatever we parsed, we can serialise or reject cleanly.
            let _ = block::serialize(&vars, input.len());
            let _ = block::serialize(&vars, rng.below(2048));
        }
    }
}

/// Differential test: our GRUB-compatible parser prints exactly what
/// `grub-editenv list` prints, including for broken blocks.
#[test]
fn parser_agrees_with_grub_editenv_on_garbage() {
    if !has_editenv() {
        eprintln!("SKIP: grub-editenv is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("grubenv");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut compared = 0;
    for _ in 0..400 {
        let input = random_block(&mut rng);
        fs::write(&file, &input).unwrap();
        let (ok, stdout) = list_raw(&file).unwrap();
        match block::parse(&input) {
            Ok(vars) => {
                assert!(ok, "grub-editenv rejected {input:?}");
                assert_eq!(stdout, listing(&vars), "{input:?}");
                compared += 1;
            }
            Err(_) => assert!(!ok, "grub-editenv accepted {input:?}"),
        }
    }
    assert!(compared > 200, "only {compared} valid blocks compared");
}
