//! Current vs desired -> [`Plan`]: what an apply would add and remove, and whether it may.

use rangekeeper_cidr::RangeSet;
use rangekeeper_provider::lease::{Lease, Timestamp, split_expired};
use rangekeeper_provider::{Applied, ApplyOptions, Provider, ProviderError, Restriction, State};

use crate::declaration::Target;
use crate::guard;

/// Where a target stands against its declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The target holds exactly the desired set.
    InSync,
    /// An apply would change the target.
    Changes,
    /// A guard refuses the change (see `errors`).
    Refused,
    /// The target could not be read or built.
    Error,
}

/// The plan for one target.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetPlan {
    pub target: String,
    pub provider: String,
    /// The `discover:` template that listed the target (`None`: declared in `targets:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovered_by: Option<String>,
    pub status: Status,
    /// What the target holds now; `None` when unrestricted or unknown.
    pub current: Option<RangeSet>,
    pub unrestricted: bool,
    pub desired: RangeSet,
    pub add: RangeSet,
    pub remove: RangeSet,
    pub unchanged: RangeSet,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// How the target departs from its own restriction in ways an apply repairs (the
    /// provider's [`State::drift`]): a plan with drift has changes even when the sets agree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// The fit-to-limit cover that `desired` is, when the declared set was over the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cover: Option<crate::guard::CoverReport>,
    /// The leases the target keeps (their addresses are in `desired`, beside the declared set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// Stored leases past their expiry: the apply removes them and their addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expired_leases: Vec<Lease>,
    /// Leases this change adds (`grant`) or takes away (`revoke`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted_leases: Vec<Lease>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub revoked_leases: Vec<Lease>,
    /// Whether the provider stores leases: the change is then one conditional write of the
    /// ranges and `leases` against `version`.
    #[serde(skip)]
    pub stores_leases: bool,
    #[serde(skip)]
    pub version: Option<String>,
    /// The part of `desired` the declaration holds (all of it without leases): what the
    /// target must keep admitting once every lease has expired.
    #[serde(skip)]
    pub declared: RangeSet,
}

impl TargetPlan {
    /// Compare `current` with `desired` (the guard's effective set) and fold in the guard's
    /// verdict. Sets are compared canonically, never as strings.
    pub fn new(
        target: &str,
        provider: &str,
        current: &Restriction,
        desired: RangeSet,
        errors: Vec<String>,
        mut warnings: Vec<String>,
    ) -> TargetPlan {
        let (current_set, unrestricted) = match current {
            Restriction::Unrestricted => (None, true),
            Restriction::Ranges(s) => (Some(s.clone()), false),
            // Readers refuse a restriction they do not understand before planning; should one
            // get here, plan as from unrestricted, which restricts to exactly the declared set.
            _ => (None, true),
        };
        let empty = RangeSet::new();
        let cur = current_set.as_ref().unwrap_or(&empty);
        // Shown as the lists are written: whole prefixes in and out, not split pieces.
        let (add, remove) = prefix_diff(cur, &desired);
        let (add, remove) = (RangeSet::from_nets(add), RangeSet::from_nets(remove));
        let unchanged = RangeSet::from_nets(
            desired
                .prefixes()
                .into_iter()
                .filter(|p| !add.contains_net(p)),
        );
        let in_sync = !unrestricted && add.is_empty() && remove.is_empty();
        if unrestricted && errors.is_empty() {
            warnings.push(format!(
                "`{target}` is unrestricted now: applying restricts it to the {} declared range(s)",
                desired.len()
            ));
        }
        let status = if !errors.is_empty() {
            Status::Refused
        } else if in_sync {
            Status::InSync
        } else {
            Status::Changes
        };
        TargetPlan {
            declared: desired.clone(),
            target: target.to_owned(),
            provider: provider.to_owned(),
            discovered_by: None,
            status,
            current: current_set,
            unrestricted,
            desired,
            add,
            remove,
            unchanged,
            details: Vec::new(),
            warnings,
            errors,
            drift: Vec::new(),
            cover: None,
            leases: Vec::new(),
            expired_leases: Vec::new(),
            granted_leases: Vec::new(),
            revoked_leases: Vec::new(),
            stores_leases: false,
            version: None,
        }
    }

