//! Azure Kubernetes Service provider: keeps a managed cluster's
//! `properties.apiServerAccessProfile.authorizedIPRanges` through Azure Resource Manager.
//!
//! A change is a GET of the whole cluster, a change of that one field, and a PUT of the
//! whole object back with `If-Match: <eTag>`, followed by polling the long-running
//! operation and reading the cluster back. Conflicts (409/412), throttling and transient
//! failures are retried after re-reading, bounded and jittered.

pub mod arm;
pub mod check;
pub mod cluster;
pub mod config;
pub mod credential;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, Restriction, State,
    TargetConfig, UnrestrictedForm, Violation,
};

use crate::arm::{Accepted, ArmClient, PollStatus};
pub use crate::config::AksTarget;
pub use crate::credential::{
    ACCESS_TOKEN_VAR, BearerToken, CredentialChain, CredentialEnv, StaticToken, TokenSource,
};

/// The provider's name in `provider:`.
pub const NAME: &str = "aks";
/// Most authorized IP ranges AKS accepts.
pub const MAX_RANGES: usize = 200;

/// The static capabilities of the AKS provider.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        NAME,
        "Azure Kubernetes Service: apiServerAccessProfile.authorizedIPRanges via Azure Resource Manager",
    )
    .with_max_ranges(Some(MAX_RANGES))
    .with_unrestricted(UnrestrictedForm::EmptyList)
    .with_async_apply(true)
}

/// Build the provider for one target, with credentials from the environment (see
/// [`CredentialChain::from_env`]). No network call happens here.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let target = AksTarget::from_config(cfg)?;
    let tokens = Arc::new(CredentialChain::from_env(
        &CredentialEnv::from_process(),
        target.cloud,
    ));
    Ok(Box::new(AksProvider::new(target, tokens)?))
}

/// Bounds of every wait and retry the provider does.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Most retries of one apply or read (conflicts, throttling, transient errors together).
    pub attempts: u32,
    /// First backoff; doubles per retry, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest wait for a long-running operation.
    pub operation_timeout: Duration,
    /// Poll interval when the server sends no Retry-After.
    pub default_poll: Duration,
    /// Shortest poll interval, whatever Retry-After says.
    pub min_poll: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 10,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            operation_timeout: Duration::from_secs(30 * 60),
            default_poll: Duration::from_secs(10),
            min_poll: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `attempt` (0-based): equal jitter over an exponential cap.
    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let half = cap / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }

    /// How long to wait before retrying after `err`: the server's Retry-After if it gave
    /// one (never less than our backoff), our backoff otherwise.
    fn delay_for(&self, err: &ProviderError, attempt: u32) -> Duration {
        let ours = self.backoff(attempt);
        match err {
            ProviderError::Throttled {
                retry_after: Some(ra),
                ..
            } => (*ra).max(ours),
            _ => ours,
        }
    }
}

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

/// The AKS provider bound to one cluster.
#[derive(Debug)]
pub struct AksProvider {
    target: AksTarget,
    arm: ArmClient,
    policy: RetryPolicy,
}

impl AksProvider {
    /// A provider for `target` that takes its tokens from `tokens`.
    pub fn new(target: AksTarget, tokens: Arc<dyn TokenSource>) -> Result<Self, ProviderError> {
        let arm = ArmClient::new(&target, tokens)?;
        Ok(AksProvider {
            target,
            arm,
            policy: RetryPolicy::default(),
        })
    }

