//! Azure Kubernetes Service provider: keeps a managed cluster's
//! `properties.apiServerAccessProfile.authorizedIPRanges` through Azure Resource Manager.
//!
//! A change is a GET of the whole cluster, a change of that one field, and a PUT of the
//! whole object back with `If-Match: <eTag>`, followed by polling the long-running
//! operation and reading the cluster back. Each call makes one attempt: conflicts (409/412,
//! another operation in progress, a canceled operation), throttling (with ARM's Retry-After)
//! and transient failures come back typed, and the binary's retry policy decides whether to
//! run the whole read-modify-write again. Waiting for the operation our PUT started is not a
//! retry: it stays here, bounded by [`Polling::operation_timeout`].

pub mod arm;
pub mod check;
pub mod cluster;
pub mod config;
pub mod credential;
pub mod discover;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, Restriction,
    State, TargetConfig, UnrestrictedForm, Violation,
};

use crate::arm::{Accepted, ArmClient, PollStatus};
pub use crate::config::AksTarget;
pub use crate::credential::{
    ACCESS_TOKEN_VAR, BearerToken, CredentialChain, CredentialEnv, StaticToken, TokenSource,
};
pub use crate::discover::discovery_factory;

/// The provider's name in `provider:`.
pub const NAME: &str = "aks";
/// Most authorized IP ranges AKS accepts.
pub const MAX_RANGES: usize = 200;

/// The API quota of a target ([`rangekeeper_provider::QuotaScope`]): ARM counts requests per
/// subscription (for each caller), so every cluster of a subscription draws on the same
/// reads and writes.
pub fn quota_scope(cfg: &TargetConfig) -> Option<String> {
    let target = AksTarget::from_config(cfg).ok()?;
    Some(format!(
        "aks/subscription/{}",
        target.subscription.to_ascii_lowercase()
    ))
}

/// Below this many remaining subscription reads (ARM's
/// `x-ms-ratelimit-remaining-subscription-reads`), a read reports `State::quota_low` so the
/// binary slows the subscription down before ARM answers 429. ARM refills a subscription's
/// read bucket (250 reads) at 25 a second per caller; 100 left is 40% of the bucket, time
/// enough to halve the concurrency once or twice before it runs dry.
pub const LOW_REMAINING_READS: u64 = 100;

/// The static capabilities of the AKS provider.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        NAME,
        "Azure Kubernetes Service: apiServerAccessProfile.authorizedIPRanges via Azure Resource Manager",
    )
    .with_max_ranges(Some(MAX_RANGES))
    .with_unrestricted(UnrestrictedForm::EmptyList)
    .with_async_apply(true)
    .with_leases(true)
}

/// The lease records an apply writes as tags in the same PUT, and the eTag it was planned at.
#[derive(Clone, Copy)]
struct Leased<'a> {
    leases: &'a [Lease],
    version: Option<&'a str>,
}

/// Build the provider for one target, with credentials from the environment (see
/// [`CredentialChain::from_env`]). No network call happens here.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let target = AksTarget::from_config(cfg)?;
    let tokens = shared_chain(target.cloud);
    Ok(Box::new(AksProvider::new(target, tokens)?))
}

/// The credential chain of each cloud, shared by every cluster of the process.
static CHAINS: Mutex<Vec<(config::Cloud, Arc<credential::LazyChain>)>> = Mutex::new(Vec::new());

/// The process's credential chain for `cloud`, assembled on first use. One per cloud, not one
/// per target: assembling a chain builds every Azure credential of it (each with its own
/// HTTP client, loading the root certificates: about 5 ms of CPU per target), and each chain
/// caches its own token, so a fleet of N clusters asked Entra ID (or the metadata endpoint)
/// for N tokens per pass instead of one. The credentials come from the process's environment
/// either way, and a token is cached for its scope only.
fn shared_chain(cloud: config::Cloud) -> Arc<dyn TokenSource> {
    let mut chains = CHAINS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, chain)) = chains.iter().find(|(c, _)| *c == cloud) {
        return chain.clone();
    }
    let chain = Arc::new(credential::LazyChain::new(
        CredentialEnv::from_process(),
        cloud,
    ));
    chains.push((cloud, chain.clone()));
    chain
}

