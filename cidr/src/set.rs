//! Canonical range sets: sorted, disjoint, non-adjacent inclusive address intervals per
//! family, so derived equality and hashing are content equality, and the minimal prefix list
//! is a pure function of the intervals.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Unsigned address integer of one family (`u32` for IPv4, `u128` for IPv6).
pub(crate) trait Addr: Copy + Ord + Eq + std::hash::Hash + fmt::Debug {
    const BITS: u32;
    const ZERO: Self;
    fn checked_inc(self) -> Option<Self>;
    /// `self - 1`; callers guarantee `self > 0`.
    fn dec(self) -> Self;
    /// `self - other`; callers guarantee `self >= other`.
    fn minus(self, other: Self) -> Self;
    fn trailing_zeros_(self) -> u32;
    fn leading_zeros_(self) -> u32;
    /// The host mask of a prefix of length `len` (`len <= BITS`).
    fn host_mask(len: u32) -> Self;
    fn or(self, other: Self) -> Self;
    fn xor(self, other: Self) -> Self;
    /// `self` with the host bits of a `/len` cleared.
    fn and_prefix(self, len: u8) -> Self;
    /// Bit `i` counted from the most significant bit (`i < BITS`).
    fn bit(self, i: u32) -> bool;
    fn to_u128(self) -> u128;
    fn to_net(self, len: u8) -> IpNet;
}

macro_rules! impl_addr {
    ($t:ty, $to_net:expr) => {
        impl Addr for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            #[inline]
            fn checked_inc(self) -> Option<Self> {
                self.checked_add(1)
            }
            #[inline]
            fn dec(self) -> Self {
                self - 1
            }
            #[inline]
            fn minus(self, other: Self) -> Self {
                self - other
            }
            #[inline]
            fn trailing_zeros_(self) -> u32 {
                self.trailing_zeros()
            }
            #[inline]
            fn leading_zeros_(self) -> u32 {
                self.leading_zeros()
            }
            #[inline]
            fn host_mask(len: u32) -> Self {
                <$t>::MAX.checked_shr(len).unwrap_or(0)
            }
            #[inline]
            fn or(self, other: Self) -> Self {
                self | other
            }
            #[inline]
            fn and_prefix(self, len: u8) -> Self {
                self & !Self::host_mask(u32::from(len))
            }
            #[inline]
            fn xor(self, other: Self) -> Self {
                self ^ other
            }
            #[inline]
            fn bit(self, i: u32) -> bool {
                (self >> (<$t>::BITS - 1 - i)) & 1 == 1
            }
            #[inline]
            fn to_u128(self) -> u128 {
                u128::from(self)
            }
            #[inline]
            fn to_net(self, len: u8) -> IpNet {
                ($to_net)(self, len)
            }
        }
    };
}
impl_addr!(u32, |a, len| IpNet::V4(Ipv4Net::new_assert(
    Ipv4Addr::from(a),
    len
)));
impl_addr!(u128, |a, len| IpNet::V6(Ipv6Net::new_assert(
    Ipv6Addr::from(a),
    len
)));

/// Sort and coalesce arbitrary intervals (overlapping or adjacent ones merge).
pub(crate) fn normalize<T: Addr>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    if v.windows(2).any(|w| w[0].0 > w[1].0) {
        v.sort_unstable();
    }
    coalesce_sorted(v)
}

/// Coalesce intervals already sorted by start, in place.
pub(crate) fn coalesce_sorted<T: Addr>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    let mut w = 0usize;
    for r in 0..v.len() {
        let (a, b) = v[r];
        if w > 0 {
            let last = &mut v[w - 1];
            // Merge when `a <= last.1 + 1` (overlapping or adjacent).
            let touches = match last.1.checked_inc() {
                None => true,
                Some(n) => a <= n,
            };
            if touches {
                if b > last.1 {
                    last.1 = b;
                }
                continue;
            }
        }
        v[w] = (a, b);
        w += 1;
    }
    v.truncate(w);
    v
}

