//! Property tests of the range-set algebra against simple reference models: a `BTreeSet` of
//! addresses over small sub-spaces (at the bottom, middle and top of each family), and a
//! critical-point sweep for arbitrary (wide) prefixes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rangekeeper_cidr::{IpNet, Ipv4Net, Ipv6Net, RangeSet};

const V4_BASES: [u32; 3] = [0, 0x0a00_0000, 0xffff_ff00];
const V6_BASES: [u128; 3] = [0, 0x2001_0db8 << 96, u128::MAX - 255];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    v4: BTreeSet<u32>,
    v6: BTreeSet<u128>,
}

#[derive(Debug, Clone, Copy)]
struct Space {
    b4: u32,
    b6: u128,
}

/// (is_v6, offset within the 256-address sub-space, host length 0..=8)
type Spec = (bool, u8, u8);

fn net_of(space: Space, (v6, off, host): Spec) -> IpNet {
    if v6 {
        let a = space.b6 + u128::from(off);
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), 128 - host).unwrap().trunc())
    } else {
        let a = space.b4 + u32::from(off);
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), 32 - host).unwrap().trunc())
    }
}

fn model_of(nets: &[IpNet]) -> Model {
    let mut m = Model::default();
    for n in nets {
        match n {
            IpNet::V4(n) => {
                for a in u32::from(n.network())..=u32::from(n.broadcast()) {
                    m.v4.insert(a);
                }
            }
            IpNet::V6(n) => {
                for a in u128::from(n.network())..=u128::from(n.broadcast()) {
                    m.v6.insert(a);
                }
            }
        }
    }
    m
}

fn model_of_set(s: &RangeSet) -> Model {
    model_of(&s.prefixes())
}

fn net_in_model(m: &Model, n: &IpNet) -> (usize, usize) {
    // (addresses of n in m, addresses of n)
    match n {
        IpNet::V4(n) => {
            let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
            (m.v4.range(a..=b).count(), (b - a) as usize + 1)
        }
        IpNet::V6(n) => {
            let (a, b) = (u128::from(n.network()), u128::from(n.broadcast()));
            (m.v6.range(a..=b).count(), (b - a) as usize + 1)
        }
    }
}

/// The minimal prefix list: sorted (IPv4 first), disjoint, every prefix maximal in the set
/// (its parent is not entirely inside), and covering exactly the model's addresses.
fn check_canonical(s: &RangeSet, m: &Model) {
    let p = s.prefixes();
    assert_eq!(model_of(&p), *m, "prefix list covers exactly the addresses");
    let total: usize = p.iter().map(|n| net_in_model(m, n).1).sum();
    assert_eq!(total, m.v4.len() + m.v6.len(), "prefixes are disjoint");
    for w in p.windows(2) {
        let ord = match (w[0], w[1]) {
            (IpNet::V4(a), IpNet::V4(b)) => a.broadcast() < b.network(),
            (IpNet::V6(a), IpNet::V6(b)) => a.broadcast() < b.network(),
            (IpNet::V4(_), IpNet::V6(_)) => true,
            (IpNet::V6(_), IpNet::V4(_)) => false,
        };
        assert!(ord, "sorted and disjoint: {} then {}", w[0], w[1]);
    }
    for n in &p {
        if let Some(parent) = n.supernet() {
            let (inside, size) = net_in_model(m, &parent);
            assert!(inside < size, "{n} could merge into {parent}");
        }
        assert_eq!(n.trunc(), *n, "prefix at its boundary");
    }
    assert_eq!(s.len(), p.len());
    assert_eq!(
        s.v4_len(),
        p.iter().filter(|n| matches!(n, IpNet::V4(_))).count()
    );
    assert_eq!(
        s.v6_len(),
        p.iter().filter(|n| matches!(n, IpNet::V6(_))).count()
    );
    let c = s.address_count();
    assert_eq!(c.v4, m.v4.len() as u64);
    assert_eq!(c.v6, m.v6.len() as u128);
    assert_eq!(s.is_empty(), m.v4.is_empty() && m.v6.is_empty());
    // Rebuilding from the canonical list gives the same set (content equality).
    assert_eq!(RangeSet::from_nets(p.iter().copied()), *s);
    // Display and serde agree with the list.
    let shown: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(s.to_string(), shown.join(", "));
    assert_eq!(
        serde_json::to_value(s).unwrap(),
        serde_json::to_value(&shown).unwrap()
    );
}

fn space() -> impl Strategy<Value = Space> {
    (0..3usize, 0..3usize).prop_map(|(i, j)| Space {
        b4: V4_BASES[i],
        b6: V6_BASES[j],
    })
}