    /// Replace the retry and polling bounds (tests use short ones).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn target(&self) -> &AksTarget {
        &self.target
    }

    /// Run an idempotent read, retrying throttling and transient errors (bounded, jittered).
    async fn read_retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if matches!(
                        e,
                        ProviderError::Throttled { .. } | ProviderError::Transient(_)
                    ) && attempt < self.policy.attempts =>
                {
                    let d = self.policy.delay_for(&e, attempt);
                    tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "{what}: retrying");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_cluster(&self) -> Result<arm::Resource, ProviderError> {
        self.read_retrying("reading the managed cluster", || self.arm.get_cluster())
            .await
            .map_err(|e| self.context(e))
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
            let ip = self
                .read_retrying("reading an outbound public IP", || {
                    self.arm.get_public_ip(&id)
                })
                .await
                .map_err(|e| {
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

    /// Refuse a list that would cut the nodes off their own API server. Returns the egress
    /// addresses found and notes for the user.
    async fn egress_guard(
        &self,
        body: &serde_json::Value,
        desired: &RangeSet,
    ) -> Result<(Vec<IpAddr>, Vec<String>), ProviderError> {
        let mut notes = Vec::new();
        if let Some(t) = cluster::outbound_type(body)
            && matches!(
                t,
                "userDefinedRouting" | "userAssignedNATGateway" | "none" | "block"
            )
        {
            notes.push(format!(
                "node egress goes through {t}, whose public IPs rangekeeper cannot discover: make sure they are in the list (declare them under `protect`)"
            ));
        }
        if self.target.allow_node_egress_lockout {
            return Ok((Vec::new(), notes));
        }
        let egress = self.egress_ips(body).await?;
        // 0.0.0.0/32 alone admits exactly the cluster's own outbound IP.
        if cluster::is_own_outbound_only(desired) {
            return Ok((egress, notes));
        }
        let missing = cluster::missing_egress(desired, &egress);
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Err(ProviderError::Invalid(format!(
                "target `{}`: the cluster's nodes reach the API server from {} (their outbound public IP{}), which the desired list does not contain: applying it would cut the nodes off. Add {} to `allow` (or `protect`), or set `allowNodeEgressLockout: true` if the nodes reach the API server another way",
                self.target.name,
                list.join(", "),
                if list.len() == 1 { "" } else { "s" },
                if list.len() == 1 { "it" } else { "them" },
            )));
        }
        Ok((egress, notes))
    }

    /// Wait for an accepted PUT to finish.
    async fn wait_operation(
        &self,
        accepted: &Accepted,
        opts: &ApplyOptions,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut delay = accepted.retry_after.unwrap_or(self.policy.default_poll);
        let mut failures = 0u32;
        if accepted.async_operation.is_none() && accepted.location.is_none() {
            // A synchronous answer, or one without a polling URL: watch the cluster itself.
            if let Some(state) = accepted.body.as_ref().and_then(cluster::provisioning_state)
                && state.eq_ignore_ascii_case("succeeded")
            {
                return Ok(());
            }
        }
        loop {
            if started.elapsed() > self.policy.operation_timeout {
                return Err(ProviderError::Transient(format!(
                    "the update of cluster `{}` did not finish within {}s; it may still complete (run plan again to see)",
                    self.target.cluster,
                    self.policy.operation_timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay.max(self.policy.min_poll)).await;
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
            let poll = match polled {
                Ok(p) => {
                    failures = 0;
                    p
                }
                Err(e) if e.is_retryable() && failures < self.policy.attempts => {
                    let d = self.policy.delay_for(&e, failures);
                    tracing::warn!(error = %e, "polling the operation: retrying");
                    failures += 1;
                    delay = d;
                    continue;
                }
                Err(e) => return Err(e),
            };
            delay = poll.retry_after.unwrap_or(self.policy.default_poll);
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
                || started.elapsed() > self.policy.operation_timeout
            {
                return Ok(res);
            }
            opts.progress.message(&format!(
                "waiting for Azure to update cluster {}: {state} ({}s)",
                self.target.cluster,
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(self.policy.default_poll.max(self.policy.min_poll)).await;
        }
    }

    /// GET, compare, change the one field, PUT with If-Match, wait, read back; retried on
    /// conflicts, throttling and transient errors.
    async fn converge(
        &self,
        goal: Goal<'_>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let mut attempt = 0u32;
        // Set once a PUT may have reached Azure (accepted, or its answer was lost).
        let mut maybe_sent = false;
        let mut notes: Vec<String> = Vec::new();
        loop {
            let res = self.get_cluster().await?;
            let current = cluster::restriction_of(&res.body)?;
            if goal.is_met_by(&current) {
                if !maybe_sent {
                    tracing::debug!(cluster = %self.target.cluster, "already in sync: nothing sent");
                    return Ok(Applied::unchanged().with_notes(notes));
                }
                // Our earlier PUT got through although its answer was lost.
                if !opts.wait {
                    return Ok(Applied::pending().with_notes(notes));
                }
                let settled = self.wait_settled(opts).await?;
                return self.confirm(&goal, &settled.body, &[], notes);
            }

            let egress = match &goal {
                Goal::Ranges(desired) => {
                    let (egress, guard_notes) = self.egress_guard(&res.body, desired).await?;
                    for n in guard_notes {
                        if !notes.contains(&n) {
                            notes.push(n);
                        }
                    }
                    egress
                }
                Goal::Unrestricted => Vec::new(),
            };

            let mut body = res.body;
            cluster::set_ranges(&mut body, &goal.strings())?;
            opts.progress.message(&format!(
                "updating authorized IP ranges of cluster {}",
                self.target.cluster
            ));
            let outcome = match self.arm.put_cluster(&body, res.etag.as_deref()).await {
                Ok(accepted) => {
                    maybe_sent = true;
                    if !opts.wait {
                        return Ok(Applied::pending().with_notes(notes));
                    }
                    self.wait_operation(&accepted, opts).await
                }
                Err(e) => {
                    if matches!(e, ProviderError::Transient(_)) {
                        maybe_sent = true;
                    }
                    Err(e)
                }
            };
            match outcome {
                Ok(()) => {
                    let back = self.get_cluster().await?;
                    return self.confirm(&goal, &back.body, &egress, notes);
                }
                Err(e) if e.is_retryable() && attempt < self.policy.attempts => {
                    let d = self.policy.delay_for(&e, attempt);
                    tracing::info!(error = %e, retry_in_ms = d.as_millis() as u64, "re-reading the cluster and retrying");
                    opts.progress
                        .message(&format!("{e}; retrying in {}s", d.as_secs()));
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                Err(e) => return Err(self.context(e)),
            }
        }
    }

    /// After the operation: the cluster must hold the goal (canonical comparison; the server
    /// rewrites bare IPs to /32).
    fn confirm(
        &self,
        goal: &Goal<'_>,
        body: &serde_json::Value,
        egress: &[IpAddr],
        mut notes: Vec<String>,
    ) -> Result<Applied, ProviderError> {
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
        let mut state = State::new(restriction);
        state.details = cluster::details(&res.body);
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

    async fn apply(
        &self,
        desired: &RangeSet,
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
        self.converge(Goal::Ranges(desired), opts).await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.converge(Goal::Unrestricted, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let p = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        let mut seen = std::collections::HashSet::new();
        for attempt in 0..20 {
            for _ in 0..20 {
                let d = p.backoff(attempt);
                let cap = Duration::from_millis(100 * 2u64.pow(attempt.min(4)))
                    .min(Duration::from_millis(1000));
                assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
                seen.insert(d);
            }
        }
        assert!(seen.len() > 20, "no jitter: {seen:?}");
        let throttled = ProviderError::Throttled {
            message: String::new(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.delay_for(&throttled, 0), Duration::from_secs(7));
    }
}
