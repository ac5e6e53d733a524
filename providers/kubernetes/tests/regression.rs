//! One test per fixed bug, named after what it protects.

use std::sync::atomic::Ordering;

use rangekeeper_provider::ProviderError;
use serde_json::json;

use crate::common::{Proxy, cluster, netpol};

/// kube-rs 5 retries 429/503/504 by itself (15 times, honouring `Retry-After`), which made one
/// `current()` against a throttling server take minutes and hid the throttling from the
/// binary's retry policy, the one owner of retries. One call is one request.
#[tokio::test]
async fn the_kube_clients_own_retries_stay_off() {
    let cp = cluster();
    let proxy = Proxy::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = proxy.kubeconfig(cp, dir.path());
    let p = netpol(
        cp,
        "once",
        json!({"namespace": "default", "podSelector": {}, "kubeconfig": kc}),
    );
    for status in [429, 503, 504] {
        proxy.fault.store(status, Ordering::SeqCst);
        let before = proxy.faulted.load(Ordering::SeqCst);
        let e = p.current().await.unwrap_err();
        assert!(
            matches!(
                e,
                ProviderError::Throttled { .. } | ProviderError::Transient(_)
            ),
            "{status}: {e:?}"
        );
        assert_eq!(proxy.faulted.load(Ordering::SeqCst) - before, 1, "{status}");
    }
}

/// A 409's field conflicts are in `details.causes[].reason` (metav1.StatusCause's JSON name
/// for its type); reading `type` missed them, so a hand edit came back as a retryable
/// conflict instead of being taken back.
#[tokio::test]
async fn a_hand_edit_is_taken_back_not_retried_as_a_conflict() {
    let cp = cluster();
    crate::common::namespace(cp, "np-regress-edit");
    let admin = crate::common::Admin::new(cp).await;
    let p = netpol(
        cp,
        "edited",
        json!({"namespace": "np-regress-edit", "podSelector": {}}),
    );
    let a = crate::common::set(&["192.0.2.0/24"]);
    let opts = rangekeeper_provider::ApplyOptions::default();
    p.apply(&a, &opts).await.unwrap();
    let path = crate::common::netpol_path("np-regress-edit", "rangekeeper-edited");
    admin
        .edit(&path, |o| {
            o["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] = json!("198.51.100.0/24")
        })
        .await;
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(
        admin.get(&path).await.unwrap()["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"],
        "192.0.2.0/24"
    );
}
