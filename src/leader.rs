//! `reconcile --leader-elect`: several replicas, one writer, decided by a Kubernetes
//! coordination.k8s.io/v1 `Lease`, with the algorithm of client-go's `leaderelection`:
//!
//! - A replica reads the Lease every retry period. A holder other than itself is respected
//!   until the lease has not changed for `leaseDurationSeconds` as measured on this replica's
//!   own monotonic clock from when it *saw* the change (no trust in other machines' clocks).
//! - Acquiring and renewing are a `PUT` of the Lease at the `resourceVersion` just read
//!   (optimistic concurrency: of two replicas racing, the API server lets exactly one win),
//!   setting `holderIdentity`, `leaseDurationSeconds`, `renewTime`, and on a change of holder
//!   `acquireTime` and `leaseTransitions + 1`. A missing Lease is created.
//!
//! Fencing: the leader's grant ([`Fence`]) is valid until the instant its last successful
//! renewal was *sent* plus `renewDeadline`, on its monotonic clock. Another replica takes over
//! no earlier than `leaseDuration` after it saw that renewal, which was written after it was
//! sent, so a leader cut off from the API server has stopped writing for at least
//! `leaseDuration - renewDeadline` when anyone else may start. The reconcile loop checks the
//! grant before every pass and just before every apply is sent. A leader that cannot renew by
//! its deadline steps down (logs it, the metric and `/readyz` show it) and keeps trying to
//! acquire like any follower.
//!
//! The periodic attempts are the protocol itself, not retries of failed calls: every call is
//! one attempt, bounded so that a hung API server cannot hold the loop past the deadline.
//!
//! Sharding (`--shards N`): each shard `i` has its own Lease `<name>-shard-<i>`, elected and
//! fenced exactly as above, and a target belongs to the shard its name hashes to
//! ([`crate::reconcile::shard::of`]). Each replica also keeps a member Lease
//! `<name>-member-<digest of its identity>` (declaring its N) renewed every retry period; every
//! round it lists the group's Leases (one call), counts the live members (a member Lease that
//! has not changed for its duration, as measured here, is gone), and aims at its fair share,
//! `ceil(N / replicas)`: it renews the shards it keeps, lets the ones above its share lapse
//! (it stops writing to them at once and stops renewing; another replica takes them when the
//! lease expires, exactly as after a crash) and acquires free or expired shards while under
//! its share. A replica that sees a live member declaring another N holds and writes nothing
//! until that member is gone: two different splits could give one target to two replicas.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config as KubeConfig};

use crate::cli::LeaderFlags;
use crate::reconcile::fence::{Fence, Grant};
use crate::reconcile::metrics::Metrics;
use crate::reconcile::shard;

/// The label that groups the Leases of one sharded reconciler (its value: `--lease-name`).
const GROUP_LABEL: &str = "rangekeeper.dev/lease-group";
/// The label saying what a Lease of the group is: `shard` or `member`.
const ROLE_LABEL: &str = "rangekeeper.dev/lease-role";
/// The annotation of a member Lease declaring the replica's `--shards`.
const SHARDS_ANNOTATION: &str = "rangekeeper.dev/shards";
/// A member Lease unchanged for this many of its durations is deleted by any replica.
const STALE_MEMBER_DURATIONS: u32 = 10;

/// Validated `--leader-elect` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub name: String,
    pub namespace: Option<String>,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub kubeconfig: Option<PathBuf>,
    /// `--shards N`: the Lease name is then the prefix of the shard and member Leases.
    pub shards: Option<u32>,
}

