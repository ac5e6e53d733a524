//! The Python example plugin, run through the exec provider, passes the conformance suite:
//! the proof that a plugin is indistinguishable from a built-in.

use std::time::Duration;

use rangekeeper_provider::conformance::Suite;
use rangekeeper_provider_exec::ExecProvider;

use crate::common::{pyfile, set, spec};

#[tokio::test]
async fn the_python_example_plugin_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(20);
    let p = ExecProvider::start(spec(
        &pyfile(),
        dir.path(),
        serde_json::json!({"path": "allow.json"}),
        timeout,
    ))
    .unwrap();
    // A target whose directory does not exist is not found.
    let missing = ExecProvider::start(spec(
        &pyfile(),
        &dir.path().join("nowhere"),
        serde_json::json!({"path": "allow.json"}),
        timeout,
    ));
    // `plugin:` is relative to the declaration directory, which does not exist here, so
    // point at the absolute path (spec() does) and let the plugin see a missing directory.
    let missing = missing.unwrap();
    let a = set(&["203.0.113.0/24", "198.51.100.7", "2001:db8::/48"]);
    let b = set(&["192.0.2.0/25", "10.0.0.0/8", "2001:db8:1::1"]);
    Suite::new(&p, &a, &b)
        .with_missing_target(&missing)
        .run()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.starts(), 1, "one process serves every call of a target");
}
