//! The reference store reader (`otalite_host::lmdb`, used when taking a
//! device over from mender) never panics or loops on any file, and what it
//! accepts is a sorted, bounded list of entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite_host::lmdb::{Lmdb, MAX_ENTRIES};

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Lmdb::from_bytes(data.to_vec()) {
        if let Ok(entries) = db.entries() {
            assert!(entries.len() <= MAX_ENTRIES);
            assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
            if let Some((key, value)) = entries.first() {
                assert_eq!(db.get(key).unwrap().as_ref(), Some(value));
            }
        }
    }
});
