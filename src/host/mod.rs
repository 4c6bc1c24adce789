//! Linux adapters (the `std` feature): files and block devices as slots,
//! atomic files, the persisted state file, configuration and paths, active
//! slot detection, artifact sources (file, HTTP), state scripts, the
//! device identity, inventory scripts and authentication key, and the
//! managed mode's HTTPS client.

pub mod fs;
pub mod http;
pub mod identity;
pub mod keys;
pub mod paths;
pub mod scripts;
pub mod slot;
pub mod source;
pub mod state;
