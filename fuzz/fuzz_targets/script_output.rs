//! Identity and inventory script output (`key=value` lines) never panics
//! the parser, and what parses can be merged into attributes and written
//! as auth and inventory bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otalite::protocol::keyvalue::{Attributes, KeyValueText};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = KeyValueText::new_checked(data) else { return };
    let texts = [text];
    let attributes = Attributes::new(&texts);
    let mut out = vec![0u8; 64 * 1024];
    let _ = otalite::protocol::auth::write_auth_request(&attributes, "KEY", "token", &mut out);
    let base = otalite::protocol::inventory::InventoryBase { device_type: "d", artifact_name: "a", client_version: "v" };
    let _ = otalite::protocol::inventory::write_inventory(&base, &attributes, &mut out);
});
