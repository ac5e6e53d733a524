//! The Kubernetes providers against a real kube-apiserver and etcd
//! (`rangekeeper_test_support::kube::ControlPlane`), one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod calico;
mod conformance;
mod faults;
mod leases;
mod netpol;
mod regression;
