//! The `calico` provider against the real API server with Calico's CRDs: the server's
//! schema and CEL validation judge every object sent.

use rangekeeper_provider::{ApplyOptions, ProviderError, Restriction, State};
use serde_json::json;

use crate::common::{Admin, calico, cluster, gnp_path, set};

#[tokio::test]
async fn policy_companions_and_host_endpoints_are_kept_and_removed() {
    let cp = cluster();
    let admin = Admin::new(cp).await;
    // Two nodes of this test's own (the shared cluster has no kubelets).
    for (name, ip4, ip6) in [
        ("cal-node-a", "10.0.0.11", "fd00::11"),
        ("cal-node-b", "10.0.0.12", "fd00::12"),
    ] {
        admin
            .create(
                "/api/v1/nodes",
                &json!({"apiVersion": "v1", "kind": "Node",
                        "metadata": {"name": name, "labels": {"rk-test": "calico-lifecycle"}}}),
            )
            .await;
        admin
            .merge_patch(
                &format!("/api/v1/nodes/{name}/status"),
                &json!({"status": {"addresses": [
                    {"type": "InternalIP", "address": ip4},
                    {"type": "InternalIP", "address": ip6},
                    {"type": "Hostname", "address": name},
                ]}}),
            )
            .await;
    }
    let p = calico(
        cp,
        "node-ports",
        json!({
            "destination": {"nets": ["10.96.0.10/32", "fd00:10:96::a/128"], "ports": [443, "30000:32767"]},
            "companions": {"clusterNets": ["10.244.0.0/16", "10.0.0.0/16", "fd00::/64"]},
            "hostEndpoints": {"nodeSelector": "rk-test=calico-lifecycle"},
        }),
    );
    let opts = ApplyOptions::default();
    let a = set(&["203.0.113.0/24", "2001:db8:77::/48"])
        .union(&set(&["198.18.0.0/15"]).difference(&set(&["198.18.4.0/24"])));
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    let gnp = admin
        .get(&gnp_path("rangekeeper-node-ports"))
        .await
        .unwrap();
    assert_eq!(gnp["spec"]["preDNAT"], true);
    assert_eq!(gnp["spec"]["applyOnForward"], true);
    assert_eq!(gnp["spec"]["selector"], "k8s-role == 'node'");
    let ingress = gnp["spec"]["ingress"].as_array().unwrap();
    // IPv4: plain sources, the block with its hole, deny; IPv6: sources, deny.
    assert_eq!(ingress.len(), 5, "{ingress:#?}");
    assert_eq!(
        ingress[1]["source"],
        json!({"nets": ["198.18.0.0/15"], "notNets": ["198.18.4.0/24"]})
    );
    assert_eq!(ingress[2]["action"], "Deny");
    for name in ["allow-cluster-internal", "allow-host", "allow-outbound"] {
        assert!(
            admin
                .get(&gnp_path(&format!("rangekeeper-node-ports-{name}")))
                .await
                .is_some(),
            "{name}"
        );
    }
    let hep = admin
        .get("/apis/projectcalico.org/v3/hostendpoints/rangekeeper-node-ports-cal-node-a")
        .await
        .unwrap();
    assert_eq!(hep["spec"]["node"], "cal-node-a");
    assert_eq!(hep["spec"]["interfaceName"], "*");
    assert_eq!(hep["spec"]["expectedIPs"], json!(["10.0.0.11", "fd00::11"]));
    assert_eq!(hep["metadata"]["labels"]["k8s-role"], "node");

    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Ranges(a.clone()));
    assert!(state.drift.is_empty(), "{:?}", state.drift);
    assert!(!p.apply(&a, &opts).await.unwrap().changed);

    // A node leaves: its HostEndpoint is drift, removed by apply; a new one is added.
    admin.delete("/api/v1/nodes/cal-node-b").await;
    let state = p.current().await.unwrap();
    assert!(
        state
            .drift
            .iter()
            .any(|d| d.contains("cal-node-b") && d.contains("no longer declared")),
        "{:?}",
        state.drift
    );
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert!(
        admin
            .get("/apis/projectcalico.org/v3/hostendpoints/rangekeeper-node-ports-cal-node-b")
            .await
            .is_none()
    );

    // The policy deleted by hand: unrestricted (companions left are drift), restored.
    admin.delete(&gnp_path("rangekeeper-node-ports")).await;
    let state = p.current().await.unwrap();
    assert_eq!(state.restriction, Restriction::Unrestricted);
    assert!(!state.drift.is_empty());
    assert!(p.apply(&a, &opts).await.unwrap().changed);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(a.clone())
    );

    assert!(p.disable(&opts).await.unwrap().changed);
    assert!(
        admin
            .get(&gnp_path("rangekeeper-node-ports"))
            .await
            .is_none()
    );
    assert!(
        admin
            .get(&gnp_path("rangekeeper-node-ports-allow-host"))
            .await
            .is_none()
    );
    assert!(
        admin
            .get("/apis/projectcalico.org/v3/hostendpoints/rangekeeper-node-ports-cal-node-a")
            .await
            .is_none()
    );
    admin.delete("/api/v1/nodes/cal-node-a").await;
}

