//! A fake Azure Resource Manager on 127.0.0.1 for the AKS provider's tests: serves
//! managed clusters and public IPs the way ARM does: checks `api-version` and the bearer
//! token, enforces `If-Match` (412), answers 409 while an operation runs, runs every PUT as
//! a long-running operation (`Azure-AsyncOperation` or `Location`, with `Retry-After`),
//! rewrites bare IPs to /32, rejects more than 200 ranges and `0.0.0.0/32` mixed with
//! others with ARM's error body, lists managed clusters by subscription or resource group in
//! pages (`value` + `nextLink`, as ARM's list operations do), injects faults on request,
//! adds latency to every request on request (`set_latency`, for fleet benchmarks), and
//! records every request.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::quota::Quota;

/// The managed-cluster GET example from Azure/azure-rest-api-specs (2026-08-01).
pub const MANAGED_CLUSTER_EXAMPLE: &str =
    include_str!("../../providers/aks/tests/data/ManagedClustersGet.2026-08-01.json");
/// The public IP GET example from Azure/azure-rest-api-specs (Microsoft.Network 2024-05-01).
pub const PUBLIC_IP_EXAMPLE: &str =
    include_str!("../../providers/aks/tests/data/PublicIpAddressGet.2024-05-01.json");

/// api-versions the fake accepts for managedClusters.
pub const CLUSTER_API_VERSIONS: &[&str] = &["2025-10-01", "2026-04-01", "2026-06-01", "2026-08-01"];
/// api-versions the fake accepts for publicIPAddresses.
pub const PUBLIC_IP_API_VERSIONS: &[&str] = &["2024-05-01"];
/// api-version of the operation-status URLs the fake hands out (as ARM does for AKS).
pub const OPERATION_API_VERSION: &str = "2016-03-30";

/// The response body of the managed-cluster example (`responses.200.body`).
pub fn example_cluster() -> Value {
    let v: Value = serde_json::from_str(MANAGED_CLUSTER_EXAMPLE).unwrap_or(Value::Null);
    v.pointer("/responses/200/body")
        .cloned()
        .unwrap_or(Value::Null)
}

/// The public IP example's body with `properties.ipAddress` set (or left out when `None`),
/// renamed to `name`.
pub fn example_public_ip(id: &str, ip: Option<Ipv4Addr>) -> Value {
    let v: Value = serde_json::from_str(PUBLIC_IP_EXAMPLE).unwrap_or(Value::Null);
    let mut body = v
        .pointer("/responses/200/body")
        .cloned()
        .unwrap_or(Value::Null);
    body["id"] = Value::String(id.to_owned());
    body["name"] = Value::String(id.rsplit('/').next().unwrap_or("").to_owned());
    if let Some(ip) = ip {
        body["properties"]["ipAddress"] = Value::String(ip.to_string());
        body["properties"]["publicIPAllocationMethod"] = Value::String("Static".into());
    }
    body
}

/// A fault the fake answers with instead of serving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 409 `OperationNotAllowed` (another operation in progress).
    Conflict,
    /// 409 `EtagMismatch`.
    EtagMismatch,
    /// 412 `PreconditionFailed`.
    PreconditionFailed,
    /// 429 with `Retry-After: <secs>`.
    Throttled(u64),
    /// 500 `InternalServerError`.
    ServerError,
    /// Close the connection without an answer, before doing anything.
    Drop,
    /// Do the request, then close the connection without an answer.
    DropAfterProcessing,
    /// An arbitrary status with an ARM error body.
    Status(u16, String, String),
}

/// How the fake reports a running PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LroStyle {
    /// 201/200 with `Azure-AsyncOperation` (and `Location`), as AKS does.
    AsyncOperation,
    /// 202 with `Location` only.
    LocationOnly,
    /// 200 with the updated body (`provisioningState: Updating`) and no polling URL: the
    /// client must watch the cluster itself. The operation ends after its duration.
    BodyOnly,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path as sent.
    pub path: String,
    pub api_version: Option<String>,
    /// Whether the bearer token matched.
    pub authorized: bool,
    pub if_match: Option<String>,
    pub body: Option<Value>,
    /// The status answered (0 when the connection was dropped without an answer).
    pub status: u16,
    /// The eTag the resource had when the request arrived (PUT/GET of a cluster).
    pub etag_at_arrival: Option<String>,
}

