//! Fuzz target `cidr_parse`: see [`rangekeeper_fuzz::cidr_parse`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::cidr_parse(data));
