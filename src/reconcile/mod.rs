//! The reconciler: every target reconciled independently and concurrently (bounded), each
//! requeued after success at the interval and after failure by [`action::error_policy`];
//! drift is detected against what rangekeeper last applied or saw in sync, and corrected.
//! The declaration file and the files its targets' providers import are watched (content
//! hash, symlinks followed), live sources are refreshed on their own schedules, and every
//! change attempt lands in the audit log.
//!
//! The same plan and guards as `apply` decide each change ([`crate::plan::plan_with_state`]).

pub mod action;
pub mod audit;
pub mod fence;
pub mod memory;
pub mod metrics;
pub mod scope;
pub mod server;
pub mod shard;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use rangekeeper_cidr::RangeSet;
use rangekeeper_provider::{ApplyOptions, Progress};
use tokio::task::{Id, JoinSet};

use crate::declaration::{
    Catalog, DeclText, Declaration, LoadError, LoadOptions, Standalone, Target,
};
use crate::discovery::{self, Fleet};
use crate::guard::Lockout;
use crate::plan::Status;
use crate::plan::{self as planning, Bound};
use crate::registry;
use crate::sources::fetch::{FetchError, Fetcher};
use crate::sources::{self, LiveOptions, Refreshed, Store};
use action::{Action, ReconcileError};
use audit::{AuditLog, Record};
use fence::Fence;
use metrics::Metrics;

/// Resolved settings of `rangekeeper reconcile`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The declaration file (with `standalone`, the file the stand-alone target imports).
    pub file: PathBuf,
    /// A provider's stand-alone mode (`registry::standalone`): one target built from flags,
    /// whose provider imports everything from `file`.
    pub standalone: Option<Standalone>,
    pub load: LoadOptions,
    pub live: LiveOptions,
    pub state_dir: PathBuf,
    pub targets: Vec<String>,
    pub once: bool,
    pub interval: Duration,
    /// `--interval` was given (otherwise a stand-alone target's imported check interval is
    /// used, when it has one).
    pub interval_given: bool,
    pub max_backoff: Duration,
    /// At most this many targets in flight at once, in all.
    pub concurrency: usize,
    /// At most this many targets of one quota scope ([`rangekeeper_provider::Provider::quota_scope`])
    /// in flight at once; lowered while the scope is throttled ([`scope`]).
    pub concurrency_per_scope: usize,
    pub grace: Duration,
    pub watch_interval: Duration,
    /// Deadlines of each read and apply, and (`--once`) how many passes a failing target
    /// gets; each pass makes one attempt, the requeue is the retry.
    pub retry: crate::retry::Policy,
    /// Builds a target's provider ([`registry::build`]; tests script their own).
    pub build: Builder,
    /// The quota scope of a target ([`registry::quota_scope`]).
    pub scope_of: ScopeOf,
    /// Whether this process may write now ([`fence::Unfenced`] without `--leader-elect`):
    /// no target is read or applied without a grant, and every apply is checked against it
    /// just before it is sent.
    pub fence: Arc<dyn Fence>,
}

/// The API quota scope of a target from its `provider:` name and fields
/// ([`rangekeeper_provider::QuotaScope`]).
pub type ScopeOf = fn(&str, &rangekeeper_provider::TargetConfig) -> Option<String>;

/// Builds the provider of a target from its `provider:` name and fields.
pub type Builder =
    fn(
        &str,
        &rangekeeper_provider::TargetConfig,
    ) -> Result<Box<dyn rangekeeper_provider::Provider>, rangekeeper_provider::ProviderError>;

impl Settings {
    /// The loop interval a stand-alone mode's config asks for, when `--interval` was not
    /// given (e.g. the check interval of the imported config file).
    fn imported_interval(&self, decl: &Declaration) -> Option<Duration> {
        if self.interval_given
            || !self
                .standalone
                .as_ref()
                .is_some_and(|s| s.interval_from_config)
        {
            return None;
        }
        decl.targets.values().filter_map(|t| t.check_interval).min()
    }

    /// Read what the reconciler enforces: the declaration file, or the declaration of the
    /// stand-alone target (whose file is read by its provider's import hook).
    fn read_text(&self) -> Result<DeclText, crate::declaration::LoadError> {
        match &self.standalone {
            Some(s) => Ok(DeclText::standalone(s)),
            None => DeclText::read(&self.file),
        }
    }
}

/// How often a replica without a grant (a follower) checks whether it got one.
const FOLLOWER_POLL: Duration = Duration::from_millis(100);

/// In `--once` mode, the longest wait between attempts.
const ONCE_MAX_DELAY: Duration = Duration::from_secs(10);

/// Why a change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first time rangekeeper sees the target in this run.
    Initial,
    /// Someone changed the target since rangekeeper last saw it.
    Drift,
    /// The declaration file changed.
    Declaration,
    /// A live source's value changed.
    Source,
    /// The target's provider settings changed (in the declaration or a file its provider
    /// imports), e.g. the restricted ports.
    Config,
    /// A lease stored with the target expired (its job never revoked it).
    LeaseExpiry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Drift => "drift",
            Trigger::Declaration => "declaration",
            Trigger::Source => "source",
            Trigger::Config => "config",
            Trigger::LeaseExpiry => "lease-expiry",
        }
    }
}

/// A change rangekeeper made or tried.
#[derive(Debug, Clone)]
pub struct Change {
    pub added: RangeSet,
    pub removed: RangeSet,
    pub trigger: Trigger,
    /// The settings that changed (`ports: [6443] -> [6443,10254]`), for a `config` change.
    pub config: Vec<String>,
}

/// What one reconcile of a target found and did.
#[derive(Debug)]
pub struct Pass {
    pub target: String,
    /// Ranges added and removed by someone else since rangekeeper last saw the target.
    pub drift: Option<(RangeSet, RangeSet)>,
    /// What the target holds after this pass, when known.
    pub holds: Option<RangeSet>,
    /// The change applied or attempted, if any.
    pub change: Option<Change>,
    pub notes: Vec<String>,
    pub pending: bool,
    pub result: Result<(), ReconcileError>,
    /// A target that stores leases, after a successful pass: the ids of the leases it holds,
    /// and those of the expired leases this pass removed.
    pub leases: Option<(Vec<String>, Vec<String>)>,
    /// The leadership term the write of this pass was sent in, and when it was sent and
    /// when its answer came (wall clock), for the audit record under leader election.
    pub window: Option<(u64, SystemTime, SystemTime)>,
    /// The target's API said its quota is nearly spent ([`rangekeeper_provider::State::quota_low`]):
    /// its scope slows down as if throttled.
    pub quota_low: Option<u64>,
}

/// Logs provider progress.
struct LogProgress(String);

impl Progress for LogProgress {
    fn message(&self, msg: &str) {
        tracing::info!(target: "rangekeeper::progress", "{}: {msg}", self.0);
    }
}

/// Reconcile one target: read, plan under the guards, detect drift, apply. One attempt of
/// each call, bounded by the policy's deadlines.
pub async fn reconcile(
    target: Arc<Target>,
    built: Result<Box<dyn rangekeeper_provider::Provider>, rangekeeper_provider::ProviderError>,
    lockout: Option<Lockout>,
    last_seen: Option<RangeSet>,
    hint: Trigger,
    retry: crate::retry::Policy,
    fence: Arc<dyn Fence>,
) -> Pass {
    match built {
        Ok(provider) => {
            let provider = crate::retry::wrap(provider, &target.name, retry.single_attempt());
            reconcile_with(target, provider, lockout, last_seen, hint, fence).await
        }
        Err(e) => Pass {
            target: target.name.clone(),
            drift: None,
            holds: None,
            change: None,
            notes: Vec::new(),
            pending: false,
            leases: None,
            window: None,
            quota_low: None,
            result: Err(if target.source_errors.is_empty() {
                ReconcileError::Config(e.to_string())
            } else {
                ReconcileError::Source(target.source_errors.clone())
            }),
        },
    }
}

