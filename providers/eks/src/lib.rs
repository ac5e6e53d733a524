//! rangekeeper provider for AWS EKS: the cluster's `resourcesVpcConfig.publicAccessCidrs`.
//!
//! `current` reads DescribeCluster; `apply` compares canonical sets and sends nothing when in
//! sync (EKS rejects a no-op update), otherwise UpdateClusterConfig with only
//! `publicAccessCidrs` and an idempotency token, then waits for the update (DescribeUpdate) or,
//! when the answer carries no update (local emulators), reads the cluster back until it holds
//! the new list. Every call has a timeout and makes one attempt: another update in the way
//! (ResourceInUseException), throttling and server errors come back typed, and the binary's
//! retry policy decides whether to run the whole update again.

mod cluster;
mod config;
pub mod discover;
mod errors;
mod leases;
mod retry;
mod update;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eks::Client;
use aws_sdk_eks::config::retry::RetryConfig;
use aws_sdk_eks::config::timeout::TimeoutConfig;
use rangekeeper_provider::cidr;
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, State,
    TargetConfig, UnrestrictedForm, Violation,
};

pub use config::EksTarget;
pub use discover::discovery_factory;
pub use retry::Tuning;

/// The provider's name in declarations (`provider: eks`).
pub const NAME: &str = "eks";

/// The hard AWS limit on `publicAccessCidrs` entries (the quota cannot be raised).
pub const MAX_RANGES: usize = 40;

/// The static capabilities row of the EKS provider.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        NAME,
        "AWS EKS API-server endpoint: resourcesVpcConfig.publicAccessCidrs (IPv6 ranges only on \
         clusters whose ipFamily is ipv6)",
    )
    .with_max_ranges(Some(MAX_RANGES))
    .with_ipv6(true)
    .with_ipv6_depends_on_target(true)
    .with_unrestricted(UnrestrictedForm::AllAddresses)
    .with_async_apply(true)
    .with_leases(true)
}

/// Build the provider for one `eks` target. No network call happens here: AWS configuration
/// (region, profile, credential chain, `AWS_ENDPOINT_URL[_EKS]`) is loaded on first use.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let target = EksTarget::from_config(cfg)?;
    Ok(Box::new(EksProvider::new(target)))
}

/// The API quota of a target ([`rangekeeper_provider::QuotaScope`]): EKS limits request
/// rates per account and region, and the account is whatever the target's credentials (its
/// profile, or the default chain) log in to; so the scope is the profile and the region.
pub fn quota_scope(cfg: &TargetConfig) -> Option<String> {
    let target = EksTarget::from_config(cfg).ok()?;
    Some(format!(
        "eks/{}/{}",
        target.profile.as_deref().unwrap_or("(default credentials)"),
        target.region
    ))
}

/// Apply rangekeeper's timeouts to an EKS client configuration and turn the SDK's own retries
/// off (the binary's one retry policy decides, so retries do not multiply).
pub fn configure(
    builder: aws_sdk_eks::config::Builder,
    tuning: &Tuning,
) -> aws_sdk_eks::config::Builder {
    builder
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(tuning.connect_timeout)
                .read_timeout(tuning.attempt_timeout)
                .operation_attempt_timeout(tuning.attempt_timeout)
                .operation_timeout(tuning.attempt_timeout + tuning.connect_timeout)
                .build(),
        )
        .retry_config(RetryConfig::disabled())
}

/// An EKS client from a loaded AWS configuration, with rangekeeper's timeouts. The
/// service-specific endpoint (`AWS_ENDPOINT_URL_EKS`, `endpoint_url` in the profile's
/// `services` section) is resolved here, as in every AWS SDK.
pub fn client_from_sdk_config(sdk: &SdkConfig, tuning: &Tuning) -> Client {
    Client::from_conf(configure(aws_sdk_eks::config::Builder::from(sdk), tuning).build())
}

