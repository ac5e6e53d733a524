//! The AKS target's declaration fields: raw serde struct -> validated [`AksTarget`], once.

use std::net::IpAddr;

use rangekeeper_provider::{ProviderError, TargetConfig};
use reqwest::Url;
use serde::Deserialize;

/// The api-version used for managedClusters when the declaration names none: the newest
/// stable version published in Azure/azure-rest-api-specs
/// (`aks/stable/2026-08-01/managedClusters.json`). The GET and the PUT use the same version,
/// so every field that version knows is read and written back unchanged. Sovereign clouds
/// may lag behind; set `apiVersion` there (e.g. `2025-10-01`).
pub const DEFAULT_API_VERSION: &str = "2026-08-01";

/// The api-version for `Microsoft.Network/publicIPAddresses` (the node egress guard).
pub const PUBLIC_IP_API_VERSION: &str = "2024-05-01";

/// The Azure cloud a cluster lives in: picks the ARM endpoint and the Entra ID authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    #[default]
    Public,
    Usgov,
    China,
}

impl Cloud {
    /// The Resource Manager endpoint of this cloud.
    pub fn arm_endpoint(self) -> &'static str {
        match self {
            Cloud::Public => "https://management.azure.com",
            Cloud::Usgov => "https://management.usgovcloudapi.net",
            Cloud::China => "https://management.chinacloudapi.cn",
        }
    }
}

/// The target fields exactly as declared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAksTarget {
    subscription: String,
    resource_group: String,
    cluster: String,
    #[serde(default)]
    cloud: Cloud,
    #[serde(default)]
    arm_endpoint: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    allow_node_egress_lockout: bool,
}

/// A validated AKS target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AksTarget {
    /// The target's name in the declaration (for messages).
    pub name: String,
    pub subscription: String,
    pub resource_group: String,
    pub cluster: String,
    pub cloud: Cloud,
    /// The ARM base URL without a trailing slash (`https://management.azure.com`).
    pub arm_endpoint: Url,
    pub api_version: String,
    pub allow_node_egress_lockout: bool,
}

impl AksTarget {
    /// Parse and validate the provider-specific fields of a target.
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawAksTarget = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));

        let subscription = raw.subscription.trim().to_owned();
        if !is_guid(&subscription) {
            return Err(err(format!(
                "subscription `{}` is not a subscription id (a GUID like 00000000-0000-0000-0000-000000000000)",
                raw.subscription
            )));
        }
        let resource_group = raw.resource_group.trim().to_owned();
        validate_resource_group(&resource_group)
            .map_err(|m| err(format!("resourceGroup `{resource_group}`: {m}")))?;
        let cluster = raw.cluster.trim().to_owned();
        validate_cluster_name(&cluster).map_err(|m| err(format!("cluster `{cluster}`: {m}")))?;

        let endpoint_text = raw
            .arm_endpoint
            .as_deref()
            .unwrap_or(raw.cloud.arm_endpoint());
        let arm_endpoint = parse_arm_endpoint(endpoint_text)
            .map_err(|m| err(format!("armEndpoint `{endpoint_text}`: {m}")))?;

        let api_version = raw
            .api_version
            .unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        if !is_api_version(&api_version) {
            return Err(err(format!(
                "apiVersion `{api_version}` is not an ARM api-version (YYYY-MM-DD, optionally with -preview)"
            )));
        }

        Ok(AksTarget {
            name: cfg.name.clone(),
            subscription,
            resource_group,
            cluster,
            cloud: raw.cloud,
            arm_endpoint,
            api_version,
            allow_node_egress_lockout: raw.allow_node_egress_lockout,
        })
    }

    /// The ARM resource id of the managed cluster.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.subscription, self.resource_group, self.cluster
        )
    }

    /// The OAuth scope of a token for this ARM endpoint: `{arm}/.default`.
    pub fn token_scope(&self) -> String {
        format!(
            "{}/.default",
            self.arm_endpoint.as_str().trim_end_matches('/')
        )
    }
}