fn specs() -> impl Strategy<Value = Vec<Spec>> {
    prop::collection::vec((any::<bool>(), any::<u8>(), 0u8..=8), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn from_nets_is_canonical(sp in space(), a in specs()) {
        let nets: Vec<IpNet> = a.iter().map(|&x| net_of(sp, x)).collect();
        let s = RangeSet::from_nets(nets.iter().copied());
        check_canonical(&s, &model_of(&nets));
        // Insert one by one gives the same set; order does not matter.
        let mut t = RangeSet::new();
        for n in nets.iter().rev() {
            t.insert(*n);
        }
        prop_assert_eq!(&t, &s);
        let collected: RangeSet = nets.iter().copied().collect();
        prop_assert_eq!(collected, s);
    }

    #[test]
    fn binary_ops_match_model(sp in space(), a in specs(), b in specs()) {
        let na: Vec<IpNet> = a.iter().map(|&x| net_of(sp, x)).collect();
        let nb: Vec<IpNet> = b.iter().map(|&x| net_of(sp, x)).collect();
        let (sa, sb) = (RangeSet::from_nets(na.clone()), RangeSet::from_nets(nb.clone()));
        let (ma, mb) = (model_of(&na), model_of(&nb));

        let u = sa.union(&sb);
        let mu = Model {
            v4: ma.v4.union(&mb.v4).copied().collect(),
            v6: ma.v6.union(&mb.v6).copied().collect(),
        };
        check_canonical(&u, &mu);

        let d = sa.difference(&sb);
        let md = Model {
            v4: ma.v4.difference(&mb.v4).copied().collect(),
            v6: ma.v6.difference(&mb.v6).copied().collect(),
        };
        check_canonical(&d, &md);

        let i = sa.intersection(&sb);
        let mi = Model {
            v4: ma.v4.intersection(&mb.v4).copied().collect(),
            v6: ma.v6.intersection(&mb.v6).copied().collect(),
        };
        check_canonical(&i, &mi);

        let sup = mb.v4.is_subset(&ma.v4) && mb.v6.is_subset(&ma.v6);
        prop_assert_eq!(sa.is_superset(&sb), sup);
        prop_assert!(u.is_superset(&sa) && u.is_superset(&sb));
        prop_assert!(sa.is_superset(&i) && sa.is_superset(&d));
        prop_assert_eq!(sa == sb, ma == mb);
        prop_assert_eq!(model_of_set(&sa), ma.clone());

        for n in &nb {
            let (inside, size) = net_in_model(&ma, n);
            prop_assert_eq!(sa.contains_net(n), inside == size, "contains_net {}", n);
            prop_assert_eq!(sa.overlaps_net(n), inside > 0, "overlaps_net {}", n);
            let addr = n.network();
            let has = match addr {
                IpAddr::V4(x) => ma.v4.contains(&u32::from(x)),
                IpAddr::V6(x) => ma.v6.contains(&u128::from(x)),
            };
            prop_assert_eq!(sa.contains_addr(addr), has);
            let last = n.broadcast();
            let has = match last {
                IpAddr::V4(x) => ma.v4.contains(&u32::from(x)),
                IpAddr::V6(x) => ma.v6.contains(&u128::from(x)),
            };
            prop_assert_eq!(sa.contains_addr(last), has);
        }
    }
}

// ---- wide prefixes: critical-point reference over arbitrary prefixes ----

fn any_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
        // Bias towards the family edges and overlapping shapes.
        (
            prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
            0u8..=32
        )
            .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())),
        (prop_oneof![Just(0u128), Just(u128::MAX)], 0u8..=128)
            .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())),
    ]
}

fn naive_contains(nets: &[IpNet], a: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&a))
}

/// Every address where membership of any of the inputs (or the result) may change, and its
/// neighbours; two sets agreeing on all of these agree everywhere.
fn critical(all: &[&[IpNet]]) -> Vec<IpAddr> {
    let mut v = Vec::new();
    for nets in all {
        for n in *nets {
            match n {
                IpNet::V4(n) => {
                    for x in [u32::from(n.network()), u32::from(n.broadcast())] {
                        v.extend(
                            [x.checked_sub(1), Some(x), x.checked_add(1)]
                                .into_iter()
                                .flatten()
                                .map(|y| IpAddr::V4(Ipv4Addr::from(y))),
                        );
                    }
                }
                IpNet::V6(n) => {
                    for x in [u128::from(n.network()), u128::from(n.broadcast())] {
                        v.extend(
                            [x.checked_sub(1), Some(x), x.checked_add(1)]
                                .into_iter()
                                .flatten()
                                .map(|y| IpAddr::V6(Ipv6Addr::from(y))),
                        );
                    }
                }
            }
        }
    }
    v
}

