//! The AKS provider against the fake ARM server: round trips, conflicts, faults, LROs, the
//! node egress guard and credentials hygiene.
//!
//! The provider makes one attempt per call; where a test needs the call run again after a
//! conflict, throttling or a transient fault, [`until_ok`] stands in for the binary's retry
//! policy (whose own behaviour is tested in the binary) and the test asserts the typed
//! errors the provider returned on the way.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rangekeeper_provider::cidr::IpNet;
use rangekeeper_provider::{
    ApplyOptions, Progress, Provider, ProviderError, RangeSet, Restriction, TargetConfig,
};
use rangekeeper_provider_aks::{AksProvider, AksTarget, BearerToken, Polling, StaticToken};
use rangekeeper_test_support::fake_arm::{FakeArm, Fault, LroStyle, example_cluster};
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-token-7f3a9c";
const SUB: &str = "00000000-0000-0000-0000-000000000000";
const RG: &str = "rg1";
const CLUSTER: &str = "clustername1";
const EGRESS1: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip1";
const EGRESS2: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_rg1/providers/Microsoft.Network/publicIPAddresses/mgdoutboundip2";
const IP1: Ipv4Addr = Ipv4Addr::new(40, 85, 154, 247);
const IP2: Ipv4Addr = Ipv4Addr::new(40, 85, 154, 248);

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        items
            .iter()
            .map(|s| rangekeeper_provider::cidr::parse(s).unwrap().net),
    )
}

/// `items` plus the cluster's two egress IPs.
fn with_egress(items: &[&str]) -> RangeSet {
    let mut s = set(items);
    s.insert(IpNet::from(std::net::IpAddr::V4(IP1)));
    s.insert(IpNet::from(std::net::IpAddr::V4(IP2)));
    s
}

fn fast() -> Polling {
    Polling {
        operation_timeout: Duration::from_secs(20),
        default_poll: Duration::from_millis(10),
        min_poll: Duration::from_millis(0),
    }
}

fn target(endpoint: &str, extra: Value) -> AksTarget {
    let mut fields = json!({
        "subscription": SUB,
        "resourceGroup": RG,
        "cluster": CLUSTER,
        "armEndpoint": endpoint,
    });
    for (k, v) in extra.as_object().unwrap() {
        fields[k] = v.clone();
    }
    AksTarget::from_config(&TargetConfig {
        name: "prod-aks".into(),
        base_dir: PathBuf::from("."),
        fields: fields.as_object().unwrap().clone(),
    })
    .unwrap()
}

fn provider_with(fake: &FakeArm, extra: Value, token: &str) -> AksProvider {
    AksProvider::new(
        target(&fake.endpoint(), extra),
        Arc::new(StaticToken::new(BearerToken::new(token))),
    )
    .unwrap()
    .with_polling(fast())
}

