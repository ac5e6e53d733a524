//! `import`: turn what a fleet's targets hold today into a declaration that plans in sync.
//!
//! The skeleton is a declaration whose targets have their provider fields but no (or only a
//! partial) `allow`. [`plan`] takes what each target holds (read by the command through its
//! provider) and decides the declaration: shared ranges factored into named sets
//! ([`factor`]), each set named from what is known about it ([`names`]), and everything the
//! declaration cannot say faithfully said as comments and warnings. [`emit`] writes it.

pub mod emit;
pub mod factor;
pub mod names;

use std::collections::BTreeMap;

use rangekeeper_cidr::{IpNet, RangeSet};
use rangekeeper_provider::{Capabilities, Restriction, State};

use emit::{Entry, Output, TargetOut};

/// What the skeleton says about one imported target, beyond its provider fields.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub name: String,
    /// The skeleton's `allowPrivate`, if set.
    pub allow_private: Option<bool>,
    /// The skeleton's `allowBroad`.
    pub allow_broad: bool,
}

/// One imported target: what the skeleton knows and what the provider reported.
pub struct Read<'a> {
    pub known: Known,
    pub caps: Capabilities,
    pub state: &'a State,
}

/// What import has to tell the user on stderr.
#[derive(Debug, Default)]
pub struct Report {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Whether the factoring was proved optimal.
    pub optimal: bool,
}

/// AKS's special value: only the cluster's own outbound IP.
const OWN_OUTBOUND: &str = "0.0.0.0/32";

/// Decide the imported declaration. `notes` are the notes the skeleton already gives
/// ranges; `taken` are set names the skeleton already uses.
pub fn plan(
    reads: &[Read<'_>],
    notes: &BTreeMap<IpNet, String>,
    taken: &[String],
) -> (Output, Report) {
    let mut report = Report::default();
    // The restricted targets take part in the factoring.
    let restricted: Vec<(usize, &RangeSet)> = reads
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.state.restriction.ranges().map(|s| (i, s)))
        .collect();
    let holdings: Vec<Vec<IpNet>> = restricted.iter().map(|(_, s)| s.prefixes()).collect();
    let f = factor::factor(&holdings);
    report.optimal = f.optimal;
    let user_names: Vec<Vec<&str>> = f
        .sets
        .iter()
        .map(|g| {
            g.users
                .iter()
                .map(|&u| reads[restricted[u].0].known.name.as_str())
                .collect()
        })
        .collect();
    let all: Vec<&str> = restricted
        .iter()
        .map(|(i, _)| reads[*i].known.name.as_str())
        .collect();
    let set_names = names::name_sets(
        &f.sets
            .iter()
            .zip(&user_names)
            .map(|(g, users)| names::SetFacts {
                notes: g
                    .atoms
                    .iter()
                    .filter_map(|a| notes.get(a).map(String::as_str))
                    .collect(),
                users: users.clone(),
                ranges: g.atoms.len(),
            })
            .collect::<Vec<_>>(),
        &all,
        taken,
    );
    let entry = |net: &IpNet| Entry::Cidr {
        net: *net,
        note: notes.get(net).cloned(),
    };
    let sets: Vec<(String, Vec<Entry>)> = f
        .sets
        .iter()
        .zip(&set_names)
        .map(|(g, name)| (name.clone(), g.atoms.iter().map(entry).collect()))
        .collect();
    let saved = holdings.iter().map(Vec::len).sum::<usize>() - f.cost();
    report.infos.push(format!(
        "{} targets imported ({} restricted), {} distinct ranges, {} shared set{}; {} entries written ({} fewer than literal lists{})",
        reads.len(),
        restricted.len(),
        holdings.iter().flatten().collect::<std::collections::BTreeSet<_>>().len(),
        sets.len(),
        if sets.len() == 1 { "" } else { "s" },
        f.cost(),
        saved,
        if f.optimal { ", optimal" } else { ", best found within the search budget" }
    ));
    let mut targets = Vec::new();
    let mut slot = 0;
    for r in reads {
        let name = &r.known.name;
        let Some(set) = r.state.restriction.ranges() else {
            let comment = format!(
                "import: `{name}` ({}) holds no restriction today: anyone may connect. It is left without `allow` (a declaration cannot say \"unrestricted\"); declare its ranges to manage it.",
                r.caps.name
            );
            report.warnings.push(format!(
                "{name}: no restriction today (anyone may connect); written as a comment without `allow`"
            ));
            targets.push((name.clone(), TargetOut::Unrestricted { comment }));
            continue;
        };
        let t = slot;
        slot += 1;
        let mut entries: Vec<Entry> = f.uses[t]
            .iter()
            .map(|&g| Entry::Set(set_names[g].clone()))
            .collect();
        entries.extend(f.literals[t].iter().map(entry));
        let mut comments = Vec::new();
        for w in &r.state.warnings {
            comments.push(format!("import: {w}"));
            report.warnings.push(format!("{name}: {w}"));
        }
        if set.prefixes().iter().any(|n| n.to_string() == OWN_OUTBOUND) {
            comments.push(format!(
                "import: {OWN_OUTBOUND} means only the cluster's own outbound IP may connect; kept as it is"
            ));
            entries = entries
                .into_iter()
                .map(|e| match e {
                    Entry::Cidr { net, note: None } if net.to_string() == OWN_OUTBOUND => {
                        Entry::Cidr {
                            net,
                            note: Some("only the cluster's own outbound IP".into()),
                        }
                    }
                    e => e,
                })
                .collect();
        }
        let mut flags = Vec::new();
        let broad: Vec<String> = set
            .prefixes()
            .iter()
            .filter(|n| match n {
                IpNet::V4(n) => n.prefix_len() < crate::guard::BROADEST_V4,
                IpNet::V6(n) => n.prefix_len() < crate::guard::BROADEST_V6,
            })
            .map(ToString::to_string)
            .collect();
        if !broad.is_empty() && !r.known.allow_broad {
            flags.push(("allowBroad", true));
            let msg = format!(
                "holds {} broader than /{} (IPv4) or /{} (IPv6); kept, with `allowBroad: true` so the guard accepts what it holds today",
                broad.join(", "),
                crate::guard::BROADEST_V4,
                crate::guard::BROADEST_V6
            );
            comments.push(format!("import: {msg}"));
            report.warnings.push(format!("{name}: {msg}"));
        }
        let private: Vec<String> = set
            .prefixes()
            .iter()
            .filter(|n| {
                n.to_string() != OWN_OUTBOUND && rangekeeper_cidr::special_purpose(n).is_some()
            })
            .map(ToString::to_string)
            .collect();
        // Where the provider accepts non-global ranges, only `allowPrivate: false` refuses
        // them, and setting it to true allows them again. Where the provider itself refuses
        // them (AKS), no flag can allow them: they are kept, and the user is told.
        if !private.is_empty() {
            let list = private.join(", ");
            let msg = if !r.caps.private_ranges {
                Some(format!(
                    "holds non-global ranges {list}, which {} refuses in any change; kept as held, but plan refuses this target until they are removed (no policy flag allows them)",
                    r.caps.name
                ))
            } else if r.known.allow_private == Some(false) {
                flags.push(("allowPrivate", true));
                Some(format!(
                    "holds non-global ranges {list}; kept, with `allowPrivate: true` instead of the skeleton's `false`"
                ))
            } else {
                None
            };
            if let Some(msg) = msg {
                comments.push(format!("import: {msg}"));
                report.warnings.push(format!("{name}: {msg}"));
            }
        }
        targets.push((
            name.clone(),
            TargetOut::Allow {
                entries,
                flags,
                comments,
            },
        ));
    }
    (Output { sets, targets }, report)
}

