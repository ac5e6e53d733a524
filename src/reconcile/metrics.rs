//! Prometheus metrics of the reconciler, rendered in the text exposition format (0.0.4).
//!
//! A dozen gauges and counters with one or two labels do not need a metrics library: the
//! format is a few lines per sample, and rendering it here keeps label escaping and the
//! exact names under test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Default, Clone)]
struct TargetMetrics {
    last_success: Option<f64>,
    last_change: Option<f64>,
    drift: u64,
    applies: u64,
    errors: BTreeMap<&'static str, u64>,
    ranges: usize,
    in_sync: bool,
    /// Unexpired leases held after the last pass, and their ids (`None` before the first
    /// pass that saw the target's leases).
    leases: usize,
    lease_ids: Option<std::collections::BTreeSet<String>>,
    lease_grants: u64,
    lease_revokes: u64,
    lease_expiries: u64,
}

#[derive(Debug, Default, Clone)]
struct SourceMetrics {
    fetched_at: Option<f64>,
    stale: bool,
    has_value: bool,
    ranges: usize,
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone)]
struct TemplateMetrics {
    /// Targets made from the last good listing, and those pending in it.
    targets: usize,
    pending: usize,
    /// Whether the latest listing succeeded.
    up: bool,
    last_success: Option<f64>,
    added: u64,
    vanished: u64,
    errors: BTreeMap<&'static str, u64>,
}

/// What one listing of a template found (see [`Metrics::discovery`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Listing {
    pub targets: usize,
    pub pending: usize,
    pub added: usize,
    pub vanished: usize,
}

#[derive(Debug, Default)]
struct Inner {
    targets: BTreeMap<String, TargetMetrics>,
    sources: BTreeMap<String, SourceMetrics>,
    templates: BTreeMap<String, TemplateMetrics>,
    declaration_valid: bool,
    declaration_reloads: u64,
    declaration_errors: u64,
    audit_errors: u64,
    leader: Option<LeaderMetrics>,
    shards: Option<ShardMetrics>,
    /// Quota scopes slowed down by throttling: the concurrency limit after the last cut, and
    /// how many cuts.
    scopes: BTreeMap<String, (usize, u64)>,
}

/// The replica's shards under `--leader-elect --shards N`.
#[derive(Debug, Clone)]
struct ShardMetrics {
    held: Vec<bool>,
    acquired: u64,
    released: u64,
    replicas: u32,
}

/// The replica's role under `--leader-elect`.
#[derive(Debug, Clone)]
struct LeaderMetrics {
    identity: String,
    lease_duration: Duration,
    leading: bool,
    to_leader: u64,
    to_follower: u64,
    /// When the lease was last read or written successfully (a follower that cannot reach
    /// it could not take over).
    lease_seen: Option<Instant>,
}

/// The reconciler's metrics and health, shared with the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    first_pass_done: AtomicBool,
}

