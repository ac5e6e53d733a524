//! Special-purpose address blocks that are not globally reachable.
//!
//! Source: the IANA "IPv4 Special-Purpose Address Registry"
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry/>) and "IPv6 Special-Purpose
//! Address Registry" (<https://www.iana.org/assignments/iana-ipv6-special-registry/>), column
//! "Globally Reachable", plus the multicast blocks (224.0.0.0/4, RFC 5771; ff00::/8, RFC 4291),
//! which are not in those registries but can never be a client source address.
//!
//! The registries nest: `192.0.0.0/24` and `2001::/23` are "Globally Reachable: False" as a
//! whole, yet some of their sub-blocks are `True` (e.g. `192.0.0.9/32` PCP anycast,
//! `2001:3::/32` AMT, `2001:20::/28` ORCHIDv2) or `N/A` (`2001::/32` TEREDO, which the registry
//! does not mark as not-reachable). We are faithful to the most specific entry: a block blocks
//! only its addresses outside its reachable (or N/A) sub-blocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::set::RangeSet;

/// One registry entry.
struct Entry {
    net: IpNet,
    name: &'static str,
    /// The registry's "Globally Reachable" is `False`.
    blocking: bool,
}

const fn v4(a: [u8; 4], len: u8, name: &'static str, blocking: bool) -> Entry {
    Entry {
        net: IpNet::V4(Ipv4Net::new_assert(
            Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            len,
        )),
        name,
        blocking,
    }
}

const fn v6(a: [u16; 8], len: u8, name: &'static str, blocking: bool) -> Entry {
    Entry {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]),
            len,
        )),
        name,
        blocking,
    }
}

/// Registry entries. Blocking entries are listed more-specific first where they nest, so the
/// most precise name is reported.
const ENTRIES: &[Entry] = &[
    // ---- IPv4 ----
    v4([0, 0, 0, 0], 8, "this network (RFC 791)", true),
    v4([10, 0, 0, 0], 8, "private-use (RFC 1918)", true),
    v4([100, 64, 0, 0], 10, "shared address space (RFC 6598)", true),
    v4([127, 0, 0, 0], 8, "loopback (RFC 1122)", true),
    v4([169, 254, 0, 0], 16, "link-local (RFC 3927)", true),
    v4([172, 16, 0, 0], 12, "private-use (RFC 1918)", true),
    v4(
        [192, 0, 0, 0],
        29,
        "IPv4 service continuity prefix (RFC 7335)",
        true,
    ),
    v4([192, 0, 0, 8], 32, "IPv4 dummy address (RFC 7600)", true),
    v4(
        [192, 0, 0, 170],
        31,
        "NAT64/DNS64 discovery (RFC 8880)",
        true,
    ),
    v4(
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (RFC 6890)",
        true,
    ),
    v4([192, 0, 0, 9], 32, "PCP anycast (RFC 7723)", false),
    v4([192, 0, 0, 10], 32, "TURN anycast (RFC 8155)", false),
    v4(
        [192, 0, 2, 0],
        24,
        "documentation (TEST-NET-1, RFC 5737)",
        true,
    ),
    v4([192, 168, 0, 0], 16, "private-use (RFC 1918)", true),
    v4([198, 18, 0, 0], 15, "benchmarking (RFC 2544)", true),
    v4(
        [198, 51, 100, 0],
        24,
        "documentation (TEST-NET-2, RFC 5737)",
        true,
    ),
    v4(
        [203, 0, 113, 0],
        24,
        "documentation (TEST-NET-3, RFC 5737)",
        true,
    ),
    v4([224, 0, 0, 0], 4, "multicast (RFC 5771)", true),
    v4(
        [255, 255, 255, 255],
        32,
        "limited broadcast (RFC 919)",
        true,
    ),
    v4([240, 0, 0, 0], 4, "reserved (RFC 1112)", true),
    // ---- IPv6 ----
    v6([0; 8], 128, "unspecified address (RFC 4291)", true),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback (RFC 4291)", true),
    v6(
        [0, 0, 0, 0, 0, 0xffff, 0, 0],
        96,
        "IPv4-mapped (RFC 4291)",
        true,
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use IPv4/IPv6 translation (RFC 8215)",
        true,
    ),
    v6(
        [0x100, 0, 0, 0, 0, 0, 0, 0],
        64,
        "discard-only (RFC 6666)",
        true,
    ),
    v6(
        [0x100, 0, 0, 1, 0, 0, 0, 0],
        64,
        "dummy IPv6 prefix (RFC 9780)",
        true,
    ),
    v6(
        [0x2001, 2, 0, 0, 0, 0, 0, 0],
        48,
        "benchmarking (RFC 5180)",
        true,
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (RFC 3849)",
        true,
    ),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (RFC 2928)",
        true,
    ),
    // Sub-blocks of 2001::/23 that the registry marks globally reachable (or N/A: TEREDO).
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        32,
        "TEREDO (RFC 4380)",
        false,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 1],
        128,
        "PCP anycast (RFC 7723)",
        false,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 2],
        128,
        "TURN anycast (RFC 8155)",
        false,
    ),
    v6(
        [0x2001, 1, 0, 0, 0, 0, 0, 3],
        128,
        "DNS-SD SRP anycast (RFC 9665)",
        false,
    ),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT (RFC 7450)", false),
    v6(
        [0x2001, 4, 0x112, 0, 0, 0, 0, 0],
        48,
        "AS112-v6 (RFC 7535)",
        false,
    ),
    v6(
        [0x2001, 0x20, 0, 0, 0, 0, 0, 0],
        28,
        "ORCHIDv2 (RFC 7343)",
        false,
    ),
    v6(
        [0x2001, 0x30, 0, 0, 0, 0, 0, 0],
        28,
        "drone remote ID DETs (RFC 9374)",
        false,
    ),
    v6(
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation (RFC 9637)",
        true,
    ),
    v6(
        [0x5f00, 0, 0, 0, 0, 0, 0, 0],
        16,
        "SRv6 SIDs (RFC 9602)",
        true,
    ),
    v6(
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "unique-local (RFC 4193)",
        true,
    ),
    v6(
        [0xfe80, 0, 0, 0, 0, 0, 0, 0],
        10,
        "link-local unicast (RFC 4291)",
        true,
    ),
    v6(
        [0xff00, 0, 0, 0, 0, 0, 0, 0],
        8,
        "multicast (RFC 4291)",
        true,
    ),
];