impl Settings {
    /// The flags, checked as client-go checks its config: the renew deadline shorter than the
    /// lease duration (the difference is the safety margin), the retry period shorter than
    /// the renew deadline (a leader gets more than one try), every duration at least 1s
    /// where the Lease stores it in whole seconds.
    pub fn from_flags(f: &LeaderFlags) -> anyhow::Result<Settings> {
        let show = |d: Duration| crate::sources::spec::format_duration(d);
        if f.lease_duration < Duration::from_secs(1) {
            bail!(
                "--lease-duration {} is too short: the Lease stores it in whole seconds; give at least 1s",
                show(f.lease_duration)
            );
        }
        if f.renew_deadline >= f.lease_duration {
            bail!(
                "--renew-deadline {} must be shorter than --lease-duration {}: the leader stops writing at its renew deadline, and the difference is the margin before another replica may take over",
                show(f.renew_deadline),
                show(f.lease_duration)
            );
        }
        if f.retry_period.is_zero() || f.retry_period >= f.renew_deadline {
            bail!(
                "--retry-period {} must be more than 0 and shorter than --renew-deadline {}: the leader renews every retry period and must get more than one try before its deadline",
                show(f.retry_period),
                show(f.renew_deadline)
            );
        }
        let name = f.lease_name.trim();
        if !is_dns_subdomain(name) {
            bail!(
                "--lease-name `{}` is not a valid Kubernetes object name (lower-case letters, digits, `-` and `.`, at most 253 characters, starting and ending with a letter or digit)",
                f.lease_name
            );
        }
        // The longest derived name: `<name>-member-<16 hex digits>`.
        if f.shards.is_some() && name.len() + "-member-".len() + 16 > 253 {
            bail!(
                "--lease-name `{name}` is too long for --shards: the shard and member Leases add up to 24 characters to it, and a name has at most 253"
            );
        }
        if let Some(ns) = &f.lease_namespace
            && !is_dns_label(ns)
        {
            bail!(
                "--lease-namespace `{ns}` is not a valid namespace name (lower-case letters, digits and `-`, at most 63 characters)"
            );
        }
        let identity = match &f.identity {
            Some(id) if id.trim().is_empty() => {
                bail!("--identity is empty; give this replica's name (e.g. the pod name)")
            }
            Some(id) if id.len() > 253 => {
                bail!("--identity is longer than 253 characters")
            }
            Some(id) => id.clone(),
            None => default_identity(),
        };
        Ok(Settings {
            name: name.to_owned(),
            namespace: f.lease_namespace.clone(),
            identity,
            lease_duration: f.lease_duration,
            renew_deadline: f.renew_deadline,
            retry_period: f.retry_period,
            kubeconfig: f.lease_kubeconfig.clone(),
            shards: f.shards,
        })
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The host name and a random suffix: unique per process, recognisable in the Lease.
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "rangekeeper".to_owned());
    format!("{host}_{:08x}", rand::random::<u32>())
}

/// What the fence reads: the current grant, written by the election task.
#[derive(Debug)]
pub struct Elector {
    identity: String,
    grant: Mutex<Option<Grant>>,
}

impl Elector {
    fn set(&self, g: Option<Grant>) {
        match self.grant.lock() {
            Ok(mut x) => *x = g,
            Err(p) => *p.into_inner() = g,
        }
    }
}

impl Fence for Elector {
    fn grant(&self) -> Option<Grant> {
        match self.grant.lock() {
            Ok(g) => *g,
            Err(p) => *p.into_inner(),
        }
    }
    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
}

/// The grants of a sharded replica, one per shard: a target may be written under the grant
/// of the shard its name hashes to.
#[derive(Debug)]
pub struct ShardFence {
    identity: String,
    electors: Vec<Arc<Elector>>,
}

impl ShardFence {
    fn count(&self) -> u32 {
        u32::try_from(self.electors.len()).unwrap_or(u32::MAX)
    }
}

impl Fence for ShardFence {
    fn grant(&self) -> Option<Grant> {
        let now = Instant::now();
        let held: Vec<Grant> = self
            .electors
            .iter()
            .filter_map(|e| e.grant())
            .filter(|g| now < g.until)
            .collect();
        Some(Grant {
            // Every acquisition takes a new term number from one counter, so the highest
            // changes whenever a shard was taken.
            term: held.iter().map(|g| g.term).max()?,
            until: held.iter().map(|g| g.until).min()?,
        })
    }
    fn grant_for(&self, target: &str) -> Option<Grant> {
        let i = usize::try_from(shard::of(target, self.count())).ok()?;
        self.electors.get(i)?.grant()
    }
    fn identity(&self) -> Option<String> {
        Some(self.identity.clone())
    }
}

