//! Factoring shared ranges into named sets: choose the sets that make an imported
//! declaration as short as possible.
//!
//! # The problem
//!
//! Each target holds a set of *atoms* (for `import`: the canonical prefixes it holds now).
//! A declaration writes every target's atoms either literally in its `allow` list, or through
//! named sets. A named set is a list of atoms that is referenced by at least two targets, each
//! of which holds every atom of it. The **cost** of a declaration is the number of entries it
//! writes: every atom in every set, every set reference, every literal. Sets are *disjoint*
//! (an atom is written in at most one set), so each range has one home in the file.
//!
//! A target that holds every atom of a set always references it (one entry instead of at
//! least one literal), so a set's users are exactly the targets that hold all of it.
//!
//! # The method
//!
//! 1. **Classes.** Atoms held by exactly the same targets (the same *signature* σ) are
//!    interchangeable: whatever is best for one is best for all of them, so they are decided
//!    together as one class `C` of weight `|C|`. A class held by one target is written
//!    literally.
//! 2. **Facilities.** A set used by the group of targets `I` (|I| ≥ 2) costs `|I|` references
//!    and can hold any class with `σ ⊇ I`. A class placed in such a set costs
//!    `|C|·(1 + |σ| − |I|)` (its atoms once in the set, literally in the holders outside `I`);
//!    left literal it costs `|C|·|σ|`. So a class always goes to the largest open group it
//!    fits, and the problem is an uncapacitated facility location: choose the open groups `S`
//!    to maximise `Σ_C |C|·max(1, max{|I| : I ∈ S, I ⊆ σ_C}) − Σ_{I∈S} |I|`.
//!    The users of a set are the intersection of its classes' signatures, so only groups in
//!    the *intersection closure* of the signatures need to be considered.
//! 3. **Search.** The covering term is submodular, so the gain of opening a group only
//!    shrinks as others open. Groups whose gain alone does not exceed their cost are dropped;
//!    the rest split into independent components (groups that can serve a common class); each
//!    component is solved by branch and bound: a greedy solution first, then a depth-first
//!    search that prunes a branch when its value plus the sum of the remaining groups'
//!    positive marginal gains cannot beat the best found.
//! 4. **Clean-up.** Sets with the same users are merged (one list of references instead of
//!    two), and each set's users are recomputed as the intersection of its classes'
//!    signatures.
//!
//! The result is optimal under this model (proved against a brute force over every
//! assignment of atoms to sets in the tests) whenever the search completes. The closure and
//! the search have fixed work budgets, so a pathological fleet cannot make `import` hang: if
//! a budget runs out, the best declaration found so far is used and [`Factoring::optimal`] is
//! false. Everything is deterministic, so the same input always gives the same output.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Most groups the intersection closure may hold before it stops growing.
const MAX_CANDIDATES: usize = 4_096;
/// Work units (class visits) the branch and bound may spend over all components.
const SEARCH_BUDGET: u64 = 20_000_000;

/// A named set chosen by [`factor`]: its atoms and the targets that reference it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group<A> {
    /// Sorted, no duplicates.
    pub atoms: Vec<A>,
    /// Target indexes, ascending; at least two.
    pub users: Vec<usize>,
}

/// How every target's atoms are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factoring<A> {
    /// The named sets, largest saving first (ties: by first atom).
    pub sets: Vec<Group<A>>,
    /// Per target: the indexes into `sets` it references, ascending.
    pub uses: Vec<Vec<usize>>,
    /// Per target: the atoms it writes literally, sorted.
    pub literals: Vec<Vec<A>>,
    /// False when a work budget ran out and the result is the best found, not proved optimal.
    pub optimal: bool,
}

impl<A> Factoring<A> {
    /// The number of entries the declaration writes (set atoms, set references, literals).
    pub fn cost(&self) -> usize {
        self.sets.iter().map(|s| s.atoms.len()).sum::<usize>()
            + self.uses.iter().map(Vec::len).sum::<usize>()
            + self.literals.iter().map(Vec::len).sum::<usize>()
    }
}

/// A set of target indexes as a bitset.
type Sig = Box<[u64]>;

fn popcount(s: &[u64]) -> usize {
    s.iter().map(|w| w.count_ones() as usize).sum()
}

fn is_subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

