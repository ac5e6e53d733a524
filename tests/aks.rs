//! The `rangekeeper` binary against a fake Azure Resource Manager on 127.0.0.1 that honours
//! the real API contract (bearer token, api-version, eTag/If-Match, long-running PUTs,
//! bare IPs rewritten to /32): plan, apply, re-plan in sync, show, disable, the egress guard.

use std::net::Ipv4Addr;
use std::process::Output;
use std::time::Duration;

use crate::common::{Scratch, seen};
use rangekeeper_test_support::fake_arm::{FakeArm, example_cluster};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-not-a-secret";
const SUB: &str = "00000000-0000-0000-0000-000000000000";
const RG: &str = "rg1";
const CLUSTER: &str = "clustername1";
const EGRESS1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip1";
const EGRESS2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip2";

async fn fake() -> FakeArm {
    let fake = FakeArm::start(TOKEN).await.unwrap();
    fake.insert_cluster(&FakeArm::cluster_path(SUB, RG, CLUSTER), example_cluster());
    fake.insert_public_ip(EGRESS1, Some(Ipv4Addr::new(20, 1, 2, 3)));
    fake.insert_public_ip(EGRESS2, Some(Ipv4Addr::new(20, 1, 2, 4)));
    fake.set_lro(1, Duration::from_millis(200), 0);
    fake
}

fn declaration(endpoint: &str, allow: &str) -> String {
    format!(
        r#"version: 1
sets:
  office: [52.160.0.0/16, 20.1.2.3, 20.1.2.4]
targets:
  prod-aks:
    provider: aks
    subscription: {SUB}
    resourceGroup: {RG}
    cluster: {CLUSTER}
    armEndpoint: {endpoint}
    allow: {allow}
"#
    )
}

/// Run the binary off the async runtime, so the fake server keeps serving meanwhile.
async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut c = crate::common::rangekeeper(dir);
    c.env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN).args(args);
    crate::common::output_off_runtime(c).await
}

fn ranges(fake: &FakeArm) -> Option<Value> {
    fake.cluster(&FakeArm::cluster_path(SUB, RG, CLUSTER))
        .and_then(|c| {
            c.pointer("/properties/apiServerAccessProfile/authorizedIPRanges")
                .cloned()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_replan_show_disable_through_the_binary() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));

    let plan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.status.code(), Some(2), "{}", seen(&plan));
    assert!(fake.puts().is_empty());

    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    let puts = fake.puts();
    assert_eq!(puts.len(), 1, "exactly one PUT");
    assert!(puts[0].if_match.is_some(), "the PUT carries If-Match");
    assert!(puts.iter().all(|r| r.authorized && r.api_version.is_some()));
    // The server stores bare IPs as /32; the re-plan compares canonical sets and is in sync.
    assert_eq!(
        ranges(&fake),
        Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]))
    );
    let replan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(replan.status.code(), Some(0), "{}", seen(&replan));
    let again = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", seen(&again));
    assert_eq!(fake.puts().len(), 1, "no PUT when in sync");

    let show = run(s.path(), &["show", "-o", "json"]).await;
    assert_eq!(show.status.code(), Some(0), "{}", seen(&show));
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        v["targets"][0]["ranges"],
        json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"])
    );
    assert!(
        v["targets"][0]["details"]["provisioningState"].is_string(),
        "{v}"
    );

    let disable = run(s.path(), &["disable", "-t", "prod-aks", "--yes"]).await;
    assert_eq!(disable.status.code(), Some(0), "{}", seen(&disable));
    let stored = ranges(&fake);
    assert!(
        stored.is_none() || stored == Some(json!([])),
        "disable sends an empty list: {stored:?}"
    );
    let show = run(s.path(), &["show", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["targets"][0]["unrestricted"], true);
    // The token never shows in what the user sees.
    for o in [&plan, &apply, &replan, &show, &disable] {
        assert!(!seen(o).contains(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_guard_refuses_and_sends_nothing() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(&fake.endpoint(), "[52.160.0.0/16]"));
    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(1), "{}", seen(&apply));
    let out = seen(&apply);
    assert!(
        out.contains("20.1.2.3") && out.contains("20.1.2.4"),
        "names the missing egress IPs: {out}"
    );
    assert!(fake.puts().is_empty(), "nothing may be sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_rejects_what_aks_would_reject_without_any_call() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(
        &fake.endpoint(),
        "[office, 10.0.0.0/8, 2001:db8::/32, 0.0.0.0/32]",
    ));
    let o = run(s.path(), &["validate"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
    let out = seen(&o);
    for needle in ["10.0.0.0/8", "IPv4 ranges only", "0.0.0.0/32"] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(fake.requests().is_empty(), "validate makes no network call");
}

// ---------------------------------------------------------------------------------------
// Leases: cluster tags written in the same If-Match PUT as the ranges

fn lease_tags(fake: &FakeArm) -> Vec<(String, String)> {
    fake.cluster(&FakeArm::cluster_path(SUB, RG, CLUSTER))
        .and_then(|c| c.get("tags").and_then(Value::as_object).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with("rangekeeper-lease-"))
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_and_revoke_write_tags_and_ranges_in_one_put_keeping_other_tags() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));
    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    let puts_before = fake.puts().len();

    let g = run(
        s.path(),
        &[
            "grant",
            "-t",
            "prod-aks",
            "--ttl",
            "20m",
            "--ip",
            "52.161.0.7",
        ],
    )
    .await;
    assert_eq!(g.status.code(), Some(0), "{}", seen(&g));
    let id = String::from_utf8_lossy(&g.stdout).trim().to_owned();
    let puts = fake.puts();
    assert_eq!(puts.len(), puts_before + 1, "one PUT for ranges and tags");
    assert!(
        puts.last().unwrap().if_match.is_some(),
        "the PUT carries If-Match"
    );
    assert_eq!(
        ranges(&fake),
        Some(json!([
            "20.1.2.3/32",
            "20.1.2.4/32",
            "52.160.0.0/16",
            "52.161.0.7/32"
        ]))
    );
    let tags = lease_tags(&fake);
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert_eq!(tags[0].0, format!("rangekeeper-lease-{id}"));
    assert!(tags[0].1.starts_with("52.161.0.7 "), "{tags:?}");
    let cluster = fake
        .cluster(&FakeArm::cluster_path(SUB, RG, CLUSTER))
        .unwrap();
    assert_eq!(cluster["tags"]["tier"], "production", "other tags are kept");

    let list = run(s.path(), &["leases", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str(), "{}", seen(&list));
    assert_eq!(v[0]["target"], "prod-aks");

    let r = run(s.path(), &["revoke", "-t", "prod-aks", "--lease", &id]).await;
    assert_eq!(r.status.code(), Some(0), "{}", seen(&r));
    assert!(lease_tags(&fake).is_empty());
    assert_eq!(
        ranges(&fake),
        Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]))
    );
    let cluster = fake
        .cluster(&FakeArm::cluster_path(SUB, RG, CLUSTER))
        .unwrap();
    assert_eq!(cluster["tags"]["tier"], "production");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_past_the_tag_limit_is_refused_with_the_reason() {
    let fake = fake().await;
    let path = FakeArm::cluster_path(SUB, RG, CLUSTER);
    fake.modify_cluster(&path, |c| {
        let tags: serde_json::Map<String, Value> = (0..50)
            .map(|i| (format!("team{i}"), Value::String("x".into())))
            .collect();
        c["tags"] = Value::Object(tags);
    });
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));
    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    let puts = fake.puts().len();
    let g = run(
        s.path(),
        &[
            "grant",
            "-t",
            "prod-aks",
            "--ttl",
            "20m",
            "--ip",
            "52.161.0.7",
        ],
    )
    .await;
    assert_eq!(g.status.code(), Some(1), "{}", seen(&g));
    assert!(seen(&g).contains("50 tags per resource"), "{}", seen(&g));
    assert_eq!(fake.puts().len(), puts, "nothing sent");
}

