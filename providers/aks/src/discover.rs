//! Discovery of AKS clusters for a `discover:` template: the ARM list of
//! `Microsoft.ContainerService/managedClusters` in a subscription (or one resource group),
//! every page followed, filtered by tags. A cluster being created or deleted (or with no
//! `provisioningState` at all) is listed as pending; one in the middle of another operation
//! (`Updating`, `Upgrading`, `Scaling`, often our own apply) or left `Failed` by one is still
//! a cluster with an API server to guard, so it stays a target: the provider reads it, and a
//! write that meets an operation in progress comes back as a typed conflict the retry policy
//! waits out. One attempt per call; errors are typed.

use std::sync::Arc;

use rangekeeper_provider::{DiscoveredTarget, Discoverer, ProviderError, TagFilter, TargetConfig};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::arm::ArmClient;
use crate::config::{
    Cloud, DEFAULT_API_VERSION, is_api_version, is_guid, parse_arm_endpoint,
    validate_resource_group,
};
use crate::credential::{self, CredentialEnv, TokenSource};

/// The template fields exactly as declared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAksTemplate {
    subscription: String,
    #[serde(default)]
    resource_group: Option<String>,
    #[serde(default)]
    tags: TagFilter,
    #[serde(default)]
    cloud: Option<Cloud>,
    #[serde(default)]
    arm_endpoint: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    allow_node_egress_lockout: Option<bool>,
}

/// A validated AKS template.
#[derive(Debug, Clone)]
pub struct AksTemplate {
    pub name: String,
    pub subscription: String,
    pub resource_group: Option<String>,
    pub tags: TagFilter,
    pub cloud: Cloud,
    pub arm_endpoint: Url,
    pub api_version: String,
    /// The target fields every discovered cluster carries over from the template (`cloud`,
    /// `armEndpoint`, `apiVersion`, `allowNodeEgressLockout`, as written).
    pub carried: Map<String, Value>,
}