/// Bounds of the provider's wait for a long-running operation it started (not a retry:
/// retries belong to the binary's policy).
#[derive(Debug, Clone)]
pub struct Polling {
    /// Longest wait for a long-running operation.
    pub operation_timeout: Duration,
    /// Poll interval when the server sends no Retry-After.
    pub default_poll: Duration,
    /// Shortest poll interval, whatever Retry-After says.
    pub min_poll: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            operation_timeout: Duration::from_secs(30 * 60),
            default_poll: Duration::from_secs(10),
            min_poll: Duration::from_secs(1),
        }
    }
}

/// Longest pause between two polls of an operation, whatever its Retry-After says.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(120);

/// What an apply or disable should leave on the cluster.
enum Goal<'a> {
    Ranges(&'a RangeSet),
    Unrestricted,
}

impl Goal<'_> {
    fn is_met_by(&self, r: &Restriction) -> bool {
        match (self, r) {
            (Goal::Unrestricted, Restriction::Unrestricted) => true,
            (Goal::Ranges(d), Restriction::Ranges(c)) => *d == c,
            _ => false,
        }
    }

    fn strings(&self) -> Vec<String> {
        match self {
            Goal::Ranges(d) => cluster::range_strings(d),
            Goal::Unrestricted => Vec::new(),
        }
    }
}

/// What the node egress check found.
#[derive(Debug, Default)]
struct EgressCheck {
    /// The nodes' outbound public addresses (none when the check is turned off).
    egress: Vec<IpAddr>,
    /// Things the user should know (egress the check cannot see).
    notes: Vec<String>,
    /// Set when the desired list leaves some of `egress` out.
    violation: Option<Violation>,
}

/// The AKS provider bound to one cluster.
#[derive(Debug)]
pub struct AksProvider {
    target: AksTarget,
    arm: ArmClient,
    polling: Polling,
    /// The ranges of a PUT whose outcome we do not know (its answer was lost, or polling its
    /// operation failed): when a later call finds the cluster holding them, that is our
    /// change, to be waited for and confirmed rather than reported as "already in sync".
    unconfirmed: Mutex<Option<Vec<String>>>,
}

impl AksProvider {
    /// A provider for `target` that takes its tokens from `tokens`.
    pub fn new(target: AksTarget, tokens: Arc<dyn TokenSource>) -> Result<Self, ProviderError> {
        let arm = ArmClient::new(&target, tokens)?;
        Ok(AksProvider {
            target,
            arm,
            polling: Polling::default(),
            unconfirmed: Mutex::new(None),
        })
    }

    /// Replace the polling bounds (tests use short ones).
    pub fn with_polling(mut self, polling: Polling) -> Self {
        self.polling = polling;
        self
    }

    pub fn target(&self) -> &AksTarget {
        &self.target
    }

    async fn get_cluster(&self) -> Result<arm::Resource, ProviderError> {
        self.arm.get_cluster().await.map_err(|e| self.context(e))
    }

