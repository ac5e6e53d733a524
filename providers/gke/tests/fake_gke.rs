//! The GKE provider against the fake GKE API of `rangekeeper-test-support`: the conformance
//! suite, the one-field update with the etag, Operations, typed errors (one attempt per
//! call), limits before any call, notes as display names, and every credential kind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{
    ApplyOptions, Progress, Provider, ProviderError, RangeSet, Restriction, TargetConfig,
};
use rangekeeper_provider_gke::{
    AccessToken, CredentialChain, CredentialEnv, GkeProvider, GkeTarget, StaticToken, Waiting,
};
use rangekeeper_test_support::gke::{
    FakeGke, Fault, On, cluster_name, example_cluster, legacy_cluster,
};
use serde_json::{Value, json};

const TOKEN: &str = "ya29.static-test-token-5d1e";
const PROJECT: &str = "test-project";
const LOCATION: &str = "europe-west1";
const CLUSTER: &str = "prod-1";

fn name() -> String {
    cluster_name(PROJECT, LOCATION, CLUSTER)
}

fn net(s: &str) -> IpNet {
    rangekeeper_provider::cidr::parse(s).unwrap().net
}

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| net(s)))
}

fn fast() -> Waiting {
    Waiting {
        first_poll: Duration::from_millis(5),
        max_poll: Duration::from_millis(20),
        timeout: Duration::from_secs(20),
    }
}

fn target(endpoint: &str) -> GkeTarget {
    GkeTarget::from_config(&TargetConfig {
        name: "prod-gke".into(),
        base_dir: PathBuf::from("."),
        fields: json!({"project": PROJECT, "location": LOCATION, "cluster": CLUSTER, "endpoint": endpoint})
            .as_object()
            .unwrap()
            .clone(),
    })
    .unwrap()
}

async fn fake_with(body: Value) -> FakeGke {
    let fake = FakeGke::start().await.unwrap();
    fake.accept_token(TOKEN);
    fake.insert_cluster(PROJECT, LOCATION, CLUSTER, body);
    fake
}

async fn fake() -> FakeGke {
    fake_with(example_cluster(PROJECT, LOCATION, CLUSTER)).await
}

fn provider(fake: &FakeGke) -> GkeProvider {
    GkeProvider::new(
        target(&fake.endpoint()),
        Arc::new(StaticToken::new(AccessToken::new(TOKEN))),
    )
    .unwrap()
    .with_waiting(fast())
}

fn held(fake: &FakeGke) -> Value {
    fake.cluster(PROJECT, LOCATION, CLUSTER).unwrap()
        ["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]
        .clone()
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn message(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
}

fn recording() -> (Arc<Recorder>, ApplyOptions) {
    let r = Arc::new(Recorder::default());
    let opts = ApplyOptions {
        wait: true,
        progress: r.clone(),
    };
    (r, opts)
}

#[tokio::test]
async fn conformance() {
    let fake = fake().await;
    let p = provider(&fake);
    let writes = || fake.updates().len();
    let mut missing = target(&fake.endpoint());
    missing.cluster = "no-such-cluster".into();
    let missing = GkeProvider::new(missing, Arc::new(StaticToken::new(AccessToken::new(TOKEN))))
        .unwrap()
        .with_waiting(fast());
    // Each fault answers the next cluster read once; the provider makes one attempt.
    let (throttle, unavailable, nothing) = (
        || fake.inject(Fault::Throttled(2), On::GetCluster, 1),
        || fake.inject(Fault::Unavailable, On::GetCluster, 1),
        || {},
    );
    rangekeeper_provider::conformance::Suite::new(
        &p,
        &set(&["192.0.2.0/24", "2001:db8::/48"]),
        &set(&["203.0.113.7", "10.0.0.0/8"]),
    )
    .with_write_counter(&writes)
    .with_missing_target(&missing)
    .with_fault(rangekeeper_provider::conformance::Fault {
        name: "429 on the cluster read is throttled",
        inject: &throttle,
        clear: &nothing,
        expect: "throttled",
    })
    .with_fault(rangekeeper_provider::conformance::Fault {
        name: "503 on the cluster read is transient",
        inject: &unavailable,
        clear: &nothing,
        expect: "transient",
    })
    .run()
    .await
    .unwrap();
}

#[tokio::test]
async fn apply_sends_one_field_with_the_etag_and_keeps_the_rest_of_the_config() {
    let mut body = example_cluster(PROJECT, LOCATION, CLUSTER);
    let cfg =
        &mut body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"];
    cfg["gcpPublicCidrsAccessEnabled"] = json!(true);
    cfg["privateEndpointEnforcementEnabled"] = json!(true);
    let fake = fake_with(body).await;
    let etag = fake.cluster(PROJECT, LOCATION, CLUSTER).unwrap()["etag"].clone();
    let mut notes = BTreeMap::new();
    notes.insert(net("192.0.2.0/24"), "office VPN".to_owned());
    let p = GkeProvider::new(
        target(&fake.endpoint()).with_notes(notes),
        Arc::new(StaticToken::new(AccessToken::new(TOKEN))),
    )
    .unwrap()
    .with_waiting(fast());
    let (rec, opts) = recording();

    let applied = p
        .apply(&set(&["192.0.2.0/24", "2001:db8::/48"]), &opts)
        .await
        .unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");

    let updates = fake.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0],
        json!({"name": name(), "update": {
            "desiredControlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {
                "enabled": true,
                "cidrBlocks": [{"displayName": "office VPN", "cidrBlock": "192.0.2.0/24"}, {"cidrBlock": "2001:db8::/48"}],
                "gcpPublicCidrsAccessEnabled": true,
                "privateEndpointEnforcementEnabled": true}}},
            "etag": etag}})
    );
    assert!(
        updates[0]["update"]
            .get("desiredMasterAuthorizedNetworksConfig")
            .is_none()
    );
    assert_eq!(held(&fake)["gcpPublicCidrsAccessEnabled"], json!(true));
    let state = p.current().await.unwrap();
    assert_eq!(
        state.restriction,
        Restriction::Ranges(set(&["192.0.2.0/24", "2001:db8::/48"]))
    );
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("gcpPublicCidrsAccessEnabled")),
        "{:?}",
        state.warnings
    );

    // Progress names the operation and its states.
    let msgs = rec.0.lock().unwrap().clone();
    assert!(msgs.iter().any(|m| m.contains("PENDING")), "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("RUNNING") && m.contains("Updating control plane")),
        "{msgs:?}"
    );
    assert!(msgs.iter().all(|m| !m.contains(TOKEN)));
    // Every request carried the token; none was retried.
    assert!(fake.requests().iter().all(|r| r.authorized));
}

