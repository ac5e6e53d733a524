//! Integration tests of the EKS provider: the SDK's mock layer, scripted answers on the wire,\ntimeouts, and moto's server.
//!
//! One test binary for the whole crate (one link instead of one per file); each former
//! integration-test file is a module, `regression` holds one test per fixed bug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_eks;
mod mock_updates;
mod moto;
mod regression;
mod timeouts;
mod wire;
