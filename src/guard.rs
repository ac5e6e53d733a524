//! Safety checks on a desired set before anything is applied: never an empty list, never a
//! surprise `0.0.0.0/0`, never drop a protected range, never exceed what the target holds.

use rangekeeper_cidr::{CoverError, CoverRules, ExtraBound, IpNet, RangeSet};
use rangekeeper_provider::{Capabilities, Violation};

use crate::declaration::{MaxExtra, OnExceed, Policy};

/// The outcome of checking one desired set.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// What would be applied: the desired set, or its fit-to-limit cover.
    pub effective: RangeSet,
    /// Problems that refuse the plan.
    pub errors: Vec<String>,
    /// For each of `errors`, the range at fault when one range is (a broad or private
    /// prefix, one a provider refuses), so it can be reported where it is written.
    pub error_ranges: Vec<Option<IpNet>>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// The fit-to-limit cover applied, if one was.
    pub cover: Option<CoverReport>,
}

impl Checked {
    /// Refuse the plan, for one range at fault or for the set as a whole.
    fn refuse(&mut self, range: Option<IpNet>, message: String) {
        self.errors.push(message);
        self.error_ranges.push(range);
    }
}

/// The widest prefix length accepted without `allowBroad` (IPv4, IPv6).
pub use rangekeeper_cidr::{BROADEST_V4, BROADEST_V6};

/// The range limit in force for a target: the policy's, bounded by the provider's.
pub fn range_limit(policy: &Policy, caps: &Capabilities) -> Option<usize> {
    match (policy.max_ranges, caps.max_ranges) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// A fit-to-limit cover as a plan reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverReport {
    /// Canonical prefixes declared, before the cover.
    pub declared_ranges: usize,
    /// The range limit the cover fits.
    pub limit: usize,
    pub cover: rangekeeper_cidr::Cover,
}

impl CoverReport {
    /// One line on what the cover costs, per family: extra addresses, the multiple of the
    /// declared count, and the widest prefix used.
    pub fn summary(&self) -> String {
        format!(
            "fit-to-limit cover: {} declared ranges covered by {} prefixes (limit {}), admitting {}",
            self.declared_ranges,
            self.cover.set.len(),
            self.limit,
            self.per_family()
        )
    }

    /// What the cover admits, per family: extra addresses, the multiple of the family's
    /// declared count and the widest prefix.
    pub fn per_family(&self) -> String {
        let c = &self.cover;
        let mut parts = Vec::new();
        if c.declared.v4 > 0 {
            parts.push(format!(
                "{} extra IPv4 addresses ({:.2}x the declared IPv4 count{})",
                c.extra.v4,
                c.extra_multiple_v4.unwrap_or(0.0),
                c.widest_v4
                    .map(|w| format!(", widest {w}"))
                    .unwrap_or_default()
            ));
        }
        if c.declared.v6 > 0 {
            parts.push(format!(
                "{} extra IPv6 addresses ({:.2}x the declared IPv6 count{})",
                c.extra.v6,
                c.extra_multiple_v6.unwrap_or(0.0),
                c.widest_v6
                    .map(|w| format!(", widest {w}"))
                    .unwrap_or_default()
            ));
        }
        parts.join(" and ")
    }

    /// The cover prefixes that merged several declared ranges, for display.
    pub fn merges(&self) -> Vec<String> {
        self.cover
            .prefixes
            .iter()
            .filter(|p| p.extra > 0)
            .map(|p| {
                let shown: Vec<String> = p.merged.iter().take(4).map(ToString::to_string).collect();
                let more = p.merged.len().saturating_sub(shown.len());
                format!(
                    "{} covers {}{} (+{} extra)",
                    p.net,
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    },
                    p.extra
                )
            })
            .collect()
    }
}

