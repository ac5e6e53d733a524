//! The provider against moto's EC2, through the counting and fault-injecting proxy.

use rangekeeper_provider::conformance::{Fault as SuiteFault, Suite};
use rangekeeper_provider::{ApplyOptions, Provider, ProviderError, Restriction};
use serde_json::json;

use crate::support::{
    Fault, Proxy, add_rule, client, create_group, provider, rule_lines, rules, set, start_moto,
};

fn fields(group: &str) -> serde_json::Value {
    json!({"groupId": group, "region": "eu-west-1"})
}

#[tokio::test]
async fn apply_in_sync_and_both_families() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    let p = provider(&c, "api", fields(&g));

    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    assert!(st.warnings[0].contains("owns no rule"), "{st:?}");
    assert!(
        st.details.contains(&("groupId".into(), g.clone())),
        "{st:?}"
    );
    assert!(
        st.details.contains(&("groupName".into(), "api".into())),
        "{st:?}"
    );
    assert!(
        st.details.contains(&("ports".into(), "tcp 6443".into())),
        "{st:?}"
    );

    let desired = set(&["140.82.112.0/20", "185.199.108.153", "2606:50c0::/32"]);
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed && !applied.pending, "{applied:?}");
    assert_eq!(
        rule_lines(&c, &g).await,
        [
            "tcp 6443 140.82.112.0/20 [rangekeeper:api]",
            "tcp 6443 185.199.108.153/32 [rangekeeper:api]",
            "tcp 6443 2606:50c0::/32 [rangekeeper:api]",
        ]
    );
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(desired.clone())
    );

    // In sync, the same set spelt another way: only the reads, no write.
    let before = proxy.actions().len();
    let again = set(&[
        "140.82.112.0/21",
        "140.82.120.0/21",
        "185.199.108.153/32",
        "2606:50c0::/32",
    ]);
    let applied = p.apply(&again, &ApplyOptions::default()).await.unwrap();
    assert!(!applied.changed, "{applied:?}");
    assert_eq!(
        proxy.actions()[before..],
        ["DescribeSecurityGroups", "DescribeSecurityGroupRules"]
    );

    // Several ports: one rule per range and port.
    let p2 = provider(
        &c,
        "api",
        json!({"groupId": g, "region": "eu-west-1", "ports": [6443, 443]}),
    );
    let st = p2.current().await.unwrap();
    assert_eq!(
        st.restriction,
        Restriction::Unrestricted,
        "port 443 has no rules yet: the ports disagree"
    );
    assert!(
        st.warnings[0].contains("not one list on tcp 443,6443"),
        "{st:?}"
    );
    p2.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert_eq!(rules(&c, &g).await.len(), 6);
    assert_eq!(
        p2.current().await.unwrap().restriction,
        Restriction::Ranges(desired)
    );
}