/// [`reconcile`] with the target's provider already built.
pub async fn reconcile_with(
    target: Arc<Target>,
    provider: Box<dyn rangekeeper_provider::Provider>,
    lockout: Option<Lockout>,
    last_seen: Option<RangeSet>,
    hint: Trigger,
    fence: Arc<dyn Fence>,
) -> Pass {
    let mut pass = Pass {
        target: target.name.clone(),
        drift: None,
        holds: None,
        change: None,
        notes: Vec::new(),
        pending: false,
        result: Ok(()),
        leases: None,
        window: None,
        quota_low: None,
    };
    if !target.source_errors.is_empty() {
        pass.result = Err(ReconcileError::Source(target.source_errors.clone()));
        return pass;
    }
    let b = Bound {
        target: &target,
        provider,
        lockout,
    };
    let state = match b.provider.current().await {
        Ok(s) => s,
        Err(e) => {
            pass.result = Err(ReconcileError::Read(e));
            return pass;
        }
    };
    pass.quota_low = state.quota_low;
    // Addresses only leases hold are rangekeeper's own doing, not drift: they are left out
    // of what the reconciler remembers and compares.
    let lease_only = |leases: &[rangekeeper_provider::Lease]| {
        RangeSet::from_nets(leases.iter().map(rangekeeper_provider::Lease::net))
            .difference(&target.desired)
    };
    let leased = lease_only(&state.leases);
    let current = match state.restriction.known() {
        Ok(c) => c.map(|c| c.difference(&leased)),
        Err(e) => {
            pass.result = Err(ReconcileError::Read(e));
            return pass;
        }
    };
    if let Some(seen) = &last_seen {
        let drift = match &current {
            Some(c) if c != seen => Some((c.difference(seen), seen.difference(c))),
            Some(_) => None,
            // Lifted altogether: every range we had set is gone.
            None => Some((RangeSet::new(), seen.clone())),
        };
        pass.drift = drift;
    }
    pass.holds = current.clone();
    let mut plan = planning::plan_with_state(&b, &target.desired, &state);
    if let Err(e) = planning::preflight(&b, &state, &mut plan).await {
        pass.result = Err(ReconcileError::Read(e));
        return pass;
    }
    let ids = |ls: &[rangekeeper_provider::Lease]| ls.iter().map(|l| l.id.to_string()).collect();
    match plan.status {
        Status::InSync => {
            if plan.stores_leases {
                pass.leases = Some((ids(&plan.leases), Vec::new()));
            }
        }
        Status::Refused | Status::Error => {
            pass.result = Err(ReconcileError::Refused(plan.errors.clone()));
            if plan.status == Status::Refused {
                pass.change = Some(Change {
                    added: plan.add.clone(),
                    removed: plan.remove.clone(),
                    trigger: trigger_of(&pass, last_seen.as_ref(), hint),
                    config: Vec::new(),
                });
            }
        }
        Status::Changes => {
            let mut trigger = trigger_of(&pass, last_seen.as_ref(), hint);
            if trigger == Trigger::Drift && pass.drift.is_none() && !plan.expired_leases.is_empty()
            {
                trigger = Trigger::LeaseExpiry;
            }
            let change = Change {
                added: plan.add.clone(),
                removed: plan.remove.clone(),
                trigger,
                config: Vec::new(),
            };
            let opts = ApplyOptions {
                wait: true,
                progress: Arc::new(LogProgress(target.name.clone())),
            };
            // The fence, just before the write is sent: a leader whose lease may have run
            // out (another replica may be writing) sends nothing.
            let Some(grant) = fence
                .grant_for(&target.name)
                .filter(|g| Instant::now() < g.until)
            else {
                pass.result = Err(ReconcileError::Fenced);
                return pass;
            };
            let sent = SystemTime::now();
            let written = planning::write(&b, &plan, &opts).await;
            pass.window = Some((grant.term, sent, SystemTime::now()));
            match written {
                Ok(applied) => {
                    if plan.stores_leases {
                        pass.leases = Some((ids(&plan.leases), ids(&plan.expired_leases)));
                        for l in &plan.expired_leases {
                            tracing::info!(target = %target.name, "lease {} of {} (by {}) expired at {}: removed", l.id, l.address, l.requested_by, l.expires);
                        }
                    }
                    pass.holds = Some(plan.desired.difference(&lease_only(&plan.leases)));
                    pass.notes = applied.notes;
                    pass.pending = applied.pending;
                }
                Err(e) => pass.result = Err(ReconcileError::Apply(e)),
            }
            pass.change = Some(change);
        }
    }
    pass
}

/// Whether a queued entry (`name` of `scope`, due at `due`) still stands: the target is
/// still there, of that scope, due then, not in flight, and (`--once`) not done.
fn queued(
    slots: &HashMap<String, Slot>,
    once: bool,
    scope: &scope::Key,
    name: &str,
    due: Instant,
) -> bool {
    slots
        .get(name)
        .is_some_and(|s| !s.in_flight && s.due == due && &s.scope == scope && !(once && s.done))
}

/// The throttling error of a pass, if that is why it failed.
fn throttling(result: &Result<(), ReconcileError>) -> Option<&rangekeeper_provider::ProviderError> {
    match result {
        Err(ReconcileError::Read(e) | ReconcileError::Apply(e))
            if matches!(e, rangekeeper_provider::ProviderError::Throttled { .. }) =>
        {
            Some(e)
        }
        _ => None,
    }
}

fn trigger_of(pass: &Pass, last_seen: Option<&RangeSet>, hint: Trigger) -> Trigger {
    if pass.drift.is_some() {
        Trigger::Drift
    } else if last_seen.is_none() && hint == Trigger::Initial {
        Trigger::Initial
    } else {
        hint
    }
}

/// Per-target scheduling state.
#[derive(Debug)]
struct Slot {
    due: Instant,
    in_flight: bool,
    /// The API quota the target's calls count against.
    scope: scope::Key,
    /// The scope its reconcile in flight was counted against.
    flight_scope: scope::Key,
    /// When its reconcile in flight started.
    started: Instant,
    /// Since when its passes have been throttled without a success between, and how many.
    throttled_since: Option<Instant>,
    throttles: u32,
    failures: u32,
    /// What the target held after our last apply, or when last seen in sync.
    last_seen: Option<RangeSet>,
    /// Why the next reconcile happens (initial until the first success).
    hint: Trigger,
    /// Settings changed since the last success (each `name: old -> new`): the target's
    /// rules are expected to differ, which is not drift.
    config_change: Vec<String>,
    /// The last refusal recorded in the audit log (refusals repeat every pass).
    last_refusal: Option<String>,
    passes: u32,
    /// `--once`: finished (converged or out of attempts).
    done: bool,
    /// The last result, for the `--once` summary.
    last: Option<Summary>,
}

/// One line of the `--once` summary.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub target: String,
    /// `in-sync`, `applied`, `pending`, `refused` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<&'static str>,
    pub added: RangeSet,
    pub removed: RangeSet,
    /// Settings changed by this change (`ports: [6443] -> [6443,10254]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Stale sources and other things to know.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the audit record of this change could not be written (it is lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_error: Option<String>,
}

/// What a run ended with.
#[derive(Debug)]
pub struct RunOutcome {
    pub summaries: Vec<Summary>,
    /// In-flight work did not finish within the grace period.
    pub aborted: bool,
    /// What the `discover:` templates found last (empty without templates).
    pub discovery: discovery::Expanded,
}

/// How soon a template listing a target still being provisioned lists again (at most its
/// interval).
const PENDING_RECHECK: Duration = Duration::from_secs(30);

fn hash_text(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// A hash of the declaration's text and of every file its targets import (content, or why it
/// cannot be read): any change to any of them is a change to what is enforced.
fn hash_inputs(text: &str, imported: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    for path in imported {
        path.hash(&mut h);
        match rangekeeper_provider::fs::read_regular(
            path,
            crate::declaration::MAX_FILE_BYTES,
            "an imported file",
        ) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.to_string().hash(&mut h),
        }
    }
    h.finish()
}

fn report_load_error(file: &str, e: &LoadError) -> String {
    let errors: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    format!("{file} is not valid: {}", errors.join("; "))
}

/// The targets named with `--target` (all when none).
fn selected<'a>(names: &[String], decl: &'a Declaration) -> Vec<&'a Target> {
    decl.targets
        .values()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .collect()
}

/// The reconciler's state between passes.
struct Controller {
    settings: Settings,
    known: Catalog,
    text: DeclText,
    text_hash: u64,
    decl: Declaration,
    store: Store,
    fetcher: Fetcher,
    slots: HashMap<String, Slot>,
    metrics: Arc<Metrics>,
    audit: AuditLog,
    memory: memory::Memory,
    /// The last good listing of each discovery template.
    fleet: Fleet,
    /// What the templates contributed at the last resolve.
    expanded: discovery::Expanded,
    /// When each template lists next, and its consecutive failures.
    discovery_due: HashMap<String, (Instant, u32)>,
    /// The due targets of each quota scope, and each scope's concurrency.
    scheduler: scope::Scheduler,
}

