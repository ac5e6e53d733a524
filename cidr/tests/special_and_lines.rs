//! Special-purpose registry lookups and the line-oriented aggregation path.

use rangekeeper_cidr::{IpNet, LineError, RangeSet, aggregate_lines, special_purpose};

fn sp(s: &str) -> Option<(String, &'static str)> {
    let n: IpNet = s.parse().unwrap();
    special_purpose(&n).map(|(b, name)| (b.to_string(), name))
}

#[test]
fn special_purpose_blocks() {
    assert_eq!(
        sp("10.1.2.0/24"),
        Some(("10.0.0.0/8".into(), "private-use (RFC 1918)"))
    );
    assert_eq!(
        sp("203.0.113.7/32"),
        Some((
            "203.0.113.0/24".into(),
            "documentation (TEST-NET-3, RFC 5737)"
        ))
    );
    assert_eq!(sp("100.64.0.1/32").unwrap().0, "100.64.0.0/10");
    assert_eq!(sp("127.0.0.1/32").unwrap().0, "127.0.0.0/8");
    assert_eq!(sp("169.254.1.1/32").unwrap().0, "169.254.0.0/16");
    assert_eq!(sp("172.31.0.0/16").unwrap().0, "172.16.0.0/12");
    assert_eq!(sp("192.168.1.0/24").unwrap().0, "192.168.0.0/16");
    assert_eq!(sp("198.19.0.0/16").unwrap().0, "198.18.0.0/15");
    assert_eq!(sp("198.51.100.0/25").unwrap().0, "198.51.100.0/24");
    assert_eq!(sp("192.0.2.1/32").unwrap().0, "192.0.2.0/24");
    assert_eq!(sp("239.1.1.1/32").unwrap().0, "224.0.0.0/4");
    assert_eq!(sp("250.0.0.0/8").unwrap().0, "240.0.0.0/4");
    assert_eq!(sp("255.255.255.255/32").unwrap().0, "255.255.255.255/32");
    assert_eq!(sp("0.0.0.0/32").unwrap().0, "0.0.0.0/8");
    assert_eq!(sp("192.0.0.0/24").unwrap().0, "192.0.0.0/29");
    assert_eq!(sp("192.0.0.100/32").unwrap().0, "192.0.0.0/24");
    // Globally reachable sub-blocks of 192.0.0.0/24 (PCP and TURN anycast).
    assert_eq!(sp("192.0.0.9/32"), None);
    assert_eq!(
        sp("192.0.0.10/31"),
        Some((
            "192.0.0.0/24".into(),
            "IETF protocol assignments (RFC 6890)"
        ))
    );
    // A /0 is not entirely global.
    assert!(sp("0.0.0.0/0").is_some());
    assert!(sp("::/0").is_some());
    // Global space.
    for g in [
        "8.8.8.0/24",
        "1.1.1.1/32",
        "11.0.0.0/8",
        "100.128.0.0/9",
        "192.0.3.0/24",
        "2606:4700::/32",
        "2a00::/12",
    ] {
        assert_eq!(sp(g), None, "{g}");
    }
    // IPv6.
    assert_eq!(sp("::/128").unwrap().0, "::/128");
    assert_eq!(sp("::1/128").unwrap().0, "::1/128");
    assert_eq!(sp("::ffff:0:0/96").unwrap().0, "::ffff:0.0.0.0/96");
    assert_eq!(sp("64:ff9b:1::/64").unwrap().0, "64:ff9b:1::/48");
    assert_eq!(sp("64:ff9b::/96"), None);
    assert_eq!(sp("100::/64").unwrap().0, "100::/64");
    assert_eq!(sp("100:0:0:1::5/128").unwrap().0, "100:0:0:1::/64");
    assert_eq!(sp("100:0:0:2::/64"), None);
    assert_eq!(
        sp("2001:db8:1234::/48").unwrap().1,
        "documentation (RFC 3849)"
    );
    assert_eq!(sp("3fff:1::/32").unwrap().0, "3fff::/20");
    assert_eq!(sp("fd00::/8").unwrap().0, "fc00::/7");
    assert_eq!(sp("fe80::/64").unwrap().0, "fe80::/10");
    assert_eq!(sp("ff02::1/128").unwrap().0, "ff00::/8");
    assert_eq!(sp("5f00:1::/32").unwrap().0, "5f00::/16");
    assert_eq!(sp("2001:2::/48").unwrap().1, "benchmarking (RFC 5180)");
    assert_eq!(sp("2001:100::/24").unwrap().0, "2001::/23");
    // Reachable (or N/A) sub-blocks of 2001::/23: TEREDO, AMT, ORCHIDv2, anycasts.
    for g in [
        "2001::/32",
        "2001:3::/32",
        "2001:20::/28",
        "2001:1::1/128",
        "2001:4:112::/48",
    ] {
        assert_eq!(sp(g), None, "{g}");
    }
    // Mixing: a block containing a reachable sub-block and a non-reachable part is reported.
    assert_eq!(sp("2001::/31").unwrap().0, "2001::/23");
    assert_eq!(sp("2001:1::/126").unwrap().0, "2001::/23");
}

#[test]
fn aggregate_lines_basic() {
    let input = "\
# GitHub-ish list
10.0.0.0/25
10.0.0.128/25   # second half
\t
  192.0.2.9/24
2001:db8::/33
2001:db8:8000::/33
1.2.3.4
";
    let a = aggregate_lines(input.as_bytes(), false).unwrap();
    assert_eq!(a.entries, 6);
    assert_eq!(
        a.set.to_string(),
        "1.2.3.4/32, 10.0.0.0/24, 192.0.2.0/24, 2001:db8::/32"
    );
    assert_eq!(a.host_bits.len(), 1);
    assert_eq!(a.host_bits[0].line, 5);
    assert_eq!(a.host_bits[0].input, "192.0.2.9/24");
    assert_eq!(a.host_bits[0].net.to_string(), "192.0.2.0/24");
}

#[test]
fn aggregate_lines_errors() {
    match aggregate_lines("1.2.3.4\n\n010.0.0.1\n".as_bytes(), false) {
        Err(LineError::Parse { line, error }) => {
            assert_eq!(line, 3);
            assert_eq!(error.input, "010.0.0.1");
        }
        other => panic!("{other:?}"),
    }
    match aggregate_lines("1.2.3.4\r\n137.117.106.90/29\r\n".as_bytes(), true) {
        Err(e @ LineError::HostBits { .. }) => {
            assert_eq!(
                e.to_string(),
                "line 2: `137.117.106.90/29` has host bits set (strict mode rejects it: write `137.117.106.88/29`)"
            );
        }
        other => panic!("{other:?}"),
    }
    // No trailing newline, CRLF, comment-only lines.
    let a = aggregate_lines("# only\r\n1.2.3.4/32\r\n5.6.7.8".as_bytes(), true).unwrap();
    assert_eq!(a.set.to_string(), "1.2.3.4/32, 5.6.7.8/32");
    assert_eq!(a.entries, 2);
    let empty = aggregate_lines("".as_bytes(), true).unwrap();
    assert_eq!(empty.set, RangeSet::new());
    assert_eq!(empty.entries, 0);
}
