//! A fake Google Kubernetes Engine API on 127.0.0.1 (feature `gke`), with fake Google token
//! endpoints and a fake metadata server, for the GKE provider's and the binary's tests.
//!
//! It honours the contract of the real API: clusters carry an `etag` that changes with every
//! change and an update with a stale one is refused with ABORTED (409); `clusters.update`
//! must carry exactly one field of `ClusterUpdate` (besides `etag`); every update runs as an
//! Operation that goes PENDING -> RUNNING -> DONE over successive `operations.get` polls (or
//! after a while, polled or not), and the change lands when it is DONE; an update while
//! another operation runs is refused with FAILED_PRECONDITION (400); at most 50 CIDR blocks
//! (100 on clusters without a public endpoint), IPv4 or IPv6, host bits zero; errors come as
//! `{"error": {"code", "message", "status"}}`; 429 (with `Retry-After`) and 5xx can be
//! injected. `clusters.list` of a project in one location, or in all (`-`), answers in one
//! response (the v1 API has no pages) and can be told that locations are unreachable: it
//! leaves their clusters out and names them in `missingZones`, as GKE does in an outage. API
//! calls need a bearer token the fake issued (or was told to accept); tokens are issued by a
//! JWT-bearer grant signed with a generated service-account key, a refresh-token grant, an
//! STS token exchange (+ service account impersonation), and the metadata server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// The service account email of the generated key.
pub const SERVICE_ACCOUNT: &str = "rangekeeper@test-project.iam.gserviceaccount.com";
/// The workload identity pool audience the fake STS accepts.
pub const AUDIENCE: &str = "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/github/providers/github";
/// The OIDC token type of GitHub's ID tokens.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Most CIDR blocks on a cluster with a public endpoint, and on one without.
pub const MAX_BLOCKS_PUBLIC: usize = 50;
pub const MAX_BLOCKS_PRIVATE: usize = 100;

/// A realistic `clusters.get` answer (fields as the v1 API returns them), with the allow-list
/// in both the current and the legacy location, as GKE mirrors them.
pub fn example_cluster(project: &str, location: &str, name: &str) -> Value {
    let networks = json!({
        "enabled": true,
        "cidrBlocks": [{"displayName": "corp", "cidrBlock": "198.51.100.0/24"}],
        "gcpPublicCidrsAccessEnabled": false,
    });
    json!({
        "name": name,
        "nodePools": [{"name": "default-pool", "config": {"machineType": "e2-medium", "diskSizeGb": 100},
            "initialNodeCount": 3, "status": "RUNNING", "version": "1.33.5-gke.1201000"}],
        "network": "default",
        "subnetwork": "default",
        "clusterIpv4Cidr": "10.92.0.0/14",
        "servicesIpv4Cidr": "34.118.224.0/20",
        "endpoint": "34.76.10.20",
        "initialClusterVersion": "1.33.5-gke.1201000",
        "currentMasterVersion": "1.33.5-gke.1201000",
        "status": "RUNNING",
        "selfLink": format!("https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}"),
        "location": location,
        "zone": location,
        "resourceLabels": {"env": "prod"},
        "privateClusterConfig": {"privateEndpoint": "10.132.0.2", "publicEndpoint": "34.76.10.20"},
        "masterAuthorizedNetworksConfig": networks.clone(),
        "controlPlaneEndpointsConfig": {
            "dnsEndpointConfig": {"endpoint": format!("gke-0123456789abcdef-123456.{location}.gke.goog"), "allowExternalTraffic": false},
            "ipEndpointsConfig": {
                "enabled": true,
                "enablePublicEndpoint": true,
                "globalAccess": false,
                "authorizedNetworksConfig": networks,
                "publicEndpoint": "34.76.10.20",
                "privateEndpoint": "10.132.0.2",
            },
        },
    })
}

/// An answer from an older API surface: only `masterAuthorizedNetworksConfig`.
pub fn legacy_cluster(project: &str, location: &str, name: &str) -> Value {
    let mut c = example_cluster(project, location, name);
    if let Some(m) = c.as_object_mut() {
        m.remove("controlPlaneEndpointsConfig");
    }
    c
}

