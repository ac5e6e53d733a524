//! `reconcile --leader-elect` against a real kube-apiserver (test-support's `ControlPlane`):
//! three replicas of the binary share one `file` target (a write is a change of that file)
//! and one Lease; each keeps its own audit log, whose `writer` stamps (identity, term, when
//! each write was sent and answered) prove who wrote when. A thread keeps drifting the file,
//! so the leader writes on every pass and a replica that must not write would be seen.
//!
//! Short durations throughout: lease 3s, renew deadline 2s, retry period 500ms.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rangekeeper_test_support::interpose::Interposer;
use rangekeeper_test_support::kube::ControlPlane;

use crate::common::{Scratch, code, rangekeeper_std, seen};

const LEASE: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);

const DECL: &str =
    "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [192.0.2.0/24]\n";

fn unix_ms(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// One write of the audit logs.
#[derive(Debug, Clone)]
struct Write {
    target: String,
    identity: String,
    term: u64,
    sent: u64,
    done: u64,
}

struct Replica {
    id: String,
    child: Child,
    state: PathBuf,
    log: PathBuf,
    metrics: std::net::SocketAddr,
}

impl Replica {
    fn start(s: &Scratch, id: &str, lease: &str, kubeconfig: &Path) -> Replica {
        Replica::start_with(s, id, lease, kubeconfig, &[])
    }

    fn start_with(
        s: &Scratch,
        id: &str,
        lease: &str,
        kubeconfig: &Path,
        extra: &[&str],
    ) -> Replica {
        let state = s.path().join(format!("state-{id}"));
        let log = s.path().join(format!("{id}.log"));
        let metrics = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let child = rangekeeper_std(s.path())
            .args([
                "reconcile",
                "--leader-elect",
                "--lease-name",
                lease,
                "--lease-namespace",
                "default",
                "--identity",
                id,
                "--lease-duration",
                "3s",
                "--renew-deadline",
                "2s",
                "--retry-period",
                "500ms",
                "--interval",
                "200ms",
                "--max-backoff",
                "200ms",
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .args(extra)
            .arg("--lease-kubeconfig")
            .arg(kubeconfig)
            .arg("--state-dir")
            .arg(&state)
            .env("RANGEKEEPER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            id: id.to_owned(),
            child,
            state,
            log,
            metrics,
        }
    }

    fn writes(&self) -> Vec<Write> {
        let text = std::fs::read_to_string(self.state.join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                let w = &v["writer"];
                assert!(w.is_object(), "a record without its writer: {v}");
                Write {
                    target: v["target"].as_str().unwrap().to_owned(),
                    identity: w["identity"].as_str().unwrap().to_owned(),
                    term: w["term"].as_u64().unwrap(),
                    sent: w["sentUnixMs"].as_u64().unwrap(),
                    done: w["doneUnixMs"].as_u64().unwrap(),
                }
            })
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the metrics address: (status, body).
    fn get(&self, path: &str) -> (u16, String) {
        let mut c = std::net::TcpStream::connect(self.metrics).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Keeps changing the target behind rangekeeper's back until dropped.
struct Drifter(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drifter {
    fn start(path: PathBuf) -> Drifter {
        Drifter::start_all(vec![path])
    }

    fn start_all(paths: Vec<PathBuf>) -> Drifter {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for path in &paths {
                    let tmp = path.with_extension("drift");
                    std::fs::write(&tmp, "198.51.100.0/24\n").unwrap();
                    std::fs::rename(&tmp, path).unwrap();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Drifter(stop, Some(t))
    }
}

impl Drop for Drifter {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn lease(cp: &ControlPlane, name: &str) -> serde_json::Value {
    cp.get_json(&format!(
        "/apis/coordination.k8s.io/v1/namespaces/default/leases/{name}"
    ))
    .unwrap_or(serde_json::Value::Null)
}

fn holder(cp: &ControlPlane, name: &str) -> Option<String> {
    lease(cp, name)["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_owned)
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every write of every replica, by the time it was sent.
fn all_writes(replicas: &[&Replica]) -> Vec<Write> {
    let mut all: Vec<Write> = replicas.iter().flat_map(|r| r.writes()).collect();
    all.sort_by_key(|w| w.sent);
    all
}

/// No two replicas wrote in overlapping windows: wherever the writer changes, the earlier
/// write was answered before the later one was sent.
fn assert_no_overlap(all: &[Write]) {
    for pair in all.windows(2) {
        if pair[0].identity != pair[1].identity {
            assert!(
                pair[0].done < pair[1].sent,
                "{} and {} wrote at once: {pair:?}",
                pair[0].identity,
                pair[1].identity
            );
        }
    }
    // And each replica's writes of one term form one window no other replica wrote in.
    for w in all {
        let first = all
            .iter()
            .filter(|x| x.identity == w.identity && x.term == w.term)
            .map(|x| x.sent)
            .min()
            .unwrap();
        let last = all
            .iter()
            .filter(|x| x.identity == w.identity && x.term == w.term)
            .map(|x| x.done)
            .max()
            .unwrap();
        assert!(
            !all.iter()
                .any(|x| x.identity != w.identity && x.done >= first && x.sent <= last),
            "another replica wrote inside the term {} window of {}: {all:?}",
            w.term,
            w.identity
        );
    }
}

#[test]
fn three_replicas_one_writer_and_a_killed_leader_is_replaced_within_the_lease() {
    let cp = ControlPlane::shared();
    let name = "rk-ha-sigkill";
    let s = Scratch::new(DECL);
    let kc = cp.kubeconfig().to_owned();
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|id| Replica::start(&s, id, name, &kc))
        .collect();
    let drift = Drifter::start(s.path().join("t.txt"));
    let leader = wait_for("a leader", Duration::from_secs(30), || holder(cp, name));
    // Several passes of drift and correction.
    wait_for("the leader's writes", Duration::from_secs(20), || {
        let r = replicas.iter().find(|r| r.id == leader).unwrap();
        (r.writes().len() >= 5).then_some(())
    });
    let writers: std::collections::BTreeSet<String> =
        all_writes(&replicas.iter().collect::<Vec<_>>())
            .into_iter()
            .map(|w| w.identity)
            .collect();
    assert_eq!(
        writers,
        [leader.clone()].into(),
        "exactly one replica writes"
    );
    assert_eq!(lease(cp, name)["spec"]["leaseDurationSeconds"], 3);
    let transitions = lease(cp, name)["spec"]["leaseTransitions"]
        .as_u64()
        .unwrap();

    // Role in metrics and /readyz.
    for r in &replicas {
        let (status, body) = r.get("/readyz");
        let (_, metrics) = r.get("/metrics");
        let leading = r.id == leader;
        let gauge = format!(
            "rangekeeper_leader{{identity=\"{}\"}} {}",
            r.id,
            u8::from(leading)
        );
        assert!(metrics.contains(&gauge), "{}: {metrics}", r.id);
        assert_eq!(status, 200, "{}: {body}", r.id);
        let role = if leading {
            "ready: leader"
        } else {
            "ready: follower"
        };
        assert!(body.starts_with(role), "{}: {body}", r.id);
    }

    // SIGKILL the leader: no release, the others must wait for the lease to expire.
    let killed_at = SystemTime::now();
    let i = replicas.iter().position(|r| r.id == leader).unwrap();
    replicas[i].kill();
    let next = wait_for("a new leader", Duration::from_secs(20), || {
        holder(cp, name).filter(|h| *h != leader)
    });
    let l = lease(cp, name);
    let acquired: SystemTime = {
        let t = l["spec"]["acquireTime"].as_str().unwrap();
        let ts: k8s_openapi::jiff::Timestamp = t.parse().unwrap();
        UNIX_EPOCH + Duration::from_micros(u64::try_from(ts.as_microsecond()).unwrap())
    };
    assert_eq!(
        l["spec"]["leaseTransitions"].as_u64().unwrap(),
        transitions + 1,
        "{l}"
    );
    let takeover = acquired.duration_since(killed_at).unwrap_or_default();
    eprintln!("takeover after SIGKILL: {takeover:?} (lease 3s, retry 500ms)");
    // Within the lease duration plus one retry period, with room for the scheduling of a
    // loaded test machine (the replica wakes exactly at the expiry it measured).
    assert!(
        takeover <= LEASE + RETRY + Duration::from_millis(300),
        "takeover took {takeover:?}"
    );
    // ... and never sooner than the lease allowed after the dead leader's last renewal.
    assert!(
        takeover + RETRY >= LEASE,
        "takeover after only {takeover:?}"
    );
    let first_new = wait_for(
        "the new leader's first write",
        Duration::from_secs(10),
        || {
            all_writes(&replicas.iter().collect::<Vec<_>>())
                .into_iter()
                .find(|w| w.identity == next)
        },
    );
    let to_write = Duration::from_millis(first_new.sent.saturating_sub(unix_ms(killed_at)));
    eprintln!("first write of the new leader after SIGKILL: {to_write:?}");
    assert!(
        to_write <= LEASE + RETRY + Duration::from_secs(1),
        "{to_write:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    drop(drift);
    for r in &mut replicas {
        r.kill();
    }
    let all = all_writes(&replicas.iter().collect::<Vec<_>>());
    assert_no_overlap(&all);
    assert!(
        all.iter()
            .all(|w| w.identity == leader || w.identity == next),
        "only the two leaders wrote: {all:?}"
    );
}

#[test]
fn a_leader_cut_off_from_the_api_server_stops_writing_before_its_lease_can_expire() {
    let cp = ControlPlane::shared();
    let name = "rk-ha-partition";
    let s = Scratch::new(DECL);
    let proxy = Interposer::start(cp);
    let cut_kc = s.path().join("through-proxy.kubeconfig");
    proxy.write_kubeconfig(cp, &cut_kc);
    // `a` reaches the API server only through the proxy, and leads first.
    let mut a = Replica::start(&s, "a", name, &cut_kc);
    wait_for("`a` leading", Duration::from_secs(30), || {
        (holder(cp, name).as_deref() == Some("a")).then_some(())
    });
    let kc = cp.kubeconfig().to_owned();
    let mut b = Replica::start(&s, "b", name, &kc);
    let mut c = Replica::start(&s, "c", name, &kc);
    let drift = Drifter::start(s.path().join("t.txt"));
    wait_for("`a` writing", Duration::from_secs(20), || {
        (a.writes().len() >= 5).then_some(())
    });

    proxy.cut(true);
    // After the cut: whatever reached the API server was sent before this instant.
    let cut_at = SystemTime::now();
    let next = wait_for("a new leader", Duration::from_secs(20), || {
        holder(cp, name).filter(|h| h != "a")
    });
    let first_new = wait_for(
        "the new leader's first write",
        Duration::from_secs(10),
        || {
            all_writes(&[&a, &b, &c])
                .into_iter()
                .find(|w| w.identity == next)
        },
    );
    let a_last = a.writes().into_iter().max_by_key(|w| w.sent).unwrap();
    eprintln!(
        "a's last write sent {}ms after the cut; {next}'s first write {}ms after the cut",
        a_last.sent.saturating_sub(unix_ms(cut_at)),
        first_new.sent.saturating_sub(unix_ms(cut_at))
    );
    // `a` renewed last before the cut, so its grant ended at most a renew deadline after it.
    assert!(
        a_last.sent < unix_ms(cut_at) + u64::try_from(RENEW.as_millis()).unwrap(),
        "a wrote {}ms after it was cut off",
        a_last.sent - unix_ms(cut_at)
    );
    // The margin between a's last write and the takeover is about lease - renew deadline.
    assert!(
        first_new.sent > a_last.done + 500,
        "a's last write {a_last:?}, the new leader's first {first_new:?}"
    );
    assert!(
        a.stderr().contains("`a` stopped being the leader"),
        "{}",
        a.stderr()
    );
    let (_, m) = a.get("/metrics");
    assert!(m.contains("rangekeeper_leader{identity=\"a\"} 0"), "{m}");
    assert!(
        m.contains("rangekeeper_leader_transitions_total{identity=\"a\",to=\"follower\"} 1"),
        "{m}"
    );

    // Healed: `a` sees the new holder and stays a follower; it writes nothing more.
    let a_count = a.writes().len();
    proxy.cut(false);
    std::thread::sleep(LEASE);
    assert_eq!(a.writes().len(), a_count, "a wrote after it lost the lease");
    assert_eq!(holder(cp, name).as_deref(), Some(next.as_str()));
    let (status, body) = a.get("/readyz");
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "ready: follower (standing by; the leader reconciles)\n"
        )
    );
    drop(drift);
    a.kill();
    b.kill();
    c.kill();
    assert_no_overlap(&all_writes(&[&a, &b, &c]));
}

#[test]
fn bad_leader_election_settings_are_refused_before_anything_runs() {
    let s = Scratch::new(DECL);
    let o = s.run(&[
        "reconcile",
        "--leader-elect",
        "--lease-duration",
        "3s",
        "--renew-deadline",
        "3s",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    insta::assert_snapshot!("leader_bad_durations", seen(&o));
    let o = s.run(&["reconcile", "--leader-elect", "--once"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(!s.exists("t.txt"), "nothing was written");
}

/// A replica that cannot use the Lease at all (RBAC forbids it) fails at start with what to
/// grant, instead of standing by for ever.
#[test]
fn a_forbidden_lease_fails_at_start_naming_the_rbac_to_grant() {
    let cp = ControlPlane::shared();
    let s = Scratch::new(DECL);
    let kc = s.path().join("limited.kubeconfig");
    cp.write_kubeconfig(
        &kc,
        rangekeeper_test_support::kube::KubeUser::Token(cp.user_token("limited").to_owned()),
    );
    let o = rangekeeper_std(s.path())
        .args([
            "reconcile",
            "--leader-elect",
            "--lease-namespace",
            "default",
        ])
        .arg("--lease-kubeconfig")
        .arg(&kc)
        .arg("--state-dir")
        .arg(s.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    let err = crate::common::stderr(&o);
    assert!(err.contains("HTTP 403"), "{err}");
    assert!(err.contains("leases.coordination.k8s.io"), "{err}");
    assert!(!s.exists("t.txt"), "nothing was written");
}

/// examples/kubernetes/reconciler-ha.yaml applies to the API server with strict field
/// validation, and its Role is all a replica needs: with a token of the example's
/// ServiceAccount it creates the Lease, leads, and on SIGTERM releases the Lease and exits 0.
#[test]
fn the_ha_example_applies_and_its_rbac_is_all_the_election_needs() {
    example_applies_and_its_rbac_suffices("reconciler-ha.yaml", "rangekeeper", &[], "rangekeeper");
}

/// The same for examples/kubernetes/reconciler-sharded.yaml (in a namespace of its own here,
/// since its Role differs): with its ServiceAccount's token a replica lists the group's
/// Leases, creates its member Lease and the shards', holds them all while alone, and on
/// SIGTERM releases them and deletes its member Lease.
#[test]
fn the_sharded_example_applies_and_its_rbac_is_all_the_shards_need() {
    example_applies_and_its_rbac_suffices(
        "reconciler-sharded.yaml",
        "rangekeeper-sharded",
        &["--shards", "8"],
        "rangekeeper-shard-0",
    );
    let cp = ControlPlane::shared();
    let leases = cp
        .get_json("/apis/coordination.k8s.io/v1/namespaces/rangekeeper-sharded/leases?labelSelector=rangekeeper.dev%2Flease-role%3Dmember")
        .unwrap();
    assert_eq!(
        leases["items"].as_array().map(Vec::len),
        Some(0),
        "the member Lease is deleted on SIGTERM: {leases}"
    );
}

/// Apply `file` of examples/kubernetes/ (its namespace `rangekeeper` renamed to `namespace`),
/// run one replica with a token of its ServiceAccount and `extra` flags, wait until it holds
/// `lease` and wrote its target, stop it with SIGTERM and check that it released `lease`.
fn example_applies_and_its_rbac_suffices(file: &str, namespace: &str, extra: &[&str], lease: &str) {
    let cp = ControlPlane::shared();
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/kubernetes")
            .join(file),
    )
    .unwrap();
    let mut docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.retain(|d| !d.is_null());
    for doc in &mut docs {
        if doc["kind"] == "Namespace" {
            doc["metadata"]["name"] = namespace.into();
        }
        if doc["metadata"]["namespace"].is_string() {
            doc["metadata"]["namespace"] = namespace.into();
        }
        if let Some(subjects) = doc
            .get_mut("subjects")
            .and_then(serde_json::Value::as_array_mut)
        {
            for s in subjects {
                s["namespace"] = namespace.into();
            }
        }
    }
    let mut kinds = Vec::new();
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap();
        kinds.push(kind.to_owned());
        let name = doc["metadata"]["name"].as_str().unwrap();
        let ns = doc["metadata"]["namespace"].as_str();
        let (base, plural) = match kind {
            "Namespace" => ("/api/v1", "namespaces"),
            "ServiceAccount" => ("/api/v1", "serviceaccounts"),
            "ConfigMap" => ("/api/v1", "configmaps"),
            "Service" => ("/api/v1", "services"),
            "Role" => ("/apis/rbac.authorization.k8s.io/v1", "roles"),
            "RoleBinding" => ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
            "Deployment" => ("/apis/apps/v1", "deployments"),
            "PodDisruptionBudget" => ("/apis/policy/v1", "poddisruptionbudgets"),
            other => panic!("the example has a {other} this test does not know"),
        };
        let path = match ns {
            Some(ns) => format!("{base}/namespaces/{ns}/{plural}/{name}"),
            None => format!("{base}/{plural}/{name}"),
        };
        let (status, body) = cp
            .request(
                "PATCH",
                &format!("{path}?fieldManager=rangekeeper-test&force=true&fieldValidation=Strict"),
                Some(("application/apply-patch+yaml", doc.to_string())),
                None,
            )
            .unwrap();
        assert!(
            (200..300).contains(&status),
            "{kind} {name}: HTTP {status}: {body}"
        );
    }
    assert!(
        kinds.iter().any(|k| k == "PodDisruptionBudget") && kinds.iter().any(|k| k == "Role"),
        "{kinds:?}"
    );
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--leader-elect") && args.contains("--identity=$(POD_NAME)"),
        "{args}"
    );
    for flag in extra.chunks(2) {
        assert!(args.contains(&flag.join("=")), "{args}");
    }

    // A token of the example's ServiceAccount (TokenRequest), and the lease the example names.
    let (status, body) = cp
        .request(
            "POST",
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/rangekeeper/token"),
            Some((
                "application/json",
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}"#.into(),
            )),
            None,
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = Scratch::new(DECL);
    let kc = s.path().join("sa.kubeconfig");
    cp.write_kubeconfig(
        &kc,
        rangekeeper_test_support::kube::KubeUser::Token(
            token["status"]["token"].as_str().unwrap().to_owned(),
        ),
    );
    let log = s.path().join("pod.log");
    let mut child = rangekeeper_std(s.path())
        .args([
            "reconcile",
            "--leader-elect",
            "--lease-name",
            "rangekeeper",
            "--lease-namespace",
            namespace,
            "--identity",
            "rangekeeper-pod-0",
        ])
        .args(extra)
        .arg("--lease-kubeconfig")
        .arg(&kc)
        .arg("--state-dir")
        .arg(s.path().join("state"))
        .env("RANGEKEEPER_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{lease}");
    let held = || {
        cp.get_json(&path)
            .ok()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    wait_for("the example's Lease held", Duration::from_secs(30), || {
        (held().as_deref() == Some("rangekeeper-pod-0")).then_some(())
    });
    wait_for("the target written", Duration::from_secs(20), || {
        s.read_or_empty("t.txt")
            .contains("192.0.2.0/24")
            .then_some(())
    });
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_for("the replica to stop", Duration::from_secs(20), || {
        child.try_wait().unwrap()
    });
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(held(), None, "the Lease is released on SIGTERM: {stderr}");
    assert!(
        stderr.contains(&format!("released lease {namespace}/{lease}")),
        "{stderr}"
    );
}

/// On SIGTERM the leader releases the Lease once its loop stopped writing: a follower takes
/// over at its next retry, well within the lease duration, and never while the old leader
/// still wrote.
#[test]
fn a_leader_stopped_with_sigterm_hands_over_at_once() {
    let cp = ControlPlane::shared();
    let name = "rk-ha-sigterm";
    let s = Scratch::new(DECL);
    let kc = cp.kubeconfig().to_owned();
    let mut a = Replica::start(&s, "a", name, &kc);
    wait_for("`a` leading", Duration::from_secs(30), || {
        (holder(cp, name).as_deref() == Some("a")).then_some(())
    });
    let mut b = Replica::start(&s, "b", name, &kc);
    let drift = Drifter::start(s.path().join("t.txt"));
    wait_for("`a` writing", Duration::from_secs(20), || {
        (a.writes().len() >= 3).then_some(())
    });
    // `b` has seen `a` renew, so only a release lets it in before the lease duration.
    std::thread::sleep(LEASE);
    let term_at = SystemTime::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &a.child.id().to_string()])
        .status();
    wait_for("`b` leading", Duration::from_secs(20), || {
        (holder(cp, name).as_deref() == Some("b")).then_some(())
    });
    let handover = SystemTime::now().duration_since(term_at).unwrap();
    eprintln!("handover after SIGTERM: {handover:?}");
    assert!(
        handover < LEASE - RETRY,
        "took {handover:?}: the lease was not released\n{}",
        a.stderr()
    );
    let status = wait_for("`a` to exit", Duration::from_secs(20), || {
        a.child.try_wait().unwrap()
    });
    assert!(status.success(), "{}", a.stderr());
    wait_for("`b` writing", Duration::from_secs(10), || {
        b.writes().first().cloned()
    });
    drop(drift);
    b.kill();
    a.kill();
    assert_no_overlap(&all_writes(&[&a, &b]));
}

/// No target was written by two replicas in overlapping windows (the check of
/// [`assert_no_overlap`], target by target).
fn assert_no_overlap_per_target(all: &[Write]) {
    let targets: std::collections::BTreeSet<&str> = all.iter().map(|w| w.target.as_str()).collect();
    for t in targets {
        let of: Vec<Write> = all.iter().filter(|w| w.target == t).cloned().collect();
        assert_no_overlap(&of);
    }
}

const SHARDS: usize = 4;

fn shard_holders(cp: &ControlPlane, name: &str) -> Vec<Option<String>> {
    (0..SHARDS)
        .map(|i| holder(cp, &format!("{name}-shard-{i}")))
        .collect()
}

/// `--shards 4` with three replicas over twelve `file` targets: the shards are spread over
/// all three (shares 2, 1 and 1), each target is written by the holder of its shard only; a
/// replica killed with SIGKILL has its shards taken within the lease duration, and one that
/// joins later gets its share; the audit logs show no target written by two replicas at once.
#[test]
fn sharded_replicas_split_the_fleet_and_move_shards_on_loss_and_on_return() {
    let cp = ControlPlane::shared();
    let name = "rk-shards";
    let mut decl = String::from("version: 1\ntargets:\n");
    for i in 0..12 {
        decl.push_str(&format!(
            "  t{i}:\n    provider: file\n    path: t{i}.txt\n    allow: [192.0.2.0/24]\n"
        ));
    }
    let s = Scratch::new(&decl);
    let kc = cp.kubeconfig().to_owned();
    let shards = ["--shards", "4"];
    let mut replicas: Vec<Replica> = ["a", "b", "c"]
        .iter()
        .map(|id| Replica::start_with(&s, id, name, &kc, &shards))
        .collect();
    let drift = Drifter::start_all(
        (0..12)
            .map(|i| s.path().join(format!("t{i}.txt")))
            .collect(),
    );
    let ids = |h: &[Option<String>]| -> std::collections::BTreeSet<String> {
        h.iter().flatten().cloned().collect()
    };
    // Converged: every shard held, by all three replicas (those starting together may first
    // take more than their share and let it lapse).
    let spread = wait_for(
        "the shards spread over a, b and c",
        Duration::from_secs(60),
        || {
            let h = shard_holders(cp, name);
            (h.iter().all(Option::is_some) && ids(&h).len() == 3).then_some(h)
        },
    );
    eprintln!("shards: {spread:?}");
    // Every target written, by more than one replica in all.
    wait_for("every target written", Duration::from_secs(30), || {
        let all = all_writes(&replicas.iter().collect::<Vec<_>>());
        let written: std::collections::BTreeSet<String> =
            all.iter().map(|w| w.target.clone()).collect();
        (written.len() == 12).then_some(())
    });
    let member = lease(cp, &format!("{name}-shard-0"));
    assert_eq!(
        member["metadata"]["labels"]["rangekeeper.dev/lease-group"], name,
        "{member}"
    );
    for r in &replicas {
        let (status, body) = r.get("/readyz");
        assert_eq!(status, 200, "{}: {body}", r.id);
        assert!(body.starts_with("ready: shard"), "{}: {body}", r.id);
        let (_, m) = r.get("/metrics");
        assert!(
            m.contains(&format!("rangekeeper_shards{{identity=\"{}\"}} 4", r.id)),
            "{m}"
        );
        assert!(m.contains("rangekeeper_shard_held{"), "{m}");
    }
    let writers: std::collections::BTreeSet<String> =
        all_writes(&replicas.iter().collect::<Vec<_>>())
            .into_iter()
            .map(|w| w.identity)
            .collect();
    assert!(writers.len() >= 2, "the targets are split: {writers:?}");

    // SIGKILL the replica holding the most shards.
    let h = shard_holders(cp, name);
    let victim = ["a", "b", "c"]
        .into_iter()
        .max_by_key(|id| h.iter().filter(|x| x.as_deref() == Some(*id)).count())
        .unwrap()
        .to_owned();
    let killed_at = Instant::now();
    let i = replicas.iter().position(|r| r.id == victim).unwrap();
    replicas[i].kill();
    wait_for(
        "the victim's shards taken over",
        Duration::from_secs(30),
        || {
            let h = shard_holders(cp, name);
            h.iter()
                .all(|x| x.as_ref().is_some_and(|x| *x != victim))
                .then_some(())
        },
    );
    let moved = killed_at.elapsed();
    eprintln!("shards of `{victim}` moved after SIGKILL: {moved:?} (lease 3s, retry 500ms)");
    assert!(moved <= LEASE + RETRY + Duration::from_secs(1), "{moved:?}");

    // A new replica joins: it gets its share (the others let theirs lapse for it).
    let joined_at = Instant::now();
    replicas.push(Replica::start_with(&s, "d", name, &kc, &shards));
    wait_for("`d` holding a shard", Duration::from_secs(30), || {
        shard_holders(cp, name)
            .iter()
            .any(|x| x.as_deref() == Some("d"))
            .then_some(())
    });
    let rebalanced = joined_at.elapsed();
    eprintln!("`d` took its first shard after {rebalanced:?}");
    assert!(
        rebalanced <= 2 * (LEASE + RETRY) + Duration::from_secs(1),
        "{rebalanced:?}"
    );
    wait_for("`d` writing", Duration::from_secs(10), || {
        replicas
            .iter()
            .find(|r| r.id == "d")
            .unwrap()
            .writes()
            .first()
            .cloned()
    });
    std::thread::sleep(Duration::from_secs(1));
    drop(drift);
    for r in &mut replicas {
        r.kill();
    }
    let all = all_writes(&replicas.iter().collect::<Vec<_>>());
    assert_no_overlap_per_target(&all);
}

/// Replicas given different shard counts never both write: the one that sees the other
/// declare another count holds nothing, and says why.
#[test]
fn replicas_with_different_shard_counts_do_not_both_write() {
    let cp = ControlPlane::shared();
    let name = "rk-shards-mismatch";
    let s = Scratch::new(DECL);
    let kc = cp.kubeconfig().to_owned();
    let mut a = Replica::start_with(&s, "a", name, &kc, &["--shards", "2"]);
    wait_for("`a` writing", Duration::from_secs(30), || {
        a.writes().first().cloned()
    });
    let mut b = Replica::start_with(&s, "b", name, &kc, &["--shards", "3"]);
    wait_for("both replicas refusing", Duration::from_secs(20), || {
        (a.stderr().contains("declares another shard count")
            && b.stderr().contains("declares another shard count"))
        .then_some(())
    });
    // Once each has stepped down (within a renew deadline), neither writes.
    std::thread::sleep(RENEW + RETRY);
    let drift = Drifter::start(s.path().join("t.txt"));
    let counts = (a.writes().len(), b.writes().len());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        (a.writes().len(), b.writes().len()),
        counts,
        "{}",
        b.stderr()
    );
    assert!(b.stderr().contains("`a` (2 shards)"), "{}", b.stderr());
    // When `b` is gone, `a` writes again.
    b.kill();
    wait_for("`a` writing again", Duration::from_secs(30), || {
        (a.writes().len() > counts.0).then_some(())
    });
    drop(drift);
    a.kill();
    assert_no_overlap_per_target(&all_writes(&[&a, &b]));
}
