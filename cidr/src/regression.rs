//! Regression tests: one per bug, named after what they protect.

use crate::{RangeSet, cover, parse};

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| {
        parse(s)
            .map(|p| p.net)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
    }))
}

/// #10 item 26: a declared `::/0` is covered by itself with no extra address.
#[test]
fn cover_prefix_extra_is_exact_for_the_whole_ipv6_space() {
    let declared = set(&["::/0", "10.0.0.0/8"]);
    let c = cover(&declared, 2).unwrap_or_else(|e| panic!("{e}"));
    for p in &c.prefixes {
        assert_eq!(p.extra, 0, "{}", p.net);
    }
    assert!(c.is_exact());
}

/// #10 item 26: a cover that uses `::/0` for a smaller IPv6 set counts 2^128 - declared
/// extra addresses, not one fewer.
#[test]
fn cover_extra_is_exact_when_the_cover_is_the_whole_ipv6_space() {
    let declared = set(&["::/128", "8000::/128"]);
    let c = cover(&declared, 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.set, set(&["::/0"]));
    // 2^128 - 2 extra addresses.
    assert_eq!(c.extra.v6, u128::MAX - 1);
    assert_eq!(c.prefixes[0].extra, u128::MAX - 1);
    assert_eq!(c.extra_total(), u128::MAX - 1);
    assert_eq!(c.cost_key(), (0, u128::MAX - 1));
}

/// #10 item 8: 199 /32s plus `192.0.0.9` and `192.0.0.10` in 200 prefixes, for a target that
/// refuses non-global blocks: the plain optimum merges the pair into `192.0.0.8/30` (which
/// admits the non-global `.8` and `.11`); the cover under the target's rules merges another
/// pair instead.
#[test]
fn cover_stays_clear_of_blocks_the_target_refuses() {
    use crate::{CostModel, CoverRules, cover_within, non_global};
    let mut items: Vec<String> = (0..197)
        .map(|i| format!("{}.{}.7.1", 20 + i / 200, i % 200))
        .collect();
    items.push("8.8.4.1".into());
    items.push("8.8.4.6".into());
    items.push("192.0.0.9".into());
    items.push("192.0.0.10".into());
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    let declared = set(&refs);
    assert_eq!(declared.len(), 201);
    let plain = cover(&declared, 200).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        plain
            .set
            .contains_net(&parse("192.0.0.8/30").unwrap_or_else(|e| panic!("{e}")).net)
    );
    let rules = CoverRules {
        ipv6: false,
        allow_broad: false,
        avoid: non_global().clone(),
        ..CoverRules::default()
    };
    let c = cover_within(&declared, 200, CostModel::default(), &rules)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.set.len(), 200);
    assert!(c.set.is_superset(&declared));
    assert!(
        c.set
            .contains_net(&parse("8.8.4.0/29").unwrap_or_else(|e| panic!("{e}")).net)
    );
    assert_eq!(c.extra.v4, 6);
    for p in c.prefixes.iter().filter(|p| p.merged.len() > 1) {
        assert_eq!(crate::special_purpose(&p.net), None, "{}", p.net);
    }
}

/// #10 item 5: prefixes that contain the IPv4-mapped block admit every IPv4 client (the
/// parser already refuses prefixes inside it).
#[test]
fn prefixes_holding_the_ipv4_mapped_block_are_broad() {
    let net = |s: &str| parse(s).unwrap_or_else(|e| panic!("{e}")).net;
    for s in ["::/80", "::ffff:0:0/95", "::/64"] {
        assert!(crate::is_broad(&net(s)), "{s}");
    }
    assert!(!crate::is_broad(&net("::1:0:0:0/80")));
}

/// Found by fuzzing: a difference that cuts around the IPv4-mapped block (`::/80` minus
/// `::fffe:0:0/96`) left `::ffff:0:0/96` as a prefix of its own, which the strict parser
/// refuses, so a set could be written that could not be read back.
#[test]
fn a_difference_never_leaves_an_ipv4_mapped_prefix_unreported() {
    let cut = set(&["::/80"]).difference(&set(&["::fffe:0:0/96"]));
    let mapped_prefix = |s: &RangeSet| s.prefixes().iter().any(|p| parse(&p.to_string()).is_err());
    assert!(
        mapped_prefix(&cut),
        "the cut itself holds the mapped block as a prefix"
    );
    let rest = cut
        .without_mapped_pieces()
        .unwrap_or_else(|| panic!("the mapped piece must be reported"));
    assert!(!mapped_prefix(&rest));
    for p in rest.prefixes() {
        parse(&p.to_string()).unwrap_or_else(|e| panic!("{p}: {e}"));
    }
    // A set holding the whole block inside a wider prefix is fine as it is.
    assert!(set(&["::/80"]).without_mapped_pieces().is_none());
    assert!(
        set(&["::/0", "10.0.0.0/8"])
            .without_mapped_pieces()
            .is_none()
    );
    assert!(set(&["2001:db8::/32"]).without_mapped_pieces().is_none());
}
