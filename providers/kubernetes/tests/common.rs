//! Helpers: providers bound to the test cluster, an admin client for hand edits, and a
//! proxy in front of the API server that records writes and injects 429/500 answers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rangekeeper_provider::{Provider, RangeSet, TargetConfig, cidr};
use rangekeeper_test_support::kube::{ControlPlane, KubeUser};
use serde_json::{Value, json};

pub fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
}

pub fn config(name: &str, fields: Value) -> TargetConfig {
    TargetConfig {
        name: name.to_owned(),
        base_dir: PathBuf::from("/"),
        fields: fields.as_object().unwrap().clone(),
    }
}

/// A `netpol` provider for `name` with `fields` (the admin kubeconfig unless given).
pub fn netpol(cp: &ControlPlane, name: &str, mut fields: Value) -> Box<dyn Provider> {
    if fields.get("kubeconfig").is_none() {
        fields["kubeconfig"] = json!(cp.kubeconfig());
    }
    rangekeeper_provider_kubernetes::netpol_factory(&config(name, fields)).unwrap()
}

pub fn calico(cp: &ControlPlane, name: &str, mut fields: Value) -> Box<dyn Provider> {
    if fields.get("kubeconfig").is_none() {
        fields["kubeconfig"] = json!(cp.kubeconfig());
    }
    rangekeeper_provider_kubernetes::calico_factory(&config(name, fields)).unwrap()
}

/// The shared control plane with Calico's CRDs and a FelixConfiguration CRD installed.
pub fn cluster() -> &'static ControlPlane {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let cp = ControlPlane::shared();
    READY.get_or_init(|| {
        cp.install_calico_crds();
        cp.apply_yaml(FELIX_CRD);
        serving(
            cp,
            &[
                "/apis/projectcalico.org/v3/globalnetworkpolicies",
                "/apis/projectcalico.org/v3/hostendpoints",
                "/apis/projectcalico.org/v3/felixconfigurations",
                "/apis/crd.projectcalico.org/v1/globalnetworkpolicies",
                "/apis/crd.projectcalico.org/v1/hostendpoints",
            ],
        );
    });
    cp
}

/// Wait until each collection answers a LIST: a CRD reported Established may still answer
/// 429 "storage is (re)initializing" for a moment, and the providers make one attempt per
/// call (the binary's retry policy is not in these tests).
pub fn serving(cp: &ControlPlane, paths: &[&str]) {
    for path in paths {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match cp.request("GET", path, None, None) {
                Ok((200, _)) => break,
                other if std::time::Instant::now() > deadline => {
                    panic!("{path} is not served after 30s: {other:?}")
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }
}

/// A namespace of the test's own.
pub fn namespace(cp: &ControlPlane, name: &str) {
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    ));
}

/// FelixConfiguration is not among the CRDs of shared/data/k8s: a minimal one, so the
/// failsafe-port check reads a real object through the real API server.
pub const FELIX_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: felixconfigurations.projectcalico.org
spec:
  group: projectcalico.org
  scope: Cluster
  names: {kind: FelixConfiguration, listKind: FelixConfigurationList, plural: felixconfigurations, singular: felixconfiguration}
  versions:
    - name: v3
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

/// An admin client for what a person or another tool does by hand.
pub struct Admin {
    client: kube::Client,
}

impl Admin {
    pub async fn new(cp: &ControlPlane) -> Admin {
        let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        Admin {
            client: kube::Client::try_from(cfg).unwrap(),
        }
    }

    async fn send(
        &self,
        method: http::Method,
        uri: &str,
        ct: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        use http_body_util::BodyExt;
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ct)
            .body(kube::client::Body::from(body))
            .unwrap();
        let resp = self.client.send(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str) -> Option<Value> {
        let (s, v) = self
            .send(http::Method::GET, path, "application/json", None)
            .await;
        match s {
            200 => Some(v),
            404 => None,
            _ => panic!("GET {path}: {s} {v}"),
        }
    }

    /// `kubectl edit`: an update (PUT) as field manager `kubectl-edit`.
    pub async fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut obj = self.get(path).await.unwrap();
        f(&mut obj);
        let (s, v) = self
            .send(
                http::Method::PUT,
                &format!("{path}?fieldManager=kubectl-edit"),
                "application/json",
                Some(&obj),
            )
            .await;
        assert_eq!(s, 200, "PUT {path}: {v}");
    }

    /// A server-side apply as another field manager (Argo CD, Flux).
    pub async fn apply_as(
        &self,
        manager: &str,
        path: &str,
        obj: &Value,
        force: bool,
    ) -> (u16, Value) {
        self.send(
            http::Method::PATCH,
            &format!("{path}?fieldManager={manager}&force={force}"),
            "application/apply-patch+yaml",
            Some(obj),
        )
        .await
    }

    pub async fn create(&self, collection: &str, obj: &Value) {
        let (s, v) = self
            .send(
                http::Method::POST,
                collection,
                "application/json",
                Some(obj),
            )
            .await;
        assert!(s == 201 || s == 200, "POST {collection}: {s} {v}");
    }

    pub async fn merge_patch(&self, path: &str, patch: &Value) {
        let (s, v) = self
            .send(
                http::Method::PATCH,
                path,
                "application/merge-patch+json",
                Some(patch),
            )
            .await;
        assert_eq!(s, 200, "PATCH {path}: {v}");
    }

    pub async fn delete(&self, path: &str) {
        let (s, v) = self
            .send(http::Method::DELETE, path, "application/json", None)
            .await;
        assert!(s == 200 || s == 202, "DELETE {path}: {s} {v}");
    }
}

