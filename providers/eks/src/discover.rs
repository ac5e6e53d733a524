//! Discovery of EKS clusters for a `discover:` template: in each region, `ListClusters`
//! (every page) and a `DescribeCluster` of each cluster for its tags and status, filtered by
//! tags. A cluster being created, deleted or whose creation failed (`CREATING`, `PENDING`,
//! `DELETING`, `FAILED`, or no status) is listed as pending; an `UPDATING` cluster (often our
//! own apply) still has an API server to guard and stays a target (an update that meets
//! another in progress is a typed conflict the retry policy waits out). One attempt per call;
//! errors are typed.

use std::collections::HashMap;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_eks::Client;
use aws_sdk_eks::types::ClusterStatus;
use rangekeeper_provider::{DiscoveredTarget, Discoverer, ProviderError, TagFilter, TargetConfig};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::valid_region;
use crate::errors::map_sdk_error_on;
use crate::retry::{Tuning, bounded};

/// The template fields exactly as declared.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEksTemplate {
    regions: Vec<String>,
    #[serde(default)]
    tags: TagFilter,
    #[serde(default)]
    profile: Option<String>,
}

/// A validated EKS template.
#[derive(Debug, Clone)]
pub struct EksTemplate {
    pub name: String,
    /// Each region once, in the order written.
    pub regions: Vec<String>,
    pub tags: TagFilter,
    pub profile: Option<String>,
}

