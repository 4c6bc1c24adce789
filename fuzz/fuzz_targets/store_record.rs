//! The persisted state record decoder never panics, and what it accepts
//! re-encodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::store::{StateRecord, MAX_RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = StateRecord::decode(data) {
        let mut buffer = vec![0u8; MAX_RECORD_LEN];
        let encoded = record.encode(&mut buffer).expect("a decoded record fits");
        assert_eq!(StateRecord::decode(encoded).expect("re-decodes"), record);
    }
});
