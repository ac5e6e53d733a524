//! Helpers: plugin specs for scripts written on the fly, and the repo's example plugins.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rangekeeper_provider::{RangeSet, TargetConfig, cidr};
use rangekeeper_provider_exec::PluginSpec;

/// The Python example plugin in `examples/plugins/`.
pub fn pyfile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/rangekeeper-provider-pyfile")
}

/// Write an executable script into `dir`.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A spec for `exe` bound to a target `t` in `dir` with the given fields and timeout.
pub fn spec(exe: &Path, dir: &Path, fields: serde_json::Value, timeout: Duration) -> PluginSpec {
    let mut fields = fields.as_object().cloned().unwrap_or_default();
    fields.insert("plugin".into(), exe.display().to_string().into());
    fields.insert(
        "pluginTimeout".into(),
        format!("{}ms", timeout.as_millis()).into(),
    );
    PluginSpec::resolve(
        "test",
        &TargetConfig {
            name: "t".into(),
            base_dir: dir.to_path_buf(),
            fields,
        },
    )
    .unwrap()
}

pub fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
}

/// A Python plugin that speaks the protocol correctly except where `mode` says otherwise.
/// Modes: `bad-ranges` (current answers a non-canonical range), `empty-after-apply` (current
/// answers an empty list once something was applied), `exit-after-reply` (serves one
/// request per process), `garbage-reply` (answers `current` with text), `huge-reply`
/// (answers `current` with an endless line), `hang-on-current`.
pub fn scripted(dir: &Path, mode: &str) -> PathBuf {
    script(
        dir,
        &format!("plugin-{mode}"),
        &format!(
            r#"#!/usr/bin/env python3
import json, sys, time
MODE = "{mode}"
applied = False
print(json.dumps({{"v": [1]}}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    kind = req["kind"]
    if kind == "capabilities":
        out = {{"Ok": {{"name": "scripted", "description": MODE, "ipv6": True, "privateRanges": True}}}}
    elif kind == "current":
        if MODE == "hang-on-current":
            time.sleep(1000)
        if MODE == "garbage-reply":
            print("Traceback (most recent call last): oops", flush=True)
            continue
        if MODE == "huge-reply":
            while True:
                sys.stdout.write("x" * 65536)
        if MODE == "bad-ranges":
            out = {{"Ok": {{"restriction": {{"kind": "ranges", "ranges": ["10.0.0.1/8"]}}}}}}
        elif MODE == "empty-after-apply" and applied:
            out = {{"Ok": {{"restriction": {{"kind": "ranges", "ranges": []}}}}}}
        else:
            out = {{"Ok": {{"restriction": {{"kind": "ranges", "ranges": ["192.0.2.0/24"]}}}}}}
    elif kind in ("apply", "disable"):
        applied = True
        out = {{"Ok": {{"changed": True}}}}
    else:
        out = {{"Ok": {{"violations": []}}}}
    print(json.dumps(out), flush=True)
    if MODE == "exit-after-reply":
        sys.exit(0)
"#
        ),
    )
}
