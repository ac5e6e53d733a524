//! What the tests run against: moto's server (a local EC2 emulator, PyPI `moto[server]`)
//! started on 127.0.0.1 on a free port, and a small HTTP proxy in front of it that counts the
//! EC2 actions it forwards and can be switched to answer as EC2 does when it throttles
//! (`RequestLimitExceeded`), is unavailable (503) or refuses a permission
//! (`UnauthorizedOperation`): moto has no fault injection for EC2.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rangekeeper_provider::{RangeSet, TargetConfig};
use rangekeeper_provider_aws_sg::{SgProvider, SgTarget, Tuning, configure};

/// A moto server on 127.0.0.1, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `RANGEKEEPER_MOTO_SERVER`, the repository's `.venv`, or `moto_server` on `PATH`.
fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RANGEKEEPER_MOTO_SERVER") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
}

/// Start moto, or `None` (skip) when it is not installed. Under `CI=true` a missing moto fails.
pub fn start_moto() -> Option<Moto> {
    let Some(bin) = moto_binary() else {
        let msg =
            "moto_server not found (set RANGEKEEPER_MOTO_SERVER or run scripts/setup/40-moto.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; CI=true requires it");
        }
        eprintln!("SKIP: {msg}");
        return None;
    };
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moto_server exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "moto_server did not listen on {addr} within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Moto {
        child,
        endpoint: format!("http://{addr}"),
    })
}

/// What the proxy answers instead of forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 503 with EC2's `RequestLimitExceeded` error body.
    Throttle,
    /// HTTP 503 with a load balancer's HTML page (no EC2 error body at all).
    Unavailable,
    /// HTTP 500 with EC2's `InternalError` body.
    Internal,
    /// HTTP 403 with EC2's `UnauthorizedOperation` body.
    Unauthorized,
}

#[derive(Debug)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    /// The fault, and the one action it applies to (`None`: every action).
    fault: Mutex<Option<(Fault, Option<&'static str>)>>,
    actions: Mutex<Vec<String>>,
}

/// The proxy in front of moto, on its own thread and runtime (so blocking tests that run
/// the binary can use it too).
pub struct Proxy {
    pub endpoint: String,
    state: Arc<ProxyState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Proxy {
    pub fn start(moto: &Moto) -> Proxy {
        let state = Arc::new(ProxyState {
            upstream: moto.endpoint.clone(),
            http: reqwest::Client::new(),
            fault: Mutex::new(None),
            actions: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Proxy {
            endpoint,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Answer every request with `fault` until cleared.
    pub fn fail(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = Some((fault, None));
    }

    /// Answer only `action` with `fault` until cleared.
    pub fn fail_action(&self, action: &'static str, fault: Fault) {
        *self.state.fault.lock().unwrap() = Some((fault, Some(action)));
    }

    pub fn clear(&self) {
        *self.state.fault.lock().unwrap() = None;
    }

    /// Every EC2 action received so far, in order.
    pub fn actions(&self) -> Vec<String> {
        self.state.actions.lock().unwrap().clone()
    }

    /// The writes received so far (authorize and revoke calls).
    pub fn writes(&self) -> usize {
        self.actions()
            .iter()
            .filter(|a| a.contains("SecurityGroupIngress"))
            .count()
    }
}

fn ec2_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors>\
         <RequestID>5f2a7c1e-0000-4000-8000-000000000000</RequestID></Response>"
    );
    (status, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

async fn handle(
    State(s): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body);
    let action = text
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("?")
        .to_owned();
    s.actions.lock().unwrap().push(action.clone());
    let fault = *s.fault.lock().unwrap();
    if let Some((fault, only)) = fault
        && only.is_none_or(|a| a == action)
    {
        return match fault {
            Fault::Throttle => ec2_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            Fault::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "text/html")],
                "<html><body><h1>503 Service Unavailable</h1></body></html>",
            )
                .into_response(),
            Fault::Internal => ec2_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "An internal error has occurred",
            ),
            Fault::Unauthorized => ec2_error(
                StatusCode::FORBIDDEN,
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
            ),
        };
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = headers;
    headers.remove("host");
    headers.remove("content-length");
    let req = s
        .http
        .request(method, format!("{}{path}", s.upstream))
        .headers(headers)
        .body(body.to_vec());
    match req.send().await {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get("content-type").cloned();
            let bytes = r.bytes().await.unwrap_or_default();
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            if let Some(ct) = ct {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Short timeouts for a local emulator.
pub fn fast() -> Tuning {
    Tuning {
        connect_timeout: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(15),
        call_margin: Duration::from_secs(1),
    }
}

/// A client for `endpoint` with fake credentials in the client config (not the process
/// environment) and rangekeeper's timeouts.
pub fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_ec2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint);
    Client::from_conf(configure(conf, &fast()).build())
}

/// Create a security group (in moto's default VPC) and return its ID.
pub async fn create_group(c: &Client, name: &str) -> String {
    c.create_security_group()
        .group_name(name)
        .description("API servers")
        .send()
        .await
        .expect("create a security group in moto")
        .group_id()
        .unwrap()
        .to_owned()
}

/// Add one inbound rule by hand, as a person with the console would.
pub async fn add_rule(
    c: &Client,
    group: &str,
    proto: &str,
    ports: (i32, i32),
    cidr: &str,
    desc: &str,
) {
    let mut perm = IpPermission::builder()
        .ip_protocol(proto)
        .from_port(ports.0)
        .to_port(ports.1);
    perm = if cidr.contains(':') {
        perm.ipv6_ranges(
            Ipv6Range::builder()
                .cidr_ipv6(cidr)
                .description(desc)
                .build(),
        )
    } else {
        perm.ip_ranges(IpRange::builder().cidr_ip(cidr).description(desc).build())
    };
    c.authorize_security_group_ingress()
        .group_id(group)
        .ip_permissions(perm.build())
        .send()
        .await
        .expect("add a rule by hand");
}

/// Every inbound rule of the group as `(id, "tcp 6443 203.0.113.0/24", description)`.
pub async fn rules(c: &Client, group: &str) -> Vec<(String, String, String)> {
    let out = c
        .describe_security_group_rules()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(group)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut v: Vec<(String, String, String)> = out
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() != Some(true))
        .map(|r| {
            (
                r.security_group_rule_id().unwrap_or_default().to_owned(),
                format!(
                    "{} {} {}",
                    r.ip_protocol().unwrap_or_default(),
                    r.from_port().unwrap_or_default(),
                    r.cidr_ipv4().or(r.cidr_ipv6()).unwrap_or_default()
                ),
                r.description().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

/// The rules of the group without their IDs, as `tcp 6443 203.0.113.0/24 [desc]`.
pub async fn rule_lines(c: &Client, group: &str) -> Vec<String> {
    rules(c, group)
        .await
        .into_iter()
        .map(|(_, r, d)| format!("{r} [{d}]"))
        .collect()
}

pub fn target(name: &str, fields: serde_json::Value) -> SgTarget {
    SgTarget::from_config(&TargetConfig {
        name: name.into(),
        base_dir: ".".into(),
        fields: fields.as_object().cloned().unwrap(),
    })
    .unwrap()
}

pub fn provider(c: &Client, name: &str, fields: serde_json::Value) -> SgProvider {
    SgProvider::with_client(target(name, fields), c.clone()).with_tuning(fast())
}

pub fn set(s: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        s.iter()
            .map(|c| rangekeeper_provider::cidr::parse(c).unwrap().net),
    )
}
