//! The CIDR engine: strict parsing, canonical range sets, set algebra, and the optimal
//! fit-to-limit cover.
//!
//! PUBLIC API CONTRACT (other crates are written against these signatures; keep them):
//! - [`parse`]: one CIDR or bare address, strict, trimmed; host bits normalized and flagged.
//! - [`RangeSet`]: canonical set of IPv4+IPv6 addresses, compared by content, listed as the
//!   minimal sorted prefix list (IPv4 first). [`RangeSet::write_lines`] prints that list fast
//!   (one prefix per line, byte-identical to `Display`); use it for large outputs.
//! - [`aggregate_lines`]: the streaming `normalize` path over one-CIDR-per-line text
//!   ([`aggregate_lines_tuned`] sets its block size and thresholds, for tests).
//! - [`special_purpose`]: why a prefix is not globally routable, if it is not; [`non_global`]
//!   all such addresses as one set.
//! - [`is_broad`]: whether a prefix is too wide to accept without being told.
//! - [`cover`]: the exact optimal cover of a set by at most K prefixes and what it costs
//!   ([`cover_with`] picks the cross-family [`CostModel`]; [`greedy_cover`] is the baseline
//!   it is measured against); [`cover_within`] finds the optimum under a target's
//!   [`CoverRules`] (families, blocks to avoid, broad prefixes).

mod broad;
mod cover;
mod format;
mod lines;
mod parse;
#[cfg(test)]
mod regression;
mod set;
mod special;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use broad::{BROADEST_V4, BROADEST_V6, is_broad};
pub use cover::{
    CostModel, Cover, CoverError, CoverPrefix, CoverRules, ExtraBound, cover, cover_with,
    cover_within, greedy_cover, greedy_cover_with,
};
pub use lines::{
    Aggregated, HostBitsWarning, LineError, LinesTuning, aggregate_lines, aggregate_lines_tuned,
};
pub use parse::{ParseError, ParseErrorKind, Parsed, host_bits_message, parse};
pub use set::{AddressCount, RangeSet};
pub use special::{non_global, special_purpose, special_purpose_addr};
