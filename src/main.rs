//! rangekeeper binary entry point.
fn main() {}
