//! The CIDR engine: strict parsing, canonical range sets and set algebra.
//!
//! PUBLIC API CONTRACT (other crates are written against these signatures; keep them):
//! - [`parse`]: one CIDR or bare address, strict, trimmed; host bits normalized and flagged.
//! - [`RangeSet`]: canonical set of IPv4+IPv6 addresses, compared by content, listed as the
//!   minimal sorted prefix list (IPv4 first).
//! - [`aggregate_lines`]: the streaming `normalize` path over one-CIDR-per-line text.
//! - [`special_purpose`]: why a prefix is not globally routable, if it is not.

use std::fmt;
use std::io::BufRead;
use std::net::IpAddr;

pub use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a CIDR string was rejected. `Display` names the input and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}`: {reason}")]
pub struct ParseError {
    /// The offending input as given (trimmed).
    pub input: String,
    /// What is wrong, and where possible what to write instead.
    pub reason: String,
}

/// A parsed CIDR: the network at its boundary, and whether the input had host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub net: IpNet,
    /// True when the input had host bits set (`137.117.106.90/29`); `net` is the boundary
    /// (`137.117.106.88/29`). Callers warn, or reject under `--strict`.
    pub host_bits: bool,
}

/// Parse one IPv4/IPv6 CIDR or bare address (bare -> /32 or /128), trimming whitespace.
/// Rejects: empty input, octet > 255, leading zeros in an IPv4 octet, prefix length out of
/// range or not plain decimal (`/33`, `/129`, `/024`, `/+24`), missing or extra parts, IPv6
/// zone ids, IPv4-mapped IPv6 (naming the IPv4 form to write instead), anything else.
pub fn parse(input: &str) -> Result<Parsed, ParseError> {
    let _ = input;
    todo!("cidr engine")
}

/// Address counts of a set, per family. `v6` saturates at `u128::MAX` (only `::/0` reaches it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct AddressCount {
    pub v4: u64,
    pub v6: u128,
}

/// A canonical set of IPv4 and IPv6 addresses. Equality is by content: two /25s equal their /24.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    _private: (),
}

impl RangeSet {
    pub fn new() -> Self {
        todo!("cidr engine")
    }
    /// Build from any prefixes (overlapping, unsorted, duplicated).
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let _ = nets;
        todo!("cidr engine")
    }
    pub fn insert(&mut self, net: IpNet) {
        let _ = net;
        todo!("cidr engine")
    }
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let _ = other;
        todo!("cidr engine")
    }
    /// Addresses in `self` but not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let _ = other;
        todo!("cidr engine")
    }
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let _ = other;
        todo!("cidr engine")
    }
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        let _ = addr;
        todo!("cidr engine")
    }
    /// Every address of `net` is in the set.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        let _ = net;
        todo!("cidr engine")
    }
    /// Every address of `other` is in `self`.
    pub fn is_superset(&self, other: &RangeSet) -> bool {
        let _ = other;
        todo!("cidr engine")
    }
    /// Some address of `net` is in the set.
    pub fn overlaps_net(&self, net: &IpNet) -> bool {
        let _ = net;
        todo!("cidr engine")
    }
    pub fn is_empty(&self) -> bool {
        todo!("cidr engine")
    }
    /// Number of prefixes in the canonical (minimal) list.
    pub fn len(&self) -> usize {
        todo!("cidr engine")
    }
    pub fn v4_len(&self) -> usize {
        todo!("cidr engine")
    }
    pub fn v6_len(&self) -> usize {
        todo!("cidr engine")
    }
    /// The minimal sorted prefix list: IPv4 before IPv6, numeric order.
    pub fn prefixes(&self) -> Vec<IpNet> {
        todo!("cidr engine")
    }
    pub fn address_count(&self) -> AddressCount {
        todo!("cidr engine")
    }
}

impl FromIterator<IpNet> for RangeSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        RangeSet::from_nets(iter)
    }
}

/// Comma-separated canonical prefixes.
impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = f;
        todo!("cidr engine")
    }
}

/// Serialized as the list of canonical prefix strings.
impl serde::Serialize for RangeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let _ = s;
        todo!("cidr engine")
    }
}

/// A host-bits warning from [`aggregate_lines`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBitsWarning {
    pub line: usize,
    pub input: String,
    pub net: IpNet,
}

/// The result of [`aggregate_lines`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregated {
    pub set: RangeSet,
    /// Number of CIDR entries read.
    pub entries: usize,
    pub host_bits: Vec<HostBitsWarning>,
}

/// An error in line-oriented input: the 1-based line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: {error}")]
    Parse { line: usize, error: ParseError },
    #[error("line {line}: {input} has host bits set (network boundary: {net}); strict mode rejects it")]
    HostBits { line: usize, input: String, net: IpNet },
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Read one CIDR per line (surrounding whitespace trimmed; blank lines, and everything from
/// `#` to the end of a line, skipped) and aggregate into a canonical set. Streaming and fast:
/// this is `rangekeeper normalize`. With `strict`, a host-bits entry is an error.
pub fn aggregate_lines<R: BufRead>(reader: R, strict: bool) -> Result<Aggregated, LineError> {
    let _ = (reader, strict);
    todo!("cidr engine")
}

/// If `net` overlaps a special-purpose block that is not globally routable (IANA IPv4/IPv6
/// special-purpose registries: private, shared address space, loopback, link-local,
/// documentation, multicast, reserved, benchmarking, unique-local, ...), the block and its
/// name, e.g. `("10.0.0.0/8", "private-use (RFC 1918)")`. `None` for globally routable.
pub fn special_purpose(net: &IpNet) -> Option<(IpNet, &'static str)> {
    let _ = net;
    todo!("cidr engine")
}
