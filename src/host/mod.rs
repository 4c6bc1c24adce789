//! Linux adapters (the `std` feature): files and block devices as slots,
//! atomic files, the persisted state file, configuration and paths, active
<<<<<<< HEAD
//! slot detection, artifact sources (file, HTTP), state scripts, and the
//! device identity, inventory scripts and authentication key.

pub mod fs;
pub mod identity;
pub mod keys;
=======
//! slot detection, artifact sources (file, HTTP), the managed mode's HTTPS
//! client and state scripts.

pub mod fs;
pub mod http;
>>>>>>> transport
pub mod paths;
pub mod scripts;
pub mod slot;
pub mod source;
pub mod state;
