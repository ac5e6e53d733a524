//! Fuzz target `declaration`: see [`rangekeeper_fuzz::declaration`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::declaration(data));