/// The running election: its fence for the reconcile loop, and the task to stop.
pub struct Running {
    pub fence: Arc<dyn Fence>,
    electors: Vec<Arc<Elector>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop: no grant from now on, and a leader releases the Lease (so a follower takes over
    /// at once instead of after the lease duration); a sharded replica releases its shards and
    /// deletes its member Lease. Call once the loop wrote its last.
    pub async fn stop(self) {
        for e in &self.electors {
            e.set(None);
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Connect to the cluster and start electing. The first attempt is made before this
/// returns, so a wrong kubeconfig or missing RBAC fails the command at start.
pub async fn start(settings: Settings, metrics: Arc<Metrics>) -> anyhow::Result<Running> {
    let client = client(settings.kubeconfig.as_deref()).await?;
    let namespace = settings
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<Lease> = Api::namespaced(client, &namespace);
    metrics.leader_election(&settings.identity, settings.lease_duration);
    if let Some(count) = settings.shards {
        return start_sharded(api, namespace, settings, count, metrics).await;
    }
    let mut state = Election::new(
        api,
        namespace,
        settings,
        metrics,
        None,
        Arc::new(AtomicU64::new(0)),
    );
    let elector = state.elector.clone();
    tracing::info!(
        "leader election: lease {}/{} as `{}` (lease {}, renew deadline {}, retry {})",
        state.namespace,
        state.settings.name,
        state.settings.identity,
        crate::sources::spec::format_duration(state.settings.lease_duration),
        crate::sources::spec::format_duration(state.settings.renew_deadline),
        crate::sources::spec::format_duration(state.settings.retry_period),
    );
    // The first attempt: an error that no retry can fix (forbidden, not found namespace,
    // bad credentials) stops the command with the reason.
    match tokio::time::timeout(state.settings.renew_deadline, state.try_acquire_or_renew()).await {
        Ok(Err(Attempt::Fatal(e))) => return Err(e),
        Ok(r) => state.after(r.map_err(Attempt::into_error)),
        Err(_) => state.after(Err(anyhow!(
            "no answer from the API server within the renew deadline"
        ))),
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            let next = state.next_attempt();
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep_until(next.into()) => {}
            }
            state.round().await;
        }
        state.release().await;
    });
    Ok(Running {
        fence: elector.clone(),
        electors: vec![elector],
        stop,
        task,
    })
}

/// Start a sharded replica: its member Lease and one election per shard, with a first round
/// before this returns (a wrong kubeconfig or missing RBAC fails the command at start).
async fn start_sharded(
    api: Api<Lease>,
    namespace: String,
    settings: Settings,
    count: u32,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Running> {
    metrics.sharding(count);
    let terms = Arc::new(AtomicU64::new(0));
    let group = |role: &str| {
        BTreeMap::from([
            (GROUP_LABEL.to_owned(), settings.name.clone()),
            (ROLE_LABEL.to_owned(), role.to_owned()),
        ])
    };
    let shards: Vec<Election> = (0..count)
        .map(|i| {
            let mut e = Election::new(
                api.clone(),
                namespace.clone(),
                Settings {
                    name: format!("{}-shard-{i}", settings.name),
                    ..settings.clone()
                },
                metrics.clone(),
                Some(i),
                terms.clone(),
            );
            e.labels = group("shard");
            e
        })
        .collect();
    let mut member = Election::new(
        api.clone(),
        namespace.clone(),
        Settings {
            name: format!(
                "{}-member-{}",
                settings.name,
                shard::digest(&settings.identity)
            ),
            ..settings.clone()
        },
        metrics.clone(),
        None,
        Arc::new(AtomicU64::new(0)),
    );
    member.labels = group("member");
    member.annotations = BTreeMap::from([(SHARDS_ANNOTATION.to_owned(), count.to_string())]);
    let electors: Vec<Arc<Elector>> = shards.iter().map(|e| e.elector.clone()).collect();
    let fence = Arc::new(ShardFence {
        identity: settings.identity.clone(),
        electors: electors.clone(),
    });
    // Each replica tries the shards in its own order, so that replicas starting together
    // do not all race for the same ones.
    let first = u32::try_from(
        u64::from_str_radix(&shard::digest(&settings.identity), 16).unwrap_or(0) % u64::from(count),
    )
    .unwrap_or(0);
    let order = (0..count)
        .map(|k| usize::try_from((first + k) % count).unwrap_or(0))
        .collect();
    tracing::info!(
        "leader election: {count} shard{} (leases {namespace}/{}-shard-0..{}) as `{}` (lease {}, renew deadline {}, retry {})",
        if count == 1 { "" } else { "s" },
        settings.name,
        count - 1,
        settings.identity,
        crate::sources::spec::format_duration(settings.lease_duration),
        crate::sources::spec::format_duration(settings.renew_deadline),
        crate::sources::spec::format_duration(settings.retry_period),
    );
    let mut state = Sharded {
        api,
        settings,
        count,
        metrics,
        shards,
        member,
        members: HashMap::new(),
        order,
        fair: count,
        mismatch: None,
    };
    if let Some(Attempt::Fatal(e)) = state.round().await {
        return Err(e);
    }
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        loop {
            let next = state.next_attempt();
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep_until(next.into()) => {}
            }
            if let Some(a) = state.round().await {
                tracing::warn!("leader election: {:#}", a.into_error());
            }
        }
        state.release().await;
    });
    Ok(Running {
        fence,
        electors,
        stop,
        task,
    })
}

/// A member Lease as this replica last saw it.
struct MemberSeen {
    resource_version: Option<String>,
    /// When this replica saw it change (monotonic clock).
    seen: Instant,
    /// When it stops counting, while it counts (its holder is live).
    expires: Option<Instant>,
}

/// A sharded replica's state between rounds.
struct Sharded {
    api: Api<Lease>,
    settings: Settings,
    count: u32,
    metrics: Arc<Metrics>,
    shards: Vec<Election>,
    member: Election,
    members: HashMap<String, MemberSeen>,
    /// The order this replica prefers the shards in.
    order: Vec<usize>,
    /// This replica's share as of the last round.
    fair: u32,
    /// The last disagreement on the shard count that was logged.
    mismatch: Option<String>,
}

impl Sharded {
    /// How long a call may take now: the renew deadline, and never past a held grant.
    fn bound(&self) -> Duration {
        let now = Instant::now();
        self.shards
            .iter()
            .filter_map(|e| e.leading)
            .map(|u| u.saturating_duration_since(now))
            .fold(self.settings.renew_deadline, Duration::min)
    }