/// The failsafe ports come from the live FelixConfiguration `default`; a restricted port
/// among them is warned about (and refused for a strict target, by the binary).
#[tokio::test]
async fn failsafe_ports_of_the_felix_configuration_are_warned_about() {
    let cp = cluster();
    let admin = Admin::new(cp).await;
    let p = calico(
        cp,
        "api-server",
        json!({"destination": {"ports": [6443, 2379, 443]}, "name": "rangekeeper-failsafe-test"}),
    );
    let a = set(&["203.0.113.0/24"]);
    let none = State::new(Restriction::Unrestricted);
    // Without a FelixConfiguration: Felix's defaults (6443 and 2379 both failsafe).
    let found = p.preflight(&a, &none).await.unwrap();
    let failsafe: Vec<_> = found
        .iter()
        .filter(|v| v.message.contains("failsafe"))
        .collect();
    assert_eq!(failsafe.len(), 1, "{found:?}");
    assert!(failsafe[0].warning);
    assert!(
        failsafe[0].message.contains("2379/tcp, 6443/tcp"),
        "{found:?}"
    );
    assert!(
        failsafe[0].message.contains("Felix's defaults"),
        "{found:?}"
    );

    admin
        .create(
            "/apis/projectcalico.org/v3/felixconfigurations",
            &json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                    "metadata": {"name": "default"},
                    "spec": {"failsafeInboundHostPorts": [
                        {"protocol": "tcp", "port": 22}, {"protocol": "tcp", "port": 6443}]}}),
        )
        .await;
    let found = p.preflight(&a, &none).await.unwrap();
    let failsafe: Vec<_> = found
        .iter()
        .filter(|v| v.message.contains("failsafe"))
        .collect();
    assert_eq!(failsafe.len(), 1, "{found:?}");
    let m = &failsafe[0].message;
    assert!(m.contains("6443/tcp is a Felix failsafe inbound host port (as set in FelixConfiguration `default`)"), "{m}");
    assert!(!m.contains("2379"), "{m}");
    assert!(m.contains(r#"kubectl patch felixconfiguration default --type merge -p '{"spec":{"failsafeInboundHostPorts":[{"port":22,"protocol":"tcp"}]}}'"#) || m.contains(r#"[{"protocol":"tcp","port":22}]"#), "{m}");
    admin
        .delete("/apis/projectcalico.org/v3/felixconfigurations/default")
        .await;
}

#[tokio::test]
async fn lockouts_are_warned_about_before_applying() {
    let cp = cluster();
    let admin = Admin::new(cp).await;
    admin
        .create(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "cal-lockout-cp"}}),
        )
        .await;
    admin
        .merge_patch(
            "/api/v1/nodes/cal-lockout-cp/status",
            &json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.9.0.5"}]}}),
        )
        .await;
    // Every port of every host endpoint, selector all(): kubelet and the all() lock-out.
    let p = calico(cp, "everything", json!({"selector": "all()"}));
    let found = p
        .preflight(
            &set(&["203.0.113.0/24"]),
            &State::new(Restriction::Unrestricted),
        )
        .await
        .unwrap();
    let text: Vec<&str> = found.iter().map(|v| v.message.as_str()).collect();
    assert!(found.iter().all(|v| v.warning), "{text:?}");
    assert!(
        text.iter()
            .any(|m| m.contains("kubelet's port 10250/tcp")
                && m.contains("10.9.0.5 (cal-lockout-cp)")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|m| m.contains("`selector: all()`")),
        "{text:?}"
    );
    // With the nodes' network allowed, the kubelet warning goes.
    let found = p
        .preflight(
            &set(&["203.0.113.0/24", "10.9.0.0/16"]),
            &State::new(Restriction::Unrestricted),
        )
        .await
        .unwrap();
    assert!(
        !found.iter().any(|v| v.message.contains("10250")),
        "{found:?}"
    );
    admin.delete("/api/v1/nodes/cal-lockout-cp").await;
}

