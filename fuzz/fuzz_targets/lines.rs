//! Fuzz target `lines`: see [`rangekeeper_fuzz::lines`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::lines(data));