struct Operation {
    cluster: String,
    started: Instant,
    polls: u32,
    /// The body before the PUT (restored if the operation fails).
    previous: Value,
    fail: Option<(String, String)>,
    done: Option<Result<(), (String, String)>>,
}

struct ClusterEntry {
    body: Value,
    etag_counter: u64,
    operation: Option<String>,
}

type ClusterChange = Box<dyn FnOnce(&mut Value) + Send>;

struct FaultRule {
    fault: Fault,
    method: Option<Method>,
    /// Only requests whose path ends with this (lowercase) text.
    path_suffix: Option<String>,
    remaining: usize,
}

struct Inner {
    token: String,
    clusters: HashMap<String, ClusterEntry>,
    public_ips: HashMap<String, Value>,
    operations: HashMap<String, Operation>,
    faults: VecDeque<FaultRule>,
    requests: Vec<Recorded>,
    /// Polls answering InProgress before an operation finishes.
    lro_polls: u32,
    /// An operation also finishes after this long, polled or not.
    lro_duration: Duration,
    retry_after_secs: u64,
    lro_style: LroStyle,
    fail_next_operation: Option<(String, String)>,
    /// One-shot changes made by "another client" when a request whose path contains the
    /// fragment arrives: (fragment, cluster key, change).
    triggers: Vec<(String, String, ClusterChange)>,
    next_id: u64,
    base: String,
    /// Items per page of a list operation.
    page_size: usize,
    /// Added before every request is served (a WAN round trip plus ARM's own time).
    latency: Duration,
    /// `x-ms-ratelimit-remaining-subscription-reads` on every successful GET.
    remaining_reads: Option<u64>,
    /// `Retry-After` of a request throttled by the quota.
    throttle_retry_after: u64,
}