/// Check a desired set against the target's policy, the provider's capabilities and the
/// provider's own checks (`provider_check`, usually `Provider::check`). Over the range limit
/// with `onExceed: cover`, the optimal cover becomes the effective set, and every other check
/// runs on what would really be applied.
pub fn check(
    target: &str,
    desired: &RangeSet,
    policy: &Policy,
    caps: &Capabilities,
    provider_check: &dyn Fn(&RangeSet) -> Vec<Violation>,
) -> Checked {
    let mut out = Checked {
        effective: desired.clone(),
        ..Checked::default()
    };
    if desired.is_empty() {
        out.refuse(None, format!(
            "the allow-list of `{target}` resolves to no addresses at all; an empty list is never applied{}. To lift the restriction on purpose, use `rangekeeper disable --target {target}`",
            match caps.unrestricted {
                rangekeeper_provider::UnrestrictedForm::EmptyList =>
                    format!(" ({} treats an empty list as \"open to the whole internet\")", caps.name),
                _ => String::new(),
            }
        ));
        return out;
    }
    if let (Some(p), Some(c)) = (policy.max_ranges, caps.max_ranges)
        && p > c
    {
        out.refuse(
            None,
            format!("`maxRanges: {p}` is more than {} accepts ({c})", caps.name),
        );
    }
    if let Some(limit) = range_limit(policy, caps)
        && desired.len() > limit
    {
        fit_to_limit(target, desired, limit, policy, caps, &mut out);
    }
    if !policy.protect.is_empty() && !desired.is_superset(&policy.protect) {
        let missing = policy.protect.difference(desired);
        out.refuse(None, format!(
            "the plan would drop protected ranges {missing}; keep them in `allow` (or remove them from `protect` if they may really go)"
        ));
    }
    let effective = out.effective.clone();
    let prefixes = effective.prefixes();
    if !policy.allow_broad {
        for p in prefixes.iter().filter(|p| rangekeeper_cidr::is_broad(p)) {
            let (len, max) = match p {
                IpNet::V4(n) => (n.prefix_len(), BROADEST_V4),
                IpNet::V6(n) => (n.prefix_len(), BROADEST_V6),
            };
            let why = if len == 0 {
                format!("is broader than /{max} (it allows every address)")
            } else if len < max {
                format!("is broader than /{max}")
            } else {
                "holds IPv4-mapped addresses (`::ffff:0:0/96`) as wide as an IPv4 /8 or more, which admit IPv4 clients wherever mapped addresses are matched against IPv6 rules".into()
            };
            out.refuse(
                Some(*p),
                format!(
                    "`{p}` {why}; set `allowBroad: true` on the target if that is really meant"
                ),
            );
        }
    }
    if !caps.ipv6 && effective.v6_len() > 0 {
        let v6: Vec<String> = prefixes
            .iter()
            .filter(|p| matches!(p, IpNet::V6(_)))
            .map(ToString::to_string)
            .collect();
        let first = prefixes.iter().find(|p| matches!(p, IpNet::V6(_))).copied();
        out.refuse(
            first,
            format!(
                "{} accepts IPv4 ranges only; remove the IPv6 ranges {}",
                caps.name,
                v6.join(", ")
            ),
        );
    }
    if !caps.ipv4 && effective.v4_len() > 0 {
        let first = prefixes.iter().find(|p| matches!(p, IpNet::V4(_))).copied();
        out.refuse(
            first,
            format!(
                "{} accepts IPv6 ranges only; remove the IPv4 ranges",
                caps.name
            ),
        );
    }
    // Providers that refuse non-global ranges check them themselves (with their exceptions,
    // such as AKS's 0.0.0.0/32); here only an explicit `allowPrivate: false` is enforced.
    if caps.private_ranges && policy.allow_private == Some(false) {
        for p in &prefixes {
            if let Some((block, why)) = rangekeeper_cidr::special_purpose(p) {
                out.refuse(
                    Some(*p),
                    format!(
                        "`{p}` is not globally routable (it overlaps {block}, {why}) and the target sets `allowPrivate: false`"
                    ),
                );
            }
        }
    }
    for v in provider_check(&effective) {
        let range = v
            .range
            .as_deref()
            .and_then(|r| rangekeeper_cidr::parse(r).ok())
            .map(|p| p.net);
        match v.range {
            Some(r) => out.refuse(range, format!("`{r}`: {}", v.message)),
            None => out.refuse(None, v.message),
        }
    }
    out
}

