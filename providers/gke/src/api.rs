//! A small typed client for the GKE API calls this provider makes: `clusters.get`,
//! `clusters.update`, `operations.get` and (discovery) `clusters.list`. One attempt per call,
//! every request with a timeout; Google's error bodies (`{"error": {"code", "message",
//! "status"}}`) map to typed [`ProviderError`]s so the core's retry policy can decide.

use std::sync::Arc;
use std::time::Duration;

use rangekeeper_provider::ProviderError;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::config::GkeTarget;
use crate::credential::TokenSource;

/// Per-request timeout (GKE answers a get or accepts an update within seconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest server-given retry delay we pass on; longer values are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// A cluster as read: the whole body and its etag.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub body: Value,
    pub etag: Option<String>,
}

/// A GKE Operation (`status`: PENDING, RUNNING, DONE, ABORTING).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The operation id (`operation-1733…-…`).
    pub name: String,
    pub status: String,
    /// `detail` or the progress stages, for the progress line.
    pub progress: Option<String>,
    /// Set when a DONE operation failed: (google.rpc.Code, message).
    pub error: Option<(i64, String)>,
}

impl Operation {
    pub fn is_done(&self) -> bool {
        self.status == "DONE"
    }

    fn from_json(v: &Value) -> Result<Operation, ProviderError> {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::Other(format!("GKE returned an operation without a name: {v}"))
            })?;
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("STATUS_UNSPECIFIED")
            .to_owned();
        let progress = progress_text(v);
        let error = v.get("error").filter(|e| e.is_object()).map(|e| {
            let code = e.get("code").and_then(Value::as_i64).unwrap_or(2);
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            (code, message)
        });
        // A failed operation's `statusMessage` (deprecated) when there is no `error`.
        let error = error.or_else(|| {
            v.get("statusMessage")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && status == "DONE")
                .map(|m| (2, m.to_owned()))
        });
        Ok(Operation {
            name: name.rsplit('/').next().unwrap_or(name).to_owned(),
            status,
            progress,
            error,
        })
    }
}

/// `progress.stages[].name: status` or `detail`, short.
fn progress_text(v: &Value) -> Option<String> {
    if let Some(stages) = v.pointer("/progress/stages").and_then(Value::as_array) {
        let parts: Vec<String> = stages
            .iter()
            .filter_map(|s| {
                let name = s.get("name").and_then(Value::as_str)?;
                let status = s.get("status").and_then(Value::as_str).unwrap_or("");
                Some(format!("{name} {status}").trim().to_owned())
            })
            .collect();
        if !parts.is_empty() {
            return Some(parts.join(", "));
        }
    }
    v.get("detail")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The GKE client bound to one cluster.
pub struct GkeClient {
    /// Built on first use (see [`LazyHttp`]).
    http: LazyHttp,
    base: Url,
    cluster_name: String,
    target: GkeTarget,
    tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for GkeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GkeClient")
            .field("base", &self.base.as_str())
            .field("cluster", &self.cluster_name)
            .finish_non_exhaustive()
    }
}

impl GkeClient {
    pub fn new(target: &GkeTarget, tokens: Arc<dyn TokenSource>) -> Result<Self, ProviderError> {
        Ok(GkeClient {
            http: LazyHttp::default(),
            base: target.endpoint.clone(),
            cluster_name: target.resource_name(),
            target: target.clone(),
            tokens,
        })
    }

    /// `{endpoint}/v1/{name}`
    fn url(&self, name: &str) -> Url {
        api_url(&self.base, name)
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        doing: &str,
    ) -> Result<Value, ProviderError> {
        call(&self.http, self.tokens.as_ref(), method, url, body, doing).await
    }

    /// `clusters.get`
    pub async fn get_cluster(&self) -> Result<Cluster, ProviderError> {
        let body = self
            .call(
                Method::GET,
                self.url(&self.cluster_name),
                None,
                "reading the cluster",
            )
            .await
            .map_err(|e| self.not_found_context(e))?;
        if !body.is_object() {
            return Err(ProviderError::Other(
                "the cluster is not a JSON object".into(),
            ));
        }
        let etag = body.get("etag").and_then(Value::as_str).map(str::to_owned);
        Ok(Cluster { body, etag })
    }

