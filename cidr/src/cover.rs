//! Fit-to-limit: the exact optimal cover of a set by at most K prefixes.
//!
//! # What is optimized
//!
//! A cover is a list of at most K prefixes whose union contains every declared address. Within
//! each family its cost is the exact number of **extra addresses** it admits (covered but not
//! declared). Across the families the budget is shared to minimize a total, and how an IPv4
//! address compares with an IPv6 address is a choice, made explicit by [`CostModel`]:
//!
//! - [`CostModel::Ipv6Per64`] (the default): one extra IPv6 `/64` weighs as much as one extra
//!   IPv4 address, i.e. the total is `extra.v4 + extra.v6 / 2^64`, compared exactly. A /64 is
//!   the IPv6 unit of assignment (one LAN, one subscriber), the way one address is for IPv4;
//!   blocklists and rate limiters treat them alike, and so do we.
//! - [`CostModel::Addresses`]: addresses counted as addresses, `extra.v4 + extra.v6`. This is
//!   the literal truth and it has a blunt consequence: one IPv6 merge of two /64s admits at
//!   least 2^64 addresses, more than the whole IPv4 space, so whenever IPv6 needs any merging
//!   the optimum spends the budget on IPv6 and covers IPv4 with very wide prefixes — on the
//!   GitHub Actions list at K = 40 it covers IPv4 with `0.0.0.0/0`. Correct arithmetic, but
//!   rarely what an allow-list wants, hence not the default.
//!
//! Either way, per-family extra counts and multiples are reported so a plan can show both.
//!
//! # How
//!
//! The declared set's minimal prefix list is the leaf set of a compressed binary trie (a node
//! per branching point). For every node `v` and every `j`, a dynamic program computes the
//! minimum extra addresses for covering the declared addresses under `v` with at most `j`
//! prefixes inside `v`: either `v` itself (one prefix, `|v| - declared(v)` extra), or the
//! best split `j1 + j2 = j` between its two children. Unary trie paths never help (the
//! smallest prefix containing a subtree's addresses is the subtree's root), so the
//! compressed trie is exact. Each node's table is capped at `min(K, leaves below)`, which
//! bounds the whole program by `O(n * K)`. The two families' root tables are then combined
//! by a knapsack over the shared budget. Optimality is tested against brute force.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::set::{Addr, AddressCount, RangeSet, for_each_prefix};

/// Why no cover can be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverError {
    #[error("a budget of 0 prefixes cannot cover a non-empty set ({prefixes} prefixes)")]
    ZeroBudget { prefixes: usize },
    #[error(
        "the set has both IPv4 and IPv6 addresses, which need at least 2 prefixes; the budget is {k}"
    )]
    BothFamilies { k: usize },
    #[error("the set has {family} addresses, which the target does not accept")]
    FamilyNotAccepted { family: &'static str },
    #[error(
        "no cover by at most {k} prefixes stays clear of {avoiding}; every way to merge the declared ranges that far would admit them"
    )]
    NoValidCover { k: usize, avoiding: String },
    #[error(
        "every cover by at most {k} prefixes admits more extra addresses in some family than the bound allows"
    )]
    MaxExtraExceeded { k: usize },
}

/// A bound on the extra addresses of a cover, applied to each family on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExtraBound {
    /// At most this many extra addresses per family.
    Addresses(u128),
    /// At most this multiple of the family's declared address count.
    Multiple(f64),
}

impl ExtraBound {
    /// Whether `extra` extra addresses over `declared` declared ones are within the bound.
    pub fn admits(self, extra: u128, declared: u128) -> bool {
        match self {
            ExtraBound::Addresses(n) => extra <= n,
            ExtraBound::Multiple(m) => extra == 0 || ratio(extra, declared) <= m,
        }
    }
}

