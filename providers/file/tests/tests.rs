//! Integration tests of the file provider.
//!
//! One test binary for the whole crate (one link instead of one per file); each former
//! integration-test file is a module, `regression` holds one test per fixed bug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod leases;
mod regression;
