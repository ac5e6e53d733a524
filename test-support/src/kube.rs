//! A real Kubernetes control plane for tests: `etcd` and `kube-apiserver` (built from their Go
//! modules by `scripts/setup/60-kube-peers.sh`) started on free 127.0.0.1 ports with a
//! generated CA, serving and client certificates, static bearer tokens and service-account
//! keys, the way controller-runtime's envtest starts them.
//!
//! [`ControlPlane::shared`] starts one per test process on first use and tears it down when
//! the process exits (each server runs under a shell that kills it when our end of its stdin
//! pipe closes, which the kernel does for us however the test process ends). Tests that share
//! it isolate themselves by namespace or object name. [`ControlPlane::start`] gives a private
//! one, stopped on drop, for tests that stop the server or need one without some CRDs.
//!
//! The binaries are taken from `$RANGEKEEPER_KUBE_BIN_DIR`, else from the directory the setup
//! script prints with `--print-dir`.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::Value;

/// The user of a kubeconfig written by [`ControlPlane::write_kubeconfig`].
#[derive(Debug, Clone)]
pub enum KubeUser {
    /// The admin client certificate (O=system:masters).
    ClientCert,
    /// A static bearer token (see [`ControlPlane::admin_token`], [`ControlPlane::user_token`]).
    Token(String),
    /// An exec credential plugin (`client.authentication.k8s.io/v1`), as the kubeconfigs of
    /// EKS, AKS and GKE use.
    Exec {
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

/// A certificate authority for tests: issues serving and client certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `cn`.
    pub fn new(cn: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("generating a CA key: {e}"));
        let issuer = CertifiedIssuer::self_signed(params, key)
            .unwrap_or_else(|e| panic!("self-signing the test CA: {e}"));
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A TLS server certificate for `names` (IP addresses or DNS names).
    pub fn issue_server(&self, names: &[&str]) -> CertPair {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    (*n).try_into()
                        .unwrap_or_else(|e| panic!("DNS name {n:?}: {e}")),
                ),
            })
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A TLS client certificate for user `cn` in groups `orgs` (Kubernetes reads the user from
    /// CN and the groups from O).
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> CertPair {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *org);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> CertPair {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("generating a key: {e}"));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|e| panic!("signing a test certificate: {e}"));
        CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A server process under a shell that kills it when its stdin reaches end of file.
struct Supervised {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Supervised {
    /// Starts `bin`; `remove_after`, when given, is deleted once it has stopped (etcd's data
    /// directory: its preallocated write-ahead log is 64 MB).
    fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
        remove_after: Option<&Path>,
    ) -> Supervised {
        let log_file =
            fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let log_err = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cloning a log handle: {e}"));
        // The server runs under a shell that exits with it, and whose reader stops it when
        // its stdin closes (our pipe, closed by the kernel when the test process ends in any
        // way, or by `stop`).
        // (A background command's stdin is /dev/null in a script, hence fd 3.)
        // Test peers hold nothing worth a graceful stop (and an API server whose etcd went
        // first can hang in one), so they are killed outright.
        let script = r#"exec 3<&0; bin="$1"; shift; "$bin" "$@" </dev/null & pid=$!; (while read -r _ <&3; do :; done; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; [ -z "$RK_REMOVE_AFTER" ] || rm -rf "$RK_REMOVE_AFTER") & wait $pid"#;
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(name)
            .arg(bin)
            .args(args)
            .env(
                "RK_REMOVE_AFTER",
                remove_after.map(Path::as_os_str).unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        Supervised { child, name, log }
    }

    fn ensure_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}) while starting; the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log)
            );
        }
    }

    fn stop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    // The API server lists every group version it serves or skips: noise when it fails.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("Skipping API") && !l.contains("Adding GroupVersion"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port on 127.0.0.1: {e}"))
}

/// The directory holding `kube-apiserver` and `etcd`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RANGEKEEPER_KUBE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup/60-kube-peers.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--print-dir")
        .output()
        .unwrap_or_else(|e| panic!("running {} --print-dir: {e}", script.display()));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn binary(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: the Kubernetes tests need a real {name}; build it with \
             `bash scripts/setup/60-kube-peers.sh` (scripts/test.sh runs it), or point \
             RANGEKEEPER_KUBE_BIN_DIR at a directory holding kube-apiserver and etcd",
            path.display()
        );
    }
    path
}

/// A running etcd + kube-apiserver.
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    ca: TestCa,
    ca_pem: String,
    admin_cert: CertPair,
    admin_token: String,
    tokens: Vec<(String, String)>,
    kubeconfig: PathBuf,
    etcd: Supervised,
    apiserver: Supervised,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

