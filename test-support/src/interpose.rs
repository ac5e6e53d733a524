//! A plain-HTTP proxy on 127.0.0.1 in front of a [`ControlPlane`], for tests that must act
//! between two requests of the client under test: a hook runs just before the first real
//! write (not a dry run) to one path is forwarded, so another writer's edit lands between the
//! client's read and its write, exactly in the window a compare-and-swap must guard. Every
//! answer's status is recorded, so a test can tell that the server really refused a write.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::kube::ControlPlane;

type Hook = Box<dyn FnOnce() + Send>;

/// One request the proxy forwarded and the status the API server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub dry_run: bool,
    pub status: u16,
}

#[derive(Clone)]
struct State {
    upstream: String,
    http: reqwest::Client,
    hook: Arc<Mutex<Option<(String, Hook)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// The proxy; it serves until the test process ends.
pub struct Interposer {
    addr: std::net::SocketAddr,
    state: State,
}

impl Interposer {
    pub fn start(cp: &ControlPlane) -> Interposer {
        let cert = reqwest::Certificate::from_pem(cp.ca_pem().as_bytes())
            .unwrap_or_else(|e| panic!("the control plane's CA: {e}"));
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .unwrap_or_else(|e| panic!("an HTTP client for the proxy: {e}"));
        let state = State {
            upstream: cp.server_url().to_owned(),
            http,
            hook: Arc::new(Mutex::new(None)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("binding the proxy: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the proxy's address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("the proxy's listener: {e}"));
        let served = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("the proxy's runtime: {e}"));
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .unwrap_or_else(|e| panic!("the proxy's listener: {e}"));
                let app = axum::Router::new().fallback(forward).with_state(served);
                let _ = axum::serve(listener, app).await;
            });
        });
        Interposer { addr, state }
    }

    /// Run `hook` just before the first real write (PATCH, PUT, POST or DELETE without
    /// `dryRun`) to `path` is forwarded; once.
    pub fn before_write(&self, path: &str, hook: impl FnOnce() + Send + 'static) {
        if let Ok(mut h) = self.state.hook.lock() {
            *h = Some((path.to_owned(), Box::new(hook)));
        }
    }

    /// Whether the hook has run.
    pub fn hook_ran(&self) -> bool {
        self.state.hook.lock().is_ok_and(|h| h.is_none())
    }

    /// Every request forwarded so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// A kubeconfig for the proxy (plain HTTP on loopback) with the admin token.
    pub fn write_kubeconfig(&self, cp: &ControlPlane, path: &Path) {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "interposed", "cluster": {"server": format!("http://{}", self.addr)}}],
            "users": [{"name": "admin", "user": {"token": cp.admin_token()}}],
            "contexts": [{"name": "interposed", "context": {"cluster": "interposed", "user": "admin"}}],
            "current-context": "interposed",
        });
        std::fs::write(path, config.to_string())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

async fn forward(
    axum::extract::State(s): axum::extract::State<State>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let path = uri.path().to_owned();
    let dry_run = uri.query().unwrap_or_default().contains("dryRun=All");
    let write = matches!(method.as_str(), "PATCH" | "PUT" | "POST" | "DELETE");
    if write && !dry_run {
        let hook = s.hook.lock().ok().and_then(|mut h| match h.as_ref() {
            Some((p, _)) if *p == path => h.take(),
            _ => None,
        });
        if let Some((_, hook)) = hook {
            // The hook makes its own blocking requests to the API server.
            let _ = tokio::task::spawn_blocking(hook).await;
        }
    }
    let url = format!(
        "{}{}",
        s.upstream,
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut out = s.http.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET),
        url,
    );
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let (status, resp_headers, body) = match out.body(bytes.to_vec()).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.unwrap_or_default())
        }
        Err(e) => (
            502,
            reqwest::header::HeaderMap::new(),
            e.to_string().into_bytes().into(),
        ),
    };
    if let Ok(mut seen) = s.seen.lock() {
        seen.push(Seen {
            method: method.to_string(),
            path,
            dry_run,
            status,
        });
    }
    let mut builder = axum::http::Response::builder().status(status);
    for (k, v) in &resp_headers {
        if k != "transfer-encoding" && k != "content-length" {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
    }
    builder
        .body(axum::body::Body::from(body))
        .unwrap_or_else(|_| axum::http::Response::new(axum::body::Body::empty()))
}