fn and(a: &[u64], b: &[u64]) -> Sig {
    a.iter().zip(b).map(|(x, y)| x & y).collect()
}

fn members(s: &[u64]) -> Vec<usize> {
    let mut out = Vec::new();
    for (w, &word) in s.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            out.push(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
    out
}

/// Atoms held by the same targets.
struct Class<A> {
    atoms: Vec<A>,
    sig: Sig,
    size: usize,
}

/// A group worth considering, with the classes (indexes into the component) it can serve.
struct Candidate {
    sig: Sig,
    size: usize,
    served: Vec<usize>,
}

/// Choose named sets for `holdings` (per target, its atoms) that minimise the number of
/// entries written. See the module documentation for the model and the method.
pub fn factor<A: Ord + Clone + std::hash::Hash>(holdings: &[Vec<A>]) -> Factoring<A> {
    let n = holdings.len();
    let words = n.div_ceil(64).max(1);
    // Signature of every atom.
    let mut sig_of: BTreeMap<&A, Sig> = BTreeMap::new();
    for (t, atoms) in holdings.iter().enumerate() {
        for a in atoms {
            let sig = sig_of
                .entry(a)
                .or_insert_with(|| vec![0u64; words].into_boxed_slice());
            sig[t / 64] |= 1 << (t % 64);
        }
    }
    // Classes in the order of their first atom (BTreeMap order), so results are stable.
    let mut class_of: HashMap<Sig, usize> = HashMap::new();
    let mut classes: Vec<Class<A>> = Vec::new();
    for (a, sig) in sig_of {
        let size = popcount(&sig);
        if size < 2 {
            continue;
        }
        let idx = *class_of.entry(sig.clone()).or_insert_with(|| {
            classes.push(Class {
                atoms: Vec::new(),
                sig,
                size,
            });
            classes.len() - 1
        });
        classes[idx].atoms.push(a.clone());
    }
    let (closure, mut optimal) = intersection_closure(&classes);
    // Candidates with a positive gain on their own (the most they can ever gain).
    let mut cands: Vec<Candidate> = Vec::new();
    for sig in closure {
        let size = popcount(&sig);
        let served: Vec<usize> = (0..classes.len())
            .filter(|&c| is_subset(&sig, &classes[c].sig))
            .collect();
        let gain: usize = served
            .iter()
            .map(|&c| classes[c].atoms.len())
            .sum::<usize>()
            * (size - 1);
        if gain > size {
            cands.push(Candidate { sig, size, served });
        }
    }
    // Independent components: groups that can serve a common class.
    let mut uf = UnionFind::new(classes.len());
    for c in &cands {
        for w in c.served.windows(2) {
            uf.union(w[0], w[1]);
        }
    }
    let mut by_comp: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, c) in cands.iter().enumerate() {
        if let Some(&first) = c.served.first() {
            by_comp.entry(uf.find(first)).or_default().push(i);
        }
    }
    let weights: Vec<u64> = classes.iter().map(|c| c.atoms.len() as u64).collect();
    let mut budget = SEARCH_BUDGET;
    let mut open: Vec<usize> = Vec::new();
    for comp in by_comp.values() {
        let (chosen, complete) = solve_component(comp, &cands, &weights, &mut budget);
        optimal &= complete;
        open.extend(chosen);
    }
    build(holdings, &classes, &cands, &open, optimal)
}

/// Every intersection of two or more class signatures that still names at least two
/// targets, plus the signatures themselves. The bool is false when the cap cut it short.
fn intersection_closure<A>(classes: &[Class<A>]) -> (Vec<Sig>, bool) {
    let base: Vec<&Sig> = classes.iter().map(|c| &c.sig).collect();
    let mut seen: HashSet<Sig> = base.iter().map(|s| (*s).clone()).collect();
    let mut all: Vec<Sig> = base.iter().map(|s| (*s).clone()).collect();
    let mut frontier = all.clone();
    let mut complete = true;
    'grow: while !frontier.is_empty() {
        let mut next = Vec::new();
        for f in &frontier {
            for b in &base {
                let i = and(f, b);
                if popcount(&i) >= 2 && !seen.contains(&i) {
                    if seen.len() >= MAX_CANDIDATES {
                        complete = false;
                        break 'grow;
                    }
                    seen.insert(i.clone());
                    next.push(i.clone());
                    all.push(i);
                }
            }
        }
        frontier = next;
    }
    (all, complete)
}