#[tokio::test]
async fn the_crd_api_group_is_used_when_asked() {
    let cp = cluster();
    let admin = Admin::new(cp).await;
    let p = calico(
        cp,
        "crd-only",
        json!({"apiGroup": "crd.projectcalico.org/v1", "destination": {"ports": [443]}}),
    );
    let a = set(&["192.0.2.0/24", "2001:db8::/32"]);
    assert!(p.apply(&a, &ApplyOptions::default()).await.unwrap().changed);
    let live = admin
        .get("/apis/crd.projectcalico.org/v1/globalnetworkpolicies/rangekeeper-crd-only")
        .await
        .unwrap();
    assert_eq!(live["apiVersion"], "crd.projectcalico.org/v1");
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(a)
    );
    assert!(p.disable(&ApplyOptions::default()).await.unwrap().changed);
}

/// A cluster without Calico: the error says Calico is not installed and how to proceed.
#[tokio::test]
async fn missing_calico_crds_are_a_config_error() {
    let own = rangekeeper_test_support::kube::ControlPlane::start();
    let p = calico(&own, "no-calico", json!({}));
    match p.current().await {
        Err(ProviderError::Config(m)) => {
            assert!(m.contains("target `no-calico`"), "{m}");
            assert!(m.contains("Calico is not installed"), "{m}");
            assert!(m.contains("apiGroup: crd.projectcalico.org/v1"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let found = p
        .preflight(
            &set(&["192.0.2.0/24"]),
            &State::new(Restriction::Unrestricted),
        )
        .await
        .unwrap();
    assert!(
        found
            .iter()
            .any(|v| !v.warning && v.message.contains("Calico is not installed")),
        "{found:?}"
    );
}

#[test]
fn bad_input_is_refused_naming_the_target_and_the_fix() {
    let cases = [
        (
            json!({"selector": "k8s-role = 'node'"}),
            "target `t`: `selector` `k8s-role = 'node'` does not parse: expected `==`",
        ),
        (
            json!({"preDNAT": true, "applyOnForward": false}),
            "`preDNAT: true` needs `applyOnForward: true`",
        ),
        (
            json!({"destination": {"ports": ["32767:30000"]}}),
            "`destination.ports[0]`: the range `32767:30000` ends below its start",
        ),
        (
            json!({"destination": {"nets": ["10.96.0.300/32"]}}),
            "`destination.nets`: `10.96.0.300/32`",
        ),
        (
            json!({"selector": "has(edge)", "hostEndpoints": {}}),
            "`hostEndpoints.labels` is needed with a `selector` of your own",
        ),
        (
            json!({"companions": {"clusterNets": []}}),
            "`companions.clusterNets` is empty",
        ),
        (
            json!({"apiGroup": "projectcalico.org/v1"}),
            "`apiGroup` must be one of `projectcalico.org/v3`, `crd.projectcalico.org/v1`",
        ),
    ];
    for (fields, want) in cases {
        let e = rangekeeper_provider_kubernetes::calico_factory(&crate::common::config(
            "t",
            fields.clone(),
        ))
        .err()
        .unwrap();
        assert!(matches!(e, ProviderError::Config(_)), "{e:?}");
        assert!(e.to_string().contains(want), "{fields}: {e}");
    }
    // IPv6 sources with only IPv4 destinations could reach nothing.
    let p = rangekeeper_provider_kubernetes::calico_factory(&crate::common::config(
        "t",
        json!({"destination": {"nets": ["10.96.0.10/32"]}}),
    ))
    .unwrap();
    let v = p.check(&set(&["2001:db8::/32"]));
    assert_eq!(v.len(), 1);
    assert!(v[0].message.contains("IPv6 sources"), "{v:?}");
}