/// Run `op` again (after a short pause) while it fails with a retryable error, as the
/// binary's retry policy does, at most `max` times; the result and the errors on the way.
async fn until_ok<T, F, Fut>(
    max: usize,
    mut op: F,
) -> (Result<T, ProviderError>, Vec<ProviderError>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut errors = Vec::new();
    loop {
        match op().await {
            Err(e) if e.is_retryable() && errors.len() < max => {
                errors.push(e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return (other, errors),
        }
    }
}

fn provider(fake: &FakeArm) -> AksProvider {
    provider_with(fake, json!({}), TOKEN)
}

fn cluster_path() -> String {
    FakeArm::cluster_path(SUB, RG, CLUSTER)
}

/// The fixture cluster, with `ranges` as authorizedIPRanges (none: no apiServerAccessProfile).
async fn fake_with(ranges: Option<&[&str]>) -> FakeArm {
    let fake = FakeArm::start(TOKEN).await.unwrap();
    let mut body = example_cluster();
    if let Some(r) = ranges {
        body["properties"]["apiServerAccessProfile"] = json!({ "authorizedIPRanges": r });
    }
    fake.insert_cluster(&cluster_path(), body);
    fake.insert_public_ip(EGRESS1, Some(IP1));
    fake.insert_public_ip(EGRESS2, Some(IP2));
    fake.set_lro(2, Duration::from_secs(5), 0);
    fake
}

fn ranges_of(v: &Value) -> Option<Vec<String>> {
    v.pointer("/properties/apiServerAccessProfile/authorizedIPRanges")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
}

fn held(fake: &FakeArm) -> Restriction {
    let body = fake.cluster(&cluster_path()).unwrap();
    match ranges_of(&body) {
        None => Restriction::Unrestricted,
        Some(r) if r.is_empty() => Restriction::Unrestricted,
        Some(r) => Restriction::Ranges(set(&r.iter().map(String::as_str).collect::<Vec<_>>())),
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Progress for Recorder {
    fn message(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
}

#[tokio::test]
async fn current_absent_list_is_unrestricted_with_details() {
    let fake = fake_with(None).await;
    let st = provider(&fake).current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    let d: std::collections::HashMap<_, _> = st.details.iter().cloned().collect();
    assert_eq!(d["provisioningState"], "Succeeded");
    assert_eq!(d["fqdn"], "dnsprefix1-abcd1234.hcp.eastus.azmk8s.io");
    assert_eq!(d["location"], "location1");
    assert!(
        st.warnings.iter().any(|w| w.contains("whole internet")),
        "{:?}",
        st.warnings
    );
    // Every request carried the token and the api-version.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].authorized);
    assert_eq!(reqs[0].api_version.as_deref(), Some("2026-08-01"));
    assert_eq!(reqs[0].path, cluster_path());
}

#[tokio::test]
async fn current_empty_list_is_unrestricted_and_own_ip_is_shown() {
    let fake = fake_with(Some(&[])).await;
    assert_eq!(
        provider(&fake).current().await.unwrap().restriction,
        Restriction::Unrestricted
    );

    let fake = fake_with(Some(&["0.0.0.0/32"])).await;
    let st = provider(&fake).current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Ranges(set(&["0.0.0.0/32"])));
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("only the cluster's own outbound IP (0.0.0.0/32)")),
        "{:?}",
        st.warnings
    );
    assert!(
        st.details
            .iter()
            .any(|(k, v)| k == "authorizedIPRanges" && v.contains("0.0.0.0/32"))
    );
}

#[tokio::test]
async fn apply_round_trip_keeps_every_other_field_and_then_is_in_sync() {
    let fake = FakeArm::start(TOKEN).await.unwrap();
    let mut body = example_cluster();
    // Fields no api-version of this tool knows about, at several depths.
    body["properties"]["futureFeature"] =
        json!({"mode": "x", "list": [3, 1, 2], "nested": {"z": null}});
    body["properties"]["agentPoolProfiles"][0]["someNewKnob"] = json!(true);
    body["properties"]["apiServerAccessProfile"] = json!({"enableVnetIntegration": false, "authorizedIPRanges": ["52.1.2.0/24"], "unknownInProfile": "keep"});
    body["extendedLocation"] = json!({"name": "edge1", "type": "EdgeZone"});
    fake.insert_cluster(&cluster_path(), body);
    fake.insert_public_ip(EGRESS1, Some(IP1));
    fake.insert_public_ip(EGRESS2, Some(IP2));
    fake.set_lro(2, Duration::from_secs(5), 0);
    let before = fake.cluster(&cluster_path()).unwrap();

    let p = provider(&fake);
    let desired = with_egress(&["52.1.2.0/24", "20.33.4.0/23"]);
    let recorder = Arc::new(Recorder::default());
    let opts = ApplyOptions {
        wait: true,
        progress: recorder.clone(),
    };
    let applied = p.apply(&desired, &opts).await.unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");

    let puts = fake.puts();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    assert_eq!(put.if_match.as_deref(), before["eTag"].as_str());
    assert_eq!(put.status, 200);
    // The whole PUT body equals the GET body except the ranges, field order included.
    let mut sent = put.body.clone().unwrap();
    let sent_ranges = ranges_of(&sent).unwrap();
    assert_eq!(
        sent_ranges,
        vec![
            "20.33.4.0/23",
            "40.85.154.247/32",
            "40.85.154.248/32",
            "52.1.2.0/24"
        ]
    );
    sent["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] = json!(["52.1.2.0/24"]);
    assert_eq!(
        serde_json::to_string(&sent).unwrap(),
        serde_json::to_string(&before).unwrap()
    );

    // The operation was polled and reported.
    let polls = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/operations/"))
        .count();
    assert!(polls >= 2, "polls: {polls}");
    assert!(
        recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("InProgress")),
        "{:?}",
        recorder.0.lock().unwrap()
    );

    // Stored, the unknown fields are still there, and a re-plan is in sync.
    let after = fake.cluster(&cluster_path()).unwrap();
    assert_eq!(
        after["properties"]["futureFeature"],
        before["properties"]["futureFeature"]
    );
    assert_eq!(after["extendedLocation"], before["extendedLocation"]);
    assert_eq!(
        after["properties"]["apiServerAccessProfile"]["unknownInProfile"],
        "keep"
    );
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(desired.clone())
    );
    fake.clear_requests();
    let again = p.apply(&desired, &opts).await.unwrap();
    assert!(!again.changed);
    assert!(fake.puts().is_empty());
}

#[tokio::test]
async fn no_put_when_canonically_in_sync() {
    // Stored with bare IPs and two /25 halves: canonically the same as the desired set.
    let fake = fake_with(Some(&[
        "40.85.154.247",
        "40.85.154.248/32",
        "52.1.2.0/25",
        "52.1.2.128/25",
    ]))
    .await;
    let p = provider(&fake);
    let applied = p
        .apply(&with_egress(&["52.1.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(!applied.changed);
    assert!(fake.puts().is_empty());
    // Only the one GET of the cluster: no egress lookups, no writes.
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn server_rewrites_bare_ips_and_the_provider_compares_canonically() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    // Another client writes bare IPs; the server stores them as /32.
    let client = reqwest::Client::new();
    let mut body = fake.cluster(&cluster_path()).unwrap();
    body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] =
        json!(["40.85.154.247", "40.85.154.248", "52.1.2.0/24"]);
    let resp = client
        .put(format!(
            "{}{}?api-version=2026-08-01",
            fake.endpoint(),
            cluster_path()
        ))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let stored = fake.cluster(&cluster_path()).unwrap();
    assert_eq!(
        ranges_of(&stored).unwrap(),
        vec!["40.85.154.247/32", "40.85.154.248/32", "52.1.2.0/24"]
    );
    // Once that operation is over, the provider sees the set as in sync.
    fake.set_lro(0, Duration::from_millis(0), 0);
    let applied = provider(&fake)
        .apply(&with_egress(&["52.1.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(!applied.changed);
    assert_eq!(fake.puts().len(), 1, "only the other client's PUT");
}

#[tokio::test]
async fn fake_rejects_too_many_ranges_and_mixed_own_ip_like_azure() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}{}?api-version=2026-08-01",
        fake.endpoint(),
        cluster_path()
    );
    let mut body = fake.cluster(&cluster_path()).unwrap();
    let many: Vec<String> = (0..201).map(|i| format!("52.1.{i}.0/24")).collect();
    body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] = json!(many);
    let resp = client
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidParameter");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("greater than the allowed value 200")
    );

    body["properties"]["apiServerAccessProfile"]["authorizedIPRanges"] =
        json!(["0.0.0.0/32", "52.1.2.0/24"]);
    let resp = client
        .put(&url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "InvalidParameter");

    // Missing api-version and a wrong token are refused too.
    let resp = client
        .get(format!("{}{}", fake.endpoint(), cluster_path()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = client.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Nothing changed.
    assert_eq!(held(&fake), Restriction::Ranges(set(&["52.1.2.0/24"])));
}

#[tokio::test]
async fn check_rejects_what_aks_rejects_without_network() {
    let fake = fake_with(None).await;
    let p = provider(&fake);
    let v = p.check(&set(&[
        "10.1.0.0/16",
        "52.1.2.0/24",
        "2001:db8::/32",
        "100.64.0.0/10",
        "203.0.113.0/24",
    ]));
    let ranges: Vec<_> = v.iter().map(|x| x.range.clone().unwrap()).collect();
    assert!(ranges.contains(&"10.1.0.0/16".to_owned()), "{v:?}");
    assert!(ranges.contains(&"100.64.0.0/10".to_owned()), "{v:?}");
    assert!(ranges.contains(&"203.0.113.0/24".to_owned()), "{v:?}");
    assert!(ranges.contains(&"2001:db8::/32".to_owned()), "{v:?}");
    assert!(!ranges.contains(&"52.1.2.0/24".to_owned()), "{v:?}");
    let private = v
        .iter()
        .find(|x| x.range.as_deref() == Some("10.1.0.0/16"))
        .unwrap();
    assert!(
        private.message.contains("10.0.0.0/8"),
        "{}",
        private.message
    );
    let v6 = v
        .iter()
        .find(|x| x.range.as_deref() == Some("2001:db8::/32"))
        .unwrap();
    assert!(v6.message.contains("IPv4 only"), "{}", v6.message);

    assert!(p.check(&set(&["0.0.0.0/32"])).is_empty());
    let all = p.check(&set(&["0.0.0.0/0"]));
    assert_eq!(all.len(), 1);
    assert!(all[0].message.contains("disable"), "{}", all[0].message);
    let mixed = p.check(&set(&["0.0.0.0/32", "52.1.2.0/24"]));
    assert_eq!(mixed.len(), 1);
    assert!(mixed[0].message.contains("must be the only range"));

    // apply refuses the same before any request.
    let e = p
        .apply(&set(&["10.1.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    let many = RangeSet::from_nets((0..201u32).map(|i| {
        rangekeeper_provider::cidr::parse(&format!("52.{}.{}.0/24", i / 100 + 1, (i % 100) * 2))
            .unwrap()
            .net
    }));
    assert_eq!(many.len(), 201);
    let e = p.apply(&many, &ApplyOptions::default()).await.unwrap_err();
    assert!(e.to_string().contains("at most 200"), "{e}");
    let e = p
        .apply(&RangeSet::new(), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert!(fake.requests().is_empty());
    assert_eq!(p.capabilities().max_ranges, Some(200));
}

#[tokio::test]
async fn egress_guard_refuses_to_cut_off_the_nodes() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    let p = provider(&fake);
    // Only one of the two outbound IPs is in the list.
    let e = p
        .apply(
            &set(&["20.33.4.0/23", "40.85.154.247"]),
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    match &e {
        ProviderError::Invalid(m) => {
            assert!(m.contains("40.85.154.248"), "{m}");
            assert!(!m.contains("40.85.154.247,"), "{m}");
            assert!(m.contains("allowNodeEgressLockout: true"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.puts().is_empty());
    let ip_reads = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("publicIPAddresses"))
        .count();
    assert_eq!(ip_reads, 2);
    assert!(
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("publicIPAddresses"))
            .all(|r| r.api_version.as_deref() == Some("2024-05-01"))
    );

    // 0.0.0.0/32 alone admits the cluster's own outbound IP: allowed.
    let applied = p
        .apply(&set(&["0.0.0.0/32"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(applied.changed);

    // With allowNodeEgressLockout the user takes responsibility.
    let p = provider_with(&fake, json!({"allowNodeEgressLockout": true}), TOKEN);
    fake.clear_requests();
    let applied = p
        .apply(&set(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(applied.changed);
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path.contains("publicIPAddresses"))
    );
    assert_eq!(held(&fake), Restriction::Ranges(set(&["20.33.4.0/23"])));
}

/// The egress guard runs in `preflight` (while planning) with the very refusal `apply`
/// gives, and preflight writes nothing.
#[tokio::test]
async fn preflight_refuses_what_apply_refuses_and_writes_nothing() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    let p = provider(&fake);
    let current = p.current().await.unwrap();
    let cut_off = set(&["20.33.4.0/23", "40.85.154.247"]);
    let found = p.preflight(&cut_off, &current).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("40.85.154.248"), "{found:?}");
    let refused = p
        .apply(&cut_off, &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains(&found[0].message),
        "apply and preflight say the same: {refused}"
    );
    assert!(
        p.preflight(&with_egress(&["20.33.4.0/23"]), &current)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        p.preflight(&set(&["0.0.0.0/32"]), &current)
            .await
            .unwrap()
            .is_empty()
    );
    let lax = provider_with(&fake, json!({"allowNodeEgressLockout": true}), TOKEN);
    assert!(lax.preflight(&cut_off, &current).await.unwrap().is_empty());
    assert!(fake.puts().is_empty(), "preflight never writes");
}

async fn converges_after(
    fault: Fault,
    method: Option<Method>,
    times: usize,
) -> (FakeArm, Vec<ProviderError>) {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.inject(fault.clone(), method, times);
    let p = provider(&fake);
    let desired = with_egress(&["20.33.4.0/23"]);
    let opts = ApplyOptions::default();
    let (applied, errors) = until_ok(10, || p.apply(&desired, &opts)).await;
    let applied = applied.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
    assert!(applied.changed, "{fault:?}");
    assert_eq!(held(&fake), Restriction::Ranges(desired), "{fault:?}");
    // Every PUT that got through carried the eTag the cluster had at that moment.
    for put in fake.puts().iter().filter(|r| r.status == 200) {
        assert_eq!(put.if_match, put.etag_at_arrival, "{fault:?}");
    }
    (fake, errors)
}

#[tokio::test]
async fn injected_faults_on_put_converge() {
    for fault in [
        Fault::Conflict,
        Fault::EtagMismatch,
        Fault::PreconditionFailed,
        Fault::Throttled(0),
        Fault::ServerError,
        Fault::Drop,
    ] {
        let (fake, errors) = converges_after(fault.clone(), Some(Method::PUT), 2).await;
        let puts = fake.puts();
        assert_eq!(puts.len(), 3, "{fault:?}: two refused, one accepted");
        // One attempt per call: each refusal came back typed for the retry policy.
        let kind = match fault {
            Fault::Conflict | Fault::EtagMismatch | Fault::PreconditionFailed => "conflict",
            Fault::Throttled(_) => "throttled",
            _ => "transient",
        };
        assert_eq!(errors.len(), 2, "{fault:?}: {errors:?}");
        assert!(
            errors.iter().all(|e| e.kind() == kind),
            "{fault:?}: {errors:?}"
        );
        // Each retry re-read the cluster first.
        let reqs = fake.requests();
        let cluster_gets = reqs
            .iter()
            .filter(|r| r.method == "GET" && r.path == cluster_path())
            .count();
        assert!(cluster_gets >= 4, "{fault:?}: {cluster_gets} GETs");
    }
}

#[tokio::test]
async fn injected_faults_on_reads_and_polls_converge() {
    for fault in [Fault::ServerError, Fault::Throttled(0), Fault::Drop] {
        converges_after(fault.clone(), Some(Method::GET), 3).await;
    }
}

#[tokio::test]
async fn a_put_whose_answer_is_lost_is_not_sent_twice() {
    let (fake, errors) = converges_after(Fault::DropAfterProcessing, Some(Method::PUT), 1).await;
    assert_eq!(fake.puts().len(), 1);
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.inject(Fault::Throttled(1), Some(Method::GET), 1);
    // The provider passes ARM's Retry-After on to the retry policy, which honours it.
    let p = provider(&fake);
    match p.current().await.unwrap_err() {
        ProviderError::Throttled { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(1)))
        }
        other => panic!("{other:?}"),
    }
    p.current().await.unwrap();

    // Retry-After on the operation is honoured too (1s between polls).
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.set_lro(1, Duration::from_secs(10), 1);
    let started = Instant::now();
    provider(&fake)
        .apply(&with_egress(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn errors_that_do_not_heal_fail_at_once_with_azures_code() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.inject(
        Fault::Status(
            400,
            "InvalidParameter".into(),
            "The value of parameter apiServerAccessProfile.authorizedIPRanges is invalid.".into(),
        ),
        Some(Method::PUT),
        1,
    );
    let e = provider(&fake)
        .apply(&with_egress(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("InvalidParameter: The value of parameter"),
        "{e}"
    );
    assert_eq!(fake.puts().len(), 1);

    fake.inject(
        Fault::Status(403, "AuthorizationFailed".into(), "The client does not have authorization to perform action 'Microsoft.ContainerService/managedClusters/write'.".into()),
        Some(Method::PUT),
        1,
    );
    let e = provider(&fake)
        .apply(&with_egress(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Auth(_)), "{e:?}");
    assert!(e.to_string().contains("AuthorizationFailed"), "{e}");
    assert_eq!(fake.puts().len(), 2);

    // A missing cluster is NotFound and names it.
    let empty = FakeArm::start(TOKEN).await.unwrap();
    let e = provider(&empty).current().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");
    assert!(
        e.to_string().contains("clustername1") && e.to_string().contains("ResourceNotFound"),
        "{e}"
    );

    // An api-version the service does not know is Invalid, with Azure's code.
    let p = provider_with(&fake, json!({"apiVersion": "2019-01-01"}), TOKEN);
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("NoRegisteredProviderFound"), "{e}");
}

#[tokio::test]
async fn a_rejected_token_is_auth_and_never_shown() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    let secret = "eyJhbGciOi.super-secret-token-value.sig";
    let p = provider_with(&fake, json!({}), secret);
    let e = p.current().await.unwrap_err();
    assert!(matches!(e, ProviderError::Auth(_)), "{e:?}");
    for text in [format!("{e}"), format!("{e:?}"), format!("{p:?}")] {
        assert!(!text.contains("super-secret-token-value"), "{text}");
    }
    assert!(!fake.requests()[0].authorized);
    let e = p
        .apply(&with_egress(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(!format!("{e:?}").contains("super-secret-token-value"));
}

#[tokio::test]
async fn operation_in_progress_gives_409_until_it_ends() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    // Operations run 300ms unless polled to the end; nobody polls the first one.
    fake.set_lro(1000, Duration::from_millis(300), 0);
    let p = provider(&fake);
    let first = p
        .apply(
            &with_egress(&["20.33.4.0/23"]),
            &ApplyOptions {
                wait: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(first.changed && first.pending, "{first:?}");
    assert_eq!(fake.puts().len(), 1);

    let second = with_egress(&["20.33.8.0/23"]);
    let opts = ApplyOptions::default();
    let (applied, errors) = until_ok(40, || p.apply(&second, &opts)).await;
    let applied = applied.unwrap();
    assert!(errors.iter().all(|e| e.kind() == "conflict"), "{errors:?}");
    assert!(applied.changed);
    let refused = fake.puts().iter().filter(|r| r.status == 409).count();
    assert!(
        refused >= 1,
        "expected at least one 409 while the first operation ran"
    );
    assert_eq!(held(&fake), Restriction::Ranges(second));
}

#[tokio::test]
async fn a_write_between_our_get_and_put_gets_412_and_survives() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    // Another client changes the node count right after our GET (while we look up the
    // egress IPs): our PUT carries the old eTag.
    fake.modify_cluster_on_request("publicIPAddresses/mgdoutboundip1", &cluster_path(), |v| {
        v["properties"]["agentPoolProfiles"][0]["count"] = json!(5);
    });
    let desired = with_egress(&["20.33.4.0/23"]);
    let p = provider(&fake);
    let opts = ApplyOptions::default();
    let (applied, errors) = until_ok(3, || p.apply(&desired, &opts)).await;
    assert!(applied.unwrap().changed);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind(), "conflict", "{errors:?}");
    let statuses: Vec<u16> = fake.puts().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![412, 200]);
    let puts = fake.puts();
    assert_ne!(puts[0].if_match, puts[1].if_match);
    assert_eq!(
        puts[1].body.as_ref().unwrap()["properties"]["agentPoolProfiles"][0]["count"],
        5
    );
    let body = fake.cluster(&cluster_path()).unwrap();
    assert_eq!(
        body["properties"]["agentPoolProfiles"][0]["count"], 5,
        "the other write was lost"
    );
    assert_eq!(held(&fake), Restriction::Ranges(desired));
}

#[tokio::test]
async fn two_concurrent_applies_never_lose_an_update() {
    for round in 0..3 {
        let fake = fake_with(Some(&["52.1.2.0/24"])).await;
        fake.set_lro(2, Duration::from_secs(5), 0);
        let a = with_egress(&["20.33.4.0/23"]);
        let b = with_egress(&["20.33.8.0/23", "52.1.2.0/24"]);
        let pa = provider(&fake);
        let pb = provider(&fake);
        let opts = ApplyOptions::default();
        let other_writer = async {
            tokio::time::sleep(Duration::from_millis(3 * round)).await;
            fake.modify_cluster(&cluster_path(), |v| {
                v["tags"]["owner"] = json!("someone-else");
            });
        };
        let (ra, rb, ()) = tokio::join!(
            until_ok(40, || pa.apply(&a, &opts)),
            until_ok(40, || pb.apply(&b, &opts)),
            other_writer
        );
        let (ra, rb) = (ra.0, rb.0);

        // The concurrent tag write survived: nobody PUT a body read before it.
        let body = fake.cluster(&cluster_path()).unwrap();
        assert_eq!(body["tags"]["owner"], "someone-else", "round {round}");
        assert_eq!(body["tags"]["tier"], "production");
        // Every accepted PUT matched the eTag current at the time.
        for put in fake.puts().iter().filter(|r| r.status == 200) {
            assert_eq!(put.if_match, put.etag_at_arrival, "round {round}");
        }
        // The final state is one of the two, and an apply that did not win says so.
        let final_state = held(&fake);
        assert!(
            final_state == Restriction::Ranges(a.clone())
                || final_state == Restriction::Ranges(b.clone())
        );
        for (r, mine) in [(&ra, &a), (&rb, &b)] {
            match r {
                Ok(_) => {}
                Err(ProviderError::Conflict(m)) => {
                    assert_ne!(final_state, Restriction::Ranges(mine.clone()), "{m}");
                    assert!(m.contains("someone else"), "{m}");
                }
                Err(e) => panic!("round {round}: {e:?}"),
            }
        }
        // The later apply's set is what the cluster holds: re-applying it changes nothing.
        let winner = if final_state == Restriction::Ranges(a.clone()) {
            &a
        } else {
            &b
        };
        fake.clear_requests();
        assert!(!provider(&fake).apply(winner, &opts).await.unwrap().changed);
        assert!(fake.puts().is_empty());
    }
}

#[tokio::test]
async fn failed_and_location_style_operations() {
    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.fail_next_operation("InternalOperationError", "Updating the API server failed.");
    let e = provider(&fake)
        .apply(&with_egress(&["20.33.4.0/23"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("InternalOperationError: Updating the API server failed."),
        "{e}"
    );
    assert_eq!(held(&fake), Restriction::Ranges(set(&["52.1.2.0/24"])));

    let fake = fake_with(Some(&["52.1.2.0/24"])).await;
    fake.set_lro_style(LroStyle::LocationOnly);
    let desired = with_egress(&["20.33.4.0/23"]);
    let applied = provider(&fake)
        .apply(&desired, &ApplyOptions::default())
        .await
        .unwrap();
    assert!(applied.changed);
    assert_eq!(held(&fake), Restriction::Ranges(desired));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.contains("/operationresults/"))
    );
}

#[tokio::test]
async fn disable_sends_an_empty_list_once() {
    let fake = fake_with(Some(&["52.1.2.0/24", "40.85.154.247/32"])).await;
    let p = provider(&fake);
    let applied = p.disable(&ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    let puts = fake.puts();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        ranges_of(puts[0].body.as_ref().unwrap()).unwrap(),
        Vec::<String>::new()
    );
    // No egress lookups for disable.
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path.contains("publicIPAddresses"))
    );
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    let again = p.disable(&ApplyOptions::default()).await.unwrap();
    assert!(!again.changed);
    assert_eq!(fake.puts().len(), 1);

    // Disabling a cluster that never had the profile sends nothing either.
    let fake = fake_with(None).await;
    assert!(
        !provider(&fake)
            .disable(&ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    assert!(fake.puts().is_empty());
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let fake = fake_with(None).await;
    let p = provider(&fake);
    let a = with_egress(&["52.1.2.0/24"]);
    let b = with_egress(&["20.33.4.0/23", "52.1.2.0/24", "13.64.0.1"]);
    let puts = || fake.puts().len();
    // A cluster the subscription does not have.
    let missing = provider_with(&fake, json!({"cluster": "no-such-cluster"}), TOKEN);
    // Each fault answers the next GET once; the provider makes one attempt per call.
    let (throttle, server_error, nothing) = (
        || fake.inject(Fault::Throttled(3), Some(Method::GET), 1),
        || fake.inject(Fault::ServerError, Some(Method::GET), 1),
        || {},
    );
    rangekeeper_provider::conformance::Suite::new(&p, &a, &b)
        .with_write_counter(&puts)
        .with_missing_target(&missing)
        .with_fault(rangekeeper_provider::conformance::Fault {
            name: "429 on the cluster read is throttled",
            inject: &throttle,
            clear: &nothing,
            expect: "throttled",
        })
        .with_fault(rangekeeper_provider::conformance::Fault {
            name: "500 on the cluster read is transient",
            inject: &server_error,
            clear: &nothing,
            expect: "transient",
        })
        .run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The suite ends with B applied without waiting: accepted, the operation in flight.
    assert_eq!(held(&fake), Restriction::Ranges(b));
    assert_eq!(fake.puts().len(), 5, "A, B, disable, A, B without waiting");
}

#[tokio::test]
async fn fake_adds_its_latency_to_every_request_and_an_in_sync_read_is_one_get() {
    // What scripts/bench-fleet.sh relies on: every request waits the latency, and reading an
    // in-sync cluster is a single GET.
    let fake = fake_with(Some(&["52.1.2.0/24", "40.85.154.247", "40.85.154.248"])).await;
    fake.set_latency(Duration::from_millis(300));
    let p = provider(&fake);
    let started = Instant::now();
    let state = p.current().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        state.restriction,
        Restriction::Ranges(with_egress(&["52.1.2.0/24"]))
    );
    assert_eq!(fake.requests().len(), 1);
    fake.set_latency(Duration::ZERO);
    let started = Instant::now();
    p.current().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}
