//! Google Kubernetes Engine provider: keeps a cluster's control-plane authorized networks
//! (`controlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig`, or the legacy
//! `masterAuthorizedNetworksConfig` when only that is present) through the GKE API.
//!
//! A change is a `clusters.get`, a compare of canonical sets (no call when they match), and a
//! `clusters.update` with exactly one field,
//! `desiredControlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig`, and the
//! etag read; the returned Operation is followed until DONE (progress on stderr) and the
//! cluster read back. Every call is made once: ABORTED (etag mismatch) and FAILED_PRECONDITION
//! (another operation running) are `Conflict`, 429 is `Throttled`, 5xx and connection errors
//! `Transient`; the core's retry policy decides what to retry.

pub mod api;
pub mod cluster;
pub mod config;
pub mod credential;
pub mod discover;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, Restriction, State,
    TargetConfig, UnrestrictedForm, Violation,
};

use crate::api::{GkeClient, Operation, operation_error};
use crate::cluster::Goal;
pub use crate::config::GkeTarget;
pub use crate::credential::{
    ACCESS_TOKEN_VAR, AccessToken, CredentialChain, CredentialEnv, StaticToken, TokenSource,
};
pub use crate::discover::discovery_factory;

/// The provider's name in `provider:`.
pub const NAME: &str = "gke";
/// Most CIDR blocks we send. GKE allows 50 on clusters with a public endpoint and 100 on
/// private clusters; the cluster does not report which limit applies to it, so the stricter
/// one holds for every cluster (a set that fits is accepted everywhere).
pub const MAX_RANGES: usize = 50;

/// The API quota of a target ([`rangekeeper_provider::QuotaScope`]): GKE rations its API
/// requests per project (per minute, for every caller of the project), so every cluster of a
/// project draws on the same quota, whatever its location.
pub fn quota_scope(cfg: &TargetConfig) -> Option<String> {
    let target = GkeTarget::from_config(cfg).ok()?;
    Some(format!("gke/{}", target.project))
}

/// The static capabilities of the GKE provider.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        NAME,
        "Google Kubernetes Engine: control-plane authorized networks via the GKE API",
    )
    .with_max_ranges(Some(MAX_RANGES))
    .with_ipv4(true)
    .with_ipv6(true)
    // Private ranges reach a private endpoint (VPC, on-premises over VPN/Interconnect).
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::Removed)
    .with_async_apply(true)
}

/// Build the provider for one target, with credentials as Google's tools find them (see
/// [`CredentialChain::from_env`]). No network call happens here.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let target = GkeTarget::from_config(cfg)?;
    let tokens = Arc::new(CredentialChain::from_env(CredentialEnv::from_process())?);
    Ok(Box::new(GkeProvider::new(target, tokens)?))
}

/// How the provider waits for its own Operation (waiting is not retrying: the update was
/// accepted once, and we watch it finish).
#[derive(Debug, Clone)]
pub struct Waiting {
    /// First poll after this long; the interval doubles up to `max_poll`.
    pub first_poll: Duration,
    pub max_poll: Duration,
    /// Longest wait for the Operation to reach DONE.
    pub timeout: Duration,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            first_poll: Duration::from_millis(500),
            max_poll: Duration::from_secs(10),
            timeout: Duration::from_secs(30 * 60),
        }
    }
}

/// The GKE provider bound to one cluster.
#[derive(Debug)]
pub struct GkeProvider {
    target: GkeTarget,
    client: GkeClient,
    waiting: Waiting,
}

impl GkeProvider {
    pub fn new(target: GkeTarget, tokens: Arc<dyn TokenSource>) -> Result<Self, ProviderError> {
        let client = GkeClient::new(&target, tokens)?;
        Ok(GkeProvider {
            target,
            client,
            waiting: Waiting::default(),
        })
    }

    /// Replace the polling bounds (tests use short ones).
    pub fn with_waiting(mut self, waiting: Waiting) -> Self {
        self.waiting = waiting;
        self
    }

    pub fn target(&self) -> &GkeTarget {
        &self.target
    }

    /// Follow our Operation until DONE. A failed poll ends the wait with its error (the core
    /// may retry the whole apply, which then finds the change made or the operation running).
    async fn wait(&self, op: Operation, opts: &ApplyOptions) -> Result<(), ProviderError> {
        let started = Instant::now();
        let mut interval = self.waiting.first_poll;
        let mut op = op;
        loop {
            if op.is_done() {
                return match op.error {
                    None => Ok(()),
                    Some((code, message)) => {
                        Err(operation_error(code, &message, &self.target.cluster))
                    }
                };
            }
            if started.elapsed() > self.waiting.timeout {
                return Err(ProviderError::Transient(format!(
                    "operation {} on cluster `{}` did not finish within {}s; it may still complete (run plan again to see)",
                    op.name,
                    self.target.cluster,
                    self.waiting.timeout.as_secs()
                )));
            }
            let detail = op
                .progress
                .as_deref()
                .map(|p| format!(", {p}"))
                .unwrap_or_default();
            opts.progress.message(&format!(
                "waiting for GKE to update cluster {}: {} {}{detail} ({}s)",
                self.target.cluster,
                op.name,
                op.status,
                started.elapsed().as_secs()
            ));
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(self.waiting.max_poll);
            op = self.client.get_operation(&op.name).await?;
        }
    }

