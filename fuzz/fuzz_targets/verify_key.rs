//! Key loading (PEM and DER) and signature checks never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::artifact::verify::VerifyKey;

fuzz_target!(|data: &[u8]| {
    let half = data.len() / 2;
    let (key, signature) = data.split_at(half);
    for loaded in [VerifyKey::from_pem(key), VerifyKey::from_spki_der(key)] {
        if let Ok(key) = loaded {
            let _ = key.verify_sha256(&[7u8; 32], signature);
        }
    }
});
