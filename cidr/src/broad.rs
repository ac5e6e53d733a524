//! What counts as a *broad* prefix: one so wide that an allow-list holding it restricts
//! almost nothing, which targets accept only when told (`allowBroad`).

use ipnet::IpNet;

/// The widest IPv4 prefix length that is not broad.
pub const BROADEST_V4: u8 = 8;
/// The widest IPv6 prefix length that is not broad.
pub const BROADEST_V6: u8 = 32;

/// `::ffff:0:0/96`, the IPv4-mapped IPv6 addresses, as `(start, prefix length)`.
const MAPPED: (u128, u8) = (0xffff_0000_0000, 96);

/// Whether `net` is broad: an IPv4 prefix wider than /8, an IPv6 prefix wider than /32, or
/// an IPv6 prefix whose IPv4-mapped part (`::ffff:0:0/96`) is wider than a mapped /8.
/// Proxies and dual-stack sockets that match IPv4 clients as `::ffff:a.b.c.d` against IPv6
/// rules admit every IPv4 client through `::/80` or `::ffff:0:0/95`, which are "narrow" by
/// IPv6 standards, so the mapped part is judged as the IPv4 prefix it is.
pub fn is_broad(net: &IpNet) -> bool {
    match net {
        IpNet::V4(n) => n.prefix_len() < BROADEST_V4,
        IpNet::V6(n) => {
            let len = n.prefix_len();
            if len < BROADEST_V6 {
                return true;
            }
            let start = u128::from(n.network());
            let (m_start, m_len) = MAPPED;
            if len <= m_len {
                // Contains the whole mapped block when its first 96 bits match.
                let shift = 128 - u32::from(len);
                start.checked_shr(shift) == m_start.checked_shr(shift)
            } else {
                // Inside the mapped block: broad when wider than a mapped IPv4 /8.
                (start >> 32) == (m_start >> 32) && len < m_len + BROADEST_V4
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broad(s: &str) -> bool {
        is_broad(&s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn widths_and_the_mapped_block() {
        assert!(broad("0.0.0.0/0") && broad("10.0.0.0/7"));
        assert!(!broad("10.0.0.0/8"));
        assert!(broad("::/0") && broad("2001::/31"));
        assert!(!broad("2001:db8::/32"));
        for s in [
            "::/80",
            "::ffff:0:0/95",
            "::ffff:0:0/96",
            "::/64",
            "::ffff:0:0/103",
        ] {
            assert!(broad(s), "{s}");
        }
        for s in [
            "::ffff:0:0/104",
            "::ffff:10.0.0.0/104",
            "::/97",
            "::fffe:0:0/96",
            "::1/128",
        ] {
            assert!(!broad(s), "{s}");
        }
    }
}
