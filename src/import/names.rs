//! Names for imported sets, derived from what is known about them: the notes the skeleton
//! gives their ranges, or the targets that share them. Stable for the same input.

use std::collections::{BTreeMap, HashSet};

/// What is known about one set.
pub struct SetFacts<'a> {
    /// The skeleton's notes on the set's ranges (any order, repeats allowed).
    pub notes: Vec<&'a str>,
    /// The targets that reference it, in declaration order.
    pub users: Vec<&'a str>,
    /// How many ranges it holds.
    pub ranges: usize,
}

/// A set name from free text: lowercase letters, digits and `-`, a letter first.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_end_matches('-').chars().take(40).collect();
    out = out.trim_end_matches('-').to_owned();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "set-");
    }
    out
}

/// The longest common prefix of the names that ends at a separator (`-`, `_`, `.`) or at the
/// end of the shortest name, without the separator.
fn common_prefix(names: &[&str]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let prefix = &first[..len];
    let whole = names
        .iter()
        .all(|n| n.len() == len || n[len..].starts_with(['-', '_', '.']));
    let cut = if whole {
        prefix
    } else {
        match prefix.rfind(['-', '_', '.']) {
            Some(i) => &prefix[..i],
            None => "",
        }
    };
    cut.trim_end_matches(['-', '_', '.']).to_owned()
}

/// One base name for a set, before collisions are resolved: the note most of its ranges
/// carry, else the targets that share it (their common name prefix, "all" when every
/// imported target does, the first words of their names when few, "common" when most do).
fn base_name(facts: &SetFacts<'_>, all: &[&str], atoms: usize) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for n in &facts.notes {
        *counts.entry(n).or_default() += 1;
    }
    // The most common note (ties: the first in alphabetical order), if most ranges carry it.
    if let Some((note, &count)) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        && 2 * count >= atoms
    {
        let s = slug(note);
        if s != "set-" {
            return s;
        }
    }
    let prefix = common_prefix(&facts.users);
    let everyone = facts.users.len() == all.len() && all.len() > 2;
    match (everyone, prefix.len() >= 2) {
        (true, true) => slug(&format!("{prefix}-all")),
        (true, false) => "all-targets".into(),
        (false, true) => slug(&format!("{prefix}-shared")),
        (false, false) => {
            // The distinct first words of the users' names, when there are few.
            let mut stems: Vec<&str> = Vec::new();
            for u in &facts.users {
                let stem = u.split(['-', '_', '.']).next().unwrap_or(u);
                if !stems.contains(&stem) {
                    stems.push(stem);
                }
            }
            match facts.users.as_slice() {
                [a, b] => slug(&format!("{a}-{b}")),
                _ if stems.len() <= 3 => slug(&stems.join("-")),
                _ if 2 * facts.users.len() > all.len() => "common".into(),
                [a, rest @ ..] => slug(&format!("{a}-and-{}-more", rest.len())),
                [] => "shared".into(),
            }
        }
    }
}

/// Names for every set, unique and distinct from `taken`; the n-th repeat of a base name
/// gets `-n` (in the order given, which is deterministic).
pub fn name_sets(sets: &[SetFacts<'_>], all: &[&str], taken: &[String]) -> Vec<String> {
    let mut used: HashSet<String> = taken.iter().cloned().collect();
    sets.iter()
        .map(|f| {
            let base = base_name(f, all, f.ranges);
            let mut name = base.clone();
            let mut n = 2;
            while used.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            used.insert(name.clone());
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(notes: &[&'a str], users: &[&'a str]) -> SetFacts<'a> {
        SetFacts {
            notes: notes.to_vec(),
            users: users.to_vec(),
            ranges: 3,
        }
    }

    #[test]
    fn names_from_notes_then_targets() {
        let all = ["prod-eu-1", "prod-eu-2", "prod-us-1", "lab"];
        let sets = [
            facts(&["Office egress", "VPN", "Office egress"], &all),
            facts(&[], &all),
            facts(&[], &["prod-eu-1", "prod-eu-2"]),
            facts(&[], &["prod-eu-1", "prod-eu-2", "prod-us-1"]),
            facts(&[], &["prod-eu-1", "lab"]),
            facts(&[], &["prod-eu-2", "prod-us-1", "lab"]),
            facts(&[], &["prod-eu-1", "prod-eu-2"]),
        ];
        assert_eq!(
            name_sets(&sets, &all, &["prod-shared".to_owned()]),
            [
                "office-egress",
                "all-targets",
                "prod-eu-shared",
                "prod-shared-2",
                "prod-eu-1-lab",
                "prod-lab",
                "prod-eu-shared-2"
            ]
        );
    }

    #[test]
    fn slugs_are_set_names() {
        for s in ["Office (HQ)", "10.0.0.0/8", "—", "a"] {
            assert!(
                crate::declaration::is_set_name(&slug(s)),
                "{s} -> {}",
                slug(s)
            );
        }
        assert_eq!(common_prefix(&["aks-1", "aks-10"]), "aks");
        assert_eq!(common_prefix(&["edge", "edge-2"]), "edge");
    }
}
