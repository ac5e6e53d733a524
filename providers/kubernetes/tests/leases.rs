//! Leases as annotations of the object that holds the ranges, against the real API server:
//! written in the same server-side apply as the ranges, read back by `current` with the
//! object's resourceVersion as the version, a stale version refused (before sending, and by
//! the server itself when the object changes between the read and the write), other tools'
//! annotations kept, the 256 KiB annotation limit and annotation key rules refused with the
//! reason.

use rangekeeper_provider::{
    ApplyOptions, Lease, LeaseId, Provider, ProviderError, RangeSet, Restriction, State, Timestamp,
};
use rangekeeper_test_support::interpose::Interposer;
use serde_json::json;

use crate::common::{Admin, calico, cluster, gnp_path, namespace, netpol, netpol_path, set};

fn lease(id: &str, ip: &str) -> Lease {
    Lease {
        id: LeaseId::parse(id).unwrap(),
        address: ip.parse().unwrap(),
        expires: Timestamp::now().plus(std::time::Duration::from_secs(600)),
        requested_by: "alice@github:org/repo/actions/runs/1".into(),
        reason: Some("deploy".into()),
    }
}

fn with(base: &RangeSet, leases: &[&Lease]) -> RangeSet {
    base.union(&RangeSet::from_nets(leases.iter().map(|l| l.net())))
}

fn ranges(state: &State) -> RangeSet {
    match &state.restriction {
        Restriction::Ranges(r) => r.clone(),
        other => panic!("not restricted: {other:?}"),
    }
}