    /// Fold in the provider's drift ([`State::drift`]): a target whose sets agree but that
    /// is not as declared (a copy a restart would load differs) has changes to apply.
    pub fn fold_drift(&mut self, drift: &[String]) {
        if drift.is_empty() {
            return;
        }
        self.drift = drift.to_vec();
        if self.status == Status::InSync {
            self.status = Status::Changes;
        }
    }

    /// A plan for a target that could not be read.
    pub fn failed(target: &str, provider: &str, desired: RangeSet, error: String) -> TargetPlan {
        TargetPlan {
            target: target.to_owned(),
            provider: provider.to_owned(),
            discovered_by: None,
            status: Status::Error,
            current: None,
            unrestricted: false,
            desired,
            add: RangeSet::new(),
            remove: RangeSet::new(),
            unchanged: RangeSet::new(),
            details: Vec::new(),
            warnings: Vec::new(),
            errors: vec![error],
            drift: Vec::new(),
            cover: None,
            leases: Vec::new(),
            expired_leases: Vec::new(),
            granted_leases: Vec::new(),
            revoked_leases: Vec::new(),
            stores_leases: false,
            version: None,
            declared: RangeSet::new(),
        }
    }
}

/// The change from `old` to `new` as a person wrote the lists: the aggregated prefixes of
/// `new` that `old` does not have, and those of `old` that `new` does not have (adding
/// `198.51.100.0/24` over a held `198.51.100.7/32` shows `+ 198.51.100.0/24` and
/// `- 198.51.100.7/32`, not eight split prefixes).
pub fn prefix_diff(
    old: &RangeSet,
    new: &RangeSet,
) -> (Vec<rangekeeper_cidr::IpNet>, Vec<rangekeeper_cidr::IpNet>) {
    let (o, n) = (old.prefixes(), new.prefixes());
    let os: std::collections::HashSet<_> = o.iter().collect();
    let ns: std::collections::HashSet<_> = n.iter().collect();
    let added = n.iter().filter(|p| !os.contains(p)).copied().collect();
    let removed = o.iter().filter(|p| !ns.contains(p)).copied().collect();
    (added, removed)
}

// --- planning one bound target: the same for `plan`, `apply`, `update` and `reconcile` ---

/// A target with its provider built.
pub struct Bound<'a> {
    pub target: &'a Target,
    pub provider: Box<dyn Provider>,
    /// This machine's egress IP, when known: changes that lock it out are refused.
    pub lockout: Option<guard::Lockout>,
}

/// Check `desired` for one bound target (policy, capabilities, provider checks).
pub fn check(b: &Bound<'_>, desired: &RangeSet) -> guard::Checked {
    let caps = b.provider.capabilities();
    guard::check(&b.target.name, desired, &b.target.policy, &caps, &|set| {
        b.provider.check(set)
    })
}

/// Read a target's current state and plan the change to `desired`.
pub async fn plan_one(b: &Bound<'_>, desired: &RangeSet) -> (TargetPlan, Option<State>) {
    if !b.target.source_errors.is_empty() {
        let mut plan = TargetPlan::failed(
            &b.target.name,
            &b.target.provider,
            desired.clone(),
            String::new(),
        );
        plan.errors = b.target.source_errors.clone();
        return (plan, None);
    }
    match b.provider.current().await {
        Err(e) => (
            TargetPlan::failed(
                &b.target.name,
                &b.target.provider,
                check(b, desired).effective,
                format!("cannot read the current ranges: {e}"),
            ),
            None,
        ),
        Ok(state) => match state.restriction.known() {
            Err(e) => (
                TargetPlan::failed(
                    &b.target.name,
                    &b.target.provider,
                    check(b, desired).effective,
                    format!("cannot read the current ranges: {e}"),
                ),
                None,
            ),
            Ok(_) => {
                let mut plan = plan_with_state(b, desired, &state);
                if let Err(e) = preflight(b, &state, &mut plan).await {
                    plan.status = Status::Error;
                    plan.errors
                        .push(format!("cannot check the change before applying it: {e}"));
                }
                (plan, Some(state))
            }
        },
    }
}