pub(crate) fn union<T: Addr>(x: &[(T, T)], y: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::with_capacity(x.len() + y.len());
    let (mut i, mut j) = (0, 0);
    while i < x.len() || j < y.len() {
        let next = if j >= y.len() || (i < x.len() && x[i].0 <= y[j].0) {
            i += 1;
            x[i - 1]
        } else {
            j += 1;
            y[j - 1]
        };
        out.push(next);
    }
    coalesce_sorted(out)
}

pub(crate) fn intersection<T: Addr>(x: &[(T, T)], y: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let a = x[i].0.max(y[j].0);
        let b = x[i].1.min(y[j].1);
        if a <= b {
            out.push((a, b));
        }
        if x[i].1 < y[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

pub(crate) fn difference<T: Addr>(x: &[(T, T)], y: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::with_capacity(x.len());
    let mut j = 0;
    for &(a0, b) in x {
        let mut a = a0;
        // Skip subtrahend intervals entirely before `a`.
        while j < y.len() && y[j].1 < a {
            j += 1;
        }
        let mut k = j;
        let mut alive = true;
        while k < y.len() && y[k].0 <= b {
            let (c, d) = y[k];
            if c > a {
                out.push((a, c.dec()));
            }
            match d.checked_inc() {
                Some(n) if d < b => a = n,
                _ => {
                    alive = false;
                    break;
                }
            }
            k += 1;
        }
        if alive {
            out.push((a, b));
        }
    }
    out
}

/// Index of the first interval whose end is >= `x`.
fn first_ending_at_or_after<T: Addr>(v: &[(T, T)], x: T) -> usize {
    v.partition_point(|iv| iv.1 < x)
}

pub(crate) fn contains_range<T: Addr>(v: &[(T, T)], a: T, b: T) -> bool {
    let i = first_ending_at_or_after(v, a);
    i < v.len() && v[i].0 <= a && v[i].1 >= b
}

pub(crate) fn overlaps_range<T: Addr>(v: &[(T, T)], a: T, b: T) -> bool {
    let i = first_ending_at_or_after(v, a);
    i < v.len() && v[i].0 <= b
}

pub(crate) fn is_superset<T: Addr>(big: &[(T, T)], small: &[(T, T)]) -> bool {
    let mut i = 0;
    for &(a, b) in small {
        while i < big.len() && big[i].1 < a {
            i += 1;
        }
        if i >= big.len() || big[i].0 > a || big[i].1 < b {
            return false;
        }
    }
    true
}

/// Split the inclusive interval `[a, b]` into its minimal prefix list, calling `f(start, len)`.
#[inline]
pub(crate) fn for_each_prefix<T: Addr>(mut a: T, b: T, mut f: impl FnMut(T, u8)) {
    loop {
        let tz = if a == T::ZERO {
            T::BITS
        } else {
            a.trailing_zeros_()
        };
        let span = b.minus(a);
        let k_span = match span.checked_inc() {
            None => T::BITS,
            Some(n) => T::BITS - 1 - n.leading_zeros_(),
        };
        let k = tz.min(k_span);
        let len = T::BITS - k;
        f(a, len as u8);
        let end = a.or(T::host_mask(len));
        if end >= b {
            return;
        }
        match end.checked_inc() {
            Some(n) => a = n,
            None => return,
        }
    }
}

pub(crate) fn prefix_count<T: Addr>(v: &[(T, T)]) -> usize {
    let mut n = 0;
    for &(a, b) in v {
        for_each_prefix(a, b, |_, _| n += 1);
    }
    n
}

pub(crate) fn v4_interval(net: &Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

pub(crate) fn v6_interval(net: &Ipv6Net) -> (u128, u128) {
    (u128::from(net.network()), u128::from(net.broadcast()))
}

/// A canonical set of IPv4 and IPv6 addresses. Equality is by content: two /25s equal their /24.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RangeSet {
    /// Sorted, disjoint, non-adjacent inclusive IPv4 intervals.
    pub(crate) v4: Vec<(u32, u32)>,
    /// Sorted, disjoint, non-adjacent inclusive IPv6 intervals.
    pub(crate) v6: Vec<(u128, u128)>,
}

impl RangeSet {
    pub fn new() -> Self {
        RangeSet::default()
    }

    /// Build from already-collected raw intervals (any order, overlaps allowed).
    pub(crate) fn from_intervals(v4: Vec<(u32, u32)>, v6: Vec<(u128, u128)>) -> Self {
        RangeSet {
            v4: normalize(v4),
            v6: normalize(v6),
        }
    }

    /// Build from intervals already canonical (sorted, disjoint, non-adjacent).
    pub(crate) fn from_canonical(v4: Vec<(u32, u32)>, v6: Vec<(u128, u128)>) -> Self {
        debug_assert!(
            v4.windows(2)
                .all(|w| u64::from(w[0].1) + 1 < u64::from(w[1].0))
        );
        debug_assert!(
            v6.windows(2)
                .all(|w| w[0].1.checked_add(1).is_some_and(|e| e < w[1].0))
        );
        RangeSet { v4, v6 }
    }

    /// Build from any prefixes (overlapping, unsorted, duplicated).
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in nets {
            match n {
                IpNet::V4(n) => v4.push(v4_interval(&n)),
                IpNet::V6(n) => v6.push(v6_interval(&n)),
            }
        }
        RangeSet::from_intervals(v4, v6)
    }

    pub fn insert(&mut self, net: IpNet) {
        match net {
            IpNet::V4(n) => self.v4 = union(&self.v4, &[v4_interval(&n)]),
            IpNet::V6(n) => self.v6 = union(&self.v6, &[v6_interval(&n)]),
        }
    }

    pub fn union(&self, other: &RangeSet) -> RangeSet {
        RangeSet {
            v4: union(&self.v4, &other.v4),
            v6: union(&self.v6, &other.v6),
        }
    }

    /// Addresses in `self` but not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        RangeSet {
            v4: difference(&self.v4, &other.v4),
            v6: difference(&self.v6, &other.v6),
        }
    }

    /// When the set, written as prefixes, has a prefix inside the IPv4-mapped block
    /// `::ffff:0:0/96` (only a difference that cuts around the block makes one: `::/80`
    /// minus `::fffe:0:0/96`), the set without that block. Such a prefix is one the strict
    /// parser refuses (providers match IPv4 clients by their IPv4 address, so it admits
    /// nobody), so the set as it stands could not be written and read back.
    pub fn without_mapped_pieces(&self) -> Option<RangeSet> {
        const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);
        let mut piece = false;
        for &(start, end) in &self.v6 {
            if start > MAPPED.1 || end < MAPPED.0 {
                continue;
            }
            // The prefixes of this interval that touch the block are all inside it unless
            // one aligned prefix wider than /96 covers the whole block.
            let covered = (0..96u32).rev().any(|len| {
                let host = u128::MAX >> len;
                let net = MAPPED.0 & !host;
                net >= start && (net | host) <= end
            });
            if !covered {
                piece = true;
            }
        }
        piece.then(|| RangeSet {
            v4: self.v4.clone(),
            v6: difference(&self.v6, &[MAPPED]),
        })
    }

    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        RangeSet {
            v4: intersection(&self.v4, &other.v4),
            v6: intersection(&self.v6, &other.v6),
        }
    }

    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let x = u32::from(a);
                contains_range(&self.v4, x, x)
            }
            IpAddr::V6(a) => {
                let x = u128::from(a);
                contains_range(&self.v6, x, x)
            }
        }
    }

    /// Every address of `net` is in the set.
    pub fn contains_net(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => {
                let (a, b) = v4_interval(n);
                contains_range(&self.v4, a, b)
            }
            IpNet::V6(n) => {
                let (a, b) = v6_interval(n);
                contains_range(&self.v6, a, b)
            }
        }
    }

    /// Every address of `other` is in `self`.
    pub fn is_superset(&self, other: &RangeSet) -> bool {
        is_superset(&self.v4, &other.v4) && is_superset(&self.v6, &other.v6)
    }

    /// Some address of `net` is in the set.
    pub fn overlaps_net(&self, net: &IpNet) -> bool {
        match net {
            IpNet::V4(n) => {
                let (a, b) = v4_interval(n);
                overlaps_range(&self.v4, a, b)
            }
            IpNet::V6(n) => {
                let (a, b) = v6_interval(n);
                overlaps_range(&self.v6, a, b)
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of prefixes in the canonical (minimal) list.
    pub fn len(&self) -> usize {
        self.v4_len() + self.v6_len()
    }

    pub fn v4_len(&self) -> usize {
        prefix_count(&self.v4)
    }

    pub fn v6_len(&self) -> usize {
        prefix_count(&self.v6)
    }

    /// The minimal sorted prefix list: IPv4 before IPv6, numeric order.
    pub fn prefixes(&self) -> Vec<IpNet> {
        let mut out = Vec::with_capacity(self.v4.len() + self.v6.len());
        self.for_each_prefix(|n| out.push(n));
        out
    }

    /// Visit the minimal sorted prefix list without collecting it.
    pub fn for_each_prefix(&self, mut f: impl FnMut(IpNet)) {
        for &(a, b) in &self.v4 {
            for_each_prefix(a, b, |s, l| {
                f(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::from(s), l)));
            });
        }
        for &(a, b) in &self.v6 {
            for_each_prefix(a, b, |s, l| {
                f(IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::from(s), l)));
            });
        }
    }

    pub fn address_count(&self) -> AddressCount {
        let v4 = self
            .v4
            .iter()
            .map(|&(a, b)| u64::from(b - a) + 1)
            .sum::<u64>();
        let mut v6: u128 = 0;
        for &(a, b) in &self.v6 {
            v6 = v6.saturating_add(b - a).saturating_add(1);
        }
        AddressCount { v4, v6 }
    }

    /// The canonical IPv4 intervals (inclusive, sorted, disjoint, non-adjacent).
    pub fn v4_intervals(&self) -> &[(u32, u32)] {
        &self.v4
    }

    /// The canonical IPv6 intervals (inclusive, sorted, disjoint, non-adjacent).
    pub fn v6_intervals(&self) -> &[(u128, u128)] {
        &self.v6
    }
}