/// The running fake. Dropping it stops the server.
pub struct FakeArm {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    quota: Quota,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The subscription of an ARM path (`/subscriptions/{id}/...`), lowercase; empty for others.
fn subscription_of(path: &str) -> String {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => id.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn key(path: &str) -> String {
    path.trim_end_matches('/').to_ascii_lowercase()
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

impl FakeArm {
    /// Start on 127.0.0.1 with a random port; requests must carry `Bearer <token>`.
    pub async fn start(token: &str) -> std::io::Result<FakeArm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            clusters: HashMap::new(),
            public_ips: HashMap::new(),
            operations: HashMap::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            lro_polls: 2,
            lro_duration: Duration::from_secs(5),
            retry_after_secs: 0,
            lro_style: LroStyle::AsyncOperation,
            fail_next_operation: None,
            triggers: Vec::new(),
            next_id: 1,
            base: format!("http://{addr}"),
            page_size: 100,
            latency: Duration::ZERO,
            remaining_reads: None,
            throttle_retry_after: 0,
        }));
        let state = inner.clone();
        let quota = Quota::default();
        let q = quota.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                let quota = q.clone();
                async move {
                    // ARM counts requests per subscription.
                    let ticket = quota.enter(&subscription_of(uri.path()));
                    let (latency, remaining, retry_after) = {
                        let g = state
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        (g.latency, g.remaining_reads, g.throttle_retry_after)
                    };
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    if ticket.throttled {
                        return fault_response(&Fault::Throttled(retry_after));
                    }
                    let get = method == Method::GET;
                    let mut resp = handle(&state, method, uri, headers, body);
                    if get
                        && resp.status().is_success()
                        && let Some(n) = remaining
                        && let Ok(v) = HeaderValue::from_str(&n.to_string())
                    {
                        resp.headers_mut()
                            .insert("x-ms-ratelimit-remaining-subscription-reads", v);
                    }
                    drop(ticket);
                    resp
                }
            },
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake ARM server stopped: {e}");
            }
        });
        Ok(FakeArm {
            addr,
            inner,
            quota,
            task,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The ARM path of a managed cluster.
    pub fn cluster_path(subscription: &str, resource_group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ContainerService/managedClusters/{name}"
        )
    }

    /// Serve `body` as the cluster at `path` (its `id`, `name` and `eTag` are set to match).
    pub fn insert_cluster(&self, path: &str, mut body: Value) {
        body["id"] = Value::String(path.to_owned());
        body["name"] = Value::String(path.rsplit('/').next().unwrap_or("").to_owned());
        let mut entry = ClusterEntry {
            body,
            etag_counter: 0,
            operation: None,
        };
        bump_etag(&mut entry);
        self.lock().clusters.insert(key(path), entry);
    }

    /// The cluster as stored now.
    pub fn cluster(&self, path: &str) -> Option<Value> {
        let mut g = self.lock();
        advance(&mut g);
        g.clusters.get(&key(path)).map(|c| c.body.clone())
    }

    /// Remove a cluster (deleted by someone else).
    pub fn remove_cluster(&self, path: &str) {
        self.lock().clusters.remove(&key(path));
    }

    /// List operations answer with at most `n` items per page (and a `nextLink`).
    pub fn set_page_size(&self, n: usize) {
        self.lock().page_size = n.max(1);
    }

    /// Throttle (429 `TooManyRequests`, `Retry-After: retry_after_secs`) a request that
    /// arrives while `limit` requests of its subscription are in flight (`None`: never).
    pub fn set_throttle(&self, limit: Option<usize>, retry_after_secs: u64) {
        self.lock().throttle_retry_after = retry_after_secs;
        self.quota.set_limit(limit);
    }

    /// The most requests of each subscription (lowercase id) that were in flight at once,
    /// throttled ones included.
    pub fn most_in_flight(&self) -> HashMap<String, usize> {
        self.quota.most_in_flight()
    }

    /// How many requests the quota throttled.
    pub fn throttled(&self) -> usize {
        self.quota.throttled()
    }

    /// Send `x-ms-ratelimit-remaining-subscription-reads: n` with every successful GET
    /// (`None`: no such header, the default).
    pub fn set_remaining_reads(&self, n: Option<u64>) {
        self.lock().remaining_reads = n;
    }

    /// Wait `latency` before serving each request (zero, the default, for none): every
    /// request then takes at least that long, as over a real network to ARM.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Change a cluster as another client would (the eTag changes).
    pub fn modify_cluster(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut g = self.lock();
        if let Some(c) = g.clusters.get_mut(&key(path)) {
            f(&mut c.body);
            bump_etag(c);
        }
    }

    /// Serve a public IP resource.
    pub fn insert_public_ip(&self, id: &str, ip: Option<Ipv4Addr>) {
        self.lock()
            .public_ips
            .insert(key(id), example_public_ip(id, ip));
    }

    /// Answer the next `times` requests (of `method`, or any) with `fault`. Rules queue up.
    pub fn inject(&self, fault: Fault, method: Option<Method>, times: usize) {
        self.lock().faults.push_back(FaultRule {
            fault,
            method,
            path_suffix: None,
            remaining: times,
        });
    }

    /// Answer the next `times` list requests for managed clusters (by subscription or
    /// resource group) with `fault`; other requests are served.
    pub fn inject_list(&self, fault: Fault, times: usize) {
        self.lock().faults.push_back(FaultRule {
            fault,
            method: Some(Method::GET),
            path_suffix: Some("/providers/microsoft.containerservice/managedclusters".into()),
            remaining: times,
        });
    }

    /// Operations answer InProgress `polls` times (or run for `duration`), with `Retry-After`.
    pub fn set_lro(&self, polls: u32, duration: Duration, retry_after_secs: u64) {
        let mut g = self.lock();
        g.lro_polls = polls;
        g.lro_duration = duration;
        g.retry_after_secs = retry_after_secs;
    }

    pub fn set_lro_style(&self, style: LroStyle) {
        self.lock().lro_style = style;
    }

    /// The next operation ends as Failed with this code and message (the change is undone).
    /// When the next request whose path contains `fragment` arrives, change the cluster at
    /// `path` as another client would (the eTag changes) before serving it. This puts a
    /// concurrent write exactly between a client's GET and its PUT.
    pub fn modify_cluster_on_request(
        &self,
        fragment: &str,
        path: &str,
        f: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.lock()
            .triggers
            .push((fragment.to_owned(), key(path), Box::new(f)));
    }

    pub fn fail_next_operation(&self, code: &str, message: &str) {
        self.lock().fail_next_operation = Some((code.to_owned(), message.to_owned()));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The PUT requests so far.
    pub fn puts(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn bump_etag(c: &mut ClusterEntry) {
    c.etag_counter += 1;
    c.body["eTag"] = Value::String(format!("etag-{:04}", c.etag_counter));
}

fn etag_of(c: &ClusterEntry) -> Option<String> {
    c.body
        .get("eTag")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Finish operations that have run their course.
fn advance(g: &mut Inner) {
    let lro_polls = g.lro_polls;
    let lro_duration = g.lro_duration;
    let ids: Vec<String> = g
        .operations
        .iter()
        .filter(|(_, op)| {
            op.done.is_none() && (op.polls >= lro_polls || op.started.elapsed() >= lro_duration)
        })
        .map(|(id, _)| id.clone())
        .collect();
    for id in ids {
        let Some(op) = g.operations.get_mut(&id) else {
            continue;
        };
        let result = match op.fail.take() {
            Some(err) => Err(err),
            None => Ok(()),
        };
        op.done = Some(result.clone());
        let previous = op.previous.clone();
        if let Some(c) = g.clusters.get_mut(&op.cluster) {
            c.operation = None;
            match result {
                Ok(()) => {
                    c.body["properties"]["provisioningState"] = Value::String("Succeeded".into())
                }
                Err(_) => {
                    let mut restored = previous;
                    restored["properties"]["provisioningState"] = Value::String("Failed".into());
                    c.body = restored;
                }
            }
            bump_etag(c);
        }
    }
}

enum Outcome {
    Answer(Response),
    Drop,
}

fn handle(
    state: &Arc<Mutex<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    advance(&mut g);
    let path = uri.path().to_owned();
    let api_version = uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("api-version"))
            .map(|(_, v)| v.to_owned())
    });
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", g.token));
    let if_match = headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed_body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let etag_at_arrival = g.clusters.get(&key(&path)).and_then(etag_of);
    let idx = g.requests.len();
    g.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        api_version: api_version.clone(),
        authorized,
        if_match: if_match.clone(),
        body: parsed_body.clone(),
        status: 0,
        etag_at_arrival,
    });

    if let Some(pos) = g
        .triggers
        .iter()
        .position(|(frag, _, _)| path.contains(frag.as_str()))
    {
        let (_, cluster, change) = g.triggers.remove(pos);
        if let Some(c) = g.clusters.get_mut(&cluster) {
            change(&mut c.body);
            bump_etag(c);
        }
    }

    // Faults first.
    let mut fault = None;
    if let Some(pos) = g.faults.iter().position(|r| {
        r.remaining > 0
            && r.method.as_ref().is_none_or(|m| *m == method)
            && r.path_suffix.as_deref().is_none_or(|sfx| {
                path.trim_end_matches('/')
                    .to_ascii_lowercase()
                    .ends_with(sfx)
            })
    }) && let Some(rule) = g.faults.get_mut(pos)
    {
        rule.remaining -= 1;
        fault = Some(rule.fault.clone());
        if rule.remaining == 0 {
            g.faults.remove(pos);
        }
    }
    let outcome = match fault {
        Some(Fault::Drop) => Outcome::Drop,
        Some(Fault::DropAfterProcessing) => {
            let _ = route(
                &mut g,
                &method,
                &path,
                uri.query(),
                api_version.as_deref(),
                authorized,
                if_match.as_deref(),
                &body,
                parsed_body,
            );
            Outcome::Drop
        }
        Some(f) => Outcome::Answer(fault_response(&f)),
        None => Outcome::Answer(route(
            &mut g,
            &method,
            &path,
            uri.query(),
            api_version.as_deref(),
            authorized,
            if_match.as_deref(),
            &body,
            parsed_body,
        )),
    };
    match outcome {
        Outcome::Answer(resp) => {
            if let Some(r) = g.requests.get_mut(idx) {
                r.status = resp.status().as_u16();
            }
            resp
        }
        Outcome::Drop => {
            drop(g);
            // Unwind the connection task without a response: the client sees the connection
            // closed. `resume_unwind` skips the panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new("fake ARM: dropped connection"))
        }
    }
}