/// What a cover must respect besides the budget: a target's rules. The default allows
/// everything (the plain optimum of [`cover`]).
///
/// A prefix of the cover that merges declared ranges must not admit an address of `avoid`
/// that was not itself declared, and must not be broad ([`crate::is_broad`]) unless
/// `allow_broad`. A declared prefix is always kept as it is (if it breaks a rule, that is
/// for the caller's checks to refuse, not for the cover to hide). Known limit: the broad
/// rule is applied to each merged prefix, so two adjacent allowed prefixes (two /8s) can
/// still aggregate into a broad one (a /7); callers must check the result, as the guard does.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverRules {
    /// The target accepts IPv4 ranges.
    pub ipv4: bool,
    /// The target accepts IPv6 ranges.
    pub ipv6: bool,
    /// Broad prefixes may be used to merge.
    pub allow_broad: bool,
    /// Addresses a merged prefix must not admit (e.g. [`crate::non_global`] for targets that
    /// refuse non-global ranges).
    pub avoid: RangeSet,
    /// A bound on each family's extra addresses (`maxExtra`).
    pub max_extra: Option<ExtraBound>,
}

impl Default for CoverRules {
    fn default() -> Self {
        CoverRules {
            ipv4: true,
            ipv6: true,
            allow_broad: true,
            avoid: RangeSet::new(),
            max_extra: None,
        }
    }
}

impl CoverRules {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.avoid.is_empty() {
            parts.push("the ranges the target refuses (non-global blocks)");
        }
        if !self.allow_broad {
            parts.push("broad prefixes (`allowBroad` is not set)");
        }
        if parts.is_empty() {
            "the target's rules".into()
        } else {
            parts.join(" and ")
        }
    }
}

/// How extra IPv4 and IPv6 addresses compare when the two families share the budget. See the
/// module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CostModel {
    /// One extra IPv6 /64 weighs as much as one extra IPv4 address.
    #[default]
    Ipv6Per64,
    /// Every extra address counts 1, whatever its family.
    Addresses,
}

impl CostModel {
    /// The total cost of `e4` extra IPv4 and `e6` extra IPv6 addresses, as an exact
    /// comparable key (a 256-bit number `hi * 2^128 + lo`).
    fn key(self, e4: u128, e6: u128) -> (u128, u128) {
        match self {
            CostModel::Addresses => {
                let (lo, carry) = e4.overflowing_add(e6);
                (u128::from(carry), lo)
            }
            // e4 + e6 / 2^64, scaled by 2^64: e4 * 2^64 + e6.
            CostModel::Ipv6Per64 => {
                let (lo, carry) = (e4 << 64).overflowing_add(e6);
                ((e4 >> 64) + u128::from(carry), lo)
            }
        }
    }
}

/// One prefix of a cover, and the declared (canonical) prefixes it covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CoverPrefix {
    pub net: IpNet,
    /// The declared set's canonical prefixes inside `net` (just `[net]` when exact).
    pub merged: Vec<IpNet>,
    /// Addresses of `net` that were not declared.
    pub extra: u128,
}

/// A cover of a set by at most K prefixes, and what it costs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Cover {
    /// How the families were weighed against each other.
    pub model: CostModel,
    /// The covering set (a superset of the declared set).
    pub set: RangeSet,
    /// The covering set's canonical prefixes (IPv4 first), each with what it merged.
    pub prefixes: Vec<CoverPrefix>,
    /// Addresses in the declared set.
    pub declared: AddressCount,
    /// Addresses admitted by the cover that were not declared.
    pub extra: AddressCount,
    /// `extra / declared` over both families (addresses counted as addresses), 0 when exact.
    pub extra_multiple: f64,
    /// `extra.v4 / declared.v4`, when there are IPv4 addresses.
    pub extra_multiple_v4: Option<f64>,
    /// `extra.v6 / declared.v6`, when there are IPv6 addresses.
    pub extra_multiple_v6: Option<f64>,
    /// The widest IPv4 prefix used.
    pub widest_v4: Option<Ipv4Net>,
    /// The widest IPv6 prefix used.
    pub widest_v6: Option<Ipv6Net>,
}

impl Cover {
    /// True when the cover admits no extra address (the set already fits).
    pub fn is_exact(&self) -> bool {
        self.extra == AddressCount::default()
    }