/// Each blocking entry with the set of its addresses that are actually not reachable (the
/// block minus its reachable sub-blocks).
fn effective() -> &'static [(IpNet, &'static str, RangeSet)] {
    static CELL: OnceLock<Vec<(IpNet, &'static str, RangeSet)>> = OnceLock::new();
    CELL.get_or_init(|| {
        let reachable = RangeSet::from_nets(ENTRIES.iter().filter(|e| !e.blocking).map(|e| e.net));
        ENTRIES
            .iter()
            .filter(|e| e.blocking)
            .map(|e| {
                let block = RangeSet::from_nets([e.net]);
                (e.net, e.name, block.difference(&reachable))
            })
            .collect()
    })
}

/// Every address that is not globally reachable, as one set (the union of what
/// [`special_purpose`] reports on).
pub fn non_global() -> &'static RangeSet {
    static CELL: OnceLock<RangeSet> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut all = RangeSet::new();
        for (_, _, eff) in effective() {
            all = all.union(eff);
        }
        all
    })
}

/// If `net` overlaps a special-purpose block that is not globally routable (IANA IPv4/IPv6
/// special-purpose registries: private, shared address space, loopback, link-local,
/// documentation, multicast, reserved, benchmarking, unique-local, ...), the block and its
/// name, e.g. `("10.0.0.0/8", "private-use (RFC 1918)")`. `None` for globally routable.
pub fn special_purpose(net: &IpNet) -> Option<(IpNet, &'static str)> {
    let net = net.trunc();
    effective()
        .iter()
        .find(|(_, _, eff)| eff.overlaps_net(&net))
        .map(|(block, name, _)| (*block, *name))
}

/// Whether a single address is in a blocking special-purpose block.
pub fn special_purpose_addr(addr: IpAddr) -> Option<(IpNet, &'static str)> {
    special_purpose(&IpNet::from(addr))
}