fn fault_response(f: &Fault) -> Response {
    match f {
        Fault::Conflict => arm_error(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            "Operation is not allowed: Another operation (Updating) is in progress, please wait for it to finish before starting a new operation.",
        ),
        Fault::EtagMismatch => arm_error(
            StatusCode::CONFLICT,
            "EtagMismatch",
            "Operation is not allowed: the eTag of the request does not match the eTag of the resource.",
        ),
        Fault::PreconditionFailed => arm_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "The specified eTag does not match the current eTag of the resource.",
        ),
        Fault::Throttled(secs) => {
            let mut r = arm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request is being throttled.",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Fault::ServerError => arm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "An internal server error occurred.",
        ),
        Fault::Status(s, code, msg) => arm_error(
            StatusCode::from_u16(*s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            msg,
        ),
        Fault::Drop | Fault::DropAfterProcessing => {
            arm_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal", "drop")
        }
    }
}

/// The parts of an ARM path: `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}`
/// or `/subscriptions/{s}/providers/{ns}/locations/{loc}/{operations|operationresults}/{id}`.
fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_ascii_lowercase)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn route(
    g: &mut Inner,
    method: &Method,
    path: &str,
    query: Option<&str>,
    api_version: Option<&str>,
    authorized: bool,
    if_match: Option<&str>,
    raw_body: &Bytes,
    body: Option<Value>,
) -> Response {
    if !authorized {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or invalid.",
        );
    }
    let Some(api_version) = api_version else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let seg = segments(path);
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        [
            "subscriptions",
            sub,
            "providers",
            "microsoft.containerservice",
            "managedclusters",
        ]
        | [
            "subscriptions",
            sub,
            "resourcegroups",
            _,
            "providers",
            "microsoft.containerservice",
            "managedclusters",
        ] => {
            if !CLUSTER_API_VERSIONS.contains(&api_version) {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "NoRegisteredProviderFound",
                    &format!(
                        "No registered resource provider found for api version '{api_version}'. The supported api-versions are '{}'.",
                        CLUSTER_API_VERSIONS.join(", ")
                    ),
                );
            }
            if *method != Method::GET {
                return arm_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The method is not allowed.",
                );
            }
            let group = (seg.len() == 7).then(|| seg[3]);
            list_clusters(g, path, sub, group, api_version, query)
        }
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.containerservice",
            "managedclusters",
            _,
        ] => {
            if !CLUSTER_API_VERSIONS.contains(&api_version) {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "NoRegisteredProviderFound",
                    &format!(
                        "No registered resource provider found for api version '{api_version}'. The supported api-versions are '{}'.",
                        CLUSTER_API_VERSIONS.join(", ")
                    ),
                );
            }
            let k = key(path);
            if *method == Method::GET {
                match g.clusters.get(&k) {
                    Some(c) => json_response(StatusCode::OK, &c.body),
                    None => not_found(path),
                }
            } else if *method == Method::PUT {
                put_cluster(g, &k, path, if_match, raw_body, body)
            } else {
                arm_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The method is not allowed.",
                )
            }
        }
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.network",
            "publicipaddresses",
            _,
        ] => {
            if !PUBLIC_IP_API_VERSIONS.contains(&api_version) {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "NoRegisteredProviderFound",
                    &format!(
                        "No registered resource provider found for api version '{api_version}'."
                    ),
                );
            }
            if *method != Method::GET {
                return arm_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "The method is not allowed.",
                );
            }
            match g.public_ips.get(&key(path)) {
                Some(v) => json_response(StatusCode::OK, v),
                None => not_found(path),
            }
        }
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.containerservice",
            "locations",
            _,
            kind @ ("operations" | "operationresults"),
            id,
        ] => {
            if api_version != OPERATION_API_VERSION {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidApiVersionParameter",
                    "Unsupported api-version.",
                );
            }
            let retry_after = g.retry_after_secs;
            let Some(op) = g.operations.get_mut(*id) else {
                return not_found(path);
            };
            if op.done.is_none() {
                op.polls += 1;
            }
            let location_style = *kind == "operationresults";
            // Let this poll finish the operation if it was the last one needed.
            advance(g);
            let Some(op) = g.operations.get(*id) else {
                return not_found(path);
            };
            let mut resp = match (&op.done, location_style) {
                (None, false) => {
                    json_response(StatusCode::OK, &json!({"name": id, "status": "InProgress"}))
                }
                (None, true) => StatusCode::ACCEPTED.into_response(),
                (Some(Ok(())), false) => {
                    json_response(StatusCode::OK, &json!({"name": id, "status": "Succeeded"}))
                }
                (Some(Ok(())), true) => StatusCode::NO_CONTENT.into_response(),
                (Some(Err((code, msg))), false) => json_response(
                    StatusCode::OK,
                    &json!({"name": id, "status": "Failed", "error": {"code": code, "message": msg}}),
                ),
                (Some(Err((code, msg))), true) => arm_error(StatusCode::BAD_REQUEST, code, msg),
            };
            if op.done.is_none() {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    resp.headers_mut().insert("retry-after", v);
                }
                if location_style
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "{}{path}?api-version={OPERATION_API_VERSION}",
                        g.base
                    ))
                {
                    resp.headers_mut().insert("location", v);
                }
            }
            resp
        }
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            &format!("The resource type could not be found for path '{path}'."),
        ),
    }
}