/// Plan the change of one target from a state already read: the guards (including the
/// lockout guard) and source warnings are folded in. The target keeps its unexpired leases
/// (their addresses join `desired`) and loses its expired ones.
pub fn plan_with_state(b: &Bound<'_>, desired: &RangeSet, state: &State) -> TargetPlan {
    let (kept, _) = split_expired(&state.leases, Timestamp::now());
    plan_with_leases(b, desired, state, kept)
}

/// [`plan_with_state`] with the lease records the target should hold afterwards (`grant` adds
/// one to the unexpired ones, `revoke` takes one away); the desired set is `desired` plus
/// their addresses, under the same guards.
pub fn plan_with_leases(
    b: &Bound<'_>,
    desired: &RangeSet,
    state: &State,
    leases: Vec<Lease>,
) -> TargetPlan {
    let now = Timestamp::now();
    let full = desired.union(&RangeSet::from_nets(leases.iter().map(Lease::net)));
    let mut plan = plan_ranges(b, &full, state);
    plan.declared = desired.clone();
    let held = |l: &Lease| leases.iter().any(|k| k.id == l.id);
    let stored = |l: &Lease| state.leases.iter().any(|s| s.id == l.id);
    plan.expired_leases = state
        .leases
        .iter()
        .filter(|l| l.is_expired(now) && !held(l))
        .cloned()
        .collect();
    plan.revoked_leases = state
        .leases
        .iter()
        .filter(|l| !l.is_expired(now) && !held(l))
        .cloned()
        .collect();
    plan.granted_leases = leases.iter().filter(|l| !stored(l)).cloned().collect();
    plan.stores_leases = b.provider.capabilities().leases;
    plan.version = state.version.clone();
    let records_change = !plan.expired_leases.is_empty()
        || !plan.revoked_leases.is_empty()
        || !plan.granted_leases.is_empty();
    plan.leases = leases;
    if plan.status == Status::InSync && records_change {
        plan.status = Status::Changes;
    }
    if !plan.stores_leases && !plan.leases.is_empty() {
        plan.errors
            .push(b.provider.capabilities().leases_refused.unwrap_or_else(|| {
                format!("the `{}` provider cannot store leases", b.target.provider)
            }));
        plan.status = Status::Refused;
    }
    plan
}

/// Make the target hold what `plan` says: for a provider that stores leases, one conditional
/// write of the ranges and the lease records against the version the plan was read at (a
/// target changed since is a conflict); otherwise a plain apply.
pub async fn write(
    b: &Bound<'_>,
    plan: &TargetPlan,
    opts: &ApplyOptions,
) -> Result<Applied, ProviderError> {
    if plan.stores_leases {
        b.provider
            .apply_leased_declared(
                &plan.declared,
                &plan.desired,
                &plan.leases,
                plan.version.as_deref(),
                opts,
            )
            .await
    } else {
        b.provider.apply(&plan.desired, opts).await
    }
}

/// Plan the ranges alone: guards, cover, lockout and warnings.
fn plan_ranges(b: &Bound<'_>, desired: &RangeSet, state: &State) -> TargetPlan {
    let checked = check(b, desired);
    let name = &b.target.name;
    let provider = &b.target.provider;
    let mut warnings = checked.warnings;
    warnings.extend(state.warnings.iter().cloned());
    warnings.extend(b.target.source_warnings.iter().cloned());
    let mut plan = TargetPlan::new(
        name,
        provider,
        &state.restriction,
        checked.effective,
        checked.errors,
        warnings,
    );
    plan.details = state.details.clone();
    plan.cover = checked.cover;
    plan.fold_drift(&state.drift);
    guard_lockout(b, &state.restriction, &mut plan);
    plan
}