impl EksTemplate {
    /// Parse and validate a template's provider fields (no network call).
    pub fn from_config(cfg: &TargetConfig) -> Result<Self, ProviderError> {
        let raw: RawEksTemplate = cfg.parse()?;
        let bad = |msg: String| ProviderError::Config(format!("target `{}`: {msg}", cfg.name));
        if raw.regions.is_empty() {
            return Err(bad(
                "`regions` is empty: list the regions to look for clusters in (e.g. [eu-west-1])"
                    .into(),
            ));
        }
        let mut regions: Vec<String> = Vec::new();
        for r in &raw.regions {
            let region = r.trim().to_owned();
            if !valid_region(&region) {
                return Err(bad(format!(
                    "`regions`: `{r}` is not an AWS region name (expected something like `eu-west-1`)"
                )));
            }
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        raw.tags.validate().map_err(bad)?;
        let profile = match raw.profile {
            None => None,
            Some(p) if p.trim().is_empty() => {
                return Err(bad(
                    "`profile` must not be empty (omit it to use the default chain)".into(),
                ));
            }
            Some(p) => Some(p.trim().to_owned()),
        };
        Ok(EksTemplate {
            name: cfg.name.clone(),
            regions,
            tags: raw.tags,
            profile,
        })
    }

    /// The discovered target of one described cluster, or `None` when the tags filter it out.
    pub fn target_of(
        &self,
        region: &str,
        name: &str,
        status: Option<&ClusterStatus>,
        tags: Option<&HashMap<String, String>>,
    ) -> Option<DiscoveredTarget> {
        let pairs: Vec<(&str, &str)> = tags
            .map(|t| t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            .unwrap_or_default();
        if !self.tags.matches(pairs) {
            return None;
        }
        let mut fields = Map::new();
        fields.insert("region".into(), Value::String(region.to_owned()));
        fields.insert("cluster".into(), Value::String(name.to_owned()));
        if let Some(p) = &self.profile {
            fields.insert("profile".into(), Value::String(p.clone()));
        }
        let status_text = status.map_or("UNKNOWN", ClusterStatus::as_str);
        let mut t = DiscoveredTarget::new(format!("eks/{region}/{name}"), fields)
            .with_detail("region", region)
            .with_detail("status", status_text);
        if !matches!(
            status,
            Some(ClusterStatus::Active | ClusterStatus::Updating)
        ) {
            t = t.with_pending(format!(
                "status is `{status_text}`, not `ACTIVE` or `UPDATING`: looked at again on the next discovery"
            ));
        }
        Some(t)
    }
}

/// Where the discoverer's clients come from.
enum Clients {
    /// Loaded per region from the default chain (or the template's profile) on first use.
    Lazy(tokio::sync::Mutex<HashMap<String, Client>>),
    /// Given by the caller, by region (tests, embedders with their own configuration).
    Ready(HashMap<String, Client>),
}

/// Lists the clusters of one template.
pub struct EksDiscoverer {
    template: EksTemplate,
    clients: Clients,
    tuning: Tuning,
    /// Clusters asked for per ListClusters page (EKS allows 1 to 100).
    page_size: i32,
}

impl std::fmt::Debug for EksDiscoverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksDiscoverer")
            .field("template", &self.template.name)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// The most clusters one ListClusters page holds.
pub const MAX_PAGE_SIZE: i32 = 100;
/// DescribeCluster calls in flight at once per region.
const DESCRIBE_AT_ONCE: usize = 8;
/// Far more pages than any account has clusters for.
const MAX_PAGES: usize = 10_000;

impl EksDiscoverer {
    pub fn new(template: EksTemplate) -> Self {
        EksDiscoverer {
            template,
            clients: Clients::Lazy(tokio::sync::Mutex::new(HashMap::new())),
            tuning: Tuning::default(),
            page_size: MAX_PAGE_SIZE,
        }
    }

    /// A discoverer using ready clients, one per region of the template.
    pub fn with_clients(template: EksTemplate, clients: HashMap<String, Client>) -> Self {
        EksDiscoverer {
            clients: Clients::Ready(clients),
            ..EksDiscoverer::new(template)
        }
    }

    /// Ask for this many clusters per page (1 to 100; tests use small pages).
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = n.clamp(1, MAX_PAGE_SIZE);
        self
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    async fn client(&self, region: &str) -> Result<Client, ProviderError> {
        match &self.clients {
            Clients::Ready(m) => m.get(region).cloned().ok_or_else(|| {
                ProviderError::Other(format!("no EKS client was given for region `{region}`"))
            }),
            Clients::Lazy(cache) => {
                let mut cache = cache.lock().await;
                if let Some(c) = cache.get(region) {
                    return Ok(c.clone());
                }
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(Region::new(region.to_owned()));
                if let Some(profile) = &self.template.profile {
                    // The profile's credentials only, as for a declared target.
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
                            "loading the AWS configuration for region `{region}` did not finish within {:?}",
                            self.tuning.call_timeout()
                        ))
                    })?;
                let client = crate::client_from_sdk_config(&sdk, &self.tuning);
                cache.insert(region.to_owned(), client.clone());
                Ok(client)
            }
        }
    }

    /// The template's clusters in one region.
    async fn region(&self, region: &str) -> Result<Vec<DiscoveredTarget>, ProviderError> {
        let client = self.client(region).await?;
        let subject = format!("region `{region}`");
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ProviderError::Other(format!(
                    "EKS ListClusters in {subject}: more than {MAX_PAGES} pages"
                )));
            }
            let out = bounded(&self.tuning, "ListClusters", || async {
                client
                    .list_clusters()
                    .max_results(self.page_size)
                    .set_next_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| map_sdk_error_on("ListClusters", &subject, e))
            })
            .await?;
            names.extend(out.clusters().iter().cloned());
            match out.next_token() {
                Some(t) if !t.is_empty() => {
                    if token.as_deref() == Some(t) {
                        return Err(ProviderError::Other(format!(
                            "EKS ListClusters in {subject} returned the same page token twice; the listing would never end"
                        )));
                    }
                    token = Some(t.to_owned());
                }
                _ => break,
            }
        }
        // The describes, a few at a time (one attempt each; the first error fails the
        // listing, and the others are cancelled with the set).
        let mut tasks = tokio::task::JoinSet::new();
        let mut described = Vec::with_capacity(names.len());
        let mut waiting = names.into_iter();
        loop {
            while tasks.len() < DESCRIBE_AT_ONCE {
                let Some(name) = waiting.next() else { break };
                let client = client.clone();
                let tuning = self.tuning.clone();
                let subject = format!("cluster `{name}` in region `{region}`");
                tasks.spawn(async move {
                    let r = bounded(&tuning, "DescribeCluster", || async {
                        client
                            .describe_cluster()
                            .name(&name)
                            .send()
                            .await
                            .map_err(|e| map_sdk_error_on("DescribeCluster", &subject, e))
                    })
                    .await;
                    (name, r)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (name, r) = done.map_err(|e| {
                ProviderError::Other(format!(
                    "describing a cluster in region `{region}` failed: {e}"
                ))
            })?;
            match r {
                Ok(out) => {
                    if let Some(c) = out.cluster() {
                        described.push((name, c.status().cloned(), c.tags().cloned()));
                    }
                }
                // Deleted between the list and the describe: it has vanished.
                Err(ProviderError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(described
            .into_iter()
            .filter_map(|(name, status, tags)| {
                self.template
                    .target_of(region, &name, status.as_ref(), tags.as_ref())
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Discoverer for EksDiscoverer {
    async fn discover(&self) -> Result<Vec<DiscoveredTarget>, ProviderError> {
        let mut out = Vec::new();
        for region in &self.template.regions {
            out.extend(self.region(region).await?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }
}

/// Build the discoverer of one `eks` template. No network call happens here: AWS
/// configuration is loaded per region on first use.
pub fn discovery_factory(cfg: &TargetConfig) -> Result<Box<dyn Discoverer>, ProviderError> {
    Ok(Box::new(EksDiscoverer::new(EksTemplate::from_config(cfg)?)))
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

    #[test]
    fn template_fields_are_validated_offline() {
        let t = EksTemplate::from_config(&cfg(serde_json::json!({
            "regions": ["eu-west-1", "us-east-1", "eu-west-1"], "tags": {"env": "prod"}
        })))
        .unwrap();
        assert_eq!(t.regions, ["eu-west-1", "us-east-1"]);
        for (bad, says) in [
            (serde_json::json!({"regions": []}), "`regions` is empty"),
            (serde_json::json!({"regions": ["EU"]}), "`EU`"),
            (
                serde_json::json!({"region": "eu-west-1"}),
                "unknown field `region`",
            ),
            (
                serde_json::json!({"regions": ["eu-west-1"], "profile": " "}),
                "profile",
            ),
        ] {
            let e = EksTemplate::from_config(&cfg(bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_described_cluster_becomes_a_target_or_pending_or_nothing() {
        let t = EksTemplate::from_config(&cfg(serde_json::json!({
            "regions": ["eu-west-1"], "tags": {"env": ["prod", "staging"]}, "profile": "p"
        })))
        .unwrap();
        let tags: HashMap<String, String> = [("env".to_owned(), "prod".to_owned())].into();
        let d = t
            .target_of("eu-west-1", "a", Some(&ClusterStatus::Active), Some(&tags))
            .unwrap();
        assert_eq!(d.name, "eks/eu-west-1/a");
        assert_eq!(d.pending, None);
        crate::EksTarget::from_config(&TargetConfig {
            name: d.name.clone(),
            base_dir: ".".into(),
            fields: d.fields.clone(),
        })
        .expect("the fields make a valid eks target");
        let d = t
            .target_of(
                "eu-west-1",
                "a",
                Some(&ClusterStatus::Creating),
                Some(&tags),
            )
            .unwrap();
        assert!(d.pending.unwrap().contains("CREATING"));
        let dev: HashMap<String, String> = [("env".to_owned(), "dev".to_owned())].into();
        assert!(
            t.target_of("eu-west-1", "a", Some(&ClusterStatus::Active), Some(&dev))
                .is_none()
        );
        assert!(
            t.target_of("eu-west-1", "a", Some(&ClusterStatus::Active), None)
                .is_none()
        );
    }

    mod regression {
        use super::*;

        /// Our own apply puts a cluster in `UPDATING`: it must stay a target (its drift still
        /// repaired, its metrics kept), not drop out of the reconciler as pending.
        #[test]
        fn an_updating_cluster_stays_a_target() {
            let t = EksTemplate::from_config(&cfg(serde_json::json!({"regions": ["eu-west-1"]})))
                .unwrap();
            let tags = HashMap::new();
            let of = |s: ClusterStatus| t.target_of("eu-west-1", "a", Some(&s), Some(&tags));
            for s in [ClusterStatus::Active, ClusterStatus::Updating] {
                assert_eq!(of(s.clone()).unwrap().pending, None, "{s:?}");
            }
            for s in [
                ClusterStatus::Creating,
                ClusterStatus::Pending,
                ClusterStatus::Deleting,
                ClusterStatus::Failed,
            ] {
                assert!(of(s.clone()).unwrap().pending.is_some(), "{s:?}");
            }
            let none = t.target_of("eu-west-1", "a", None, Some(&tags)).unwrap();
            assert!(none.pending.is_some());
        }
    }
}