    /// `clusters.update` with a prepared body; returns the Operation.
    pub async fn update_cluster(&self, body: &Value) -> Result<Operation, ProviderError> {
        let v = self
            .call(
                Method::PUT,
                self.url(&self.cluster_name),
                Some(body),
                "updating the cluster's authorized networks",
            )
            .await
            .map_err(|e| self.not_found_context(e))?;
        Operation::from_json(&v)
    }

    /// `operations.get`
    pub async fn get_operation(&self, id: &str) -> Result<Operation, ProviderError> {
        if id.is_empty() || id.contains(['/', '?', '#']) || id.contains("..") {
            return Err(ProviderError::Other(format!("not an operation id: {id}")));
        }
        let v = self
            .call(
                Method::GET,
                self.url(&self.target.operation_name(id)),
                None,
                "polling the update operation",
            )
            .await?;
        Operation::from_json(&v)
    }

    fn not_found_context(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::NotFound(m) => ProviderError::NotFound(format!(
                "cluster `{}` in project `{}`, location `{}`: {m}",
                self.target.cluster, self.target.project, self.target.location
            )),
            other => other,
        }
    }
}

/// `{endpoint}/v1/{name}`
pub fn api_url(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/v1/{name}", base.path().trim_end_matches('/')));
    url
}

/// One call of the GKE API: the bearer token, the JSON body, Google's error bodies mapped to
/// typed errors. One attempt.
async fn call(
    http: &LazyHttp,
    tokens: &dyn TokenSource,
    method: Method,
    url: Url,
    body: Option<&Value>,
    doing: &str,
) -> Result<Value, ProviderError> {
    let token = tokens.token().await?;
    let mut req = http
        .get()?
        .request(method.clone(), url.clone())
        .header(AUTHORIZATION, token.header_value()?);
    if let Some(b) = body {
        let bytes = serde_json::to_vec(b)
            .map_err(|e| ProviderError::Other(format!("cannot serialize the request: {e}")))?;
        req = req.header(CONTENT_TYPE, "application/json").body(bytes);
    }
    tracing::debug!(%method, url = %url, "GKE request");
    let resp = req
        .send()
        .await
        .map_err(|e| transport_error(&method, &url, &e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.map_err(|e| {
        ProviderError::Transient(format!("{doing}: reading the answer failed: {e}"))
    })?;
    if !status.is_success() {
        return Err(google_error(status, &headers, &bytes, doing));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ProviderError::Transient(format!("{doing}: the answer is not JSON: {e}")))
}

/// A listing of the clusters of one project and location (`-`: every location), as
/// `clusters.list` answers it.
#[derive(Debug, Clone, Default)]
pub struct ClusterList {
    pub clusters: Vec<Value>,
    /// Zones or regions GKE could not reach: the list lacks their clusters.
    pub missing_zones: Vec<String>,
}

/// The client of `clusters.list`, bound to no cluster (discovery).
pub struct GkeLister {
    http: LazyHttp,
    base: Url,
    tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for GkeLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GkeLister")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl GkeLister {
    pub fn new(endpoint: Url, tokens: Arc<dyn TokenSource>) -> Self {
        GkeLister {
            http: LazyHttp::default(),
            base: endpoint,
            tokens,
        }
    }

    /// `clusters.list` of `projects/{project}/locations/{location}`: one call (the v1 API
    /// has no pages), one attempt.
    pub async fn list(&self, project: &str, location: &str) -> Result<ClusterList, ProviderError> {
        let parent = format!("projects/{project}/locations/{location}");
        let doing = format!("listing the clusters of project `{project}`, location `{location}`");
        let v = call(
            &self.http,
            self.tokens.as_ref(),
            Method::GET,
            api_url(&self.base, &format!("{parent}/clusters")),
            None,
            &doing,
        )
        .await?;
        let Some(obj) = v.as_object() else {
            return Err(ProviderError::Other(format!(
                "{doing}: the answer is not a JSON object"
            )));
        };
        let clusters = match obj.get("clusters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(ProviderError::Other(format!(
                    "{doing}: `clusters` is not a list"
                )));
            }
        };
        let missing_zones = obj
            .get("missingZones")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClusterList {
            clusters,
            missing_zones,
        })
    }
}

