//! device_type / artifact_info parsing and provides wildcards never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::device::{parse_artifact_info, parse_device_type, wildcard_match};

fuzz_target!(|data: &[u8]| {
    let _ = parse_device_type(data);
    let _ = parse_artifact_info(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((pattern, subject)) = text.split_once('\n') {
            let _ = wildcard_match(pattern, subject);
        }
    }
});
