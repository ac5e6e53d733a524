//! Granting and revoking leases: one conditional read-plan-write cycle per change, run again
//! from a new read whenever another writer got there first (a compare-and-swap conflict), so
//! two jobs granting on one target never drop each other's address.

use std::time::Duration;

use rangekeeper_provider::lease::{Lease, LeaseId, Timestamp, split_expired};
use rangekeeper_provider::{Applied, ApplyOptions, ProviderError, Restriction};

use crate::plan::{self, Bound, Status, TargetPlan};
use crate::retry::{Op, Policy};

/// The longest lease `grant` accepts unless the target's `maxLeaseTtl` says otherwise.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(12 * 3600);

/// What to change.
#[derive(Debug, Clone)]
pub enum Edit {
    Grant(Lease),
    Revoke(LeaseId),
}

/// What a change did.
#[derive(Debug)]
pub enum Done {
    /// The change was written (or the target already held it): the plan it followed.
    Changed {
        plan: Box<TargetPlan>,
        applied: Applied,
    },
    /// `revoke` of a lease the target no longer holds (expired and cleaned, revoked before,
    /// or never there): nothing to do.
    Gone,
}

/// Who asks for a lease, from the CI system's environment where known, else `user@host`.
pub fn requested_by(env: &dyn Fn(&str) -> Option<String>) -> String {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let (Some(run), Some(repo)) = (get("GITHUB_RUN_ID"), get("GITHUB_REPOSITORY")) {
        let actor = get("GITHUB_ACTOR").unwrap_or_else(|| "github".into());
        return format!("{actor}@github:{repo}/actions/runs/{run}");
    }
    if let Some(job) = get("CI_JOB_ID") {
        let who = get("GITLAB_USER_LOGIN").unwrap_or_else(|| "gitlab".into());
        let project = get("CI_PROJECT_PATH").unwrap_or_else(|| "project".into());
        return format!("{who}@gitlab:{project}/-/jobs/{job}");
    }
    if let Some(build) = get("BUILD_BUILDID") {
        let who = get("BUILD_REQUESTEDFOREMAIL")
            .or_else(|| get("BUILD_REQUESTEDFOR"))
            .unwrap_or_else(|| "azure-pipelines".into());
        let project = get("SYSTEM_TEAMPROJECT").unwrap_or_else(|| "project".into());
        return format!("{who}@azure-pipelines:{project}/builds/{build}").replace(' ', "_");
    }
    let user = get("USER")
        .or_else(|| get("LOGNAME"))
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| get("HOSTNAME"))
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// A new lease of `address` for `ttl` from now.
pub fn new_lease(
    address: std::net::IpAddr,
    ttl: Duration,
    requested_by: String,
    reason: Option<String>,
) -> Lease {
    let mut next = || rand::random::<u64>();
    Lease {
        id: LeaseId::random(&mut next),
        address,
        expires: Timestamp::now().plus(ttl),
        requested_by,
        reason,
    }
}

/// Check a requested TTL against the maximum (the target's `maxLeaseTtl`, default 12h).
pub fn check_ttl(target: &str, ttl: Duration, max: Duration) -> Result<(), String> {
    if ttl < Duration::from_secs(1) {
        return Err(format!(
            "a lease lasts at least 1s (`--ttl {}` is shorter)",
            fmt(ttl)
        ));
    }
    if ttl > max {
        return Err(format!(
            "`--ttl {}` is longer than the {} that target `{target}` allows (set `maxLeaseTtl` on the target to change it)",
            fmt(ttl),
            fmt(max)
        ));
    }
    Ok(())
}

fn fmt(d: Duration) -> String {
    crate::sources::spec::format_duration(d)
}