/// Where an injected fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Any,
    GetCluster,
    Update,
    GetOperation,
    /// `clusters.list` (`GET /v1/projects/{p}/locations/{l}/clusters`).
    ListClusters,
    /// Every token endpoint (OAuth, STS, impersonation, metadata).
    Token,
}

/// A fault the fake answers with instead of serving a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 RESOURCE_EXHAUSTED with `Retry-After: <secs>`.
    Throttled(u64),
    /// 503 UNAVAILABLE.
    Unavailable,
    /// 500 INTERNAL.
    Internal,
    /// Any status with a Google error body: (HTTP status, canonical status, message).
    Status(u16, String, String),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Whether the bearer token was one the fake issued or accepts (API calls).
    pub authorized: bool,
    pub body: Option<Value>,
    pub status: u16,
}

struct Op {
    cluster: String,
    location_path: String,
    polls: u32,
    started: Instant,
    /// The authorized networks config to install when DONE.
    config: Value,
    fail: Option<(i64, String)>,
    done: bool,
    error: Option<(i64, String)>,
    /// Started by "another client": no change when DONE.
    foreign: bool,
}

struct ClusterEntry {
    body: Value,
    etag_n: u64,
    operation: Option<String>,
}

type ClusterChange = Box<dyn FnOnce(&mut Value) + Send>;

struct FaultRule {
    fault: Fault,
    on: On,
    remaining: usize,
}

struct ServiceAccount {
    email: String,
    public_key: Vec<u8>,
}

