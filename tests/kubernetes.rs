//! The `rangekeeper` binary with `netpol` and `calico` targets against a real kube-apiserver
//! (`rangekeeper_test_support::kube::ControlPlane`): plan, apply, re-plan in sync, manifests
//! (YAML and JSON), drift, `--strict` refusing a failsafe port, disable, and bad input that
//! writes nothing.

use crate::common::{Scratch, code, seen, stderr, stdout};
use rangekeeper_test_support::kube::ControlPlane;

pub(crate) fn cluster() -> &'static ControlPlane {
    static READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let cp = ControlPlane::shared();
    READY.get_or_init(|| {
        cp.install_calico_crds();
        cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bin-web\n");
        // A CRD reported Established may answer 429 "storage is (re)initializing" for a
        // moment: wait until its collection lists.
        for path in [
            "/apis/projectcalico.org/v3/globalnetworkpolicies",
            "/apis/projectcalico.org/v3/hostendpoints",
        ] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !matches!(cp.request("GET", path, None, None), Ok((200, _))) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{path} not served after 30s"
                );
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    });
    cp
}

fn declaration(cp: &ControlPlane, extra: &str) -> String {
    format!(
        r#"version: 1
sets:
  office: [203.0.113.0/24, 2001:db8:77::/48]
  corp:
    include: [10.0.0.0/8]
    except: [10.66.0.0/16]
targets:
  web:
    provider: netpol
    kubeconfig: {kc}
    namespace: bin-web
    podSelector: {{matchLabels: {{app: web}}}}
    ports: [443]
    defaultDeny: true
    allow: [office, corp]
  node-ports:
    provider: calico
    kubeconfig: {kc}
    name: rangekeeper-bin-node-ports
    destination: {{nets: [10.96.0.10/32, "fd00:10:96::a/128"], ports: [443]}}
    allow: [office]
{extra}"#,
        kc = cp.kubeconfig().display()
    )
}

/// Paths of the scratch kubeconfig out of the output, for stable snapshots.
fn stable(text: &str, cp: &ControlPlane) -> String {
    text.replace(&cp.kubeconfig().display().to_string(), "[kubeconfig]")
}

#[test]
fn plan_apply_manifests_and_disable_through_the_binary() {
    let cp = cluster();
    let s = Scratch::new(&declaration(cp, ""));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", seen(&plan));
    assert!(stdout(&plan).contains("web"), "{}", seen(&plan));

    let manifests = s.run(&["manifests"]);
    assert_eq!(code(&manifests), 0, "{}", seen(&manifests));
    insta::assert_snapshot!("kubernetes_manifests_yaml", stdout(&manifests));
    let json = s.run(&["-o", "json", "manifests", "--target", "web"]);
    assert_eq!(code(&json), 0, "{}", seen(&json));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    // The YAML documents are the same objects as the JSON list.
    let docs: Vec<serde_json::Value> = stdout(&manifests)
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 3, "{}", stdout(&manifests));
    assert_eq!(docs[..2], v["items"].as_array().unwrap()[..]);

    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", seen(&apply));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "in sync after apply: {}", seen(&plan));

    let show = s.run(&["-o", "json", "show"]);
    assert_eq!(code(&show), 0, "{}", seen(&show));
    let v: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
    let web = &v["targets"][0];
    assert_eq!(web["target"], "web");
    assert_eq!(
        web["ranges"],
        serde_json::json!([
            "10.0.0.0/10",
            "10.64.0.0/15",
            "10.67.0.0/16",
            "10.68.0.0/14",
            "10.72.0.0/13",
            "10.80.0.0/12",
            "10.96.0.0/11",
            "10.128.0.0/9",
            "203.0.113.0/24",
            "2001:db8:77::/48"
        ])
    );

    let disable = s.run(&["disable", "--target", "web", "--yes"]);
    assert_eq!(code(&disable), 0, "{}", seen(&disable));
    let disable = s.run(&["disable", "--target", "node-ports", "--yes"]);
    assert_eq!(code(&disable), 0, "{}", seen(&disable));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", seen(&plan));
}

