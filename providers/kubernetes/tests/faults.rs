//! An API server that is down or answers 429/500: typed errors, one attempt per call.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rangekeeper_provider::{ApplyOptions, ProviderError};
use serde_json::json;

use crate::common::{Proxy, cluster, namespace, netpol, set};

#[tokio::test]
async fn throttling_and_server_errors_are_typed_and_tried_once() {
    let cp = cluster();
    namespace(cp, "np-faults");
    let proxy = Proxy::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = proxy.kubeconfig(cp, dir.path());
    let p = netpol(
        cp,
        "faults",
        json!({"namespace": "np-faults", "podSelector": {}, "kubeconfig": kc}),
    );
    p.current().await.unwrap();

    proxy.fault.store(429, Ordering::SeqCst);
    let before = proxy.faulted.load(Ordering::SeqCst);
    match p.current().await {
        Err(e @ ProviderError::Throttled { .. }) => {
            assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
            assert!(e.to_string().contains("target `faults`"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // One attempt: the retry policy of the binary (src/retry.rs) alone tries again.
    assert_eq!(proxy.faulted.load(Ordering::SeqCst) - before, 1);
    proxy.fault.store(500, Ordering::SeqCst);
    let e = p
        .apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_eq!(
        proxy.writes.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
    proxy.fault.store(0, Ordering::SeqCst);
    assert!(
        p.apply(&set(&["192.0.2.0/24"]), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
}

#[tokio::test]
async fn an_api_server_that_is_down_is_transient() {
    let cp = cluster();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("down.kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster:\n    server: http://{closed}\ncontexts:\n- name: down\n  context: {{cluster: down, user: u}}\ncurrent-context: down\nusers:\n- name: u\n  user:\n    token: {}\n",
            cp.admin_token()
        ),
    )
    .unwrap();
    let p = netpol(
        cp,
        "down",
        json!({"namespace": "default", "podSelector": {}, "kubeconfig": kc}),
    );
    match p.current().await {
        Err(ProviderError::Transient(m)) => {
            assert!(
                m.contains("target `down`: cannot reach the API server"),
                "{m}"
            );
            assert!(!m.contains(cp.admin_token()), "no token in messages: {m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_context_that_is_not_in_the_kubeconfig_is_named() {
    let cp = cluster();
    let p = netpol(
        cp,
        "ctx",
        json!({"namespace": "default", "podSelector": {}, "context": "rangekeeper-tset"}),
    );
    match p.current().await {
        Err(ProviderError::Config(m)) => {
            assert!(
                m.contains("no context `rangekeeper-tset` (did you mean `rangekeeper-test`?)"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// `manifests` is exactly what `apply` sends: the bodies of the writes the proxy saw.
#[tokio::test]
async fn manifests_are_exactly_what_apply_sends() {
    let cp = cluster();
    namespace(cp, "np-manifests");
    let proxy = Proxy::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = proxy.kubeconfig(cp, dir.path());
    let p = netpol(
        cp,
        "manifests",
        json!({"namespace": "np-manifests", "podSelector": {"matchLabels": {"app": "web"}},
               "ports": [443], "defaultDeny": true, "kubeconfig": kc}),
    );
    let a = set(&["10.0.0.0/8", "2001:db8::/32"]).difference(&set(&["10.66.0.0/16"]));
    let manifests = p.manifests(&a).await.unwrap().unwrap();
    assert!(p.apply(&a, &ApplyOptions::default()).await.unwrap().changed);
    let sent = proxy.sent.lock().unwrap().clone();
    assert_eq!(sent, manifests);
    insta::assert_json_snapshot!("netpol_manifests", manifests);
}
