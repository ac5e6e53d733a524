//! The provider against test-support's fake EKS (the peer of `scripts/bench-fleet.sh`): the
//! SDK's real requests are routed by the region of their credential scope, answered in
//! EKS's shapes, errors typed as on the real service, and the latency the fake adds is paid
//! by every call while an in-sync read stays one DescribeCluster.

use std::time::{Duration, Instant};

use aws_sdk_eks::Client;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use rangekeeper_provider::{Provider, ProviderError, RangeSet, Restriction};
use rangekeeper_provider_eks::{EksProvider, Tuning, configure};
use rangekeeper_test_support::fake_eks::{FakeEks, example_cluster};

const KEY: &str = "AKIAFAKEEKSTEST00000";

fn client(fake: &FakeEks, region: &str, key: &str) -> Client {
    let conf = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(key, "secret", None, None, "test"))
        .endpoint_url(fake.endpoint());
    Client::from_conf(configure(conf, &Tuning::fast()).build())
}

fn provider(fake: &FakeEks, region: &str, cluster: &str, key: &str) -> EksProvider {
    EksProvider::with_client(cluster, client(fake, region, key)).with_tuning(Tuning::fast())
}

fn set(s: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        s.iter()
            .map(|c| rangekeeper_provider::cidr::parse(c).unwrap().net),
    )
}

async fn fake() -> FakeEks {
    let fake = FakeEks::start(KEY).await.unwrap();
    fake.insert_cluster(
        "eu-west-1",
        "prod",
        example_cluster("eu-west-1", "prod", &["140.82.112.0/20", "81.2.69.142/32"]),
    );
    fake.insert_cluster(
        "us-east-1",
        "prod",
        example_cluster("us-east-1", "prod", &["0.0.0.0/0"]),
    );
    fake
}

#[tokio::test]
async fn describe_is_routed_by_region_and_read_in_one_call() {
    let fake = fake().await;
    let eu = provider(&fake, "eu-west-1", "prod", KEY)
        .current()
        .await
        .unwrap();
    assert_eq!(
        eu.restriction,
        Restriction::Ranges(set(&["140.82.112.0/20", "81.2.69.142/32"]))
    );
    let us = provider(&fake, "us-east-1", "prod", KEY)
        .current()
        .await
        .unwrap();
    assert_eq!(us.restriction, Restriction::Unrestricted);
    let seen = fake.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.method == "GET" && r.path == "/clusters/prod" && r.status == 200)
    );
    assert_eq!(
        seen.iter().map(|r| r.region.as_str()).collect::<Vec<_>>(),
        ["eu-west-1", "us-east-1"]
    );
}

#[tokio::test]
async fn errors_are_typed_as_on_eks() {
    let fake = fake().await;
    let missing = provider(&fake, "eu-west-1", "nope", KEY).current().await;
    assert!(
        matches!(&missing, Err(ProviderError::NotFound(m)) if m.contains("nope")),
        "{missing:?}"
    );
    let wrong_key = provider(&fake, "eu-west-1", "prod", "AKIAWRONGKEY00000000")
        .current()
        .await;
    assert!(
        matches!(wrong_key, Err(ProviderError::Auth(_))),
        "{wrong_key:?}"
    );
    assert_eq!(
        fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        [404, 403]
    );
}

#[tokio::test]
async fn every_call_pays_the_latency() {
    let fake = fake().await;
    fake.set_latency(Duration::from_millis(300));
    let p = provider(&fake, "eu-west-1", "prod", KEY);
    let started = Instant::now();
    p.current().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn list_clusters_pages_through_the_region() {
    let fake = fake().await;
    for i in 0..5 {
        let name = format!("c{i}");
        fake.insert_cluster(
            "eu-west-1",
            &name,
            example_cluster("eu-west-1", &name, &["0.0.0.0/0"]),
        );
    }
    let c = client(&fake, "eu-west-1", KEY);
    let mut names = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = c
            .list_clusters()
            .max_results(2)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        pages += 1;
        names.extend(page.clusters().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "prod"]);
    assert_eq!(pages, 3);
}
