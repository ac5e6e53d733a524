//! The CIDR engine: strict parsing, canonical range sets, set algebra, and the optimal
//! fit-to-limit cover.
//!
//! PUBLIC API CONTRACT (other crates are written against these signatures; keep them):
//! - [`parse`]: one CIDR or bare address, strict, trimmed; host bits normalized and flagged.
//! - [`RangeSet`]: canonical set of IPv4+IPv6 addresses, compared by content, listed as the
//!   minimal sorted prefix list (IPv4 first). [`RangeSet::write_lines`] prints that list fast
//!   (one prefix per line, byte-identical to `Display`); use it for large outputs.
//! - [`aggregate_lines`]: the streaming `normalize` path over one-CIDR-per-line text.
//! - [`special_purpose`]: why a prefix is not globally routable, if it is not.
//! - [`cover`]: the exact optimal cover of a set by at most K prefixes and what it costs
//!   ([`cover_with`] picks the cross-family [`CostModel`]; [`greedy_cover`] is the baseline
//!   it is measured against).

mod cover;
mod format;
mod lines;
mod parse;
#[cfg(test)]
mod regression;
mod set;
mod special;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use cover::{
    CostModel, Cover, CoverError, CoverPrefix, cover, cover_with, greedy_cover, greedy_cover_with,
};
pub use lines::{Aggregated, HostBitsWarning, LineError, aggregate_lines};
pub use parse::{ParseError, Parsed, parse};
pub use set::{AddressCount, RangeSet};
pub use special::{special_purpose, special_purpose_addr};
