//! A canonical set as the fewest `ipBlock {cidr, except}` entries, and back.
//!
//! A NetworkPolicy `ipBlock` (and a Calico rule's `nets` + `notNets`) says "this prefix, but
//! not these prefixes inside it". Where a set is a large prefix with a few holes (the natural
//! case: a declared set with an `except`), one block with an `except` list is shorter than the
//! canonical prefix list. [`blocks`] picks, for every aligned prefix of the address space,
//! the cheaper of "split into the two halves" and "this prefix with the complement inside it
//! as `except`", counting each `cidr` and each `except` entry as one entry; ties keep the plain
//! prefixes. [`set_of`] reads blocks back into the canonical set.

use rangekeeper_provider::RangeSet;
use rangekeeper_provider::cidr::{IpNet, Ipv4Net, Ipv6Net};

/// One `ipBlock`: every address of `cidr` but those of `except` (each inside `cidr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl Block {
    /// The number of entries the block costs (`cidr` plus each `except`).
    pub fn cost(&self) -> usize {
        1 + self.except.len()
    }
}

/// The fewest blocks whose union is exactly `set` (IPv4 first, then IPv6, in address order).
pub fn blocks(set: &RangeSet) -> Vec<Block> {
    let mut out = Vec::new();
    for root in [IpNet::V4(Ipv4Net::default()), IpNet::V6(Ipv6Net::default())] {
        emit(set, root, &mut out);
    }
    out
}

/// The set that `blocks` hold: the union of each `cidr` minus its `except`.
pub fn set_of(blocks: &[Block]) -> RangeSet {
    let mut set = RangeSet::new();
    for b in blocks {
        let whole = RangeSet::from_nets([b.cidr]);
        let holes = RangeSet::from_nets(b.except.iter().copied());
        set = set.union(&whole.difference(&holes));
    }
    set
}

/// The cheapest cost of `set ∩ node` as blocks, and the number of prefixes of `node \ set`.
fn cost(set: &RangeSet, node: IpNet) -> (usize, usize) {
    if !set.overlaps_net(&node) {
        return (0, 1);
    }
    if set.contains_net(&node) {
        return (1, 0);
    }
    let Some((l, r)) = halves(node) else {
        // A single address is either in or out; unreachable, but answer safely.
        return (1, 0);
    };
    let (fl, gl) = cost(set, l);
    let (fr, gr) = cost(set, r);
    let holes = gl + gr;
    ((fl + fr).min(1 + holes), holes)
}

/// Emit the blocks [`cost`] chose for `set ∩ node`.
fn emit(set: &RangeSet, node: IpNet, out: &mut Vec<Block>) {
    if !set.overlaps_net(&node) {
        return;
    }
    if set.contains_net(&node) {
        out.push(Block {
            cidr: node,
            except: Vec::new(),
        });
        return;
    }
    let Some((l, r)) = halves(node) else { return };
    let (fl, gl) = cost(set, l);
    let (fr, gr) = cost(set, r);
    if fl + fr <= 1 + gl + gr {
        emit(set, l, out);
        emit(set, r, out);
    } else {
        let whole = RangeSet::from_nets([node]);
        out.push(Block {
            cidr: node,
            except: whole.difference(set).prefixes(),
        });
    }
}

/// The two halves of a prefix (`None` for a single address).
fn halves(net: IpNet) -> Option<(IpNet, IpNet)> {
    let len = net.prefix_len() + 1;
    let mut subs = net.subnets(len).ok()?;
    Some((subs.next()?, subs.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rangekeeper_provider::cidr::parse;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| parse(s).unwrap().net))
    }

    fn net(s: &str) -> IpNet {
        parse(s).unwrap().net
    }

    #[test]
    fn a_prefix_with_one_hole_is_one_block_with_an_except() {
        let s = set(&["10.0.0.0/8"]).difference(&set(&["10.1.0.0/16"]));
        assert_eq!(s.len(), 8);
        let b = blocks(&s);
        assert_eq!(
            b,
            vec![Block {
                cidr: net("10.0.0.0/8"),
                except: vec![net("10.1.0.0/16")]
            }]
        );
        assert_eq!(set_of(&b), s);
    }

    #[test]
    fn plain_prefixes_stay_plain() {
        let s = set(&["192.0.2.0/24", "198.51.100.7", "2001:db8::/32"]);
        let b = blocks(&s);
        assert!(b.iter().all(|b| b.except.is_empty()));
        assert_eq!(b.len(), 3);
        assert_eq!(set_of(&b), s);
    }

    #[test]
    fn ipv6_holes_use_except_too() {
        let s = set(&["2001:db8::/32"]).difference(&set(&["2001:db8:1::/48", "2001:db8:ff::/48"]));
        let b = blocks(&s);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].except.len(), 2);
        assert_eq!(set_of(&b), s);
    }

    #[test]
    fn never_costs_more_than_the_prefix_list() {
        let s = set(&["10.0.0.0/9", "10.128.0.0/10", "203.0.113.0/25", "::1"]);
        let b = blocks(&s);
        assert!(b.iter().map(Block::cost).sum::<usize>() <= s.len());
        assert_eq!(set_of(&b), s);
    }
}
