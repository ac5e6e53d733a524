//! Fuzz target `cover`: see [`rangekeeper_fuzz::cover`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::cover(data));
