//! Integration tests of the GKE provider.
//!
//! One test binary for the whole crate; each area is a module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod discover;
mod fake_gke;