/// The HTTP client every call of this crate uses (rustls, timeouts, our user agent).
/// An HTTP client built on first use: building one loads the system's root certificates, a
/// cost that offline commands (`validate`) must not pay.
#[derive(Debug, Default)]
pub struct LazyHttp(std::sync::OnceLock<reqwest::Client>);

impl LazyHttp {
    pub fn get(&self) -> Result<&reqwest::Client, ProviderError> {
        if let Some(c) = self.0.get() {
            return Ok(c);
        }
        let built = http_client()?;
        Ok(self.0.get_or_init(|| built))
    }
}

pub fn http_client() -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("rangekeeper/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::Other(format!("cannot build the HTTP client: {e}")))
}

/// A connection-level failure: transient, naming the URL without its query.
pub fn transport_error(method: &Method, url: &Url, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = format!(": {s}");
        src = s.source();
    }
    let mut u = url.clone();
    u.set_query(None);
    ProviderError::Transient(format!("{method} {u} {what}{detail}"))
}

/// `Retry-After` in seconds, capped at [`MAX_RETRY_AFTER`].
pub fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// `google.rpc.RetryInfo.retryDelay` (`"12s"`, `"1.5s"`) from an error's details.
fn retry_info(error: &Value) -> Option<Duration> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .find(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })?
        .get("retryDelay")?
        .as_str()?
        .strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64())))
}

/// Map a non-success answer to a typed error by Google's canonical `status` (the HTTP status
/// when the body has none), keeping Google's message.
///
/// ABORTED (etag mismatch) and FAILED_PRECONDITION about a running operation are
/// [`ProviderError::Conflict`]: re-read and retry. RESOURCE_EXHAUSTED (429) is `Throttled`
/// with the server's delay (`Retry-After` or `RetryInfo`); UNAVAILABLE, INTERNAL,
/// DEADLINE_EXCEEDED and other 5xx are `Transient`.
pub fn google_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    doing: &str,
) -> ProviderError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .filter(|e| e.is_object());
    let canonical = error
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = match error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => String::from_utf8_lossy(body).chars().take(300).collect(),
    };
    let label = if canonical.is_empty() {
        status.to_string()
    } else {
        canonical.clone()
    };
    let text = if message.trim().is_empty() {
        format!("{doing}: HTTP {}: {label}", status.as_u16())
    } else {
        format!(
            "{doing}: HTTP {}: {label}: {}",
            status.as_u16(),
            message.trim()
        )
    };
    let throttled = |text: String| ProviderError::Throttled {
        message: text,
        retry_after: retry_after_header(headers).or_else(|| error.and_then(retry_info)),
    };
    match canonical.as_str() {
        "ABORTED" | "ALREADY_EXISTS" => ProviderError::Conflict(text),
        "FAILED_PRECONDITION" if mentions_operation(&message) => ProviderError::Conflict(text),
        "FAILED_PRECONDITION" | "INVALID_ARGUMENT" | "OUT_OF_RANGE" => ProviderError::Invalid(text),
        "NOT_FOUND" => ProviderError::NotFound(text),
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => ProviderError::Auth(text),
        "RESOURCE_EXHAUSTED" => throttled(text),
        "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" | "UNKNOWN" => {
            ProviderError::Transient(text)
        }
        _ => match status.as_u16() {
            400 | 422 => ProviderError::Invalid(text),
            401 | 403 => ProviderError::Auth(text),
            404 => ProviderError::NotFound(text),
            409 | 412 => ProviderError::Conflict(text),
            429 => throttled(text),
            408 | 500..=599 => ProviderError::Transient(text),
            _ => ProviderError::Other(text),
        },
    }
}