#[tokio::test]
async fn new_rules_are_added_before_old_ones_are_revoked() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    let p = provider(&c, "api", fields(&g));
    p.apply(
        &set(&["140.82.112.0/20", "23.1.2.0/24"]),
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
    let before = proxy.actions().len();
    p.apply(
        &set(&["140.82.112.0/20", "23.9.0.0/16"]),
        &ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        proxy.actions()[before..],
        [
            "DescribeSecurityGroups",
            "DescribeSecurityGroupRules",
            "AuthorizeSecurityGroupIngress",
            "RevokeSecurityGroupIngress"
        ]
    );
    assert_eq!(
        rule_lines(&c, &g).await,
        [
            "tcp 6443 140.82.112.0/20 [rangekeeper:api]",
            "tcp 6443 23.9.0.0/16 [rangekeeper:api]",
        ]
    );

    // The revoke fails after the authorize: the group admits both lists, the error says so
    // and keeps its kind (retried by the binary), and the next apply only revokes.
    proxy.fail_action("RevokeSecurityGroupIngress", Fault::Internal);
    let e = p
        .apply(&set(&["23.1.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    proxy.clear();
    assert!(matches!(e, ProviderError::Transient(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("the 1 new rule(s) were added, so the group admits the old and the new list"),
        "{e}"
    );
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(set(&["140.82.112.0/20", "23.9.0.0/16", "23.1.2.0/24"]))
    );
    let before = proxy.actions().len();
    p.apply(&set(&["23.1.2.0/24"]), &ApplyOptions::default())
        .await
        .unwrap();
    assert_eq!(
        proxy.actions()[before..],
        [
            "DescribeSecurityGroups",
            "DescribeSecurityGroupRules",
            "RevokeSecurityGroupIngress"
        ]
    );
    assert_eq!(
        rule_lines(&c, &g).await,
        ["tcp 6443 23.1.2.0/24 [rangekeeper:api]"]
    );
}

#[tokio::test]
async fn drift_by_hand_is_seen_and_repaired() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    let p = provider(&c, "api", fields(&g));
    let desired = set(&["140.82.112.0/20", "185.199.108.0/22", "2606:50c0::/32"]);
    p.apply(&desired, &ApplyOptions::default()).await.unwrap();

    // Someone deletes one of our rules and adds one with our Description.
    let gone = rules(&c, &g)
        .await
        .into_iter()
        .find(|(_, r, _)| r.contains("185.199.108.0/22"))
        .unwrap()
        .0;
    c.revoke_security_group_ingress()
        .group_id(&g)
        .security_group_rule_ids(gone)
        .send()
        .await
        .unwrap();
    add_rule(
        &c,
        &g,
        "tcp",
        (6443, 6443),
        "23.5.0.0/16",
        "rangekeeper:api",
    )
    .await;

    let st = p.current().await.unwrap();
    assert_eq!(
        st.restriction,
        Restriction::Ranges(set(&["140.82.112.0/20", "23.5.0.0/16", "2606:50c0::/32"]))
    );
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    assert_eq!(
        rule_lines(&c, &g).await,
        [
            "tcp 6443 140.82.112.0/20 [rangekeeper:api]",
            "tcp 6443 185.199.108.0/22 [rangekeeper:api]",
            "tcp 6443 2606:50c0::/32 [rangekeeper:api]",
        ]
    );

    // A rule with our Description on another port is ours, in the wrong shape: the state
    // says so, and the apply revokes it.
    add_rule(&c, &g, "tcp", (22, 22), "23.6.0.0/16", "rangekeeper:api").await;
    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Unrestricted);
    assert!(
        st.warnings[0].contains("(tcp 22 from 23.6.0.0/16) is not in the shape"),
        "{st:?}"
    );
    assert!(
        p.apply(&desired, &ApplyOptions::default())
            .await
            .unwrap()
            .changed
    );
    assert_eq!(rules(&c, &g).await.len(), 3);
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Ranges(desired)
    );
}

#[tokio::test]
async fn rules_of_others_are_kept_and_reported() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    add_rule(&c, &g, "tcp", (22, 22), "0.0.0.0/0", "ssh").await;
    add_rule(&c, &g, "tcp", (6000, 7000), "23.7.0.0/16", "vpn").await;
    add_rule(&c, &g, "tcp", (6443, 6443), "140.82.112.5/32", "office").await;
    let p = provider(&c, "api", fields(&g));

    let desired = set(&["140.82.112.0/20"]);
    let applied = p.apply(&desired, &ApplyOptions::default()).await.unwrap();
    assert!(applied.changed);
    // The VPN rule admits more than declared on 6443; the office rule lies inside the list;
    // the SSH rule is another port.
    assert_eq!(applied.notes.len(), 1, "{applied:?}");
    assert!(
        applied.notes[0].contains("(\"vpn\") admits 23.7.0.0/16 on tcp 6000-7000")
            && applied.notes[0].contains("the group admits more than declared"),
        "{applied:?}"
    );
    let st = p.current().await.unwrap();
    assert_eq!(st.restriction, Restriction::Ranges(desired.clone()));
    assert_eq!(st.warnings, applied.notes);

    // Every rule of others is still there, untouched, after a change and a disable.
    let others = [
        "tcp 22 0.0.0.0/0 [ssh]",
        "tcp 6000 23.7.0.0/16 [vpn]",
        "tcp 6443 140.82.112.5/32 [office]",
    ];
    p.apply(&set(&["23.1.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap();
    p.disable(&ApplyOptions::default()).await.unwrap();
    let lines = rule_lines(&c, &g).await;
    for o in others {
        assert!(lines.contains(&o.to_string()), "{lines:?}");
    }
    assert_eq!(
        p.current().await.unwrap().restriction,
        Restriction::Unrestricted
    );

    // A rule of others identical to one we would add: refused while planning (preflight) and
    // by apply, with nothing written.
    let clash = set(&["140.82.112.5/32", "23.1.0.0/16"]);
    let st = p.current().await.unwrap();
    let found = p.preflight(&clash, &st).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].range.as_deref(), Some("140.82.112.5/32"));
    assert!(
        found[0]
            .message
            .contains("(\"office\") already admits exactly this"),
        "{found:?}"
    );
    let writes = proxy.writes();
    let e = p.apply(&clash, &ApplyOptions::default()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert_eq!(proxy.writes(), writes);
}

#[tokio::test]
async fn quotas_are_checked_before_any_write() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    add_rule(&c, &g, "tcp", (22, 22), "23.200.0.0/16", "ssh").await;
    let p = provider(
        &c,
        "api",
        json!({"groupId": g, "region": "eu-west-1", "ports": [6443, 443], "maxRules": 5}),
    );
    assert_eq!(p.capabilities().max_ranges, Some(2));

    // Offline: 3 ranges x 2 ports = 6 > 5.
    let three = set(&["23.1.0.0/16", "23.3.0.0/16", "23.5.0.0/16"]);
    let v = p.check(&three);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].message
            .contains("need 6 inbound rules, over `maxRules` 5"),
        "{v:?}"
    );

    // With the SSH rule of others: 2 x 2 + 1 = 5 fits; 2 IPv6 ranges fit apart.
    let two = set(&[
        "23.1.0.0/16",
        "23.2.0.0/16",
        "2606:50c0::/32",
        "2a00:1450::/32",
    ]);
    assert!(p.check(&two).is_empty());
    let st = p.current().await.unwrap();
    assert!(p.preflight(&two, &st).await.unwrap().is_empty());
    p.apply(&two, &ApplyOptions::default()).await.unwrap();
    assert_eq!(rules(&c, &g).await.len(), 9);

    // Swapping both IPv4 ranges would hold 2 x 2 old + 2 x 2 new + 1 = 9 at once: refused
    // with the reason, nothing written.
    let swap = set(&[
        "23.8.0.0/16",
        "23.10.0.0/16",
        "2606:50c0::/32",
        "2a00:1450::/32",
    ]);
    assert!(p.check(&swap).is_empty());
    let st = p.current().await.unwrap();
    let found = p.preflight(&swap, &st).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .message
            .contains("would hold 9 inbound IPv4 rules while changing, over `maxRules` 5"),
        "{found:?}"
    );
    let writes = proxy.writes();
    let e = p.apply(&swap, &ApplyOptions::default()).await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Invalid(m) if m.contains("while changing")),
        "{e:?}"
    );
    assert_eq!(proxy.writes(), writes);
    // A list between the two (one range dropped first) fits.
    let between = set(&["23.1.0.0/16", "2606:50c0::/32", "2a00:1450::/32"]);
    assert!(p.preflight(&between, &st).await.unwrap().is_empty());
}

