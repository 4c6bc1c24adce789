//! Project automation: `cargo xtask ci | demo | bench | fuzz`.
fn main() {}
