//! The exec provider against real plugin processes: the Python example plugin through the
//! conformance suite, and misbehaving plugins (scripts) for every fault the host must survive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod conformance;
mod faults;
mod regression;
