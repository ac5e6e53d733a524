//! Provider plugins through the binary: `providers` lists them, `providers test` passes for
//! every example plugin, and a misbehaving plugin gives a clear error naming it while nothing
//! is applied anywhere in that run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{Scratch, code, seen, stderr, stdout};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/plugins` first on PATH, so `provider: pyfile` finds the Python example.
fn path_with_examples() -> String {
    format!(
        "{}:{}",
        repo().join("examples/plugins").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The plugins: the Rust example plugin and every `plugins/NAME` crate's executable, built once
/// per test run (cargo builds this package's own binary for its tests, but not the example
/// with `--test integration`, nor another package's binaries).
///
/// `--workspace` with an example selected resolves features as `cargo test --workspace`
/// does (every package, dev-dependencies included), so after the test command's build this
/// compiles nothing; `cargo build -p PLUGIN` resolved them differently and compiled much of
/// the tree (the AWS SDK among it) a second time. Only the plugins are named: `--bins` would
/// also put a default-features `rangekeeper` where the features matrix's tests run theirs.
fn workspace_build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut args: Vec<String> = ["build", "--quiet", "--workspace", "--example"]
            .map(String::from)
            .into();
        args.push("rangekeeper-provider-file-plugin".into());
        for entry in std::fs::read_dir(repo().join("plugins")).unwrap() {
            let entry = entry.unwrap();
            if entry.path().join("Cargo.toml").is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                args.extend(["--bin".into(), format!("rangekeeper-provider-{name}")]);
            }
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(repo())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Path::new(env!("CARGO_BIN_EXE_rangekeeper"))
            .parent()
            .unwrap()
            .to_path_buf()
    })
}

/// The Rust example plugin (`examples/plugins/file_plugin.rs`).
fn rust_example() -> PathBuf {
    let exe = workspace_build()
        .join("examples")
        .join("rangekeeper-provider-file-plugin");
    assert!(exe.is_file(), "{}", exe.display());
    exe
}

