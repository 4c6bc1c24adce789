//! mender.conf parsing and merging never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::config::{MenderConfig, MAX_CONFIG_LEN};

fuzz_target!(|data: &[u8]| {
    let mut scratch = vec![0u8; MAX_CONFIG_LEN];
    if let Ok(config) = MenderConfig::parse(data, &mut scratch) {
        let _ = config.clone().merge(config);
    }
});