struct Inner {
    base: String,
    clusters: HashMap<String, ClusterEntry>,
    operations: HashMap<String, Op>,
    faults: VecDeque<FaultRule>,
    requests: Vec<Recorded>,
    tokens: HashSet<String>,
    pending_polls: u32,
    running_polls: u32,
    op_duration: Duration,
    fail_next_operation: Option<(i64, String)>,
    on_next_update: Vec<(String, ClusterChange)>,
    next_id: u64,
    service_account: Option<ServiceAccount>,
    refresh: Option<(String, String, String)>,
    /// The subject token the STS accepts, and the token the OIDC endpoint wants to hand it out.
    oidc: Option<(String, String)>,
    grants: Vec<&'static str>,
    /// Locations `clusters.list` answers as unreachable (`missingZones`), leaving out their
    /// clusters.
    missing_zones: Vec<String>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeGke {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGke {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `projects/{p}/locations/{l}/clusters/{c}`
pub fn cluster_name(project: &str, location: &str, cluster: &str) -> String {
    format!("projects/{project}/locations/{location}/clusters/{cluster}")
}

fn google_error(status: StatusCode, canonical: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": {"code": status.as_u16(), "message": message, "status": canonical}})
            .to_string(),
    )
        .into_response()
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn oauth_error(status: StatusCode, code: &str, desc: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"error": code, "error_description": desc}).to_string(),
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl FakeGke {
    /// Start on 127.0.0.1 with a random port.
    pub async fn start() -> std::io::Result<FakeGke> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            base: format!("http://{addr}"),
            clusters: HashMap::new(),
            operations: HashMap::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            tokens: HashSet::new(),
            pending_polls: 1,
            running_polls: 1,
            op_duration: Duration::from_secs(30),
            fail_next_operation: None,
            on_next_update: Vec::new(),
            next_id: 1,
            service_account: None,
            refresh: None,
            oidc: None,
            grants: Vec::new(),
            missing_zones: Vec::new(),
        }));
        let state = inner.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(&state, method, &uri, &headers, &body) }
            },
        );
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake GKE server stopped: {e}");
            }
        });
        Ok(FakeGke { addr, inner, task })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `http://127.0.0.1:<port>`: the API root, token endpoints and metadata server.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// Accept this bearer token on API calls (a token given to the client directly).
    pub fn accept_token(&self, token: &str) {
        self.lock().tokens.insert(token.to_owned());
    }

    /// Serve `body` as a cluster (its `name` is set and an `etag` assigned).
    pub fn insert_cluster(&self, project: &str, location: &str, cluster: &str, mut body: Value) {
        body["name"] = Value::String(cluster.to_owned());
        let mut entry = ClusterEntry {
            body,
            etag_n: 0,
            operation: None,
        };
        bump_etag(&mut entry);
        self.lock()
            .clusters
            .insert(cluster_name(project, location, cluster), entry);
    }

    /// Delete a cluster (as if deleted by another client).
    pub fn remove_cluster(&self, project: &str, location: &str, cluster: &str) {
        self.lock()
            .clusters
            .remove(&cluster_name(project, location, cluster));
    }

    /// From now on `clusters.list` answers that these locations could not be reached
    /// (`missingZones`) and leaves their clusters out, as GKE does during a zonal outage;
    /// an empty list ends that.
    pub fn set_missing_zones(&self, zones: &[&str]) {
        self.lock().missing_zones = zones.iter().map(|z| (*z).to_owned()).collect();
    }

    /// The `clusters.list` requests so far.
    pub fn lists(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.ends_with("/clusters"))
            .collect()
    }

    /// The cluster as stored now (operations that have run their time are finished first).
    pub fn cluster(&self, project: &str, location: &str, cluster: &str) -> Option<Value> {
        let mut g = self.lock();
        advance_by_time(&mut g);
        g.clusters
            .get(&cluster_name(project, location, cluster))
            .map(|c| c.body.clone())
    }

    /// Change a cluster as another client would (the etag changes).
    pub fn modify_cluster(&self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut g = self.lock();
        if let Some(c) = g.clusters.get_mut(name) {
            f(&mut c.body);
            bump_etag(c);
        }
    }

    /// When the next update of cluster `name` arrives, change the cluster first as another
    /// client would: a concurrent write exactly between a client's read and its update.
    pub fn modify_before_next_update(
        &self,
        name: &str,
        f: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        self.lock()
            .on_next_update
            .push((name.to_owned(), Box::new(f)));
    }

    /// Start an operation of "another client" on cluster `name` that runs for `polls` polls of
    /// any operation (or the operation duration); updates meanwhile get FAILED_PRECONDITION.
    pub fn start_foreign_operation(&self, name: &str) -> String {
        let mut g = self.lock();
        let id = format!("operation-foreign-{}", g.next_id);
        g.next_id += 1;
        let location_path = name.split("/clusters/").next().unwrap_or("").to_owned();
        if let Some(c) = g.clusters.get_mut(name) {
            c.operation = Some(id.clone());
            c.body["status"] = Value::String("RECONCILING".into());
        }
        g.operations.insert(
            format!("{location_path}/operations/{id}"),
            Op {
                cluster: name.to_owned(),
                location_path,
                polls: 0,
                started: Instant::now(),
                config: Value::Null,
                fail: None,
                done: false,
                error: None,
                foreign: true,
            },
        );
        id
    }

    /// Finish every operation now (as if their time had run out).
    pub fn finish_operations(&self) {
        let mut g = self.lock();
        let keys: Vec<String> = g.operations.keys().cloned().collect();
        for k in keys {
            finish(&mut g, &k);
        }
    }

    /// Operations answer PENDING for `pending` polls and RUNNING for `running` more, then DONE;
    /// they also finish after `duration`, polled or not.
    pub fn set_operation(&self, pending: u32, running: u32, duration: Duration) {
        let mut g = self.lock();
        g.pending_polls = pending;
        g.running_polls = running;
        g.op_duration = duration;
    }

    /// The next operation ends DONE with this error (google.rpc.Code) and changes nothing.
    pub fn fail_next_operation(&self, code: i64, message: &str) {
        self.lock().fail_next_operation = Some((code, message.to_owned()));
    }

    /// Answer the next `times` requests of kind `on` with `fault`. Rules queue up.
    pub fn inject(&self, fault: Fault, on: On, times: usize) {
        self.lock().faults.push_back(FaultRule {
            fault,
            on,
            remaining: times,
        });
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The bodies of the `clusters.update` requests so far (answered or refused).
    pub fn updates(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .filter_map(|r| r.body)
            .collect()
    }

    /// The grants that issued tokens so far (`jwt-bearer`, `refresh_token`, `token-exchange`,
    /// `impersonation`, `metadata`).
    pub fn grants(&self) -> Vec<&'static str> {
        self.lock().grants.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// A service-account key file (JSON) for a freshly generated RSA key whose `token_uri`
    /// is this fake; the fake verifies the JWT grant's RS256 signature with its public key.
    pub fn service_account_key(&self) -> String {
        let pair = match aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048) {
            Ok(p) => p,
            Err(_) => return String::new(),
        };
        let der = match AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair) {
            Ok(d) => d.as_ref().to_vec(),
            Err(_) => return String::new(),
        };
        let b64 = STANDARD.encode(&der);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let mut g = self.lock();
        g.service_account = Some(ServiceAccount {
            email: SERVICE_ACCOUNT.to_owned(),
            public_key: pair.public_key().as_ref().to_vec(),
        });
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": pem,
            "client_email": SERVICE_ACCOUNT,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{}/token", g.base),
        })
        .to_string()
    }

    /// gcloud's `application_default_credentials.json` (an authorized user) for this fake.
    pub fn authorized_user(&self) -> String {
        let mut g = self.lock();
        g.refresh = Some((
            "764086051850-test.apps.googleusercontent.com".into(),
            "d-FL95Q19q7MQmFpd7hHD0Ty".into(),
            "1//0test-refresh-token".into(),
        ));
        json!({
            "client_id": "764086051850-test.apps.googleusercontent.com",
            "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
            "refresh_token": "1//0test-refresh-token",
            "type": "authorized_user",
            "token_uri": format!("{}/token", g.base),
        })
        .to_string()
    }

    /// An `external_account` config as google-github-actions/auth writes it: the subject
    /// token (`oidc_token`) is read from `subject_file` when given, else fetched from the
    /// fake's OIDC endpoint with a request token (as from ACTIONS_ID_TOKEN_REQUEST_URL);
    /// `impersonate` adds service account impersonation.
    pub fn external_account(
        &self,
        oidc_token: &str,
        subject_file: Option<&str>,
        impersonate: bool,
    ) -> String {
        let mut g = self.lock();
        g.oidc = Some((oidc_token.to_owned(), "gh-request-token".to_owned()));
        let source = match subject_file {
            Some(path) => json!({"file": path, "format": {"type": "text"}}),
            None => json!({
                "url": format!("{}/oidc?audience={}", g.base, "https%3A%2F%2Fiam.googleapis.com"),
                "headers": {"Authorization": "Bearer gh-request-token"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            }),
        };
        let mut v = json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": JWT_TOKEN_TYPE,
            "token_url": format!("{}/v1/token", g.base),
            "credential_source": source,
        });
        if impersonate {
            v["service_account_impersonation_url"] = Value::String(format!(
                "{}/v1/projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
                g.base
            ));
        }
        v.to_string()
    }
}

