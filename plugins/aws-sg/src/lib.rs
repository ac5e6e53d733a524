//! `rangekeeper-provider-aws-sg`: the firewall of self-managed Kubernetes API servers on EC2
//! (kubeadm, kops), as a rangekeeper plugin.
//!
//! It keeps the ingress rules of one security group for the API-server port(s) (`ports`,
//! default 6443, protocol `tcp`) equal to the declared list: one rule per range and port, IPv4
//! in `IpRanges` and IPv6 in `Ipv6Ranges`, each with the `Description` `rangekeeper:<target>`
//! that marks the rules it owns. Rules it does not own are left alone; those that admit more
//! than the declared list on those ports are reported as warnings.
//!
//! `current` reads DescribeSecurityGroups (the group exists) and DescribeSecurityGroupRules;
//! `apply` sends nothing when the group already holds the list, otherwise authorizes the
//! missing rules first and then revokes the extra ones by security-group-rule ID, so there is
//! never a moment where a client allowed both before and after is refused. The rule quota per
//! IP family (`maxRules`, EC2's default 60) is checked before any write, counting the rules of
//! others and the moment both lists are held. Every call makes one attempt and returns a typed
//! error; the binary's retry policy decides the rest.

mod config;
mod errors;
mod rules;

use std::future::Future;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::timeout::TimeoutConfig;
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, Ipv6Range};
use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, State, TargetConfig,
    UnrestrictedForm, Violation,
};

pub use config::{DEFAULT_MAX_RULES, DEFAULT_PORT, MARKER_PREFIX, Protocol, SgTarget};
pub use errors::Op;
use errors::{Context, map_sdk_error};
use rules::View;
pub use rules::{Group, Rule, Source};

/// The plugin's name in declarations (`provider: aws-sg`).
pub const NAME: &str = "aws-sg";

/// Pages of DescribeSecurityGroupRules read at most (1,000 rules each: far beyond any quota).
const MAX_PAGES: usize = 20;

/// The capabilities of the plugin in general (no target): one port, the default quota.
pub fn capabilities() -> Capabilities {
    capabilities_for(DEFAULT_MAX_RULES)
}

fn capabilities_for(ranges_per_family: usize) -> Capabilities {
    Capabilities::new(
        NAME,
        "AWS security group: the inbound rules of one group for the API-server port(s) \
         (self-managed clusters on EC2: kubeadm, kops); rules of others are kept",
    )
    // One rule per range and port, against a quota per IP family: the limit of one family
    // bounds the whole list (a dual-stack list may be refused a little early, never late).
    .with_max_ranges(Some(ranges_per_family))
    .with_ipv6(true)
    // Security groups guard VPC traffic: private ranges (the VPC, peered networks) are usual.
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::AllAddresses)
}

/// Build the provider of one `aws-sg` target. No network call happens here: the AWS
/// configuration (region, profile, credential chain, `AWS_ENDPOINT_URL[_EC2]`) is loaded on
/// first use.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(Box::new(SgProvider::new(SgTarget::from_config(cfg)?)))
}

/// Timeouts of one call. The SDK's own retries are off: the binary's policy decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    pub connect_timeout: Duration,
    pub attempt_timeout: Duration,
    /// Added to the SDK's timeouts for the hard bound on one call (a safety net should they
    /// not fire, e.g. while resolving credentials).
    pub call_margin: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(30),
            call_margin: Duration::from_secs(5),
        }
    }
}

impl Tuning {
    fn call_timeout(&self) -> Duration {
        self.attempt_timeout + self.connect_timeout + self.call_margin
    }
}