/// Whether the desired list (or its policy or sources) changed, as opposed to settings alone.
fn desired_changed(old: Option<&Target>, new: &Target) -> bool {
    old.is_none_or(|o| {
        o.desired != new.desired || o.source_errors != new.source_errors || o.policy != new.policy
    })
}

/// The provider settings that differ between two versions of a target, each as
/// `name: old -> new`.
fn config_changes(
    a: &serde_json::Map<String, serde_json::Value>,
    b: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None => "(unset)".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

impl Controller {
    /// Resolve the current text with the store's values; source problems and the egress
    /// IP are marked.
    fn resolve(&mut self, text: &DeclText) -> Result<Declaration, LoadError> {
        let mut d = text.resolve(self.settings.load, &self.known, &self.store.values())?;
        self.store.annotate(&mut d);
        // The discovered targets join after the marks: they copy their template's.
        self.expanded = self.fleet.expand(&mut d);
        Ok(d)
    }

    /// Follow the templates of a newly loaded declaration: a new template, or one whose
    /// provider or provider fields changed, lists now (a changed one's old list is
    /// forgotten: it no longer says what the template would list); a removed one is forgotten.
    fn sync_templates(&mut self, new: &Declaration) {
        let now = Instant::now();
        let old = self.decl.discover.as_ref().map(|d| &d.templates);
        let new_templates = new.discover.as_ref().map(|d| &d.templates);
        let names: Vec<String> = new_templates
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        for name in self.discovery_due.keys().cloned().collect::<Vec<_>>() {
            if !names.contains(&name) {
                self.discovery_due.remove(&name);
                self.fleet.forget(&name);
            }
        }
        self.metrics.retain_templates(&names);
        for (name, t) in new_templates.into_iter().flatten() {
            let same = old.and_then(|o| o.get(name)).is_some_and(|o| {
                o.target.provider == t.target.provider
                    && o.target.config.fields == t.target.config.fields
            });
            if !same {
                if self.fleet.has_list(name) {
                    tracing::info!(
                        template = %name,
                        "the provider fields of template `{name}` changed: listing its targets again"
                    );
                }
                self.fleet.forget(name);
                self.discovery_due.insert(name.clone(), (now, 0));
            }
        }
    }

    /// Templates due to list again.
    fn templates_due(&self, now: Instant) -> Vec<crate::declaration::Template> {
        let Some(d) = &self.decl.discover else {
            return Vec::new();
        };
        d.templates
            .values()
            .filter(|t| {
                self.discovery_due
                    .get(&t.name)
                    .is_none_or(|(due, _)| *due <= now)
            })
            .cloned()
            .collect()
    }

    /// When the next template lists again.
    fn next_discovery(&self) -> Option<Instant> {
        self.discovery_due.values().map(|(due, _)| *due).min()
    }

    /// Record a template's listing: logs and metrics for what appeared, vanished or became
    /// ready; a failure keeps the last good list and is retried with backoff. When the list
    /// changed, the declaration is resolved again and the targets follow.
    fn discovery_done(
        &mut self,
        name: &str,
        r: Result<Vec<rangekeeper_provider::DiscoveredTarget>, rangekeeper_provider::ProviderError>,
    ) {
        let now = Instant::now();
        let interval = self
            .decl
            .discover
            .as_ref()
            .map_or(crate::declaration::DEFAULT_DISCOVERY_INTERVAL, |d| {
                d.interval
            });
        let failures = self.discovery_due.get(name).map_or(0, |(_, f)| *f);
        match &r {
            Err(e) => {
                let failures = failures.saturating_add(1);
                let retry_in = crate::retry::delay_after(
                    Some(e),
                    Duration::from_secs(1),
                    self.settings.max_backoff.min(interval),
                    failures,
                );
                let kept = if self.fleet.has_list(name) {
                    "its last good list stays in force"
                } else {
                    "it has no good list yet, so it contributes no target"
                };
                tracing::error!(
                    template = %name,
                    kind = e.kind(),
                    retry_in = %crate::sources::spec::format_duration(Duration::from_secs(retry_in.as_secs().max(1))),
                    "discovery by template `{name}` failed: {e}; {kept}"
                );
                self.metrics.discovery(name, Err(e.kind()));
                self.discovery_due
                    .insert(name.to_owned(), (now + retry_in, failures));
            }
            Ok(list) => {
                let pending = list.iter().filter(|d| d.pending.is_some()).count();
                let next = if pending > 0 {
                    interval.min(PENDING_RECHECK)
                } else {
                    interval
                };
                self.discovery_due.insert(name.to_owned(), (now + next, 0));
            }
        }
        let ok = r.is_ok();
        let recorded = self.fleet.record(name, r);
        for n in &recorded.added {
            tracing::info!(template = %name, target = %n, "template `{name}` discovered `{n}`");
        }
        for n in &recorded.ready {
            tracing::info!(template = %name, target = %n, "`{n}` (template `{name}`) is ready: it is reconciled from now on");
        }
        for n in &recorded.vanished {
            tracing::info!(template = %name, target = %n, "`{n}` vanished from template `{name}`'s listing: dropped (nothing is changed on it)");
        }
        if recorded.changed {
            let text = self.text.clone();
            match self.resolve(&text) {
                Ok(d) => self.install(d, Trigger::Declaration),
                Err(e) => tracing::error!("{}", report_load_error(&text.file, &e)),
            }
        }
        if ok && let Some(t) = self.expanded.0.iter().find(|t| t.template == name) {
            self.metrics.discovery(
                name,
                Ok(metrics::Listing {
                    targets: t.targets.len(),
                    pending: t.pending.len(),
                    added: recorded.added.len(),
                    vanished: recorded.vanished.len(),
                }),
            );
        }
    }

    /// Replace the declaration; targets whose desired set or source status changed are due
    /// now with `why`; new targets start, removed ones are dropped.
    fn install(&mut self, decl: Declaration, why: Trigger) {
        let now = Instant::now();
        let names: Vec<String> = selected(&self.settings.targets, &decl)
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let kept: std::collections::HashSet<&String> = names.iter().collect();
        self.slots.retain(|n, _| kept.contains(n));
        for t in selected(&self.settings.targets, &decl) {
            let old = self.decl.targets.get(&t.name);
            let changed = old.is_none_or(|o| {
                o.desired != t.desired
                    || o.source_errors != t.source_errors
                    || o.policy != t.policy
                    || o.config.fields != t.config.fields
                    || o.provider != t.provider
            });
            let remembered = self.memory.get(&t.name);
            let slot = self.slots.entry(t.name.clone()).or_insert_with(|| {
                // A target seen by an earlier run: drift is judged against what it held then,
                // and a change is labelled with what changed since.
                let (last_seen, hint, config_change) = match remembered {
                    None => (None, Trigger::Initial, Vec::new()),
                    Some(seen) => {
                        let desired: Vec<String> = t
                            .desired
                            .prefixes()
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        let settings = config_changes(&seen.config, &t.config.fields);
                        if !settings.is_empty() {
                            (Some(seen.held()), Trigger::Config, settings)
                        } else if seen.desired != desired {
                            (Some(seen.held()), Trigger::Declaration, Vec::new())
                        } else {
                            (Some(seen.held()), Trigger::Drift, Vec::new())
                        }
                    }
                };
                Slot {
                    due: now,
                    in_flight: false,
                    scope: None,
                    flight_scope: None,
                    started: now,
                    throttled_since: None,
                    throttles: 0,
                    failures: 0,
                    last_seen,
                    hint,
                    config_change,
                    last_refusal: None,
                    passes: 0,
                    done: false,
                    last: None,
                }
            });
            let settings_changed = old
                .map(|o| config_changes(&o.config.fields, &t.config.fields))
                .unwrap_or_default();
            if !settings_changed.is_empty() && slot.passes > 0 {
                tracing::info!(
                    target = %t.name,
                    "the settings of `{}` changed: {}",
                    t.name,
                    settings_changed.join("; ")
                );
                slot.config_change.extend(settings_changed.iter().cloned());
            }
            if changed && slot.passes > 0 {
                slot.due = now;
                slot.failures = 0;
                slot.hint = if settings_changed.is_empty() || desired_changed(old, t) {
                    why
                } else {
                    Trigger::Config
                };
            }
            if changed {
                // A new target, or new settings (perhaps another subscription or region).
                slot.scope = (self.settings.scope_of)(&t.provider, &t.config);
                if !slot.in_flight {
                    self.scheduler.push(&slot.scope, slot.due, t.name.clone());
                }
            }
            self.metrics.target_ranges(&t.name, t.desired.len());
        }
        self.metrics.retain_targets(&names);
        self.decl = decl;
    }

    /// This replica got a new grant after losing one: another replica may have written
    /// every target meanwhile, so each is read afresh now, and what this replica saw before
    /// is forgotten (a change since is not drift; the first change is labelled `initial`).
    fn new_term(&mut self) {
        let now = Instant::now();
        for (name, slot) in &mut self.slots {
            slot.due = now;
            slot.failures = 0;
            slot.last_seen = None;
            slot.hint = Trigger::Initial;
            slot.last_refusal = None;
            if !slot.in_flight {
                self.scheduler.push(&slot.scope, now, name.clone());
            }
        }
    }

    /// Re-read the declaration when its content changed; keep the last valid one on error.
    fn watch(&mut self) {
        // What the user edits: the declaration, or a stand-alone mode's config file.
        let what = self
            .settings
            .standalone
            .as_ref()
            .map_or("declaration", |s| s.what.trim_start_matches("the "));
        let text = match self.settings.read_text() {
            Ok(t) => t,
            Err(e) => {
                let h = hash_text(&e.to_string());
                if h != self.text_hash {
                    self.text_hash = h;
                    tracing::error!(
                        "{}; the last valid {} stays in force",
                        report_load_error(&self.text.file, &e),
                        what
                    );
                    self.metrics.declaration_rejected();
                }
                return;
            }
        };
        let h = hash_inputs(&text.text, &self.decl.imported_files());
        if h == self.text_hash {
            return;
        }
        self.text_hash = h;
        let first = match text.resolve(self.settings.load, &self.known, &HashMap::new()) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(
                    "the changed {what} is rejected: {}; the last valid one stays in force",
                    report_load_error(&text.file, &e)
                );
                self.metrics.declaration_rejected();
                return;
            }
        };
        for n in &self.settings.targets {
            if !first.targets.contains_key(n) {
                tracing::warn!("the changed {what} has no target `{n}`");
            }
        }
        let specs = sources::tracked_specs(&first, &self.settings.live.self_echo);
        self.store.sync(&specs);
        self.metrics
            .retain_sources(&specs.keys().cloned().collect::<Vec<_>>());
        self.sync_templates(&first);
        match self.resolve(&text) {
            Ok(d) => {
                tracing::info!("the {what} changed: loaded {}", text.file);
                self.text = text;
                if let Some(i) = self.settings.imported_interval(&d)
                    && i != self.settings.interval
                {
                    tracing::info!(
                        "the interval is now {} (the {what}'s check interval)",
                        crate::sources::spec::format_duration(i)
                    );
                    self.settings.interval = i;
                }
                self.install(d, Trigger::Declaration);
                self.metrics.declaration(true, true);
            }
            Err(e) => {
                tracing::error!(
                    "the changed {what} is rejected: {}",
                    report_load_error(&text.file, &e)
                );
                self.metrics.declaration_rejected();
            }
        }
    }

    /// Record a source refresh; when values changed, resolve again and wake the targets.
    fn source_done(&mut self, name: &str, r: Result<RangeSet, FetchError>) {
        let kind = r.as_ref().err().map(FetchError::kind);
        let outcome = self.store.record(name, r);
        if let Some(st) = self.store.states.get(name) {
            let kind = kind.or(if outcome == Refreshed::Failed {
                st.last_error_kind
            } else {
                None
            });
            self.metrics.source(st, kind);
        }
        let text = self.text.clone();
        match self.resolve(&text) {
            Ok(d) => self.install(d, Trigger::Source),
            Err(e) => tracing::error!("{}", report_load_error(&text.file, &e)),
        }
    }

    /// Targets using a source whose first fetch is still under way (a source just added to
    /// the declaration): they wait for it rather than fail for want of a value.
    fn waiting_for_first_fetch(&self) -> std::collections::HashSet<String> {
        let unfetched = |st: &sources::SourceState| st.value.is_none() && st.last_error.is_none();
        if !self.store.states.values().any(unfetched) {
            // The usual case, checked without looking at every target.
            return std::collections::HashSet::new();
        }
        self.decl
            .targets
            .values()
            .filter(|t| {
                t.sources
                    .iter()
                    .any(|s| self.store.states.get(s).is_some_and(unfetched))
            })
            .map(|t| t.name.clone())
            .collect()
    }

    /// Start a reconcile of `name`; `running` maps the task to its target, so a task that
    /// panics is still accounted to it.
    fn spawn(&mut self, name: &str, tasks: &mut JoinSet<Pass>, running: &mut HashMap<Id, String>) {
        let Some(t) = self.decl.targets.get(name) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.in_flight = true;
        slot.started = Instant::now();
        slot.flight_scope.clone_from(&slot.scope);
        self.scheduler.started(&slot.scope);
        let target = Arc::new(t.clone());
        let lockout = self.store.lockout(self.settings.live.allow_lockout);
        // After a settings change the target's rules differ from what was last seen by
        // design: not drift.
        let last_seen = if slot.config_change.is_empty() {
            slot.last_seen.clone()
        } else {
            None
        };
        let hint = slot.hint;
        let retry = self.settings.retry;
        let build = self.settings.build;
        let fence = self.settings.fence.clone();
        let task = tasks.spawn(async move {
            // Built in the task: a plugin's factory starts its process and waits for it.
            let built = build(&target.provider, &target.config);
            reconcile(target, built, lockout, last_seen, hint, retry, fence).await
        });
        running.insert(task.id(), name.to_owned());
    }

    /// A reconcile task that ended without a pass (it panicked, or was cancelled): a
    /// failure of its target, whose slot is freed.
    fn task_failed(&mut self, name: String, e: &tokio::task::JoinError) {
        let why = if e.is_panic() {
            "the task panicked".to_owned()
        } else {
            e.to_string()
        };
        tracing::error!(target = %name, "the reconcile of `{name}` ended abnormally: {why}");
        self.finished(Pass {
            target: name,
            drift: None,
            holds: None,
            change: None,
            notes: Vec::new(),
            pending: false,
            leases: None,
            window: None,
            quota_low: None,
            result: Err(ReconcileError::Panicked(why)),
        });
    }

    /// Record a finished reconcile: logs, metrics, audit, and when to come back.
    fn finished(&mut self, mut pass: Pass) {
        let name = pass.target.clone();
        let settings = self.settings.clone();
        let Some(slot) = self.slots.get_mut(&name) else {
            return; // removed from the declaration meanwhile
        };
        slot.in_flight = false;
        slot.passes += 1;
        // What the pass tells its quota scope: throttled (refused, or told the quota is
        // nearly spent) halves the scope's concurrency, a success raises it by one.
        let throttled = throttling(&pass.result);
        let outcome = if throttled.is_some() || pass.quota_low.is_some() {
            scope::Outcome::Throttled
        } else if pass.result.is_ok() {
            scope::Outcome::Succeeded
        } else {
            scope::Outcome::Other
        };
        if let Some(limit) = self
            .scheduler
            .finished(&slot.flight_scope, slot.started, outcome)
        {
            let scope = slot.flight_scope.as_deref().unwrap_or_default();
            let why = match (throttled, pass.quota_low) {
                (Some(e), _) => format!("`{name}` was throttled ({e})"),
                (None, Some(left)) => {
                    format!("the API said {left} requests are left of its quota")
                }
                (None, None) => String::new(),
            };
            tracing::info!(
                scope,
                limit,
                "slowing down `{scope}`: {why}; at most {limit} of its targets at a time now"
            );
            self.metrics.scope_limit(scope, limit);
        }
        if let Some((added, removed)) = &pass.drift {
            tracing::warn!(
                target = %name,
                added = %added,
                removed = %removed,
                "drift: `{name}` was changed outside rangekeeper (added: [{added}], removed: [{removed}])"
            );
            self.metrics.drift(&name);
        }
        if !slot.config_change.is_empty()
            && let Some(c) = pass.change.as_mut()
        {
            // A settings change: the ranges changed only as far as the list did since the
            // last success (the rules were rewritten for the new settings).
            c.config.clone_from(&slot.config_change);
            let now = pass
                .holds
                .clone()
                .or_else(|| self.decl.targets.get(&name).map(|t| t.desired.clone()));
            if let (Some(prev), Some(now)) = (&slot.last_seen, now) {
                c.added = now.difference(prev);
                c.removed = prev.difference(&now);
            }
        }
        let prefixes = |s: &RangeSet| {
            s.prefixes()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        // The audit record of the change this pass made or tried.
        let time = audit::rfc3339(SystemTime::now());
        let writer = match (settings.fence.identity(), pass.window) {
            (Some(identity), Some((term, sent, done))) => Some(audit::Writer {
                identity,
                term,
                sent_unix_ms: audit::unix_ms(sent),
                done_unix_ms: audit::unix_ms(done),
            }),
            _ => None,
        };
        let record = |c: &Change, result, error| Record {
            time,
            target: &name,
            added: prefixes(&c.added),
            removed: prefixes(&c.removed),
            trigger: c.trigger.as_str(),
            config: c.config.clone(),
            result,
            error,
            lease: None,
            writer: writer.clone(),
        };
        let mut summary = Summary {
            target: name.clone(),
            result: "in-sync",
            trigger: pass.change.as_ref().map(|c| c.trigger.as_str()),
            added: pass
                .change
                .as_ref()
                .map(|c| c.added.clone())
                .unwrap_or_default(),
            removed: pass
                .change
                .as_ref()
                .map(|c| c.removed.clone())
                .unwrap_or_default(),
            config: pass
                .change
                .as_ref()
                .map(|c| c.config.clone())
                .unwrap_or_default(),
            notes: pass.notes.clone(),
            warnings: self
                .decl
                .targets
                .get(&name)
                .map(|t| t.source_warnings.clone())
                .unwrap_or_default(),
            kind: None,
            error: None,
            audit_error: None,
        };
        // An audit record that cannot be written is an error: logged, counted, and (with
        // `--once`) the exit status; the change it records was made all the same.
        let audit = |r: Record<'_>, summary: &mut Summary| {
            if let Err(e) = self.audit.record(&r) {
                let what = audit::describe(&r);
                tracing::error!(target = %name, "{what} was done, but its audit record is lost: {e}");
                self.metrics.audit_error();
                summary.audit_error = Some(format!(
                    "{what} was done, but its audit record is lost: {e}"
                ));
            }
        };
        for n in &pass.notes {
            tracing::warn!(target = %name, "{n}");
        }
        match &pass.result {
            Ok(()) => {
                let changed = pass.change.is_some();
                if let Some(c) = &pass.change {
                    summary.result = if pass.pending { "pending" } else { "applied" };
                    tracing::info!(
                        target = %name,
                        trigger = c.trigger.as_str(),
                        added = %c.added,
                        removed = %c.removed,
                        "applied to `{name}` ({}): +[{}] -[{}]{}",
                        c.trigger.as_str(),
                        c.added,
                        c.removed,
                        if c.config.is_empty() {
                            String::new()
                        } else {
                            format!(", settings: {}", c.config.join("; "))
                        }
                    );
                    audit(record(c, summary.result, None), &mut summary);
                } else {
                    tracing::debug!(target = %name, "in sync");
                }
                self.metrics.success(&name, changed);
                if let Some((held, expired)) = &pass.leases {
                    self.metrics.leases(&name, held, expired);
                }
                slot.config_change.clear();
                slot.throttled_since = None;
                slot.throttles = 0;
                if let (Some(holds), Some(t)) = (&pass.holds, self.decl.targets.get(&name)) {
                    self.memory.remember(&name, memory::Seen::new(t, holds));
                }
                slot.last_seen = pass.holds.clone();
                slot.failures = 0;
                slot.hint = Trigger::Drift;
                slot.last_refusal = None;
                slot.done = true;
                slot.due = Instant::now() + action::requeue(settings.interval).requeue_after;
            }
            Err(ReconcileError::Fenced) => {
                // Not a failure of the target: the leader (this replica again, or another)
                // reconciles it from a fresh read.
                tracing::warn!(target = %name, "`{name}`: the change was not sent: this replica no longer holds its lease (leader, or its shard's holder)");
                summary.result = "failed";
                summary.kind = Some(ReconcileError::Fenced.kind());
                summary.error = Some(ReconcileError::Fenced.to_string());
                slot.due = Instant::now();
            }
            // Throttled: not a failure of the target but of the pace. It is read again after
            // the retry policy's delay (never sooner than the server asked) while its scope
            // runs slower, for as long as a read may take (`--read-deadline`); after that it
            // fails like any other error. With `--once`, a server asking for a longer pause
            // than the pass waits for leaves the target for the next run, as before.
            Err(e)
                if throttled.is_some_and(|t| {
                    !(settings.once && t.retry_after().is_some_and(|d| d > ONCE_MAX_DELAY))
                }) && slot
                    .throttled_since
                    .is_none_or(|t| t.elapsed() < settings.retry.read_deadline) =>
            {
                slot.throttled_since.get_or_insert_with(Instant::now);
                slot.throttles = slot.throttles.saturating_add(1);
                let Action { requeue_after } =
                    action::error_policy(e, slot.throttles, settings.max_backoff);
                tracing::debug!(
                    target = %name,
                    "`{name}` throttled ({e}): read again in {:?}",
                    requeue_after
                );
                summary.result = "failed";
                summary.kind = Some(e.kind());
                summary.error = Some(e.to_string());
                slot.due = Instant::now() + requeue_after;
            }
            Err(e) => {
                let kind = e.kind();
                summary.result = if matches!(e, ReconcileError::Refused(_)) {
                    "refused"
                } else {
                    "failed"
                };
                summary.kind = Some(kind);
                // Advice naming declaration keys reads as the flags of a stand-alone mode.
                let shown = settings
                    .standalone
                    .as_ref()
                    .map_or_else(|| e.to_string(), |s| s.advise(&e.to_string()));
                summary.error = Some(shown.clone());
                if pass.holds.is_some() && !matches!(e, ReconcileError::Apply(_)) {
                    // Seen but not changed: drift is judged against this from now on.
                    slot.last_seen = pass.holds.clone();
                }
                slot.failures = slot.failures.saturating_add(1);
                let Action { requeue_after } =
                    action::error_policy(e, slot.failures, settings.max_backoff);
                tracing::error!(
                    target = %name,
                    kind,
                    retry_in = %crate::sources::spec::format_duration(Duration::from_secs(requeue_after.as_secs().max(1))),
                    "`{name}` not converged: {shown}"
                );
                self.metrics.error(&name, kind);
                let message = e.to_string();
                let record_it = match e {
                    ReconcileError::Apply(_) => true,
                    ReconcileError::Refused(_) => {
                        pass.change.is_some() && slot.last_refusal.as_deref() != Some(&message)
                    }
                    _ => false,
                };
                if record_it && let Some(c) = &pass.change {
                    audit(
                        record(c, summary.result, Some(message.clone())),
                        &mut summary,
                    );
                }
                if matches!(e, ReconcileError::Refused(_)) {
                    slot.last_refusal = Some(message);
                }
                if settings.once {
                    // As many passes as the retry policy allows attempts; a throttled target
                    // asking for a longer pause is left for the next run.
                    slot.done = !e.is_retryable()
                        || slot.failures >= settings.retry.attempts
                        || requeue_after > ONCE_MAX_DELAY;
                    slot.due = Instant::now() + requeue_after;
                } else {
                    slot.due = Instant::now() + requeue_after;
                }
            }
        }
        if !(settings.once && slot.done) {
            self.scheduler.push(&slot.scope, slot.due, name.clone());
        }
        slot.last = Some(summary);
        if self.slots.values().all(|s| s.passes > 0) {
            self.metrics.set_first_pass_done();
        }
    }
}

