//! The `otalite` binary (being written).
fn main() {}