#[tokio::test]
async fn no_call_when_the_canonical_sets_already_match() {
    let mut body = example_cluster(PROJECT, LOCATION, CLUSTER);
    body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]["cidrBlocks"] = json!([{"cidrBlock": "198.51.100.0/25"}, {"cidrBlock": "198.51.100.128/25"}, {"cidrBlock": "203.0.113.9/32"}]);
    let fake = fake_with(body).await;
    let p = provider(&fake);
    let applied = p
        .apply(
            &set(&["198.51.100.0/24", "203.0.113.9"]),
            &ApplyOptions::default(),
        )
        .await
        .unwrap();
    assert!(!applied.changed, "{applied:?}");
    assert!(fake.updates().is_empty());
}

#[tokio::test]
async fn the_legacy_field_is_read_when_it_is_the_only_one() {
    let fake = fake_with(legacy_cluster(PROJECT, LOCATION, CLUSTER)).await;
    let p = provider(&fake);
    let state = p.current().await.unwrap();
    assert_eq!(
        state.restriction,
        Restriction::Ranges(set(&["198.51.100.0/24"]))
    );
    assert!(
        state
            .details
            .iter()
            .any(|(k, v)| k == "authorizedNetworks" && v.contains("legacy")),
        "{:?}",
        state.details
    );
    p.apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(set(&["192.0.2.0/24"]))
    );
    assert!(
        fake.updates()[0]["update"]
            .get("desiredControlPlaneEndpointsConfig")
            .is_some()
    );
}

#[tokio::test]
async fn a_stale_etag_is_a_conflict_and_changes_nothing() {
    let fake = fake().await;
    let p = provider(&fake);
    fake.modify_before_next_update(&name(), |c| {
        c["resourceLabels"]["touched"] = json!("yes");
    });
    let e = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e}");
    assert!(e.to_string().contains("ABORTED"), "{e}");
    assert!(e.is_retryable());
    assert_eq!(
        held(&fake)["cidrBlocks"],
        json!([{"displayName": "corp", "cidrBlock": "198.51.100.0/24"}])
    );
    assert_eq!(
        fake.updates().len(),
        1,
        "one attempt: the core retries, not the provider"
    );
    // The core's retry re-reads and succeeds.
    p.apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn another_operation_running_is_a_conflict() {
    let fake = fake().await;
    let p = provider(&fake);
    let op = fake.start_foreign_operation(&name());
    let e = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e}");
    assert!(
        e.to_string().contains("FAILED_PRECONDITION") && e.to_string().contains(&op),
        "{e}"
    );
    let state = p.current().await.unwrap();
    assert!(
        state.warnings.iter().any(|w| w.contains("RECONCILING")),
        "{:?}",
        state.warnings
    );
    fake.finish_operations();
    p.apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn throttling_and_server_errors_are_typed_and_tried_once() {
    let fake = fake().await;
    let p = provider(&fake);
    fake.inject(Fault::Throttled(7), On::GetCluster, 1);
    match p.current().await.unwrap_err() {
        ProviderError::Throttled {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("RESOURCE_EXHAUSTED"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
    for fault in [Fault::Unavailable, Fault::Internal] {
        fake.inject(fault, On::Update, 1);
        let e = p
            .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Transient(_)), "{e}");
    }
    assert_eq!(fake.updates().len(), 2);
    // A failed poll ends the wait with its error; the change still lands, and the core's
    // retry then finds the target in sync.
    fake.inject(Fault::Unavailable, On::GetOperation, 1);
    let e = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e}");
    fake.finish_operations();
    assert!(
        !p.apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );

    let e = p.current().await;
    assert!(e.is_ok());
    let nothing = GkeProvider::new(
        target("http://127.0.0.1:9"),
        Arc::new(StaticToken::new(AccessToken::new(TOKEN))),
    )
    .unwrap();
    assert!(matches!(
        nothing.current().await.unwrap_err(),
        ProviderError::Transient(_)
    ));
}