fn bump_etag(c: &mut ClusterEntry) {
    c.etag_n += 1;
    c.body["etag"] = Value::String(format!("{:08x}-{:04}", 0x5eed_u32, c.etag_n));
}

/// Finish operations whose time has run out.
fn advance_by_time(g: &mut Inner) {
    let d = g.op_duration;
    let keys: Vec<String> = g
        .operations
        .iter()
        .filter(|(_, op)| !op.done && op.started.elapsed() >= d)
        .map(|(k, _)| k.clone())
        .collect();
    for k in keys {
        finish(g, &k);
    }
}

fn finish(g: &mut Inner, key: &str) {
    let Some(op) = g.operations.get_mut(key) else {
        return;
    };
    if op.done {
        return;
    }
    op.done = true;
    op.error = op.fail.take();
    let failed = op.error.is_some();
    let config = op.config.clone();
    let foreign = op.foreign;
    let cluster = op.cluster.clone();
    if let Some(c) = g.clusters.get_mut(&cluster) {
        c.operation = None;
        c.body["status"] = Value::String("RUNNING".into());
        if !failed && !foreign {
            install(&mut c.body, config);
        }
        bump_etag(c);
    }
}

/// Put a new authorized networks config in place: the current location when the cluster
/// has it, and the legacy one (GKE mirrors both).
fn install(body: &mut Value, config: Value) {
    if body
        .pointer("/controlPlaneEndpointsConfig/ipEndpointsConfig")
        .is_some()
    {
        body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"] =
            config.clone();
    }
    body["masterAuthorizedNetworksConfig"] = config;
}

