//! otalite's Linux adapters around the `no_std` core ([`otalite`]): files
//! and block devices as slots, atomic files, the persisted state file,
//! configuration and paths, active slot detection, artifact sources (file,
//! standard input, HTTP and HTTPS), state scripts, the device identity,
//! inventory scripts and authentication key, and the HTTP/HTTPS client
//! (rustls with ring) with resuming downloads, and [`driver`], the one host
//! loop that runs the core's agent against all of them.
//!
//! The core stays free of these dependencies (TLS, device-key crypto,
//! randomness): a firmware supervisor links the core alone, a Linux agent
//! links this crate too.

// A std crate: `std::` paths are the natural ones here.
#![allow(clippy::std_instead_of_core, clippy::alloc_instead_of_core)]

#[cfg(feature = "dbus")]
pub mod dbus;
pub mod driver;
pub mod fs;
pub mod handoff;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod lmdb;
pub mod modules;
pub mod paths;
pub mod progress;
pub mod reboot;
pub mod scripts;
pub mod slot;
pub mod source;
pub mod state;
pub mod takeover;
pub mod time;