    fn held(&self) -> u32 {
        u32::try_from(self.shards.iter().filter(|e| e.leading.is_some()).count())
            .unwrap_or(u32::MAX)
    }

    /// When to try next: a retry period from now, a held grant's deadline, or, while under
    /// its share, when another holder's shard expires.
    fn next_attempt(&self) -> Instant {
        let now = Instant::now();
        let mut next = now + self.settings.retry_period;
        let under = self.held() < self.fair;
        // A replica that stops counting changes this one's share.
        for m in self.members.values() {
            if let Some(expires) = m.expires.filter(|e| *e > now) {
                next = next.min(expires);
            }
        }
        for e in &self.shards {
            if let Some(until) = e.leading {
                next = next.min(until);
            } else if under && let Some(expiry) = e.expiry_of_other() {
                next = next.min(expiry.max(now));
            }
        }
        next
    }

    fn step_down_all(&mut self, why: &str) {
        for e in &mut self.shards {
            if e.leading.is_some() {
                e.step_down(why);
            }
        }
    }

    /// One round: list the group's Leases, renew the member Lease, count the replicas, keep
    /// this replica's share and take free shards up to it. `Some` when an attempt failed
    /// (`Fatal` for what no retry fixes).
    async fn round(&mut self) -> Option<Attempt> {
        let now = Instant::now();
        for e in &mut self.shards {
            if e.leading.is_some_and(|until| now >= until) {
                e.step_down("the lease was not renewed before the renew deadline");
            }
        }
        let list = ListParams::default().labels(&format!("{GROUP_LABEL}={}", self.settings.name));
        let listed = match tokio::time::timeout(self.bound(), self.api.list(&list)).await {
            Ok(Ok(l)) => l.items,
            Ok(Err(e)) => {
                return Some(classify(
                    &format!("listing the leases of `{}`", self.settings.name),
                    e,
                ));
            }
            Err(_) => {
                return Some(Attempt::Transient(anyhow!(
                    "listing the leases of `{}`: no answer from the API server in time",
                    self.settings.name
                )));
            }
        };
        self.metrics.lease_seen();
        let mut by_name: HashMap<String, Lease> = listed
            .into_iter()
            .filter_map(|l| Some((l.metadata.name.clone()?, l)))
            .collect();
        // This replica's member Lease first: it is what counts it in.
        let mine = by_name.remove(&self.member.settings.name);
        match tokio::time::timeout(self.bound(), self.member.decide(mine, true)).await {
            Ok(Ok(_)) => {}
            Ok(Err(a)) => return Some(a),
            Err(_) => {
                return Some(Attempt::Transient(anyhow!(
                    "{}: no answer from the API server in time",
                    self.member.lease_path()
                )));
            }
        }
        let (mut live, others) = self.count_members(&by_name).await;
        live.push(self.settings.identity.clone());
        live.sort();
        live.dedup();
        let replicas = u32::try_from(live.len()).unwrap_or(u32::MAX);
        self.metrics.shard_replicas(replicas);
        for e in &mut self.shards {
            e.saw(by_name.remove(&e.settings.name));
        }
        if !others.is_empty() {
            let why = format!(
                "replica{} {} declare{} another shard count than this one's {}; this replica holds no shard until {} gone (give every replica the same --shards)",
                if others.len() == 1 { "" } else { "s" },
                others.join(", "),
                if others.len() == 1 { "s" } else { "" },
                self.count,
                if others.len() == 1 {
                    "it is"
                } else {
                    "they are"
                },
            );
            if self.mismatch.as_deref() != Some(why.as_str()) {
                tracing::error!("leader election: {why}");
                self.mismatch = Some(why.clone());
            }
            self.step_down_all(&why);
            self.fair = 0;
            return None;
        }
        self.mismatch = None;
        // The shares add up to the shard count: by rank among the live identities, the first
        // `count % replicas` replicas take one more.
        let rank = live
            .iter()
            .position(|id| *id == self.settings.identity)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0);
        let fair = self.count / replicas + u32::from(rank < self.count % replicas);
        self.fair = fair;
        let mut act = Vec::new();
        let mut kept = 0;
        for &i in &self.order {
            let e = &mut self.shards[i];
            if e.leading.is_some() {
                if kept < fair {
                    kept += 1;
                    act.push(i);
                } else {
                    e.step_down(&format!(
                        "rebalancing: {} shards over {replicas} replicas, this one keeps {fair}; the shard's lease lapses and another replica takes it",
                        self.count
                    ));
                }
            }
        }
        let mut slots = fair - kept;
        for &i in &self.order {
            if slots == 0 {
                break;
            }
            if self.shards[i].leading.is_none() && self.shards[i].is_free(now) {
                act.push(i);
                slots -= 1;
            }
        }
        let bound = self.bound();
        let writes = self
            .shards
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| act.contains(i))
            .map(|(_, e)| async move {
                let current = e.observed.clone();
                let r = match tokio::time::timeout(bound, e.decide(current, true)).await {
                    Ok(r) => r.map_err(Attempt::into_error),
                    Err(_) => Err(anyhow!(
                        "{}: no answer from the API server in time",
                        e.lease_path()
                    )),
                };
                e.after(r);
            });
        futures::future::join_all(writes).await;
        None
    }

    /// The identities of the other live replicas, and those among them that declare another
    /// shard count; a member Lease unchanged for [`STALE_MEMBER_DURATIONS`] durations is
    /// deleted (at the resourceVersion seen, so a replica that came back keeps it).
    async fn count_members(
        &mut self,
        leases: &HashMap<String, Lease>,
    ) -> (Vec<String>, Vec<String>) {
        let now = Instant::now();
        let mut live = Vec::new();
        let mut others = Vec::new();
        let mut stale = Vec::new();
        for (name, l) in leases {
            if l.metadata
                .labels
                .as_ref()
                .and_then(|m| m.get(ROLE_LABEL))
                .map(String::as_str)
                != Some("member")
            {
                continue;
            }
            let seen = self.members.entry(name.clone()).or_insert(MemberSeen {
                resource_version: None,
                seen: now,
                expires: None,
            });
            if seen.resource_version != l.metadata.resource_version {
                seen.resource_version
                    .clone_from(&l.metadata.resource_version);
                seen.seen = now;
            }
            let spec = l.spec.clone().unwrap_or_default();
            let duration = record_duration(&spec, self.settings.lease_duration);
            let holder = spec.holder_identity.filter(|h| !h.is_empty());
            seen.expires = holder.as_ref().map(|_| seen.seen + duration);
            if let Some(holder) = holder
                && now < seen.seen + duration
            {
                live.push(holder.clone());
                let declared = l
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SHARDS_ANNOTATION))
                    .cloned();
                if declared.as_deref() != Some(self.count.to_string().as_str()) {
                    others.push(format!(
                        "`{holder}` ({})",
                        declared.map_or_else(|| "no count".to_owned(), |d| format!("{d} shards"))
                    ));
                }
            } else if now >= seen.seen + duration * STALE_MEMBER_DURATIONS {
                stale.push((name.clone(), l.metadata.resource_version.clone()));
            }
        }
        self.members.retain(|n, _| leases.contains_key(n));
        for (name, rv) in stale {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: rv,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            if let Ok(Ok(_)) = tokio::time::timeout(self.bound(), self.api.delete(&name, &dp)).await
            {
                tracing::info!(
                    "leader election: deleted the member lease {name}, unchanged for {STALE_MEMBER_DURATIONS} lease durations"
                );
                self.members.remove(&name);
            }
        }
        (live, others)
    }

    /// On shutdown: release every held shard and delete the member Lease, so the others
    /// rebalance at their next round.
    async fn release(&mut self) {
        futures::future::join_all(self.shards.iter_mut().map(Election::release)).await;
        let dp = DeleteParams::default();
        let name = self.member.settings.name.clone();
        match tokio::time::timeout(self.settings.renew_deadline, self.api.delete(&name, &dp)).await
        {
            Ok(Ok(_)) => tracing::info!("leader election: deleted the member lease {name}"),
            _ => tracing::warn!(
                "leader election: could not delete the member lease {name} (the others count this replica out when it expires)"
            ),
        }
    }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("cannot read kubeconfig {}: {e}", path.display()))?;
            KubeConfig::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow!("kubeconfig {}: {e}", path.display()))?
        }
        None => KubeConfig::infer().await.map_err(|e| {
            anyhow!("--leader-elect: no Kubernetes configuration found (not in a cluster, no $KUBECONFIG or ~/.kube/config; or pass --lease-kubeconfig): {e}")
        })?,
    };
    let server = config.cluster_url.to_string();
    Client::try_from(config).map_err(|e| anyhow!("cannot make a client for {server}: {e}"))
}