/// Now as Unix seconds.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// Keep only these targets (a target removed from the declaration disappears).
    pub fn retain_targets(&self, names: &[String]) {
        self.with(|i| {
            let kept: std::collections::HashSet<&String> = names.iter().collect();
            i.targets.retain(|k, _| kept.contains(k));
            for n in names {
                i.targets.entry(n.clone()).or_default();
            }
        });
    }

    pub fn target_ranges(&self, target: &str, ranges: usize) {
        self.with(|i| i.targets.entry(target.to_owned()).or_default().ranges = ranges);
    }

    /// The quota scope's API throttled, and its concurrency was cut to `limit`.
    pub fn scope_limit(&self, scope: &str, limit: usize) {
        self.with(|i| {
            let e = i.scopes.entry(scope.to_owned()).or_default();
            e.0 = limit;
            e.1 += 1;
        });
    }

    pub fn success(&self, target: &str, changed: bool) {
        self.with(|i| {
            let t = i.targets.entry(target.to_owned()).or_default();
            let now = now_secs();
            t.last_success = Some(now);
            t.in_sync = true;
            if changed {
                t.last_change = Some(now);
                t.applies += 1;
            }
        });
    }

    /// The leases a target holds after a pass (`held`, by id) and the expired ones the pass
    /// removed: leases new since the last pass count as grants, leases gone without expiring
    /// as revokes.
    pub fn leases(&self, target: &str, held: &[String], expired: &[String]) {
        self.with(|i| {
            let t = i.targets.entry(target.to_owned()).or_default();
            let now: std::collections::BTreeSet<String> = held.iter().cloned().collect();
            if let Some(before) = &t.lease_ids {
                t.lease_grants += now.difference(before).count() as u64;
                t.lease_revokes += before
                    .difference(&now)
                    .filter(|id| !expired.contains(id))
                    .count() as u64;
            }
            t.lease_expiries += expired.len() as u64;
            t.leases = now.len();
            t.lease_ids = Some(now);
        });
    }

    pub fn drift(&self, target: &str) {
        self.with(|i| i.targets.entry(target.to_owned()).or_default().drift += 1);
    }

    pub fn error(&self, target: &str, kind: &'static str) {
        self.with(|i| {
            let t = i.targets.entry(target.to_owned()).or_default();
            t.in_sync = false;
            *t.errors.entry(kind).or_default() += 1;
        });
    }

    /// Mirror a source's state after a refresh.
    pub fn source(&self, st: &crate::sources::SourceState, error_kind: Option<&'static str>) {
        self.with(|i| {
            let s = i.sources.entry(st.spec.name.clone()).or_default();
            s.fetched_at = st
                .fetched_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64());
            s.stale = st.stale;
            s.has_value = st.value.is_some();
            s.ranges = st.value.as_ref().map_or(0, |v| v.len());
            if let Some(k) = error_kind {
                *s.errors.entry(k).or_default() += 1;
            }
        });
    }

    /// A listing of a discovery template: what it found, or the kind of its failure (the
    /// last good list stays in force, its counts unchanged).
    pub fn discovery(&self, template: &str, result: Result<Listing, &'static str>) {
        self.with(|i| {
            let t = i.templates.entry(template.to_owned()).or_default();
            match result {
                Ok(l) => {
                    t.up = true;
                    t.last_success = Some(now_secs());
                    t.targets = l.targets;
                    t.pending = l.pending;
                    t.added += l.added as u64;
                    t.vanished += l.vanished as u64;
                }
                Err(kind) => {
                    t.up = false;
                    *t.errors.entry(kind).or_default() += 1;
                }
            }
        });
    }

    /// Keep only these discovery templates.
    pub fn retain_templates(&self, names: &[String]) {
        self.with(|i| i.templates.retain(|k, _| names.contains(k)));
    }

    pub fn retain_sources(&self, names: &[String]) {
        self.with(|i| i.sources.retain(|k, _| names.contains(k)));
    }

    pub fn declaration(&self, valid: bool, reloaded: bool) {
        self.with(|i| {
            i.declaration_valid = valid;
            if reloaded {
                i.declaration_reloads += 1;
            }
            if !valid {
                i.declaration_errors += 1;
            }
        });
    }

    /// A changed declaration file was rejected: the last valid one stays in force, but the
    /// file on disk is invalid (not ready) until it is fixed.
    pub fn declaration_rejected(&self) {
        self.with(|i| {
            i.declaration_errors += 1;
            i.declaration_valid = false;
        });
    }

    /// An audit record could not be written (the change it records was made).
    pub fn audit_error(&self) {
        self.with(|i| i.audit_errors += 1);
    }

    pub fn set_first_pass_done(&self) {
        self.first_pass_done.store(true, Ordering::SeqCst);
    }

    /// Leader election is on for this replica (`identity`): its role is shown from now on.
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn leader_election(&self, identity: &str, lease_duration: Duration) {
        self.with(|i| {
            i.leader = Some(LeaderMetrics {
                identity: identity.to_owned(),
                lease_duration,
                leading: false,
                to_leader: 0,
                to_follower: 0,
                lease_seen: None,
            });
        });
    }

    /// The replica became the leader (`true`) or stopped being it (`false`).
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn set_leading(&self, leading: bool) {
        self.with(|i| {
            if let Some(l) = i.leader.as_mut()
                && l.leading != leading
            {
                l.leading = leading;
                if leading {
                    l.to_leader += 1;
                } else {
                    l.to_follower += 1;
                }
            }
        });
    }

    /// Sharding is on (`count` shards): the shards this replica holds are shown from now on.
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn sharding(&self, count: u32) {
        self.with(|i| {
            i.shards = Some(ShardMetrics {
                held: vec![false; usize::try_from(count).unwrap_or(0)],
                acquired: 0,
                released: 0,
                replicas: 1,
            });
        });
    }

    /// This replica took shard `shard` (`true`) or stopped holding it (`false`).
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn set_shard_held(&self, shard: u32, held: bool) {
        self.with(|i| {
            if let Some(s) = i.shards.as_mut()
                && let Some(h) = s.held.get_mut(usize::try_from(shard).unwrap_or(usize::MAX))
                && *h != held
            {
                *h = held;
                if held {
                    s.acquired += 1;
                } else {
                    s.released += 1;
                }
            }
        });
    }

    /// The replicas sharing the shards, as this one last counted them (itself included).
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn shard_replicas(&self, n: u32) {
        self.with(|i| {
            if let Some(s) = i.shards.as_mut() {
                s.replicas = n;
            }
        });
    }

    /// Under sharding: the shards this replica holds and how many there are.
    pub fn shards_held(&self) -> Option<(Vec<u32>, u32)> {
        self.with(|i| {
            i.shards.as_ref().map(|s| {
                let held = (0_u32..)
                    .zip(&s.held)
                    .filter(|(_, h)| **h)
                    .map(|(n, _)| n)
                    .collect();
                (held, u32::try_from(s.held.len()).unwrap_or(u32::MAX))
            })
        })
    }

    /// The lease was read or written successfully just now.
    // Called by leader election, which only a build with `kubernetes` has.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub fn lease_seen(&self) {
        self.with(|i| {
            if let Some(l) = i.leader.as_mut() {
                l.lease_seen = Some(Instant::now());
            }
        });
    }

    /// Ready: the declaration file is valid, and the first pass over every target is done;
    /// under leader election a follower instead is ready while it reaches the lease (it
    /// stands by and can take over), since it reconciles nothing.
    ///
    /// Under sharding a replica is ready while it reaches the shard leases: which targets it
    /// reconciles changes as replicas come and go, so "every target passed once" has no
    /// fixed meaning there.
    pub fn ready(&self) -> bool {
        let (valid, leader, sharded) =
            self.with(|i| (i.declaration_valid, i.leader.clone(), i.shards.is_some()));
        valid
            && match leader {
                Some(l) if !l.leading || sharded => {
                    l.lease_seen.is_some_and(|t| t.elapsed() < l.lease_duration)
                }
                _ => self.first_pass_done.load(Ordering::SeqCst),
            }
    }

    /// `Some(true)` for the leader, `Some(false)` for a follower, `None` without leader
    /// election.
    pub fn leading(&self) -> Option<bool> {
        self.with(|i| i.leader.as_ref().map(|l| l.leading))
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let now = now_secs();
        self.with(|i| {
            let mut out = String::new();
            let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
                write_family(&mut out, name, kind, help, samples);
            };
            let t = |name: &str| format!("{{target=\"{}\"}}", escape(name));
            let s = |name: &str| format!("{{source=\"{}\"}}", escape(name));
            family(
                "rangekeeper_target_last_success_timestamp_seconds",
                "gauge",
                "When the target was last seen converged (Unix time).",
                i.targets.iter().filter_map(|(n, m)| m.last_success.map(|v| (t(n), v))).collect(),
            );
            family(
                "rangekeeper_target_last_change_timestamp_seconds",
                "gauge",
                "When rangekeeper last changed the target (Unix time).",
                i.targets.iter().filter_map(|(n, m)| m.last_change.map(|v| (t(n), v))).collect(),
            );
            family(
                "rangekeeper_target_in_sync",
                "gauge",
                "1 when the last reconcile left the target holding its declared ranges.",
                i.targets.iter().map(|(n, m)| (t(n), f64::from(u8::from(m.in_sync)))).collect(),
            );
            family(
                "rangekeeper_target_ranges",
                "gauge",
                "Prefixes in the target's desired set.",
                i.targets.iter().map(|(n, m)| (t(n), m.ranges as f64)).collect(),
            );
            family(
                "rangekeeper_target_leases",
                "gauge",
                "Unexpired leases the target holds (targets whose provider stores leases).",
                i.targets.iter().filter(|(_, m)| m.lease_ids.is_some()).map(|(n, m)| (t(n), m.leases as f64)).collect(),
            );
            family(
                "rangekeeper_target_lease_grants_total",
                "counter",
                "Leases granted on the target (seen new by a reconcile pass).",
                i.targets.iter().filter(|(_, m)| m.lease_ids.is_some()).map(|(n, m)| (t(n), m.lease_grants as f64)).collect(),
            );
            family(
                "rangekeeper_target_lease_revokes_total",
                "counter",
                "Leases revoked on the target before they expired (seen gone by a reconcile pass).",
                i.targets.iter().filter(|(_, m)| m.lease_ids.is_some()).map(|(n, m)| (t(n), m.lease_revokes as f64)).collect(),
            );
            family(
                "rangekeeper_target_lease_expiries_total",
                "counter",
                "Expired leases the reconciler removed from the target (a job that never revoked).",
                i.targets.iter().filter(|(_, m)| m.lease_ids.is_some()).map(|(n, m)| (t(n), m.lease_expiries as f64)).collect(),
            );
            family(
                "rangekeeper_target_drift_total",
                "counter",
                "Times the target was found changed by someone else since rangekeeper last saw it.",
                i.targets.iter().map(|(n, m)| (t(n), m.drift as f64)).collect(),
            );
            family(
                "rangekeeper_target_applies_total",
                "counter",
                "Changes applied to the target.",
                i.targets.iter().map(|(n, m)| (t(n), m.applies as f64)).collect(),
            );
            family(
                "rangekeeper_target_errors_total",
                "counter",
                "Failed reconciles of the target, by kind.",
                i.targets
                    .iter()
                    .flat_map(|(n, m)| {
                        m.errors.iter().map(move |(k, v)| {
                            (format!("{{target=\"{}\",kind=\"{k}\"}}", escape(n)), *v as f64)
                        })
                    })
                    .collect(),
            );
            family(
                "rangekeeper_source_age_seconds",
                "gauge",
                "Age of the source's last good value.",
                i.sources
                    .iter()
                    .filter_map(|(n, m)| m.fetched_at.map(|f| (s(n), (now - f).max(0.0).floor())))
                    .collect(),
            );
            family(
                "rangekeeper_source_stale",
                "gauge",
                "1 when the last refresh failed or was held back and the last good value is used.",
                i.sources.iter().map(|(n, m)| (s(n), f64::from(u8::from(m.stale)))).collect(),
            );
            family(
                "rangekeeper_source_up",
                "gauge",
                "1 when the source has a value (fresh or stale).",
                i.sources.iter().map(|(n, m)| (s(n), f64::from(u8::from(m.has_value)))).collect(),
            );
            family(
                "rangekeeper_source_ranges",
                "gauge",
                "Prefixes in the source's value.",
                i.sources.iter().map(|(n, m)| (s(n), m.ranges as f64)).collect(),
            );
            family(
                "rangekeeper_source_errors_total",
                "counter",
                "Refreshes that gave no new value, by kind (held_back, timeout, too_large, invalid, ...).",
                i.sources
                    .iter()
                    .flat_map(|(n, m)| {
                        m.errors.iter().map(move |(k, v)| {
                            (format!("{{source=\"{}\",kind=\"{k}\"}}", escape(n)), *v as f64)
                        })
                    })
                    .collect(),
            );
            family(
                "rangekeeper_declaration_valid",
                "gauge",
                "1 when the declaration file is valid; 0 after a changed file was rejected (the last valid one stays in force).",
                vec![(String::new(), f64::from(u8::from(i.declaration_valid)))],
            );
            family(
                "rangekeeper_declaration_reloads_total",
                "counter",
                "Changed declaration files loaded.",
                vec![(String::new(), i.declaration_reloads as f64)],
            );
            family(
                "rangekeeper_declaration_errors_total",
                "counter",
                "Changed declaration files rejected as invalid (the last valid one stays).",
                vec![(String::new(), i.declaration_errors as f64)],
            );
            if !i.templates.is_empty() {
                let tp = |name: &str| format!("{{template=\"{}\"}}", escape(name));
                family(
                    "rangekeeper_discovery_up",
                    "gauge",
                    "1 when the template's latest listing succeeded; 0 when it failed (its last good list stays in force).",
                    i.templates.iter().map(|(n, m)| (tp(n), f64::from(u8::from(m.up)))).collect(),
                );
                family(
                    "rangekeeper_discovery_last_success_timestamp_seconds",
                    "gauge",
                    "When the template last listed its targets (Unix time).",
                    i.templates.iter().filter_map(|(n, m)| m.last_success.map(|v| (tp(n), v))).collect(),
                );
                family(
                    "rangekeeper_discovery_targets",
                    "gauge",
                    "Targets made from the template's last good listing.",
                    i.templates.iter().map(|(n, m)| (tp(n), m.targets as f64)).collect(),
                );
                family(
                    "rangekeeper_discovery_pending",
                    "gauge",
                    "Targets the template listed that are still being provisioned (not planned yet).",
                    i.templates.iter().map(|(n, m)| (tp(n), m.pending as f64)).collect(),
                );
                family(
                    "rangekeeper_discovery_added_total",
                    "counter",
                    "Targets that appeared in the template's listing.",
                    i.templates.iter().map(|(n, m)| (tp(n), m.added as f64)).collect(),
                );
                family(
                    "rangekeeper_discovery_vanished_total",
                    "counter",
                    "Targets that vanished from the template's listing and were dropped.",
                    i.templates.iter().map(|(n, m)| (tp(n), m.vanished as f64)).collect(),
                );
                family(
                    "rangekeeper_discovery_errors_total",
                    "counter",
                    "Failed listings of the template, by kind.",
                    i.templates
                        .iter()
                        .flat_map(|(n, m)| {
                            m.errors.iter().map(move |(k, v)| {
                                (format!("{{template=\"{}\",kind=\"{k}\"}}", escape(n)), *v as f64)
                            })
                        })
                        .collect(),
                );
            }
            family(
                "rangekeeper_audit_write_errors_total",
                "counter",
                "Audit records that could not be written (the change they record was made; the record is lost).",
                vec![(String::new(), i.audit_errors as f64)],
            );
            if !i.scopes.is_empty() {
                let sc = |name: &str| format!("{{scope=\"{}\"}}", escape(name));
                family(
                    "rangekeeper_scope_concurrency_limit",
                    "gauge",
                    "Targets of the quota scope (subscription, account and region) read or applied at once after its last slow-down.",
                    i.scopes.iter().map(|(n, (l, _))| (sc(n), *l as f64)).collect(),
                );
                family(
                    "rangekeeper_scope_throttled_total",
                    "counter",
                    "Times the quota scope's API throttled (or said its quota was nearly spent) and its concurrency was halved.",
                    i.scopes.iter().map(|(n, (_, c))| (sc(n), *c as f64)).collect(),
                );
            }
            if let (Some(l), Some(sh)) = (&i.leader, &i.shards) {
                let id = escape(&l.identity);
                family(
                    "rangekeeper_shards",
                    "gauge",
                    "The shards the targets are split into (--shards); each has its own Lease.",
                    vec![(format!("{{identity=\"{id}\"}}"), sh.held.len() as f64)],
                );
                family(
                    "rangekeeper_shard_held",
                    "gauge",
                    "1 while this replica holds the shard's lease and may write to its targets, 0 otherwise.",
                    (0_u32..)
                        .zip(&sh.held)
                        .map(|(n, h)| {
                            (
                                format!("{{identity=\"{id}\",shard=\"{n}\"}}"),
                                f64::from(u8::from(*h)),
                            )
                        })
                        .collect(),
                );
                family(
                    "rangekeeper_shard_transitions_total",
                    "counter",
                    "Times this replica took a shard (to=held) or stopped holding one (to=released).",
                    vec![
                        (format!("{{identity=\"{id}\",to=\"held\"}}"), sh.acquired as f64),
                        (format!("{{identity=\"{id}\",to=\"released\"}}"), sh.released as f64),
                    ],
                );
                family(
                    "rangekeeper_shard_replicas",
                    "gauge",
                    "Replicas sharing the shards as this one last counted them (live member Leases, itself included).",
                    vec![(format!("{{identity=\"{id}\"}}"), f64::from(sh.replicas))],
                );
            } else if let Some(l) = &i.leader {
                let id = escape(&l.identity);
                family(
                    "rangekeeper_leader",
                    "gauge",
                    "1 while this replica holds the leader lease and may write (--leader-elect), 0 while it is a follower.",
                    vec![(format!("{{identity=\"{id}\"}}"), f64::from(u8::from(l.leading)))],
                );
                family(
                    "rangekeeper_leader_transitions_total",
                    "counter",
                    "Times this replica became the leader (to=leader) or stopped being it (to=follower).",
                    vec![
                        (format!("{{identity=\"{id}\",to=\"leader\"}}"), l.to_leader as f64),
                        (format!("{{identity=\"{id}\",to=\"follower\"}}"), l.to_follower as f64),
                    ],
                );
            }
            out
        })
    }
}

