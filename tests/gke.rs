//! The `rangekeeper` binary against the fake GKE API of `rangekeeper-test-support` (etag,
//! Operations, Google error bodies, fake token endpoints): plan, apply, re-plan in sync,
//! show, disable, limits refused before any call, and a service-account key found through
//! GOOGLE_APPLICATION_CREDENTIALS.

use std::process::Output;
use std::time::Duration;

use crate::common::{self, Scratch, seen};
use rangekeeper_test_support::gke::{FakeGke, example_cluster};
use serde_json::{Value, json};

const TOKEN: &str = "ya29.binary-test-token-0c7b";
const PROJECT: &str = "test-project";
const LOCATION: &str = "europe-west1";
const CLUSTER: &str = "prod-1";

async fn fake() -> FakeGke {
    let fake = FakeGke::start().await.unwrap();
    fake.accept_token(TOKEN);
    fake.insert_cluster(
        PROJECT,
        LOCATION,
        CLUSTER,
        example_cluster(PROJECT, LOCATION, CLUSTER),
    );
    fake.set_operation(0, 1, Duration::from_secs(30));
    fake
}

fn declaration(endpoint: &str, allow: &str) -> String {
    format!(
        r#"version: 1
sets:
  office:
    - cidr: 198.51.100.0/25
      note: office floor 1
    - cidr: 198.51.100.128/25
      note: office floor 2
    - cidr: 203.0.113.10
      note: VPN gateway
targets:
  prod-gke:
    provider: gke
    project: {PROJECT}
    location: {LOCATION}
    cluster: {CLUSTER}
    endpoint: {endpoint}
    allow: {allow}
"#
    )
}

/// Run the binary off the async runtime (so the fake keeps serving), with no ambient Google
/// credentials: only what `env` gives it.
async fn run_env(dir: &std::path::Path, args: &[&str], env: Vec<(&'static str, String)>) -> Output {
    let mut c = common::rangekeeper(dir);
    c.env_remove("GOOGLE_OAUTH_ACCESS_TOKEN")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env("CLOUDSDK_CONFIG", dir.join("no-gcloud"))
        .env("NO_GCE_CHECK", "true");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args);
    common::output_off_runtime(c).await
}

