//! Address ranges read back from a firewall (`a-b` intervals) turned into CIDR prefixes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rangekeeper_provider::cidr::{IpNet, Ipv4Net, Ipv6Net};

/// The minimal list of prefixes that covers exactly `start..=end` (same family, start <= end).
pub fn range_to_prefixes(start: IpAddr, end: IpAddr) -> Option<Vec<IpNet>> {
    match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let (a, b) = (u128::from(u32::from(a)), u128::from(u32::from(b)));
            let mut out = Vec::new();
            for (base, len) in split(a, b, 32)? {
                let addr = Ipv4Addr::from(u32::try_from(base).ok()?);
                out.push(IpNet::V4(Ipv4Net::new(addr, len).ok()?));
            }
            Some(out)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mut out = Vec::new();
            for (base, len) in split(u128::from(a), u128::from(b), 128)? {
                out.push(IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base), len).ok()?));
            }
            Some(out)
        }
        _ => None,
    }
}

/// Split `[a, b]` in a `bits`-wide space into aligned blocks (base, prefix length).
fn split(mut a: u128, b: u128, bits: u8) -> Option<Vec<(u128, u8)>> {
    if a > b {
        return None;
    }
    let mut out = Vec::new();
    loop {
        // Largest block size 2^k aligned at `a` that stays within `b`.
        let mut k: u32 = if a == 0 {
            u32::from(bits)
        } else {
            a.trailing_zeros().min(u32::from(bits))
        };
        while k > 0 {
            let last = if k == 128 {
                u128::MAX
            } else {
                a + ((1u128 << k) - 1)
            };
            if last <= b {
                break;
            }
            k -= 1;
        }
        let len = bits - u8::try_from(k).ok()?;
        out.push((a, len));
        let last = if k == 128 {
            u128::MAX
        } else {
            a + ((1u128 << k) - 1)
        };
        if last >= b {
            break;
        }
        a = last + 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn splits_ranges_into_prefixes() {
        let r =
            |a: &str, b: &str| range_to_prefixes(a.parse().unwrap(), b.parse().unwrap()).unwrap();
        assert_eq!(r("10.0.0.0", "10.0.0.255"), vec![p("10.0.0.0/24")]);
        assert_eq!(r("10.0.0.1", "10.0.0.1"), vec![p("10.0.0.1/32")]);
        assert_eq!(
            r("10.0.0.1", "10.0.0.6"),
            vec![
                p("10.0.0.1/32"),
                p("10.0.0.2/31"),
                p("10.0.0.4/31"),
                p("10.0.0.6/32")
            ]
        );
        assert_eq!(r("0.0.0.0", "255.255.255.255"), vec![p("0.0.0.0/0")]);
        assert_eq!(
            r("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            vec![p("::/0")]
        );
        assert_eq!(
            r("2001:db8::", "2001:db8:0:1:ffff:ffff:ffff:ffff"),
            vec![p("2001:db8::/63")]
        );
        assert_eq!(
            r("255.255.255.254", "255.255.255.255"),
            vec![p("255.255.255.254/31")]
        );
        assert!(
            range_to_prefixes("10.0.0.2".parse().unwrap(), "10.0.0.1".parse().unwrap()).is_none()
        );
        assert!(range_to_prefixes("10.0.0.2".parse().unwrap(), "::1".parse().unwrap()).is_none());
    }
}