/// One metric family: its HELP and TYPE lines and one line per `(labels, value)` sample
/// (`labels` is `{k="v",...}` with values passed through [`escape`], or empty).
pub fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: Vec<(String, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {}", fmt_value(v));
    }
}

pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.3}")
    }
}

/// Escape a label value: backslash, double quote and newline.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labels() {
        let m = Metrics::default();
        m.retain_targets(&["a\"b".to_owned()]);
        m.error("a\"b", "transient");
        m.error("a\"b", "transient");
        m.success("a\"b", true);
        let text = m.render();
        assert!(
            text.contains(
                "rangekeeper_target_errors_total{target=\"a\\\"b\",kind=\"transient\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("rangekeeper_target_applies_total{target=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE rangekeeper_target_drift_total counter"));
        assert!(
            text.contains("\nrangekeeper_audit_write_errors_total 0\n"),
            "{text}"
        );
        m.audit_error();
        assert!(
            m.render()
                .contains("\nrangekeeper_audit_write_errors_total 1\n"),
            "a lost audit record is counted"
        );
        assert!(!m.ready());
        m.declaration(true, false);
        m.set_first_pass_done();
        assert!(m.ready());
    }

    /// The two families of a throttled quota scope appear once a scope has been slowed down,
    /// with its last limit and the number of cuts.
    #[test]
    fn renders_the_slowed_quota_scopes() {
        let m = Metrics::default();
        assert!(!m.render().contains("rangekeeper_scope_"));
        m.scope_limit("aks/subscription/0000-a", 8);
        m.scope_limit("aks/subscription/0000-a", 4);
        m.scope_limit("eks/default/eu-west-1", 8);
        let text = m.render();
        let scopes: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("rangekeeper_scope_"))
            .collect();
        insta::assert_snapshot!("scope_metrics", scopes.join("\n"));
    }
}