/// Whether the target must not hold non-global ranges: the provider refuses them, or the
/// target says `allowPrivate: false`.
fn avoids_non_global(policy: &Policy, caps: &Capabilities) -> bool {
    !caps.private_ranges || policy.allow_private == Some(false)
}

/// What a cover for this target must respect: the provider's families and non-global rule,
/// the target's `allowBroad`, and `maxExtra` (per family) when the cover is to be applied.
fn cover_rules(policy: &Policy, caps: &Capabilities, with_max_extra: bool) -> CoverRules {
    CoverRules {
        ipv4: caps.ipv4,
        ipv6: caps.ipv6,
        allow_broad: policy.allow_broad,
        avoid: if avoids_non_global(policy, caps) {
            rangekeeper_cidr::non_global().clone()
        } else {
            RangeSet::new()
        },
        max_extra: policy
            .max_extra
            .filter(|_| with_max_extra)
            .map(|m| match m {
                MaxExtra::Addresses(n) => ExtraBound::Addresses(n),
                MaxExtra::Multiple(x) => ExtraBound::Multiple(x),
            }),
    }
}

/// Over the limit: refuse with the cost of a cover, or apply the optimal cover. The cover is
/// the optimum among those the target accepts (families, non-global blocks, `allowBroad`,
/// `maxExtra` per family), not the plain optimum refused afterwards.
fn fit_to_limit(
    target: &str,
    desired: &RangeSet,
    limit: usize,
    policy: &Policy,
    caps: &Capabilities,
    out: &mut Checked,
) {
    let applying = policy.on_exceed == OnExceed::Cover;
    let model = rangekeeper_cidr::CostModel::default();
    let rules = cover_rules(policy, caps, applying);
    let cover = match rangekeeper_cidr::cover_within(desired, limit, model, &rules) {
        Ok(c) => c,
        Err(CoverError::MaxExtraExceeded { .. }) => {
            // Show what the best cover within the other rules would admit, per family.
            let unbounded = cover_rules(policy, caps, false);
            let detail = match rangekeeper_cidr::cover_within(desired, limit, model, &unbounded) {
                Ok(c) => CoverReport {
                    declared_ranges: desired.len(),
                    limit,
                    cover: c,
                }
                .per_family(),
                Err(e) => e.to_string(),
            };
            let bound = match policy.max_extra {
                Some(MaxExtra::Addresses(n)) => format!("{n} extra addresses in each family"),
                Some(MaxExtra::Multiple(m)) => format!("{m}x the declared count of each family"),
                None => String::new(),
            };
            out.refuse(None, format!(
                "{} ranges after aggregation, but `{target}` takes at most {limit}, and every cover within {limit} prefixes admits more than `maxExtra` allows ({bound}); the optimal cover admits {detail}",
                desired.len()
            ));
            return;
        }
        Err(e) => {
            out.refuse(None, format!(
                "{} ranges after aggregation, but `{target}` takes at most {limit}, and no cover fits: {e}",
                desired.len()
            ));
            return;
        }
    };
    let report = CoverReport {
        declared_ranges: desired.len(),
        limit,
        cover,
    };
    match policy.on_exceed {
        OnExceed::Error => out.refuse(None, format!(
            "{} ranges after aggregation, but `{target}` takes at most {limit}. Set `onExceed: cover` to apply the optimal cover instead; it would admit {}",
            desired.len(),
            report.per_family()
        )),
        OnExceed::Cover => {
            out.effective = report.cover.set.clone();
            out.cover = Some(report);
        }
    }
}

/// This machine's egress IP, for the lockout guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    pub ip: std::net::IpAddr,
    /// How it was found (the `self` set's name, or `--self-echo`).
    pub via: String,
    /// `--allow-lockout`: warn instead of refusing.
    pub allowed: bool,
}

