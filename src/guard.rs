//! Safety checks on a desired set before anything is applied: never an empty list, never a
//! surprise `0.0.0.0/0`, never drop a protected range, never exceed what the target holds.

use rangekeeper_cidr::{IpNet, RangeSet};
use rangekeeper_provider::{Capabilities, Violation};

use crate::declaration::{OnExceed, Policy};

/// The outcome of checking one desired set.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// What would be applied: the desired set, or its fit-to-limit cover.
    pub effective: RangeSet,
    /// Problems that refuse the plan.
    pub errors: Vec<String>,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// The widest prefix length accepted without `allowBroad` (IPv4, IPv6).
pub const BROADEST_V4: u8 = 8;
pub const BROADEST_V6: u8 = 32;

/// The range limit in force for a target: the policy's, bounded by the provider's.
pub fn range_limit(policy: &Policy, caps: &Capabilities) -> Option<usize> {
    match (policy.max_ranges, caps.max_ranges) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// Check a desired set against the target's policy, the provider's capabilities and the
/// provider's own checks (`provider_violations`, from `Provider::check`).
pub fn check(
    target: &str,
    desired: &RangeSet,
    policy: &Policy,
    caps: &Capabilities,
    provider_violations: Vec<Violation>,
) -> Checked {
    let mut out = Checked {
        effective: desired.clone(),
        ..Checked::default()
    };
    if desired.is_empty() {
        out.errors.push(format!(
            "the allow-list of `{target}` resolves to no addresses at all; an empty list is never applied{}. To lift the restriction on purpose, use `rangekeeper disable --target {target}`",
            match caps.unrestricted {
                rangekeeper_provider::UnrestrictedForm::EmptyList =>
                    format!(" ({} treats an empty list as \"open to the whole internet\")", caps.name),
                _ => String::new(),
            }
        ));
        return out;
    }
    let prefixes = desired.prefixes();
    if !policy.allow_broad {
        for p in &prefixes {
            let (len, max) = match p {
                IpNet::V4(n) => (n.prefix_len(), BROADEST_V4),
                IpNet::V6(n) => (n.prefix_len(), BROADEST_V6),
            };
            if len < max {
                out.errors.push(format!(
                    "`{p}` is broader than /{max}{}; set `allowBroad: true` on the target if that is really meant",
                    if len == 0 { " (it allows every address)" } else { "" }
                ));
            }
        }
    }
    if !caps.ipv6 && desired.v6_len() > 0 {
        let v6: Vec<String> = prefixes
            .iter()
            .filter(|p| matches!(p, IpNet::V6(_)))
            .map(ToString::to_string)
            .collect();
        out.errors.push(format!(
            "{} accepts IPv4 ranges only; remove the IPv6 ranges {}",
            caps.name,
            v6.join(", ")
        ));
    }
    if !caps.ipv4 && desired.v4_len() > 0 {
        out.errors.push(format!(
            "{} accepts IPv6 ranges only; remove the IPv4 ranges",
            caps.name
        ));
    }
    // Providers that refuse non-global ranges check them themselves (with their exceptions,
    // such as AKS's 0.0.0.0/32); here only an explicit `allowPrivate: false` is enforced.
    if caps.private_ranges && policy.allow_private == Some(false) {
        for p in &prefixes {
            if let Some((block, why)) = rangekeeper_cidr::special_purpose(p) {
                out.errors.push(format!(
                    "`{p}` is not globally routable (it overlaps {block}, {why}) and the target sets `allowPrivate: false`"
                ));
            }
        }
    }
    if let (Some(p), Some(c)) = (policy.max_ranges, caps.max_ranges) {
        if p > c {
            out.errors.push(format!(
                "`maxRanges: {p}` is more than {} accepts ({c})",
                caps.name
            ));
        }
    }
    if !policy.protect.is_empty() && !desired.is_superset(&policy.protect) {
        let missing = policy.protect.difference(desired);
        out.errors.push(format!(
            "the plan would drop protected ranges {missing}; keep them in `allow` (or remove them from `protect` if they may really go)"
        ));
    }
    for v in provider_violations {
        out.errors.push(match v.range {
            Some(r) => format!("`{r}`: {}", v.message),
            None => v.message,
        });
    }
    if let Some(limit) = range_limit(policy, caps) {
        if desired.len() > limit {
            match policy.on_exceed {
                OnExceed::Error => out.errors.push(format!(
                    "{} ranges after aggregation, but `{target}` takes at most {limit}; set `onExceed: cover` to apply the optimal cover of {limit} prefixes, or shorten the list",
                    desired.len()
                )),
                OnExceed::Cover => out.errors.push(format!(
                    "{} ranges after aggregation exceed the limit of {limit}, and fit-to-limit covers are not available in this build",
                    desired.len()
                )),
            }
        }
    }
    out
}