async fn run(dir: &std::path::Path, args: &[&str]) -> Output {
    run_env(
        dir,
        args,
        vec![("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN.to_owned())],
    )
    .await
}

fn held(fake: &FakeGke) -> Value {
    fake.cluster(PROJECT, LOCATION, CLUSTER).unwrap()["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]
        ["authorizedNetworksConfig"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_replan_show_disable_through_the_binary() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(
        &fake.endpoint(),
        "[office, \"2001:db8:10::/48\"]",
    ));

    let plan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.status.code(), Some(2), "{}", seen(&plan));
    assert!(fake.updates().is_empty());

    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    let updates = fake.updates();
    assert_eq!(updates.len(), 1, "exactly one update");
    let update = updates[0]["update"].as_object().unwrap();
    let mut keys: Vec<&String> = update.keys().collect();
    keys.sort();
    assert_eq!(keys, ["desiredControlPlaneEndpointsConfig", "etag"]);
    // The two /25s aggregate into one /24; the bare IP is sent as /32.
    assert_eq!(
        held(&fake),
        json!({"enabled": true, "cidrBlocks": [
            {"cidrBlock": "198.51.100.0/24"},
            {"cidrBlock": "203.0.113.10/32"},
            {"cidrBlock": "2001:db8:10::/48"}],
            "gcpPublicCidrsAccessEnabled": false})
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.contains("/operations/")),
        "the operation was followed"
    );

    let replan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(replan.status.code(), Some(0), "{}", seen(&replan));
    let again = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", seen(&again));
    assert_eq!(fake.updates().len(), 1, "no update when in sync");

    let show = run(s.path(), &["show", "-o", "json"]).await;
    assert_eq!(show.status.code(), Some(0), "{}", seen(&show));
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        v["targets"][0]["ranges"],
        json!(["198.51.100.0/24", "203.0.113.10/32", "2001:db8:10::/48"]),
        "{v}"
    );
    assert_eq!(v["targets"][0]["details"]["status"], "RUNNING", "{v}");

    let disable = run(s.path(), &["disable", "-t", "prod-gke", "--yes"]).await;
    assert_eq!(disable.status.code(), Some(0), "{}", seen(&disable));
    assert_eq!(held(&fake)["enabled"], json!(false));
    let show = run(s.path(), &["show", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["targets"][0]["unrestricted"], true, "{v}");
    for o in [&plan, &apply, &replan, &again, &show, &disable] {
        assert!(!seen(o).contains(TOKEN));
    }
}

/// Another client's operation on the cluster: the update gets FAILED_PRECONDITION, which
/// the provider reports as a conflict, and the binary's retry policy waits and re-runs the
/// read-modify-write until the operation is over; the apply then succeeds with one update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_in_progress_is_waited_out_and_retried() {
    let fake = fake().await;
    // The foreign operation finishes on its own after two seconds.
    fake.set_operation(0, 1, Duration::from_secs(2));
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));
    let cluster = rangekeeper_test_support::gke::cluster_name(PROJECT, LOCATION, CLUSTER);
    let foreign = fake.start_foreign_operation(&cluster);
    let apply = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    assert!(
        seen(&apply).contains(&foreign),
        "the conflict is reported while waiting: {}",
        seen(&apply)
    );
    // Refused while the operation ran, then accepted once it was over.
    assert!(fake.updates().len() >= 2, "{:?}", fake.updates());
    assert_eq!(
        held(&fake)["cidrBlocks"],
        json!([{"cidrBlock": "198.51.100.0/24"}, {"cidrBlock": "203.0.113.10/32"}])
    );
    let replan = run(s.path(), &["plan", "--detailed-exitcode"]).await;
    assert_eq!(replan.status.code(), Some(0), "{}", seen(&replan));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_refused_before_any_call() {
    let fake = fake().await;
    let many: Vec<String> = (0..51).map(|i| format!("192.0.{}.0/24", i * 2)).collect();
    let s = Scratch::new(&declaration(
        &fake.endpoint(),
        &format!("[{}]", many.join(", ")),
    ));
    let o = run(s.path(), &["validate"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
    assert!(seen(&o).contains("50"), "{}", seen(&o));
    let z = Scratch::new(&declaration(&fake.endpoint(), "[0.0.0.0/0]"));
    let o = run(z.path(), &["validate"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
    assert!(seen(&o).contains("0.0.0.0/0"), "{}", seen(&o));
    assert!(fake.requests().is_empty(), "validate makes no call");
    // apply reads the cluster for its plan, then refuses: no update is ever sent.
    let o = run(s.path(), &["apply", "--yes"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
    assert!(seen(&o).contains("50"), "{}", seen(&o));
    assert!(fake.updates().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_key_from_google_application_credentials() {
    let fake = fake().await;
    let s = Scratch::new(&declaration(&fake.endpoint(), "[office]"));
    s.write("key.json", &fake.service_account_key());
    let key = s.path().join("key.json").display().to_string();
    let apply = run_env(
        s.path(),
        &["apply", "--yes"],
        vec![("GOOGLE_APPLICATION_CREDENTIALS", key)],
    )
    .await;
    assert_eq!(apply.status.code(), Some(0), "{}", seen(&apply));
    assert_eq!(fake.grants(), vec!["jwt-bearer"]);
    assert!(!seen(&apply).contains("ya29"), "{}", seen(&apply));

    // Without any credentials the binary says what it tried.
    let o = run_env(s.path(), &["show"], Vec::new()).await;
    assert_eq!(o.status.code(), Some(1), "{}", seen(&o));
    assert!(
        seen(&o).contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{}",
        seen(&o)
    );
}