/// Branch and bound over one component's candidates; returns the open candidates (indexes
/// into `cands`) and whether the search completed within the budget.
fn solve_component(
    comp: &[usize],
    cands: &[Candidate],
    weights: &[u64],
    budget: &mut u64,
) -> (Vec<usize>, bool) {
    // Local view: the component's classes, renumbered.
    let mut local: BTreeMap<usize, usize> = BTreeMap::new();
    for &ci in comp {
        for &c in &cands[ci].served {
            let next = local.len();
            local.entry(c).or_insert(next);
        }
    }
    let w: Vec<u64> = {
        let mut w = vec![0; local.len()];
        for (&c, &l) in &local {
            w[l] = weights[c];
        }
        w
    };
    let mut items: Vec<Item> = comp
        .iter()
        .map(|&ci| Item {
            cand: ci,
            size: cands[ci].size as u64,
            served: cands[ci].served.iter().map(|c| local[c]).collect(),
        })
        .collect();
    // Most promising first (standalone net gain), then larger groups, then a stable order.
    let standalone = |it: &Item| -> i64 {
        let cover: u64 = it.served.iter().map(|&c| w[c]).sum::<u64>() * (it.size - 1);
        cover as i64 - it.size as i64
    };
    items.sort_by(|a, b| {
        standalone(b)
            .cmp(&standalone(a))
            .then(b.size.cmp(&a.size))
            .then(cands[a.cand].sig.cmp(&cands[b.cand].sig))
    });
    let mut s = Search {
        items: &items,
        w: &w,
        best_size: vec![1; w.len()],
        chosen: Vec::new(),
        best_value: 0,
        best: Vec::new(),
        budget,
        exhausted: false,
    };
    s.greedy();
    s.dfs(0, 0);
    let complete = !s.exhausted;
    let best = s.best.iter().map(|&i| items[i].cand).collect();
    (best, complete)
}

struct Item {
    cand: usize,
    size: u64,
    served: Vec<usize>,
}

struct Search<'a> {
    items: &'a [Item],
    w: &'a [u64],
    /// Per class: the size of the largest open group serving it (1: none).
    best_size: Vec<u64>,
    chosen: Vec<usize>,
    best_value: i64,
    best: Vec<usize>,
    budget: &'a mut u64,
    exhausted: bool,
}

impl Search<'_> {
    /// What opening item `i` would gain now, net of its references.
    fn marginal(&mut self, i: usize) -> i64 {
        let it = &self.items[i];
        *self.budget = self.budget.saturating_sub(it.served.len() as u64 + 1);
        let cover: u64 = it
            .served
            .iter()
            .map(|&c| self.w[c] * it.size.saturating_sub(self.best_size[c]))
            .sum();
        cover as i64 - it.size as i64
    }

    fn open(&mut self, i: usize) -> Vec<(usize, u64)> {
        let it = &self.items[i];
        let mut undo = Vec::new();
        for &c in &it.served {
            if self.best_size[c] < it.size {
                undo.push((c, self.best_size[c]));
                self.best_size[c] = it.size;
            }
        }
        self.chosen.push(i);
        undo
    }

    fn close(&mut self, undo: Vec<(usize, u64)>) {
        for (c, s) in undo {
            self.best_size[c] = s;
        }
        self.chosen.pop();
    }

    /// An incumbent: repeatedly open the group with the largest positive marginal gain.
    fn greedy(&mut self) {
        let mut value = 0;
        let mut undos = Vec::new();
        loop {
            let mut pick: Option<(i64, usize)> = None;
            for i in 0..self.items.len() {
                if self.chosen.contains(&i) {
                    continue;
                }
                let m = self.marginal(i);
                if m > 0 && pick.is_none_or(|(pm, _)| m > pm) {
                    pick = Some((m, i));
                }
            }
            let Some((m, i)) = pick else { break };
            value += m;
            undos.push(self.open(i));
        }
        self.best_value = value;
        self.best = self.chosen.clone();
        while let Some(u) = undos.pop() {
            self.close(u);
        }
    }

    fn dfs(&mut self, i: usize, value: i64) {
        if *self.budget == 0 {
            self.exhausted = true;
            return;
        }
        if value > self.best_value {
            self.best_value = value;
            self.best = self.chosen.clone();
        }
        if i == self.items.len() {
            return;
        }
        let mut bound = value;
        let mut here = 0;
        for j in i..self.items.len() {
            let m = self.marginal(j);
            if j == i {
                here = m;
            }
            bound += m.max(0);
        }
        if bound <= self.best_value {
            return;
        }
        // Opening a group that gains nothing now can never gain later (submodularity).
        if here > 0 {
            let undo = self.open(i);
            self.dfs(i + 1, value + here);
            self.close(undo);
        }
        self.dfs(i + 1, value);
    }
}