    /// Read, compare, update the one field with the etag, wait, read back. One attempt.
    async fn converge(
        &self,
        goal: Goal<'_>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let read = self.client.get_cluster().await?;
        let nets = cluster::networks(&read.body)?;
        if goal.is_met_by(&nets.restriction()?) {
            tracing::debug!(cluster = %self.target.cluster, "already in sync: nothing sent");
            return Ok(Applied::unchanged());
        }
        let config = cluster::desired_config(&nets, goal, &self.target.notes);
        let body = cluster::update_body(&self.target.resource_name(), config, read.etag.as_deref());
        opts.progress.message(&format!(
            "updating the authorized networks of cluster {}",
            self.target.cluster
        ));
        let op = self.client.update_cluster(&body).await?;
        if !opts.wait {
            return Ok(Applied::pending().with_note(format!(
                "GKE accepted the update as operation {}; it finishes in the background",
                op.name
            )));
        }
        self.wait(op, opts).await?;
        let back = self.client.get_cluster().await?;
        let held = cluster::networks(&back.body)?.restriction()?;
        if goal.is_met_by(&held) {
            return Ok(Applied::changed());
        }
        let held = match held {
            Restriction::Unrestricted => "no restriction".to_owned(),
            Restriction::Ranges(s) if s.is_empty() => "an empty list".to_owned(),
            Restriction::Ranges(s) => s.to_string(),
            other => format!("{other:?}"),
        };
        Err(ProviderError::Conflict(format!(
            "cluster `{}` was changed by someone else after our update finished: it now holds {held}",
            self.target.cluster
        )))
    }
}

/// Offline checks beyond the capabilities: `0.0.0.0/0` or `::/0` is no restriction.
pub fn violations(desired: &RangeSet) -> Vec<Violation> {
    desired
        .prefixes()
        .iter()
        .filter(|n| n.prefix_len() == 0)
        .map(|n| {
            Violation::at(
                n,
                "allowing every address is not a restriction; lift it with `rangekeeper disable` (authorized networks disabled)",
            )
        })
        .collect()
}

#[async_trait::async_trait]
impl Provider for GkeProvider {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        violations(desired)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let read = self.client.get_cluster().await?;
        let nets = cluster::networks(&read.body)?;
        let mut state = State::new(nets.restriction()?);
        state.details = cluster::details(&read.body, &nets);
        state.warnings = cluster::endpoint_warnings(&read.body, &nets);
        if matches!(&state.restriction, Restriction::Ranges(s) if s.is_empty()) {
            state.warnings.push(
                "authorized networks are enabled with no CIDR blocks: only Google's own ranges can reach the control plane".into(),
            );
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
            "it would lock everyone but Google out of the control plane",
        )?;
        let mut problems: Vec<String> = violations(desired)
            .into_iter()
            .map(|v| match v.range {
                Some(r) => format!("{r}: {}", v.message),
                None => v.message,
            })
            .collect();
        if desired.len() > MAX_RANGES {
            problems.push(format!(
                "{} CIDR blocks: GKE accepts at most {MAX_RANGES} (100 only on private clusters)",
                desired.len()
            ));
        }
        if !problems.is_empty() {
            return Err(ProviderError::Invalid(format!(
                "target `{}`: {}",
                self.target.name,
                problems.join("; ")
            )));
        }
        self.converge(Goal::Ranges(desired), opts).await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.converge(Goal::Unrestricted, opts).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "t".into(),
            base_dir: ".".into(),
            fields: v.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn the_quota_scope_is_the_project() {
        let a = cfg(
            serde_json::json!({"project": "my-project-123", "location": "europe-west1", "cluster": "a"}),
        );
        let b = cfg(
            serde_json::json!({"project": " my-project-123 ", "location": "us-central1-a", "cluster": "b",
            "endpoint": "http://127.0.0.1:1"}),
        );
        let c = cfg(
            serde_json::json!({"project": "other-project", "location": "europe-west1", "cluster": "a"}),
        );
        assert_eq!(quota_scope(&a).as_deref(), Some("gke/my-project-123"));
        assert_eq!(
            quota_scope(&a),
            quota_scope(&b),
            "every location of a project"
        );
        assert_eq!(quota_scope(&c).as_deref(), Some("gke/other-project"));
        let bad =
            cfg(serde_json::json!({"project": "X", "location": "europe-west1", "cluster": "a"}));
        assert_eq!(quota_scope(&bad), None, "an invalid target shares nothing");
    }
}
