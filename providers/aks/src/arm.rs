//! A small typed Azure Resource Manager client for the calls this provider makes: GET and
//! PUT of a managed cluster, polling a long-running operation, GET of a public IP.
//! Every request carries a timeout; errors map to [`ProviderError`] by status and ARM code.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rangekeeper_provider::ProviderError;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, IF_MATCH};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::config::{AksTarget, PUBLIC_IP_API_VERSION};
use crate::credential::{BearerToken, TokenSource};

/// Per-request timeout (ARM answers a GET or the acceptance of a PUT within seconds).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest Retry-After passed on; longer values (up to any number of digits) are capped, so
/// nothing overflows. The binary's retry policy decides what to do with it.
pub const MAX_RETRY_AFTER: Duration = rangekeeper_provider::MAX_RETRY_AFTER;

/// A resource as read: the whole JSON body (field order and unknown fields preserved) and
/// its eTag.
#[derive(Debug, Clone)]
pub struct Resource {
    pub body: Value,
    pub etag: Option<String>,
    /// `x-ms-ratelimit-remaining-subscription-reads`: the reads of the subscription's quota
    /// ARM says are left (absent when it did not say).
    pub remaining_reads: Option<u64>,
}

/// The answer to an accepted PUT.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub status: StatusCode,
    pub async_operation: Option<Url>,
    pub location: Option<Url>,
    pub retry_after: Option<Duration>,
    pub body: Option<Value>,
}

/// One poll of a long-running operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStatus {
    Running { status: String },
    Succeeded,
    Failed { code: String, message: String },
    Canceled { code: String, message: String },
}

/// An answer to a poll: its status and the server's Retry-After.
#[derive(Debug, Clone)]
pub struct Poll {
    pub status: PollStatus,
    pub retry_after: Option<Duration>,
}

/// The HTTP client of every [`ArmClient`] in the process, built on first use: building one
/// loads the system's root certificates (a walk of the certificate directory and parsing
/// every certificate, about 20 ms of CPU), a cost that offline commands (`validate`) must
/// not pay at all and that a fleet must pay once, not once per target. Sharing it also shares
/// its connection pool, so the targets of one ARM endpoint reuse connections instead of each
/// opening its own (a TLS handshake per target). Nothing in it is per target: the token is a
/// header of each request, the endpoint part of each URL.
static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();

/// The ARM client bound to one cluster.
pub struct ArmClient {
    base: Url,
    cluster_path: String,
    api_version: String,
    scope: String,
    tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("base", &self.base.as_str())
            .field("cluster_path", &self.cluster_path)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    pub fn new(target: &AksTarget, tokens: Arc<dyn TokenSource>) -> Result<Self, ProviderError> {
        Ok(ArmClient {
            base: target.arm_endpoint.clone(),
            cluster_path: target.resource_id(),
            api_version: target.api_version.clone(),
            scope: target.token_scope(),
            tokens,
        })
    }

    /// A client for listings (no cluster of its own): `base` is the ARM endpoint,
    /// `api_version` the managedClusters api-version, `scope` the token scope.
    pub fn for_listing(
        base: Url,
        api_version: &str,
        scope: String,
        tokens: Arc<dyn TokenSource>,
    ) -> ArmClient {
        ArmClient {
            base,
            cluster_path: String::new(),
            api_version: api_version.to_owned(),
            scope,
            tokens,
        }
    }