#[tokio::test]
async fn a_failed_operation_is_an_error_and_the_cluster_keeps_its_list() {
    let fake = fake().await;
    let p = provider(&fake);
    fake.fail_next_operation(
        3,
        "Invalid master authorized networks: network \"192.0.2.0/24\" is not a reserved network",
    );
    let e = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("not a reserved network"), "{e}");
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(set(&["198.51.100.0/24"]))
    );
}

#[tokio::test]
async fn limits_are_checked_before_any_call() {
    let fake = fake().await;
    let p = provider(&fake);
    let many = RangeSet::from_nets((0..51u32).map(|i| net(&format!("192.0.{}.0/24", i * 2))));
    assert_eq!(many.len(), 51);
    let e = p.apply(&many, &ApplyOptions::default()).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Invalid(_)) && e.to_string().contains("at most 50"),
        "{e}"
    );
    let e = p
        .apply(&set(&["0.0.0.0/0"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("0.0.0.0/0"), "{e}");
    assert!(!p.check(&set(&["::/0"])).is_empty());
    assert!(p.check(&set(&["10.0.0.0/8", "2001:db8::/32"])).is_empty());
    assert!(fake.requests().is_empty());
    // 50 fit.
    let fifty = RangeSet::from_nets((0..50u32).map(|i| net(&format!("192.0.{}.0/24", i * 2))));
    p.apply(&fifty, &ApplyOptions::default()).await.unwrap();
    assert_eq!(held(&fake)["cidrBlocks"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn disable_sets_enabled_false_and_keeps_the_flags() {
    let mut body = example_cluster(PROJECT, LOCATION, CLUSTER);
    body["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]["gcpPublicCidrsAccessEnabled"] =
        json!(true);
    let fake = fake_with(body).await;
    let p = provider(&fake);
    assert!(p.disable(&ApplyOptions::default()).await.unwrap().changed);
    let sent = &fake.updates()[0]["update"]["desiredControlPlaneEndpointsConfig"]["ipEndpointsConfig"]
        ["authorizedNetworksConfig"];
    assert_eq!(
        sent,
        &json!({"enabled": false, "gcpPublicCidrsAccessEnabled": true})
    );
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(
        state
            .warnings
            .iter()
            .any(|w| w.contains("open to every address"))
    );
    assert!(!p.disable(&ApplyOptions::default()).await.unwrap().changed);
    assert_eq!(fake.updates().len(), 1);
}

#[tokio::test]
async fn no_wait_returns_pending_with_the_operation() {
    let fake = fake().await;
    let p = provider(&fake);
    let opts = ApplyOptions {
        wait: false,
        ..ApplyOptions::default()
    };
    let applied = p.apply(&set(&["192.0.2.0/24"]), &opts).await.unwrap();
    assert!(applied.changed && applied.pending, "{applied:?}");
    assert!(applied.notes[0].contains("operation-"), "{applied:?}");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path.contains("/operations/"))
    );
}

#[tokio::test]
async fn a_missing_cluster_is_not_found_naming_it() {
    let fake = FakeGke::start().await.unwrap();
    fake.accept_token(TOKEN);
    let e = provider(&fake).current().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e}");
    assert!(
        e.to_string().contains("prod-1") && e.to_string().contains(PROJECT),
        "{e}"
    );
}

// ---- credentials ----

fn chain(env: CredentialEnv) -> Arc<CredentialChain> {
    Arc::new(CredentialChain::from_env(env).unwrap())
}

fn no_ambient(dir: &tempfile::TempDir) -> CredentialEnv {
    CredentialEnv {
        gcloud_config_dir: Some(dir.path().to_path_buf()),
        no_metadata: true,
        ..CredentialEnv::default()
    }
}

async fn read_with(fake: &FakeGke, tokens: Arc<CredentialChain>) -> Result<(), ProviderError> {
    let p = GkeProvider::new(target(&fake.endpoint()), tokens.clone()).unwrap();
    p.current().await?;
    // A second call uses the cached token.
    p.current().await?;
    assert!(!format!("{p:?} {tokens:?}").contains("ya29"));
    Ok(())
}

#[tokio::test]
async fn service_account_key_jwt_grant() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    std::fs::write(&key, fake.service_account_key()).unwrap();
    let env = CredentialEnv {
        application_credentials: Some(key),
        ..no_ambient(&dir)
    };
    let c = chain(env);
    read_with(&fake, c.clone()).await.unwrap();
    assert_eq!(fake.grants(), vec!["jwt-bearer"]);
    assert!(c.describe().await.unwrap().contains("service account key"));
}

#[tokio::test]
async fn a_key_the_server_does_not_know_is_an_auth_error_without_secrets() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.json");
    let text = fake.service_account_key();
    std::fs::write(&key, &text).unwrap();
    // Another key replaces the one the server trusts.
    let _ = fake.service_account_key();
    let env = CredentialEnv {
        application_credentials: Some(key),
        ..no_ambient(&dir)
    };
    let e = read_with(&fake, chain(env)).await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth(_)), "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
    assert!(!e.to_string().contains("PRIVATE KEY"), "{e}");
}