/// Why an attempt did not end with a decision.
enum Attempt {
    /// Worth trying again next round (network, timeouts, 5xx, 429).
    Transient(anyhow::Error),
    /// Will not fix itself (forbidden, unauthorized, invalid): fatal at start, logged later.
    Fatal(anyhow::Error),
}

impl Attempt {
    fn into_error(self) -> anyhow::Error {
        match self {
            Attempt::Transient(e) | Attempt::Fatal(e) => e,
        }
    }
}

fn classify(what: &str, e: kube::Error) -> Attempt {
    match e {
        kube::Error::Api(s) => {
            let err = anyhow!("{what}: {} (HTTP {}, {})", s.message, s.code, s.reason);
            match s.code {
                401 | 403 | 404 | 422 | 400 => Attempt::Fatal(if s.code == 403 {
                    err.context("grant the ServiceAccount get, create and update on leases.coordination.k8s.io, and list and delete too with --shards (examples/kubernetes/reconciler-ha.yaml, reconciler-sharded.yaml)")
                } else {
                    err
                }),
                _ => Attempt::Transient(err),
            }
        }
        other => Attempt::Transient(anyhow!("{what}: {other}")),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The election's state between rounds.
struct Election {
    api: Api<Lease>,
    namespace: String,
    settings: Settings,
    metrics: Arc<Metrics>,
    elector: Arc<Elector>,
    /// The Lease as last read or written, and when this replica saw it change.
    observed: Option<Lease>,
    observed_at: Instant,
    /// While leading: the deadline of the grant.
    leading: Option<Instant>,
    term: u64,
    /// Where term numbers come from (one counter for all shards of a replica).
    terms: Arc<AtomicU64>,
    /// The shard this Lease stands for, under `--shards`.
    shard: Option<u32>,
    /// Labels and annotations the Lease carries (sharding's group and role).
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Election {
    fn new(
        api: Api<Lease>,
        namespace: String,
        settings: Settings,
        metrics: Arc<Metrics>,
        shard: Option<u32>,
        terms: Arc<AtomicU64>,
    ) -> Election {
        Election {
            api,
            namespace,
            elector: Arc::new(Elector {
                identity: settings.identity.clone(),
                grant: Mutex::new(None),
            }),
            settings,
            metrics,
            observed: None,
            observed_at: Instant::now(),
            leading: None,
            term: 0,
            terms,
            shard,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    fn lease_path(&self) -> String {
        format!("lease {}/{}", self.namespace, self.settings.name)
    }

    /// What holding this Lease makes this replica, for the log.
    fn role(&self) -> String {
        match self.shard {
            Some(i) => format!("the holder of shard {i}"),
            None => "the leader".to_owned(),
        }
    }

    fn set_held(&self, held: bool) {
        match self.shard {
            Some(i) => self.metrics.set_shard_held(i, held),
            None => self.metrics.set_leading(held),
        }
    }

    /// The Lease as a list just showed it (`None`: missing): observed like a read.
    fn saw(&mut self, l: Option<Lease>) {
        match l {
            Some(l) => {
                if self.observed.as_ref().map(|o| &o.metadata.resource_version)
                    != Some(&l.metadata.resource_version)
                {
                    self.observe(l);
                }
            }
            None => self.observed = None,
        }
    }

    /// Whether this replica may take the Lease now: missing, released, its own, or expired.
    fn is_free(&self, now: Instant) -> bool {
        let Some(spec) = self.observed.as_ref().and_then(|o| o.spec.as_ref()) else {
            return true;
        };
        match spec.holder_identity.as_deref().filter(|h| !h.is_empty()) {
            None => true,
            Some(h) if h == self.settings.identity => true,
            Some(_) => self.expiry_of_other().is_none_or(|e| now >= e),
        }
    }

    /// The labels and annotations this election's Leases carry, set on `meta`.
    fn mark(&self, meta: &mut ObjectMeta) {
        if !self.labels.is_empty() {
            meta.labels
                .get_or_insert_with(BTreeMap::new)
                .extend(self.labels.clone());
        }
        if !self.annotations.is_empty() {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(self.annotations.clone());
        }
    }

    /// When to try next: a retry period from now, or, for a follower, the moment the
    /// holder's lease expires if that is sooner (takeover within the lease duration).
    fn next_attempt(&self) -> Instant {
        let tick = Instant::now() + self.settings.retry_period;
        match (self.leading, self.expiry_of_other()) {
            // A leader wakes at its deadline at the latest, to step down on time.
            (Some(until), _) => tick.min(until),
            (None, Some(expiry)) => tick.min(expiry.max(Instant::now())),
            (None, None) => tick,
        }
    }

    /// When another holder's lease expires, as this replica measures it.
    fn expiry_of_other(&self) -> Option<Instant> {
        let spec = self.observed.as_ref()?.spec.as_ref()?;
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
        if holder == self.settings.identity {
            return None;
        }
        Some(self.observed_at + record_duration(spec, self.settings.lease_duration))
    }

    /// One round: try to acquire or renew, bounded (a leader's attempt never outlives its
    /// grant), then act on the outcome.
    async fn round(&mut self) {
        if self.leading.is_some_and(|until| Instant::now() >= until) {
            self.step_down("the lease was not renewed before the renew deadline");
        }
        let bound = match self.leading {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => self.settings.renew_deadline,
        };
        let r = match tokio::time::timeout(bound, self.try_acquire_or_renew()).await {
            Ok(r) => r.map_err(Attempt::into_error),
            Err(_) => Err(anyhow!(
                "{}: no answer from the API server in time",
                self.lease_path()
            )),
        };
        self.after(r);
    }

    /// Act on an attempt: `Ok(Some(sent))` holds the lease (renewed or acquired by a write
    /// sent at `sent`), `Ok(None)` another replica holds it.
    fn after(&mut self, r: anyhow::Result<Option<Instant>>) {
        match r {
            Ok(Some(sent)) => {
                self.metrics.lease_seen();
                let until = sent + self.settings.renew_deadline;
                if self.leading.is_none() {
                    self.term = self.terms.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::info!(
                        "leader election: `{}` is now {} ({}, term {})",
                        self.settings.identity,
                        self.role(),
                        self.lease_path(),
                        self.term
                    );
                    self.set_held(true);
                }
                self.leading = Some(until);
                self.elector.set(Some(Grant {
                    term: self.term,
                    until,
                }));
            }
            Ok(None) => {
                self.metrics.lease_seen();
                if self.leading.is_some() {
                    self.step_down("another replica holds the lease now");
                }
            }
            Err(e) => {
                if let Some(until) = self.leading {
                    tracing::warn!(
                        "leader election: cannot renew the lease ({} left before this replica stops writing): {e:#}",
                        crate::sources::spec::format_duration(
                            until.saturating_duration_since(Instant::now())
                        )
                    );
                } else {
                    tracing::warn!("leader election: cannot read or acquire the lease: {e:#}");
                }
            }
        }
        if self.leading.is_some_and(|until| Instant::now() >= until) {
            self.step_down("the lease was not renewed before the renew deadline");
        }
    }

    fn step_down(&mut self, why: &str) {
        self.leading = None;
        self.elector.set(None);
        self.set_held(false);
        match self.shard {
            None => tracing::error!(
                "leader election: `{}` stopped being the leader: {why}; it writes nothing until it holds the lease again",
                self.settings.identity
            ),
            Some(i) => tracing::warn!(
                "leader election: `{}` stopped holding shard {i}: {why}; it writes nothing to that shard's targets until it holds it again",
                self.settings.identity
            ),
        }
    }

    /// client-go's `tryAcquireOrRenew`: `Ok(Some(sent))` when this replica holds the lease
    /// after a successful write sent at `sent`, `Ok(None)` when another holds it.
    async fn try_acquire_or_renew(&mut self) -> Result<Option<Instant>, Attempt> {
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| classify(&format!("reading {}", self.lease_path()), e))?;
        self.decide(current, true).await
    }

    /// With the Lease as just read (`None`: it does not exist), acquire or renew it as
    /// client-go does; with `may_write` false only observe it.
    async fn decide(
        &mut self,
        current: Option<Lease>,
        may_write: bool,
    ) -> Result<Option<Instant>, Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let me = self.settings.identity.clone();
        let seconds = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = current else {
            if !may_write {
                self.observed = None;
                return Ok(None);
            }
            let mut metadata = ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            };
            self.mark(&mut metadata);
            let lease = Lease {
                metadata,
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            let sent = Instant::now();
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observe(l);
                    Ok(Some(sent))
                }
                // Another replica created it first.
                Err(e) if is_conflict(&e) => Ok(None),
                Err(e) => Err(classify(&format!("creating {}", self.lease_path()), e)),
            };
        };
        let changed = self.observed.as_ref().map(|o| &o.metadata.resource_version)
            != Some(&current.metadata.resource_version);
        if changed {
            self.observed = Some(current.clone());
            self.observed_at = Instant::now();
        }
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(me.as_str());
        if let Some(other) = holder
            && !ours
            && Instant::now()
                < self.observed_at + record_duration(&spec, self.settings.lease_duration)
        {
            tracing::debug!("leader election: `{other}` holds {}", self.lease_path());
            return Ok(None);
        }
        if !may_write {
            return Ok(None);
        }
        let mut next = current.clone();
        self.mark(&mut next.metadata);
        next.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(now.clone()),
            acquire_time: if ours {
                spec.acquire_time.clone().or(Some(now))
            } else {
                Some(now)
            },
            lease_transitions: Some(if ours {
                spec.lease_transitions.unwrap_or(0)
            } else {
                spec.lease_transitions.unwrap_or(0).saturating_add(1)
            }),
            ..spec
        });
        let sent = Instant::now();
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &next)
            .await
        {
            Ok(l) => {
                if !ours && let Some(prev) = holder {
                    tracing::info!(
                        "leader election: took over {} from `{prev}`, whose lease expired",
                        self.lease_path()
                    );
                }
                self.observe(l);
                Ok(Some(sent))
            }
            // Someone else wrote the Lease since it was read: whoever it is, it is not us.
            Err(e) if is_conflict(&e) => Ok(None),
            Err(e) => Err(classify(&format!("updating {}", self.lease_path()), e)),
        }
    }

    fn observe(&mut self, l: Lease) {
        self.observed = Some(l);
        self.observed_at = Instant::now();
    }

    /// On shutdown, a leader gives the lease up (empty holder, client-go's release), so a
    /// follower takes over at its next round; only if the Lease is still as this replica
    /// last wrote it.
    async fn release(&mut self) {
        self.elector.set(None);
        if self.leading.take().is_none() {
            return;
        }
        self.set_held(false);
        let Some(mut lease) = self.observed.clone() else {
            return;
        };
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now.clone());
            spec.acquire_time = Some(now);
        }
        let r = tokio::time::timeout(
            self.settings.renew_deadline,
            self.api
                .replace(&self.settings.name, &PostParams::default(), &lease),
        )
        .await;
        match r {
            Ok(Ok(_)) => tracing::info!("leader election: released {}", self.lease_path()),
            Ok(Err(e)) => tracing::warn!(
                "leader election: could not release {} (followers take over when it expires): {}",
                self.lease_path(),
                classify("", e).into_error()
            ),
            Err(_) => tracing::warn!(
                "leader election: could not release {} in time (followers take over when it expires)",
                self.lease_path()
            ),
        }
    }
}