/// A page of the managed clusters of a subscription (or of one of its resource groups), in
/// path order: `{"value": [...], "nextLink": "<same URL>&$skipToken=<offset>"}` while more
/// remain, as ARM's list operations answer.
fn list_clusters(
    g: &mut Inner,
    path: &str,
    subscription: &str,
    group: Option<&str>,
    api_version: &str,
    query: Option<&str>,
) -> Response {
    let skip = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| {
            k.eq_ignore_ascii_case("$skipToken") || k.eq_ignore_ascii_case("%24skipToken")
        })
        .map(|(_, v)| v.parse::<usize>());
    let skip = match skip {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidSkipToken",
                "The skip token is not valid.",
            );
        }
    };
    let mut keys: Vec<&String> = g
        .clusters
        .keys()
        .filter(|k| {
            let s = segments(k);
            s.get(1).is_some_and(|x| x == subscription)
                && group.is_none_or(|rg| s.get(3).is_some_and(|x| x == rg))
        })
        .collect();
    keys.sort();
    let page: Vec<Value> = keys
        .iter()
        .skip(skip)
        .take(g.page_size)
        .filter_map(|k| g.clusters.get(*k).map(|c| c.body.clone()))
        .collect();
    let mut body = json!({ "value": page });
    let next = skip + g.page_size;
    if next < keys.len() {
        body["nextLink"] = Value::String(format!(
            "{}{path}?api-version={api_version}&$skipToken={next}",
            g.base
        ));
    }
    json_response(StatusCode::OK, &body)
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn not_found(path: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource '{path}' was not found."),
    )
}