/// GKE's "another operation is running" wording ("Cluster is running incompatible operation
/// operation-…", "… operation … in progress").
fn mentions_operation(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("operation")
}

/// A failed Operation (DONE with `error`), by google.rpc.Code.
pub fn operation_error(code: i64, message: &str, cluster: &str) -> ProviderError {
    let text =
        format!("GKE reported the update of cluster `{cluster}` failed (code {code}): {message}");
    match code {
        10 => ProviderError::Conflict(text), // ABORTED
        9 if mentions_operation(message) => ProviderError::Conflict(text), // FAILED_PRECONDITION
        3 | 9 | 11 => ProviderError::Invalid(text), // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        1 => ProviderError::Conflict(text),         // CANCELLED (preempted)
        7 | 16 => ProviderError::Auth(text),
        8 => ProviderError::Throttled {
            message: text,
            retry_after: None,
        },
        4 | 13 | 14 => ProviderError::Transient(text),
        _ => ProviderError::Other(text),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(status: u16, canonical: &str, message: &str) -> ProviderError {
        let body = json!({"error": {"code": status, "message": message, "status": canonical}});
        google_error(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.to_string().as_bytes(),
            "doing",
        )
    }

    #[test]
    fn errors_map_by_canonical_status() {
        assert!(matches!(
            err(409, "ABORTED", "etag mismatch"),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            err(
                400,
                "FAILED_PRECONDITION",
                "Cluster is running incompatible operation operation-1."
            ),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            err(
                400,
                "FAILED_PRECONDITION",
                "Private endpoint enforcement needs a private endpoint."
            ),
            ProviderError::Invalid(_)
        ));
        assert!(matches!(
            err(400, "INVALID_ARGUMENT", "bad cidr"),
            ProviderError::Invalid(_)
        ));
        assert!(matches!(
            err(404, "NOT_FOUND", "no"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            err(403, "PERMISSION_DENIED", "no"),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            err(401, "UNAUTHENTICATED", "no"),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            err(503, "UNAVAILABLE", "later"),
            ProviderError::Transient(_)
        ));
        assert!(matches!(
            err(500, "INTERNAL", "oops"),
            ProviderError::Transient(_)
        ));
        let e = err(400, "INVALID_ARGUMENT", "bad cidr");
        assert!(e.to_string().contains("INVALID_ARGUMENT: bad cidr"), "{e}");
        // No Google body: by HTTP status.
        let e = google_error(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>", "x");
        assert!(matches!(e, ProviderError::Transient(_)));
    }

    #[test]
    fn throttling_carries_the_server_delay() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let body =
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}});
        match google_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            body.to_string().as_bytes(),
            "x",
        ) {
            ProviderError::Throttled { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}]}});
        match google_error(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            body.to_string().as_bytes(),
            "x",
        ) {
            ProviderError::Throttled { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_millis(2500)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operations_parse() {
        let op = Operation::from_json(&json!({"name": "operation-1", "status": "RUNNING",
            "progress": {"stages": [{"name": "Updating", "status": "RUNNING"}]}}))
        .unwrap();
        assert_eq!(op.progress.as_deref(), Some("Updating RUNNING"));
        assert!(!op.is_done());
        let op = Operation::from_json(
            &json!({"name": "projects/p/locations/l/operations/operation-2",
            "status": "DONE", "error": {"code": 3, "message": "bad"}}),
        )
        .unwrap();
        assert_eq!(op.name, "operation-2");
        assert_eq!(op.error, Some((3, "bad".into())));
        assert!(Operation::from_json(&json!({"status": "DONE"})).is_err());
        assert!(matches!(
            operation_error(10, "etag", "c"),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            operation_error(3, "bad", "c"),
            ProviderError::Invalid(_)
        ));
    }
}