    /// Name the cluster in a not-found error so the user knows which declaration is wrong.
    fn context(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::NotFound(m) => ProviderError::NotFound(format!(
                "managed cluster `{}` in resource group `{}` (subscription {}): {m}",
                self.target.cluster, self.target.resource_group, self.target.subscription
            )),
            other => other,
        }
    }

    /// The public addresses the nodes use to reach the API server.
    async fn egress_ips(&self, body: &serde_json::Value) -> Result<Vec<IpAddr>, ProviderError> {
        let mut ips = Vec::new();
        for id in cluster::outbound_ip_ids(body) {
            let ip = self.arm.get_public_ip(&id).await.map_err(|e| {
                let hint = "; set `allowNodeEgressLockout: true` to skip the node egress check";
                match e {
                    ProviderError::Auth(m) => ProviderError::Auth(format!("{m}{hint}")),
                    ProviderError::NotFound(m) => ProviderError::NotFound(format!("{m}{hint}")),
                    other => other,
                }
            })?;
            match ip {
                Some(ip) => ips.push(ip),
                None => {
                    tracing::warn!(public_ip = %id, "outbound public IP has no address assigned yet")
                }
            }
        }
        Ok(ips)
    }

    /// The node egress check, one code path for `preflight` (while planning) and `apply`
    /// (the last line): the public addresses the nodes use, notes for the user, and a
    /// violation when `desired` would cut the nodes off their own API server.
    async fn egress_check(
        &self,
        body: &serde_json::Value,
        desired: &RangeSet,
    ) -> Result<EgressCheck, ProviderError> {
        let mut check = EgressCheck::default();
        if let Some(t) = cluster::outbound_type(body)
            && matches!(
                t,
                "userDefinedRouting" | "userAssignedNATGateway" | "none" | "block"
            )
        {
            check.notes.push(format!(
                "node egress goes through {t}, whose public IPs rangekeeper cannot discover: make sure they are in the list (declare them under `protect`)"
            ));
        }
        if self.target.allow_node_egress_lockout {
            return Ok(check);
        }
        check.egress = self.egress_ips(body).await?;
        // 0.0.0.0/32 alone admits exactly the cluster's own outbound IP.
        if cluster::is_own_outbound_only(desired) {
            return Ok(check);
        }
        let missing = cluster::missing_egress(desired, &check.egress);
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            check.violation = Some(Violation::new(format!(
                "the cluster's nodes reach the API server from {} (their outbound public IP{}), which the desired list does not contain: applying it would cut the nodes off. Add {} to `allow` (or `protect`), or set `allowNodeEgressLockout: true` if the nodes reach the API server another way",
                list.join(", "),
                if list.len() == 1 { "" } else { "s" },
                if list.len() == 1 { "it" } else { "them" },
            )));
        }
        Ok(check)
    }

    /// Refuse a list that would cut the nodes off their own API server. Returns the egress
    /// addresses found and notes for the user.
    async fn egress_guard(
        &self,
        body: &serde_json::Value,
        desired: &RangeSet,
    ) -> Result<(Vec<IpAddr>, Vec<String>), ProviderError> {
        let check = self.egress_check(body, desired).await?;
        if let Some(v) = check.violation {
            return Err(ProviderError::Invalid(format!(
                "target `{}`: {}",
                self.target.name, v.message
            )));
        }
        Ok((check.egress, check.notes))
    }

    /// Wait for an accepted PUT to finish.
    async fn wait_operation(
        &self,
        accepted: &Accepted,
        opts: &ApplyOptions,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut delay = accepted.retry_after.unwrap_or(self.polling.default_poll);
        if accepted.async_operation.is_none() && accepted.location.is_none() {
            // A synchronous answer, or one without a polling URL: watch the cluster itself.
            if let Some(state) = accepted.body.as_ref().and_then(cluster::provisioning_state)
                && state.eq_ignore_ascii_case("succeeded")
            {
                return Ok(());
            }
        }
        loop {
            if started.elapsed() > self.polling.operation_timeout {
                return Err(ProviderError::Transient(format!(
                    "the update of cluster `{}` did not finish within {}s; it may still complete (run plan again to see)",
                    self.target.cluster,
                    self.polling.operation_timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay.min(MAX_POLL_INTERVAL).max(self.polling.min_poll)).await;
            let polled = if let Some(url) = &accepted.async_operation {
                self.arm.poll_async_operation(url).await
            } else if let Some(url) = &accepted.location {
                self.arm.poll_location(url).await
            } else {
                self.arm.get_cluster().await.map(|r| {
                    let state = cluster::provisioning_state(&r.body)
                        .unwrap_or("")
                        .to_owned();
                    let status = match state.to_ascii_lowercase().as_str() {
                        "succeeded" => PollStatus::Succeeded,
                        "failed" => PollStatus::Failed {
                            code: "Failed".into(),
                            message: "the cluster's provisioningState is Failed".into(),
                        },
                        "canceled" | "cancelled" => PollStatus::Canceled {
                            code: "Canceled".into(),
                            message: "the cluster's provisioningState is Canceled".into(),
                        },
                        _ => PollStatus::Running { status: state },
                    };
                    arm::Poll {
                        status,
                        retry_after: None,
                    }
                })
            };
            // A failed poll ends this call: the policy runs the apply again, which finds
            // the operation's outcome by reading the cluster (`unconfirmed`).
            let poll = polled?;
            delay = poll.retry_after.unwrap_or(self.polling.default_poll);
            match poll.status {
                PollStatus::Succeeded => return Ok(()),
                PollStatus::Running { status } => {
                    let status = if status.is_empty() {
                        "InProgress".to_owned()
                    } else {
                        status
                    };
                    opts.progress.message(&format!(
                        "waiting for Azure to update cluster {}: {status} ({}s)",
                        self.target.cluster,
                        started.elapsed().as_secs()
                    ));
                }
                PollStatus::Failed { code, message } => {
                    let text = format!(
                        "Azure reported the update of cluster `{}` failed: {code}: {message}",
                        self.target.cluster
                    );
                    return Err(
                        if code.contains("InvalidParameter") || code.contains("BadRequest") {
                            ProviderError::Invalid(text)
                        } else {
                            ProviderError::Other(text)
                        },
                    );
                }
                PollStatus::Canceled { code, message } => {
                    // Usually preempted by another operation: re-read and retry.
                    return Err(ProviderError::Conflict(format!(
                        "the update of cluster `{}` was canceled: {code}: {message}",
                        self.target.cluster
                    )));
                }
            }
        }
    }

    /// Wait until the cluster's provisioningState is final (after a PUT whose answer we lost).
    async fn wait_settled(&self, opts: &ApplyOptions) -> Result<arm::Resource, ProviderError> {
        let started = Instant::now();
        loop {
            let res = self.get_cluster().await?;
            let state = cluster::provisioning_state(&res.body)
                .unwrap_or("Succeeded")
                .to_owned();
            if cluster::is_terminal_state(&state)
                || started.elapsed() > self.polling.operation_timeout
            {
                return Ok(res);
            }
            opts.progress.message(&format!(
                "waiting for Azure to update cluster {}: {state} ({}s)",
                self.target.cluster,
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(self.polling.default_poll.max(self.polling.min_poll)).await;
        }
    }

    /// Remember (or forget) a PUT of `ranges` whose outcome is unknown.
    fn set_unconfirmed(&self, ranges: Option<Vec<String>>) {
        if let Ok(mut g) = self.unconfirmed.lock() {
            *g = ranges;
        }
    }

    /// Whether the PUT whose outcome was unknown was one of `ranges`; forgets it either way.
    fn take_unconfirmed(&self, ranges: &[String]) -> bool {
        self.unconfirmed
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .is_some_and(|sent| sent == ranges)
    }

    /// GET, compare, change the one field, PUT with If-Match, wait, read back. One attempt:
    /// a conflict, throttling or transient failure comes back typed, and the retry policy
    /// runs all of it again from the GET (so a retried PUT always carries a fresh eTag).
    async fn converge(
        &self,
        goal: Goal<'_>,
        leased: Option<Leased<'_>>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut notes: Vec<String> = Vec::new();
        let wanted = goal.strings();
        let res = self.get_cluster().await?;
        if let Some(Leased {
            version: Some(v), ..
        }) = leased
            && res.etag.as_deref() != Some(v)
        {
            return Err(ProviderError::Conflict(format!(
                "cluster `{}` changed since it was read (eTag {} is now {})",
                self.target.cluster,
                v,
                res.etag.as_deref().unwrap_or("absent")
            )));
        }
        let current = cluster::restriction_of(&res.body)?;
        let tags_met = leased.is_none_or(|l| cluster::lease_tags_are(&res.body, l.leases));
        if goal.is_met_by(&current) && tags_met {
            if !self.take_unconfirmed(&wanted) {
                tracing::debug!(cluster = %self.target.cluster, "already in sync: nothing sent");
                return Ok(Applied::unchanged());
            }
            // Our earlier PUT got through although its outcome was not known.
            if !opts.wait {
                return Ok(Applied::pending());
            }
            let settled = self.wait_settled(opts).await.inspect_err(|_| {
                self.set_unconfirmed(Some(wanted.clone()));
            })?;
            return self.confirm(&goal, leased, &settled.body, &[], notes);
        }

        let egress = match &goal {
            Goal::Ranges(desired) => {
                let (egress, guard_notes) = self.egress_guard(&res.body, desired).await?;
                notes.extend(guard_notes);
                egress
            }
            Goal::Unrestricted => Vec::new(),
        };

        let mut body = res.body;
        cluster::set_ranges(&mut body, &wanted)?;
        if let Some(l) = leased {
            // The lease tags travel in the same If-Match PUT as the ranges.
            cluster::set_lease_tags(&mut body, l.leases)?;
        }
        opts.progress.message(&format!(
            "updating authorized IP ranges of cluster {}",
            self.target.cluster
        ));
        let accepted = match self.arm.put_cluster(&body, res.etag.as_deref()).await {
            Ok(accepted) => accepted,
            Err(e) => {
                // A lost answer: the PUT may have reached Azure.
                if matches!(e, ProviderError::Transient(_)) {
                    self.set_unconfirmed(Some(wanted));
                }
                return Err(self.context(e));
            }
        };
        if !opts.wait {
            return Ok(Applied::pending().with_notes(notes));
        }
        let finished = match self.wait_operation(&accepted, opts).await {
            Ok(()) => self.get_cluster().await,
            Err(e) => Err(e),
        };
        match finished {
            Ok(back) => self.confirm(&goal, leased, &back.body, &egress, notes),
            Err(e) => {
                // Polling failed or timed out: the operation may still finish.
                if matches!(
                    e,
                    ProviderError::Transient(_) | ProviderError::Throttled { .. }
                ) {
                    self.set_unconfirmed(Some(wanted));
                }
                Err(self.context(e))
            }
        }
    }

    /// After the operation: the cluster must hold the goal (canonical comparison; the server
    /// rewrites bare IPs to /32).
    fn confirm(
        &self,
        goal: &Goal<'_>,
        leased: Option<Leased<'_>>,
        body: &serde_json::Value,
        egress: &[IpAddr],
        mut notes: Vec<String>,
    ) -> Result<Applied, ProviderError> {
        if let Some(l) = leased
            && !cluster::lease_tags_are(body, l.leases)
        {
            return Err(ProviderError::Conflict(format!(
                "cluster `{}` was changed by someone else after our update succeeded: its lease tags differ",
                self.target.cluster
            )));
        }
        let back = cluster::restriction_of(body)?;
        if goal.is_met_by(&back) {
            return Ok(Applied::changed().with_notes(notes));
        }
        // Whether AKS adds the load balancer's outbound IPs itself is not documented; accept
        // exactly that difference and say so.
        if let (Goal::Ranges(desired), Restriction::Ranges(held)) = (goal, &back)
            && !egress.is_empty()
        {
            let with_egress = egress.iter().fold((*desired).clone(), |mut s, ip| {
                s.insert(rangekeeper_provider::cidr::IpNet::from(*ip));
                s
            });
            if *held == with_egress {
                notes.push(format!(
                    "Azure added the cluster's outbound IPs to the list: it now holds {held}"
                ));
                return Ok(Applied::changed().with_notes(notes));
            }
        }
        let held = match back {
            Restriction::Unrestricted => "no ranges (unrestricted)".to_owned(),
            Restriction::Ranges(s) => s.to_string(),
            other => format!("{other:?}"),
        };
        Err(ProviderError::Conflict(format!(
            "cluster `{}` was changed by someone else after our update succeeded: it now holds {held}",
            self.target.cluster
        )))
    }
}

#[async_trait::async_trait]
impl Provider for AksProvider {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        check::violations(desired)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let res = self.get_cluster().await?;
        let restriction = cluster::restriction_of(&res.body)?;
        let leases = cluster::leases_of(&res.body)?;
        let mut state = State::new(restriction).with_leases(leases, res.etag.clone());
        state.details = cluster::details(&res.body);
        state.quota_low = res.remaining_reads.filter(|n| *n < LOW_REMAINING_READS);
        match &state.restriction {
            Restriction::Unrestricted => state.warnings.push(
                "no authorized IP ranges: the API server is open to the whole internet".into(),
            ),
            Restriction::Ranges(set) if cluster::is_own_outbound_only(set) => {
                state.details.push((
                    "authorizedIPRanges".into(),
                    "only the cluster's own outbound IP (0.0.0.0/32)".into(),
                ));
                state.warnings.push(
                    "only the cluster's own outbound IP (0.0.0.0/32) may reach the API server"
                        .into(),
                );
            }
            _ => {}
        }
        if cluster::is_private_cluster(&res.body) {
            state.warnings.push(
                "this is a private cluster: authorized IP ranges do not apply to its private API server endpoint".into(),
            );
        }
        if let Some(ps) = cluster::provisioning_state(&res.body)
            && !ps.eq_ignore_ascii_case("succeeded")
        {
            state
                .warnings
                .push(format!("the cluster's provisioningState is {ps}"));
        }
        Ok(state)
    }

    /// The node egress check, while planning: a desired list that leaves out the nodes'
    /// outbound public IPs is refused before anything is written anywhere.
    async fn preflight(
        &self,
        desired: &RangeSet,
        _current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        if self.target.allow_node_egress_lockout {
            return Ok(Vec::new());
        }
        let res = self.get_cluster().await?;
        let check = self.egress_check(&res.body, desired).await?;
        Ok(check.violation.into_iter().collect())
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        self.apply_ranges(desired, None, opts).await
    }

    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::lease::refuse_unheld(desired, leases)?;
        self.apply_ranges(desired, Some(Leased { leases, version }), opts)
            .await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.converge(Goal::Unrestricted, None, opts).await
    }
}

impl AksProvider {
    async fn apply_ranges(
        &self,
        desired: &RangeSet,
        leased: Option<Leased<'_>>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "on AKS an empty list opens the API server to the whole internet",
        )?;
        let violations = check::violations(desired);
        if !violations.is_empty() {
            let text: Vec<String> = violations
                .iter()
                .map(|v| match &v.range {
                    Some(r) => format!("{r}: {}", v.message),
                    None => v.message.clone(),
                })
                .collect();
            return Err(ProviderError::Invalid(text.join("; ")));
        }
        if desired.len() > MAX_RANGES {
            return Err(ProviderError::Invalid(format!(
                "{} ranges: AKS accepts at most {MAX_RANGES}",
                desired.len()
            )));
        }
        self.converge(Goal::Ranges(desired), leased, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_of_one_cloud_share_one_credential_chain() {
        // One chain per cloud: its credentials are built, and its token fetched, once per
        // process instead of once per target.
        let a = shared_chain(config::Cloud::Public);
        let b = shared_chain(config::Cloud::Public);
        let china = shared_chain(config::Cloud::China);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &china));
    }
}
