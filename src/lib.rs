//! otalite core: a heap-free, streaming A/B update engine that installs
//! Mender Artifacts into the inactive root filesystem slot.
//!
//! The core is `#![no_std]`, allocates nothing (unless the `alloc` feature is
//! enabled for xz/zstd payloads) and forbids `unsafe`. Everything that touches
//! the outside world goes through small traits ([`board::BootEnv`],
//! [`board::BootControl`], [`board::Reboot`], [`partition::Partition`]); the
//! Linux adapters are the separate `otalite-host` crate (`targets/host`).
//!
//! See README.md for the architecture invariants.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "alloc")]
extern crate alloc;
// Core code never names `std`; only the unit tests use it.
#[cfg(test)]
extern crate std;

#[macro_use]
mod fmt;

pub mod agent;
pub mod artifact;
pub mod board;
pub mod config;
pub mod crc32;
pub mod device;
pub mod install;
mod json;
pub mod partition;
pub mod protocol;
pub mod store;

#[cfg(any(test, feature = "_test"))]
pub mod mock;
