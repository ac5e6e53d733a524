//! The EKS target's declaration fields: parsed once into a validated [`EksTarget`].

use rangekeeper_provider::{ProviderError, TargetConfig};

/// The raw provider-specific fields of an `eks` target, as written in the declaration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEksTarget {
    region: String,
    cluster: String,
    #[serde(default)]
    profile: Option<String>,
}

/// A validated `eks` target: which cluster, in which region, with which credentials profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksTarget {
    /// The target's name in the declaration.
    pub name: String,
    /// The AWS region of the cluster (e.g. `eu-west-1`).
    pub region: String,
    /// The EKS cluster name.
    pub cluster: String,
    /// A named profile of the shared AWS config (SSO, assume-role, ...); `None`: the default
    /// credential chain (`AWS_PROFILE`, env, web identity, container and instance metadata).
    pub profile: Option<String>,
}

impl EksTarget {
    /// Parse and validate the provider-specific fields of a target.
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawEksTarget = cfg.parse()?;
        let bad = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        let region = raw.region.trim().to_owned();
        if !valid_region(&region) {
            return Err(bad(format!(
                "region `{}` is not an AWS region name (expected something like `eu-west-1`)",
                raw.region
            )));
        }
        let cluster = raw.cluster.trim().to_owned();
        if !valid_cluster_name(&cluster) {
            return Err(bad(format!(
                "cluster `{}` is not a valid EKS cluster name (1-100 characters: letters, digits, \
                 `-` and `_`, starting with a letter or digit)",
                raw.cluster
            )));
        }
        let profile = match raw.profile {
            None => None,
            Some(p) if p.trim().is_empty() => {
                return Err(bad(
                    "profile must not be empty (omit it to use the default chain)".into(),
                ));
            }
            Some(p) => Some(p.trim().to_owned()),
        };
        Ok(EksTarget {
            name: cfg.name.clone(),
            region,
            cluster,
            profile,
        })
    }
}

impl EksTarget {
    /// Which AWS identity the target uses, for messages: ``region `eu-west-1`, profile
    /// `sso-admin` `` (or ``the default credential chain``).
    pub fn identity(&self) -> String {
        match &self.profile {
            Some(p) => format!("region `{}`, profile `{p}`", self.region),
            None => format!("region `{}`, the default credential chain", self.region),
        }
    }
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`, `ap-southeast-5`: lowercase words joined by
/// `-`, ending in a number.
pub(crate) fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && s.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// EKS cluster names: `^[0-9A-Za-z][A-Za-z0-9\-_]*$`, at most 100 characters.
fn valid_cluster_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= 100
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(v: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "prod-eks".into(),
            base_dir: PathBuf::from("."),
            fields: v.as_object().cloned().unwrap(),
        }
    }

    #[test]
    fn parses_region_cluster_and_profile() {
        let t = EksTarget::from_config(&cfg(serde_json::json!({
            "region": "eu-west-1", "cluster": "prod", "profile": "sso-admin"
        })))
        .unwrap();
        assert_eq!(
            t,
            EksTarget {
                name: "prod-eks".into(),
                region: "eu-west-1".into(),
                cluster: "prod".into(),
                profile: Some("sso-admin".into())
            }
        );
        let t = EksTarget::from_config(&cfg(serde_json::json!({
            "region": "us-gov-west-1", "cluster": "a_b-9"
        })))
        .unwrap();
        assert_eq!(t.profile, None);
    }

    #[test]
    fn unknown_field_is_an_error_naming_the_target() {
        let e = EksTarget::from_config(&cfg(serde_json::json!({
            "region": "eu-west-1", "cluster": "prod", "clusterName": "x"
        })))
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ProviderError::Config(_)));
        assert!(
            msg.contains("prod-eks") && msg.contains("clusterName"),
            "{msg}"
        );
    }

    #[test]
    fn missing_cluster_is_an_error() {
        let e =
            EksTarget::from_config(&cfg(serde_json::json!({"region": "eu-west-1"}))).unwrap_err();
        assert!(e.to_string().contains("cluster"), "{e}");
    }

    #[test]
    fn bad_region_and_cluster_names_are_rejected() {
        for region in [
            "",
            "eu west 1",
            "EU-WEST-1",
            "euwest1",
            "eu-west-",
            "eu-west-x",
        ] {
            let e = EksTarget::from_config(&cfg(
                serde_json::json!({"region": region, "cluster": "prod"}),
            ))
            .unwrap_err();
            assert!(e.to_string().contains("region"), "{region}: {e}");
        }
        for cluster in ["", "-prod", "prod/x", "a b", &"x".repeat(101)] {
            let e = EksTarget::from_config(&cfg(
                serde_json::json!({"region": "eu-west-1", "cluster": cluster}),
            ))
            .unwrap_err();
            assert!(e.to_string().contains("cluster"), "{cluster}: {e}");
        }
        let e = EksTarget::from_config(&cfg(serde_json::json!({
            "region": "eu-west-1", "cluster": "prod", "profile": " "
        })))
        .unwrap_err();
        assert!(e.to_string().contains("profile"), "{e}");
    }
}
