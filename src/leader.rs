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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config as KubeConfig};

use crate::cli::LeaderFlags;
use crate::reconcile::fence::{Fence, Grant};
use crate::reconcile::metrics::Metrics;

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

/// The running election: its fence for the reconcile loop, and the task to stop.
pub struct Running {
    pub elector: Arc<Elector>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop: no grant from now on, and a leader releases the Lease (so a follower takes over
    /// at once instead of after the lease duration). Call once the loop wrote its last.
    pub async fn stop(self) {
        self.elector.set(None);
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
    let elector = Arc::new(Elector {
        identity: settings.identity.clone(),
        grant: Mutex::new(None),
    });
    metrics.leader_election(&settings.identity, settings.lease_duration);
    let mut state = Election {
        api,
        namespace,
        settings,
        metrics,
        elector: elector.clone(),
        observed: None,
        observed_at: Instant::now(),
        leading: None,
        term: 0,
    };
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
        elector,
        stop,
        task,
    })
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
                    err.context("grant the ServiceAccount get, create and update on leases.coordination.k8s.io (examples/kubernetes/reconciler-ha.yaml)")
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
}

impl Election {
    fn lease_path(&self) -> String {
        format!("lease {}/{}", self.namespace, self.settings.name)
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
                    self.term += 1;
                    tracing::info!(
                        "leader election: `{}` is now the leader ({}, term {})",
                        self.settings.identity,
                        self.lease_path(),
                        self.term
                    );
                    self.metrics.set_leading(true);
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
        self.metrics.set_leading(false);
        tracing::error!(
            "leader election: `{}` stopped being the leader: {why}; it writes nothing until it holds the lease again",
            self.settings.identity
        );
    }

    /// client-go's `tryAcquireOrRenew`: `Ok(Some(sent))` when this replica holds the lease
    /// after a successful write sent at `sent`, `Ok(None)` when another holds it.
    async fn try_acquire_or_renew(&mut self) -> Result<Option<Instant>, Attempt> {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let me = self.settings.identity.clone();
        let seconds = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = self
            .api
            .get_opt(&self.settings.name)
            .await
            .map_err(|e| classify(&format!("reading {}", self.lease_path()), e))?;
        let Some(current) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..ObjectMeta::default()
                },
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
        let mut next = current.clone();
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
        self.metrics.set_leading(false);
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
