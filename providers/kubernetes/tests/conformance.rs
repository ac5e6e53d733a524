//! The provider conformance suite on both providers, against the real API server (netpol
//! through the fault-injecting proxy, so the suite also sees 429 and 500 as typed errors and
//! counts the writes).

use std::sync::atomic::Ordering;

use rangekeeper_provider::conformance::{Fault, Suite};
use serde_json::json;

use crate::common::{Proxy, calico, cluster, namespace, netpol, set};

#[tokio::test]
async fn netpol_conforms() {
    let cp = cluster();
    namespace(cp, "np-conformance");
    let proxy = Proxy::start(cp);
    let dir = tempfile::tempdir().unwrap();
    let kc = proxy.kubeconfig(cp, dir.path());
    let p = netpol(
        cp,
        "conformance",
        json!({"namespace": "np-conformance", "podSelector": {}, "defaultDeny": true, "kubeconfig": kc}),
    );
    let a = set(&["192.0.2.0/24", "2001:db8:1::/48"]);
    let b = set(&["198.51.100.0/24", "10.0.0.0/8"]);
    let fault = &proxy.fault;
    let writes = &proxy.writes;
    let inject429 = || fault.store(429, Ordering::SeqCst);
    let inject500 = || fault.store(500, Ordering::SeqCst);
    let clear = || fault.store(0, Ordering::SeqCst);
    let count = || writes.load(Ordering::SeqCst);
    Suite::new(p.as_ref(), &a, &b)
        .with_write_counter(&count)
        .with_fault(Fault {
            name: "429",
            inject: &inject429,
            clear: &clear,
            expect: "throttled",
        })
        .with_fault(Fault {
            name: "500",
            inject: &inject500,
            clear: &clear,
            expect: "transient",
        })
        .run()
        .await
        .unwrap();
}

#[tokio::test]
async fn calico_conforms() {
    let cp = cluster();
    let p = calico(
        cp,
        "conformance",
        json!({"destination": {"ports": [443]}, "companions": {"clusterNets": ["10.244.0.0/16"]}}),
    );
    let a = set(&["192.0.2.0/24", "2001:db8:1::/48"]);
    let b = set(&["198.51.100.0/24"]);
    rangekeeper_provider::conformance::assert_conforms(p.as_ref(), &a, &b).await;
}
