//! Fuzz target `kube_restrict_ip`: see [`rangekeeper_fuzz::kube_restrict_ip`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rangekeeper_fuzz::kube_restrict_ip(data));
