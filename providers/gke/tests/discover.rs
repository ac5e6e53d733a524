//! GKE discovery against the fake GKE API: `clusters.list` in every location or one, the
//! labels filter, pending statuses, `missingZones` failing the listing as a whole, and typed
//! errors (one attempt per listing).

use std::sync::Arc;
use std::time::Duration;

use rangekeeper_provider::{Discoverer, ProviderError, TargetConfig};
use rangekeeper_provider_gke::discover::{GkeDiscoverer, GkeTemplate};
use rangekeeper_provider_gke::{AccessToken, StaticToken};
use rangekeeper_test_support::gke::{FakeGke, Fault, On, example_cluster};
use serde_json::{Value, json};

const TOKEN: &str = "ya29.discovery-test-token-8f2a";
const PROJECT: &str = "test-project";

fn cluster(location: &str, name: &str, labels: Value, status: &str) -> Value {
    let mut c = example_cluster(PROJECT, location, name);
    c["resourceLabels"] = labels;
    c["status"] = Value::String(status.to_owned());
    c
}

/// a (prod, RUNNING), b (prod, RECONCILING, a zone), c (prod, PROVISIONING), d (dev), and one
/// cluster of another project.
async fn fleet() -> FakeGke {
    let fake = FakeGke::start().await.unwrap();
    fake.accept_token(TOKEN);
    for (loc, name, labels, status) in [
        ("europe-west1", "a", json!({"env": "prod"}), "RUNNING"),
        ("europe-west1-b", "b", json!({"env": "prod"}), "RECONCILING"),
        ("us-central1", "c", json!({"env": "prod"}), "PROVISIONING"),
        ("europe-west1", "d", json!({"env": "dev"}), "RUNNING"),
    ] {
        fake.insert_cluster(PROJECT, loc, name, cluster(loc, name, labels, status));
    }
    let other = example_cluster("other-project", "europe-west1", "x");
    fake.insert_cluster("other-project", "europe-west1", "x", other);
    fake
}

fn discoverer(fake: &FakeGke, extra: Value) -> GkeDiscoverer {
    let mut fields =
        json!({"project": PROJECT, "endpoint": fake.endpoint(), "labels": {"env": "prod"}});
    for (k, v) in extra.as_object().unwrap() {
        fields[k] = v.clone();
    }
    let template = GkeTemplate::from_config(&TargetConfig {
        name: "fleet".into(),
        base_dir: ".".into(),
        fields: fields.as_object().unwrap().clone(),
    })
    .unwrap();
    GkeDiscoverer::new(
        template,
        Arc::new(StaticToken::new(AccessToken::new(TOKEN))),
    )
}

#[tokio::test]
async fn every_location_is_listed_in_one_call_filtered_by_labels() {
    let fake = fleet().await;
    let found = discoverer(&fake, json!({})).discover().await.unwrap();
    let names: Vec<(&str, bool)> = found
        .iter()
        .map(|d| (d.name.as_str(), d.pending.is_some()))
        .collect();
    assert_eq!(
        names,
        [
            ("gke/test-project/europe-west1-b/b", false),
            ("gke/test-project/europe-west1/a", false),
            ("gke/test-project/us-central1/c", true),
        ]
    );
    assert_eq!(found[1].fields["endpoint"], fake.endpoint());
    let lists = fake.lists();
    assert_eq!(lists.len(), 1, "one call: {lists:?}");
    assert_eq!(
        lists[0].path,
        "/v1/projects/test-project/locations/-/clusters"
    );
    assert!(lists[0].authorized);

    // One location.
    fake.clear_requests();
    let found = discoverer(&fake, json!({"location": "europe-west1", "labels": {}}))
        .discover()
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gke/test-project/europe-west1/a",
            "gke/test-project/europe-west1/d"
        ]
    );
    assert_eq!(
        fake.lists()[0].path,
        "/v1/projects/test-project/locations/europe-west1/clusters"
    );
    // A project with no cluster: an empty list, not an error.
    let none = discoverer(&fake, json!({"project": "empty-project"}))
        .discover()
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn missing_zones_fail_the_listing_as_a_whole() {
    let fake = fleet().await;
    fake.set_missing_zones(&["us-central1"]);
    let e = discoverer(&fake, json!({})).discover().await.unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("us-central1") && text.contains("missingZones"),
        "{text}"
    );
    // A listing of a location that was reached is whole.
    let found = discoverer(&fake, json!({"location": "europe-west1"}))
        .discover()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    fake.set_missing_zones(&[]);
    assert_eq!(
        discoverer(&fake, json!({})).discover().await.unwrap().len(),
        3
    );
}

/// What the error of a listing must be.
type Expected = fn(&ProviderError) -> bool;

#[tokio::test]
async fn errors_are_typed_and_tried_once() {
    let fake = fleet().await;
    let d = discoverer(&fake, json!({}));
    let cases: [(Fault, Expected); 4] = [
        (
            Fault::Status(
                403,
                "PERMISSION_DENIED".into(),
                "Required 'container.clusters.list' permission.".into(),
            ),
            |e| matches!(e, ProviderError::Auth(_)),
        ),
        (
            Fault::Status(404, "NOT_FOUND".into(), "Project not found.".into()),
            |e| matches!(e, ProviderError::NotFound(m) if m.contains("is project `test-project` right")),
        ),
        (
            Fault::Throttled(3),
            |e| matches!(e, ProviderError::Throttled { retry_after, .. } if *retry_after == Some(Duration::from_secs(3))),
        ),
        (Fault::Unavailable, |e| {
            matches!(e, ProviderError::Transient(_))
        }),
    ];
    for (fault, expected) in cases {
        fake.clear_requests();
        fake.inject(fault.clone(), On::ListClusters, 1);
        let e = d.discover().await.unwrap_err();
        assert!(expected(&e), "{fault:?}: {e:?}");
        assert!(
            e.to_string()
                .contains("listing the clusters of project `test-project`"),
            "{e}"
        );
        assert_eq!(fake.requests().len(), 1, "one attempt: {fault:?}");
    }
    assert_eq!(d.discover().await.unwrap().len(), 3);
}