fn lease_keys(obj: &serde_json::Value) -> Vec<String> {
    obj["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("rangekeeper.dev/lease-"))
        .cloned()
        .collect()
}

async fn write(
    p: &dyn Provider,
    desired: &RangeSet,
    leases: &[Lease],
    version: Option<&str>,
) -> Result<bool, ProviderError> {
    p.apply_leased(desired, leases, version, &ApplyOptions::default())
        .await
        .map(|a| a.changed)
}

#[tokio::test]
async fn netpol_keeps_leases_as_annotations_under_its_resource_version() {
    let cp = cluster();
    let ns = "np-leases";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let p = netpol(
        cp,
        "leased",
        json!({"namespace": ns, "podSelector": {}, "ports": [443], "defaultDeny": true}),
    );
    assert!(p.capabilities().leases);
    let path = netpol_path(ns, "rangekeeper-leased");
    let base = set(&["203.0.113.0/24"]);

    // Absent: no leases, a version that says so; the first write creates the objects.
    let s0 = p.current().await.unwrap();
    assert_eq!(s0.version.as_deref(), Some("absent"));
    assert!(
        write(p.as_ref(), &base, &[], s0.version.as_deref())
            .await
            .unwrap()
    );
    let s1 = p.current().await.unwrap();
    assert!(s1.leases.is_empty());
    let live = admin.get(&path).await.unwrap();
    assert_eq!(
        s1.version.as_deref(),
        live["metadata"]["resourceVersion"].as_str()
    );
    // A creation planned from "absent" is refused once the object exists.
    let e = write(p.as_ref(), &base, &[], Some("absent"))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e:?}");

    // Grant: the address and the annotation in one write.
    let a = lease("aaa111", "198.51.100.7");
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&a]),
            std::slice::from_ref(&a),
            s1.version.as_deref()
        )
        .await
        .unwrap()
    );
    let live = admin.get(&path).await.unwrap();
    assert_eq!(
        live["spec"]["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "198.51.100.7/32"}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}])
    );
    assert_eq!(lease_keys(&live), ["rangekeeper.dev/lease-aaa111"]);
    let stored: Lease = serde_json::from_str(
        live["metadata"]["annotations"]["rangekeeper.dev/lease-aaa111"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored, a);
    let s2 = p.current().await.unwrap();
    assert_eq!(s2.leases, vec![a.clone()]);
    assert!(s2.drift.is_empty(), "{:?}", s2.drift);
    assert_eq!(ranges(&s2), with(&base, &[&a]));
    // The default-deny policy holds no lease.
    let deny = admin
        .get(&netpol_path(ns, "rangekeeper-leased-default-deny"))
        .await
        .unwrap();
    assert!(lease_keys(&deny).is_empty());

    // In sync: nothing is sent, the resourceVersion stays.
    assert!(
        !write(
            p.as_ref(),
            &with(&base, &[&a]),
            std::slice::from_ref(&a),
            s2.version.as_deref()
        )
        .await
        .unwrap()
    );
    assert_eq!(p.current().await.unwrap().version, s2.version);

    // Another tool annotates the policy: the version read before is stale, and a write
    // planned from it is refused, with nothing changed.
    admin
        .merge_patch(
            &path,
            &json!({"metadata": {"annotations": {"team": "web"}}}),
        )
        .await;
    let b = lease("bbb222", "198.51.100.9");
    let e = write(
        p.as_ref(),
        &with(&base, &[&b]),
        std::slice::from_ref(&b),
        s2.version.as_deref(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e:?}");
    let s3 = p.current().await.unwrap();
    assert_eq!(
        s3.leases,
        vec![a.clone()],
        "a refused write changes nothing"
    );
    assert_ne!(s3.version, s2.version);

    // From a new read: both leases; then revoke one. The other tool's annotation stays.
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&a, &b]),
            &[a.clone(), b.clone()],
            s3.version.as_deref()
        )
        .await
        .unwrap()
    );
    let s4 = p.current().await.unwrap();
    assert_eq!(s4.leases.len(), 2);
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&b]),
            std::slice::from_ref(&b),
            s4.version.as_deref()
        )
        .await
        .unwrap()
    );
    let live = admin.get(&path).await.unwrap();
    assert_eq!(lease_keys(&live), ["rangekeeper.dev/lease-bbb222"]);
    assert_eq!(live["metadata"]["annotations"]["team"], "web");
    assert_eq!(
        live["spec"]["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "198.51.100.9/32"}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}])
    );

    // A plain apply keeps the leases whose address it keeps.
    assert!(
        !p.apply(&with(&base, &[&b]), &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    assert_eq!(p.current().await.unwrap().leases, vec![b.clone()]);
    // The last lease goes: only the declaration is left.
    let s5 = p.current().await.unwrap();
    assert!(
        write(p.as_ref(), &base, &[], s5.version.as_deref())
            .await
            .unwrap()
    );
    let live = admin.get(&path).await.unwrap();
    assert!(lease_keys(&live).is_empty());
    assert_eq!(ranges(&p.current().await.unwrap()), base);

    // A lease whose address the desired set lacks is refused.
    let s6 = p.current().await.unwrap();
    let e = write(p.as_ref(), &base, &[a], s6.version.as_deref())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
}

/// The API server's own compare-and-swap: another writer's edit lands after the provider
/// read the object and before its apply arrives, so the apply carries a stale
/// resourceVersion and the server answers 409 Conflict.
#[tokio::test]
async fn an_edit_between_the_read_and_the_write_is_a_conflict_from_the_server() {
    let cp = cluster();
    let ns = "np-leases-race";
    namespace(cp, ns);
    let proxy = Interposer::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("proxy.kubeconfig");
    proxy.write_kubeconfig(cp, &kc);
    let p = netpol(
        cp,
        "raced",
        json!({"namespace": ns, "podSelector": {}, "kubeconfig": kc}),
    );
    let base = set(&["203.0.113.0/24"]);
    let s = p.current().await.unwrap();
    write(p.as_ref(), &base, &[], s.version.as_deref())
        .await
        .unwrap();
    let path = netpol_path(ns, "rangekeeper-raced");
    let s = p.current().await.unwrap();
    let earlier = proxy.seen().len();
    let edited = path.clone();
    proxy.before_write(&path, move || {
        let patch = json!({"metadata": {"annotations": {"edited-by": "someone-else"}}});
        let (status, body) = cluster()
            .request(
                "PATCH",
                &edited,
                Some(("application/merge-patch+json", patch.to_string())),
                None,
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    });
    let a = lease("ccc333", "198.51.100.11");
    let e = write(
        p.as_ref(),
        &with(&base, &[&a]),
        std::slice::from_ref(&a),
        s.version.as_deref(),
    )
    .await
    .unwrap_err();
    assert!(proxy.hook_ran());
    assert!(matches!(e, ProviderError::Conflict(_)), "{e:?}");
    assert!(
        e.to_string().contains("the object has been modified"),
        "the server's refusal: {e}"
    );
    let refused = proxy.seen()[earlier..]
        .iter()
        .filter(|r| r.method == "PATCH" && !r.dry_run)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(refused, [409]);
    // Nothing of the refused write landed; the edit did.
    let s2 = p.current().await.unwrap();
    assert!(s2.leases.is_empty());
    assert_eq!(ranges(&s2), base);
    // From the new read it goes through.
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&a]),
            std::slice::from_ref(&a),
            s2.version.as_deref()
        )
        .await
        .unwrap()
    );
    let live = Admin::new(cp)
        .await
        .get(&netpol_path(ns, "rangekeeper-raced"))
        .await
        .unwrap();
    assert_eq!(live["metadata"]["annotations"]["edited-by"], "someone-else");
    assert_eq!(lease_keys(&live), ["rangekeeper.dev/lease-ccc333"]);
}

