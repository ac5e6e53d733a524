//! Integration tests of the aws-sg plugin: the provider against moto's EC2 behind a
//! fault-injecting proxy, and the plugin executable through the `rangekeeper` binary.
//!
//! One test binary for the whole crate (one link instead of one per file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod binary;
mod moto;
mod regression;
mod support;
