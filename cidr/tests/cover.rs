//! The optimal cover: brute-force optimality on small inputs, invariants on random inputs,
//! and the comparison with the greedy baseline on the GitHub Actions list.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rangekeeper_cidr::{
    CostModel, Cover, CoverError, CoverRules, ExtraBound, IpNet, Ipv4Net, Ipv6Net, RangeSet,
    aggregate_lines, cover, cover_with, cover_within, greedy_cover, greedy_cover_with, is_broad,
};

/// The total cost under a model, as an exactly comparable pair (written independently of
/// the library: Ipv6Per64 is `e4 + e6 / 2^64` as (integer part, fraction in 2^-64 units)).
fn key(model: CostModel, e4: u128, e6: u128) -> (u128, u128) {
    match model {
        CostModel::Addresses => {
            let (sum, carry) = e4.overflowing_add(e6);
            (u128::from(carry), sum)
        }
        CostModel::Ipv6Per64 => (e4 + (e6 >> 64), e6 & u128::from(u64::MAX)),
    }
}

fn cover_key(c: &Cover) -> (u128, u128) {
    key(c.model, u128::from(c.extra.v4), c.extra.v6)
}

/// (start, len) in a family of `bits` bits, as u128.
type P = (u128, u32);

fn mask(bits: u32, len: u32) -> u128 {
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    full.checked_shr(len).unwrap_or(0)
}

