//! Leases through the binary on the Kubernetes providers, against a real kube-apiserver: the
//! NetworkPolicy's `ipBlock` peers and the GlobalNetworkPolicy's `nets` gain and lose the
//! address while a `rangekeeper.dev/lease-<id>` annotation appears and goes; parallel `exec`
//! runs with a reconcile loop never lose an address; an expired lease is removed by the next
//! reconcile; another writer's edit between the read and the write is a conflict the binary
//! retries from a new read.

use std::process::Child;
use std::time::Duration;

use rangekeeper_test_support::interpose::Interposer;
use rangekeeper_test_support::kube::ControlPlane;
use serde_json::Value;

use crate::common::{Scratch, code, seen, stderr, stdout};
use crate::kubernetes::cluster;
use crate::leases::{signal, spawn, stable, wait_exit};

fn declaration(ns: &str, kubeconfig: &std::path::Path) -> String {
    format!(
        r#"version: 1
targets:
  web:
    provider: netpol
    kubeconfig: {kc}
    namespace: {ns}
    podSelector: {{matchLabels: {{app: web}}}}
    ports: [443]
    allow: [203.0.113.0/24]
  nodes:
    provider: calico
    kubeconfig: {kc}
    name: rangekeeper-{ns}-nodes
    destination: {{ports: [443]}}
    allow: [203.0.113.0/24]
"#,
        kc = kubeconfig.display()
    )
}

fn namespace(cp: &ControlPlane, ns: &str) {
    cp.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"
    ));
}

fn netpol_path(ns: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/rangekeeper-web")
}

fn gnp_path(ns: &str) -> String {
    format!("/apis/projectcalico.org/v3/globalnetworkpolicies/rangekeeper-{ns}-nodes")
}

fn get(cp: &ControlPlane, path: &str) -> Value {
    cp.get_json(path).unwrap()
}

/// The CIDRs of a NetworkPolicy's ipBlock peers.
fn blocks(policy: &Value) -> Vec<String> {
    policy["spec"]["ingress"][0]["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ipBlock"]["cidr"].as_str().unwrap().to_owned())
        .collect()
}

/// The `nets` of a GlobalNetworkPolicy's Allow rules.
fn nets(policy: &Value) -> Vec<String> {
    policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "Allow")
        .flat_map(|r| r["source"]["nets"].as_array().unwrap().clone())
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

