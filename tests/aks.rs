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
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        crate::common::rangekeeper(&dir)
            .env("RANGEKEEPER_AZURE_ACCESS_TOKEN", TOKEN)
            .args(args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
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
