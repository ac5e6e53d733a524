//! The `netpol` provider against the real API server: create, in sync, drift repaired,
//! conflicts, disable, IPv4+IPv6, bad input.

use rangekeeper_provider::{ApplyOptions, ProviderError, Restriction};
use serde_json::json;

use crate::common::{Admin, cluster, namespace, netpol, netpol_path, set};

fn ranges(state: &rangekeeper_provider::State) -> Option<rangekeeper_provider::RangeSet> {
    match &state.restriction {
        Restriction::Ranges(r) => Some(r.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn create_stay_in_sync_repair_drift_and_disable() {
    let cp = cluster();
    let ns = "np-lifecycle";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let p = netpol(
        cp,
        "web-ingress",
        json!({
            "namespace": ns,
            "podSelector": {"matchLabels": {"app": "web"}},
            "ports": [443, {"port": 8443, "protocol": "TCP", "endPort": 8450}],
            "defaultDeny": true,
            "allowInCluster": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}],
        }),
    );
    let opts = ApplyOptions::default();
    // 10.0.0.0/8 without 10.66.0.0/16: one ipBlock with an except, not eight blocks.
    let a =
        set(&["10.0.0.0/8", "203.0.113.0/24", "2001:db8::/48"]).difference(&set(&["10.66.0.0/16"]));

    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    let path = netpol_path(ns, "rangekeeper-web-ingress");
    let live = admin.get(&path).await.unwrap();
    assert_eq!(
        live["spec"]["ingress"][0]["from"],
        json!([
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.66.0.0/16"]}},
            {"ipBlock": {"cidr": "203.0.113.0/24"}},
            {"ipBlock": {"cidr": "2001:db8::/48"}},
        ])
    );
    assert_eq!(
        live["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "rangekeeper"
    );
    assert_eq!(
        live["metadata"]["annotations"]["rangekeeper.dev/target"],
        "web-ingress"
    );
    assert!(
        admin
            .get(&netpol_path(ns, "rangekeeper-web-ingress-default-deny"))
            .await
            .is_some()
    );
    let state = p.current().await.unwrap();
    assert_eq!(ranges(&state), Some(a.clone()));
    assert!(state.drift.is_empty(), "{:?}", state.drift);

    // In sync: nothing is written (the objects keep their resourceVersion).
    let rv = live["metadata"]["resourceVersion"].clone();
    assert!(!p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(
        admin.get(&path).await.unwrap()["metadata"]["resourceVersion"],
        rv
    );

    // `kubectl edit` of an ipBlock: the plan sees other ranges, apply takes them back.
    admin
        .edit(&path, |o| {
            o["spec"]["ingress"][0]["from"][1]["ipBlock"]["cidr"] = json!("198.51.100.0/24")
        })
        .await;
    let state = p.current().await.unwrap();
    assert_ne!(ranges(&state), Some(a.clone()));
    assert!(
        ranges(&state)
            .unwrap()
            .contains_net(&"198.51.100.0/24".parse().unwrap())
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(ranges(&p.current().await.unwrap()), Some(a.clone()));

    // A port changed by hand: same ranges, but drift; apply repairs it.
    admin
        .edit(&path, |o| {
            o["spec"]["ingress"][0]["ports"][0]["port"] = json!(80)
        })
        .await;
    let state = p.current().await.unwrap();
    assert_eq!(ranges(&state), Some(a.clone()));
    assert_eq!(state.drift.len(), 1, "{:?}", state.drift);
    assert!(
        state.drift[0].contains("spec.ingress[0].ports[0].port"),
        "{:?}",
        state.drift
    );
    assert!(state.drift[0].contains("kubectl-edit"), "{:?}", state.drift);
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    let state = p.current().await.unwrap();
    assert!(state.drift.is_empty(), "{:?}", state.drift);
    assert_eq!(
        admin.get(&path).await.unwrap()["spec"]["ingress"][0]["ports"][0]["port"],
        443
    );

    // The default-deny policy deleted: drift, repaired.
    admin
        .delete(&netpol_path(ns, "rangekeeper-web-ingress-default-deny"))
        .await;
    let state = p.current().await.unwrap();
    assert!(
        state
            .drift
            .iter()
            .any(|d| d.contains("default-deny") && d.contains("missing")),
        "{:?}",
        state.drift
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert!(p.current().await.unwrap().drift.is_empty());

    // The allow policy deleted: unrestricted, and the leftover default-deny is drift.
    admin.delete(&path).await;
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert_eq!(state.drift.len(), 1, "{:?}", state.drift);
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(ranges(&p.current().await.unwrap()), Some(a.clone()));

    // Disable removes both policies, and only them.
    admin
        .create(
            &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "someone-elses"}, "spec": {"podSelector": {}}}),
        )
        .await;
    assert!(p.disable(&opts).await.unwrap().changed);
    assert!(admin.get(&path).await.is_none());
    assert!(
        admin
            .get(&netpol_path(ns, "rangekeeper-web-ingress-default-deny"))
            .await
            .is_none()
    );
    assert!(admin.get(&netpol_path(ns, "someone-elses")).await.is_some());
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(!p.disable(&opts).await.unwrap().changed);
}

#[tokio::test]
async fn another_appliers_fields_are_refused_unless_forced() {
    let cp = cluster();
    let ns = "np-conflict";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let fields = json!({"namespace": ns, "podSelector": {}});
    let p = netpol(cp, "gitops", fields.clone());
    let opts = ApplyOptions::default();
    let a = set(&["192.0.2.0/24"]);
    p.apply(&a, &opts).await.unwrap();
    let path = netpol_path(ns, "rangekeeper-gitops");
    // Argo CD applies the same policy with other ipBlocks (taking the field over).
    let mut theirs = admin.get(&path).await.unwrap();
    for k in [
        "managedFields",
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "generation",
    ] {
        theirs["metadata"].as_object_mut().unwrap().remove(k);
    }
    theirs["spec"]["ingress"][0]["from"] = json!([{"ipBlock": {"cidr": "198.51.100.0/24"}}]);
    let (s, v) = admin.apply_as("argocd", &path, &theirs, true).await;
    assert_eq!(s, 200, "{v}");

    // rangekeeper refuses to take them over, naming Argo CD; the plan's dry run says so too.
    let state = p.current().await.unwrap();
    let found = p.preflight(&a, &state).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].message.contains("`argocd`") && found[0].message.contains("force: true"),
        "{found:?}"
    );
    match p.apply(&a, &opts).await {
        Err(ProviderError::Invalid(m)) => {
            assert!(m.contains("`argocd`"), "{m}");
            assert!(m.contains(".spec.ingress"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        admin.get(&path).await.unwrap()["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"],
        "198.51.100.0/24"
    );

    // `force: true` takes them over.
    let mut forced = fields.clone();
    forced["force"] = json!(true);
    let p = netpol(cp, "gitops", forced);
    assert!(
        p.preflight(&a, &p.current().await.unwrap())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(ranges(&p.current().await.unwrap()), Some(a));
}

#[tokio::test]
async fn an_object_rangekeeper_does_not_manage_is_never_touched() {
    let cp = cluster();
    let ns = "np-unmanaged";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let theirs = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "rangekeeper-mine"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    admin
        .create(
            &format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"),
            &theirs,
        )
        .await;
    let path = netpol_path(ns, "rangekeeper-mine");
    let rv = admin.get(&path).await.unwrap()["metadata"]["resourceVersion"].clone();
    let p = netpol(cp, "mine", json!({"namespace": ns, "podSelector": {}}));
    let opts = ApplyOptions::default();
    for e in [
        p.current().await.unwrap_err(),
        p.apply(&set(&["192.0.2.0/24"]), &opts).await.unwrap_err(),
        p.disable(&opts).await.unwrap_err(),
    ] {
        let ProviderError::Config(m) = &e else {
            panic!("{e:?}")
        };
        assert!(m.contains("target `mine`"), "{m}");
        assert!(m.contains("is not managed by rangekeeper"), "{m}");
        assert!(m.contains("`name:`"), "{m}");
    }
    assert_eq!(
        admin.get(&path).await.unwrap()["metadata"]["resourceVersion"],
        rv
    );
}

#[tokio::test]
async fn a_missing_namespace_refuses_the_plan_and_writes_nothing() {
    let cp = cluster();
    let p = netpol(
        cp,
        "nowhere",
        json!({"namespace": "np-does-not-exist", "podSelector": {}}),
    );
    let a = set(&["192.0.2.0/24"]);
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    let found = p.preflight(&a, &state).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(!found[0].warning);
    assert!(
        found[0]
            .message
            .contains("namespace `np-does-not-exist` does not exist"),
        "{found:?}"
    );
    match p.apply(&a, &ApplyOptions::default()).await {
        Err(ProviderError::Config(m)) => assert!(m.contains("create it first"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rbac_forbidden_names_the_verb_and_resource_to_grant() {
    let cp = cluster();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("limited.kubeconfig");
    cp.write_kubeconfig(
        &kc,
        rangekeeper_test_support::kube::KubeUser::Token(cp.user_token("limited").to_owned()),
    );
    let p = netpol(
        cp,
        "limited",
        json!({"namespace": "default", "podSelector": {}, "kubeconfig": kc}),
    );
    match p.current().await {
        Err(ProviderError::Auth(m)) => {
            assert!(m.contains("target `limited`"), "{m}");
            assert!(
                m.contains("grant `get` on `networkpolicies.networking.k8s.io`"),
                "{m}"
            );
            assert!(m.contains("Role in namespace `default`"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let found = p
        .preflight(
            &set(&["192.0.2.0/24"]),
            &rangekeeper_provider::State::new(Restriction::Unrestricted),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].message.contains("forbidden"), "{found:?}");
}

#[tokio::test]
async fn an_exec_credential_plugin_authenticates() {
    let cp = cluster();
    let ns = "np-exec";
    namespace(cp, ns);
    let dir = tempfile::tempdir().unwrap();
    let kc = crate::common::exec_kubeconfig(cp, dir.path(), cp.admin_token());
    let p = netpol(
        cp,
        "exec",
        json!({"namespace": ns, "podSelector": {}, "kubeconfig": kc}),
    );
    let a = set(&["192.0.2.0/24", "2001:db8:5::/48"]);
    assert!(p.apply(&a, &ApplyOptions::default()).await.unwrap().changed);
    assert_eq!(ranges(&p.current().await.unwrap()), Some(a));
    let log = std::fs::read_to_string(dir.path().join("plugin.log")).unwrap();
    assert!(log.contains("called yes"), "{log}");

    // A plugin that fails is a credentials error naming the target.
    let bad = dir.path().join("bad.kubeconfig");
    cp.write_kubeconfig(
        &bad,
        rangekeeper_test_support::kube::KubeUser::Exec {
            command: "/bin/false".into(),
            args: vec![],
            env: vec![],
        },
    );
    let p = netpol(
        cp,
        "exec-bad",
        json!({"namespace": ns, "podSelector": {}, "kubeconfig": bad}),
    );
    match p.current().await {
        Err(ProviderError::Auth(m)) => assert!(m.contains("target `exec-bad`"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_input_is_refused_naming_the_target_and_the_fix() {
    let cases = [
        (
            json!({"namespace": "web", "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}),
            "target `t`: `podSelector.matchExpressions[0]`: operator `In` needs at least one value in `values`",
        ),
        (
            json!({"namespace": "Web", "podSelector": {}}),
            "`namespace` `Web` must be lowercase",
        ),
        (json!({"namespace": "web"}), "missing field `podSelector`"),
        (
            json!({"namespace": "web", "podSelector": {}, "ports": [70000]}),
            "`ports[0]`: port 70000 is not between 1 and 65535",
        ),
        (
            json!({"namespace": "web", "podSelector": {}, "allowInCluster": [{}]}),
            "`allowInCluster[0]` needs `namespaceSelector`, `podSelector` or both",
        ),
        (
            json!({"namespace": "web", "podSelector": {}, "inCluster": true, "context": "prod"}),
            "`inCluster: true` uses the pod's service account",
        ),
        (
            json!({"namespace": "web", "podSelector": {}, "defaultdeny": true}),
            "unknown field `defaultdeny` (did you mean `defaultDeny`?)",
        ),
    ];
    for (fields, want) in cases {
        let e = rangekeeper_provider_kubernetes::netpol_factory(&crate::common::config(
            "t",
            fields.clone(),
        ))
        .err()
        .unwrap();
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
        assert!(e.to_string().contains(want), "{fields}: {e}");
    }
}
