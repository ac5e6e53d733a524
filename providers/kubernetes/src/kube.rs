//! The connection to one cluster's API server and the few calls the providers make: get,
//! list, server-side apply (optionally as a dry run) and delete, each one attempt with typed
//! errors. Requests go through kube-rs's client (kubeconfig contexts, in-cluster service
//! accounts, exec credential plugins, token refresh); answers are read here, status and
//! headers included, so a 429's `Retry-After` and a 403's RBAC verb reach the error.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::BodyExt;
use rangekeeper_provider::{ProviderError, error_chain, retry_after_secs};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OnceCell;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "rangekeeper";
/// The label every object rangekeeper writes carries (with value [`MANAGED_BY_VALUE`]).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "rangekeeper";
/// The annotation naming the declaration target an object belongs to.
pub const TARGET_ANNOTATION: &str = "rangekeeper.dev/target";

/// How long one request may take (connect, then the answer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a target's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig (`kubeconfig:` of the target, else `$KUBECONFIG`, else `~/.kube/config`)
    /// and a context in it (`context:`, else its current context).
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
    /// The pod's service account (`inCluster: true`).
    InCluster,
}

/// A resource type: its API group and version, plural, kind and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `networkpolicies.networking.k8s.io`, as RBAC rules and messages name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// The collection path (in `namespace` for a namespaced type).
    pub fn collection(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    pub fn object(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection(namespace))
    }

    /// `NetworkPolicy web/allow-office`, `GlobalNetworkPolicy allow-office`.
    pub fn describe(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{} `{ns}/{name}`", self.kind),
            _ => format!("{} `{name}`", self.kind),
        }
    }
}

/// A lazily connected client for one target (the factory makes no network call and reads
/// no file; the first call does).
pub struct Cluster {
    target: String,
    source: Source,
    client: OnceCell<kube::Client>,
}

/// What an API call answered when it was not a success.
struct Failure {
    status: u16,
    retry_after: Option<Duration>,
    body: Status,
}

/// The parts of a `metav1.Status` the error messages use.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub details: Option<StatusDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetails {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub causes: Vec<Cause>,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cause {
    /// The cause's type (`FieldManagerConflict`); `reason` on the wire.
    #[serde(default, rename = "reason")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub field: String,
}

/// The result of a server-side apply that the server refused for field conflicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts {
    /// `(manager, field)` pairs, in the server's order.
    pub fields: Vec<(String, String)>,
}

impl Conflicts {
    /// The managers named, each once.
    pub fn managers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (m, _) in &self.fields {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }
}

/// What an apply answered: the object, or the field conflicts that refused it.
pub enum Applied {
    Object(Value),
    Conflicts(Conflicts),
}

/// The verb of a call, for RBAC hints.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Get,
    List,
    Patch,
    Delete,
}

impl Verb {
    fn rbac(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            // Server-side apply creates missing objects, so both are needed.
            Verb::Patch => "create` and `patch",
            Verb::Delete => "delete",
        }
    }
}

impl Cluster {
    pub fn new(target: &str, source: Source) -> Self {
        Cluster {
            target: target.to_owned(),
            source,
            client: OnceCell::new(),
        }
    }