impl AksTemplate {
    /// Parse and validate a template's provider fields (no network call).
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawAksTemplate = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        let subscription = raw.subscription.trim().to_ascii_lowercase();
        if !is_guid(&subscription) {
            return Err(err(format!(
                "`subscription`: `{}` is not a subscription id (a GUID like 00000000-0000-0000-0000-000000000000)",
                raw.subscription
            )));
        }
        let resource_group = match raw.resource_group {
            None => None,
            Some(rg) => {
                let rg = rg.trim().to_owned();
                validate_resource_group(&rg)
                    .map_err(|m| err(format!("`resourceGroup`: `{rg}`: {m}")))?;
                Some(rg)
            }
        };
        raw.tags.validate().map_err(err)?;
        let cloud = raw.cloud.unwrap_or_default();
        let endpoint_text = raw.arm_endpoint.as_deref().unwrap_or(cloud.arm_endpoint());
        let arm_endpoint = parse_arm_endpoint(endpoint_text)
            .map_err(|m| err(format!("`armEndpoint`: `{endpoint_text}`: {m}")))?;
        let api_version = raw
            .api_version
            .clone()
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        if !is_api_version(&api_version) {
            return Err(err(format!(
                "`apiVersion`: `{api_version}` is not an ARM api-version (YYYY-MM-DD, optionally with -preview)"
            )));
        }
        let mut carried = Map::new();
        if let Some(c) = &cfg.fields.get("cloud") {
            carried.insert("cloud".into(), (*c).clone());
        }
        if let Some(e) = raw.arm_endpoint {
            carried.insert("armEndpoint".into(), Value::String(e));
        }
        if let Some(v) = raw.api_version {
            carried.insert("apiVersion".into(), Value::String(v));
        }
        if let Some(b) = raw.allow_node_egress_lockout {
            carried.insert("allowNodeEgressLockout".into(), Value::Bool(b));
        }
        Ok(AksTemplate {
            name: cfg.name.clone(),
            subscription,
            resource_group,
            tags: raw.tags,
            cloud,
            arm_endpoint,
            api_version,
            carried,
        })
    }

    /// The ARM path of the list: the subscription's managed clusters, or one group's.
    pub fn list_path(&self) -> String {
        match &self.resource_group {
            Some(rg) => format!(
                "/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters",
                self.subscription
            ),
            None => format!(
                "/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters",
                self.subscription
            ),
        }
    }

    /// What is listed, for messages.
    fn scope(&self) -> String {
        match &self.resource_group {
            Some(rg) => format!(
                "the managed clusters of resource group `{rg}` in subscription {}",
                self.subscription
            ),
            None => format!("the managed clusters of subscription {}", self.subscription),
        }
    }

    /// The discovered target of one listed cluster, or `None` when the tags filter it out.
    pub fn target_of(&self, cluster: &Value) -> Result<Option<DiscoveredTarget>, ProviderError> {
        let id = cluster.get("id").and_then(Value::as_str).unwrap_or("");
        let Some((group, name)) = parse_cluster_id(id, &self.subscription) else {
            return Err(ProviderError::Other(format!(
                "listing {}: an item has no managed-cluster id of this subscription (`id`: `{id}`)",
                self.scope()
            )));
        };
        let tags: Vec<(&str, &str)> = cluster
            .get("tags")
            .and_then(Value::as_object)
            .map(|t| {
                t.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        if !self.tags.matches_ci(tags) {
            return Ok(None);
        }
        let mut fields = Map::new();
        fields.insert(
            "subscription".into(),
            Value::String(self.subscription.clone()),
        );
        fields.insert("resourceGroup".into(), Value::String(group.clone()));
        fields.insert("cluster".into(), Value::String(name.clone()));
        fields.extend(self.carried.clone());
        let mut t =
            DiscoveredTarget::new(format!("aks/{}/{group}/{name}", self.subscription), fields);
        if let Some(loc) = cluster.get("location").and_then(Value::as_str) {
            t = t.with_detail("location", loc);
        }
        let state = crate::cluster::provisioning_state(cluster).unwrap_or("unknown");
        t = t.with_detail("provisioningState", state);
        if is_pending_state(state) {
            t = t.with_pending(format!(
                "provisioningState is `{state}` (being created or deleted): looked at again on the next discovery"
            ));
        }
        Ok(Some(t))
    }
}

/// Whether a cluster in `provisioningState` is left out for now: being created or deleted, or
/// of an unknown state. Any other state is a cluster that exists and is kept as a target.
fn is_pending_state(state: &str) -> bool {
    matches!(
        state.to_ascii_lowercase().as_str(),
        "creating" | "deleting" | "unknown" | ""
    )
}

/// `(resourceGroup, cluster)` of `/subscriptions/{s}/resourceGroups/{rg}/providers/
/// Microsoft.ContainerService/managedClusters/{name}` (segment names in any case).
fn parse_cluster_id(id: &str, subscription: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [s, sub, rgs, rg, p, ns, ty, name]
            if s.eq_ignore_ascii_case("subscriptions")
                && sub.eq_ignore_ascii_case(subscription)
                && rgs.eq_ignore_ascii_case("resourceGroups")
                && p.eq_ignore_ascii_case("providers")
                && ns.eq_ignore_ascii_case("Microsoft.ContainerService")
                && ty.eq_ignore_ascii_case("managedClusters")
                && !rg.is_empty()
                && !name.is_empty() =>
        {
            Some(((*rg).to_owned(), (*name).to_owned()))
        }
        _ => None,
    }
}

/// Lists the managed clusters of one template.
pub struct AksDiscoverer {
    template: AksTemplate,
    arm: ArmClient,
}

impl std::fmt::Debug for AksDiscoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AksDiscoverer")
            .field("template", &self.template.name)
            .finish_non_exhaustive()
    }
}

impl AksDiscoverer {
    pub fn new(template: AksTemplate, tokens: Arc<dyn TokenSource>) -> Self {
        let scope = format!(
            "{}/.default",
            template.arm_endpoint.as_str().trim_end_matches('/')
        );
        let arm = ArmClient::for_listing(
            template.arm_endpoint.clone(),
            &template.api_version,
            scope,
            tokens,
        );
        AksDiscoverer { template, arm }
    }
}