/// The lockout guard: a change that would leave this machine's egress IP outside a target
/// it can reach now (its current set holds the IP, or it is unrestricted) is refused.
/// A target this machine cannot reach now is not made worse by a change, so it passes.
pub fn lockout(
    target: &str,
    guard: &Lockout,
    current: &rangekeeper_provider::Restriction,
    new: &RangeSet,
) -> Option<String> {
    let reachable_now = match current {
        rangekeeper_provider::Restriction::Unrestricted => true,
        rangekeeper_provider::Restriction::Ranges(s) => s.contains_addr(guard.ip),
        // Not understood (readers refuse it before planning): assume reachable, the safe side.
        _ => true,
    };
    if !reachable_now || new.contains_addr(guard.ip) {
        return None;
    }
    Some(format!(
        "the change would lock this machine out of `{target}`: its egress IP {} ({}) is allowed now but not in the new list{}",
        guard.ip,
        guard.via,
        if guard.allowed {
            " (--allow-lockout: applying anyway)"
        } else {
            "; add it (e.g. a set with `self: true`) or pass --allow-lockout"
        }
    ))
}

/// The canonical set of `items`, for the tests below.
#[cfg(test)]
fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        items
            .iter()
            .map(|s| rangekeeper_cidr::parse(s).unwrap().net),
    )
}

#[cfg(test)]
mod lockout_tests {
    use super::*;
    use rangekeeper_provider::Restriction;

    fn guard() -> Lockout {
        Lockout {
            ip: "203.0.113.9".parse().unwrap(),
            via: "set `me`".into(),
            allowed: false,
        }
    }

    #[test]
    fn dropping_the_egress_ip_is_refused() {
        let cur = Restriction::Ranges(set(&["203.0.113.0/24"]));
        let msg = lockout("t", &guard(), &cur, &set(&["198.51.100.0/24"])).unwrap();
        assert!(msg.contains("203.0.113.9"), "{msg}");
        assert!(lockout("t", &guard(), &cur, &set(&["203.0.113.9"])).is_none());
    }

    #[test]
    fn restricting_an_open_target_without_us_is_refused() {
        assert!(
            lockout(
                "t",
                &guard(),
                &Restriction::Unrestricted,
                &set(&["198.51.100.0/24"])
            )
            .is_some()
        );
    }

    #[test]
    fn a_target_we_cannot_reach_now_passes() {
        let cur = Restriction::Ranges(set(&["192.0.2.0/24"]));
        assert!(lockout("t", &guard(), &cur, &set(&["198.51.100.0/24"])).is_none());
    }
}

#[cfg(test)]
mod regression {
    use super::*;
    use rangekeeper_provider::UnrestrictedForm;

    fn caps(max_ranges: usize, ipv6: bool, private_ranges: bool) -> Capabilities {
        Capabilities::new("test", "a test target")
            .with_max_ranges(Some(max_ranges))
            .with_ipv6(ipv6)
            .with_private_ranges(private_ranges)
            .with_unrestricted(UnrestrictedForm::EmptyList)
    }

    fn policy(allow_broad: bool, on_exceed: OnExceed, max_extra: Option<MaxExtra>) -> Policy {
        Policy {
            strict: false,
            max_ranges: None,
            allow_private: None,
            allow_broad,
            protect: RangeSet::new(),
            on_exceed,
            max_extra,
            max_lease_ttl: None,
        }
    }

    /// #10 item 2: `maxExtra: 2x` holds for each family; an IPv6 range does not dilute the
    /// IPv4 multiple, and the refusal gives the per-family figures.
    #[test]
    fn max_extra_multiple_holds_for_each_family() {
        let desired = set(&["1.0.0.0/24", "100.0.0.0/24", "2001:db8::/48"]);
        let p = policy(true, OnExceed::Cover, Some(MaxExtra::Multiple(2.0)));
        let c = check("t", &desired, &p, &caps(2, true, true), &|_| Vec::new());
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        let e = &c.errors[0];
        assert!(e.contains("2x the declared count of each family"), "{e}");
        assert!(e.contains("extra IPv4 addresses"), "{e}");
        assert!(e.contains("extra IPv6 addresses"), "{e}");
        assert!(c.cover.is_none());
    }