    /// A cluster reached through an already configured client (tests).
    pub fn with_client(target: &str, client: kube::Client) -> Self {
        Cluster {
            target: target.to_owned(),
            source: Source::InCluster,
            client: OnceCell::new_with(Some(client)),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> Result<&kube::Client, ProviderError> {
        self.client.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<kube::Client, ProviderError> {
        let t = &self.target;
        let mut config = match &self.source {
            Source::InCluster => kube::Config::incluster().map_err(|e| {
                ProviderError::Config(format!(
                    "target `{t}`: `inCluster: true`, but this is not a pod with a service account ({}); run rangekeeper in the cluster, or give `kubeconfig:`/`context:` instead",
                    error_chain(&e)
                ))
            })?,
            Source::Kubeconfig { path, context } => {
                let kc = match path {
                    Some(p) => kube::config::Kubeconfig::read_from(p).map_err(|e| {
                        ProviderError::Config(format!(
                            "target `{t}`: cannot read the kubeconfig `{}`: {}",
                            p.display(),
                            error_chain(&e)
                        ))
                    })?,
                    None => match kube::config::Kubeconfig::read() {
                        Ok(kc) => kc,
                        Err(e) if context.is_none() => {
                            // No kubeconfig at all: a pod's service account, as kubectl does.
                            return self.in_cluster_fallback(&e);
                        }
                        Err(e) => {
                            return Err(ProviderError::Config(format!(
                                "target `{t}`: cannot read a kubeconfig ($KUBECONFIG or ~/.kube/config): {}; set `kubeconfig:` on the target",
                                error_chain(&e)
                            )));
                        }
                    },
                };
                if let Some(c) = context
                    && !kc.contexts.iter().any(|n| &n.name == c)
                {
                        let names: Vec<&str> = kc.contexts.iter().map(|n| n.name.as_str()).collect();
                        return Err(ProviderError::Config(format!(
                            "target `{t}`: the kubeconfig has no context `{c}`{}; its contexts: {}",
                            rangekeeper_provider::hint::did_you_mean(c, names.iter().copied()),
                            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                        )));
                    }
                let opts = kube::config::KubeConfigOptions {
                    context: context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| {
                        ProviderError::Config(format!(
                            "target `{t}`: the kubeconfig cannot be used: {}",
                            error_chain(&e)
                        ))
                    })?
            }
        };
        settle(&mut config);
        kube::Client::try_from(config).map_err(|e| client_error(t, &e))
    }

    fn in_cluster_fallback(
        &self,
        kubeconfig_error: &(dyn std::error::Error + 'static),
    ) -> Result<kube::Client, ProviderError> {
        let t = &self.target;
        let mut config = kube::Config::incluster().map_err(|_| {
            ProviderError::Config(format!(
                "target `{t}`: no kubeconfig ($KUBECONFIG, ~/.kube/config: {}) and not running in a pod; set `kubeconfig:` (and `context:`) on the target",
                error_chain(kubeconfig_error)
            ))
        })?;
        settle(&mut config);
        kube::Client::try_from(config).map_err(|e| client_error(t, &e))
    }

    /// One request; `Ok(Err(failure))` for an answer that is not a success.
    async fn send(
        &self,
        method: http::Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Result<Vec<u8>, Failure>, ProviderError> {
        let client = self.client().await?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, "application/json");
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(kube::client::Body::from(body))
            .map_err(|e| ProviderError::Other(format!("cannot build a request: {e}")))?;
        let resp = client.send(req).await.map_err(|e| self.transport(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(retry_after_secs);
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                ProviderError::Transient(format!(
                    "target `{}`: the API server's answer broke off: {}",
                    self.target,
                    error_chain(&e)
                ))
            })?
            .to_bytes()
            .to_vec();
        if (200..300).contains(&status) {
            return Ok(Ok(bytes));
        }
        let body = serde_json::from_slice::<Status>(&bytes).unwrap_or_else(|_| Status {
            message: String::from_utf8_lossy(&bytes)
                .trim()
                .chars()
                .take(300)
                .collect(),
            ..Status::default()
        });
        let retry_after = retry_after.or_else(|| {
            body.details
                .as_ref()
                .and_then(|d| d.retry_after_seconds)
                .map(retry_after_secs)
        });
        Ok(Err(Failure {
            status,
            retry_after,
            body,
        }))
    }

    /// A request that never reached an answer.
    fn transport(&self, e: &kube::Error) -> ProviderError {
        let t = &self.target;
        match e {
            kube::Error::Auth(_) => ProviderError::Auth(format!(
                "target `{t}`: cannot get credentials for the API server: {}; check the kubeconfig's user (an exec plugin must be on PATH and logged in)",
                error_chain(e)
            )),
            _ => ProviderError::Transient(format!(
                "target `{t}`: cannot reach the API server: {}",
                error_chain(e)
            )),
        }
    }

    /// The typed error of an answer that is not a success (404s are the caller's to read
    /// first).
    fn failure(&self, f: Failure, verb: Verb, res: &Resource, ns: Option<&str>) -> ProviderError {
        let t = &self.target;
        let msg = if f.body.message.is_empty() {
            format!("HTTP {}", f.status)
        } else {
            f.body.message.clone()
        };
        match f.status {
            401 => ProviderError::Auth(format!(
                "target `{t}`: the API server did not accept the credentials ({msg}); renew them or fix the kubeconfig's user"
            )),
            403 => {
                let scope = match ns {
                    Some(ns) if res.namespaced => format!("a Role in namespace `{ns}`"),
                    _ => "a ClusterRole".to_owned(),
                };
                ProviderError::Auth(format!(
                    "target `{t}`: forbidden: {msg}; grant `{}` on `{}` to this user with {scope} and a binding (examples/kubernetes/rbac.yaml lists every rule rangekeeper needs)",
                    verb.rbac(),
                    res.qualified()
                ))
            }
            404 => self.missing_type(res, ns, &msg),
            409 => ProviderError::Conflict(format!("target `{t}`: {msg}")),
            429 => ProviderError::Throttled {
                message: format!("target `{t}`: the API server asks to slow down: {msg}"),
                retry_after: f.retry_after,
            },
            400 | 422 => {
                let causes: Vec<String> = f
                    .body
                    .details
                    .map(|d| d.causes)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| !msg.contains(&c.message))
                    .map(|c| {
                        if c.field.is_empty() {
                            c.message
                        } else {
                            format!("{}: {}", c.field, c.message)
                        }
                    })
                    .collect();
                let extra = if causes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", causes.join("; "))
                };
                ProviderError::Invalid(format!(
                    "target `{t}`: the API server rejected {}: {msg}{extra}",
                    res.kind
                ))
            }
            s if s >= 500 => ProviderError::Transient(format!(
                "target `{t}`: the API server failed (HTTP {s}): {msg}"
            )),
            s => ProviderError::Other(format!("target `{t}`: HTTP {s} from the API server: {msg}")),
        }
    }

    /// A 404 that is not about one object: the namespace or the resource type is missing.
    fn missing_type(&self, res: &Resource, ns: Option<&str>, msg: &str) -> ProviderError {
        let t = &self.target;
        if res.group.contains("projectcalico.org") {
            let other = if res.group == "projectcalico.org" {
                "; if the cluster has only Calico's CRDs (no Calico API server), set `apiGroup: crd.projectcalico.org/v1`"
            } else {
                ""
            };
            return ProviderError::Config(format!(
                "target `{t}`: the cluster does not serve `{}` ({} in {}): Calico is not installed{other}",
                res.qualified(),
                res.kind,
                res.api_version()
            ));
        }
        match ns {
            Some(ns) if res.namespaced => ProviderError::Config(format!(
                "target `{t}`: namespace `{ns}` does not exist ({msg}); create it first or fix `namespace:`"
            )),
            _ => ProviderError::Config(format!(
                "target `{t}`: the cluster does not serve `{}` in {} ({msg})",
                res.qualified(),
                res.api_version()
            )),
        }
    }

    /// GET one object; `None` when it does not exist. A missing resource type (CRD) is an
    /// error.
    pub async fn get(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ProviderError> {
        let path = res.object(ns, name);
        match self
            .send(http::Method::GET, &path, None, Vec::new())
            .await?
        {
            Ok(bytes) => self.json(&bytes).map(Some),
            Err(f) if f.status == 404 && is_object_404(&f.body, name) => Ok(None),
            Err(f) => Err(self.failure(f, Verb::Get, res, ns)),
        }
    }

    /// LIST the objects of a type carrying a label selector (`""`: every object).
    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<Value>, ProviderError> {
        let mut path = res.collection(ns);
        if !label_selector.is_empty() {
            path.push_str("?labelSelector=");
            path.push_str(&encode(label_selector));
        }
        match self
            .send(http::Method::GET, &path, None, Vec::new())
            .await?
        {
            Ok(bytes) => {
                let v = self.json(&bytes)?;
                Ok(match v.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => Vec::new(),
                })
            }
            Err(f) => Err(self.failure(f, Verb::List, res, ns)),
        }
    }

    /// Server-side apply of `obj` with field manager `rangekeeper`. Field conflicts come
    /// back as [`Applied::Conflicts`] for the caller to judge.
    pub async fn apply(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
        force: bool,
        dry_run: bool,
    ) -> Result<Applied, ProviderError> {
        let mut path = format!(
            "{}?fieldManager={FIELD_MANAGER}&fieldValidation=Strict",
            res.object(ns, name)
        );
        if force {
            path.push_str("&force=true");
        }
        if dry_run {
            path.push_str("&dryRun=All");
        }
        let body = serde_json::to_vec(obj)
            .map_err(|e| ProviderError::Other(format!("cannot encode {}: {e}", res.kind)))?;
        match self
            .send(
                http::Method::PATCH,
                &path,
                Some("application/apply-patch+yaml"),
                body,
            )
            .await?
        {
            Ok(bytes) => self.json(&bytes).map(Applied::Object),
            Err(f) if f.status == 409 && f.body.reason == "Conflict" => {
                let fields = conflicts(&f.body);
                if fields.is_empty() {
                    Err(self.failure(f, Verb::Patch, res, ns))
                } else {
                    Ok(Applied::Conflicts(Conflicts { fields }))
                }
            }
            Err(f) => Err(self.failure(f, Verb::Patch, res, ns)),
        }
    }

    /// DELETE one object, only if it is still the one read (`uid`). Gone already is fine.
    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        uid: &str,
    ) -> Result<(), ProviderError> {
        let body = serde_json::json!({
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid},
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| ProviderError::Other(format!("cannot encode DeleteOptions: {e}")))?;
        match self
            .send(
                http::Method::DELETE,
                &res.object(ns, name),
                Some("application/json"),
                body,
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(f) if f.status == 404 && is_object_404(&f.body, name) => Ok(()),
            Err(f) => Err(self.failure(f, Verb::Delete, res, ns)),
        }
    }

    fn json(&self, bytes: &[u8]) -> Result<Value, ProviderError> {
        serde_json::from_slice(bytes).map_err(|e| {
            ProviderError::Transient(format!(
                "target `{}`: the API server answered something that is not JSON: {e}",
                self.target
            ))
        })
    }
}

/// Why a client could not be set up: its credentials (an exec plugin that failed, a token
/// file missing) or its configuration.
fn client_error(t: &str, e: &kube::Error) -> ProviderError {
    match e {
        kube::Error::Auth(_) => ProviderError::Auth(format!(
            "target `{t}`: cannot get credentials for the API server: {}; check the kubeconfig's user (an exec plugin must be on PATH and logged in)",
            error_chain(e)
        )),
        _ => ProviderError::Config(format!(
            "target `{t}`: cannot set up the Kubernetes client: {}",
            error_chain(e)
        )),
    }
}

/// One attempt per call, bounded: kube-rs retries 429/503/504 itself by default (up to 15
/// times, waiting as long as `Retry-After` says); rangekeeper's retry policy is the one owner
/// of retries, so that is switched off here.
fn settle(config: &mut kube::Config) {
    config.default_retry = false;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(READ_TIMEOUT);
}

/// Whether a 404 says the object itself does not exist (its Status names it), as opposed to
/// a missing namespace or resource type.
fn is_object_404(s: &Status, name: &str) -> bool {
    s.reason == "NotFound" && s.details.as_ref().is_some_and(|d| d.name == name)
}

/// `(manager, field)` of each field conflict of a 409 (causes like `conflict with
/// "kubectl-edit" using networking.k8s.io/v1` at `.spec.ingress`).
fn conflicts(s: &Status) -> Vec<(String, String)> {
    let Some(d) = &s.details else {
        return Vec::new();
    };
    d.causes
        .iter()
        .filter(|c| c.kind == "FieldManagerConflict")
        .map(|c| {
            let manager = c
                .message
                .split('"')
                .nth(1)
                .unwrap_or(c.message.as_str())
                .to_owned();
            (manager, c.field.clone())
        })
        .collect()
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether an object carries rangekeeper's label, and the target its annotation names.
pub fn ownership(obj: &Value) -> (bool, Option<String>) {
    let meta = &obj["metadata"];
    let managed = meta["labels"][MANAGED_BY].as_str() == Some(MANAGED_BY_VALUE);
    let target = meta["annotations"][TARGET_ANNOTATION]
        .as_str()
        .map(str::to_owned);
    (managed, target)
}

/// The managers of an object's fields and how they last wrote (`Apply` or `Update`).
pub fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["manager"].as_str().unwrap_or_default().to_owned(),
                        m["operation"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_conflicts_name_their_managers() {
        let s: Status = serde_json::from_value(serde_json::json!({
            "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"argocd\" using networking.k8s.io/v1: .spec.ingress",
            "details": {"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"argocd\" using networking.k8s.io/v1",
                "field": ".spec.ingress"
            }]}
        }))
        .unwrap();
        assert_eq!(
            conflicts(&s),
            vec![("argocd".to_owned(), ".spec.ingress".to_owned())]
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("app.kubernetes.io/managed-by=rangekeeper"),
            "app.kubernetes.io%2Fmanaged-by%3Drangekeeper"
        );
    }
}
