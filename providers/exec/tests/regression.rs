//! Regression tests for the exec provider, named after what they protect.

use std::time::Duration;

use rangekeeper_provider::Provider;
use rangekeeper_provider_exec::ExecProvider;

use crate::common::{pyfile, spec};

/// The host's own fields (`plugin`, `pluginTimeout`) are not forwarded: a plugin that
/// refuses unknown fields must still work.
#[tokio::test]
async fn host_fields_are_not_forwarded_to_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(
        &pyfile(),
        dir.path(),
        serde_json::json!({"path": "x.json"}),
        Duration::from_secs(20),
    );
    assert!(!s.target.fields.contains_key("plugin"));
    assert!(!s.target.fields.contains_key("pluginTimeout"));
    assert_eq!(
        s.target.fields.get("path"),
        Some(&serde_json::json!("x.json"))
    );
    let p = ExecProvider::start(s).unwrap();
    p.current().await.unwrap();
}

/// What a plugin printed on stderr just before it exited is in the error: the host waits for
/// the stderr reader to drain instead of racing it (it used to say "nothing on stderr").
#[test]
fn stderr_printed_just_before_an_exit_is_always_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let exe = crate::common::script(
        dir.path(),
        "dies",
        "#!/bin/sh\necho 'missing region' >&2\nexit 1\n",
    );
    for _ in 0..20 {
        let err = ExecProvider::start(spec(
            &exe,
            dir.path(),
            serde_json::json!({}),
            Duration::from_secs(20),
        ))
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("stderr: `missing region`"),
            "{err}"
        );
    }
}

/// `preflight` travels over the protocol; a plugin that does not know it (it answers
/// `unsupported`) finds nothing, as the trait's default does, instead of failing the plan.
#[tokio::test]
async fn preflight_reaches_the_plugin_and_an_older_plugin_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = rangekeeper_provider::State::new(rangekeeper_provider::Restriction::Unrestricted);
    let desired = crate::common::set(&["192.0.2.0/24"]);
    let old = ExecProvider::start(spec(
        &pyfile(),
        dir.path(),
        serde_json::json!({}),
        Duration::from_secs(20),
    ))
    .unwrap();
    assert_eq!(old.preflight(&desired, &state).await.unwrap(), vec![]);
    let refusing = crate::common::script(
        dir.path(),
        "refusing",
        r#"#!/usr/bin/env python3
import json, sys
print(json.dumps({"v": [1]}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["kind"] == "capabilities":
        out = {"name": "refusing", "description": "x"}
    else:
        out = {"violations": [{"message": f"{req['kind']}: {req['ranges']} vs {req['current']['restriction']['kind']}"}]}
    print(json.dumps({"Ok": out}), flush=True)
"#,
    );
    let p = ExecProvider::start(spec(
        &refusing,
        dir.path(),
        serde_json::json!({}),
        Duration::from_secs(20),
    ))
    .unwrap();
    let found = p.preflight(&desired, &state).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].message,
        "preflight: ['192.0.2.0/24'] vs unrestricted"
    );
}