fn operation_json(g: &Inner, key: &str, op: &Op, id: &str) -> Value {
    let pending = g.pending_polls;
    let status = if op.done {
        "DONE"
    } else if op.polls < pending {
        "PENDING"
    } else {
        "RUNNING"
    };
    let mut v = json!({
        "name": id,
        "zone": op.location_path.rsplit('/').next().unwrap_or(""),
        "operationType": "UPDATE_CLUSTER",
        "status": status,
        "selfLink": format!("https://container.googleapis.com/v1/{key}"),
        "targetLink": format!("https://container.googleapis.com/v1/{}", op.cluster),
        "startTime": "2026-12-03T12:00:00.000000Z",
    });
    if status == "RUNNING" {
        v["progress"] =
            json!({"stages": [{"name": "Updating control plane", "status": "RUNNING"}]});
    }
    if let Some((code, message)) = &op.error {
        v["error"] = json!({"code": code, "message": message});
        v["statusMessage"] = Value::String(message.clone());
    }
    if op.done {
        v["endTime"] = Value::String("2026-12-03T12:01:00.000000Z".into());
    }
    v
}

fn classify(method: &Method, path: &str) -> On {
    if path == "/token"
        || path == "/v1/token"
        || path.ends_with(":generateAccessToken")
        || path.starts_with("/computeMetadata/")
    {
        On::Token
    } else if path.contains("/operations/") {
        On::GetOperation
    } else if *method == Method::GET && path.ends_with("/clusters") {
        On::ListClusters
    } else if *method == Method::PUT {
        On::Update
    } else {
        On::GetCluster
    }
}

fn fault_response(f: &Fault) -> Response {
    match f {
        Fault::Throttled(secs) => {
            let mut r = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Requests' of service 'container.googleapis.com'.",
            );
            if let Ok(v) = secs.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Fault::Unavailable => google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ),
        Fault::Internal => google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        ),
        Fault::Status(code, status, message) => google_error(
            StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            status,
            message,
        ),
    }
}

fn handle(
    state: &Arc<Mutex<Inner>>,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut g = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    advance_by_time(&mut g);
    let path = uri.path().to_owned();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let authorized = bearer.as_ref().is_some_and(|t| g.tokens.contains(t));
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let idx = g.requests.len();
    g.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorized,
        body: parsed.clone(),
        status: 0,
    });
    let kind = classify(&method, &path);
    let fault = match g
        .faults
        .iter()
        .position(|r| r.remaining > 0 && (r.on == On::Any || r.on == kind))
    {
        Some(i) => {
            let rule = &mut g.faults[i];
            rule.remaining -= 1;
            let f = rule.fault.clone();
            if rule.remaining == 0 {
                g.faults.remove(i);
            }
            Some(f)
        }
        None => None,
    };
    let resp = match fault {
        Some(f) => fault_response(&f),
        None => route(
            &mut g, &method, uri, headers, body, parsed, authorized, kind,
        ),
    };
    if let Some(r) = g.requests.get_mut(idx) {
        r.status = resp.status().as_u16();
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn route(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    parsed: Option<Value>,
    authorized: bool,
    kind: On,
) -> Response {
    let path = uri.path();
    if kind == On::Token {
        return token_endpoint(g, method, path, headers, body);
    }
    if path == "/" && headers.get("metadata-flavor").is_some() {
        return ([("metadata-flavor", "Google")], "").into_response();
    }
    if path == "/oidc" {
        return oidc_endpoint(g, headers);
    }
    let Some(name) = path.strip_prefix("/v1/") else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no such method: {path}"),
        );
    };
    if !authorized {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    let name = name.to_owned();
    match (method.clone(), kind) {
        (Method::GET, On::GetOperation) => {
            let pending = g.pending_polls;
            let running = g.running_polls;
            let Some(op) = g.operations.get_mut(&name) else {
                return google_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!("Operation \"{name}\" not found."),
                );
            };
            op.polls += 1;
            let finish_now = !op.done && op.polls > pending + running;
            if finish_now {
                finish(g, &name);
            }
            let id = name.rsplit('/').next().unwrap_or("").to_owned();
            match g.operations.get(&name) {
                Some(op) => json_ok(&operation_json(g, &name, op, &id)),
                None => google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "gone"),
            }
        }
        (Method::GET, On::GetCluster) => match g.clusters.get(&name) {
            Some(c) => json_ok(&c.body),
            None => google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Not found: {name}."),
            ),
        },
        (Method::PUT, On::Update) => update(g, &name, parsed),
        (Method::GET, On::ListClusters) => list(g, &name),
        _ => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no such method: {method} {path}"),
        ),
    }
}