    /// The cost this cover minimized under its model, as `(hi, lo)` of `hi * 2^128 + lo`.
    pub fn cost_key(&self) -> (u128, u128) {
        self.model.key(u128::from(self.extra.v4), self.extra.v6)
    }

    /// Total extra addresses, both families summed (saturating).
    pub fn extra_total(&self) -> u128 {
        u128::from(self.extra.v4).saturating_add(self.extra.v6)
    }

    /// The widest prefix used, by address count (an IPv6 /64 is wider than any IPv4 prefix).
    pub fn widest(&self) -> Option<IpNet> {
        match (self.widest_v4, self.widest_v6) {
            (None, None) => None,
            (Some(a), None) => Some(IpNet::V4(a)),
            (None, Some(b)) => Some(IpNet::V6(b)),
            (Some(a), Some(b)) => {
                let size4 = 1u128 << (32 - a.prefix_len());
                let size6 = 1u128.checked_shl(128 - u32::from(b.prefix_len()));
                match size6 {
                    Some(s6) if s6 < size4 => Some(IpNet::V4(a)),
                    _ => Some(IpNet::V6(b)),
                }
            }
        }
    }
}

/// The minimal prefix list of canonical intervals, as `(start, len)`.
fn leaves<T: Addr>(iv: &[(T, T)]) -> Vec<(T, u8)> {
    let mut v = Vec::with_capacity(iv.len());
    for &(a, b) in iv {
        for_each_prefix(a, b, |s, l| v.push((s, l)));
    }
    v
}

/// Addresses in a prefix of length `len`, minus one (so `/0` of IPv6 fits).
fn size_minus_one<T: Addr>(len: u8) -> u128 {
    T::host_mask(u32::from(len)).to_u128()
}

const NONE: u32 = u32::MAX;

struct Node<T> {
    start: T,
    len: u8,
    left: u32,
    right: u32,
    /// Declared addresses below, minus one (saturating at the top).
    declared_m1: u128,
    /// Offset of this node's choice table in `Dp::choice` (index `j` at `off + j`).
    choice_off: usize,
    cap: usize,
}

/// The trie and dynamic program of one family.
struct Dp<T> {
    nodes: Vec<Node<T>>,
    choice: Vec<u32>,
    k: usize,
}

impl<T: Addr> Dp<T> {
    /// `allowed(net)` says whether an internal node's prefix may be one cover prefix
    /// (declared leaves always may).
    fn build(leaves: &[(T, u8)], k: usize, allowed: &dyn Fn(IpNet) -> bool) -> (Self, Vec<u128>) {
        let mut dp = Dp {
            nodes: Vec::with_capacity(leaves.len() * 2),
            choice: Vec::new(),
            k,
        };
        if leaves.is_empty() {
            return (dp, vec![0]);
        }
        let (_, curve) = dp.node(leaves, allowed);
        (dp, curve)
    }