/// A restriction as the import log shows it.
pub fn describe(r: &Restriction) -> String {
    match r {
        Restriction::Unrestricted => "unrestricted".into(),
        Restriction::Ranges(s) => {
            format!("{} range{}", s.len(), if s.len() == 1 { "" } else { "s" })
        }
        Restriction::Unknown(kind) => format!("an unknown kind of restriction ({kind})"),
        _ => "an unknown kind of restriction".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ranges: &[&str]) -> State {
        if ranges.is_empty() {
            return State::new(Restriction::Unrestricted);
        }
        State::new(Restriction::Ranges(RangeSet::from_nets(
            ranges.iter().map(|r| r.parse::<IpNet>().unwrap()),
        )))
    }

    fn read<'a>(
        name: &str,
        caps: &Capabilities,
        state: &'a State,
        allow_private: Option<bool>,
    ) -> Read<'a> {
        Read {
            known: Known {
                name: name.into(),
                allow_private,
                allow_broad: false,
            },
            caps: caps.clone(),
            state,
        }
    }

    fn allow(out: &Output, name: &str) -> TargetOut {
        out.targets
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .clone()
    }

    #[test]
    fn what_cannot_be_said_is_said_as_comments_and_flags() {
        let file = Capabilities::new("file", "")
            .with_ipv6(true)
            .with_private_ranges(true);
        let aks = Capabilities::new("aks", "");
        let office = ["81.2.69.160/28", "140.82.112.0/20"];
        let s_a = state(&[&office[..], &["16.0.0.0/6"]].concat());
        let s_b = state(&[&office[..], &["10.0.0.0/8"]].concat());
        let s_c = state(&[&office[..], &["10.0.0.0/8"]].concat());
        let s_own = state(&["0.0.0.0/32"]);
        let s_open = state(&[]);
        let s_priv = state(&["10.1.0.0/16", "81.2.69.160/28"]);
        let reads = [
            read("a", &file, &s_a, None),
            read("b", &file, &s_b, None),
            read("c", &file, &s_c, Some(false)),
            read("own", &aks, &s_own, None),
            read("open", &aks, &s_open, None),
            read("priv", &aks, &s_priv, None),
        ];
        let (out, report) = plan(&reads, &BTreeMap::new(), &[]);
        assert!(report.optimal);
        let TargetOut::Allow { flags, .. } = allow(&out, "a") else {
            panic!()
        };
        assert_eq!(flags, [("allowBroad", true)]);
        let TargetOut::Allow { flags, .. } = allow(&out, "b") else {
            panic!()
        };
        assert!(flags.is_empty(), "file accepts private ranges");
        let TargetOut::Allow { flags, .. } = allow(&out, "c") else {
            panic!()
        };
        assert_eq!(
            flags,
            [("allowPrivate", true)],
            "the skeleton's false would refuse them"
        );
        let TargetOut::Allow {
            entries, comments, ..
        } = allow(&out, "own")
        else {
            panic!()
        };
        assert_eq!(
            entries,
            [Entry::Cidr {
                net: "0.0.0.0/32".parse().unwrap(),
                note: Some("only the cluster's own outbound IP".into())
            }]
        );
        assert!(comments[0].contains("own outbound IP"));
        assert!(matches!(
            allow(&out, "open"),
            TargetOut::Unrestricted { .. }
        ));
        let TargetOut::Allow {
            flags, comments, ..
        } = allow(&out, "priv")
        else {
            panic!()
        };
        assert!(flags.is_empty(), "no flag allows private ranges on AKS");
        assert!(
            comments[0].contains("no policy flag allows them"),
            "{comments:?}"
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.starts_with("open: no restriction"))
        );
    }
}
