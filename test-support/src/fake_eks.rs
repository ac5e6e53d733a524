//! A fake Amazon EKS REST API on 127.0.0.1, for fleet benchmarks and tests that need many
//! clusters quickly (moto's server holds them in Python, one request at a time): serves
//! `DescribeCluster` (`GET /clusters/{name}`) and `ListClusters` (`GET /clusters`, paged with
//! `maxResults` and `nextToken`) with EKS's JSON shapes, keeps clusters per region (the region
//! of the request's SigV4 credential scope, as EKS's regional endpoints do), answers errors as
//! EKS does (status, `x-amzn-ErrorType`, `{"message": ...}`), requires a SigV4
//! `Authorization` header with the expected access key (the signature itself is not checked),
//! can add latency to every request, and records every request.
//!
//! Writes (`UpdateClusterConfig`, `TagResource`, ...) are not served: they are answered with
//! `InvalidRequestException` naming the operation, so a test that needs them notices.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::quota::Quota;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The path as sent (without the query).
    pub path: String,
    /// The region of the SigV4 credential scope (empty when there was none).
    pub region: String,
    /// The status answered.
    pub status: u16,
}

struct Inner {
    access_key: String,
    /// (region, name) -> the `cluster` object DescribeCluster returns.
    clusters: HashMap<(String, String), Value>,
    requests: Vec<Recorded>,
    latency: Duration,
}

/// The running fake. Dropping it stops the server.
pub struct FakeEks {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    quota: Quota,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DescribeCluster `cluster` object as EKS returns it for an ACTIVE IPv4 cluster with a
/// public endpoint (the shape of the example in the EKS API reference), with `name`,
/// `arn`, `endpoint` and `publicAccessCidrs` filled in.
pub fn example_cluster(region: &str, name: &str, public_access_cidrs: &[&str]) -> Value {
    json!({
        "name": name,
        "arn": format!("arn:aws:eks:{region}:012345678910:cluster/{name}"),
        "createdAt": 1_700_000_000.0,
        "version": "1.33",
        "endpoint": format!("https://A0DCCD80A04F01705DD065655C30CC3D.yl4.{region}.eks.amazonaws.com"),
        "roleArn": "arn:aws:iam::012345678910:role/eks-cluster-role",
        "resourcesVpcConfig": {
            "subnetIds": ["subnet-6782e71e", "subnet-e7e761ac"],
            "securityGroupIds": ["sg-6979fe18"],
            "clusterSecurityGroupId": "sg-0d9b0a3c1f1e2d3c4",
            "vpcId": "vpc-950809ec",
            "endpointPublicAccess": true,
            "endpointPrivateAccess": true,
            "publicAccessCidrs": public_access_cidrs,
        },
        "kubernetesNetworkConfig": {"serviceIpv4Cidr": "10.100.0.0/16", "ipFamily": "ipv4"},
        "logging": {"clusterLogging": [{"types": ["api", "audit", "authenticator", "controllerManager", "scheduler"], "enabled": false}]},
        "identity": {"oidc": {"issuer": format!("https://oidc.eks.{region}.amazonaws.com/id/A0DCCD80A04F01705DD065655C30CC3D")}},
        "status": "ACTIVE",
        "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
        "platformVersion": "eks.1",
        "tags": {},
    })
}

/// An EKS error: the status, `x-amzn-ErrorType` and a JSON body with `message` (and the
/// extra fields EKS adds, such as `clusterName`).
fn eks_error(
    status: StatusCode,
    kind: &str,
    message: &str,
    extra: Option<(&str, &str)>,
) -> Response {
    let mut body = json!({ "message": message });
    if let Some((k, v)) = extra {
        body[k] = Value::String(v.to_owned());
    }
    let mut resp = (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        v.to_string(),
    )
        .into_response()
}

impl FakeEks {
    /// Start on 127.0.0.1 with a random port; requests must be signed with `access_key`.
    pub async fn start(access_key: &str) -> std::io::Result<FakeEks> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            access_key: access_key.to_owned(),
            clusters: HashMap::new(),
            requests: Vec::new(),
            latency: Duration::ZERO,
        }));
        let state = inner.clone();
        let quota = Quota::default();
        let q = quota.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let state = state.clone();
                let quota = q.clone();
                async move {
                    // EKS limits request rates per account and region (one account here).
                    let region = credential_scope(&headers)
                        .map(|(_, r)| r)
                        .unwrap_or_default();
                    let ticket = quota.enter(&region);
                    let latency = lock(&state).latency;
                    if !latency.is_zero() {
                        tokio::time::sleep(latency).await;
                    }
                    if ticket.throttled {
                        let resp = eks_error(
                            StatusCode::TOO_MANY_REQUESTS,
                            "ThrottlingException",
                            "Rate exceeded",
                            None,
                        );
                        lock(&state).requests.push(Recorded {
                            method: method.to_string(),
                            path: uri.path().to_owned(),
                            region,
                            status: resp.status().as_u16(),
                        });
                        return resp;
                    }
                    let resp = handle(&state, &method, &uri, &headers);
                    drop(ticket);
                    resp
                }
            });
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake EKS server stopped: {e}");
            }
        });
        Ok(FakeEks {
            addr,
            inner,
            quota,
            task,
        })
    }

    /// `http://127.0.0.1:<port>` (for `AWS_ENDPOINT_URL_EKS`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve `cluster` (a DescribeCluster `cluster` object, e.g. [`example_cluster`]) as
    /// `name` in `region`.
    pub fn insert_cluster(&self, region: &str, name: &str, cluster: Value) {
        lock(&self.inner)
            .clusters
            .insert((region.to_owned(), name.to_owned()), cluster);
    }

    /// The cluster as stored now.
    pub fn cluster(&self, region: &str, name: &str) -> Option<Value> {
        lock(&self.inner)
            .clusters
            .get(&(region.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Throttle (429 `ThrottlingException`) a request that arrives while `limit` requests
    /// of its region are in flight (`None`: never).
    pub fn set_throttle(&self, limit: Option<usize>) {
        self.quota.set_limit(limit);
    }

    /// The most requests of each region that were in flight at once, throttled ones
    /// included.
    pub fn most_in_flight(&self) -> HashMap<String, usize> {
        self.quota.most_in_flight()
    }

    /// How many requests the quota throttled.
    pub fn throttled(&self) -> usize {
        self.quota.throttled()
    }

    /// Wait `latency` before serving each request (zero, the default, for none).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.inner).latency = latency;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner).requests.clear();
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The access key and region of a SigV4 `Authorization` header:
/// `AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/eks/aws4_request, SignedHeaders=..., Signature=...`.
fn credential_scope(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let cred = rest
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("Credential="))?;
    let mut parts = cred.split('/');
    let key = parts.next()?;
    let _date = parts.next()?;
    let region = parts.next()?;
    (parts.next()? == "eks" && parts.next()? == "aws4_request")
        .then(|| (key.to_owned(), region.to_owned()))
}

fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn handle(state: &Mutex<Inner>, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let mut g = lock(state);
    let scope = credential_scope(headers);
    let region = scope.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
    let resp = route(&g, method, uri, scope);
    g.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        region,
        status: resp.status().as_u16(),
    });
    resp
}