/// The provider's checks that need the target itself ([`Provider::preflight`], e.g. AKS's
/// node egress guard), on a plan that would change it: each violation refuses the plan, so
/// `plan` shows it and `apply` writes nothing anywhere. A check that could not be made is
/// returned for the caller to report (the plan must not go ahead then either).
pub async fn preflight(
    b: &Bound<'_>,
    state: &State,
    plan: &mut TargetPlan,
) -> Result<(), rangekeeper_provider::ProviderError> {
    if plan.status != Status::Changes {
        return Ok(());
    }
    let found = b.provider.preflight(&plan.desired, state).await?;
    let strict = b.target.policy.strict;
    for v in found {
        let text = match &v.range {
            Some(r) => format!("`{r}`: {}", v.message),
            None => v.message.clone(),
        };
        // A warning refuses only a strict target (`--strict`, `strict: true`).
        if v.warning && !strict {
            if !plan.warnings.contains(&text) {
                plan.warnings.push(text);
            }
        } else if v.warning {
            plan.warnings.retain(|w| w != &text);
            plan.errors
                .push(format!("{text} (refused: the target is strict)"));
            plan.status = Status::Refused;
        } else {
            plan.errors.push(text);
            plan.status = Status::Refused;
        }
    }
    Ok(())
}

/// The lockout guard on a plan: refuse (or, with `--allow-lockout`, warn about) a change
/// that leaves this machine's egress IP outside a target it can reach now.
pub fn guard_lockout(
    b: &Bound<'_>,
    current: &rangekeeper_provider::Restriction,
    plan: &mut TargetPlan,
) {
    let Some(l) = &b.lockout else { return };
    if plan.status != Status::Changes {
        return;
    }
    if let Some(msg) = guard::lockout(&b.target.name, l, current, &plan.desired) {
        if l.allowed {
            plan.warnings.push(msg);
        } else {
            plan.errors.push(msg);
            plan.status = Status::Refused;
        }
    }
}

/// Plan every bound target against its declared set, concurrently.
pub async fn plan_all(bound: &[Bound<'_>]) -> Vec<TargetPlan> {
    futures::future::join_all(bound.iter().map(|b| async move {
        let mut plan = plan_one(b, &b.target.desired).await.0;
        plan.discovered_by.clone_from(&b.target.template);
        plan
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rangekeeper_cidr::parse;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| parse(s).unwrap().net))
    }

    #[test]
    fn two_halves_equal_their_whole() {
        let p = TargetPlan::new(
            "t",
            "file",
            &Restriction::Ranges(set(&["10.0.0.0/25", "10.0.0.128/25", "1.2.3.4/32"])),
            set(&["10.0.0.0/24", "1.2.3.4"]),
            vec![],
            vec![],
        );
        assert_eq!(p.status, Status::InSync);
    }

    #[test]
    fn drift_makes_an_agreeing_target_change_and_leaves_refusals_alone() {
        let held = Restriction::Ranges(set(&["1.2.3.4"]));
        let mut p = TargetPlan::new("t", "haproxy", &held, set(&["1.2.3.4"]), vec![], vec![]);
        p.fold_drift(&[]);
        assert_eq!(p.status, Status::InSync);
        p.fold_drift(&["the file differs".to_owned()]);
        assert_eq!(p.status, Status::Changes);
        assert!(p.add.is_empty() && p.remove.is_empty());
        assert_eq!(p.drift, ["the file differs"]);
        let mut p = TargetPlan::new(
            "t",
            "haproxy",
            &held,
            set(&["1.2.3.4"]),
            vec!["refused".into()],
            vec![],
        );
        p.fold_drift(&["the file differs".to_owned()]);
        assert_eq!(p.status, Status::Refused);
    }

    #[test]
    fn unrestricted_target_always_changes() {
        let p = TargetPlan::new(
            "t",
            "aks",
            &Restriction::Unrestricted,
            set(&["1.2.3.4"]),
            vec![],
            vec![],
        );
        assert_eq!(p.status, Status::Changes);
        assert_eq!(p.add, set(&["1.2.3.4"]));
        assert!(!p.warnings.is_empty());
    }

    #[test]
    fn errors_refuse() {
        let p = TargetPlan::new(
            "t",
            "x",
            &Restriction::Unrestricted,
            set(&["1.2.3.4"]),
            vec!["no".into()],
            vec![],
        );
        assert_eq!(p.status, Status::Refused);
    }
}