#[test]
fn a_failsafe_port_warns_and_strict_refuses_it() {
    let cp = cluster();
    let decl = format!(
        r#"version: 1
targets:
  api:
    provider: calico
    kubeconfig: {kc}
    name: rangekeeper-bin-failsafe
    destination: {{ports: [6443]}}
    allow: [203.0.113.0/24, 10.0.0.0/8]
"#,
        kc = cp.kubeconfig().display()
    );
    let s = Scratch::new(&decl);
    let plan = s.run(&["plan"]);
    assert_eq!(code(&plan), 0, "{}", seen(&plan));
    assert!(
        stdout(&plan).contains("6443/tcp is a Felix failsafe inbound host port"),
        "{}",
        seen(&plan)
    );
    let strict = s.run(&["plan", "--strict"]);
    assert_eq!(code(&strict), 1, "{}", seen(&strict));
    assert!(
        stdout(&strict).contains("(refused: the target is strict)"),
        "{}",
        seen(&strict)
    );
    let apply = s.run(&["apply", "--yes", "--strict"]);
    assert_eq!(code(&apply), 1, "{}", seen(&apply));
    assert!(
        stderr(&apply).contains("nothing was applied"),
        "{}",
        seen(&apply)
    );
}

#[test]
fn a_missing_namespace_refuses_every_target_and_writes_nothing() {
    let cp = cluster();
    let extra = format!(
        "  lost:\n    provider: netpol\n    kubeconfig: {}\n    namespace: bin-nowhere\n    podSelector: {{}}\n    allow: [office]\n",
        cp.kubeconfig().display()
    );
    let s = Scratch::new(&declaration(cp, &extra));
    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 1, "{}", seen(&apply));
    let out = stable(&seen(&apply), cp);
    assert!(
        out.contains("namespace `bin-nowhere` does not exist"),
        "{out}"
    );
    assert!(stderr(&apply).contains("nothing was applied"), "{out}");
    // The other targets were not written either.
    let show = s.run(&["-o", "json", "show", "--target", "web"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(v["targets"][0]["unrestricted"], true, "{}", seen(&show));
}

/// What `plan` shows for a hand edit (drift outside the ranges, repaired by `apply`) and for
/// fields another applier owns (refused, naming it).
#[test]
fn plan_shows_drift_and_refuses_another_appliers_fields() {
    let cp = cluster();
    cp.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bin-drift\n");
    let decl = format!(
        r#"version: 1
targets:
  drift:
    provider: netpol
    kubeconfig: {kc}
    namespace: bin-drift
    podSelector: {{}}
    ports: [443]
    allow: [203.0.113.0/24]
"#,
        kc = cp.kubeconfig().display()
    );
    let s = Scratch::new(&decl);
    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", seen(&apply));
    let path = "/apis/networking.k8s.io/v1/namespaces/bin-drift/networkpolicies/rangekeeper-drift";

    // `kubectl edit` changes the port: drift, shown and repaired.
    let (_, body) = cp.request("GET", path, None, None).unwrap();
    let mut obj: serde_json::Value = serde_json::from_str(&body).unwrap();
    obj["spec"]["ingress"][0]["ports"][0]["port"] = serde_json::json!(80);
    let (status, answer) = cp
        .request(
            "PUT",
            &format!("{path}?fieldManager=kubectl-edit"),
            Some(("application/json", obj.to_string())),
            None,
        )
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", seen(&plan));
    insta::assert_snapshot!("kubernetes_plan_drift", stable(&seen(&plan), cp));
    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", seen(&apply));
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", seen(&plan));

    // Another applier (here the test's own field manager) takes the ingress rules over.
    obj["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = serde_json::json!("198.51.100.0/24");
    obj["spec"]["ingress"][0]["ports"][0]["port"] = serde_json::json!(443);
    for k in [
        "managedFields",
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
    ] {
        obj["metadata"].as_object_mut().unwrap().remove(k);
    }
    cp.apply_value(&obj);
    let plan = s.run(&["plan"]);
    assert_eq!(code(&plan), 1, "{}", seen(&plan));
    insta::assert_snapshot!("kubernetes_plan_conflict", stable(&seen(&plan), cp));
    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 1, "{}", seen(&apply));
    assert!(
        stderr(&apply).contains("nothing was applied"),
        "{}",
        seen(&apply)
    );
}
