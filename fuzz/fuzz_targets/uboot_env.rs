//! fw_env.config and U-Boot env images (single and redundant) never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite_uboot::image::{parse_redundant, parse_single};
use otalite_uboot::parse_fw_env_config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_fw_env_config(text);
    }
    let _ = parse_single(data);
    let half = data.len() / 2;
    let _ = parse_redundant(&data[..half], &data[half..]);
});