    /// Every item of an ARM list operation at `path` (`{"value": [...], "nextLink": url}`),
    /// following `nextLink` to the last page. One attempt: a page that fails fails the whole
    /// listing (the caller keeps its last good list). A `nextLink` must stay on the same ARM
    /// endpoint (the token goes nowhere else), and a link seen before ends the listing with
    /// an error instead of looping.
    pub async fn list(&self, path: &str, what: &str) -> Result<Vec<Value>, ProviderError> {
        /// Far more pages than any subscription has (ARM pages hold up to 1000 items).
        const MAX_PAGES: usize = 10_000;
        let mut url = self.url(path, &self.api_version)?;
        let mut seen = std::collections::HashSet::new();
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let doing = format!("listing {what} (page {page})");
            let (body, _) = self.get_json(url.clone(), &doing, "the list page").await?;
            match body.get("value") {
                Some(Value::Array(values)) => items.extend(values.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(ProviderError::Other(format!(
                        "{doing}: `value` is not a list"
                    )));
                }
            }
            let next = match body.get("nextLink") {
                None | Some(Value::Null) => return Ok(items),
                Some(Value::String(s)) if s.is_empty() => return Ok(items),
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(ProviderError::Other(format!(
                        "{doing}: `nextLink` is not a URL"
                    )));
                }
            };
            let next = Url::parse(next).map_err(|e| {
                ProviderError::Other(format!("{doing}: `nextLink` is not a URL: {e}"))
            })?;
            self.check_same_origin(&next)?;
            if !seen.insert(next.to_string()) {
                return Err(ProviderError::Other(format!(
                    "{doing}: ARM returned a `nextLink` it had returned before; the listing would never end"
                )));
            }
            url = next;
        }
        Err(ProviderError::Other(format!(
            "listing {what}: more than {MAX_PAGES} pages"
        )))
    }

    /// The HTTP client, built on first use.
    fn http(&self) -> Result<&'static reqwest::Client, ProviderError> {
        if let Some(c) = HTTP.get() {
            return Ok(c);
        }
        let built = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("rangekeeper/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(HTTP.get_or_init(|| built))
    }

    /// `{arm}{path}?api-version=...`
    fn url(&self, path: &str, api_version: &str) -> Result<Url, ProviderError> {
        let mut url = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.query_pairs_mut()
            .clear()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// A URL the server handed us (Azure-AsyncOperation, Location) must point at the same
    /// ARM endpoint: our bearer token goes nowhere else.
    fn check_same_origin(&self, url: &Url) -> Result<(), ProviderError> {
        if url.origin() == self.base.origin() {
            Ok(())
        } else {
            Err(ProviderError::Other(format!(
                "ARM returned a URL (to poll or of a next page) on another host ({}); refusing to send credentials there",
                url.origin().ascii_serialization()
            )))
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<(reqwest::Response, BearerToken), ProviderError> {
        let token = self.tokens.token(&self.scope).await?;
        let mut req = self
            .http()?
            .request(method.clone(), url.clone())
            .header(AUTHORIZATION, token.header_value()?);
        if let Some(etag) = if_match {
            req = req.header(IF_MATCH, etag);
        }
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b)
                .map_err(|e| ProviderError::Other(format!("cannot serialize the request: {e}")))?;
            req = req.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        tracing::debug!(%method, url = %url, "ARM request");
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&method, &url, &e))?;
        Ok((resp, token))
    }

    /// GET a JSON document and its headers. A non-success answer maps through
    /// [`status_error`] (`doing` says what we were doing); a body that is not JSON is
    /// transient (`what` names the document).
    async fn get_json(
        &self,
        url: Url,
        doing: &str,
        what: &str,
    ) -> Result<(Value, HeaderMap), ProviderError> {
        let resp = self.send(Method::GET, url, None, None).await?;
        let (status, headers, body) = read(resp).await?;
        if !status.is_success() {
            return Err(status_error(status, &headers, &body, doing));
        }
        let v = serde_json::from_slice(&body)
            .map_err(|e| ProviderError::Transient(format!("{what} is not valid JSON: {e}")))?;
        Ok((v, headers))
    }

    /// GET the managed cluster.
    pub async fn get_cluster(&self) -> Result<Resource, ProviderError> {
        let url = self.url(&self.cluster_path, &self.api_version)?;
        let (body, headers) = self
            .get_json(url, "reading the managed cluster", "the managed cluster")
            .await?;
        if !body.is_object() {
            return Err(ProviderError::Other(
                "the managed cluster body is not a JSON object".into(),
            ));
        }
        let etag = body
            .get("eTag")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| header_str(&headers, "etag"));
        let remaining_reads = remaining_reads(&headers);
        Ok(Resource {
            body,
            etag,
            remaining_reads,
        })
    }

    /// PUT the whole managed cluster, guarded by `If-Match` when an eTag is known.
    pub async fn put_cluster(
        &self,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Accepted, ProviderError> {
        let url = self.url(&self.cluster_path, &self.api_version)?;
        let resp = self.send(Method::PUT, url, Some(body), etag).await?;
        let (status, headers, bytes) = read(resp).await?;
        if !status.is_success() {
            return Err(status_error(
                status,
                &headers,
                &bytes,
                "updating the managed cluster",
            ));
        }
        let async_operation = self.header_url(&headers, "azure-asyncoperation")?;
        let location = self.header_url(&headers, "location")?;
        Ok(Accepted {
            status,
            async_operation,
            location,
            retry_after: retry_after(&headers),
            body: serde_json::from_slice(&bytes).ok(),
        })
    }

    fn header_url(&self, headers: &HeaderMap, name: &str) -> Result<Option<Url>, ProviderError> {
        let Some(text) = header_str(headers, name) else {
            return Ok(None);
        };
        let url = self.base.join(&text).map_err(|e| {
            ProviderError::Other(format!("ARM returned an invalid {name} header: {e}"))
        })?;
        self.check_same_origin(&url)?;
        Ok(Some(url))
    }

    /// Poll an `Azure-AsyncOperation` URL: `{"status": "InProgress" | "Succeeded" | ...}`.
    pub async fn poll_async_operation(&self, url: &Url) -> Result<Poll, ProviderError> {
        self.check_same_origin(url)?;
        let (v, headers) = self
            .get_json(url.clone(), "polling the operation", "the operation status")
            .await?;
        let s = v
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let (code, message) = error_fields(&v);
        let status = match s.to_ascii_lowercase().as_str() {
            "succeeded" => PollStatus::Succeeded,
            "failed" => PollStatus::Failed { code, message },
            "canceled" | "cancelled" => PollStatus::Canceled { code, message },
            _ => PollStatus::Running { status: s },
        };
        Ok(Poll {
            status,
            retry_after: retry_after(&headers),
        })
    }

    /// Poll a `Location` URL: 202 while running, 200/204 when done, an error status on failure.
    pub async fn poll_location(&self, url: &Url) -> Result<Poll, ProviderError> {
        self.check_same_origin(url)?;
        let resp = self.send(Method::GET, url.clone(), None, None).await?;
        let (status, headers, body) = read(resp).await?;
        let retry = retry_after(&headers);
        if status == StatusCode::ACCEPTED {
            return Ok(Poll {
                status: PollStatus::Running {
                    status: "Accepted".into(),
                },
                retry_after: retry,
            });
        }
        if status.is_success() {
            return Ok(Poll {
                status: PollStatus::Succeeded,
                retry_after: retry,
            });
        }
        let err = status_error(status, &headers, &body, "the operation");
        match err {
            ProviderError::Invalid(_) | ProviderError::Other(_) => {
                let (code, message) = serde_json::from_slice::<Value>(&body)
                    .map(|v| error_fields(&v))
                    .unwrap_or_else(|_| {
                        (
                            status.as_str().to_owned(),
                            String::from_utf8_lossy(&body).into_owned(),
                        )
                    });
                Ok(Poll {
                    status: PollStatus::Failed { code, message },
                    retry_after: retry,
                })
            }
            other => Err(other),
        }
    }

    /// The address of a public IP resource (`None` while a dynamic address is unassigned).
    pub async fn get_public_ip(&self, resource_id: &str) -> Result<Option<IpAddr>, ProviderError> {
        if !resource_id.starts_with('/')
            || resource_id.contains(['?', '#'])
            || resource_id.contains("..")
        {
            return Err(ProviderError::Other(format!(
                "not an ARM resource id: {resource_id}"
            )));
        }
        let url = self.url(resource_id, PUBLIC_IP_API_VERSION)?;
        let doing = format!("reading the public IP {resource_id}");
        let (v, _) = self.get_json(url, &doing, "the public IP").await?;
        match v.pointer("/properties/ipAddress").and_then(Value::as_str) {
            None => Ok(None),
            Some(s) => s.parse::<IpAddr>().map(Some).map_err(|_| {
                ProviderError::Other(format!(
                    "public IP {resource_id} has an invalid ipAddress `{s}`"
                ))
            }),
        }
    }
}