/// Apply rangekeeper's timeouts to an EC2 client configuration and turn the SDK's retries off.
pub fn configure(
    builder: aws_sdk_ec2::config::Builder,
    tuning: &Tuning,
) -> aws_sdk_ec2::config::Builder {
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

/// Where the provider's client comes from.
enum ClientSource {
    /// Loaded from the default chain on first use.
    Lazy(tokio::sync::OnceCell<Client>),
    /// Given by the caller (tests, embedders with their own configuration).
    Ready(Client),
}

/// The provider bound to one security group.
pub struct SgProvider {
    target: SgTarget,
    source: ClientSource,
    tuning: Tuning,
}

impl std::fmt::Debug for SgProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgProvider")
            .field("target", &self.target)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

impl SgProvider {
    /// A provider for a declared target; the AWS configuration is loaded on first use.
    pub fn new(target: SgTarget) -> Self {
        SgProvider {
            target,
            source: ClientSource::Lazy(tokio::sync::OnceCell::new()),
            tuning: Tuning::default(),
        }
    }

    /// A provider using a ready client (its configuration is the caller's; see [`configure`]).
    pub fn with_client(target: SgTarget, client: Client) -> Self {
        SgProvider {
            target,
            source: ClientSource::Ready(client),
            tuning: Tuning::default(),
        }
    }

    /// Replace the timeouts.
    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The target this provider keeps.
    pub fn target(&self) -> &SgTarget {
        &self.target
    }

    async fn client(&self) -> Result<&Client, ProviderError> {
        match &self.source {
            ClientSource::Ready(c) => Ok(c),
            ClientSource::Lazy(cell) => cell.get_or_try_init(|| self.load_client()).await,
        }
    }

    async fn load_client(&self) -> Result<Client, ProviderError> {
        let t = &self.target;
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(Region::new(t.region.clone()));
        if let Some(profile) = &t.profile {
            // The profile's credentials only: a missing profile must not quietly mean the
            // environment's credentials, or another account.
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
                    "loading the AWS configuration for security group `{}` ({}) did not finish \
                     within {:?}",
                    t.group_id,
                    t.identity(),
                    self.tuning.call_timeout()
                ))
            })?;
        if t.profile.is_some() {
            self.check_profile(&sdk).await?;
        }
        // The service-specific endpoint (`AWS_ENDPOINT_URL_EC2`, or `AWS_ENDPOINT_URL`, or the
        // profile's `endpoint_url`) is resolved here, as in every AWS SDK.
        Ok(Client::from_conf(
            configure(aws_sdk_ec2::config::Builder::from(&sdk), &self.tuning).build(),
        ))
    }

    /// Load a named profile's credentials up front, so a missing or unusable profile fails
    /// with an error naming it before any call.
    async fn check_profile(&self, sdk: &SdkConfig) -> Result<(), ProviderError> {
        use aws_sdk_ec2::config::ProvideCredentials as _;
        let t = &self.target;
        let profile = t.profile.as_deref().unwrap_or_default();
        let failed = |why: String| {
            ProviderError::Auth(format!(
                "target `{}`: cannot load the credentials of AWS profile `{profile}` (region \
                 `{}`): {why}. Define the profile in the AWS config or credentials file, log in \
                 to it (`aws sso login --profile {profile}`), or remove `profile:` to use the \
                 default credential chain",
                t.name, t.region
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

    /// One call with a hard bound on its duration; the SDK error is mapped for `op`.
    async fn call<T, E, Fut>(&self, op: Op, fut: Fut) -> Result<T, ProviderError>
    where
        Fut: Future<
            Output = Result<
                T,
                aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
            >,
        >,
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let identity = self.target.identity();
        let cx = Context {
            group_id: &self.target.group_id,
            identity: &identity,
            max_rules: self.target.max_rules,
        };
        match tokio::time::timeout(self.tuning.call_timeout(), fut).await {
            Ok(r) => r.map_err(|e| map_sdk_error(op, &cx, e)),
            Err(_) => Err(ProviderError::Transient(format!(
                "EC2 {} on security group `{}` did not finish within {:?}",
                op.name(),
                self.target.group_id,
                self.tuning.call_timeout()
            ))),
        }
    }

    /// Read the group and its ingress rules.
    pub async fn read(&self) -> Result<Group, ProviderError> {
        let client = self.client().await?;
        let id = self.target.group_id.as_str();
        let out = self
            .call(
                Op::DescribeSecurityGroups,
                client.describe_security_groups().group_ids(id).send(),
            )
            .await?;
        let Some(sg) = out
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
        else {
            return Err(ProviderError::NotFound(format!(
                "security group `{id}` does not exist ({}): DescribeSecurityGroups returned \
                 no such group",
                self.target.identity()
            )));
        };
        let mut group = Group {
            id: id.to_owned(),
            name: sg.group_name().map(str::to_owned),
            vpc_id: sg.vpc_id().map(str::to_owned),
            ingress: Vec::new(),
        };
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = client
                .describe_security_group_rules()
                .filters(Filter::builder().name("group-id").values(id).build())
                .max_results(1000);
            if let Some(t) = token.take() {
                req = req.next_token(t);
            }
            let out = self
                .call(Op::DescribeSecurityGroupRules, req.send())
                .await?;
            for r in out.security_group_rules() {
                if r.is_egress() == Some(true) || r.group_id().is_some_and(|g| g != id) {
                    continue;
                }
                group.ingress.push(rule_of(r));
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(group);
            }
        }
        Err(ProviderError::Other(format!(
            "security group `{id}`: DescribeSecurityGroupRules returned more than {MAX_PAGES} \
             pages; rangekeeper does not change a group it cannot read whole"
        )))
    }

    /// Make the group hold exactly `desired` in the plugin's rules.
    async fn converge(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let group = self.read().await?;
        let view = View::new(&self.target, &group)?;
        let notes = view.beyond(desired);
        if view.holds(desired) {
            return Ok(Applied::unchanged().with_notes(notes));
        }
        let found = view.violations(desired);
        if !found.is_empty() {
            let list: Vec<String> = found.into_iter().map(|v| v.message).collect();
            return Err(ProviderError::Invalid(list.join("; ")));
        }
        let change = view.change(desired);
        let client = self.client().await?;
        let id = self.target.group_id.as_str();
        if !change.authorize.is_empty() {
            opts.progress.message(&format!(
                "adding {} rule(s) to security group {id}",
                change.authorize.len()
            ));
            let mut req = client.authorize_security_group_ingress().group_id(id);
            for port in &self.target.ports {
                let mut perm = IpPermission::builder()
                    .ip_protocol(self.target.protocol.as_str())
                    .from_port(i32::from(*port))
                    .to_port(i32::from(*port));
                let mut any = false;
                for (_, net) in change.authorize.iter().filter(|(p, _)| p == port) {
                    any = true;
                    perm = match net {
                        IpNet::V4(_) => perm.ip_ranges(
                            IpRange::builder()
                                .cidr_ip(net.to_string())
                                .description(&self.target.marker)
                                .build(),
                        ),
                        IpNet::V6(_) => perm.ipv6_ranges(
                            Ipv6Range::builder()
                                .cidr_ipv6(net.to_string())
                                .description(&self.target.marker)
                                .build(),
                        ),
                    };
                }
                if any {
                    req = req.ip_permissions(perm.build());
                }
            }
            self.call(Op::AuthorizeSecurityGroupIngress, req.send())
                .await?;
        }
        if !change.revoke.is_empty() {
            opts.progress.message(&format!(
                "revoking {} rule(s) of security group {id}",
                change.revoke.len()
            ));
            let req = client
                .revoke_security_group_ingress()
                .group_id(id)
                .set_security_group_rule_ids(Some(change.revoke.clone()));
            self.call(Op::RevokeSecurityGroupIngress, req.send())
                .await
                .map_err(|e| {
                    let added = change.authorize.len();
                    e.map_message(|m| {
                        if added == 0 {
                            m
                        } else {
                            format!(
                                "{m}; the {added} new rule(s) were added, so the group admits the \
                                 old and the new list until the next apply revokes the old rules"
                            )
                        }
                    })
                })?;
        }
        Ok(Applied::changed().with_notes(notes))
    }
}

/// A rule of DescribeSecurityGroupRules, as the plugin reads it.
fn rule_of(r: &aws_sdk_ec2::types::SecurityGroupRule) -> Rule {
    let source = if let Some(c) = r.cidr_ipv4() {
        Source::V4(c.to_owned())
    } else if let Some(c) = r.cidr_ipv6() {
        Source::V6(c.to_owned())
    } else if let Some(g) = r.referenced_group_info().and_then(|g| g.group_id()) {
        Source::Group(g.to_owned())
    } else if let Some(p) = r.prefix_list_id() {
        Source::PrefixList(p.to_owned())
    } else {
        Source::Unknown
    };
    Rule {
        id: r.security_group_rule_id().unwrap_or("(no id)").to_owned(),
        protocol: r.ip_protocol().unwrap_or("-1").to_owned(),
        from_port: r.from_port(),
        to_port: r.to_port(),
        source,
        description: r.description().map(str::to_owned),
    }
}

#[async_trait::async_trait]
impl Provider for SgProvider {
    fn capabilities(&self) -> Capabilities {
        capabilities_for(self.target.ranges_per_family())
    }

    /// One rule per range and port must fit the quota of each IP family.
    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        rules::offline_violations(&self.target, desired)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let group = self.read().await?;
        Ok(View::new(&self.target, &group)?.state())
    }

    /// Rules of others in the way, and the quota with them counted, while planning: a refusal
    /// here stops the whole run before anything is written anywhere.
    async fn preflight(
        &self,
        desired: &RangeSet,
        _current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        let group = self.read().await?;
        Ok(View::new(&self.target, &group)?.violations(desired))
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "it would revoke every rule rangekeeper keeps, shutting every declared client out of \
             the API server",
        )?;
        self.converge(desired, opts).await
    }

    /// Lift the restriction: the plugin's rules admit every IPv4 and IPv6 address.
    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.converge(&rules::unrestricted_set(), opts).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_row() {
        let c = capabilities();
        assert_eq!(c.name, "aws-sg");
        assert_eq!(c.max_ranges, Some(60));
        assert!(c.ipv4 && c.ipv6 && c.private_ranges && !c.async_apply);
        assert_eq!(c.unrestricted, UnrestrictedForm::AllAddresses);
        // Per target: the quota shared by the ports.
        let cfg = TargetConfig {
            name: "api".into(),
            base_dir: ".".into(),
            fields: serde_json::json!({
                "groupId": "sg-12345678", "region": "eu-west-1", "ports": [443, 6443, 8443]
            })
            .as_object()
            .cloned()
            .unwrap(),
        };
        assert_eq!(factory(&cfg).unwrap().capabilities().max_ranges, Some(20));
    }

    #[test]
    fn the_example_iam_policy_names_exactly_the_calls_made() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/aws-sg-iam-policy.json");
        let policy: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut actions: Vec<String> = policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        actions.sort();
        let mut calls: Vec<String> = Op::ALL
            .iter()
            .map(|o| format!("ec2:{}", o.name()))
            .collect();
        calls.sort();
        assert_eq!(actions, calls);
    }
}