fn invalid(msg: &str) -> Response {
    arm_error(StatusCode::BAD_REQUEST, "InvalidParameter", msg)
}

/// Validate and canonicalize authorizedIPRanges as AKS does: IPv4 CIDRs or bare addresses
/// (stored as /32), at most 200, `0.0.0.0/32` only alone.
fn normalize_ranges(ranges: &[Value]) -> Result<Vec<String>, String> {
    if ranges.len() > 200 {
        return Err(
            "The number of APIServer Authorized IP Ranges is greater than the allowed value 200."
                .into(),
        );
    }
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Some(s) = r.as_str() else {
            return Err("authorizedIPRanges must be a list of strings.".into());
        };
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, l),
            None => (s, "32"),
        };
        let ok = addr
            .parse::<Ipv4Addr>()
            .ok()
            .zip(len.parse::<u8>().ok().filter(|l| *l <= 32));
        let Some((ip, len)) = ok else {
            return Err(format!(
                "Invalid IP range '{s}' in APIServer Authorized IP Ranges."
            ));
        };
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        if u32::from(ip) & !mask != 0 {
            return Err(format!(
                "IP range '{s}' in APIServer Authorized IP Ranges has host bits set."
            ));
        }
        out.push(format!("{ip}/{len}"));
    }
    if out.len() > 1 && out.iter().any(|r| r == "0.0.0.0/32") {
        return Err(
            "Setting authorized IP ranges to 0.0.0.0/32 is not allowed with other IP ranges."
                .into(),
        );
    }
    Ok(out)
}

