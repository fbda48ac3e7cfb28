//! The `pmip6` command.
fn main() {}
