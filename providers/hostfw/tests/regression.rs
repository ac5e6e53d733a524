//! Regression tests: one per fixed bug, each named after what it protects, each failing
//! before its fix.