/// Read an answer. The body of a failed request is scrubbed of the token it was sent with
/// (and of anything shaped like a bearer token): some servers echo the request in errors.
async fn read(
    (resp, token): (reqwest::Response, BearerToken),
) -> Result<(StatusCode, HeaderMap, Vec<u8>), ProviderError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let url = resp.url().clone();
    let body = resp.bytes().await.map_err(|e| {
        ProviderError::Transient(format!(
            "reading the answer from {}: {e}",
            strip_query(&url)
        ))
    })?;
    if status.is_success() {
        Ok((status, headers, body.to_vec()))
    } else {
        let text = token.scrub(&String::from_utf8_lossy(&body));
        Ok((status, headers, text.into_bytes()))
    }
}

fn strip_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn transport_error(method: &Method, url: &Url, e: &reqwest::Error) -> ProviderError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    // `without_url`: the error text should name the host once, through us, without query.
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    ProviderError::Transient(format!("{method} {} {what}{detail}", strip_query(url)))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// ARM's `x-ms-ratelimit-remaining-subscription-reads`: how many reads the subscription's
/// quota has left for the caller (a whole number; anything else is ignored).
pub fn remaining_reads(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "x-ms-ratelimit-remaining-subscription-reads")?
        .parse()
        .ok()
}

/// `Retry-After` in seconds (the form ARM uses), capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = header_str(headers, "retry-after")?;
    let s = raw.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: a number too large for u64 is as good as u64::MAX.
    Some(rangekeeper_provider::retry_after_secs(
        s.parse::<u64>().unwrap_or(u64::MAX),
    ))
}

/// `{"error": {"code", "message"}}` (also accepts the fields at the top level).
fn error_fields(v: &Value) -> (String, String) {
    let e = v.get("error").unwrap_or(v);
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    (code, message)
}