    /// Build the subtree over `leaves` (sorted, disjoint, at least one) and return its index
    /// and its cost curve (`curve[j]` for `j` in `1..=cap`; `curve[0]` unused; `u128::MAX` where
    /// no allowed choice exists, which no real cost reaches: it would need a single declared
    /// address below an internal node).
    fn node(&mut self, leaves: &[(T, u8)], allowed: &dyn Fn(IpNet) -> bool) -> (u32, Vec<u128>) {
        if leaves.len() == 1 {
            let (start, len) = leaves[0];
            let idx = self.nodes.len() as u32;
            self.nodes.push(Node {
                start,
                len,
                left: NONE,
                right: NONE,
                declared_m1: size_minus_one::<T>(len),
                choice_off: 0,
                cap: 1,
            });
            return (idx, vec![u128::MAX, 0]);
        }
        let first = leaves[0].0;
        let last = leaves[leaves.len() - 1].0;
        let cpl = first.xor(last).leading_zeros_();
        let split = leaves.partition_point(|l| !l.0.bit(cpl));
        let (li, lc) = self.node(&leaves[..split], allowed);
        let (ri, rc) = self.node(&leaves[split..], allowed);
        let (ln, rn) = (&self.nodes[li as usize], &self.nodes[ri as usize]);
        let declared_m1 = ln
            .declared_m1
            .saturating_add(rn.declared_m1)
            .saturating_add(1);
        let (cap_l, cap_r) = (ln.cap, rn.cap);
        let len = cpl as u8;
        let start = first.and_prefix(len);
        // |v| - declared = (|v| - 1) - (declared - 1)
        let self_cost = if allowed(start.to_net(len)) {
            size_minus_one::<T>(len) - declared_m1
        } else {
            u128::MAX
        };
        let cap = (cap_l + cap_r).min(self.k);
        let choice_off = self.choice.len();
        self.choice.resize(choice_off + cap + 1, 0);
        let mut curve = vec![u128::MAX; cap + 1];
        curve[1] = self_cost;
        for j in 2..=cap {
            let mut best = self_cost;
            let mut pick = 0u32;
            let lo = j.saturating_sub(cap_r).max(1);
            let hi = cap_l.min(j - 1);
            for j1 in lo..=hi {
                let c = lc[j1].saturating_add(rc[j - j1]);
                if c < best {
                    best = c;
                    pick = j1 as u32;
                }
            }
            curve[j] = best;
            self.choice[choice_off + j] = pick;
        }
        let idx = self.nodes.len() as u32;
        self.nodes.push(Node {
            start,
            len,
            left: li,
            right: ri,
            declared_m1,
            choice_off,
            cap,
        });
        (idx, curve)
    }

    /// The chosen prefixes for the root with budget `j`.
    fn collect(&self, j: usize, out: &mut Vec<(T, u8)>) {
        if self.nodes.is_empty() || j == 0 {
            return;
        }
        let root = self.nodes.len() - 1;
        let mut stack = vec![(root, j)];
        while let Some((i, j)) = stack.pop() {
            let n = &self.nodes[i];
            let j = j.min(n.cap);
            let pick = if n.left == NONE {
                0
            } else {
                self.choice[n.choice_off + j] as usize
            };
            if pick == 0 {
                out.push((n.start, n.len));
            } else {
                stack.push((n.right as usize, j - pick));
                stack.push((n.left as usize, pick));
            }
        }
    }
}

/// `curve[j]` made "at most j" for every `j` in `0..=k` (cost of the best with `<= j`).
fn at_most(curve: &[u128], k: usize) -> Vec<u128> {
    let mut out = vec![u128::MAX; k + 1];
    let mut best = u128::MAX;
    for (j, slot) in out.iter_mut().enumerate() {
        if let Some(&c) = curve.get(j) {
            best = best.min(c);
        }
        *slot = best;
    }
    out
}

/// The smallest `j` reaching the same cost as `j_max` on an "at most" curve.
fn fewest(curve: &[u128], j_max: usize) -> usize {
    let target = curve[j_max];
    curve[..=j_max]
        .iter()
        .position(|&c| c == target)
        .unwrap_or(j_max)
}

/// The exact optimal cover of `set` by at most `k` prefixes: every address of `set` is
/// covered and the number of extra addresses (IPv4 and IPv6 addresses summed) is minimal.
/// When the set already fits in `k` prefixes, the cover is the set itself with zero extra.
/// See the module documentation for the cost model.
///
/// Time is `O(n * min(k, n))` for `n` canonical prefixes (under a millisecond for the ~5,400
/// prefixes of the GitHub Actions list at K = 40; about 2 ms at K = 200); memory is one
/// `u32` choice per trie node and budget, `O(n * min(k, depth))`. Meant for provider-scale
/// budgets (tens to hundreds), not for K near n on million-prefix lists.
pub fn cover(set: &RangeSet, k: usize) -> Result<Cover, CoverError> {
    cover_with(set, k, CostModel::default())
}

/// [`cover`] with an explicit cost model for the families' shared budget.
pub fn cover_with(set: &RangeSet, k: usize, model: CostModel) -> Result<Cover, CoverError> {
    cover_within(set, k, model, &CoverRules::default())
}