#[async_trait::async_trait]
impl Discoverer for AksDiscoverer {
    async fn discover(&self) -> Result<Vec<DiscoveredTarget>, ProviderError> {
        let t = &self.template;
        let items = self.arm.list(&t.list_path(), &t.scope()).await?;
        let mut out = Vec::new();
        for item in &items {
            if let Some(d) = t.target_of(item)? {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }
}

/// Build the discoverer of one `aks` template, with credentials from the environment (as
/// [`crate::factory`]). No network call happens here.
pub fn discovery_factory(cfg: &TargetConfig) -> Result<Box<dyn Discoverer>, ProviderError> {
    let template = AksTemplate::from_config(cfg)?;
    let tokens = Arc::new(credential::LazyChain::new(
        CredentialEnv::from_process(),
        template.cloud,
    ));
    Ok(Box::new(AksDiscoverer::new(template, tokens)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> TargetConfig {
        TargetConfig {
            name: "fleet".into(),
            base_dir: ".".into(),
            fields: v.as_object().cloned().unwrap_or_default(),
        }
    }

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    #[test]
    fn template_fields_are_validated_offline() {
        let t = AksTemplate::from_config(&cfg(serde_json::json!({
            "subscription": SUB, "tags": {"env": "prod"}
        })))
        .unwrap();
        assert_eq!(
            t.list_path(),
            format!("/subscriptions/{SUB}/providers/Microsoft.ContainerService/managedClusters")
        );
        let t = AksTemplate::from_config(&cfg(serde_json::json!({
            "subscription": SUB, "resourceGroup": "rg1"
        })))
        .unwrap();
        assert!(t.list_path().contains("/resourceGroups/rg1/"));
        for (bad, says) in [
            (serde_json::json!({"subscription": "nope"}), "subscription"),
            (
                serde_json::json!({"subscription": SUB, "resourceGroup": "a b"}),
                "resourceGroup",
            ),
            (
                serde_json::json!({"subscription": SUB, "cluster": "x"}),
                "unknown field `cluster`",
            ),
            (
                serde_json::json!({"subscription": SUB, "tags": {"team": []}}),
                "`tags`: `team`",
            ),
            (
                serde_json::json!({"subscription": SUB, "armEndpoint": "http://example.com"}),
                "armEndpoint",
            ),
        ] {
            let e = AksTemplate::from_config(&cfg(bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_listed_cluster_becomes_a_target_with_a_stable_name_or_pending() {
        let t = AksTemplate::from_config(&cfg(serde_json::json!({
            "subscription": SUB, "tags": {"env": "prod"}, "apiVersion": "2026-08-01"
        })))
        .unwrap();
        let mut c = serde_json::json!({
            "id": format!("/subscriptions/{SUB}/resourcegroups/rg1/providers/Microsoft.ContainerService/managedClusters/c1"),
            "location": "westeurope",
            "tags": {"Env": "prod"},
            "properties": {"provisioningState": "Succeeded"}
        });
        let d = t.target_of(&c).unwrap().unwrap();
        assert_eq!(d.name, format!("aks/{SUB}/rg1/c1"));
        assert_eq!(d.pending, None);
        assert_eq!(d.fields["cluster"], "c1");
        assert_eq!(d.fields["resourceGroup"], "rg1");
        assert_eq!(d.fields["apiVersion"], "2026-08-01");
        crate::AksTarget::from_config(&TargetConfig {
            name: d.name.clone(),
            base_dir: ".".into(),
            fields: d.fields.clone(),
        })
        .expect("the fields make a valid aks target");
        c["properties"]["provisioningState"] = "Creating".into();
        let d = t.target_of(&c).unwrap().unwrap();
        assert!(d.pending.unwrap().contains("Creating"));
        c["tags"] = serde_json::json!({"env": "dev"});
        assert!(t.target_of(&c).unwrap().is_none());
        c["id"] = "/subscriptions/other/resourceGroups/x".into();
        assert!(t.target_of(&c).is_err());
    }

    mod regression {
        use super::*;

        /// Our own apply puts a cluster in `Updating`: it must stay a target (its drift still
        /// repaired, its metrics kept), not drop out of the reconciler as pending.
        #[test]
        fn a_cluster_in_the_middle_of_an_operation_stays_a_target() {
            let t =
                AksTemplate::from_config(&cfg(serde_json::json!({"subscription": SUB}))).unwrap();
            let mut c = serde_json::json!({
                "id": format!("/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/c1"),
                "properties": {"provisioningState": "Updating"}
            });
            for state in ["Updating", "Upgrading", "Scaling", "Failed", "Succeeded"] {
                c["properties"]["provisioningState"] = state.into();
                let d = t.target_of(&c).unwrap().unwrap();
                assert_eq!(d.pending, None, "{state}");
            }
            for state in ["Creating", "Deleting"] {
                c["properties"]["provisioningState"] = state.into();
                let d = t.target_of(&c).unwrap().unwrap();
                assert!(d.pending.unwrap().contains(state), "{state}");
            }
            c["properties"] = serde_json::json!({});
            assert!(t.target_of(&c).unwrap().unwrap().pending.is_some());
        }
    }
}