/// An ARM endpoint: https, or plain http for loopback hosts only (tests, local proxies);
/// no query, fragment or credentials. A path prefix is kept (reverse proxies, Azure Stack).
pub fn parse_arm_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback_host(&url) {
                return Err(
                    "plain http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost); use https".into(),
                );
            }
        }
        other => return Err(format!("scheme `{other}` is not supported; use https")),
    }
    if url.host().is_none() {
        return Err("no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

fn is_loopback_host(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Azure resource group names: 1-90 characters of letters, digits, `-`, `_`, `.`, `(`, `)`,
/// not ending in `.`.
pub(crate) fn validate_resource_group(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 90 {
        return Err("must be 1 to 90 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')')))
    {
        return Err(format!("character `{c}` is not allowed"));
    }
    if s.ends_with('.') {
        return Err("must not end with `.`".into());
    }
    Ok(())
}

/// AKS cluster names: 1-63 characters of ASCII letters, digits, `-` and `_`, starting and
/// ending with a letter or digit.
fn validate_cluster_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!("character `{c}` is not allowed"));
    }
    let first_last_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_last_ok(s.chars().next()) || !first_last_ok(s.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

pub(crate) fn is_api_version(s: &str) -> bool {
    let (Some(date), Some(suffix)) = (s.get(..10), s.get(10..)) else {
        return false;
    };
    let date_ok = date.bytes().enumerate().all(|(i, c)| {
        if i == 4 || i == 7 {
            c == b'-'
        } else {
            c.is_ascii_digit()
        }
    });
    date_ok && (suffix.is_empty() || suffix == "-preview")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(v: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "prod-aks".into(),
            base_dir: PathBuf::from("."),
            fields: v.as_object().cloned().unwrap(),
        }
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "subscription": "00000000-0000-0000-0000-000000000000",
            "resourceGroup": "rg-prod",
            "cluster": "aks-prod",
        })
    }

    fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
        let mut b = base();
        b[k] = v;
        b
    }

    #[test]
    fn defaults() {
        let t = AksTarget::from_config(&cfg(base())).unwrap();
        assert_eq!(t.arm_endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(t.token_scope(), "https://management.azure.com/.default");
        assert_eq!(t.api_version, DEFAULT_API_VERSION);
        assert!(!t.allow_node_egress_lockout);
        assert_eq!(
            t.resource_id(),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"
        );
    }

    #[test]
    fn sovereign_clouds() {
        let t = AksTarget::from_config(&cfg(with("cloud", "usgov".into()))).unwrap();
        assert_eq!(
            t.token_scope(),
            "https://management.usgovcloudapi.net/.default"
        );
        let t = AksTarget::from_config(&cfg(with("cloud", "china".into()))).unwrap();
        assert_eq!(
            t.token_scope(),
            "https://management.chinacloudapi.cn/.default"
        );
        assert!(AksTarget::from_config(&cfg(with("cloud", "mars".into()))).is_err());
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = AksTarget::from_config(&cfg(with("resourcegroup", "x".into()))).unwrap_err();
        assert!(e.to_string().contains("prod-aks"), "{e}");
        assert!(e.to_string().contains("resourcegroup"), "{e}");
    }

    #[test]
    fn arm_endpoint_rules() {
        for ok in [
            "https://management.local.azurestack.external",
            "http://127.0.0.1:8080",
            "http://127.8.9.1:8080/",
            "http://[::1]:9000",
            "http://localhost:1234",
        ] {
            assert!(
                AksTarget::from_config(&cfg(with("armEndpoint", ok.into()))).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "http://management.azure.com",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "ftp://x",
            "https://x?y=1",
            "https://user:pw@x",
            "not a url",
        ] {
            assert!(
                AksTarget::from_config(&cfg(with("armEndpoint", bad.into()))).is_err(),
                "{bad}"
            );
        }
        let t = AksTarget::from_config(&cfg(with("armEndpoint", "http://127.0.0.1:8080/".into())))
            .unwrap();
        assert_eq!(t.token_scope(), "http://127.0.0.1:8080/.default");
    }

    #[test]
    fn names_and_versions() {
        assert!(AksTarget::from_config(&cfg(with("subscription", "abc".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("cluster", "-bad".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("cluster", "a/b".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("resourceGroup", "rg.".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("resourceGroup", "rg?x".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("apiVersion", "2025-10-01".into()))).is_ok());
        assert!(
            AksTarget::from_config(&cfg(with("apiVersion", "2025-10-02-preview".into()))).is_ok()
        );
        assert!(AksTarget::from_config(&cfg(with("apiVersion", "2025-1-01".into()))).is_err());
        assert!(AksTarget::from_config(&cfg(with("apiVersion", "latest".into()))).is_err());
        assert!(
            AksTarget::from_config(&cfg(with("allowNodeEgressLockout", true.into())))
                .unwrap()
                .allow_node_egress_lockout
        );
    }
}