/// Naive union size of prefixes (sort, merge, sum).
fn union_count(bits: u32, ps: &[P]) -> u128 {
    let mut iv: Vec<(u128, u128)> = ps.iter().map(|&(a, l)| (a, a | mask(bits, l))).collect();
    iv.sort();
    let mut total = 0u128;
    let mut cur: Option<(u128, u128)> = None;
    for (a, b) in iv {
        match cur {
            Some((ca, cb)) if a <= cb => cur = Some((ca, cb.max(b))),
            Some((ca, cb)) => {
                total += cb - ca + 1;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    if let Some((ca, cb)) = cur {
        total += cb - ca + 1;
    }
    total
}

/// Brute force for one family: over every split of the sorted leaves into contiguous groups,
/// each group covered by its smallest enclosing prefix, the minimum extra for each number of
/// groups, made "at most j". Index j in 0..=n (j = 0 only for an empty family).
fn brute_family(bits: u32, leaves: &[P]) -> Vec<u128> {
    brute_family_within(bits, leaves, &|_, _| true)
}

/// [`brute_family`] over the partitions whose merged groups' prefixes are `allowed`
/// (a group of one declared prefix is always allowed).
fn brute_family_within(bits: u32, leaves: &[P], allowed: &dyn Fn(u128, u32) -> bool) -> Vec<u128> {
    let n = leaves.len();
    if n == 0 {
        return vec![0];
    }
    let declared = union_count(bits, leaves);
    let mut best = vec![u128::MAX; n + 1];
    for cuts in 0u32..(1 << (n - 1)) {
        let mut groups: Vec<P> = Vec::new();
        let mut first = 0;
        let mut valid = true;
        for i in 0..n {
            let last_of_group = i == n - 1 || cuts & (1 << i) != 0;
            if last_of_group {
                let a = leaves[first].0;
                let b = leaves[i].0 | mask(bits, leaves[i].1);
                let mut len = 0;
                while len < bits && (a ^ b) >> (bits - 1 - len) & 1 == 0 {
                    len += 1;
                }
                let start = a & !mask(bits, len);
                if i > first && !allowed(start, len) {
                    valid = false;
                }
                groups.push((start, len));
                first = i + 1;
            }
        }
        if !valid {
            continue;
        }
        let extra = union_count(bits, &groups) - declared;
        let g = groups.len();
        best[g] = best[g].min(extra);
    }
    for j in 1..=n {
        best[j] = best[j].min(best[j - 1]);
    }
    best
}

fn leaves_of(set: &RangeSet) -> (Vec<P>, Vec<P>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in set.prefixes() {
        match n {
            IpNet::V4(n) => v4.push((
                u128::from(u32::from(n.network())),
                u32::from(n.prefix_len()),
            )),
            IpNet::V6(n) => v6.push((u128::from(n.network()), u32::from(n.prefix_len()))),
        }
    }
    (v4, v6)
}

fn brute(set: &RangeSet, k: usize, model: CostModel) -> Option<(u128, u128)> {
    let (l4, l6) = leaves_of(set);
    let (b4, b6) = (brute_family(32, &l4), brute_family(128, &l6));
    let mut best: Option<(u128, u128)> = None;
    for (j4, &c4) in b4.iter().enumerate() {
        for (j6, &c6) in b6.iter().enumerate() {
            if j4 + j6 <= k && c4 != u128::MAX && c6 != u128::MAX {
                let c = key(model, c4, c6);
                best = Some(best.map_or(c, |b| b.min(c)));
            }
        }
    }
    best
}

/// The brute-force optimum under `rules`: the broad test is the library's (tested on its
/// own); what to avoid is checked on plain intervals.
fn brute_within(
    set: &RangeSet,
    k: usize,
    model: CostModel,
    rules: &CoverRules,
) -> Option<(u128, u128)> {
    let (l4, l6) = leaves_of(set);
    if (!rules.ipv4 && !l4.is_empty()) || (!rules.ipv6 && !l6.is_empty()) {
        return None;
    }
    let avoid = rules.avoid.difference(set);
    let av4: Vec<(u128, u128)> = avoid
        .v4_intervals()
        .iter()
        .map(|&(a, b)| (u128::from(a), u128::from(b)))
        .collect();
    let av6: Vec<(u128, u128)> = avoid.v6_intervals().to_vec();
    let allowed = |bits: u32, av: &[(u128, u128)], start: u128, len: u32| {
        let end = start | mask(bits, len);
        let net = if bits == 32 {
            v4net(start as u32, (32 - len) as u8)
        } else {
            v6net(start, (128 - len) as u8)
        };
        (rules.allow_broad || !is_broad(&net)) && !av.iter().any(|&(a, b)| a <= end && start <= b)
    };
    let b4 = brute_family_within(32, &l4, &|a, l| allowed(32, &av4, a, l));
    let b6 = brute_family_within(128, &l6, &|a, l| allowed(128, &av6, a, l));
    let dc = set.address_count();
    let mut best: Option<(u128, u128)> = None;
    for (j4, &c4) in b4.iter().enumerate() {
        for (j6, &c6) in b6.iter().enumerate() {
            if j4 + j6 > k || c4 == u128::MAX || c6 == u128::MAX {
                continue;
            }
            if let Some(bound) = rules.max_extra
                && !(bound.admits(c4, u128::from(dc.v4)) && bound.admits(c6, dc.v6))
            {
                continue;
            }
            let c = key(model, c4, c6);
            best = Some(best.map_or(c, |b| b.min(c)));
        }
    }
    best
}

/// Every invariant a cover must satisfy, checked independently of how it was computed.
fn check_cover(set: &RangeSet, k: usize, c: &Cover) {
    assert!(c.set.is_superset(set), "covers every declared address");
    assert!(c.set.len() <= k, "{} prefixes > k = {k}", c.set.len());
    let listed: Vec<IpNet> = c.prefixes.iter().map(|p| p.net).collect();
    assert_eq!(
        listed,
        c.set.prefixes(),
        "prefix list is the canonical list"
    );
    assert_eq!(RangeSet::from_nets(listed.iter().copied()), c.set);
    let dc = set.address_count();
    let cc = c.set.address_count();
    assert_eq!(c.declared, dc);
    assert_eq!(c.extra.v4, cc.v4 - dc.v4, "extra v4 exact");
    // Sizes counted naively as (end - start) + 1 per interval, without the library's counts
    // (the cover may be `::/0`, 2^128 addresses, one more than a u128 holds).
    let naive = |iv: &[(u128, u128)]| iv.iter().map(|&(a, b)| b - a + 1).sum::<u128>();
    let extra6 = c.set.difference(set);
    assert_eq!(c.extra.v6, naive(extra6.v6_intervals()), "extra v6 exact");
    // Each cover prefix lists exactly the declared canonical prefixes inside it.
    let mut all_merged = Vec::new();
    for p in &c.prefixes {
        let inside = set.intersection(&RangeSet::from_nets([p.net]));
        assert_eq!(p.merged, inside.prefixes(), "merged list of {}", p.net);
        // |net| - |inside|, computed as (|net| - 1) - (|inside| - 1) so ::/0 fits.
        let size_m1 = match p.net {
            IpNet::V4(n) => mask(32, u32::from(n.prefix_len())),
            IpNet::V6(n) => mask(128, u32::from(n.prefix_len())),
        };
        // |inside| - 1, exact even for ::/0: the sum of (end - start) plus one per extra interval.
        let ins_m1 = inside
            .v4_intervals()
            .iter()
            .map(|&(a, b)| u128::from(b - a))
            .chain(inside.v6_intervals().iter().map(|&(a, b)| b - a))
            .fold(None, |acc: Option<u128>, d| {
                Some(acc.map_or(d, |t| t + d + 1))
            })
            .unwrap();
        assert_eq!(p.extra, size_m1 - ins_m1);
        all_merged.extend(p.merged.iter().copied());
    }
    assert_eq!(
        all_merged,
        set.prefixes(),
        "every declared prefix merged exactly once"
    );
    let w4 = c.prefixes.iter().filter_map(|p| match p.net {
        IpNet::V4(n) => Some(n.prefix_len()),
        IpNet::V6(_) => None,
    });
    assert_eq!(c.widest_v4.map(|n| n.prefix_len()), w4.min());
    let w6 = c.prefixes.iter().filter_map(|p| match p.net {
        IpNet::V6(n) => Some(n.prefix_len()),
        IpNet::V4(_) => None,
    });
    assert_eq!(c.widest_v6.map(|n| n.prefix_len()), w6.min());
}

fn v4net(a: u32, host: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), 32 - host).unwrap().trunc())
}

