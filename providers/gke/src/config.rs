//! The GKE target's declaration fields: raw serde struct -> validated [`GkeTarget`], once.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{ProviderError, TargetConfig};
use reqwest::Url;
use serde::Deserialize;

/// The GKE API root when the declaration names none.
pub const DEFAULT_ENDPOINT: &str = "https://container.googleapis.com";

/// The target fields exactly as declared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGkeTarget {
    project: String,
    location: String,
    cluster: String,
    #[serde(default)]
    endpoint: Option<String>,
}

/// A validated GKE target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GkeTarget {
    /// The target's name in the declaration (for messages).
    pub name: String,
    pub project: String,
    /// A region (`europe-west1`: a regional cluster) or a zone (`europe-west1-b`).
    pub location: String,
    pub cluster: String,
    /// The API root without a trailing slash (`https://container.googleapis.com`).
    pub endpoint: Url,
    /// The declaration's notes for ranges, by canonical prefix: they become the blocks'
    /// `displayName`s.
    pub notes: BTreeMap<IpNet, String>,
}

impl GkeTarget {
    /// Parse and validate the provider-specific fields of a target.
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawGkeTarget = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        let project = raw.project.trim().to_owned();
        validate_project(&project).map_err(|m| err(format!("project `{project}`: {m}")))?;
        let location = raw.location.trim().to_owned();
        validate_location(&location).map_err(|m| err(format!("location `{location}`: {m}")))?;
        let cluster = raw.cluster.trim().to_owned();
        validate_cluster(&cluster).map_err(|m| err(format!("cluster `{cluster}`: {m}")))?;
        let text = raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let endpoint = parse_endpoint(text).map_err(|m| err(format!("endpoint `{text}`: {m}")))?;
        Ok(GkeTarget {
            name: cfg.name.clone(),
            project,
            location,
            cluster,
            endpoint,
            notes: BTreeMap::new(),
        })
    }

    /// Attach the declaration's notes (canonical prefix -> note).
    pub fn with_notes(mut self, notes: BTreeMap<IpNet, String>) -> Self {
        self.notes = notes;
        self
    }

    /// `projects/{p}/locations/{l}/clusters/{c}`: the cluster's resource name.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/{}/clusters/{}",
            self.project, self.location, self.cluster
        )
    }

    /// `projects/{p}/locations/{l}/operations/{id}`: an operation's resource name.
    pub fn operation_name(&self, id: &str) -> String {
        format!(
            "projects/{}/locations/{}/operations/{id}",
            self.project, self.location
        )
    }
}

/// An API root: https, or plain http for loopback hosts only (tests, local proxies); no
/// query, fragment or credentials. A path prefix is kept (reverse proxies).
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err(
                "plain http is allowed only for loopback hosts (127.0.0.0/8, ::1, localhost); use https".into(),
            );
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
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Whether a URL points at 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Project ids: 6-30 characters of lowercase letters, digits and `-`, starting with a
/// letter, not ending with `-`; legacy domain-scoped ids (`example.com:my-project`) too.
pub(crate) fn validate_project(s: &str) -> Result<(), String> {
    let id = match s.rsplit_once(':') {
        Some((domain, id)) => {
            if domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
            {
                return Err("the domain of a domain-scoped project id is not valid".into());
            }
            id
        }
        None => s,
    };
    if !(6..=30).contains(&id.len()) {
        return Err("a project id has 6 to 30 characters".into());
    }
    check_name(id, "a project id")
}

/// Regions and zones: `europe-west1`, `us-central1-a`.
pub(crate) fn validate_location(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    if !s.contains('-') {
        return Err("not a region or zone (like `europe-west1` or `europe-west1-b`)".into());
    }
    check_name(s, "a location")
}

/// Cluster names: 1-40 characters of lowercase letters, digits and `-`, starting with a
/// letter and ending with a letter or digit.
pub(crate) fn validate_cluster(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 40 {
        return Err("must be 1 to 40 characters".into());
    }
    check_name(s, "a cluster name")
}

fn check_name(s: &str, what: &str) -> Result<(), String> {
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "character `{c}` is not allowed in {what} (lowercase letters, digits, `-`)"
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("{what} starts with a lowercase letter"));
    }
    if s.ends_with('-') {
        return Err(format!("{what} does not end with `-`"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(v: serde_json::Value) -> TargetConfig {
        TargetConfig {
            name: "prod-gke".into(),
            base_dir: PathBuf::from("."),
            fields: v.as_object().cloned().unwrap(),
        }
    }

    fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
        let mut b = serde_json::json!({
            "project": "my-project-123",
            "location": "europe-west1",
            "cluster": "prod-1",
        });
        b[k] = v;
        b
    }

    #[test]
    fn defaults_and_names() {
        let t = GkeTarget::from_config(&cfg(with("cluster", "prod-1".into()))).unwrap();
        assert_eq!(t.endpoint.as_str(), "https://container.googleapis.com/");
        assert_eq!(
            t.resource_name(),
            "projects/my-project-123/locations/europe-west1/clusters/prod-1"
        );
        assert_eq!(
            t.operation_name("operation-1"),
            "projects/my-project-123/locations/europe-west1/operations/operation-1"
        );
        assert!(GkeTarget::from_config(&cfg(with("location", "us-central1-a".into()))).is_ok());
        assert!(
            GkeTarget::from_config(&cfg(with("project", "example.com:my-project".into()))).is_ok()
        );
    }

    #[test]
    fn bad_fields_name_the_target_and_value() {
        for (k, v) in [
            ("project", "My-Project"),
            ("project", "short"),
            ("project", "a/b/c/d/e/f"),
            ("location", "europe"),
            ("location", "europe-west1/clusters"),
            ("cluster", "Prod"),
            ("cluster", "prod-"),
            ("cluster", "1prod"),
            ("endpoint", "http://container.googleapis.com"),
            ("endpoint", "https://x?y=1"),
            ("endpoint", "https://user:pw@x"),
        ] {
            let e = GkeTarget::from_config(&cfg(with(k, v.into()))).unwrap_err();
            assert!(e.to_string().contains("prod-gke"), "{e}");
            assert!(e.to_string().contains(v), "{e}");
        }
        let e = GkeTarget::from_config(&cfg(with("zone", "x".into()))).unwrap_err();
        assert!(e.to_string().contains("zone"), "{e}");
    }

    #[test]
    fn endpoints() {
        for ok in [
            "https://container.googleapis.com/",
            "http://127.0.0.1:8080",
            "http://[::1]:9000/prefix/",
            "http://localhost:1234",
        ] {
            assert!(
                GkeTarget::from_config(&cfg(with("endpoint", ok.into()))).is_ok(),
                "{ok}"
            );
        }
        let t = GkeTarget::from_config(&cfg(with("endpoint", "http://[::1]:9000/prefix/".into())))
            .unwrap();
        assert_eq!(t.endpoint.path(), "/prefix");
    }
}