fn executable(s: &Scratch, name: &str, body: &str) -> PathBuf {
    let p = s.path().join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn providers_test_passes_for_the_python_example_plugin() {
    let s = Scratch::new("version: 1\ntargets: {}\n");
    let o = s
        .cmd()
        .env("PATH", path_with_examples())
        .args(["providers", "test", "pyfile"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("providers_test_pyfile", stdout(&o));
    let o = s
        .cmd()
        .env("PATH", path_with_examples())
        .args(["providers", "test", "pyfile", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("providers_test_pyfile_json", v);
}

#[test]
fn providers_test_passes_for_the_rust_example_plugin_on_a_declared_target() {
    let s = Scratch::new(&format!(
        "version: 1\ntargets:\n  edge:\n    provider: file-plugin\n    plugin: {}\n    path: allow.conf\n    allow: [192.0.2.1]\n",
        rust_example().display(),
    ));
    let o = s.run(&["providers", "test", "file-plugin", "--target", "edge"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("providers_test_rust_example", stdout(&o));
    assert!(
        s.exists("allow.conf"),
        "the suite wrote the declared target's file"
    );
}

#[test]
fn providers_test_fails_naming_the_check_for_a_plugin_that_breaks_the_contract() {
    let s = Scratch::new("version: 1\ntargets: {}\n");
    // Answers every apply with `changed: true`, even when nothing changed.
    let exe = executable(
        &s,
        "rangekeeper-provider-liar",
        r#"#!/usr/bin/env python3
import json, sys
print(json.dumps({"v": [1]}), flush=True)
held = None
for line in sys.stdin:
    req = json.loads(line)
    k = req["kind"]
    if k == "capabilities":
        out = {"name": "liar", "description": "always changed", "ipv6": True, "privateRanges": True}
    elif k == "current":
        out = {"restriction": {"kind": "ranges", "ranges": held} if held else {"kind": "unrestricted"}}
    elif k == "apply":
        if not req["ranges"]:
            print(json.dumps({"Err": {"kind": "invalid", "message": "empty"}}), flush=True)
            continue
        held = req["ranges"]
        out = {"changed": True}
    elif k == "disable":
        out = {"changed": held is not None}
        held = None
    else:
        out = {"violations": []}
    print(json.dumps({"Ok": out}), flush=True)
"#,
    );
    let o = s
        .cmd()
        .env(
            "PATH",
            format!(
                "{}:{}",
                exe.parent().unwrap().display(),
                path_with_examples()
            ),
        )
        .args(["providers", "test", "liar"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", seen(&o));
    insta::assert_snapshot!("providers_test_liar", stdout(&o));
}

#[test]
fn providers_lists_plugins_on_path_with_their_capabilities() {
    let s = Scratch::new("version: 1\ntargets: {}\n");
    executable(
        &s,
        "rangekeeper-provider-broken",
        "#!/bin/sh\necho nope >&2\nexit 2\n",
    );
    let path = format!("{}:{}", s.path().display(), path_with_examples());
    let o = s
        .cmd()
        .env("PATH", &path)
        .args(["providers"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let text = stdout(&o)
        .replace(&s.path().display().to_string(), "[SCRATCH]")
        .replace(&repo().display().to_string(), "[REPO]");
    let plugins: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pyfile") || l.starts_with("broken"))
        .collect();
    insta::assert_snapshot!("providers_with_plugins", plugins.join("\n"));
    let o = s
        .cmd()
        .env("PATH", &path)
        .args(["providers", "-o", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let py = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "pyfile")
        .unwrap();
    assert_eq!(py["maxRanges"], 50);
    assert!(
        py["plugin"]
            .as_str()
            .unwrap()
            .ends_with("rangekeeper-provider-pyfile")
    );
    let broken = v
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "broken")
        .unwrap();
    assert!(
        broken["error"].as_str().unwrap().contains("nope"),
        "{broken}"
    );
}

/// A plugin that misbehaves in one way (see the modes), else a well-behaved file-less one.
const FAULTY: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
MODE = sys.argv[0].rsplit("-", 1)[-1]
if MODE == "exits":
    print("cannot load credentials", file=sys.stderr)
    sys.exit(4)
if MODE == "garbage":
    print("Usage: plugin [--help]", flush=True)
    sys.exit(0)
if MODE == "version":
    print(json.dumps({"v": [9]}), flush=True)
    sys.stdin.read()
    sys.exit(0)
print(json.dumps({"v": [1]}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    k = req["kind"]
    if k == "capabilities":
        out = {"name": "faulty", "description": MODE, "ipv6": True, "privateRanges": True}
    elif k == "current":
        if MODE == "hangs":
            time.sleep(1000)
        if MODE == "chatty":
            print(f"reading with token {os.environ.get('RK_PLUGIN_TOKEN')}", file=sys.stderr, flush=True)
        if MODE == "huge":
            while True:
                sys.stdout.write("y" * 65536)
        if MODE == "badranges":
            out = {"restriction": {"kind": "ranges", "ranges": ["192.0.2.1/24"]}}
        elif MODE == "empty":
            out = {"restriction": {"kind": "ranges", "ranges": []}}
        else:
            out = {"restriction": {"kind": "unrestricted"}}
    elif k in ("apply", "disable"):
        out = {"changed": True}
    else:
        out = {"violations": []}
    print(json.dumps({"Ok": out}), flush=True)
"#;

#[test]
fn a_misbehaving_plugin_is_named_and_nothing_is_applied_anywhere() {
    for (mode, want) in [
        ("hangs", "no answer to `current` within 3s"),
        ("exits", "exited (exit status: 4) without answering `hello`"),
        ("garbage", "did not start with a protocol hello"),
        ("huge", "printed a line longer than 8388608 bytes"),
        (
            "version",
            "the plugin speaks v9, this rangekeeper speaks v1",
        ),
        ("badranges", "send `192.0.2.0/24`"),
        ("empty", "reported an empty list of ranges"),
    ] {
        // Short for the plugin that hangs; long enough for Python to start on a busy machine.
        let timeout = if mode == "hangs" { "3s" } else { "60s" };
        let s = Scratch::new(&format!(
            "version: 1\ntargets:\n  first:\n    provider: file\n    path: first.txt\n    allow: [192.0.2.1]\n  edge:\n    provider: faulty\n    plugin: ./plugin-{mode}\n    pluginTimeout: {timeout}\n    allow: [198.51.100.0/24]\n"
        ));
        executable(&s, &format!("plugin-{mode}"), FAULTY);
        let o = s.run(&["apply", "--yes"]);
        assert_eq!(code(&o), 1, "{mode}: {}", seen(&o));
        let all = seen(&o);
        assert!(
            all.contains("plugin-"),
            "{mode}: the plugin is named: {all}"
        );
        assert!(all.contains(want), "{mode}: {all}");
        assert!(
            !s.exists("first.txt"),
            "{mode}: nothing is applied anywhere: {all}"
        );
    }
}

#[test]
fn reconcile_once_converges_the_other_targets_past_a_hanging_plugin() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  first:\n    provider: file\n    path: first.txt\n    allow: [192.0.2.1]\n  edge:\n    provider: faulty\n    plugin: ./plugin-hangs\n    pluginTimeout: 1s\n    allow: [198.51.100.0/24]\n",
    );
    executable(&s, "plugin-hangs", FAULTY);
    let o = s.run(&["reconcile", "--once", "--state-dir", "state"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(
        stderr(&o).contains("1 target not converged: edge"),
        "{}",
        seen(&o)
    );
    assert!(s.exists("first.txt"), "{}", seen(&o));
}

#[test]
fn a_plugin_gets_the_environment_and_its_stderr_lines_reach_the_log_with_the_target() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  edge:\n    provider: faulty\n    plugin: ./plugin-chatty\n    allow: [198.51.100.0/24]\n",
    );
    executable(&s, "plugin-chatty", FAULTY);
    let o = s
        .cmd()
        .env("RK_PLUGIN_TOKEN", "t0k3n")
        .args(["plan"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        stderr(&o).contains("edge: reading with token t0k3n"),
        "{}",
        seen(&o)
    );
    assert!(stdout(&o).contains("198.51.100.0/24"), "{}", seen(&o));
}

/// Its snapshot lists every built-in provider.
#[cfg(feature = "every-provider")]
#[test]
fn validate_locates_a_missing_plugin_and_an_unknown_provider() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  edge:\n    provider: myfw\n    plugin: ./nope\n    allow: [198.51.100.0/24]\n  other:\n    provider: myfw2\n    allow: [198.51.100.0/24]\n",
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    insta::assert_snapshot!("validate_missing_plugin", stderr(&o));
}

/// Leases over the plugin protocol: the Rust example plugin serves the file provider, whose
/// capabilities say it stores leases; `grant` and `revoke` reach it as `apply-leased`, with
/// the version of its `current` reply. The Python example stores none: `grant` refuses.
#[test]
fn grant_and_revoke_go_through_a_plugin_that_stores_leases() {
    let s = Scratch::new(&format!(
        "version: 1\ntargets:\n  edge:\n    provider: file-plugin\n    plugin: {}\n    path: allow.conf\n    allow: [192.0.2.1]\n  py:\n    provider: pyfile\n    path: py.txt\n    allow: [192.0.2.1]\n",
        rust_example().display(),
    ));
    let run = |args: &[&str]| {
        s.cmd()
            .env("PATH", path_with_examples())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let g = run(&[
        "grant",
        "-t",
        "edge",
        "--ttl",
        "10m",
        "--ip",
        "198.51.100.7",
    ]);
    assert_eq!(code(&g), 0, "{}", seen(&g));
    let id = stdout(&g).trim().to_owned();
    let text = s.read("allow.conf");
    assert!(text.contains("198.51.100.7/32"), "{text}");
    assert!(text.contains(&format!("\"id\":\"{id}\"")), "{text}");
    let r = run(&["revoke", "-t", "edge", "--lease", &id]);
    assert_eq!(code(&r), 0, "{}", seen(&r));
    assert!(!s.read("allow.conf").contains("198.51.100.7"));

    let g = run(&["grant", "-t", "py", "--ttl", "10m", "--ip", "198.51.100.7"]);
    assert_eq!(code(&g), 1, "{}", seen(&g));
    assert!(stderr(&g).contains("cannot store leases"), "{}", seen(&g));
    assert!(!s.read("py.txt").contains("198.51.100.7"));
}

/// The HAProxy plugin (`plugins/haproxy`).
pub(crate) fn haproxy_plugin() -> PathBuf {
    workspace_plugin("haproxy")
}

/// The workspace's plugin `plugins/<name>` (binary `rangekeeper-provider-<name>`), beside the
/// rangekeeper binary, as an installed plugin would sit on PATH.
pub(crate) fn workspace_plugin(name: &str) -> PathBuf {
    let exe = workspace_build().join(format!("rangekeeper-provider-{name}"));
    assert!(exe.is_file(), "{}", exe.display());
    exe
}

/// Through the binary against a real HAProxy: `providers test` passes on a declared target,
/// `apply` makes HAProxy admit exactly the declared sources, and drift (the ACL file edited,
/// an entry added through the stats socket) shows in `plan` and is repaired by `apply`.
#[test]
fn haproxy_plugin_passes_providers_test_and_keeps_the_acl_through_the_binary() {
    use std::net::Ipv4Addr;
    let Some(haproxy) = rangekeeper_test_support::haproxy::exe() else {
        return;
    };
    let s = Scratch::new(&format!(
        "version: 1\ntargets:\n  edge:\n    provider: haproxy\n    plugin: {}\n    socket: admin.sock\n    aclFile: allow.acl\n    allow: [127.0.0.2, 192.0.2.0/24]\n",
        haproxy_plugin().display()
    ));
    let h = rangekeeper_test_support::haproxy::Haproxy::start(&haproxy, s.path(), &["127.0.0.9"]);
    let (allowed, denied) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    let scrub = |text: String| text.replace(&s.path().display().to_string(), "[SCRATCH]");

    let o = s.run(&["providers", "test", "haproxy", "--target", "edge"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("providers_test_haproxy", stdout(&o));

    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(h.admits(allowed), "{}", h.log());
    assert!(!h.admits(denied));
    assert_eq!(h.live_entries(), ["127.0.0.2/32", "192.0.2.0/24"]);
    let o = s.run(&["plan"]);
    assert!(stdout(&o).contains("in sync"), "{}", seen(&o));

    // The file edited by hand: the live list is right, a restart would load another.
    s.write("allow.acl", "127.0.0.2\n192.0.2.0/24\n10.0.0.0/8\n");
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("plan_haproxy_file_drift", scrub(stdout(&o)));
    let o = s.run(&["plan", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["plans"][0]["status"], "changes", "{v}");
    assert!(
        v["plans"][0]["drift"][0]
            .as_str()
            .unwrap()
            .contains("10.0.0.0/8"),
        "{v}"
    );
    let o = s.run(&["show"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains("drift: the ACL file") && shown.contains("only in the file: 10.0.0.0/8"),
        "{shown}"
    );
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(!s.read("allow.acl").contains("10.0.0.0/8"));

    // An entry added through the stats socket: the live ACL admits a source not declared
    // (127.0.0.5, not next to 127.0.0.2, so the plan lists it as it was added).
    let intruder = Ipv4Addr::new(127, 0, 0, 5);
    let said = h.cli(&format!("add acl {} 127.0.0.5", h.acl.display()));
    assert_eq!(said.trim(), "");
    assert!(h.admits(intruder));
    let o = s.run(&["plan"]);
    insta::assert_snapshot!("plan_haproxy_live_drift", scrub(stdout(&o)));
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(!h.admits(intruder));
    assert!(!h.admits(denied));
    assert!(h.admits(allowed));
    let o = s.run(&["plan"]);
    assert!(stdout(&o).contains("in sync"), "{}", seen(&o));
}