fn v6net(a: u128, host: u8) -> IpNet {
    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), 128 - host).unwrap().trunc())
}

/// Small random sets: IPv4 inside one /16 and IPv6 inside one /96, so extra counts of the
/// two families are comparable and the shared budget matters.
fn small_set() -> impl Strategy<Value = RangeSet> {
    (
        any::<u32>(),
        any::<u128>(),
        prop::collection::vec((any::<u16>(), 0u8..=12), 0..7),
        prop::collection::vec((any::<u32>(), 0u8..=24), 0..7),
    )
        .prop_map(|(b4, b6, s4, s6)| {
            let b4 = b4 & !0xffff;
            let b6 = b6 & !0xffff_ffff;
            RangeSet::from_nets(
                s4.iter()
                    .map(|&(o, h)| v4net(b4 | u32::from(o), h))
                    .chain(s6.iter().map(|&(o, h)| v6net(b6 | u128::from(o), h))),
            )
        })
}

/// Small random sets where the rules bite: IPv4 inside one /5 (merges reach broad /7s),
/// IPv6 inside `::ffff:0:0/96` or one /28 (merges reach broad mapped or /31 prefixes), and
/// blocks to avoid nearby.
fn ruled_case() -> impl Strategy<Value = (RangeSet, CoverRules)> {
    (
        any::<u32>(),
        prop::bool::ANY,
        any::<u128>(),
        prop::collection::vec((any::<u32>(), 0u8..=24), 0..6),
        prop::collection::vec((any::<u128>(), 0u8..=100), 0..5),
        prop::collection::vec((any::<u32>(), 0u8..=26), 0..4),
        prop::collection::vec((any::<u128>(), 0u8..=100), 0..3),
        (prop::bool::ANY, prop::bool::ANY, prop::bool::ANY),
        prop::option::of(prop_oneof![
            (0u128..4096).prop_map(ExtraBound::Addresses),
            (0u32..40).prop_map(|m| ExtraBound::Multiple(f64::from(m) / 4.0)),
        ]),
    )
        .prop_map(
            |(b4, mapped, b6, s4, s6, a4, a6, (ipv4, ipv6, allow_broad), max_extra)| {
                let b4 = b4 & !0x07ff_ffff;
                let (b6, m6) = if mapped {
                    (0xffff_0000_0000u128, 0xffff_ffffu128)
                } else {
                    (b6 & !((1u128 << 100) - 1), (1u128 << 100) - 1)
                };
                let n4 = |&(o, h): &(u32, u8)| v4net(b4 | (o & 0x07ff_ffff), h);
                let n6 = |&(o, h): &(u128, u8)| {
                    v6net(b6 | (o & m6), h.min(if mapped { 32 } else { 100 }))
                };
                let set = RangeSet::from_nets(s4.iter().map(n4).chain(s6.iter().map(n6)));
                let avoid = RangeSet::from_nets(a4.iter().map(n4).chain(a6.iter().map(n6)));
                let rules = CoverRules {
                    ipv4: ipv4 || set.v4_len() > 0,
                    ipv6: ipv6 || set.v6_len() > 0,
                    allow_broad,
                    avoid,
                    max_extra,
                };
                (set, rules)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn optimal_under_rules_matches_brute_force((set, rules) in ruled_case()) {
        let n = set.len();
        for model in [CostModel::Ipv6Per64, CostModel::Addresses] {
            for k in 0..=n + 1 {
                let b = brute_within(&set, k, model, &rules);
                match cover_within(&set, k, model, &rules) {
                    Ok(c) => {
                        check_cover(&set, k, &c);
                        prop_assert_eq!(Some(cover_key(&c)), b, "k = {}, {:?}", k, model);
                        // No prefix of the cover admits an avoided address. (Broadness is a
                        // rule on each merged prefix; two adjacent allowed prefixes can still
                        // aggregate into a broad one, which the target's guard then refuses.)
                        let avoid = rules.avoid.difference(&set);
                        for p in &c.prefixes {
                            prop_assert!(!avoid.overlaps_net(&p.net), "{} admits an avoided block", p.net);
                        }
                    }
                    Err(e) => prop_assert!(b.is_none(), "k = {}, {:?}: {} but brute force found {:?}", k, model, e, b),
                }
            }
        }
    }

    #[test]
    fn optimal_matches_brute_force(set in small_set()) {
        let n = set.len();
        let families = usize::from(set.v4_len() > 0) + usize::from(set.v6_len() > 0);
        for model in [CostModel::Ipv6Per64, CostModel::Addresses] {
            for k in 0..=n + 1 {
                match cover_with(&set, k, model) {
                    Ok(c) => {
                        check_cover(&set, k, &c);
                        let b = brute(&set, k, model).expect("feasible");
                        prop_assert_eq!(cover_key(&c), b, "k = {}, {:?}", k, model);
                        let g = greedy_cover_with(&set, k, model).unwrap();
                        check_cover(&set, k, &g);
                        prop_assert!(cover_key(&g) >= cover_key(&c));
                        if k >= n {
                            prop_assert!(c.is_exact());
                            prop_assert_eq!(&c.set, &set);
                        }
                    }
                    Err(e) => {
                        prop_assert!(k < families, "k = {} failed: {}", k, e);
                        prop_assert!(brute(&set, k, model).is_none());
                    }
                }
            }
        }
    }

    #[test]
    fn invariants_on_wide_random_sets(
        s4 in prop::collection::vec((any::<u32>(), 0u8..=32), 0..60),
        s6 in prop::collection::vec((any::<u128>(), 0u8..=128), 0..30),
        k in 2usize..40,
    ) {
        let set = RangeSet::from_nets(
            s4.iter().map(|&(a, h)| v4net(a, h.min(32)))
                .chain(s6.iter().map(|&(a, h)| v6net(a, h))),
        );
        for model in [CostModel::Ipv6Per64, CostModel::Addresses] {
            let c = cover_with(&set, k, model).unwrap();
            check_cover(&set, k, &c);
            let g = greedy_cover_with(&set, k, model).unwrap();
            check_cover(&set, k, &g);
            prop_assert!(cover_key(&c) <= cover_key(&g));
            // More budget never costs more.
            let c2 = cover_with(&set, k + 1, model).unwrap();
            prop_assert!(cover_key(&c2) <= cover_key(&c));
        }
    }
}

#[test]
fn budget_errors_and_trivial_cases() {
    let both = RangeSet::from_nets([
        "1.2.3.4/32".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ]);
    assert_eq!(cover(&both, 0), Err(CoverError::ZeroBudget { prefixes: 2 }));
    assert_eq!(cover(&both, 1), Err(CoverError::BothFamilies { k: 1 }));
    let c = cover(&both, 2).unwrap();
    assert!(c.is_exact());
    assert_eq!(c.extra_multiple, 0.0);
    let empty = cover(&RangeSet::new(), 0).unwrap();
    assert!(empty.set.is_empty() && empty.prefixes.is_empty());
    // Two /24s four apart: one prefix costs the /21 around them.
    let s = RangeSet::from_nets([
        "10.0.0.0/24".parse().unwrap(),
        "10.0.4.0/24".parse().unwrap(),
    ]);
    let c = cover(&s, 1).unwrap();
    assert_eq!(c.set.to_string(), "10.0.0.0/21");
    assert_eq!(c.extra.v4, 2048 - 512);
    assert_eq!(c.extra_multiple_v4, Some(3.0));
    assert_eq!(c.prefixes[0].merged.len(), 2);
    assert_eq!(c.widest().unwrap().to_string(), "10.0.0.0/21");
}

#[test]
fn cost_models_share_the_budget_differently() {
    // Two IPv4 hosts 2^24 apart and two IPv6 /64s 2 apart; 3 prefixes allowed.
    let s = RangeSet::from_nets([
        "1.0.0.1/32".parse().unwrap(),
        "1.255.0.1/32".parse().unwrap(),
        "2001:db8:0:1::/64".parse().unwrap(),
        "2001:db8:0:3::/64".parse().unwrap(),
    ]);
    // Per /64: merging the IPv6 pair costs 2 units (two /64s), the IPv4 pair 2^24 - 2.
    let c = cover(&s, 3).unwrap();
    assert_eq!(c.model, CostModel::Ipv6Per64);
    assert_eq!(c.set.to_string(), "1.0.0.1/32, 1.255.0.1/32, 2001:db8::/62");
    assert_eq!(c.extra.v4, 0);
    assert_eq!(c.extra.v6, 2 << 64);
    // Literal addresses: the IPv6 merge admits 2^65 addresses, so IPv4 is merged instead.
    let c = cover_with(&s, 3, CostModel::Addresses).unwrap();
    assert_eq!(
        c.set.to_string(),
        "1.0.0.0/8, 2001:db8:0:1::/64, 2001:db8:0:3::/64"
    );
    assert_eq!(c.extra.v6, 0);
    assert_eq!(c.extra.v4, (1 << 24) - 2);
}

fn github_actions() -> RangeSet {
    let text = include_str!("data/github-actions.txt");
    aggregate_lines(text.as_bytes(), false).unwrap().set
}

#[test]
fn github_actions_optimum_beats_greedy() {
    let set = github_actions();
    // The figures documented with the data snapshot.
    assert_eq!(set.v4_len(), 3944);
    assert_eq!(set.v6_len(), 1458);
    for model in [CostModel::Ipv6Per64, CostModel::Addresses] {
        for k in [40usize, 50, 200] {
            let opt = cover_with(&set, k, model).unwrap();
            let greedy = greedy_cover_with(&set, k, model).unwrap();
            check_cover(&set, k, &opt);
            check_cover(&set, k, &greedy);
            assert!(cover_key(&opt) <= cover_key(&greedy));
            let cost = |c: &Cover| match model {
                CostModel::Addresses => c.extra_total() as f64,
                CostModel::Ipv6Per64 => c.extra.v4 as f64 + c.extra.v6 as f64 / 2f64.powi(64),
            };
            let ratio = cost(&greedy) / cost(&opt);
            eprintln!(
                "{model:?} K={k}: optimum {} + {} prefixes, extra v4={} v6={:.3e} (v4 x{:.3}, v6 x{:.3} declared), widest {:?}; greedy extra v4={} v6={:.3e}; greedy/optimum cost = {ratio:.3}",
                opt.set.v4_len(),
                opt.set.v6_len(),
                opt.extra.v4,
                opt.extra.v6 as f64,
                opt.extra_multiple_v4.unwrap_or(0.0),
                opt.extra_multiple_v6.unwrap_or(0.0),
                opt.widest().map(|n| n.to_string()),
                greedy.extra.v4,
                greedy.extra.v6 as f64,
            );
            assert!(ratio >= 1.0);
        }
    }
    // Per family, the same comparison.
    let v4: RangeSet = set
        .prefixes()
        .into_iter()
        .filter(|n| matches!(n, IpNet::V4(_)))
        .collect();
    let v6 = set.difference(&v4);
    for (name, s) in [("IPv4 only", &v4), ("IPv6 only", &v6)] {
        for k in [40usize, 50, 200] {
            let (o, g) = (cover(s, k).unwrap(), greedy_cover(s, k).unwrap());
            assert!(o.extra_total() <= g.extra_total());
            eprintln!(
                "{name} K={k}: optimum extra {:.4e}, greedy {:.4e}, greedy/optimum = {:.3}",
                o.extra_total() as f64,
                g.extra_total() as f64,
                g.extra_total() as f64 / o.extra_total() as f64
            );
        }
    }
}