/// Apply one lease change to a bound target: read, plan the declared set plus the leases the
/// target keeps after the edit (expired ones go), check the guards, write conditionally;
/// conflicts start over from a new read, under `policy`'s write deadline.
pub async fn change(
    b: &Bound<'_>,
    edit: &Edit,
    policy: Policy,
    opts: &ApplyOptions,
) -> Result<Done, ProviderError> {
    let caps = b.provider.capabilities();
    if !caps.leases {
        return Err(ProviderError::Invalid(match caps.leases_refused {
            Some(why) => format!(
                "target `{}` cannot grant temporary access: {why}",
                b.target.name
            ),
            None => format!(
                "target `{}`: the `{}` provider cannot store leases, so it cannot grant temporary access",
                b.target.name, b.target.provider
            ),
        }));
    }
    let what = format!(
        "{} on `{}`",
        match edit {
            Edit::Grant(_) => "granting a lease",
            Edit::Revoke(_) => "revoking a lease",
        },
        b.target.name
    );
    // A write whose confirmation failed (someone else wrote right after it) is run again
    // from a new read, which may then find the revoke already done: that is still this
    // revoke's change, for the audit log.
    let tried: std::sync::Mutex<Option<Box<TargetPlan>>> = std::sync::Mutex::new(None);
    let done = policy
        .run(Op::Write, &what, Some(opts.progress.as_ref()), || {
            attempt(b, edit, opts, &tried)
        })
        .await?;
    Ok(match done {
        Done::Gone => match tried.into_inner().ok().flatten() {
            Some(plan) => Done::Changed {
                plan,
                applied: Applied::changed(),
            },
            None => Done::Gone,
        },
        other => other,
    })
}

/// One read-plan-write cycle.
async fn attempt(
    b: &Bound<'_>,
    edit: &Edit,
    opts: &ApplyOptions,
    tried: &std::sync::Mutex<Option<Box<TargetPlan>>>,
) -> Result<Done, ProviderError> {
    let name = &b.target.name;
    let state = b.provider.current().await?;
    state.restriction.known()?;
    let (mut keep, _) = split_expired(&state.leases, Timestamp::now());
    match edit {
        Edit::Grant(lease) => {
            if state.restriction == Restriction::Unrestricted {
                return Err(ProviderError::Invalid(format!(
                    "target `{name}` is unrestricted: everyone may reach it already, and a lease would restrict it to the declared ranges and one address; apply the declaration first"
                )));
            }
            keep.push(lease.clone());
        }
        Edit::Revoke(id) => {
            if !state.leases.iter().any(|l| &l.id == id) {
                return Ok(Done::Gone);
            }
            keep.retain(|l| &l.id != id);
        }
    }
    let mut plan = plan::plan_with_leases(b, &b.target.desired, &state, keep);
    if let Err(e) = plan::preflight(b, &state, &mut plan).await {
        return Err(ProviderError::Other(format!(
            "cannot check the change to `{name}` before applying it: {e}"
        )));
    }
    match plan.status {
        Status::Refused | Status::Error => Err(ProviderError::Invalid(format!(
            "target `{name}` refuses the change: {}",
            plan.errors.join("; ")
        ))),
        Status::InSync => Ok(Done::Changed {
            plan: Box::new(plan),
            applied: Applied::unchanged(),
        }),
        Status::Changes => {
            let applied = match plan::write(b, &plan, opts).await {
                Err(ProviderError::Conflict(m)) => {
                    if let Ok(mut t) = tried.lock() {
                        *t = Some(Box::new(plan));
                    }
                    return Err(ProviderError::Conflict(m));
                }
                other => other?,
            };
            Ok(Done::Changed {
                plan: Box::new(plan),
                applied,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_comes_from_the_ci_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            requested_by(&env(&[
                ("GITHUB_RUN_ID", "42"),
                ("GITHUB_REPOSITORY", "org/repo"),
                ("GITHUB_ACTOR", "alice")
            ])),
            "alice@github:org/repo/actions/runs/42"
        );
        assert_eq!(
            requested_by(&env(&[
                ("CI_JOB_ID", "7"),
                ("CI_PROJECT_PATH", "g/p"),
                ("GITLAB_USER_LOGIN", "bob")
            ])),
            "bob@gitlab:g/p/-/jobs/7"
        );
        assert_eq!(
            requested_by(&env(&[
                ("BUILD_BUILDID", "9"),
                ("SYSTEM_TEAMPROJECT", "My Project"),
                ("BUILD_REQUESTEDFOR", "Carol C")
            ])),
            "Carol_C@azure-pipelines:My_Project/builds/9"
        );
        assert!(requested_by(&env(&[("USER", "dave")])).starts_with("dave@"));
    }

    #[test]
    fn ttls_are_bounded() {
        let max = DEFAULT_MAX_TTL;
        assert!(check_ttl("t", Duration::from_secs(20 * 60), max).is_ok());
        assert!(check_ttl("t", max, max).is_ok());
        let long = check_ttl("t", max + Duration::from_secs(60), max).unwrap_err();
        assert!(long.contains("maxLeaseTtl"), "{long}");
        assert!(check_ttl("t", Duration::from_millis(500), max).is_err());
    }
}