fn put_cluster(
    g: &mut Inner,
    k: &str,
    path: &str,
    if_match: Option<&str>,
    raw: &Bytes,
    body: Option<Value>,
) -> Response {
    let Some(mut body) = body.filter(Value::is_object) else {
        let what = if raw.is_empty() {
            "empty"
        } else {
            "not a JSON object"
        };
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            &format!("The request content is {what}."),
        );
    };
    let base = g.base.clone();
    let fail = g.fail_next_operation.take();
    let retry_after = g.retry_after_secs;
    let style = g.lro_style;
    let id_num = g.next_id;
    let Some(c) = g.clusters.get_mut(k) else {
        // Creating clusters is not what this fake is for.
        return not_found(path);
    };
    if c.operation.is_some() {
        return arm_error(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            "Operation is not allowed because there's an in progress update managed cluster operation on the managed cluster. Please wait for the operation to complete before starting a new one.",
        );
    }
    if let Some(m) = if_match
        && m != "*"
        && Some(m) != c.body.get("eTag").and_then(Value::as_str)
    {
        return arm_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            &format!(
                "The specified eTag '{m}' does not match the current eTag of the managed cluster."
            ),
        );
    }
    if let Some(ranges) = body
        .pointer("/properties/apiServerAccessProfile/authorizedIPRanges")
        .cloned()
    {
        match ranges {
            Value::Null => {}
            Value::Array(items) => match normalize_ranges(&items) {
                Ok(norm) => {
                    body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] =
                        Value::Array(norm.into_iter().map(Value::String).collect());
                }
                Err(msg) => return invalid(&msg),
            },
            _ => return invalid("authorizedIPRanges must be a list."),
        }
    }
    let op_id = format!("op-{id_num:06}");
    let previous = c.body.clone();
    // Read-only fields are the server's: keep ours, ignore what the client sent.
    for ro in [
        "provisioningState",
        "fqdn",
        "azurePortalFQDN",
        "currentKubernetesVersion",
        "powerState",
        "maxAgentPools",
    ] {
        match previous.pointer(&format!("/properties/{ro}")) {
            Some(v) => body["properties"][ro] = v.clone(),
            None => {
                if let Some(p) = body.get_mut("properties").and_then(Value::as_object_mut) {
                    p.remove(ro);
                }
            }
        }
    }
    body["id"] = previous["id"].clone();
    body["name"] = previous["name"].clone();
    body["properties"]["provisioningState"] = Value::String("Updating".into());
    c.body = body;
    c.operation = Some(op_id.clone());
    bump_etag(c);
    let answer = c.body.clone();
    let cluster_key = k.to_owned();
    let location = answer
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or("westus")
        .to_owned();
    let sub = path
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or("")
        .to_owned();
    g.next_id += 1;
    g.operations.insert(
        op_id.clone(),
        Operation {
            cluster: cluster_key,
            started: Instant::now(),
            polls: 0,
            previous,
            fail,
            done: None,
        },
    );
    let op_base = format!(
        "{base}/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{location}"
    );
    let async_url = format!("{op_base}/operations/{op_id}?api-version={OPERATION_API_VERSION}");
    let location_url =
        format!("{op_base}/operationresults/{op_id}?api-version={OPERATION_API_VERSION}");
    let mut resp = match style {
        LroStyle::AsyncOperation | LroStyle::BodyOnly => json_response(StatusCode::OK, &answer),
        LroStyle::LocationOnly => StatusCode::ACCEPTED.into_response(),
    };
    if style == LroStyle::BodyOnly {
        return resp;
    }
    let h = resp.headers_mut();
    if style == LroStyle::AsyncOperation
        && let Ok(v) = HeaderValue::from_str(&async_url)
    {
        h.insert("azure-asyncoperation", v);
    }
    if let Ok(v) = HeaderValue::from_str(&location_url) {
        h.insert("location", v);
    }
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        h.insert("retry-after", v);
    }
    resp
}