/// Turn the open groups into sets: each class goes to the largest open group it fits (the
/// first in candidate order on a tie); sets with the same users are merged.
fn build<A: Ord + Clone>(
    holdings: &[Vec<A>],
    classes: &[Class<A>],
    cands: &[Candidate],
    open: &[usize],
    optimal: bool,
) -> Factoring<A> {
    let mut open = open.to_vec();
    open.sort_by(|&a, &b| {
        cands[b]
            .size
            .cmp(&cands[a].size)
            .then(cands[a].sig.cmp(&cands[b].sig))
    });
    // users -> atoms
    let mut sets: BTreeMap<Vec<usize>, (Sig, Vec<A>)> = BTreeMap::new();
    for class in classes {
        let Some(&g) = open.iter().find(|&&g| is_subset(&cands[g].sig, &class.sig)) else {
            continue;
        };
        debug_assert!(class.size >= cands[g].size);
        // Key by the group for now; users are recomputed below.
        let key = members(&cands[g].sig);
        let entry = sets
            .entry(key)
            .or_insert_with(|| (class.sig.clone(), Vec::new()));
        entry.0 = and(&entry.0, &class.sig);
        entry.1.extend(class.atoms.iter().cloned());
    }
    // Merge sets whose users (the intersection of their classes) coincide.
    let mut merged: BTreeMap<Vec<usize>, Vec<A>> = BTreeMap::new();
    for (_, (users, atoms)) in sets {
        merged.entry(members(&users)).or_default().extend(atoms);
    }
    let mut groups: Vec<Group<A>> = merged
        .into_iter()
        .map(|(users, mut atoms)| {
            atoms.sort();
            Group { atoms, users }
        })
        .collect();
    // Largest saving first, then by first atom.
    groups.sort_by(|a, b| {
        let save = |g: &Group<A>| {
            (g.atoms.len() * g.users.len()) as i64 - (g.atoms.len() + g.users.len()) as i64
        };
        save(b).cmp(&save(a)).then(a.atoms.cmp(&b.atoms))
    });
    let mut uses = vec![Vec::new(); holdings.len()];
    for (i, g) in groups.iter().enumerate() {
        for &t in &g.users {
            uses[t].push(i);
        }
    }
    let literals = holdings
        .iter()
        .enumerate()
        .map(|(t, atoms)| {
            let mut lit: Vec<A> = atoms
                .iter()
                .filter(|a| {
                    !uses[t]
                        .iter()
                        .any(|&g| groups[g].atoms.binary_search(a).is_ok())
                })
                .cloned()
                .collect();
            lit.sort();
            lit.dedup();
            lit
        })
        .collect();
    Factoring {
        sets: groups,
        uses,
        literals,
        optimal,
    }
}

struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The cost of the best declaration, by trying every assignment of atoms to sets
    /// (restricted growth strings: label 0 is "literal", labels 1.. are sets).
    fn brute_force(holdings: &[Vec<u8>]) -> usize {
        let holdings: Vec<BTreeSet<u8>> = holdings
            .iter()
            .map(|h| h.iter().copied().collect())
            .collect();
        let atoms: Vec<u8> = holdings
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let literal_cost: usize = holdings.iter().map(BTreeSet::len).sum();
        let mut best = literal_cost;
        let mut labels = vec![0usize; atoms.len()];
        fn rec(
            i: usize,
            max_label: usize,
            labels: &mut Vec<usize>,
            atoms: &[u8],
            holdings: &[BTreeSet<u8>],
            best: &mut usize,
        ) {
            if i == atoms.len() {
                let mut cost = 0;
                let mut covered = vec![0usize; holdings.len()];
                for l in 1..=max_label {
                    let set: Vec<u8> = (0..atoms.len())
                        .filter(|&a| labels[a] == l)
                        .map(|a| atoms[a])
                        .collect();
                    if set.is_empty() {
                        return;
                    }
                    let users: Vec<usize> = (0..holdings.len())
                        .filter(|&t| set.iter().all(|a| holdings[t].contains(a)))
                        .collect();
                    if users.len() < 2 {
                        return;
                    }
                    cost += set.len() + users.len();
                    for t in users {
                        covered[t] += set.len();
                    }
                }
                cost += holdings
                    .iter()
                    .zip(&covered)
                    .map(|(h, c)| h.len() - c)
                    .sum::<usize>();
                *best = (*best).min(cost);
                return;
            }
            for l in 0..=max_label + 1 {
                labels[i] = l;
                rec(i + 1, max_label.max(l), labels, atoms, holdings, best);
            }
        }
        rec(0, 0, &mut labels, &atoms, &holdings, &mut best);
        best
    }

    /// Every target's allow resolves to exactly what it holds; sets are disjoint, each used
    /// by at least two targets that hold all of it.
    fn assert_valid(holdings: &[Vec<u8>], f: &Factoring<u8>) {
        let mut seen = BTreeSet::new();
        for s in &f.sets {
            assert!(
                s.users.len() >= 2,
                "set used by fewer than two targets: {s:?}"
            );
            for a in &s.atoms {
                assert!(seen.insert(*a), "atom {a} in two sets");
            }
        }
        for (t, h) in holdings.iter().enumerate() {
            let want: BTreeSet<u8> = h.iter().copied().collect();
            let mut got: BTreeSet<u8> = f.literals[t].iter().copied().collect();
            for &g in &f.uses[t] {
                assert!(f.sets[g].users.contains(&t));
                for a in &f.sets[g].atoms {
                    assert!(
                        want.contains(a),
                        "target {t} uses a set with {a} it does not hold"
                    );
                    got.insert(*a);
                }
            }
            assert_eq!(got, want, "target {t}");
        }
    }

    fn fleet(max_targets: usize, max_atoms: u8) -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(
            prop::collection::vec(0..max_atoms, 0..=max_atoms as usize),
            1..=max_targets,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]
        #[test]
        fn optimal_against_brute_force(holdings in fleet(5, 6)) {
            let f = factor(&holdings);
            assert_valid(&holdings, &f);
            prop_assert!(f.optimal);
            prop_assert_eq!(f.cost(), brute_force(&holdings));
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, .. ProptestConfig::default() })]
        #[test]
        fn valid_and_never_longer_than_literals(holdings in fleet(20, 24)) {
            let f = factor(&holdings);
            assert_valid(&holdings, &f);
            let literal: usize = holdings.iter().map(|h| h.iter().collect::<BTreeSet<_>>().len()).sum();
            prop_assert!(f.cost() <= literal);
        }

        #[test]
        fn deterministic(holdings in fleet(10, 16)) {
            prop_assert_eq!(factor(&holdings), factor(&holdings));
        }
    }

    #[test]
    fn shared_office_becomes_one_set() {
        let h = vec![vec![1, 2, 3, 10], vec![1, 2, 3, 11], vec![1, 2, 3, 12]];
        let f = factor(&h);
        assert_eq!(
            f.sets,
            vec![Group {
                atoms: vec![1, 2, 3],
                users: vec![0, 1, 2]
            }]
        );
        assert_eq!(f.literals, vec![vec![10], vec![11], vec![12]]);
        assert_eq!(f.cost(), 3 + 3 + 3);
    }

    /// Classes with different holders that share a common pair of targets are worth one set
    /// for the pair, though none is worth a set on its own.
    #[test]
    fn intersection_group_beats_per_class_sets() {
        let mut h = vec![vec![], vec![]];
        for x in 0..6u8 {
            h[0].push(x);
            h[1].push(x);
            h.push(vec![x]);
        }
        let f = factor(&h);
        assert_eq!(f.sets.len(), 1);
        assert_eq!(f.sets[0].users, vec![0, 1]);
        assert_eq!(f.cost(), brute_force(&h));
    }

    #[test]
    fn nothing_shared_means_no_sets() {
        let f = factor(&[vec![1, 2], vec![3], vec![]]);
        assert!(f.sets.is_empty());
        assert_eq!(f.cost(), 3);
    }
}
