//! Regression tests: one per fixed bug, each named after what it protects, each failing
//! before its fix.

use std::time::Duration;

use rangekeeper_provider::ApplyOptions;

use crate::netns::{A4, A6, D4, Lab, P1, P2, R4, ids, lease, ranges, ready, set};

/// An address both declared and leased is in the declared sets, which have no timeout, and
/// in a lease set: when the lease's element times out it stays admitted. (Writing the lease
/// over the declared address, in one set with timeouts, would shut a declared client out
/// once the lease expired, with no rangekeeper call to notice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_address_that_is_also_leased_stays_admitted_after_the_lease_expires() {
    if !ready() {
        return;
    }
    let lab = Lab::new();
    let p = lab.provider(serde_json::json!({ "backend": "nftables" }));
    let opts = ApplyOptions::default();
    // A4 declared as an address, R4 inside a declared /26; D4 leased only.
    let declared = set(&[A4, "198.51.100.64/26", A6]);
    p.apply(&declared, &opts).await.unwrap();
    let v = p.current().await.unwrap().version;
    let granted = std::time::Instant::now();
    let leases = [
        lease("on-a4", A4, 2),
        lease("on-r4", R4, 2),
        lease("on-d4", D4, 2),
    ];
    let desired = declared.union(&set(&[D4]));
    p.apply_leased_declared(&declared, &desired, &leases, v.as_deref(), &opts)
        .await
        .unwrap();
    let st = p.current().await.unwrap();
    assert_eq!(ids(&st), ["on-a4", "on-d4", "on-r4"]);
    lab.expect(
        "leased",
        &[
            (A4, P1, "connected"),
            (R4, P2, "connected"),
            (D4, P1, "connected"),
        ],
    );
    // Their elements time out at most 3 s after the leases were made.
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(granted.elapsed()));
    let st = p.current().await.unwrap();
    assert!(st.leases.is_empty(), "{:?}", st.leases);
    lab.expect(
        "after the leases expired",
        &[
            (A4, P1, "connected"),
            (R4, P2, "connected"),
            (D4, P1, "refused"),
        ],
    );
    assert_eq!(ranges(&st), Some(declared));
}