    /// #10 item 2: a count bound holds for each family too.
    #[test]
    fn max_extra_count_holds_for_each_family() {
        // Merging the IPv4 pair costs 2 extra; the IPv6 pair 2^80 - 2.
        let desired = set(&["8.8.4.4", "8.8.4.7", "2001:db8::1", "2001:db8:1::"]);
        let p = policy(true, OnExceed::Cover, Some(MaxExtra::Addresses(2)));
        let c = check("t", &desired, &p, &caps(3, true, true), &|_| Vec::new());
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.cover.as_ref().unwrap().cover.extra.v4, 2);
        let c = check("t", &desired, &p, &caps(2, true, true), &|_| Vec::new());
        assert!(
            c.errors[0].contains("2 extra addresses in each family"),
            "{:?}",
            c.errors
        );
    }

    /// #10 item 5: prefixes holding `::ffff:0:0/96` need `allowBroad`.
    #[test]
    fn prefixes_holding_the_ipv4_mapped_block_need_allow_broad() {
        for s in ["::/80", "::fffe:0:0/95"] {
            let desired = RangeSet::from_nets([s.parse().unwrap()]);
            let c = check(
                "t",
                &desired,
                &policy(false, OnExceed::Error, None),
                &caps(10, true, true),
                &|_| Vec::new(),
            );
            assert_eq!(c.errors.len(), 1, "{s}: {:?}", c.errors);
            assert!(c.errors[0].contains("allowBroad"), "{:?}", c.errors);
            let c = check(
                "t",
                &desired,
                &policy(true, OnExceed::Error, None),
                &caps(10, true, true),
                &|_| Vec::new(),
            );
            assert!(c.errors.is_empty(), "{s}: {:?}", c.errors);
        }
    }

    /// #10 item 8: the cover respects the provider's rules: a target that refuses non-global
    /// blocks gets the best cover that avoids them (here 6 extra addresses), not the plain
    /// optimum `192.0.0.8/30` refused afterwards.
    #[test]
    fn cover_respects_the_targets_non_global_rule() {
        let mut items: Vec<String> = (0..197).map(|i| format!("20.{i}.7.1")).collect();
        items.extend(["8.8.4.1", "8.8.4.6", "192.0.0.9", "192.0.0.10"].map(String::from));
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let desired = set(&refs);
        let non_global = |s: &RangeSet| -> Vec<Violation> {
            s.prefixes()
                .iter()
                .filter_map(|p| rangekeeper_cidr::special_purpose(p))
                .map(|(b, why)| Violation::at(b, why))
                .collect()
        };
        let c = check(
            "t",
            &desired,
            &policy(false, OnExceed::Cover, None),
            &caps(200, false, false),
            &non_global,
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(c.effective.len(), 200);
        assert_eq!(c.cover.unwrap().cover.extra.v4, 6);
    }
}

/// Unit tests of [`check`], one rule at a time: what refuses, what only warns, and what the
/// effective set is.
#[cfg(test)]
mod check_tests {
    use super::*;
    use rangekeeper_provider::UnrestrictedForm;

    fn caps() -> Capabilities {
        Capabilities::new("test", "a test target")
            .with_max_ranges(Some(3))
            .with_private_ranges(true)
    }

    fn policy() -> Policy {
        Policy {
            strict: false,
            max_ranges: None,
            allow_private: None,
            allow_broad: false,
            protect: RangeSet::new(),
            on_exceed: OnExceed::Error,
            max_extra: None,
            max_lease_ttl: None,
        }
    }

    fn run(desired: &RangeSet, policy: &Policy, caps: &Capabilities) -> Checked {
        check("t", desired, policy, caps, &|_| Vec::new())
    }