/// Map a non-success ARM answer to a typed error, keeping Azure's own code and message.
pub fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    doing: &str,
) -> ProviderError {
    let (code, message) = match serde_json::from_slice::<Value>(body) {
        Ok(v) => error_fields(&v),
        Err(_) => (
            String::new(),
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    };
    let code = if code.is_empty() {
        status.to_string()
    } else {
        code
    };
    let text = if message.is_empty() {
        format!("{doing}: HTTP {}: {code}", status.as_u16())
    } else {
        format!("{doing}: HTTP {}: {code}: {message}", status.as_u16())
    };
    match status.as_u16() {
        400 | 422 => ProviderError::Invalid(text),
        401 | 403 => ProviderError::Auth(text),
        404 => ProviderError::NotFound(text),
        409 | 412 => ProviderError::Conflict(text),
        429 => ProviderError::Throttled {
            message: text,
            retry_after: retry_after(headers),
        },
        408 | 500..=599 => ProviderError::Transient(text),
        _ => ProviderError::Other(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::StaticToken;

    fn client_for(cluster: &str) -> ArmClient {
        let target = crate::AksTarget::from_config(&rangekeeper_provider::TargetConfig {
            name: cluster.into(),
            base_dir: ".".into(),
            fields: serde_json::json!({
                "subscription": "00000000-0000-0000-0000-000000000000",
                "resourceGroup": "rg",
                "cluster": cluster,
            })
            .as_object()
            .unwrap()
            .clone(),
        })
        .unwrap();
        ArmClient::new(&target, Arc::new(StaticToken::new(BearerToken::new("t")))).unwrap()
    }

    #[test]
    fn every_cluster_shares_one_http_client() {
        // Building a client loads the root certificates: a fleet pays that once, and its
        // targets share one connection pool.
        let (a, b) = (client_for("a"), client_for("b"));
        assert!(std::ptr::eq(a.http().unwrap(), b.http().unwrap()));
    }

    #[test]
    fn polling_urls_must_stay_on_the_arm_endpoint() {
        let target = crate::AksTarget::from_config(&rangekeeper_provider::TargetConfig {
            name: "t".into(),
            base_dir: ".".into(),
            fields: serde_json::json!({
                "subscription": "00000000-0000-0000-0000-000000000000",
                "resourceGroup": "rg",
                "cluster": "c",
            })
            .as_object()
            .unwrap()
            .clone(),
        })
        .unwrap();
        let c = ArmClient::new(&target, Arc::new(StaticToken::new(BearerToken::new("t")))).unwrap();
        let mut h = HeaderMap::new();
        h.insert("azure-asyncoperation", "https://management.azure.com/subscriptions/x/providers/Microsoft.ContainerService/locations/l/operations/1?api-version=2016-03-30".parse().unwrap());
        assert!(c.header_url(&h, "azure-asyncoperation").unwrap().is_some());
        h.insert(
            "azure-asyncoperation",
            "https://evil.example/steal".parse().unwrap(),
        );
        assert!(c.header_url(&h, "azure-asyncoperation").is_err());
        h.insert(
            "azure-asyncoperation",
            "http://management.azure.com/x".parse().unwrap(),
        );
        assert!(c.header_url(&h, "azure-asyncoperation").is_err());
        assert_eq!(
            c.url("/subscriptions/s/x", "2026-08-01").unwrap().as_str(),
            "https://management.azure.com/subscriptions/s/x?api-version=2026-08-01"
        );
    }

    #[test]
    fn maps_statuses() {
        let body = br#"{"error":{"code":"OperationNotAllowed","message":"Another operation (Updating) is in progress"}}"#;
        let h = HeaderMap::new();
        let e = status_error(StatusCode::CONFLICT, &h, body, "x");
        assert!(matches!(e, ProviderError::Conflict(_)));
        assert!(
            e.to_string()
                .contains("OperationNotAllowed: Another operation"),
            "{e}"
        );
        assert!(matches!(
            status_error(StatusCode::PRECONDITION_FAILED, &h, b"", "x"),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_REQUEST, &h, body, "x"),
            ProviderError::Invalid(_)
        ));
        assert!(matches!(
            status_error(StatusCode::FORBIDDEN, &h, body, "x"),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            status_error(StatusCode::UNAUTHORIZED, &h, body, "x"),
            ProviderError::Auth(_)
        ));
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, &h, body, "x"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, &h, b"<html>", "x"),
            ProviderError::Transient(_)
        ));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        match status_error(StatusCode::TOO_MANY_REQUESTS, &h, body, "x") {
            ProviderError::Throttled { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        h.insert("retry-after", "100000".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        // Beyond u64: capped, never an overflow or a panic.
        h.insert("retry-after", "18446744073709551616000".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
    }
}