fn route(g: &Inner, method: &Method, uri: &Uri, scope: Option<(String, String)>) -> Response {
    let Some((key, region)) = scope else {
        return eks_error(
            StatusCode::FORBIDDEN,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
            None,
        );
    };
    if key != g.access_key {
        return eks_error(
            StatusCode::FORBIDDEN,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            None,
        );
    }
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["clusters"]) => list_clusters(g, uri, &region),
        (&Method::GET, ["clusters", name]) => {
            match g.clusters.get(&(region.clone(), (*name).to_owned())) {
                Some(c) => json_ok(&json!({ "cluster": c })),
                None => eks_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("No cluster found for name: {name}."),
                    Some(("clusterName", name)),
                ),
            }
        }
        _ => eks_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            &format!("the fake EKS does not serve {method} {path}"),
            None,
        ),
    }
}

/// ListClusters: the names in `region`, sorted, `maxResults` (1-100, default 100) per page,
/// `nextToken` while more remain.
fn list_clusters(g: &Inner, uri: &Uri, region: &str) -> Response {
    let max = match query_param(uri, "maxResults").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return eks_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                "maxResults must be between 1 and 100.",
                None,
            );
        }
    };
    let skip = match query_param(uri, "nextToken").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return eks_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterException",
                "The nextToken is not valid.",
                None,
            );
        }
    };
    let mut names: Vec<&str> = g
        .clusters
        .keys()
        .filter(|(r, _)| r == region)
        .map(|(_, n)| n.as_str())
        .collect();
    names.sort_unstable();
    let page: Vec<&str> = names.iter().skip(skip).take(max).copied().collect();
    let mut body = json!({ "clusters": page });
    if skip + max < names.len() {
        body["nextToken"] = Value::String((skip + max).to_string());
    }
    json_ok(&body)
}