/// The exact optimal cover of `set` by at most `k` prefixes among the covers that respect a
/// target's `rules`: optimal under the rules, not the plain optimum repaired afterwards.
pub fn cover_within(
    set: &RangeSet,
    k: usize,
    model: CostModel,
    rules: &CoverRules,
) -> Result<Cover, CoverError> {
    let l4 = leaves(&set.v4);
    let l6 = leaves(&set.v6);
    if !rules.ipv4 && !l4.is_empty() {
        return Err(CoverError::FamilyNotAccepted { family: "IPv4" });
    }
    if !rules.ipv6 && !l6.is_empty() {
        return Err(CoverError::FamilyNotAccepted { family: "IPv6" });
    }
    check_budget(l4.len(), l6.len(), k)?;
    if l4.len() + l6.len() <= k {
        return Ok(report(model, set, set.clone(), &l4, &l6));
    }
    // Forbidden: what the rules avoid, except what was declared anyway.
    let avoid = rules.avoid.difference(set);
    let allowed = |net: IpNet| {
        (rules.allow_broad || !crate::broad::is_broad(&net)) && !avoid.overlaps_net(&net)
    };
    let (dp4, c4) = Dp::build(&l4, k, &allowed);
    let (dp6, c6) = Dp::build(&l6, k, &allowed);
    let (f4, f6) = (at_most(&c4, k), at_most(&c6, k));
    // Each non-empty family needs at least one prefix.
    let min4 = usize::from(!l4.is_empty());
    let min6 = usize::from(!l6.is_empty());
    let dc = set.address_count();
    let within = |c4: u128, c6: u128| {
        rules
            .max_extra
            .is_none_or(|b| b.admits(c4, u128::from(dc.v4)) && b.admits(c6, dc.v6))
    };
    let mut best: Option<((u128, u128), usize, usize)> = None;
    let mut any_valid = false;
    for (j4, &c4) in f4.iter().enumerate().take(k - min6 + 1).skip(min4) {
        let j6 = k - j4;
        let c6 = f6[j6];
        if c4 == u128::MAX || c6 == u128::MAX {
            continue;
        }
        any_valid = true;
        if !within(c4, c6) {
            continue;
        }
        let c = model.key(c4, c6);
        if best.is_none_or(|(bc, _, _)| c < bc) {
            best = Some((c, j4, j6));
        }
    }
    let Some((_, j4, j6)) = best else {
        return Err(if any_valid {
            CoverError::MaxExtraExceeded { k }
        } else {
            CoverError::NoValidCover {
                k,
                avoiding: rules.describe(),
            }
        });
    };
    let (j4, j6) = (fewest(&f4, j4), fewest(&f6, j6));
    let mut p4 = Vec::new();
    let mut p6 = Vec::new();
    dp4.collect(j4, &mut p4);
    dp6.collect(j6, &mut p6);
    let covering = RangeSet::from_nets(
        p4.iter()
            .map(|&(a, l)| a.to_net(l))
            .chain(p6.iter().map(|&(a, l)| a.to_net(l))),
    );
    Ok(report(model, set, covering, &l4, &l6))
}

fn check_budget(n4: usize, n6: usize, k: usize) -> Result<(), CoverError> {
    if n4 + n6 > 0 && k == 0 {
        return Err(CoverError::ZeroBudget { prefixes: n4 + n6 });
    }
    if n4 > 0 && n6 > 0 && k < 2 {
        return Err(CoverError::BothFamilies { k });
    }
    Ok(())
}

fn ratio(extra: u128, declared: u128) -> f64 {
    if declared == 0 {
        0.0
    } else {
        extra as f64 / declared as f64
    }
}