/// The clients of the process, one per region, profile and tuning: building one (the AWS
/// configuration, its credential chain, an HTTP client with its TLS roots) costs far more
/// than a read, and a fleet has thousands of clusters in a few regions.
type SharedClients = HashMap<(String, Option<String>, String), Arc<tokio::sync::OnceCell<Client>>>;

fn shared_client(target: &EksTarget, tuning: &Tuning) -> Arc<tokio::sync::OnceCell<Client>> {
    static CLIENTS: LazyLock<Mutex<SharedClients>> = LazyLock::new(Mutex::default);
    let key = (
        target.region.clone(),
        target.profile.clone(),
        format!("{tuning:?}"),
    );
    CLIENTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default()
        .clone()
}

/// Where the provider's client comes from.
enum ClientSource {
    /// Loaded from the default chain on first use.
    Lazy {
        target: EksTarget,
        cell: tokio::sync::OnceCell<Client>,
    },
    /// Given by the caller (tests, embedders with their own configuration).
    Ready(Client),
}

/// The cluster's IP family as last read: unknown until `current`/`apply` ran.
const FAMILY_UNKNOWN: u8 = 0;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// The EKS provider bound to one cluster.
pub struct EksProvider {
    cluster: String,
    source: ClientSource,
    tuning: Tuning,
    family: AtomicU8,
    /// The list of an update whose outcome we do not know (its answer was lost, or polling
    /// it failed): when a later call finds the cluster holding it, that is our change.
    unconfirmed: std::sync::Mutex<Option<RangeSet>>,
}

impl std::fmt::Debug for EksProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksProvider")
            .field("cluster", &self.cluster)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl EksProvider {
    /// A provider for a declared target; AWS configuration is loaded on first use.
    pub fn new(target: EksTarget) -> Self {
        EksProvider {
            cluster: target.cluster.clone(),
            source: ClientSource::Lazy {
                target,
                cell: tokio::sync::OnceCell::new(),
            },
            tuning: Tuning::default(),
            family: AtomicU8::new(FAMILY_UNKNOWN),
            unconfirmed: std::sync::Mutex::new(None),
        }
    }

    /// A provider using a ready client (its configuration is the caller's; see [`configure`]).
    pub fn with_client(cluster: impl Into<String>, client: Client) -> Self {
        EksProvider {
            cluster: cluster.into(),
            source: ClientSource::Ready(client),
            tuning: Tuning::default(),
            family: AtomicU8::new(FAMILY_UNKNOWN),
            unconfirmed: std::sync::Mutex::new(None),
        }
    }

    /// Replace the timing bounds (tests use [`Tuning::fast`]).
    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The cluster this provider manages.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn client(&self) -> Result<&Client, ProviderError> {
        match &self.source {
            ClientSource::Ready(c) => Ok(c),
            ClientSource::Lazy { target, cell } => {
                cell.get_or_try_init(|| async {
                    // One configuration and client (HTTP connections, credential cache) per
                    // region and profile for the whole process, not one per cluster.
                    let shared = shared_client(target, &self.tuning);
                    let client = shared.get_or_try_init(|| async {
                    let mut loader = aws_config::defaults(BehaviorVersion::latest())
                        .region(Region::new(target.region.clone()));
                    if let Some(profile) = &target.profile {
                        // The profile's credentials only: the default chain would take
                        // `AWS_ACCESS_KEY_ID` (or web identity, or instance metadata) first,
                        // and a missing profile would quietly mean another account.
                        loader = loader.profile_name(profile).credentials_provider(
                            aws_config::profile::ProfileFileCredentialsProvider::builder()
                                .profile_name(profile)
                                .build(),
                        );
                    }
                    let sdk = tokio::time::timeout(self.tuning.call_timeout(), loader.load())
                        .await
                        .map_err(|_| {
                            ProviderError::Transient(format!(
                                "loading the AWS configuration for cluster `{}` ({}) did not finish within {:?}",
                                target.cluster,
                                target.identity(),
                                self.tuning.call_timeout()
                            ))
                        })?;
                    if target.profile.is_some() {
                        self.check_profile(target, &sdk).await?;
                    }
                    Ok(client_from_sdk_config(&sdk, &self.tuning))
                    })
                    .await?;
                    Ok(client.clone())
                })
                .await
            }
        }
    }

    /// Load the named profile's credentials once, up front, so a profile that is missing or
    /// unusable fails the target with an error naming it, before any call is made.
    async fn check_profile(
        &self,
        target: &EksTarget,
        sdk: &SdkConfig,
    ) -> Result<(), ProviderError> {
        use aws_sdk_eks::config::ProvideCredentials as _;
        let profile = target.profile.as_deref().unwrap_or_default();
        let failed = |why: String| {
            ProviderError::Auth(format!(
                "target `{}`: cannot load the credentials of AWS profile `{profile}` (region `{}`): {why}. Define the profile in the AWS config or credentials file (`AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`), log in to it (`aws sso login --profile {profile}`), or remove `profile:` to use the default credential chain; rangekeeper never falls back to other credentials for a named profile",
                target.name, target.region
            ))
        };
        let Some(provider) = sdk.credentials_provider() else {
            return Err(failed("no credentials provider was configured".into()));
        };
        match tokio::time::timeout(self.tuning.call_timeout(), provider.provide_credentials()).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(failed(rangekeeper_provider::error_chain(&e))),
            Err(_) => Err(failed(format!(
                "no answer within {:?}",
                self.tuning.call_timeout()
            ))),
        }
    }

    /// Name the target's AWS identity (region, profile) in errors about access or about a
    /// cluster that is not where the declaration says: the usual cause is the wrong account.
    fn context(&self, e: ProviderError) -> ProviderError {
        let ClientSource::Lazy { target, .. } = &self.source else {
            return e;
        };
        match e {
            ProviderError::Auth(m) if !m.contains("AWS profile `") => {
                ProviderError::Auth(format!("{m} ({})", target.identity()))
            }
            ProviderError::NotFound(m) => {
                ProviderError::NotFound(format!("{m} ({})", target.identity()))
            }
            other => other,
        }
    }

    fn remember_family(&self, ipv6: bool) {
        self.family
            .store(if ipv6 { FAMILY_V6 } else { FAMILY_V4 }, Ordering::Relaxed);
    }
}