pub fn netpol_path(ns: &str, name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}")
}

pub fn gnp_path(name: &str) -> String {
    format!("/apis/projectcalico.org/v3/globalnetworkpolicies/{name}")
}

/// A plain-HTTP proxy in front of the API server: forwards every request (with its bearer
/// token), records the bodies of real writes (not dry runs), and answers every request with
/// an injected status while one is set.
pub struct Proxy {
    pub addr: SocketAddr,
    pub fault: Arc<AtomicU16>,
    /// Requests answered with the injected fault.
    pub faulted: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
    pub sent: Arc<Mutex<Vec<Value>>>,
    _rt: std::thread::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    fault: Arc<AtomicU16>,
    faulted: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    sent: Arc<Mutex<Vec<Value>>>,
}

impl Proxy {
    pub fn start(cp: &ControlPlane) -> Proxy {
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(cp.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let state = ProxyState {
            upstream: cp.server_url().to_owned(),
            http,
            fault: Arc::new(AtomicU16::new(0)),
            faulted: Arc::new(AtomicUsize::new(0)),
            writes: Arc::new(AtomicUsize::new(0)),
            sent: Arc::new(Mutex::new(Vec::new())),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, faulted, writes, sent) = (
            state.fault.clone(),
            state.faulted.clone(),
            state.writes.clone(),
            state.sent.clone(),
        );
        let rt = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().fallback(forward).with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Proxy {
            addr,
            fault,
            faulted,
            writes,
            sent,
            _rt: rt,
        }
    }

    /// A kubeconfig for the proxy (plain HTTP on loopback) with the admin token.
    pub fn kubeconfig(&self, cp: &ControlPlane, dir: &Path) -> PathBuf {
        let path = dir.join("proxy.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: proxy\n  cluster:\n    server: http://{}\ncontexts:\n- name: proxy\n  context: {{cluster: proxy, user: admin}}\ncurrent-context: proxy\nusers:\n- name: admin\n  user:\n    token: {}\n",
                self.addr,
                cp.admin_token()
            ),
        )
        .unwrap();
        path
    }
}

async fn forward(
    axum::extract::State(s): axum::extract::State<ProxyState>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let fault = s.fault.load(Ordering::SeqCst);
    if fault != 0 {
        s.faulted.fetch_add(1, Ordering::SeqCst);
        let status = axum::http::StatusCode::from_u16(fault).unwrap();
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": if fault == 429 { "too many requests, please try again later" } else { "etcdserver: request timed out" },
            "reason": if fault == 429 { "TooManyRequests" } else { "InternalError" },
            "code": fault,
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if fault == 429 {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("7"));
        }
        return resp;
    }
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let bytes = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap();
    let query = uri.query().unwrap_or_default();
    if matches!(method.as_str(), "PATCH" | "PUT" | "POST" | "DELETE")
        && !query.contains("dryRun=All")
    {
        s.writes.fetch_add(1, Ordering::SeqCst);
        if method == "PATCH" {
            s.sent
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
        }
    }
    let url = format!(
        "{}{}",
        s.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut out = s.http.request(
        reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap(),
        url,
    );
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            out = out.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = out.body(bytes.to_vec()).send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let mut builder = axum::http::Response::builder().status(status);
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" && k != "content-length" {
            builder = builder.header(k.as_str(), v.as_bytes());
        }
    }
    let body = resp.bytes().await.unwrap();
    builder.body(axum::body::Body::from(body)).unwrap()
}

/// A kubeconfig whose user runs an exec credential plugin (a shell script printing an
/// ExecCredential with the admin token), as EKS/AKS/GKE kubeconfigs do.
pub fn exec_kubeconfig(cp: &ControlPlane, dir: &Path, token: &str) -> PathBuf {
    let script = dir.join("credential-plugin.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# An exec credential plugin: prints an ExecCredential on stdout.\necho \"called $RK_PLUGIN_MARK\" >> \"{log}\"\ncat <<'EOF'\n{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}\nEOF\n",
            log = dir.join("plugin.log").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("exec.kubeconfig");
    cp.write_kubeconfig(
        &path,
        KubeUser::Exec {
            command: script.display().to_string(),
            args: vec![],
            env: vec![("RK_PLUGIN_MARK".to_owned(), "yes".to_owned())],
        },
    );
    path
}