/// Describe `covering` (a superset of `declared`, whose leaves are `l4`/`l6`).
fn report(
    model: CostModel,
    declared: &RangeSet,
    covering: RangeSet,
    l4: &[(u32, u8)],
    l6: &[(u128, u8)],
) -> Cover {
    let dc = declared.address_count();
    // Counted on the difference, which is never the whole IPv6 space while something is
    // declared, so it is exact even when the cover uses `::/0` (2^128 addresses).
    let extra = covering.difference(declared).address_count();
    let mut prefixes = Vec::new();
    let mut widest_v4: Option<Ipv4Net> = None;
    let mut widest_v6: Option<Ipv6Net> = None;
    let (mut i4, mut i6) = (0usize, 0usize);
    covering.for_each_prefix(|net| {
        let (merged, declared_in_m1) = match net {
            IpNet::V4(n) => {
                if widest_v4.is_none_or(|w| n.prefix_len() < w.prefix_len()) {
                    widest_v4 = Some(n);
                }
                let end = u32::from(n.broadcast());
                take_inside(l4, &mut i4, end)
            }
            IpNet::V6(n) => {
                if widest_v6.is_none_or(|w| n.prefix_len() < w.prefix_len()) {
                    widest_v6 = Some(n);
                }
                let end = u128::from(n.broadcast());
                take_inside(l6, &mut i6, end)
            }
        };
        let size_m1 = match net {
            IpNet::V4(n) => size_minus_one::<u32>(n.prefix_len()),
            IpNet::V6(n) => size_minus_one::<u128>(n.prefix_len()),
        };
        prefixes.push(CoverPrefix {
            net,
            merged,
            extra: size_m1 - declared_in_m1,
        });
    });
    let total_declared = u128::from(dc.v4).saturating_add(dc.v6);
    let total_extra = u128::from(extra.v4).saturating_add(extra.v6);
    Cover {
        model,
        set: covering,
        prefixes,
        declared: dc,
        extra,
        extra_multiple: ratio(total_extra, total_declared),
        extra_multiple_v4: (dc.v4 > 0).then(|| ratio(u128::from(extra.v4), u128::from(dc.v4))),
        extra_multiple_v6: (dc.v6 > 0).then(|| ratio(extra.v6, dc.v6)),
        widest_v4,
        widest_v6,
    }
}

/// The leaves from `*i` that end at or before `end` (they are inside the current cover
/// prefix, which contains them all, at least one); advances `*i`. Returns them and their
/// address count minus one, exact even for `::/0` (the sum never exceeds the prefix's size).
fn take_inside<T: Addr>(leaves: &[(T, u8)], i: &mut usize, end: T) -> (Vec<IpNet>, u128) {
    let mut merged = Vec::new();
    let mut count_m1: Option<u128> = None;
    while *i < leaves.len() && leaves[*i].0 <= end {
        let (a, l) = leaves[*i];
        merged.push(a.to_net(l));
        let m1 = size_minus_one::<T>(l);
        count_m1 = Some(match count_m1 {
            None => m1,
            Some(c) => c.saturating_add(m1).saturating_add(1),
        });
        *i += 1;
    }
    (merged, count_m1.unwrap_or(0))
}

/// The greedy baseline the optimum is measured against: "merge the cheapest sibling pair".
/// Bottom-up over the same compressed prefix trie, repeatedly replace a pair of sibling
/// subtrees that are each already one prefix by their parent prefix, always taking the merge
/// that adds the fewest extra addresses (IPv4 and IPv6 in one queue), until at most `k`
/// prefixes remain. Exact in its cost accounting, but not optimal. Kept for comparison in
/// tests and benchmarks.
pub fn greedy_cover(set: &RangeSet, k: usize) -> Result<Cover, CoverError> {
    greedy_cover_with(set, k, CostModel::default())
}