#[tokio::test]
async fn gcloud_application_default_credentials() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("application_default_credentials.json"),
        fake.authorized_user(),
    )
    .unwrap();
    let c = chain(no_ambient(&dir));
    read_with(&fake, c.clone()).await.unwrap();
    assert_eq!(fake.grants(), vec!["refresh_token"]);
    assert!(
        c.describe()
            .await
            .unwrap()
            .contains("application_default_credentials.json")
    );
}

#[tokio::test]
async fn workload_identity_federation_from_a_file() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = dir.path().join("oidc-token");
    std::fs::write(&subject, "eyJhbGciOiJSUzI1NiJ9.github-oidc.sig\n").unwrap();
    let cfg = dir.path().join("wif.json");
    std::fs::write(
        &cfg,
        fake.external_account(
            "eyJhbGciOiJSUzI1NiJ9.github-oidc.sig",
            subject.to_str(),
            false,
        ),
    )
    .unwrap();
    let env = CredentialEnv {
        application_credentials: Some(cfg),
        ..no_ambient(&dir)
    };
    read_with(&fake, chain(env)).await.unwrap();
    assert_eq!(fake.grants(), vec!["token-exchange"]);
}

#[tokio::test]
async fn workload_identity_federation_from_github_oidc_with_impersonation() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wif.json");
    std::fs::write(&cfg, fake.external_account("eyJ.gh-oidc.sig", None, true)).unwrap();
    let env = CredentialEnv {
        application_credentials: Some(cfg),
        ..no_ambient(&dir)
    };
    read_with(&fake, chain(env)).await.unwrap();
    assert_eq!(fake.grants(), vec!["token-exchange", "impersonation"]);
    // The API saw only the impersonated token.
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("/clusters/"))
            .all(|r| r.authorized)
    );
}

#[tokio::test]
async fn metadata_server() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let env = CredentialEnv {
        gcloud_config_dir: Some(dir.path().to_path_buf()),
        metadata_host: Some(fake.metadata_host()),
        ..CredentialEnv::default()
    };
    read_with(&fake, chain(env)).await.unwrap();
    assert_eq!(fake.grants(), vec!["metadata"]);
}

#[tokio::test]
async fn token_endpoint_failures_are_typed() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let env = CredentialEnv {
        gcloud_config_dir: Some(dir.path().to_path_buf()),
        metadata_host: Some(fake.metadata_host()),
        ..CredentialEnv::default()
    };
    let c = chain(env);
    fake.inject(Fault::Throttled(3), On::Token, 1);
    let p = GkeProvider::new(target(&fake.endpoint()), c).unwrap();
    assert!(matches!(
        p.current().await.unwrap_err(),
        ProviderError::Throttled { .. }
    ));
    fake.inject(Fault::Unavailable, On::Token, 1);
    assert!(matches!(
        p.current().await.unwrap_err(),
        ProviderError::Transient(_)
    ));
    p.current().await.unwrap();
}

#[tokio::test]
async fn a_rejected_token_is_an_auth_error_that_does_not_show_it() {
    let fake = fake().await;
    let p = GkeProvider::new(
        target(&fake.endpoint()),
        Arc::new(StaticToken::new(AccessToken::new("ya29.not-accepted"))),
    )
    .unwrap();
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth(_)), "{e}");
    assert!(e.to_string().contains("UNAUTHENTICATED"), "{e}");
    assert!(!e.to_string().contains("ya29"), "{e}");
}
