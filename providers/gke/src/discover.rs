//! Discovery of GKE clusters for a `discover:` template: `clusters.list` of a project in one
//! location, or in every location (`-`, the default), filtered by the clusters'
//! `resourceLabels`. A cluster being created or deleted (`PROVISIONING`, `STOPPING`) or with
//! no known status (`STATUS_UNSPECIFIED`, none at all) is listed as pending; one in the middle
//! of another operation (`RECONCILING`, often our own update) or in trouble (`DEGRADED`,
//! `ERROR`) still has a control plane to guard, so it stays a target: the provider reads it,
//! and an update that meets an operation in progress comes back as a typed conflict the retry
//! policy waits out. A listing whose answer names `missingZones` lacks the clusters of those
//! zones, so it fails as a whole (transient) rather than be acted on as half a list. One
//! attempt per call; errors are typed.

use std::sync::Arc;

use rangekeeper_provider::{DiscoveredTarget, Discoverer, ProviderError, TagFilter, TargetConfig};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api::GkeLister;
use crate::config::{
    DEFAULT_ENDPOINT, parse_endpoint, validate_cluster, validate_location, validate_project,
};
use crate::credential::{CredentialChain, CredentialEnv, TokenSource};

/// The location that lists every location of a project.
pub const ALL_LOCATIONS: &str = "-";

/// The template fields exactly as declared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGkeTemplate {
    project: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    labels: TagFilter,
    #[serde(default)]
    endpoint: Option<String>,
}

/// A validated GKE template.
#[derive(Debug, Clone)]
pub struct GkeTemplate {
    pub name: String,
    pub project: String,
    /// A region, a zone, or [`ALL_LOCATIONS`].
    pub location: String,
    pub labels: TagFilter,
    pub endpoint: Url,
    /// The target fields every discovered cluster carries over from the template
    /// (`endpoint`, as written).
    pub carried: Map<String, Value>,
}

impl GkeTemplate {
    /// Parse and validate a template's provider fields (no network call).
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawGkeTemplate = cfg.parse()?;
        let err = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        let project = raw.project.trim().to_owned();
        validate_project(&project).map_err(|m| err(format!("`project`: `{project}`: {m}")))?;
        let location = match raw.location {
            None => ALL_LOCATIONS.to_owned(),
            Some(l) => {
                let l = l.trim().to_owned();
                if l != ALL_LOCATIONS {
                    validate_location(&l).map_err(|m| {
                        err(format!(
                            "`location`: `{l}`: {m}; or `-` (the default) for every location"
                        ))
                    })?;
                }
                l
            }
        };
        raw.labels.validate_as("labels", "label").map_err(err)?;
        let text = raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        let endpoint =
            parse_endpoint(text).map_err(|m| err(format!("`endpoint`: `{text}`: {m}")))?;
        let mut carried = Map::new();
        if let Some(e) = raw.endpoint {
            carried.insert("endpoint".into(), Value::String(e));
        }
        Ok(GkeTemplate {
            name: cfg.name.clone(),
            project,
            location,
            labels: raw.labels,
            endpoint,
            carried,
        })
    }

    /// What is listed, for messages.
    fn scope(&self) -> String {
        if self.location == ALL_LOCATIONS {
            format!(
                "the clusters of project `{}` (every location)",
                self.project
            )
        } else {
            format!(
                "the clusters of project `{}` in location `{}`",
                self.project, self.location
            )
        }
    }

    /// The discovered target of one listed cluster, or `None` when the labels filter it out.
    pub fn target_of(&self, cluster: &Value) -> Result<Option<DiscoveredTarget>, ProviderError> {
        let bad = |what: String| {
            ProviderError::Other(format!("listing {}: an item has {what}", self.scope()))
        };
        let name = cluster.get("name").and_then(Value::as_str).unwrap_or("");
        validate_cluster(name)
            .map_err(|m| bad(format!("no valid cluster name (`{name}`: {m})")))?;
        // `location` (v1), else the deprecated `zone`, else the one location listed.
        let location = cluster
            .get("location")
            .and_then(Value::as_str)
            .or_else(|| cluster.get("zone").and_then(Value::as_str))
            .filter(|l| !l.is_empty())
            .or((self.location != ALL_LOCATIONS).then_some(self.location.as_str()))
            .unwrap_or("");
        validate_location(location).map_err(|m| {
            bad(format!(
                "no valid location (cluster `{name}`, `location`: `{location}`: {m})"
            ))
        })?;
        let labels: Vec<(&str, &str)> = cluster
            .get("resourceLabels")
            .and_then(Value::as_object)
            .map(|t| {
                t.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        if !self.labels.matches(labels) {
            return Ok(None);
        }
        let mut fields = Map::new();
        fields.insert("project".into(), Value::String(self.project.clone()));
        fields.insert("location".into(), Value::String(location.to_owned()));
        fields.insert("cluster".into(), Value::String(name.to_owned()));
        fields.extend(self.carried.clone());
        let status = cluster
            .get("status")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("STATUS_UNSPECIFIED");
        let mut t =
            DiscoveredTarget::new(format!("gke/{}/{location}/{name}", self.project), fields)
                .with_detail("location", location)
                .with_detail("status", status);
        if let Some(why) = pending_reason(status) {
            t = t.with_pending(format!(
                "status is `{status}` ({why}): looked at again on the next discovery"
            ));
        }
        Ok(Some(t))
    }
}

/// Why a cluster of this `status` is left out for now, or `None` for a cluster that exists
/// with a control plane to guard (`RUNNING`; `RECONCILING`, an operation in progress, often
/// our own; `DEGRADED` and `ERROR`, in trouble but there).
fn pending_reason(status: &str) -> Option<&'static str> {
    match status {
        "RUNNING" | "RECONCILING" | "DEGRADED" | "ERROR" => None,
        "PROVISIONING" => Some("being created"),
        "STOPPING" => Some("being deleted"),
        "STATUS_UNSPECIFIED" => Some("no status reported"),
        _ => Some("a status rangekeeper does not know"),
    }
}

