//! Leases in the file provider: a header line per lease (a `leases` list in JSON), the
//! version of what was read, the lock file beside the file, and the compare-and-swap.

use std::path::Path;

use rangekeeper_provider::{
    ApplyOptions, Lease, LeaseId, Provider, ProviderError, RangeSet, TargetConfig, Timestamp, cidr,
};
use rangekeeper_provider_file::FileProvider;

fn provider(dir: &Path, format: &str) -> FileProvider {
    FileProvider::from_config(&TargetConfig {
        name: "t".into(),
        base_dir: dir.to_path_buf(),
        fields: serde_json::json!({"path": "allow", "format": format})
            .as_object()
            .unwrap()
            .clone(),
    })
    .unwrap()
}

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
}

fn lease(id: &str, addr: &str) -> Lease {
    Lease {
        id: LeaseId::parse(id).unwrap(),
        address: addr.parse().unwrap(),
        expires: Timestamp::parse("2026-12-07T02:30:00Z").unwrap(),
        requested_by: "alice@github:org/repo/actions/runs/1".into(),
        reason: Some("deploy \"prod\"".into()),
    }
}

#[tokio::test]
async fn leases_are_stored_read_back_and_the_version_guards_the_write() {
    for format in ["plain", "nginx", "haproxy", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let p = provider(dir.path(), format);
        let opts = ApplyOptions::default();
        let st = p.current().await.unwrap();
        assert_eq!(st.version.as_deref(), Some("absent"));
        let base = set(&["192.0.2.0/24"]);
        let with = set(&["192.0.2.0/24", "198.51.100.7"]);
        let l = lease("a1", "198.51.100.7");
        let r = p
            .apply_leased(
                &with,
                std::slice::from_ref(&l),
                st.version.as_deref(),
                &opts,
            )
            .await
            .unwrap();
        assert!(r.changed, "{format}");
        let st = p.current().await.unwrap();
        assert_eq!(st.leases, vec![l.clone()], "{format}");
        assert_eq!(st.restriction.ranges(), Some(&with), "{format}");
        assert!(st.warnings.is_empty(), "{format}: {:?}", st.warnings);
        assert!(
            dir.path().join("allow.lock").exists(),
            "the lock file is beside it"
        );
        // Nothing to do: nothing written.
        let again = p
            .apply_leased(
                &with,
                std::slice::from_ref(&l),
                st.version.as_deref(),
                &opts,
            )
            .await
            .unwrap();
        assert!(!again.changed, "{format}");
        // A stale version is a conflict and writes nothing.
        let stale = st.version.clone();
        p.apply_leased(&base, &[], stale.as_deref(), &opts)
            .await
            .unwrap();
        let before = std::fs::read_to_string(dir.path().join("allow")).unwrap();
        let err = p
            .apply_leased(&with, &[l], stale.as_deref(), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Conflict(_)), "{format}: {err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("allow")).unwrap(),
            before
        );
        assert!(p.current().await.unwrap().leases.is_empty());
    }
}

#[tokio::test]
async fn a_lease_whose_address_is_not_in_the_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path(), "plain");
    let err = p
        .apply_leased(
            &set(&["192.0.2.0/24"]),
            &[lease("a1", "198.51.100.7")],
            None,
            &ApplyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Invalid(_)), "{err}");
    assert!(!dir.path().join("allow").exists());
}

#[tokio::test]
async fn a_plain_apply_keeps_the_leases_whose_address_stays() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path(), "nginx");
    let opts = ApplyOptions::default();
    let l = lease("a1", "198.51.100.7");
    p.apply_leased(
        &set(&["192.0.2.0/24", "198.51.100.7"]),
        std::slice::from_ref(&l),
        None,
        &opts,
    )
    .await
    .unwrap();
    p.apply(&set(&["192.0.2.0/25", "198.51.100.7"]), &opts)
        .await
        .unwrap();
    assert_eq!(p.current().await.unwrap().leases, vec![l]);
    p.apply(&set(&["192.0.2.0/25"]), &opts).await.unwrap();
    assert!(p.current().await.unwrap().leases.is_empty());
}

#[tokio::test]
async fn a_lease_line_that_cannot_be_read_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = provider(dir.path(), "plain");
    std::fs::write(
        dir.path().join("allow"),
        "# managed by rangekeeper (target `t`); changes by hand are overwritten\n# rangekeeper-lease: {\"id\":\"x\"}\n192.0.2.0/24\n",
    )
    .unwrap();
    let err = p.current().await.unwrap_err().to_string();
    assert!(err.contains("allow:2"), "{err}");
    assert!(err.contains("lease record"), "{err}");
}
