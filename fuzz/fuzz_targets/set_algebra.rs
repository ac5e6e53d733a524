//! Fuzz target `set_algebra`: see [`rangekeeper_fuzz::set_algebra`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::set_algebra(data));