/// Address counts of a set, per family. `v6` saturates at `u128::MAX` (only `::/0` reaches it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct AddressCount {
    pub v4: u64,
    pub v6: u128,
}

impl FromIterator<IpNet> for RangeSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        RangeSet::from_nets(iter)
    }
}

impl Extend<IpNet> for RangeSet {
    fn extend<I: IntoIterator<Item = IpNet>>(&mut self, iter: I) {
        let added = RangeSet::from_nets(iter);
        *self = self.union(&added);
    }
}

/// Comma-separated canonical prefixes.
impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut res = Ok(());
        self.for_each_prefix(|n| {
            if res.is_err() {
                return;
            }
            res = if first {
                write!(f, "{n}")
            } else {
                write!(f, ", {n}")
            };
            first = false;
        });
        res
    }
}

/// Serialized as the list of canonical prefix strings.
impl serde::Serialize for RangeSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        use std::fmt::Write as _;
        let mut seq = s.serialize_seq(Some(self.len()))?;
        // One reused string buffer; no list of prefixes is materialized.
        let mut text = String::with_capacity(48);
        let mut res = Ok(());
        self.for_each_prefix(|n| {
            if res.is_ok() {
                text.clear();
                let _ = write!(text, "{n}");
                res = seq.serialize_element(text.as_str());
            }
        });
        res?;
        seq.end()
    }
}