    #[test]
    fn a_valid_set_passes_unchanged() {
        let desired = set(&["192.0.2.0/24", "198.51.100.7"]);
        let c = run(&desired, &policy(), &caps());
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.effective, desired);
        assert!(c.cover.is_none());
    }

    #[test]
    fn an_empty_set_is_refused_and_says_what_empty_means_where_it_opens_the_target() {
        let c = run(&RangeSet::new(), &policy(), &caps());
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(
            c.errors[0].contains("rangekeeper disable --target t"),
            "{:?}",
            c.errors
        );
        assert!(!c.errors[0].contains("whole internet"), "{:?}", c.errors);
        let open = caps().with_unrestricted(UnrestrictedForm::EmptyList);
        let c = run(&RangeSet::new(), &policy(), &open);
        assert!(
            c.errors[0].contains("open to the whole internet"),
            "{:?}",
            c.errors
        );
    }

    #[test]
    fn max_ranges_above_the_providers_limit_is_refused() {
        let p = Policy {
            max_ranges: Some(10),
            ..policy()
        };
        let c = run(&set(&["192.0.2.0/24"]), &p, &caps());
        assert_eq!(
            c.errors,
            vec!["`maxRanges: 10` is more than test accepts (3)"]
        );
    }

    #[test]
    fn the_policys_limit_applies_below_the_providers() {
        let p = Policy {
            max_ranges: Some(1),
            ..policy()
        };
        assert_eq!(range_limit(&p, &caps()), Some(1));
        assert_eq!(range_limit(&policy(), &caps()), Some(3));
        assert_eq!(range_limit(&policy(), &Capabilities::new("x", "x")), None);
        let c = run(&set(&["192.0.2.0/24", "198.51.100.0/24"]), &p, &caps());
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(c.errors[0].contains("takes at most 1"), "{:?}", c.errors);
    }

    #[test]
    fn over_the_limit_refuses_with_the_cost_of_a_cover() {
        let desired = set(&[
            "192.0.2.0/26",
            "192.0.2.128/26",
            "198.51.100.0/24",
            "203.0.113.0/24",
        ]);
        let c = run(&desired, &policy(), &caps());
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(
            c.errors[0].contains("Set `onExceed: cover`"),
            "{:?}",
            c.errors
        );
        assert!(
            c.errors[0].contains("128 extra IPv4 addresses"),
            "{:?}",
            c.errors
        );
        assert_eq!(c.effective, desired, "nothing is covered when refusing");
        assert!(c.cover.is_none());
    }

    #[test]
    fn over_the_limit_with_cover_applies_the_optimal_cover() {
        let desired = set(&[
            "192.0.2.0/26",
            "192.0.2.128/26",
            "198.51.100.0/24",
            "203.0.113.0/24",
        ]);
        let p = Policy {
            on_exceed: OnExceed::Cover,
            ..policy()
        };
        let c = run(&desired, &p, &caps());
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(
            c.effective,
            set(&["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"])
        );
        let report = c.cover.expect("a cover report");
        assert_eq!((report.declared_ranges, report.limit), (4, 3));
        assert_eq!(report.cover.extra.v4, 128);
        assert!(
            desired.difference(&c.effective).is_empty(),
            "the cover covers every address"
        );
    }

    #[test]
    fn dropping_a_protected_range_is_refused_naming_it() {
        let p = Policy {
            protect: set(&["198.51.100.7"]),
            ..policy()
        };
        let c = run(&set(&["192.0.2.0/24"]), &p, &caps());
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(c.errors[0].contains("198.51.100.7/32"), "{:?}", c.errors);
        let c = run(&set(&["192.0.2.0/24", "198.51.100.0/24"]), &p, &caps());
        assert!(
            c.errors.is_empty(),
            "a protected range inside a wider one stays: {:?}",
            c.errors
        );
    }

    #[test]
    fn broad_ranges_need_allow_broad() {
        for (range, why) in [
            ("0.0.0.0/0", "it allows every address"),
            ("10.0.0.0/7", "broader than /8"),
            ("2000::/3", "broader than /32"),
        ] {
            let caps = caps().with_ipv6(true);
            let c = run(&set(&[range]), &policy(), &caps);
            assert_eq!(c.errors.len(), 1, "{range}: {:?}", c.errors);
            assert!(c.errors[0].contains(why), "{range}: {:?}", c.errors);
            assert!(
                c.errors[0].contains("allowBroad: true"),
                "{range}: {:?}",
                c.errors
            );
            let p = Policy {
                allow_broad: true,
                ..policy()
            };
            assert!(run(&set(&[range]), &p, &caps).errors.is_empty(), "{range}");
        }
        // /8 and /32 are the widest accepted without it.
        let c = run(
            &set(&["11.0.0.0/8", "2001:db8::/32"]),
            &policy(),
            &caps().with_ipv6(true),
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
    }

    #[test]
    fn families_the_provider_does_not_take_are_refused() {
        let c = run(&set(&["192.0.2.0/24", "2001:db8::/48"]), &policy(), &caps());
        assert_eq!(
            c.errors,
            vec!["test accepts IPv4 ranges only; remove the IPv6 ranges 2001:db8::/48"]
        );
        let v6_only = caps().with_ipv4(false).with_ipv6(true);
        let c = run(
            &set(&["192.0.2.0/24", "2001:db8::/48"]),
            &policy(),
            &v6_only,
        );
        assert_eq!(
            c.errors,
            vec!["test accepts IPv6 ranges only; remove the IPv4 ranges"]
        );
    }

    #[test]
    fn allow_private_false_refuses_non_global_ranges_where_the_provider_takes_them() {
        let desired = set(&["10.1.0.0/16", "192.0.2.0/24"]);
        // The provider accepts private ranges and the target says nothing: accepted.
        assert!(run(&desired, &policy(), &caps()).errors.is_empty());
        // `allowPrivate: true` changes nothing on such a provider.
        let yes = Policy {
            allow_private: Some(true),
            ..policy()
        };
        assert!(run(&desired, &yes, &caps()).errors.is_empty());
        // `allowPrivate: false`: each non-global range is refused, naming its block.
        let no = Policy {
            allow_private: Some(false),
            ..policy()
        };
        let c = run(&desired, &no, &caps());
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
        assert!(
            c.errors
                .iter()
                .any(|e| e.contains("`10.1.0.0/16` is not globally routable"))
        );
        assert!(
            c.errors
                .iter()
                .any(|e| e.contains("`192.0.2.0/24` is not globally routable"))
        );
        assert!(c.errors.iter().all(|e| e.contains("allowPrivate: false")));
    }

    #[test]
    fn where_the_provider_refuses_private_ranges_its_own_check_decides() {
        // The binary adds nothing of its own: the provider knows its exceptions.
        let strict = caps().with_private_ranges(false);
        let desired = set(&["10.1.0.0/16"]);
        assert!(run(&desired, &policy(), &strict).errors.is_empty());
        let c = check("t", &desired, &policy(), &strict, &|s| {
            s.prefixes()
                .iter()
                .map(|p| Violation::at(p, "is private"))
                .collect()
        });
        assert_eq!(c.errors, vec!["`10.1.0.0/16`: is private"]);
    }

    #[test]
    fn provider_checks_run_on_the_effective_set_after_a_cover() {
        let desired = set(&[
            "192.0.2.0/26",
            "192.0.2.128/26",
            "198.51.100.0/24",
            "203.0.113.0/24",
        ]);
        let p = Policy {
            on_exceed: OnExceed::Cover,
            ..policy()
        };
        let seen = std::cell::RefCell::new(Vec::new());
        let c = check("t", &desired, &p, &caps(), &|s| {
            seen.borrow_mut().push(s.clone());
            vec![Violation::new("the whole set is wrong")]
        });
        assert_eq!(c.errors, vec!["the whole set is wrong"]);
        assert_eq!(seen.into_inner(), vec![c.effective.clone()]);
        assert_eq!(c.effective.len(), 3);
    }
}
