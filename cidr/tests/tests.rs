//! Integration tests of `rangekeeper-cidr`: property tests against reference models, the cover\nagainst brute force, the special-purpose registry and the line path.
//!
//! One test binary for the whole crate (one link instead of one per file); each former
//! integration-test file is a module, `regression` holds one test per fixed bug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cover;
mod lines_props;
mod regression;
mod set_props;
mod special_and_lines;
