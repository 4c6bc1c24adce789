//! `otalite-cortex-m`: the otalite agent in Cortex-M4F firmware
//! (`thumbv7em-none-eabihf`), built to measure what the agent costs in flash
//! and RAM on a microcontroller (`cargo xtask size`).
//!
//! The firmware runs the managed-mode agent over static buffers, with an
//! ECDSA P-256 artifact key, the core's sans-IO HTTP/1.1 framing over a
//! socket, a flash slot and boot flags. The board's drivers (socket, flash,
//! clock, device-key signing) are stand-ins that hand the optimizer opaque
//! values (`core::hint::black_box`), so every path of the agent is kept and
//! nothing is folded away; the probe is linked, never flashed.
//!
//! On any other target the binary is a stub, so `cargo clippy --workspace`
//! and `cargo test --workspace` on the host pass over it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod board;
#[cfg(target_os = "none")]
mod firmware;
#[cfg(target_os = "none")]
mod transport;

/// The host build: nothing to run.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "otalite-cortex-m is firmware: build it with `cargo xtask size` (--target thumbv7em-none-eabihf)"
    );
}
