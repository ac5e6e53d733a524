//! `rangekeeper external-ips serve|policy|audit`: the binary's output and exit codes, the
//! webhook over TLS, and both the webhook and the generated ValidatingAdmissionPolicy called
//! by a real kube-apiserver (the test-support control plane), one table of cases driving both.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rangekeeper_test_support::kube::{ControlPlane, TestCa};
use serde_json::{Value, json};

use crate::common::{Scratch, code, rangekeeper_std, stderr, stdout};

const DECL: &str = "version: 1
sets:
  external-ips:
    - 10.20.0.0/16
    - 2001:db8:20::/48
  office: [203.0.113.0/24]
  lb-clients: [192.0.2.0/24, 198.51.100.0/24]
targets: {}
";

fn services_json() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/external-ips/services.json"),
    )
    .unwrap()
}

fn scratch() -> Scratch {
    let s = Scratch::new(DECL);
    s.write("services.json", &services_json());
    s
}

// ----- audit -----

#[test]
fn audit_of_stored_kubectl_output() {
    let s = scratch();
    let o = s.run(&[
        "external-ips",
        "audit",
        "--set",
        "external-ips",
        "--input",
        "services.json",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    insta::assert_snapshot!("audit_human", stdout(&o));

    let o = s.run(&[
        "external-ips",
        "audit",
        "--set",
        "external-ips",
        "--input",
        "services.json",
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("audit_json", v);

    let o = s.run(&[
        "external-ips",
        "audit",
        "--set",
        "lb-clients",
        "--input",
        "services.json",
        "--load-balancer",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    insta::assert_snapshot!("audit_load_balancer", stdout(&o));
}

#[test]
fn audit_from_stdin_exit_codes_and_errors() {
    let s = scratch();
    let o = s.run_stdin(
        &[
            "external-ips",
            "audit",
            "--allowed-external-ip-cidrs",
            "10.0.0.0/8,203.0.113.0/24,2001:db8::/32",
            "--input",
            "-",
        ],
        &services_json(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    insta::assert_snapshot!("audit_all_comply", stdout(&o));

    let o = s.run_stdin(
        &[
            "external-ips",
            "audit",
            "--set",
            "external-ips",
            "--input",
            "-",
        ],
        r#"{"kind":"List","items":[{"metadata":{"name":"x"},"spec":{"externalIPs":"10.0.0.1"}}]}"#,
    );
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("audit_bad_input", stderr(&o));

    let o = s.run(&[
        "external-ips",
        "audit",
        "--set",
        "external-ip",
        "--input",
        "services.json",
    ]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("audit_unknown_set", stderr(&o));

    let o = s.run(&["external-ips", "audit", "--input", "services.json"]);
    assert_eq!(code(&o), 1, "either --set or the flag is required");
}

// ----- policy -----

#[test]
fn policy_output() {
    let s = scratch();
    let o = s.run(&[
        "external-ips",
        "policy",
        "--set",
        "external-ips",
        "--exempt-namespace",
        "kube-system",
        "--exempt-group",
        "system:masters",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    insta::assert_snapshot!("policy_yaml", stdout(&o));

    let o = s.run(&[
        "external-ips",
        "policy",
        "--allowed-external-ip-cidrs",
        "",
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("policy_deny_all_json", v);
}

#[test]
fn policy_refuses_a_set_beyond_the_expression_limit() {
    let ips: Vec<String> = (0..6000)
        .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
        .collect();
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  big: [{}]\ntargets: {{}}\n",
        ips.join(", ")
    ));
    let o = s.run(&["external-ips", "policy", "--set", "big"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    insta::assert_snapshot!("policy_too_large", stderr(&o));
}

// ----- the webhook -----

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `external-ips serve` on a free loopback port, stopped on drop.
struct Webhook {
    child: Child,
    port: u16,
    metrics_port: u16,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    fn start(s: &Scratch, ca: &TestCa, extra: &[&str]) -> Webhook {
        let pair = ca.issue_server(&["127.0.0.1", "localhost"]);
        s.write("tls.crt", &pair.cert_pem);
        s.write("tls.key", &pair.key_pem);
        let port = free_port();
        let metrics_port = free_port();
        let child = rangekeeper_std(s.path())
            .args([
                "external-ips",
                "serve",
                "--tls-cert-file",
                "tls.crt",
                "--tls-private-key-file",
                "tls.key",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
                "--watch-interval",
                "200ms",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let w = Webhook {
            child,
            port,
            metrics_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
            assert!(Instant::now() < deadline, "the webhook did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/validate-service", self.port)
    }

    fn metrics(&self) -> String {
        blocking_client(None)
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }
}

fn blocking_client(ca: Option<&str>) -> Client {
    Client {
        ca: ca.map(str::to_owned),
    }
}

/// A tiny synchronous HTTP(S) client over reqwest on a thread of its own.
struct Client {
    ca: Option<String>,
}

struct Req {
    ca: Option<String>,
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

struct Resp {
    status: u16,
    body: String,
}

impl Resp {
    fn text(self) -> Result<String, String> {
        Ok(self.body)
    }
}

impl Client {
    fn get(&self, url: String) -> Req {
        Req {
            ca: self.ca.clone(),
            method: "GET",
            url,
            headers: vec![],
            body: None,
        }
    }
    fn post(&self, url: String) -> Req {
        Req {
            ca: self.ca.clone(),
            method: "POST",
            url,
            headers: vec![],
            body: None,
        }
    }
}

impl Req {
    fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn body(mut self, b: Vec<u8>) -> Req {
        self.body = Some(b);
        self
    }
    fn send(self) -> Result<Resp, String> {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut b = reqwest::Client::builder().timeout(Duration::from_secs(10));
                if let Some(ca) = &self.ca {
                    b = b.tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()]);
                }
                let c = b.build().map_err(|e| e.to_string())?;
                let mut r = c.request(
                    reqwest::Method::from_bytes(self.method.as_bytes()).unwrap(),
                    &self.url,
                );
                for (k, v) in self.headers {
                    r = r.header(k, v);
                }
                if let Some(body) = self.body {
                    r = r.body(body);
                }
                let resp = r.send().await.map_err(|e| format!("{e:?}"))?;
                let status = resp.status().as_u16();
                let body = resp.text().await.map_err(|e| e.to_string())?;
                Ok(Resp { status, body })
            })
        })
        .join()
        .unwrap()
    }
}

/// One case of the allow/deny table shared by the webhook and the policy.
struct Case {
    name: &'static str,
    ips: &'static [&'static str],
    /// None: allowed; Some: the exact message.
    denied: Option<&'static str>,
    /// Whether the API server's own validation lets it through to admission.
    reaches_admission: bool,
}

/// With the allowed set 10.20.0.0/16 and 2001:db8:20::/48 (set `external-ips` of [`DECL`]).
const CASES: &[Case] = &[
    Case {
        name: "none",
        ips: &[],
        denied: None,
        reaches_admission: true,
    },
    Case {
        name: "allowed-v4",
        ips: &["10.20.0.5"],
        denied: None,
        reaches_admission: true,
    },
    Case {
        name: "allowed-v6",
        ips: &["2001:db8:20::5"],
        denied: None,
        reaches_admission: true,
    },
    Case {
        name: "second-denied",
        ips: &["10.20.0.5", "11.0.0.1"],
        denied: Some(
            "spec.externalIPs: Invalid value: \"11.0.0.1\": externalIP specified is not allowed to use",
        ),
        reaches_admission: true,
    },
    Case {
        name: "denied-v6",
        ips: &["2001:db8:21::1"],
        denied: Some(
            "spec.externalIPs: Invalid value: \"2001:db8:21::1\": externalIP specified is not allowed to use",
        ),
        reaches_admission: true,
    },
    Case {
        name: "not-valid",
        ips: &["1.2.e.4"],
        denied: Some(
            "spec.externalIPs: Invalid value: \"1.2.e.4\": externalIP specified is not valid",
        ),
        reaches_admission: false,
    },
];

fn review(uid: &str, ips: &[&str], user: &str) -> Value {
    let mut spec = json!({"ports": [{"port": 80}]});
    if !ips.is_empty() {
        spec["externalIPs"] = json!(ips);
    }
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Service"},
            "resource": {"group": "", "version": "v1", "resource": "services"},
            "operation": "CREATE",
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec},
        }
    })
}

fn post_review(w: &Webhook, ca: &str, body: &Value) -> Value {
    let r = blocking_client(Some(ca))
        .post(w.url())
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn the_webhook_answers_reviews_over_tls_with_externalip_webhooks_messages() {
    let s = scratch();
    let ca = TestCa::new("webhook-ca");
    let w = Webhook::start(&s, &ca, &["--set", "external-ips"]);
    let ca_pem = ca.cert_pem();
    for c in CASES {
        let answer = post_review(&w, &ca_pem, &review(c.name, c.ips, "alice"));
        let resp = &answer["response"];
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(resp["uid"], c.name, "{}", c.name);
        assert_eq!(resp["allowed"], c.denied.is_none(), "{}: {answer}", c.name);
        if let Some(m) = c.denied {
            assert_eq!(resp["status"]["message"], m, "{}", c.name);
            assert_eq!(resp["status"]["code"], 403);
            assert!(
                resp["auditAnnotations"]["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("externalIP specified")
            );
        }
    }
    // Not a review: HTTP errors, and the webhook keeps serving.
    let c = blocking_client(Some(&ca_pem));
    let r = c
        .post(w.url())
        .header("content-type", "text/plain")
        .body(b"{}".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status, 415, "{}", r.body);
    let r = c
        .post(w.url())
        .header("content-type", "application/json")
        .body(b"{\"apiVersion\":".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let r = c
        .post(w.url())
        .header("content-type", "application/json")
        .body(vec![b' '; 5 * 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    let r = c
        .get(format!("https://127.0.0.1:{}/healthz", w.port))
        .send()
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let m = w.metrics();
    assert!(m.contains("webhook_failed_request_count 3\n"), "{m}");
    assert!(
        m.contains("rangekeeper_external_ips_denied_total{reason=\"not-allowed\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("rangekeeper_external_ips_http_errors_total{kind=\"too-large\"} 1\n"),
        "{m}"
    );
}

#[test]
fn the_webhook_follows_the_declaration_and_rotated_certificates() {
    let s = scratch();
    let ca = TestCa::new("webhook-ca");
    let w = Webhook::start(
        &s,
        &ca,
        &["--set", "external-ips", "--allowed-usernames", "alice"],
    );
    let allowed = |ca: &str, ip: &str, user: &str| {
        post_review(&w, ca, &review("u", &[ip], user))["response"]["allowed"] == true
    };
    let ca_pem = ca.cert_pem();
    assert!(allowed(&ca_pem, "10.20.0.1", "alice"));
    let denied = post_review(&w, &ca_pem, &review("u", &["10.20.0.1"], "bob"));
    assert_eq!(
        denied["response"]["status"]["message"],
        "user bob is not alllowed to specify externalIP"
    );
    assert!(!allowed(&ca_pem, "203.0.113.1", "alice"));

    // The declaration changes: the new set is in force; a broken one keeps the last valid.
    s.write(
        "rangekeeper.yaml",
        &DECL.replace("10.20.0.0/16", "203.0.113.0/24"),
    );
    wait_for(
        || allowed(&ca_pem, "203.0.113.1", "alice"),
        "the changed set in force",
    );
    s.write(
        "rangekeeper.yaml",
        "version: 1\nsets:\n  external-ips: [300.0.0.0/8]\n",
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(allowed(&ca_pem, "203.0.113.1", "alice"));
    assert!(
        w.metrics()
            .contains("rangekeeper_declaration_errors_total 1\n")
    );

    // cert-manager rotates to a certificate of another CA: served once both files changed.
    let ca2 = TestCa::new("rotated-ca");
    let pair = ca2.issue_server(&["127.0.0.1"]);
    s.write("tls.crt", &pair.cert_pem);
    s.write("tls.key", &pair.key_pem);
    let ca2_pem = ca2.cert_pem();
    wait_for(
        || {
            blocking_client(Some(&ca2_pem))
                .get(format!("https://127.0.0.1:{}/healthz", w.port))
                .send()
                .is_ok()
        },
        "the rotated certificate served",
    );
    assert!(
        blocking_client(Some(&ca_pem))
            .get(format!("https://127.0.0.1:{}/healthz", w.port))
            .send()
            .is_err()
    );
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ----- against the real API server -----

fn create_service(cp: &ControlPlane, ns: &str, name: &str, ips: &[&str]) -> Result<(), String> {
    let mut spec = json!({"ports": [{"port": 80, "protocol": "TCP"}]});
    if !ips.is_empty() {
        spec["externalIPs"] = json!(ips);
    }
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec});
    match cp.request(
        "POST",
        &format!("/api/v1/namespaces/{ns}/services"),
        Some(("application/json", body.to_string())),
        None,
    )? {
        (201, _) => Ok(()),
        (status, text) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            Err(format!(
                "HTTP {status}: {}",
                v["message"].as_str().unwrap_or(&text)
            ))
        }
    }
}

/// Wait until admission in `ns` denies 11.0.0.1 (a configuration or policy takes a moment
/// to be in effect).
fn wait_denying(cp: &ControlPlane, ns: &str) {
    let mut n = 0;
    wait_for(
        || {
            n += 1;
            create_service(cp, ns, &format!("probe-{n}"), &["11.0.0.1"])
                .is_err_and(|e| e.ends_with("externalIP specified is not allowed to use"))
        },
        "admission in effect",
    );
}

fn namespace(cp: &ControlPlane, ns: &str) {
    cp.apply_value(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
}

/// Every case that reaches admission, created in `ns`: allowed ones exist afterwards, denied
/// ones fail with the exact message after `prefix`.
fn check_table(cp: &ControlPlane, ns: &str, prefix: &str) {
    for c in CASES.iter().filter(|c| c.reaches_admission) {
        let r = create_service(cp, ns, c.name, c.ips);
        match c.denied {
            None => assert_eq!(r, Ok(()), "{}", c.name),
            Some(m) => {
                let e = r.expect_err(c.name);
                assert!(e.ends_with(&format!("{prefix}{m}")), "{}: {e}", c.name);
            }
        }
    }
}

fn webhook_configuration(port: u16, ca_pem: &str) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "rangekeeper-external-ips"},
        "webhooks": [{
            "name": "external-ips.rangekeeper.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "clientConfig": {
                "url": format!("https://127.0.0.1:{port}/validate-service"),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["services"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "default"]}]},
        }],
    })
}

#[test]
fn the_api_server_calls_the_webhook_over_tls() {
    let cp = ControlPlane::start();
    let s = scratch();
    let ca = TestCa::new("webhook-ca");
    let mut w = Webhook::start(&s, &ca, &["--set", "external-ips"]);
    cp.apply_value(&webhook_configuration(w.port, &ca.cert_pem()));
    namespace(&cp, "hooked");
    // The configuration takes effect within a moment: wait for the first denial.
    wait_denying(&cp, "hooked");
    let prefix = "admission webhook \"external-ips.rangekeeper.io\" denied the request: ";
    check_table(&cp, "hooked", prefix);

    // Rotation to a new key under the same CA while Services are created: none fails.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pair = ca.issue_server(&["127.0.0.1", "localhost"]);
    std::thread::scope(|scope| {
        let stop2 = stop.clone();
        let cp = &cp;
        let creator = scope.spawn(move || {
            let mut n = 0;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                create_service(cp, "hooked", &format!("rot-{n}"), &["10.20.1.1"]).unwrap();
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(500));
        s.write("tls.crt", &pair.cert_pem);
        s.write("tls.key", &pair.key_pem);
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(creator.join().unwrap() > 0);
    });
    assert!(
        w.metrics()
            .contains("rangekeeper_external_ips_certificate_reloads_total 1\n")
    );

    // The webhook down: failurePolicy Fail refuses every Service of the namespace.
    let _ = w.child.kill();
    let _ = w.child.wait();
    let e = create_service(&cp, "hooked", "while-down", &[]).unwrap_err();
    assert!(
        e.contains("failed calling webhook \"external-ips.rangekeeper.io\""),
        "{e}"
    );
}

#[test]
fn the_generated_policy_enforces_the_same_table() {
    let cp = ControlPlane::start();
    let s = scratch();
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_owned();
    let o = s.run(&[
        "external-ips",
        "policy",
        "--set",
        "external-ips",
        "--exempt-namespace",
        "exempt",
        "--apply",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    namespace(&cp, "checked");
    namespace(&cp, "exempt");
    wait_denying(&cp, "checked");
    let prefix = "ValidatingAdmissionPolicy 'rangekeeper-external-ips' with binding 'rangekeeper-external-ips' denied request: ";
    check_table(&cp, "checked", prefix);
    assert_eq!(
        create_service(&cp, "exempt", "anything", &["11.0.0.1"]),
        Ok(())
    );

    // Applying again is a no-op for the server (same field manager), and the audit of what
    // exists in the cluster finds the exempt namespace's Service.
    let o = s.run(&[
        "external-ips",
        "policy",
        "--set",
        "external-ips",
        "--exempt-namespace",
        "exempt",
        "--apply",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&[
        "external-ips",
        "audit",
        "--set",
        "external-ips",
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let found: Vec<(String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["namespace"].as_str().unwrap().into(),
                f["name"].as_str().unwrap().into(),
                f["address"].as_str().unwrap().into(),
            )
        })
        // Probes created before the policy was in effect are found too.
        .filter(|(_, name, _): &(String, String, String)| !name.starts_with("probe-"))
        .collect();
    assert_eq!(
        found,
        vec![("exempt".into(), "anything".into(), "11.0.0.1".into())]
    );
}

/// A policy near the largest rangekeeper writes (the expression limit) is accepted and
/// evaluates within CEL's cost limit for a Service with 16 external IPs: the API server
/// answers for the addresses, not for cost.
#[test]
fn the_largest_policy_evaluates_within_the_cost_limit() {
    let cp = ControlPlane::start();
    // 5400 disjoint /32s (no two merge): 97,000 characters of CEL list.
    let ips: Vec<String> = (0..5400)
        .map(|i| format!("10.{}.{}.1", i / 250, i % 250))
        .collect();
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  big: [{}]\ntargets: {{}}\n",
        ips.join(", ")
    ));
    let kubeconfig = cp.kubeconfig().to_str().unwrap().to_owned();
    let o = s.run(&[
        "external-ips",
        "policy",
        "--set",
        "big",
        "--apply",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    namespace(&cp, "cost");
    wait_denying(&cp, "cost");
    // 16 addresses, all allowed, the last prefixes of the list (the most work): created.
    let allowed: Vec<&str> = ips[ips.len() - 16..].iter().map(String::as_str).collect();
    assert_eq!(create_service(&cp, "cost", "sixteen", &allowed), Ok(()));
    let mut denied = allowed.clone();
    denied[15] = "11.0.0.2";
    let e = create_service(&cp, "cost", "denied", &denied).unwrap_err();
    assert!(
        e.ends_with("externalIP specified is not allowed to use"),
        "{e}"
    );
}

/// examples/kubernetes/external-ips-webhook.yaml is accepted by the API server: the
/// Namespace applied, every other core object a server-side dry-run apply. The test API
/// server has no cert-manager CRDs, so the Issuer and Certificate are left out (and only
/// checked to be the cert-manager kinds the webhook configuration's annotation names).
#[test]
fn the_webhook_example_applies_to_the_api_server() {
    let cp = ControlPlane::shared();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes/external-ips-webhook.yaml"),
    )
    .unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let mut kinds = Vec::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        let (api, kind) = (
            doc["apiVersion"].as_str().unwrap(),
            doc["kind"].as_str().unwrap(),
        );
        kinds.push(kind.to_owned());
        if api.starts_with("cert-manager.io/") {
            continue;
        }
        if kind == "Namespace" {
            cp.apply_value(doc);
            continue;
        }
        let name = doc["metadata"]["name"].as_str().unwrap();
        let ns = doc["metadata"]["namespace"].as_str();
        let (base, plural) = match kind {
            "ConfigMap" => ("/api/v1", "configmaps"),
            "Service" => ("/api/v1", "services"),
            "Deployment" => ("/apis/apps/v1", "deployments"),
            "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets"),
            "ValidatingWebhookConfiguration" => (
                "/apis/admissionregistration.k8s.io/v1",
                "validatingwebhookconfigurations",
            ),
            other => panic!("the example has a {other} this test does not know"),
        };
        let path = match ns {
            Some(ns) => format!("{base}/namespaces/{ns}/{plural}/{name}"),
            None => format!("{base}/{plural}/{name}"),
        };
        let (status, body) = cp
            .request(
                "PATCH",
                &format!("{path}?fieldManager=rangekeeper-test&dryRun=All"),
                Some(("application/apply-patch+yaml", doc.to_string())),
                None,
            )
            .unwrap();
        assert!(
            (200..300).contains(&status),
            "{kind} {name}: HTTP {status}: {body}"
        );
    }
    for k in [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ValidatingWebhookConfiguration",
        "Issuer",
        "Certificate",
    ] {
        assert!(kinds.iter().any(|x| x == k), "the example has no {k}");
    }
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
}