/// Problems of a desired set that EKS would reject, found without a call. `ipv6_allowed` is
/// `Some(false)` when the cluster is known to be IPv4-only.
pub(crate) fn violations(
    desired: &RangeSet,
    ipv6_allowed: Option<bool>,
    cluster: &str,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let prefixes = desired.prefixes();
    for net in &prefixes {
        if let Some((block, why)) = cidr::special_purpose(net)
            && block.contains(net)
        {
            out.push(Violation::at(net.to_string(), format!(
                    "{net} lies in {block} ({why}); EKS rejects reserved and non-public ranges in publicAccessCidrs"
                )));
        }
        if net.addr().is_ipv6() && ipv6_allowed == Some(false) {
            out.push(Violation::at(net.to_string(), format!(
                    "cluster `{cluster}` has ipFamily ipv4: EKS accepts IPv6 ranges in publicAccessCidrs only on \
                     IPv6 clusters"
                )));
        }
    }
    if prefixes.len() > MAX_RANGES {
        out.push(Violation::new(format!(
                "{} ranges: EKS allows at most {MAX_RANGES} publicAccessCidrs (a hard limit that cannot be raised)",
                prefixes.len()
            )));
    }
    out
}

#[async_trait::async_trait]
impl Provider for EksProvider {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    /// Reserved ranges, the 40-range limit, and (once the cluster was read) IPv6 on an IPv4
    /// cluster.
    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        let ipv6_allowed = match self.family.load(Ordering::Relaxed) {
            FAMILY_V4 => Some(false),
            FAMILY_V6 => Some(true),
            _ => None,
        };
        violations(desired, ipv6_allowed, &self.cluster)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        self.describe().await.map_err(|e| self.context(e))?.state()
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "EKS rejects an empty publicAccessCidrs list (`0.0.0.0/0` is what lifts the restriction)",
        )?;
        let view = self.describe().await.map_err(|e| self.context(e))?;
        let found = violations(desired, Some(view.ipv6), &self.cluster);
        if !found.is_empty() {
            let list: Vec<String> = found.into_iter().map(|v| v.message).collect();
            return Err(ProviderError::Invalid(list.join("; ")));
        }
        self.converge(view, desired, opts)
            .await
            .map_err(|e| self.context(e))
    }

    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "EKS rejects an empty publicAccessCidrs list (`0.0.0.0/0` is what lifts the restriction)",
        )?;
        self.converge_leased(desired, leases, version, opts)
            .await
            .map_err(|e| self.context(e))
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let view = self.describe().await.map_err(|e| self.context(e))?;
        if view.restriction() == rangekeeper_provider::Restriction::Unrestricted {
            return Ok(Applied::default());
        }
        let all = view.unrestricted_set();
        self.converge(view, &all, opts)
            .await
            .map_err(|e| self.context(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[&str]) -> RangeSet {
        RangeSet::from_nets(s.iter().map(|c| cidr::parse(c).unwrap().net))
    }

    #[test]
    fn capabilities_row() {
        let c = capabilities();
        assert_eq!(c.name, "eks");
        assert_eq!(c.max_ranges, Some(40));
        assert!(c.ipv4 && c.ipv6 && !c.private_ranges && c.async_apply);
        assert_eq!(c.unrestricted, UnrestrictedForm::AllAddresses);
    }

    #[test]
    fn reserved_ranges_are_named_with_the_reason() {
        let v = violations(
            &set(&["10.1.0.0/16", "203.0.113.0/24", "198.18.0.0/15", "8.8.8.8"]),
            None,
            "prod",
        );
        let ranges: Vec<_> = v.iter().filter_map(|v| v.range.clone()).collect();
        assert!(ranges.contains(&"10.1.0.0/16".to_string()), "{v:?}");
        assert!(ranges.contains(&"198.18.0.0/15".to_string()), "{v:?}");
        assert!(!ranges.contains(&"8.8.8.8/32".to_string()), "{v:?}");
        let private = v
            .iter()
            .find(|v| v.range.as_deref() == Some("10.1.0.0/16"))
            .unwrap();
        assert!(private.message.contains("10.0.0.0/8"), "{private:?}");
    }

    #[test]
    fn all_addresses_is_not_a_reserved_range() {
        assert!(violations(&set(&["0.0.0.0/0"]), Some(false), "prod").is_empty());
    }

    #[test]
    fn ipv6_on_an_ipv4_cluster_and_the_limit() {
        let v = violations(&set(&["2a00:1450::/32"]), Some(false), "prod");
        assert_eq!(v.len(), 1);
        assert!(v[0].message.contains("ipFamily ipv4"), "{v:?}");
        assert!(violations(&set(&["2a00:1450::/32"]), Some(true), "prod").is_empty());
        assert!(violations(&set(&["2a00:1450::/32"]), None, "prod").is_empty());
        let many: Vec<String> = (0..41).map(|i| format!("8.8.{}.0/24", i * 2)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let v = violations(&set(&many), None, "prod");
        assert!(
            v.iter()
                .any(|v| v.range.is_none() && v.message.contains("at most 40")),
            "{v:?}"
        );
    }

    #[test]
    fn factory_rejects_bad_config_without_network() {
        let cfg = TargetConfig {
            name: "t".into(),
            base_dir: ".".into(),
            fields: serde_json::json!({"region": "eu-west-1"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        assert!(matches!(factory(&cfg), Err(ProviderError::Config(_))));
        let cfg = TargetConfig {
            name: "t".into(),
            base_dir: ".".into(),
            fields: serde_json::json!({"region": "eu-west-1", "cluster": "prod"})
                .as_object()
                .cloned()
                .unwrap(),
        };
        assert_eq!(factory(&cfg).unwrap().capabilities().name, "eks");
    }
}