/// Lists the clusters of one template.
pub struct GkeDiscoverer {
    template: GkeTemplate,
    lister: GkeLister,
}

impl std::fmt::Debug for GkeDiscoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GkeDiscoverer")
            .field("template", &self.template.name)
            .finish_non_exhaustive()
    }
}

impl GkeDiscoverer {
    pub fn new(template: GkeTemplate, tokens: Arc<dyn TokenSource>) -> Self {
        let lister = GkeLister::new(template.endpoint.clone(), tokens);
        GkeDiscoverer { template, lister }
    }
}

#[async_trait::async_trait]
impl Discoverer for GkeDiscoverer {
    async fn discover(&self) -> Result<Vec<DiscoveredTarget>, ProviderError> {
        let t = &self.template;
        let list = self
            .lister
            .list(&t.project, &t.location)
            .await
            .map_err(|e| match e {
                ProviderError::NotFound(m) => ProviderError::NotFound(format!(
                    "{m} (is project `{}` right, and location `{}` one of its locations?)",
                    t.project, t.location
                )),
                other => other,
            })?;
        if !list.missing_zones.is_empty() {
            return Err(ProviderError::Transient(format!(
                "listing {}: GKE could not reach {} (`missingZones`), so the list lacks the clusters there and is not used",
                t.scope(),
                list.missing_zones.join(", ")
            )));
        }
        let mut out = Vec::new();
        for item in &list.clusters {
            if let Some(d) = t.target_of(item)? {
                out.push(d);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }
}

/// Build the discoverer of one `gke` template, with credentials as Google's tools find them
/// (as [`crate::factory`]). No network call happens here.
pub fn discovery_factory(cfg: &TargetConfig) -> Result<Box<dyn Discoverer>, ProviderError> {
    let template = GkeTemplate::from_config(cfg)?;
    let tokens = Arc::new(CredentialChain::from_env(CredentialEnv::from_process())?);
    Ok(Box::new(GkeDiscoverer::new(template, tokens)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> TargetConfig {
        TargetConfig {
            name: "fleet".into(),
            base_dir: ".".into(),
            fields: v.as_object().cloned().unwrap_or_default(),
        }
    }

    const PROJECT: &str = "my-project-123";

    fn cluster(name: &str, location: &str, labels: Value, status: &str) -> Value {
        json!({"name": name, "location": location, "zone": location,
            "resourceLabels": labels, "status": status})
    }

    #[test]
    fn template_fields_are_validated_offline() {
        let t = GkeTemplate::from_config(&cfg(json!({
            "project": PROJECT, "labels": {"env": "prod"}
        })))
        .unwrap();
        assert_eq!(t.location, "-", "every location by default");
        assert_eq!(t.endpoint.as_str(), "https://container.googleapis.com/");
        assert!(t.carried.is_empty());
        let t = GkeTemplate::from_config(&cfg(json!({
            "project": PROJECT, "location": "europe-west1-b", "endpoint": "http://127.0.0.1:1"
        })))
        .unwrap();
        assert_eq!(t.location, "europe-west1-b");
        assert_eq!(t.carried["endpoint"], "http://127.0.0.1:1");
        for (bad, says) in [
            (json!({"project": "My-Project"}), "`project`: `My-Project`"),
            (
                json!({"location": "europe-west1"}),
                "missing field `project`",
            ),
            (
                json!({"project": PROJECT, "location": "europe"}),
                "`location`: `europe`",
            ),
            (
                json!({"project": PROJECT, "cluster": "c1"}),
                "unknown field `cluster`",
            ),
            (
                json!({"project": PROJECT, "tags": {"env": "prod"}}),
                "unknown field `tags`",
            ),
            (
                json!({"project": PROJECT, "labels": {"team": []}}),
                "`labels`: `team`",
            ),
            (
                json!({"project": PROJECT, "endpoint": "http://example.com"}),
                "`endpoint`: `http://example.com`",
            ),
        ] {
            let e = GkeTemplate::from_config(&cfg(bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(e.contains("fleet") || e.contains("field"), "{e}");
        }
    }

    #[test]
    fn a_listed_cluster_becomes_a_target_with_a_stable_name_or_pending_or_nothing() {
        let t = GkeTemplate::from_config(&cfg(json!({
            "project": PROJECT, "labels": {"env": ["prod", "staging"]},
            "endpoint": "http://127.0.0.1:8080"
        })))
        .unwrap();
        let mut c = cluster("c1", "europe-west1-b", json!({"env": "prod"}), "RUNNING");
        let d = t.target_of(&c).unwrap().unwrap();
        assert_eq!(d.name, format!("gke/{PROJECT}/europe-west1-b/c1"));
        assert_eq!(d.pending, None);
        assert_eq!(d.fields["location"], "europe-west1-b");
        assert_eq!(d.fields["endpoint"], "http://127.0.0.1:8080");
        assert_eq!(
            d.details,
            [
                ("location".to_owned(), "europe-west1-b".to_owned()),
                ("status".to_owned(), "RUNNING".to_owned())
            ]
        );
        let target = crate::GkeTarget::from_config(&TargetConfig {
            name: d.name.clone(),
            base_dir: ".".into(),
            fields: d.fields.clone(),
        })
        .expect("the fields make a valid gke target");
        assert_eq!(
            target.resource_name(),
            format!("projects/{PROJECT}/locations/europe-west1-b/clusters/c1")
        );
        c["status"] = "PROVISIONING".into();
        let d = t.target_of(&c).unwrap().unwrap();
        assert!(d.pending.unwrap().contains("PROVISIONING"));
        c["resourceLabels"] = json!({"env": "dev"});
        assert!(t.target_of(&c).unwrap().is_none(), "filtered out");
        c["resourceLabels"] = json!({"ENV": "prod"});
        assert!(t.target_of(&c).unwrap().is_none(), "label keys are exact");
        if let Some(o) = c.as_object_mut() {
            o.remove("resourceLabels");
        }
        assert!(t.target_of(&c).unwrap().is_none(), "no labels, no match");
        let c = cluster(
            "Bad_Name",
            "europe-west1",
            json!({"env": "prod"}),
            "RUNNING",
        );
        assert!(t.target_of(&c).is_err());
        let c = json!({"name": "c1", "resourceLabels": {"env": "prod"}, "status": "RUNNING"});
        let e = t.target_of(&c).unwrap_err().to_string();
        assert!(e.contains("no valid location"), "{e}");
    }

    #[test]
    fn the_location_falls_back_to_zone_then_to_the_listed_location() {
        let t = GkeTemplate::from_config(&cfg(json!({
            "project": PROJECT, "location": "us-central1-a"
        })))
        .unwrap();
        let d = t
            .target_of(&json!({"name": "c1", "zone": "us-central1-a", "status": "RUNNING"}))
            .unwrap()
            .unwrap();
        assert_eq!(d.fields["location"], "us-central1-a");
        let d = t
            .target_of(&json!({"name": "c2", "status": "RUNNING"}))
            .unwrap()
            .unwrap();
        assert_eq!(d.name, format!("gke/{PROJECT}/us-central1-a/c2"));
    }

    #[test]
    fn statuses_map_to_targets_or_pending() {
        let t = GkeTemplate::from_config(&cfg(json!({"project": PROJECT}))).unwrap();
        let of = |status: Option<&str>| {
            let mut c = cluster("c1", "europe-west1", json!({}), "");
            match status {
                Some(s) => c["status"] = s.into(),
                None => {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            t.target_of(&c).unwrap().unwrap()
        };
        for (status, why) in [
            ("PROVISIONING", "being created"),
            ("STOPPING", "being deleted"),
            ("STATUS_UNSPECIFIED", "no status reported"),
            ("SOMETHING_NEW", "does not know"),
        ] {
            let p = of(Some(status)).pending.unwrap();
            assert!(p.contains(status) && p.contains(why), "{p}");
        }
        let p = of(None).pending.unwrap();
        assert!(p.contains("STATUS_UNSPECIFIED"), "{p}");
    }

    mod regression {
        use super::*;

        /// Our own update puts a cluster in `RECONCILING` (GKE's "an operation is running"):
        /// it must stay a target (its drift still repaired, its metrics kept), not drop out of
        /// the reconciler as pending; so must a `DEGRADED` or `ERROR` cluster, whose control
        /// plane still answers.
        #[test]
        fn a_reconciling_cluster_stays_a_target() {
            let t = GkeTemplate::from_config(&cfg(json!({"project": PROJECT}))).unwrap();
            for status in ["RECONCILING", "RUNNING", "DEGRADED", "ERROR"] {
                let c = cluster("c1", "europe-west1", json!({}), status);
                let d = t.target_of(&c).unwrap().unwrap();
                assert_eq!(d.pending, None, "{status}");
                assert!(
                    d.details
                        .contains(&("status".to_owned(), status.to_owned()))
                );
            }
        }
    }
}