/// `clusters.list` of `projects/{p}/locations/{l}/clusters`: the project's clusters in that
/// location (`-`: in every location), by name, without those of unreachable locations, which
/// `missingZones` names.
fn list(g: &mut Inner, name: &str) -> Response {
    let parts: Vec<&str> = name.split('/').collect();
    let ["projects", project, "locations", location, "clusters"] = parts.as_slice() else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no such method: GET /v1/{name}"),
        );
    };
    let prefix = format!("projects/{project}/locations/");
    let mut found: Vec<(&String, &ClusterEntry)> = g
        .clusters
        .iter()
        .filter(|(key, _)| {
            let Some(rest) = key.strip_prefix(&prefix) else {
                return false;
            };
            let at = rest.split('/').next().unwrap_or("");
            (*location == "-" || at == *location) && !g.missing_zones.iter().any(|z| z == at)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(b.0));
    let clusters: Vec<Value> = found.into_iter().map(|(_, c)| c.body.clone()).collect();
    let mut v = json!({});
    if !clusters.is_empty() {
        v["clusters"] = Value::Array(clusters);
    }
    let missing: Vec<&String> = g
        .missing_zones
        .iter()
        .filter(|z| *location == "-" || z.as_str() == *location)
        .collect();
    if !missing.is_empty() {
        v["missingZones"] = json!(missing);
    }
    json_ok(&v)
}

fn invalid(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

fn update(g: &mut Inner, name: &str, body: Option<Value>) -> Response {
    if !g.clusters.contains_key(name) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Not found: {name}."),
        );
    }
    let Some(update) = body
        .as_ref()
        .and_then(|b| b.get("update"))
        .and_then(Value::as_object)
    else {
        return invalid("Invalid JSON payload: `update` is required.");
    };
    let fields: Vec<&String> = update.keys().filter(|k| *k != "etag").collect();
    if fields.len() != 1 {
        return invalid(&format!(
            "Exactly one update can be applied to a cluster with each request; got {}: {:?}.",
            fields.len(),
            fields
        ));
    }
    let config = match fields[0].as_str() {
        "desiredControlPlaneEndpointsConfig" => {
            let d = &update["desiredControlPlaneEndpointsConfig"];
            match d.pointer("/ipEndpointsConfig/authorizedNetworksConfig") {
                Some(c) => c.clone(),
                None => {
                    return invalid(
                        "The fake supports only ipEndpointsConfig.authorizedNetworksConfig in desiredControlPlaneEndpointsConfig.",
                    );
                }
            }
        }
        "desiredMasterAuthorizedNetworksConfig" => {
            update["desiredMasterAuthorizedNetworksConfig"].clone()
        }
        other => return invalid(&format!("The fake does not support updating {other}.")),
    };
    // Other triggers: another client writes right now.
    let mut i = 0;
    while i < g.on_next_update.len() {
        if g.on_next_update[i].0 == name {
            let (_, f) = g.on_next_update.remove(i);
            if let Some(c) = g.clusters.get_mut(name) {
                f(&mut c.body);
                bump_etag(c);
            }
        } else {
            i += 1;
        }
    }
    let Some(c) = g.clusters.get(name) else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", name);
    };
    if let Some(op) = &c.operation {
        return google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            &format!("Cluster is running incompatible operation {op}."),
        );
    }
    if let Some(etag) = update.get("etag").and_then(Value::as_str)
        && c.body.get("etag").and_then(Value::as_str) != Some(etag)
    {
        return google_error(
            StatusCode::CONFLICT,
            "ABORTED",
            "Cluster etag does not match the current etag. Re-read the cluster and try again.",
        );
    }
    if let Err(m) = validate_networks(&config, &c.body) {
        return invalid(&m);
    }
    let id = format!(
        "operation-{}-{:08x}",
        1_764_763_200_000u64 + g.next_id,
        g.next_id
    );
    g.next_id += 1;
    let location_path = name.split("/clusters/").next().unwrap_or("").to_owned();
    let key = format!("{location_path}/operations/{id}");
    let fail = g.fail_next_operation.take();
    if let Some(c) = g.clusters.get_mut(name) {
        c.operation = Some(id.clone());
        c.body["status"] = Value::String("RECONCILING".into());
    }
    let op = Op {
        cluster: name.to_owned(),
        location_path,
        polls: 0,
        started: Instant::now(),
        config,
        fail,
        done: false,
        error: None,
        foreign: false,
    };
    let v = operation_json(g, &key, &op, &id);
    g.operations.insert(key, op);
    json_ok(&v)
}