/// The lease duration a record asks for, or ours when it has none.
fn record_duration(spec: &LeaseSpec, ours: Duration) -> Duration {
    spec.lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(ours, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> LeaderFlags {
        LeaderFlags {
            leader_elect: true,
            lease_name: "rangekeeper".into(),
            lease_namespace: None,
            identity: Some("pod-a".into()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            lease_kubeconfig: None,
            shards: None,
        }
    }

    #[test]
    fn client_go_defaults_are_valid_and_bad_orders_are_refused() {
        let s = Settings::from_flags(&flags()).unwrap();
        assert_eq!(s.identity, "pod-a");
        let mut f = flags();
        f.renew_deadline = Duration::from_secs(15);
        let e = Settings::from_flags(&f).unwrap_err().to_string();
        assert!(e.contains("--renew-deadline 15s must be shorter"), "{e}");
        let mut f = flags();
        f.retry_period = Duration::from_secs(10);
        let e = Settings::from_flags(&f).unwrap_err().to_string();
        assert!(e.contains("--retry-period 10s"), "{e}");
        let mut f = flags();
        f.lease_name = "Rangekeeper_1".into();
        let e = Settings::from_flags(&f).unwrap_err().to_string();
        assert!(e.contains("`Rangekeeper_1`"), "{e}");
        let mut f = flags();
        f.identity = None;
        let a = Settings::from_flags(&f).unwrap().identity;
        let b = Settings::from_flags(&f).unwrap().identity;
        assert_ne!(a, b, "a default identity is unique per process");
    }

    fn elector() -> Arc<Elector> {
        Arc::new(Elector {
            identity: "a".into(),
            grant: Mutex::new(None),
        })
    }

    #[test]
    fn a_sharded_replica_writes_a_target_only_under_its_shards_grant() {
        let fence = ShardFence {
            identity: "a".into(),
            electors: (0..4).map(|_| elector()).collect(),
        };
        assert_eq!(fence.grant(), None);
        let names: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        let in_shard =
            |k: u32| -> Vec<&String> { names.iter().filter(|n| shard::of(n, 4) == k).collect() };
        assert!(!in_shard(1).is_empty() && !in_shard(3).is_empty());
        let now = Instant::now();
        let g1 = Grant {
            term: 7,
            until: now + Duration::from_secs(9),
        };
        fence.electors[1].set(Some(g1));
        for n in &names {
            let want = (shard::of(n, 4) == 1).then_some(g1);
            assert_eq!(fence.grant_for(n), want, "{n}");
        }
        assert_eq!(fence.grant(), Some(g1));
        // Two shards: the newest term, the earliest deadline.
        let g3 = Grant {
            term: 8,
            until: now + Duration::from_secs(5),
        };
        fence.electors[3].set(Some(g3));
        assert_eq!(
            fence.grant(),
            Some(Grant {
                term: 8,
                until: g3.until
            })
        );
        assert_eq!(fence.grant_for(in_shard(3)[0]), Some(g3));
        assert_eq!(fence.grant_for(in_shard(0).first().unwrap()), None);
        assert_eq!(fence.identity().as_deref(), Some("a"));
    }

    #[test]
    fn shard_flags_are_checked() {
        let mut f = flags();
        f.shards = Some(4);
        f.lease_name = vec!["a".repeat(59); 4].join(".");
        let e = Settings::from_flags(&f).unwrap_err().to_string();
        assert!(e.contains("too long for --shards"), "{e}");
        f.lease_name = "rangekeeper".into();
        assert_eq!(Settings::from_flags(&f).unwrap().shards, Some(4));
    }

    #[test]
    fn a_grant_past_its_deadline_allows_no_write() {
        let e = Elector {
            identity: "a".into(),
            grant: Mutex::new(None),
        };
        assert!(e.grant().is_none_or(|g| Instant::now() >= g.until));
        e.set(Some(Grant {
            term: 1,
            until: Instant::now() + Duration::from_secs(5),
        }));
        assert!(e.grant().is_some_and(|g| Instant::now() < g.until));
        e.set(Some(Grant {
            term: 1,
            until: Instant::now(),
        }));
        assert!(e.grant().is_none_or(|g| Instant::now() >= g.until));
    }
}