#[tokio::test]
async fn leases_that_do_not_fit_are_refused_with_the_reason() {
    let cp = cluster();
    let ns = "np-leases-limits";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let p = netpol(cp, "full", json!({"namespace": ns, "podSelector": {}}));
    let base = set(&["203.0.113.0/24"]);
    let s = p.current().await.unwrap();
    write(p.as_ref(), &base, &[], s.version.as_deref())
        .await
        .unwrap();
    let path = netpol_path(ns, "rangekeeper-full");
    // Another tool's annotation takes nearly all of the 256 KiB.
    admin
        .merge_patch(
            &path,
            &json!({"metadata": {"annotations": {"example.com/blob": "x".repeat(256 * 1024 - 100)}}}),
        )
        .await;
    let before = admin.get(&path).await.unwrap();
    let s = p.current().await.unwrap();
    let a = lease("ddd444", "198.51.100.13");
    let e = write(
        p.as_ref(),
        &with(&base, &[&a]),
        std::slice::from_ref(&a),
        s.version.as_deref(),
    )
    .await
    .unwrap_err();
    let ProviderError::Invalid(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("256 KiB") && m.contains("1 lease annotation"),
        "{m}"
    );
    // An id that makes no valid annotation key.
    let bad = lease("eee-", "198.51.100.15");
    let e = write(
        p.as_ref(),
        &with(&base, &[&bad]),
        std::slice::from_ref(&bad),
        s.version.as_deref(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("begin and end with a letter or digit"),
        "{e}"
    );
    let after = admin.get(&path).await.unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "nothing was written"
    );
}

/// A lease annotation another field manager also owns (`kubectl annotate`) cannot be removed
/// by rangekeeper's apply: revoking it is an error saying how to remove it by hand.
#[tokio::test]
async fn a_lease_annotation_another_manager_owns_is_named_not_silently_kept() {
    let cp = cluster();
    let ns = "np-leases-foreign";
    namespace(cp, ns);
    let admin = Admin::new(cp).await;
    let p = netpol(cp, "foreign", json!({"namespace": ns, "podSelector": {}}));
    let base = set(&["203.0.113.0/24"]);
    let s = p.current().await.unwrap();
    write(p.as_ref(), &base, &[], s.version.as_deref())
        .await
        .unwrap();
    let path = netpol_path(ns, "rangekeeper-foreign");
    let hand = lease("fff555", "198.51.100.17");
    admin
        .merge_patch(
            &format!("{path}?fieldManager=kubectl-annotate"),
            &json!({"metadata": {"annotations": {"rangekeeper.dev/lease-fff555": serde_json::to_string(&hand).unwrap()}}}),
        )
        .await;
    let s = p.current().await.unwrap();
    assert_eq!(s.leases, vec![hand.clone()]);
    // Keeping it (with its address) works.
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&hand]),
            std::slice::from_ref(&hand),
            s.version.as_deref()
        )
        .await
        .unwrap()
    );
    let s = p.current().await.unwrap();
    let e = write(p.as_ref(), &base, &[], s.version.as_deref())
        .await
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("`rangekeeper.dev/lease-fff555` (also owned by `kubectl-annotate`)")
            && m.contains("kubectl annotate -n np-leases-foreign networkpolicies.networking.k8s.io/rangekeeper-foreign rangekeeper.dev/lease-fff555-"),
        "{m}"
    );
}

#[tokio::test]
async fn calico_keeps_leases_on_its_global_network_policy() {
    let cp = cluster();
    let admin = Admin::new(cp).await;
    let p = calico(
        cp,
        "leased",
        json!({"destination": {"ports": [443]}, "companions": {"clusterNets": ["10.244.0.0/16"]}}),
    );
    assert!(p.capabilities().leases);
    let path = gnp_path("rangekeeper-leased");
    let base = set(&["203.0.113.0/24", "2001:db8:77::/48"]);
    let s = p.current().await.unwrap();
    write(p.as_ref(), &base, &[], s.version.as_deref())
        .await
        .unwrap();
    let s = p.current().await.unwrap();
    let a = lease("ggg666", "2001:db8:1::7");
    assert!(
        write(
            p.as_ref(),
            &with(&base, &[&a]),
            std::slice::from_ref(&a),
            s.version.as_deref()
        )
        .await
        .unwrap()
    );
    let live = admin.get(&path).await.unwrap();
    assert_eq!(lease_keys(&live), ["rangekeeper.dev/lease-ggg666"]);
    let nets: Vec<&serde_json::Value> = live["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "Allow")
        .map(|r| &r["source"]["nets"])
        .collect();
    assert_eq!(
        nets,
        [
            &json!(["203.0.113.0/24"]),
            &json!(["2001:db8:1::7/128", "2001:db8:77::/48"])
        ]
    );
    // The companions hold no lease.
    for suffix in ["allow-cluster-internal", "allow-host", "allow-outbound"] {
        let c = admin
            .get(&gnp_path(&format!("rangekeeper-leased-{suffix}")))
            .await
            .unwrap();
        assert!(lease_keys(&c).is_empty());
    }
    let s = p.current().await.unwrap();
    assert_eq!(s.leases, vec![a.clone()]);
    assert!(s.drift.is_empty(), "{:?}", s.drift);
    assert_eq!(
        s.version.as_deref(),
        live["metadata"]["resourceVersion"].as_str()
    );
    assert!(
        write(p.as_ref(), &base, &[], s.version.as_deref())
            .await
            .unwrap()
    );
    let live = admin.get(&path).await.unwrap();
    assert!(lease_keys(&live).is_empty());
    assert_eq!(ranges(&p.current().await.unwrap()), base);
}