/// The limits and formats GKE enforces on an authorized networks config.
fn validate_networks(config: &Value, cluster: &Value) -> Result<(), String> {
    let Some(obj) = config.as_object() else {
        return Err("authorizedNetworksConfig must be an object.".into());
    };
    let blocks = match obj.get("cidrBlocks") {
        None => Vec::new(),
        Some(Value::Array(b)) => b.clone(),
        Some(_) => return Err("cidrBlocks must be a list.".into()),
    };
    let private = cluster
        .pointer("/controlPlaneEndpointsConfig/ipEndpointsConfig/enablePublicEndpoint")
        .and_then(Value::as_bool)
        == Some(false)
        || cluster
            .pointer("/privateClusterConfig/enablePrivateEndpoint")
            .and_then(Value::as_bool)
            == Some(true);
    let max = if private {
        MAX_BLOCKS_PRIVATE
    } else {
        MAX_BLOCKS_PUBLIC
    };
    if blocks.len() > max {
        return Err(format!(
            "Master authorized networks: {} CIDR blocks exceeds the limit of {max}.",
            blocks.len()
        ));
    }
    for b in &blocks {
        let Some(cidr) = b.get("cidrBlock").and_then(Value::as_str) else {
            return Err("Every CIDR block needs cidrBlock.".into());
        };
        check_cidr(cidr).map_err(|m| format!("Invalid master authorized networks: {cidr}: {m}"))?;
        let extra: Vec<&String> = b
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| *k != "cidrBlock" && *k != "displayName")
                    .collect()
            })
            .unwrap_or_default();
        if !extra.is_empty() {
            return Err(format!("Unknown field(s) in a CIDR block: {extra:?}."));
        }
    }
    Ok(())
}

/// `a.b.c.d/n` or `x::/n`, host bits zero.
fn check_cidr(text: &str) -> Result<(), String> {
    let (addr, len) = text.split_once('/').ok_or("not in CIDR notation")?;
    let addr: IpAddr = addr.parse().map_err(|_| "not an IP address")?;
    let len: u32 = len.parse().map_err(|_| "not a prefix length")?;
    let host_bits = match addr {
        IpAddr::V4(a) => {
            if len > 32 {
                return Err("prefix length over 32".into());
            }
            let v = u32::from(a);
            len < 32 && v & (u32::MAX >> len) != 0
        }
        IpAddr::V6(a) => {
            if len > 128 {
                return Err("prefix length over 128".into());
            }
            let v = u128::from(a);
            len < 128 && v & (u128::MAX >> len) != 0
        }
    };
    if host_bits {
        return Err("host bits must be zero".into());
    }
    Ok(())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn issue(g: &mut Inner, grant: &'static str) -> String {
    let token = format!("ya29.fake-{grant}-{}", g.next_id);
    g.next_id += 1;
    g.tokens.insert(token.clone());
    g.grants.push(grant);
    token
}

fn token_answer(token: &str) -> Response {
    json_ok(&json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
}

fn token_endpoint(
    g: &mut Inner,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if path.starts_with("/computeMetadata/") {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return (
                StatusCode::FORBIDDEN,
                "Missing required header: Metadata-Flavor",
            )
                .into_response();
        }
        if *method != Method::GET
            || path != "/computeMetadata/v1/instance/service-accounts/default/token"
        {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        let t = issue(g, "metadata");
        let mut r = token_answer(&t);
        r.headers_mut().insert(
            "metadata-flavor",
            axum::http::HeaderValue::from_static("Google"),
        );
        return r;
    }
    if path.ends_with(":generateAccessToken") {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bearer.starts_with("ya29.fake-token-exchange-") || !g.tokens.contains(bearer) {
            return google_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        if !path.contains(SERVICE_ACCOUNT) {
            return google_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied.",
            );
        }
        let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let scoped = req.get("scope").and_then(Value::as_array).is_some_and(|s| {
            s.iter()
                .any(|x| x.as_str() == Some("https://www.googleapis.com/auth/cloud-platform"))
        });
        if !scoped {
            return invalid("scope must include cloud-platform.");
        }
        let t = issue(g, "impersonation");
        return json_ok(&json!({"accessToken": t, "expireTime": "2026-12-03T13:00:00Z"}));
    }
    let f = form(body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if path == "/v1/token" {
        // STS token exchange.
        if get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Invalid grant_type.",
            );
        }
        let Some((subject, _)) = g.oidc.clone() else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "No pool configured.",
            );
        };
        if get("audience") != AUDIENCE {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "The target service indicated by the \"audience\" parameters is invalid.",
            );
        }
        if get("subject_token_type") != JWT_TOKEN_TYPE || get("subject_token") != subject {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The provided subject token is invalid.",
            );
        }
        if get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
            || !get("scope").contains("https://www.googleapis.com/auth/cloud-platform")
        {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Bad requested_token_type or scope.",
            );
        }
        let t = issue(g, "token-exchange");
        return json_ok(
            &json!({"access_token": t, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3599}),
        );
    }
    // The OAuth token endpoint.
    match get("grant_type") {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let aud = format!("{}/token", g.base);
            match verify_jwt(g, get("assertion"), &aud) {
                Ok(()) => {
                    let t = issue(g, "jwt-bearer");
                    token_answer(&t)
                }
                Err(m) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &m),
            }
        }
        "refresh_token" => {
            let ok = g.refresh.as_ref().is_some_and(|(id, secret, refresh)| {
                get("client_id") == id
                    && get("client_secret") == secret
                    && get("refresh_token") == refresh
            });
            if ok {
                let t = issue(g, "refresh_token");
                token_answer(&t)
            } else {
                oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request")
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type.",
        ),
    }
}