/// Run the reconciler until `shutdown` resolves (loop) or one pass is done (`--once`).
pub async fn run(
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RunOutcome> {
    let known = registry::catalog();
    let mut settings = settings;
    let text = settings.read_text().map_err(|e| {
        crate::output::Reported(report_load_error(&settings.file.display().to_string(), &e))
    })?;
    let first = text
        .resolve(settings.load, &known, &HashMap::new())
        .map_err(|e| crate::output::Reported(report_load_error(&text.file, &e)))?;
    for w in &first.warnings {
        match &settings.standalone {
            Some(s) => tracing::warn!("{}", s.advise(&w.to_string())),
            None => tracing::warn!("{w}"),
        }
    }
    if let Some(i) = settings.imported_interval(&first) {
        settings.interval = i;
    }
    for n in &settings.targets {
        // A discovered target is known only once its template has listed it.
        if !first.targets.contains_key(n) && first.discover.is_none() {
            bail!(
                "no target `{n}` in {}; targets: {}",
                text.file,
                first.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let audit = AuditLog::open(&settings.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the audit log in {}: {e}",
            settings.state_dir.display()
        )
    })?;
    tracing::info!("audit log: {}", audit.path().display());
    let mut store = Store::new(Some(&settings.state_dir));
    let specs = sources::tracked_specs(&first, &settings.live.self_echo);
    store.sync(&specs);
    let fetcher = Fetcher::new(settings.live.self_echo.clone())?;
    // The first values before the first pass, so targets start from real data (a signal
    // meanwhile stops at once: nothing was applied yet).
    tokio::pin!(shutdown);
    let due = store.due(Instant::now());
    // Each fetch is a task of its own: one that panics is a failed fetch of its source.
    let first_fetch = futures::future::join_all(due.iter().map(|s| {
        let f = fetcher.clone();
        let spec = s.clone();
        let task = tokio::spawn(async move { f.fetch(&spec).await });
        async move {
            let r = task
                .await
                .unwrap_or_else(|e| Err(FetchError::Panicked(e.to_string())));
            (s.name.clone(), r)
        }
    }));
    // The first listing of every discovery template, beside the first fetches: one attempt
    // each (a failed one is retried with backoff in the loop).
    let templates: Vec<crate::declaration::Template> = first
        .discover
        .iter()
        .flat_map(|d| d.templates.values().cloned())
        .collect();
    let policy = settings.retry.single_attempt();
    let first_discovery = futures::future::join_all(templates.iter().map(|t| {
        let name = t.name.clone();
        let t = t.clone();
        let task = tokio::spawn(async move { discovery::list(&t, policy).await });
        async move {
            let r = task.await.unwrap_or_else(|e| {
                Err(rangekeeper_provider::ProviderError::Other(format!(
                    "the listing panicked: {e}"
                )))
            });
            (name, r)
        }
    }));
    let (results, listings) = tokio::select! {
        r = futures::future::join(first_fetch, first_discovery) => r,
        () = &mut shutdown => {
            return Ok(RunOutcome {
                summaries: Vec::new(),
                aborted: false,
                discovery: discovery::Expanded::default(),
            });
        }
    };
    let mut ctl = Controller {
        text_hash: hash_inputs(&text.text, &first.imported_files()),
        text: text.clone(),
        decl: first.clone(),
        store,
        fetcher,
        slots: HashMap::new(),
        metrics: metrics.clone(),
        audit,
        memory: memory::Memory::open(&settings.state_dir),
        known,
        settings: settings.clone(),
        fleet: Fleet::default(),
        expanded: discovery::Expanded::default(),
        discovery_due: HashMap::new(),
        scheduler: scope::Scheduler::new(settings.concurrency_per_scope),
    };
    // Every template is due at once; the first listings are recorded below.
    ctl.decl = Declaration {
        targets: Default::default(),
        discover: None,
        ..first.clone()
    };
    ctl.sync_templates(&first);
    ctl.decl.discover.clone_from(&first.discover);
    for (name, r) in listings {
        ctl.discovery_done(&name, r);
    }
    for (name, r) in results {
        let kind = r.as_ref().err().map(FetchError::kind);
        let outcome = ctl.store.record(&name, r);
        if let Some(st) = ctl.store.states.get(&name) {
            metrics.source(
                st,
                kind.or(if outcome == Refreshed::Failed {
                    st.last_error_kind
                } else {
                    None
                }),
            );
        }
    }
    let decl = ctl
        .resolve(&text)
        .map_err(|e| crate::output::Reported(report_load_error(&text.file, &e)))?;
    ctl.decl = Declaration {
        targets: Default::default(),
        ..decl.clone()
    };
    ctl.install(decl, Trigger::Initial);
    metrics.declaration(true, false);
    if ctl.slots.is_empty() {
        if ctl.decl.discover.is_none() {
            bail!("no targets to reconcile");
        }
        // A fleet may be empty for now: discovery keeps looking.
        tracing::info!("no targets yet: discovery lists its templates again on its schedule");
        metrics.set_first_pass_done();
    }
    for n in &settings.targets {
        if !ctl.decl.targets.contains_key(n) {
            tracing::warn!("no target `{n}` yet (neither declared nor discovered)");
        }
    }
    tracing::info!(
        "reconciling {} target{} {}",
        ctl.slots.len(),
        if ctl.slots.len() == 1 { "" } else { "s" },
        if settings.once {
            "once".to_owned()
        } else {
            format!(
                "every {}",
                crate::sources::spec::format_duration(settings.interval)
            )
        }
    );

    let mut tasks: JoinSet<Pass> = JoinSet::new();
    let mut running: HashMap<Id, String> = HashMap::new();
    let mut fetches: JoinSet<(String, Result<RangeSet, FetchError>)> = JoinSet::new();
    let mut fetching: HashMap<Id, String> = HashMap::new();
    type Listed =
        Result<Vec<rangekeeper_provider::DiscoveredTarget>, rangekeeper_provider::ProviderError>;
    let mut listings: JoinSet<(String, Listed)> = JoinSet::new();
    let mut listing: HashMap<Id, String> = HashMap::new();
    let mut next_watch = Instant::now() + settings.watch_interval;
    let mut stopped = false;
    // The fence's term the loop last started targets in, and whether it ever had one.
    let mut term: Option<u64> = None;
    let mut had_term = false;
    loop {
        if tasks.is_empty() {
            // Nothing in flight: what the targets' memory holds unwritten is written now
            // (within a burst it is written at most once a second).
            ctl.memory.flush();
        }
        if settings.once && ctl.slots.values().all(|s| s.done && !s.in_flight) {
            break;
        }
        // Start due targets, earliest first, up to the concurrency bound; only with a grant
        // of the fence (a follower reads and writes no target).
        let now = Instant::now();
        let grant = settings.fence.grant().filter(|g| now < g.until);
        match grant {
            Some(g) if term != Some(g.term) => {
                if had_term {
                    ctl.new_term();
                }
                had_term = true;
                term = Some(g.term);
            }
            None => term = None,
            Some(_) => {}
        }
        // Whether this replica may write the target now (its shard's grant under sharding).
        let may_write = |name: &str| {
            settings
                .fence
                .grant_for(name)
                .is_some_and(|g| now < g.until)
        };
        let waiting = if settings.once {
            std::collections::HashSet::new()
        } else {
            ctl.waiting_for_first_fetch()
        };
        // Due targets this replica may not start now (another shard's, or waiting for a
        // source's first value): queued again below, after the wake-up time is chosen
        // without them.
        let mut held = Vec::new();
        while grant.is_some() && tasks.len() < settings.concurrency {
            let Some((scope, due, name)) = ctl
                .scheduler
                .pop_due(now, |k, n, d| queued(&ctl.slots, settings.once, k, n, d))
            else {
                break;
            };
            // Under sharding, only the targets of the shards this replica holds.
            if waiting.contains(&name) || !may_write(&name) {
                held.push((scope, due, name));
                continue;
            }
            ctl.spawn(&name, &mut tasks, &mut running);
        }
        // Refresh due sources in the background (loop mode).
        if !settings.once {
            for spec in ctl.store.due(now) {
                if fetching.values().any(|n| n == &spec.name) {
                    continue;
                }
                let name = spec.name.clone();
                let f = ctl.fetcher.clone();
                let task = fetches.spawn(async move { (spec.name.clone(), f.fetch(&spec).await) });
                fetching.insert(task.id(), name);
            }
        }
        // List due discovery templates in the background (loop mode), on the leader only
        // under leader election (a follower calls no cloud API; a new leader lists at once).
        if !settings.once && grant.is_some() {
            for t in ctl.templates_due(now) {
                if listing.values().any(|n| n == &t.name) {
                    continue;
                }
                let name = t.name.clone();
                // Not due again while this listing runs (its end sets the next time).
                let failures = ctl.discovery_due.get(&name).map_or(0, |(_, f)| *f);
                ctl.discovery_due.insert(
                    name.clone(),
                    (now + Duration::from_secs(24 * 3600), failures),
                );
                let policy = settings.retry.single_attempt();
                let task = listings
                    .spawn(async move { (t.name.clone(), discovery::list(&t, policy).await) });
                listing.insert(task.id(), name);
            }
        }
        // Targets due wake the loop only when it may start them (a follower's are all due;
        // a full scope's next one starts when one of its own finishes, which wakes it).
        let next_due = if grant.is_some() {
            ctl.scheduler
                .next_due(|k, n, d| queued(&ctl.slots, settings.once, k, n, d))
        } else {
            None
        };
        for (scope, due, name) in held {
            ctl.scheduler.push(&scope, due, name);
        }
        let mut wake = next_due.unwrap_or(now + Duration::from_secs(3600));
        if !settings.once {
            wake = wake.min(next_watch);
            if let Some(r) = ctl.store.next_refresh() {
                wake = wake.min(r);
            }
            if grant.is_some()
                && let Some(d) = ctl.next_discovery()
            {
                wake = wake.min(d);
            }
        }
        // Without a grant, look again soon (leadership may come at any time); with one, wake
        // when it runs out at the latest.
        wake = match grant {
            None => wake.min(now + FOLLOWER_POLL),
            Some(g) => wake.min(g.until),
        };
        let wake = wake.max(now + Duration::from_millis(20));
        tokio::select! {
            () = &mut shutdown => {
                stopped = true;
                break;
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                match done {
                    Ok((id, pass)) => {
                        running.remove(&id);
                        ctl.finished(pass);
                    }
                    Err(e) => match running.remove(&e.id()) {
                        Some(name) => ctl.task_failed(name, &e),
                        None => tracing::error!("a reconcile task failed: {e}"),
                    },
                }
            }
            Some(done) = fetches.join_next_with_id(), if !fetches.is_empty() => {
                match done {
                    Ok((id, (name, r))) => {
                        fetching.remove(&id);
                        ctl.source_done(&name, r);
                    }
                    // A fetch that panicked is a failed refresh: the source keeps its last
                    // value and is fetched again on the failure schedule.
                    Err(e) => {
                        if let Some(name) = fetching.remove(&e.id()) {
                            tracing::error!(source = %name, "the refresh of source `{name}` ended abnormally: {e}");
                            ctl.source_done(&name, Err(FetchError::Panicked(e.to_string())));
                        }
                    }
                }
            }
            Some(done) = listings.join_next_with_id(), if !listings.is_empty() => {
                match done {
                    Ok((id, (name, r))) => {
                        listing.remove(&id);
                        ctl.discovery_done(&name, r);
                    }
                    // A listing that panicked is a failed listing: the last good list stays.
                    Err(e) => {
                        if let Some(name) = listing.remove(&e.id()) {
                            ctl.discovery_done(&name, Err(rangekeeper_provider::ProviderError::Other(format!("the listing panicked: {e}"))));
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(wake.into()) => {}
        }
        if !settings.once && Instant::now() >= next_watch {
            ctl.watch();
            next_watch = Instant::now() + settings.watch_interval;
        }
    }
    fetches.abort_all();
    listings.abort_all();
    let mut aborted = false;
    if stopped {
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(
                "stopping: waiting up to {} for {in_flight} in-flight reconcile{}",
                crate::sources::spec::format_duration(settings.grace),
                if in_flight == 1 { "" } else { "s" }
            );
        } else {
            tracing::info!("stopping");
        }
        let drain = async {
            while let Some(done) = tasks.join_next_with_id().await {
                match done {
                    Ok((_, pass)) => ctl.finished(pass),
                    Err(e) => {
                        if let Some(name) = running.remove(&e.id()) {
                            ctl.task_failed(name, &e);
                        }
                    }
                }
            }
        };
        if tokio::time::timeout(settings.grace, drain).await.is_err() {
            aborted = true;
            tracing::error!(
                "{} reconcile{} did not finish within the grace period and {} cancelled",
                tasks.len(),
                if tasks.len() == 1 { "" } else { "s" },
                if tasks.len() == 1 { "was" } else { "were" }
            );
            tasks.abort_all();
        }
    }
    let mut summaries: Vec<Summary> = ctl
        .decl
        .targets
        .keys()
        .filter_map(|n| ctl.slots.get(n).and_then(|s| s.last.clone()))
        .collect();
    summaries.sort_by_key(|s| {
        ctl.decl
            .targets
            .get_index_of(&s.target)
            .unwrap_or(usize::MAX)
    });
    Ok(RunOutcome {
        summaries,
        aborted,
        discovery: ctl.expanded.clone(),
    })
}

#[cfg(test)]
mod tests {
    //! `reconcile` against a scripted provider with injected faults.

    use std::sync::Mutex;

    use rangekeeper_provider::{
        Applied, Capabilities, Provider, ProviderError, Restriction, State, UnrestrictedForm,
    };

    use super::*;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(
            items
                .iter()
                .map(|s| rangekeeper_cidr::parse(s).unwrap().net),
        )
    }

    /// A provider holding a set in memory; `read_error`/`apply_error` make the next call fail.
    #[derive(Default)]
    struct Scripted {
        holds: Mutex<Option<RangeSet>>,
        read_error: Mutex<Option<ProviderError>>,
        apply_error: Mutex<Option<ProviderError>>,
        applies: Mutex<Vec<RangeSet>>,
    }

    struct Handle(Arc<Scripted>);

    #[async_trait::async_trait]
    impl Provider for Handle {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new("scripted", "test")
                .with_max_ranges(Some(10))
                .with_ipv6(true)
                .with_private_ranges(true)
                .with_unrestricted(UnrestrictedForm::EmptyList)
        }
        async fn current(&self) -> Result<State, ProviderError> {
            if let Some(e) = self.0.read_error.lock().unwrap().take() {
                return Err(e);
            }
            Ok(State::new(match self.0.holds.lock().unwrap().clone() {
                Some(s) => Restriction::Ranges(s),
                None => Restriction::Unrestricted,
            }))
        }
        async fn apply(
            &self,
            desired: &RangeSet,
            _opts: &ApplyOptions,
        ) -> Result<Applied, ProviderError> {
            if let Some(e) = self.0.apply_error.lock().unwrap().take() {
                return Err(e);
            }
            self.0.applies.lock().unwrap().push(desired.clone());
            *self.0.holds.lock().unwrap() = Some(desired.clone());
            Ok(Applied::changed())
        }
        async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
            *self.0.holds.lock().unwrap() = None;
            Ok(Applied::default())
        }
    }

    fn target(allow: &str) -> Arc<Target> {
        let text = format!(
            "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: {allow}\n"
        );
        let (decl, diags) = Declaration::parse(
            &text,
            "test.yaml",
            PathBuf::from("."),
            false,
            LoadOptions::default(),
            &["file"],
        );
        assert!(diags.is_empty(), "{diags:?}");
        Arc::new(decl.unwrap().targets["t"].clone())
    }

    async fn run(p: &Arc<Scripted>, t: &Arc<Target>, last_seen: Option<RangeSet>) -> Pass {
        reconcile_with(
            t.clone(),
            Box::new(Handle(p.clone())),
            None,
            last_seen,
            Trigger::Drift,
            Arc::new(fence::Unfenced),
        )
        .await
    }

    #[tokio::test]
    async fn first_sight_applies_as_initial_then_stays_in_sync() {
        let p = Arc::new(Scripted::default());
        let t = target("[192.0.2.0/24]");
        let pass = reconcile_with(
            t.clone(),
            Box::new(Handle(p.clone())),
            None,
            None,
            Trigger::Initial,
            Arc::new(fence::Unfenced),
        )
        .await;
        assert!(pass.result.is_ok());
        let c = pass.change.unwrap();
        assert_eq!(c.trigger, Trigger::Initial);
        assert_eq!(c.added, set(&["192.0.2.0/24"]));
        let again = run(&p, &t, pass.holds).await;
        assert!(again.result.is_ok() && again.change.is_none() && again.drift.is_none());
        assert_eq!(p.applies.lock().unwrap().len(), 1);
    }

    /// A fence that never grants, or whose grant already ran out.
    #[derive(Debug)]
    struct Closed(Option<fence::Grant>);

    impl Fence for Closed {
        fn grant(&self) -> Option<fence::Grant> {
            self.0
        }
        fn identity(&self) -> Option<String> {
            Some("replica-a".into())
        }
    }

    #[tokio::test]
    async fn no_write_is_sent_without_a_grant_or_after_it_ran_out() {
        let p = Arc::new(Scripted::default());
        let t = target("[192.0.2.0/24]");
        for fence in [
            Closed(None),
            Closed(Some(fence::Grant {
                term: 1,
                until: Instant::now(),
            })),
        ] {
            let pass = reconcile_with(
                t.clone(),
                Box::new(Handle(p.clone())),
                None,
                None,
                Trigger::Initial,
                Arc::new(fence),
            )
            .await;
            assert!(
                matches!(pass.result, Err(ReconcileError::Fenced)),
                "{:?}",
                pass.result
            );
            assert!(pass.window.is_none());
        }
        assert!(p.applies.lock().unwrap().is_empty(), "nothing was applied");
        let open = Closed(Some(fence::Grant {
            term: 7,
            until: Instant::now() + Duration::from_secs(60),
        }));
        let pass = reconcile_with(
            t,
            Box::new(Handle(p.clone())),
            None,
            None,
            Trigger::Initial,
            Arc::new(open),
        )
        .await;
        assert!(pass.result.is_ok());
        assert_eq!(
            pass.window.map(|w| w.0),
            Some(7),
            "the write carries its term"
        );
        assert_eq!(p.applies.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn drift_is_reported_and_corrected() {
        let p = Arc::new(Scripted::default());
        *p.holds.lock().unwrap() = Some(set(&["192.0.2.0/24", "10.0.0.0/8"]));
        let t = target("[192.0.2.0/24]");
        let pass = run(&p, &t, Some(set(&["192.0.2.0/24"]))).await;
        assert_eq!(pass.drift, Some((set(&["10.0.0.0/8"]), RangeSet::new())));
        assert_eq!(pass.change.unwrap().trigger, Trigger::Drift);
        assert_eq!(*p.holds.lock().unwrap(), Some(set(&["192.0.2.0/24"])));
    }

    #[tokio::test]
    async fn a_lifted_restriction_is_drift_of_every_range() {
        let p = Arc::new(Scripted::default());
        let t = target("[192.0.2.0/24]");
        let pass = run(&p, &t, Some(set(&["192.0.2.0/24"]))).await;
        assert_eq!(pass.drift, Some((RangeSet::new(), set(&["192.0.2.0/24"]))));
        assert!(pass.result.is_ok());
    }

    #[tokio::test]
    async fn read_and_apply_faults_are_typed_for_the_error_policy() {
        let p = Arc::new(Scripted::default());
        let t = target("[192.0.2.0/24]");
        *p.read_error.lock().unwrap() = Some(ProviderError::Throttled {
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(30)),
        });
        let pass = run(&p, &t, None).await;
        let e = pass.result.unwrap_err();
        assert_eq!(e.kind(), "throttled");
        assert!(
            action::error_policy(&e, 1, Duration::from_secs(5)).requeue_after
                >= Duration::from_secs(30)
        );

        *p.apply_error.lock().unwrap() = Some(ProviderError::Transient("timed out".into()));
        let pass = run(&p, &t, None).await;
        let e = pass.result.unwrap_err();
        assert!(matches!(e, ReconcileError::Apply(_)) && e.is_retryable());
        assert!(
            pass.change.is_some(),
            "the attempted change is reported for the audit log"
        );
        assert!(p.applies.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn guards_refuse_in_the_loop_too() {
        let p = Arc::new(Scripted::default());
        *p.holds.lock().unwrap() = Some(set(&["192.0.2.0/24"]));
        let t = target("[0.0.0.0/0]");
        let pass = run(&p, &t, None).await;
        assert_eq!(pass.result.unwrap_err().kind(), "refused");
        assert!(p.applies.lock().unwrap().is_empty());
        // The lockout guard: our egress IP is allowed now and would not be afterwards.
        let t = target("[198.51.100.0/24]");
        let lockout = Lockout {
            ip: "192.0.2.9".parse().unwrap(),
            via: "test".into(),
            allowed: false,
        };
        let pass = reconcile_with(
            t,
            Box::new(Handle(p.clone())),
            Some(lockout),
            None,
            Trigger::Drift,
            Arc::new(fence::Unfenced),
        )
        .await;
        let e = pass.result.unwrap_err();
        assert!(e.to_string().contains("lock this machine out"), "{e}");
        assert!(p.applies.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_target_without_its_source_values_is_never_read_or_applied() {
        let p = Arc::new(Scripted::default());
        *p.read_error.lock().unwrap() = Some(ProviderError::Other("must not be read".into()));
        let mut t = (*target("[192.0.2.0/24]")).clone();
        t.source_errors = vec!["source `x` has no value".into()];
        let pass = run(&p, &Arc::new(t), None).await;
        assert_eq!(pass.result.unwrap_err().kind(), "source");
        assert!(
            p.read_error.lock().unwrap().is_some(),
            "current() was called"
        );
    }
}

#[cfg(test)]
mod regression {
    //! Regression tests of the reconciler: one per fixed bug, each named after what it
    //! protects.

    use rangekeeper_provider::{
        Applied, Capabilities, Provider, ProviderError, State, TargetConfig,
    };

    use super::*;

    /// A provider whose every call panics.
    struct Panics;

    #[async_trait::async_trait]
    impl Provider for Panics {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new("file", "panics").with_private_ranges(true)
        }
        async fn current(&self) -> Result<State, ProviderError> {
            panic!("scripted panic in current")
        }
        async fn apply(
            &self,
            _desired: &RangeSet,
            _opts: &ApplyOptions,
        ) -> Result<Applied, ProviderError> {
            panic!("scripted panic in apply")
        }
        async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
            panic!("scripted panic in disable")
        }
    }

    /// The target `boom` gets the panicking provider, every other one its real provider.
    fn build(provider: &str, cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
        if cfg.name == "boom" {
            Ok(Box::new(Panics))
        } else {
            registry::build(provider, cfg)
        }
    }

    #[tokio::test]
    async fn a_panicking_reconcile_fails_its_target_frees_its_slot_and_once_exits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rangekeeper.yaml");
        std::fs::write(
            &file,
            "version: 1\ntargets:\n  boom:\n    provider: file\n    path: boom.txt\n    allow: [192.0.2.0/24]\n  fine:\n    provider: file\n    path: fine.txt\n    allow: [192.0.2.0/24]\n",
        )
        .unwrap();
        let state_dir = dir.path().join("state");
        let settings = Settings {
            file,
            standalone: None,
            load: LoadOptions::default(),
            live: LiveOptions {
                state_dir: Some(state_dir.clone()),
                self_echo: Vec::new(),
                allow_lockout: false,
            },
            state_dir,
            targets: Vec::new(),
            once: true,
            interval: Duration::from_secs(60),
            interval_given: true,
            max_backoff: Duration::from_secs(1),
            // One slot: `fine` runs only once the panicked task's slot is freed.
            concurrency: 1,
            concurrency_per_scope: 1,
            scope_of: |_, _| None,
            grace: Duration::from_secs(1),
            watch_interval: Duration::from_secs(1),
            retry: crate::retry::Policy::default(),
            build,
            fence: Arc::new(fence::Unfenced),
        };
        let run = run(
            settings,
            Arc::new(Metrics::default()),
            std::future::pending(),
        );
        let outcome = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("`--once` exits although a reconcile panicked")
            .unwrap();
        let by_name = |n: &str| {
            outcome
                .summaries
                .iter()
                .find(|s| s.target == n)
                .unwrap_or_else(|| panic!("no summary for {n}: {:?}", outcome.summaries))
                .clone()
        };
        let boom = by_name("boom");
        assert_eq!(boom.result, "failed", "{boom:?}");
        assert_eq!(boom.kind, Some("panic"), "{boom:?}");
        assert!(
            boom.error.as_deref().unwrap_or("").contains("panicked"),
            "{boom:?}"
        );
        let fine = by_name("fine");
        assert_eq!(fine.result, "applied", "{fine:?}");
        assert!(dir.path().join("fine.txt").exists());
        assert!(!outcome.aborted);
    }
}
