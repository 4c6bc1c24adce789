//! otalite core: a heap-free, streaming A/B update engine that installs
//! Mender Artifacts into the inactive root filesystem slot.
//!
//! The core is `#![no_std]`, allocates nothing (unless the `alloc` feature is
//! enabled for xz/zstd payloads) and forbids `unsafe`. Everything that touches
//! the outside world goes through small traits ([`board::BootEnv`],
//! [`board::BootControl`], [`board::Reboot`], [`partition::Partition`]); the
//! `std` feature adds the Linux adapters in [`host`].
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
// `std` is only brought in for the host adapters; core code never names it.
#[cfg(any(test, feature = "std"))]
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

// Host code is std-only by definition.
#[cfg(feature = "std")]
#[allow(clippy::std_instead_of_core)]
pub mod host;

#[cfg(any(test, feature = "_test"))]
pub mod mock;
