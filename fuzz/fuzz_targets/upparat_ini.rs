//! upparat's INI configuration parser never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::upparat_ini::UpparatConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(config) = UpparatConfig::parse(text, "host") {
            assert!(!config.broker.client_id.contains('\n'));
        }
    }
});
