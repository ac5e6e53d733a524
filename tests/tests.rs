//! Integration tests of the `rangekeeper` binary.
//!
//! One test binary for the whole crate (one link instead of one per file); each former
//! integration-test file is a module, `regression` holds one test per fixed bug.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "aks")]
mod aks;
mod cli;
mod common;
mod container;
mod discovery;
#[cfg(feature = "eks")]
mod eks;
mod external_ips;
#[cfg(feature = "gke")]
mod gke;
mod import;
mod install;
#[cfg(feature = "hostfw")]
mod krip;
#[cfg(feature = "kubernetes")]
mod kube_leases;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod layering;
#[cfg(feature = "kubernetes")]
mod leader;
mod leases;
mod markdown;
mod plugins;
mod reconcile;
mod regression;