/// Many jobs open the cluster at once while a reconcile loop runs: each job checks through
/// `rangekeeper show` that its address is held for its whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_exec_runs_and_a_reconcile_loop_never_lose_an_address() {
    const JOBS: usize = 16;
    let fake = fake().await;
    fake.set_lro(1, Duration::from_millis(50), 0);
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));
    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    let bin = assert_cmd::cargo::cargo_bin("rangekeeper");
    let spawn = |args: Vec<String>, log: String| {
        let log = std::fs::File::create(s.path().join(log)).unwrap();
        crate::common::rangekeeper_std(s.path())
            .env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN)
            .env("RK", &bin)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut reconciler = spawn(
        ["reconcile", "--interval", "1s", "--state-dir", "state"]
            .map(String::from)
            .to_vec(),
        "reconcile.log".into(),
    );
    let jobs: Vec<(String, std::process::Child)> = (0..JOBS)
        .map(|i| {
            // Even last octets: no two leases aggregate into a shorter prefix.
            let ip = format!("52.161.0.{}", 10 + 2 * i);
            let check = format!(
                "for n in 1 2 3; do \"$RK\" show -o json | grep -q '\"{ip}/32\"' || {{ echo \"lost {ip} at check $n\"; exit 99; }}; sleep 0.2; done"
            );
            let args = [
                "exec", "-t", "prod-aks", "--ttl", "10m", "--ip", &ip, "--write-deadline", "5m",
                "--", "sh", "-c", &check,
            ]
            .map(String::from)
            .to_vec();
            (ip, spawn(args, format!("job{i}.log")))
        })
        .collect();
    let dir = s.path().to_path_buf();
    let failures = tokio::task::spawn_blocking(move || {
        let mut failures = Vec::new();
        for (i, (ip, mut child)) in jobs.into_iter().enumerate() {
            let st = child.wait().unwrap();
            if st.code() != Some(0) {
                let log =
                    std::fs::read_to_string(dir.join(format!("job{i}.log"))).unwrap_or_default();
                failures.push(format!("job {i} ({ip}): {st}: {log}"));
            }
        }
        failures
    })
    .await
    .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &reconciler.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || reconciler.wait()).await;
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(lease_tags(&fake).is_empty(), "{:?}", lease_tags(&fake));
    assert_eq!(
        ranges(&fake),
        Some(json!(["20.1.2.3/32", "20.1.2.4/32", "52.160.0.0/16"]))
    );
    let log = std::fs::read_to_string(s.path().join("reconcile.log")).unwrap_or_default();
    assert!(
        !log.contains("drift:"),
        "lease changes are not drift: {log}"
    );
}