#[tokio::test]
async fn faults_are_typed_errors_after_one_attempt() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "api").await;
    let p = provider(&c, "api", fields(&g));

    for (fault, kind, text) in [
        (Fault::Throttle, "throttled", "RequestLimitExceeded"),
        (Fault::Unavailable, "transient", "DescribeSecurityGroups"),
        (Fault::Internal, "transient", "InternalError"),
        (
            Fault::Unauthorized,
            "auth",
            "needs the IAM permission `ec2:DescribeSecurityGroups`",
        ),
    ] {
        let before = proxy.actions().len();
        proxy.fail(fault);
        let e = p.current().await.unwrap_err();
        proxy.clear();
        assert_eq!(e.kind(), kind, "{fault:?}: {e}");
        assert!(e.to_string().contains(text), "{fault:?}: {e}");
        assert!(e.to_string().contains(&g), "{fault:?}: {e}");
        assert_eq!(proxy.actions().len() - before, 1, "one attempt: {fault:?}");
    }

    // A write refused for lack of permission names the write's IAM action; nothing changed.
    proxy.fail_action("AuthorizeSecurityGroupIngress", Fault::Unauthorized);
    let e = p
        .apply(&set(&["23.1.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    proxy.clear();
    assert!(
        matches!(&e, ProviderError::Auth(m) if m.contains("`ec2:AuthorizeSecurityGroupIngress`")),
        "{e:?}"
    );
    assert!(rules(&c, &g).await.is_empty());

    // Throttled while writing: typed, retryable, nothing half-done.
    proxy.fail_action("AuthorizeSecurityGroupIngress", Fault::Throttle);
    let e = p
        .apply(&set(&["23.1.0.0/16"]), &ApplyOptions::default())
        .await
        .unwrap_err();
    proxy.clear();
    assert!(e.is_retryable(), "{e:?}");
    assert!(rules(&c, &g).await.is_empty());

    // A group that does not exist.
    let missing = provider(&c, "api", fields("sg-00000000000000000"));
    let e = missing.current().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::NotFound(m) if m.contains("security group `sg-00000000000000000` does not exist")),
        "{e:?}"
    );
    // The empty list is refused before any call.
    let before = proxy.actions().len();
    let e = p
        .apply(&set(&[]), &ApplyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert_eq!(proxy.actions().len(), before);
}

#[tokio::test]
async fn passes_the_conformance_suite_with_faults_against_moto() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "conformance").await;
    // Others' rules on the group do not disturb the contract.
    add_rule(&c, &g, "tcp", (22, 22), "0.0.0.0/0", "ssh").await;
    let p = provider(&c, "conformance", fields(&g));
    let missing = provider(&c, "conformance", fields("sg-00000000000000000"));
    let a = set(&["23.1.2.0/24", "2a00:1450:4001::/48"]);
    let b = set(&["23.1.8.0/23", "23.1.20.7/32", "2a00:1450:4002::/48"]);
    let writes = || proxy.writes();
    let faults = [
        (
            Fault::Throttle,
            "throttled on RequestLimitExceeded",
            "throttled",
        ),
        (Fault::Unavailable, "transient on a bare 503", "transient"),
        (Fault::Internal, "transient on InternalError", "transient"),
        (Fault::Unauthorized, "auth on UnauthorizedOperation", "auth"),
    ];
    let injects: Vec<_> = faults
        .iter()
        .map(|(f, _, _)| {
            let proxy = &proxy;
            let f = *f;
            move || proxy.fail(f)
        })
        .collect();
    let clear = || proxy.clear();
    let mut suite = Suite::new(&p, &a, &b)
        .with_write_counter(&writes)
        .with_missing_target(&missing);
    for ((_, name, expect), inject) in faults.iter().zip(&injects) {
        suite = suite.with_fault(SuiteFault {
            name,
            inject,
            clear: &clear,
            expect,
        });
    }
    suite.run().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rule_lines(&c, &g).await,
        [
            "tcp 22 0.0.0.0/0 [ssh]",
            "tcp 6443 23.1.20.7/32 [rangekeeper:conformance]",
            "tcp 6443 23.1.8.0/23 [rangekeeper:conformance]",
            "tcp 6443 2a00:1450:4002::/48 [rangekeeper:conformance]",
        ]
    );
}