/// Address count by sweeping the sorted critical points of arbitrary prefixes.
fn naive_count(nets: &[IpNet]) -> (u64, u128) {
    let mut c4 = 0u64;
    let mut pts4: Vec<u64> = vec![0, 1 << 32];
    let mut c6 = 0u128;
    let mut pts6: Vec<u128> = vec![0, u128::MAX];
    for n in nets {
        match n {
            IpNet::V4(n) => {
                pts4.push(u64::from(u32::from(n.network())));
                pts4.push(u64::from(u32::from(n.broadcast())) + 1);
            }
            IpNet::V6(n) => {
                pts6.push(u128::from(n.network()));
                pts6.push(u128::from(n.broadcast()).saturating_add(1));
            }
        }
    }
    pts4.sort_unstable();
    pts4.dedup();
    for w in pts4.windows(2) {
        if naive_contains(nets, IpAddr::V4(Ipv4Addr::from(w[0] as u32))) {
            c4 += w[1] - w[0];
        }
    }
    pts6.sort_unstable();
    pts6.dedup();
    for w in pts6.windows(2) {
        if naive_contains(nets, IpAddr::V6(Ipv6Addr::from(w[0]))) {
            c6 = c6.saturating_add(w[1] - w[0]);
        }
    }
    // The last address u128::MAX is not covered by the half-open sweep.
    if naive_contains(nets, IpAddr::V6(Ipv6Addr::from(u128::MAX))) {
        c6 = c6.saturating_add(1);
    }
    (c4, c6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn wide_prefixes_match_sweep(
        a in prop::collection::vec(any_net(), 0..8),
        b in prop::collection::vec(any_net(), 0..8),
    ) {
        let (sa, sb) = (RangeSet::from_nets(a.clone()), RangeSet::from_nets(b.clone()));
        let u = sa.union(&sb);
        let d = sa.difference(&sb);
        let i = sa.intersection(&sb);
        let (pu, pd, pi, pa) = (u.prefixes(), d.prefixes(), i.prefixes(), sa.prefixes());
        for x in critical(&[&a, &b, &pu, &pd, &pi, &pa]) {
            let (ia, ib) = (naive_contains(&a, x), naive_contains(&b, x));
            prop_assert_eq!(sa.contains_addr(x), ia, "contains {}", x);
            prop_assert_eq!(naive_contains(&pa, x), ia, "prefix list at {}", x);
            prop_assert_eq!(naive_contains(&pu, x), ia || ib, "union at {}", x);
            prop_assert_eq!(naive_contains(&pd, x), ia && !ib, "difference at {}", x);
            prop_assert_eq!(naive_contains(&pi, x), ia && ib, "intersection at {}", x);
        }
        let (c4, c6) = naive_count(&a);
        let c = sa.address_count();
        prop_assert_eq!(c.v4, c4);
        prop_assert_eq!(c.v6, c6);
        // Prefix lists are maximal: no parent is contained.
        for n in &pa {
            if let Some(parent) = n.supernet() {
                prop_assert!(!sa.contains_net(&parent), "{} could merge", n);
            }
        }
        for n in &b {
            let all_in = sa.intersection(&RangeSet::from_nets([*n])) == RangeSet::from_nets([*n]);
            prop_assert_eq!(sa.contains_net(n), all_in);
            let some_in = !sa.intersection(&RangeSet::from_nets([*n])).is_empty();
            prop_assert_eq!(sa.overlaps_net(n), some_in);
            prop_assert_eq!(some_in, a.iter().any(|m| m.contains(&n.network()) || n.contains(&m.network())));
        }
        let sup = critical(&[&a, &b]).into_iter().all(|x| !naive_contains(&b, x) || naive_contains(&a, x));
        prop_assert_eq!(sa.is_superset(&sb), sup);
    }
}

#[test]
fn full_space_edges() {
    let all = RangeSet::from_nets(["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
    assert_eq!(all.to_string(), "0.0.0.0/0, ::/0");
    assert_eq!(all.address_count().v4, 1 << 32);
    assert_eq!(all.address_count().v6, u128::MAX);
    let halves = RangeSet::from_nets([
        "0.0.0.0/1".parse().unwrap(),
        "128.0.0.0/1".parse().unwrap(),
        "::/1".parse().unwrap(),
        "8000::/1".parse().unwrap(),
    ]);
    assert_eq!(halves, all);
    let top = RangeSet::from_nets(["255.255.255.255/32".parse().unwrap()]);
    let rest = all.difference(&top);
    assert_eq!(rest.v4_len(), 32);
    assert_eq!(rest.union(&top), all);
    assert!(RangeSet::new().is_empty());
    assert_eq!(RangeSet::new().to_string(), "");
    assert_eq!(RangeSet::new(), RangeSet::default());
}

#[test]
fn two_halves_equal_their_parent_and_bare_equals_slash32() {
    let a = RangeSet::from_nets([
        "10.0.0.0/25".parse().unwrap(),
        "10.0.0.128/25".parse().unwrap(),
    ]);
    let b = RangeSet::from_nets(["10.0.0.0/24".parse().unwrap()]);
    assert_eq!(a, b);
    let p = rangekeeper_cidr::parse("1.2.3.4").unwrap().net;
    assert_eq!(
        RangeSet::from_nets([p]),
        RangeSet::from_nets(["1.2.3.4/32".parse().unwrap()])
    );
}