/// Users with static tokens: (user, groups). "limited" has no group, so RBAC forbids it
/// everything until a test binds it a role.
const USERS: &[(&str, &str)] = &[("admin", "system:masters"), ("limited", "")];

impl ControlPlane {
    /// The control plane shared by every test of this process, started on first use.
    pub fn shared() -> &'static ControlPlane {
        SHARED.get_or_init(ControlPlane::start)
    }

    /// A control plane of the caller's own, stopped when dropped.
    pub fn start() -> ControlPlane {
        let bins = bin_dir();
        let etcd_bin = binary(&bins, "etcd");
        let apiserver_bin = binary(&bins, "kube-apiserver");

        let dir = std::env::temp_dir().join(format!(
            "rangekeeper-kube-{}-{}",
            std::process::id(),
            free_port()
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let write = |name: &str, text: &str| -> PathBuf {
            let path = dir.join(name);
            fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            path
        };

        let ca = TestCa::new("rangekeeper-test-ca");
        let ca_pem = ca.cert_pem();
        let serving = ca.issue_server(&["127.0.0.1", "localhost", "10.0.0.1", "kubernetes"]);
        let admin_cert = ca.issue_client("admin", &["system:masters"]);
        let sa_key = KeyPair::generate().unwrap_or_else(|e| panic!("service-account key: {e}"));

        let tokens: Vec<(String, String)> = USERS
            .iter()
            .map(|(user, _)| ((*user).to_string(), format!("{user}-{}", random_hex())))
            .collect();
        let token_csv: String = tokens
            .iter()
            .zip(USERS)
            .map(|((user, token), (_, groups))| {
                if groups.is_empty() {
                    format!("{token},{user},{user}\n")
                } else {
                    format!("{token},{user},{user},\"{groups}\"\n")
                }
            })
            .collect();

        let ca_file = write("ca.crt", &ca_pem);
        let tls_cert = write("apiserver.crt", &serving.cert_pem);
        let tls_key = write("apiserver.key", &serving.key_pem);
        let sa_pub = write("sa.pub", &sa_key.public_key_pem());
        let sa_priv = write("sa.key", &sa_key.serialize_pem());
        let token_file = write("tokens.csv", &token_csv);

        let etcd_client = free_port();
        let etcd_peer = free_port();
        let etcd_dir = dir.join("etcd");
        let etcd_args: Vec<String> = vec![
            format!("--data-dir={}", etcd_dir.display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let etcd = Supervised::spawn(
            "etcd",
            &etcd_bin,
            &etcd_args,
            dir.join("etcd.log"),
            Some(&etcd_dir),
        );

        let port = free_port();
        let server = format!("https://127.0.0.1:{port}");
        let apiserver_args: Vec<String> = vec![
            "--advertise-address=127.0.0.1".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--cert-dir={}", dir.display()),
            format!("--tls-cert-file={}", tls_cert.display()),
            format!("--tls-private-key-file={}", tls_key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            format!("--token-auth-file={}", token_file.display()),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_priv.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=RBAC".into(),
            "--allow-privileged=true".into(),
            // Loopback is not an address the endpoint reconciler may publish.
            "--endpoint-reconciler-type=none".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--enable-priority-and-fairness=false".into(),
            "--v=1".into(),
        ];
        let apiserver = Supervised::spawn(
            "kube-apiserver",
            &apiserver_bin,
            &apiserver_args,
            dir.join("kube-apiserver.log"),
            None,
        );

        let admin_token = tokens
            .iter()
            .find(|(u, _)| u == "admin")
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let kubeconfig = dir.join("kubeconfig");
        let mut cp = ControlPlane {
            dir,
            server,
            ca,
            ca_pem,
            admin_cert,
            admin_token,
            tokens,
            kubeconfig: kubeconfig.clone(),
            etcd,
            apiserver,
        };
        cp.write_kubeconfig(&kubeconfig, KubeUser::ClientCert);
        cp.etcd.ensure_running();
        cp.wait_ready(Duration::from_secs(120));
        cp
    }

    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            self.etcd.ensure_running();
            self.apiserver.ensure_running();
            match self.request("GET", "/readyz", None, None) {
                Ok((200, _)) => return,
                Ok((status, body)) => last = format!("HTTP {status}: {body}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "kube-apiserver was not ready within {limit:?} (last answer: {last}); the end of its log:\n{}",
            log_tail(&self.apiserver.log)
        );
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// The CA that signed the serving certificate and the client certificates, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The test CA itself, to issue more client certificates.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The admin kubeconfig (client certificate, O=system:masters), context `rangekeeper-test`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A bearer token of user `admin` in group `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The bearer token of a static user (`admin` or `limited`).
    pub fn user_token(&self, user: &str) -> &str {
        self.tokens
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no static user {user:?}; there are {USERS:?}"))
    }

    /// The directory holding the certificates, logs and etcd data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kube_apiserver_pid(&self) -> u32 {
        self.apiserver.child.id()
    }

    pub fn etcd_pid(&self) -> u32 {
        self.etcd.child.id()
    }

    /// Writes a kubeconfig for this cluster with `user`, context `rangekeeper-test`.
    pub fn write_kubeconfig(&self, path: &Path, user: KubeUser) {
        let user_json = match user {
            KubeUser::ClientCert => serde_json::json!({
                "client-certificate-data": b64(self.admin_cert.cert_pem.as_bytes()),
                "client-key-data": b64(self.admin_cert.key_pem.as_bytes()),
            }),
            KubeUser::Token(token) => serde_json::json!({ "token": token }),
            KubeUser::Exec { command, args, env } => serde_json::json!({
                "exec": {
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": command,
                    "args": args,
                    "env": env.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v})).collect::<Vec<_>>(),
                    "interactiveMode": "Never",
                    "provideClusterInfo": false,
                }
            }),
        };
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rangekeeper-test", "cluster": {
                "server": self.server,
                "certificate-authority-data": b64(self.ca_pem.as_bytes()),
            }}],
            "users": [{"name": "rangekeeper-test", "user": user_json}],
            "contexts": [{"name": "rangekeeper-test", "context": {
                "cluster": "rangekeeper-test",
                "user": "rangekeeper-test",
                "namespace": "default",
            }}],
            "current-context": "rangekeeper-test",
        });
        // JSON is YAML: every kubeconfig reader takes it.
        let text = serde_json::to_string_pretty(&config).unwrap_or_default();
        fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Creates or updates (server-side apply as admin, field manager `test-setup`) every
    /// document of a multi-document YAML; waits for CRDs to be Established and served.
    pub fn apply_yaml(&self, yaml: &str) {
        let docs: Vec<Value> =
            serde_saphyr::from_multiple_with_options(yaml, serde_saphyr::options! { budget: None })
                .unwrap_or_else(|e| panic!("parsing YAML to apply: {e}"));
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            self.apply_value(&doc);
        }
    }

    /// Server-side applies one object (JSON) as admin, field manager `test-setup`.
    pub fn apply_value(&self, obj: &Value) {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let ns = obj["metadata"]["namespace"].as_str();
        let path = self.object_path(api_version, kind, ns, name);
        let body = serde_json::to_string(obj).unwrap_or_default();
        match self.request(
            "PATCH",
            &format!("{path}?fieldManager=test-setup&force=true"),
            Some(("application/apply-patch+yaml", body)),
            None,
        ) {
            Ok((status, _)) if (200..300).contains(&status) => {}
            Ok((status, answer)) => panic!("applying {kind} {name}: HTTP {status}: {answer}"),
            Err(e) => panic!("applying {kind} {name}: {e}"),
        }
        if kind == "CustomResourceDefinition" {
            self.wait_crd(obj, name);
        }
    }

    fn wait_crd(&self, crd: &Value, name: &str) {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let versions: Vec<String> = crd["spec"]["versions"]
            .as_array()
            .map(|v| {
                v.iter()
                    .filter(|v| v["served"].as_bool().unwrap_or(false))
                    .filter_map(|v| v["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let established = self
                .get_json(&format!(
                    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                ))
                .map(|crd| {
                    crd["status"]["conditions"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Established" && c["status"] == "True")
                        })
                        .unwrap_or(false)
                })
                .unwrap_or(false);
            let served = established
                && versions.iter().all(|v| {
                    self.get_json(&format!("/apis/{group}/{v}"))
                        .map(|list| {
                            list["resources"]
                                .as_array()
                                .map(|r| r.iter().any(|r| r["name"] == plural))
                                .unwrap_or(false)
                        })
                        .unwrap_or(false)
                });
            // Discovery can list the resource while its storage is still initialising (the
            // collection answers 429 "storage is (re)initializing"): wait until it lists.
            let lists = served
                && versions.iter().all(|v| {
                    self.get_json(&format!("/apis/{group}/{v}/{plural}?limit=1"))
                        .is_ok()
                });
            if lists {
                return;
            }
            if Instant::now() > deadline {
                panic!("CRD {name} was not established and served within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Installs the Calico CRDs of `../shared/data/k8s` (both API groups).
    pub fn install_calico_crds(&self) {
        let dir = calico_crd_dir();
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            self.apply_yaml(&text);
        }
    }

    /// GET as admin, the body parsed as JSON.
    ///
    /// A 404 that says the *type* is not served (not that the object is missing) is asked
    /// again for up to 10 s: the API server rebuilds a custom resource's storage when its
    /// CRD's status changes, and a request in that moment is told the resource does not
    /// exist, which a test must not read as "the object is gone".
    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.request("GET", path, None, None)? {
                (200, body) => {
                    return serde_json::from_str(&body).map_err(|e| format!("{path}: {e}"));
                }
                (404, body) if type_not_served(&body) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                (status, body) => return Err(format!("GET {path}: HTTP {status}: {body}")),
            }
        }
    }

    /// One request as admin (or with `token`), on a thread of its own so that it may be
    /// called from inside a test's async runtime. Returns the status and the body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
        token: Option<&str>,
    ) -> Result<(u16, String), String> {
        let url = format!("{}{path}", self.server);
        let token = token.unwrap_or(&self.admin_token).to_string();
        let ca = self.ca_pem.clone();
        let method = method.to_string();
        let body = body.map(|(ct, b)| (ct.to_string(), b));
        std::thread::spawn(move || -> Result<(u16, String), String> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let cert =
                    reqwest::Certificate::from_pem(ca.as_bytes()).map_err(|e| e.to_string())?;
                let client = reqwest::Client::builder()
                    .tls_certs_only([cert])
                    .timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| e.to_string())?;
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
                let mut req = client.request(method, &url).bearer_auth(token);
                if let Some((ct, b)) = body {
                    req = req.header("content-type", ct).body(b);
                }
                let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
                let status = resp.status().as_u16();
                let text = resp.text().await.map_err(|e| e.to_string())?;
                Ok((status, text))
            })
        })
        .join()
        .map_err(|_| "the request thread panicked".to_string())?
    }

    /// The REST path of an object, found through API discovery.
    fn object_path(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> String {
        let base = if api_version.contains('/') {
            format!("/apis/{api_version}")
        } else {
            format!("/api/{api_version}")
        };
        let list = self
            .get_json(&base)
            .unwrap_or_else(|e| panic!("discovering {api_version}: {e}"));
        let resource = list["resources"]
            .as_array()
            .and_then(|r| {
                r.iter()
                    .find(|r| r["kind"] == kind && !r["name"].as_str().unwrap_or("/").contains('/'))
            })
            .unwrap_or_else(|| panic!("the API server serves no kind {kind} in {api_version}"));
        let plural = resource["name"].as_str().unwrap_or_default();
        let namespaced = resource["namespaced"].as_bool().unwrap_or(false);
        match (namespaced, ns) {
            (true, ns) => format!(
                "{base}/namespaces/{}/{plural}/{name}",
                ns.unwrap_or("default")
            ),
            (false, _) => format!("{base}/{plural}/{name}"),
        }
    }

    /// Stops both servers (the kubeconfig then points at a closed port).
    pub fn stop(&mut self) {
        self.apiserver.stop();
        self.etcd.stop();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
        // Kept after a failure, for its logs (the panic message names it).
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether a 404 body is the API server's "no such resource type" (a group or resource it does
/// not serve right now) rather than a missing object, whose Status names the object.
fn type_not_served(body: &str) -> bool {
    body.starts_with("404 page not found")
        || body.contains("the server could not find the requested resource")
}

/// `../shared/data/k8s`, beside the repository.
pub fn calico_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/k8s")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn random_hex() -> String {
    use std::fmt::Write as _;
    let mut buf = [0u8; 16];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: the real API server starts, authenticates the admin by token and by
    /// client certificate, forbids the limited user, and judges the Calico CRDs' objects by
    /// their schema.
    #[test]
    fn a_real_control_plane_starts_and_serves_the_calico_crds() {
        let cp = ControlPlane::shared();
        cp.install_calico_crds();
        cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: harness-check\n");
        let ns = cp
            .get_json("/api/v1/namespaces/harness-check")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ns["metadata"]["name"], "harness-check");
        let (status, body) = cp
            .request(
                "GET",
                "/api/v1/namespaces",
                None,
                Some(cp.user_token("limited")),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 403, "{body}");
        // A GlobalNetworkPolicy with an invalid action is refused by the CRD's schema.
        let bad = serde_json::json!({
            "apiVersion": "crd.projectcalico.org/v1",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "harness-bad"},
            "spec": {"ingress": [{"action": "Maybe"}]},
        });
        let (status, body) = cp
            .request(
                "PATCH",
                "/apis/crd.projectcalico.org/v1/globalnetworkpolicies/harness-bad?fieldManager=t",
                Some(("application/apply-patch+yaml", bad.to_string())),
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 422, "{body}");
        let config = fs::read_to_string(cp.kubeconfig()).unwrap_or_default();
        assert!(config.contains("client-certificate-data"));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }
}