/// Check a JWT-bearer assertion: RS256 over `header.claims` with the service account's key,
/// `iss`, `aud`, the cloud-platform `scope`, and a current `iat`/`exp`.
fn verify_jwt(g: &Inner, jwt: &str, aud: &str) -> Result<(), String> {
    let Some(sa) = &g.service_account else {
        return Err("no service account key was issued".into());
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err("the assertion is not a JWT".into());
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("bad JWT header")?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("alg must be RS256".into());
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "bad JWT signature encoding")?;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        &sa.public_key,
    );
    key.verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    let claims: Value = URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("bad JWT claims")?;
    let now = unix_now();
    let field = |k: &str| claims.get(k).cloned().unwrap_or(Value::Null);
    if field("iss").as_str() != Some(sa.email.as_str()) {
        return Err("iss is not the service account".into());
    }
    if field("aud").as_str() != Some(aud) {
        return Err(format!("aud must be {aud}"));
    }
    if !field("scope").as_str().is_some_and(|s| {
        s.split(' ')
            .any(|x| x == "https://www.googleapis.com/auth/cloud-platform")
    }) {
        return Err("scope must include cloud-platform".into());
    }
    let iat = field("iat").as_u64().unwrap_or(0);
    let exp = field("exp").as_u64().unwrap_or(0);
    if iat > now + 60 || exp <= now || exp > iat + 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    Ok(())
}

fn oidc_endpoint(g: &mut Inner, headers: &HeaderMap) -> Response {
    let Some((token, request_token)) = g.oidc.clone() else {
        return (StatusCode::NOT_FOUND, "no OIDC issuer").into_response();
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(request_token.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad request token").into_response();
    }
    json_ok(&json!({"count": 1, "value": token}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rules() {
        for ok in [
            "203.0.113.0/24",
            "10.0.0.0/8",
            "2001:db8::/32",
            "1.2.3.4/32",
            "0.0.0.0/0",
        ] {
            assert!(check_cidr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "203.0.113.1/24",
            "2001:db8::1/32",
            "1.2.3.4",
            "1.2.3.4/33",
            "x/8",
        ] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn form_decoding() {
        let f = form(b"a=b%2Fc&scope=x+y&bad=%zz");
        assert_eq!(f["a"], "b/c");
        assert_eq!(f["scope"], "x y");
        assert_eq!(f["bad"], "%zz");
    }
}
