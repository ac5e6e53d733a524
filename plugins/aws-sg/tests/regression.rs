//! One test per fixed bug, named after what it protects.

use rangekeeper_provider::{Provider, Restriction};
use serde_json::json;

use crate::support::{Proxy, client, create_group, provider, start_moto};

/// A group with no rule of ours read as an empty list of ranges, which the plugin host
/// refuses (`current` reported an empty list): `plan` and `providers test` failed on every
/// fresh group. It reads as a state to fill, with a warning.
#[tokio::test]
async fn a_group_without_our_rules_is_not_an_empty_list() {
    let Some(moto) = start_moto() else { return };
    let proxy = Proxy::start(&moto);
    let c = client(&proxy.endpoint);
    let g = create_group(&c, "fresh").await;
    let st = provider(&c, "api", json!({"groupId": g, "region": "eu-west-1"}))
        .current()
        .await
        .unwrap();
    assert_ne!(
        st.restriction,
        Restriction::Ranges(rangekeeper_provider::RangeSet::new())
    );
    assert_eq!(st.restriction, Restriction::Unrestricted);
    assert!(
        st.warnings.iter().any(|w| w.contains("owns no rule")),
        "{st:?}"
    );
}