fn lease_annotations(policy: &Value) -> Vec<String> {
    policy["metadata"]["annotations"]
        .as_object()
        .map(|a| {
            a.keys()
                .filter(|k| k.starts_with("rangekeeper.dev/lease-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn applied(s: &Scratch) {
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
}

fn grant(s: &Scratch, target: &str, ttl: &str, ip: &str) -> String {
    let o = s
        .cmd()
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_REPOSITORY", "org/repo")
        .env("GITHUB_ACTOR", "alice")
        .args(["grant", "-t", target, "--ttl", ttl, "--ip", ip])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    stdout(&o).trim().to_owned()
}

#[test]
fn grant_leases_and_revoke_on_a_netpol_and_a_calico_target() {
    let cp = cluster();
    let ns = "bin-lease";
    namespace(cp, ns);
    let s = Scratch::new(&declaration(ns, cp.kubeconfig()));
    applied(&s);
    let web = grant(&s, "web", "20m", "198.51.100.7");
    let nodes = grant(&s, "nodes", "20m", "198.51.100.8");

    let np = get(cp, &netpol_path(ns));
    assert_eq!(blocks(&np), ["198.51.100.7/32", "203.0.113.0/24"]);
    assert_eq!(
        lease_annotations(&np),
        [format!("rangekeeper.dev/lease-{web}")]
    );
    let record: Value = serde_json::from_str(
        np["metadata"]["annotations"][format!("rangekeeper.dev/lease-{web}")]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["address"], "198.51.100.7");
    assert_eq!(
        record["requestedBy"],
        "alice@github:org/repo/actions/runs/4242"
    );
    let gnp = get(cp, &gnp_path(ns));
    assert_eq!(nets(&gnp), ["198.51.100.8/32", "203.0.113.0/24"]);
    assert_eq!(
        lease_annotations(&gnp),
        [format!("rangekeeper.dev/lease-{nodes}")]
    );

    let list = s.run(&["leases"]);
    assert_eq!(code(&list), 0, "{}", seen(&list));
    insta::assert_snapshot!("kube_leases_table", stable(&stdout(&list), &[&web, &nodes]));
    let json = s.run(&["-o", "json", "leases", "--target", "nodes"]);
    let v: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v[0]["id"], nodes.as_str());
    assert_eq!(v[0]["target"], "nodes");
    assert_eq!(v.as_array().unwrap().len(), 1);

    // The plan keeps both leases: in sync.
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 0, "{}", seen(&plan));

    for (target, id) in [("web", &web), ("nodes", &nodes)] {
        let r = s.run(&["revoke", "-t", target, "--lease", id]);
        assert_eq!(code(&r), 0, "{}", seen(&r));
    }
    let np = get(cp, &netpol_path(ns));
    assert_eq!(blocks(&np), ["203.0.113.0/24"]);
    assert!(lease_annotations(&np).is_empty());
    let gnp = get(cp, &gnp_path(ns));
    assert_eq!(nets(&gnp), ["203.0.113.0/24"]);
    assert!(lease_annotations(&gnp).is_empty());
    assert_eq!(s.run(&["leases"]).stdout, b"no leases\n");
}

#[test]
fn an_expired_lease_is_removed_by_the_next_reconcile() {
    let cp = cluster();
    let ns = "bin-lease-expiry";
    namespace(cp, ns);
    let s = Scratch::new(&declaration(ns, cp.kubeconfig()));
    applied(&s);
    let started = std::time::Instant::now();
    grant(&s, "web", "4s", "198.51.100.66");
    let np = get(cp, &netpol_path(ns));
    assert_eq!(blocks(&np), ["198.51.100.66/32", "203.0.113.0/24"]);
    // Before expiry a reconcile keeps it ...
    let o = s.run(&[
        "reconcile",
        "--once",
        "--target",
        "web",
        "--state-dir",
        "state",
    ]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the first pass must run before the lease expires; the machine is too slow"
    );
    assert_eq!(lease_annotations(&get(cp, &netpol_path(ns))).len(), 1);
    // ... after expiry the next pass removes the address and the annotation.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(started.elapsed()));
    let o = s.run(&[
        "reconcile",
        "--once",
        "--target",
        "web",
        "--state-dir",
        "state",
    ]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let np = get(cp, &netpol_path(ns));
    assert_eq!(blocks(&np), ["203.0.113.0/24"], "{}", seen(&o));
    assert!(lease_annotations(&np).is_empty());
    let audit = s.read("state/audit.jsonl");
    let last: Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["trigger"], "lease-expiry", "{audit}");
    assert_eq!(last["removed"], serde_json::json!(["198.51.100.66/32"]));
}

/// Another writer changes the policy after `grant` read it and before its apply arrives: the
/// API server refuses the stale resourceVersion (409), and `grant` plans again from a new read
/// and keeps the other writer's change.
#[test]
fn an_edit_between_the_read_and_the_write_is_retried_from_a_new_read() {
    let cp = cluster();
    let ns = "bin-lease-race";
    namespace(cp, ns);
    let proxy = Interposer::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("proxy.kubeconfig");
    proxy.write_kubeconfig(cp, &kc);
    let s = Scratch::new(&declaration(ns, &kc));
    applied(&s);
    let path = netpol_path(ns);
    let edited = path.clone();
    let earlier = proxy.seen().len();
    proxy.before_write(&path, move || {
        let patch = serde_json::json!({"metadata": {"annotations": {"edited-by": "someone-else"}}});
        let (status, body) = cluster()
            .request(
                "PATCH",
                &edited,
                Some(("application/merge-patch+json", patch.to_string())),
                None,
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    });
    let o = s
        .cmd()
        .args([
            "grant",
            "-t",
            "web",
            "--ttl",
            "20m",
            "--ip",
            "198.51.100.21",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(proxy.hook_ran());
    let id = stdout(&o).trim().to_owned();
    let writes: Vec<u16> = proxy.seen()[earlier..]
        .iter()
        .filter(|r| r.method == "PATCH" && !r.dry_run && r.path == path)
        .map(|r| r.status)
        .collect();
    assert_eq!(writes, [409, 200], "{}", seen(&o));
    assert!(
        stderr(&o).contains("the object has been modified") && stderr(&o).contains("trying again"),
        "{}",
        seen(&o)
    );
    let np = get(cp, &path);
    assert_eq!(np["metadata"]["annotations"]["edited-by"], "someone-else");
    assert_eq!(
        lease_annotations(&np),
        [format!("rangekeeper.dev/lease-{id}")]
    );
    assert_eq!(blocks(&np), ["198.51.100.21/32", "203.0.113.0/24"]);
}

/// Eight jobs open one NetworkPolicy at once, each for its own address, while a reconcile
/// loop runs: every job sees its address in the live policy (through `show`) throughout its
/// run, and at the end only the declaration is left.
#[test]
fn parallel_exec_runs_never_lose_each_others_address() {
    const JOBS: usize = 8;
    let cp = cluster();
    let ns = "bin-lease-parallel";
    namespace(cp, ns);
    let s = Scratch::new(&declaration(ns, cp.kubeconfig()));
    applied(&s);
    let bin = assert_cmd::cargo::cargo_bin("rangekeeper");
    let mut reconciler = spawn(
        &s,
        &[
            "reconcile",
            "--target",
            "web",
            "--interval",
            "1s",
            "--state-dir",
            "state",
        ],
        "reconcile.log",
    );
    let jobs: Vec<(String, Child)> = (0..JOBS)
        .map(|i| {
            // Even last octets: no two leases aggregate into a shorter prefix.
            let ip = format!("198.51.100.{}", 100 + 2 * i);
            let check = format!(
                "for n in 1 2 3; do '{bin}' -o json show --target web | grep -q '\"{ip}/32\"' || {{ echo \"lost {ip} at check $n\"; exit 99; }}; sleep 0.5; done",
                bin = bin.display()
            );
            let child = spawn(
                &s,
                &[
                    "exec", "-t", "web", "--ttl", "10m", "--ip", &ip, "--write-deadline", "5m",
                    "--", "sh", "-c", &check,
                ],
                &format!("job{i}.log"),
            );
            (ip, child)
        })
        .collect();
    for (i, (ip, mut child)) in jobs.into_iter().enumerate() {
        let st = wait_exit(&mut child, Duration::from_secs(300)).expect("the job ends");
        assert_eq!(
            st.code(),
            Some(0),
            "job {i} ({ip}): {}",
            s.read_or_empty(&format!("job{i}.log"))
        );
    }
    signal(reconciler.id(), "-TERM");
    let st = wait_exit(&mut reconciler, Duration::from_secs(30));
    assert!(st.is_some(), "the reconciler stops on SIGTERM");
    let np = get(cp, &netpol_path(ns));
    assert_eq!(blocks(&np), ["203.0.113.0/24"]);
    assert!(lease_annotations(&np).is_empty());
    let log = s.read_or_empty("reconcile.log");
    assert!(
        !log.contains("drift:"),
        "lease changes are not drift: {log}"
    );
}