/// [`greedy_cover`] with an explicit cost model.
pub fn greedy_cover_with(set: &RangeSet, k: usize, model: CostModel) -> Result<Cover, CoverError> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let l4 = leaves(&set.v4);
    let l6 = leaves(&set.v6);
    check_budget(l4.len(), l6.len(), k)?;
    let (dp4, _) = Dp::build(&l4, 1, &|_| true);
    let (dp6, _) = Dp::build(&l6, 1, &|_| true);
    let mut g4 = Greedy::new(&dp4);
    let mut g6 = Greedy::new(&dp6);
    let mut heap = BinaryHeap::new();
    for (i, c) in g4.initial() {
        heap.push(Reverse((model.key(c, 0), 4u8, i)));
    }
    for (i, c) in g6.initial() {
        heap.push(Reverse((model.key(0, c), 6u8, i)));
    }
    let mut count = l4.len() + l6.len();
    while count > k {
        let Some(Reverse((_, f, i))) = heap.pop() else {
            break;
        };
        let next = if f == 4 { g4.merge(i) } else { g6.merge(i) };
        if let Some((p, c)) = next {
            let key = if f == 4 {
                model.key(c, 0)
            } else {
                model.key(0, c)
            };
            heap.push(Reverse((key, f, p)));
        }
        count -= 1;
    }
    let (mut p4, mut p6) = (Vec::new(), Vec::new());
    g4.collect(&mut p4);
    g6.collect(&mut p6);
    let covering = RangeSet::from_nets(
        p4.iter()
            .map(|&(a, l)| a.to_net(l))
            .chain(p6.iter().map(|&(a, l)| a.to_net(l))),
    );
    Ok(report(model, set, covering, &l4, &l6))
}

/// Greedy state over one family's trie.
struct Greedy<'a, T> {
    dp: &'a Dp<T>,
    parent: Vec<u32>,
    /// The node is currently one cover prefix (covers its whole subtree).
    merged: Vec<bool>,
    /// Addresses currently covered below the node, minus one.
    covered_m1: Vec<u128>,
}

impl<'a, T: Addr> Greedy<'a, T> {
    fn new(dp: &'a Dp<T>) -> Self {
        let n = dp.nodes.len();
        let mut parent = vec![NONE; n];
        let mut merged = vec![false; n];
        let mut covered_m1 = vec![0u128; n];
        for (i, node) in dp.nodes.iter().enumerate() {
            if node.left == NONE {
                merged[i] = true;
                covered_m1[i] = size_minus_one::<T>(node.len);
            } else {
                parent[node.left as usize] = i as u32;
                parent[node.right as usize] = i as u32;
            }
        }
        Greedy {
            dp,
            parent,
            merged,
            covered_m1,
        }
    }

    /// Cost of merging internal node `i` whose children are both merged.
    fn cost(&self, i: usize) -> u128 {
        let n = &self.dp.nodes[i];
        let inside = self.covered_m1[n.left as usize]
            .saturating_add(self.covered_m1[n.right as usize])
            .saturating_add(1);
        size_minus_one::<T>(n.len) - inside
    }

    fn initial(&self) -> Vec<(usize, u128)> {
        (0..self.dp.nodes.len())
            .filter(|&i| {
                let n = &self.dp.nodes[i];
                n.left != NONE && self.merged[n.left as usize] && self.merged[n.right as usize]
            })
            .map(|i| (i, self.cost(i)))
            .collect()
    }

    /// Merge node `i`; returns its parent and the parent's cost if it became mergeable.
    fn merge(&mut self, i: usize) -> Option<(usize, u128)> {
        self.merged[i] = true;
        self.covered_m1[i] = size_minus_one::<T>(self.dp.nodes[i].len);
        let p = self.parent[i];
        if p == NONE {
            return None;
        }
        let pn = &self.dp.nodes[p as usize];
        (self.merged[pn.left as usize] && self.merged[pn.right as usize])
            .then(|| (p as usize, self.cost(p as usize)))
    }

    /// The current cover prefixes (top-most merged nodes).
    fn collect(&self, out: &mut Vec<(T, u8)>) {
        if self.dp.nodes.is_empty() {
            return;
        }
        let mut stack = vec![self.dp.nodes.len() - 1];
        while let Some(i) = stack.pop() {
            let n = &self.dp.nodes[i];
            if self.merged[i] {
                out.push((n.start, n.len));
            } else {
                stack.push(n.right as usize);
                stack.push(n.left as usize);
            }
        }
    }
}
