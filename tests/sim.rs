//! Deterministic simulation of the sans-IO update agent (`src/agent`):
//! a simulated device, bootloader, disk, state scripts, Mender server and
//! network around one `Agent`, driven step by step on a simulated clock.
//!
//! - `scenarios`: named flows with exact expectations;
//! - `power`: power cuts at every persisted step, boot-env write and many
//!   slot-write offsets, then recovery, with the invariants checked;
//! - `props`: random command / response / fault sequences against a small
//!   model of the expected outcome.
//!
//! `cargo test --release -p otalite --features _test --test sim -- --nocapture`
//! prints the counts.

#![allow(
    clippy::std_instead_of_core,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

#[path = "sim/handoff.rs"]
mod handoff;
#[path = "sim/harness.rs"]
mod harness;
#[path = "sim/jobs.rs"]
mod jobs;
#[path = "sim/mender_hooks.rs"]
mod mender_hooks;
#[path = "sim/power.rs"]
mod power;
#[path = "sim/props.rs"]
mod props;
#[path = "sim/regressions.rs"]
mod regressions;
#[path = "sim/scenarios.rs"]
mod scenarios;
