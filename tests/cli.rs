//! Integration tests of the `rangekeeper` binary on the embedded `file` provider: every
//! command's human and JSON output (insta snapshots), exit codes, and bad input that must
//! produce a precise error and change nothing.

use std::path::Path;

use crate::common::{Scratch, code, seen, stderr, stdout};
use assert_cmd::Command;

const QUICKSTART: &str = r#"version: 1
sets:
  office:
    - 203.0.113.0/24
    - cidr: 198.51.100.7
      note: VPN gateway
  vpn: [2001:db8:1234::/48]
  everyone-but-lab:
    include: [office, vpn]
    except: [203.0.113.128/25]
targets:
  local-proxy:
    provider: file
    path: allowlist.conf
    format: nginx
    allow: [everyone-but-lab, 192.0.2.10]
"#;

#[test]
fn quickstart_plan_apply_replan() {
    let s = Scratch::new(QUICKSTART);
    let plan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&plan), 2, "{}", seen(&plan));
    insta::assert_snapshot!("plan_pending", seen(&plan));

    let apply = s.run(&["apply", "--yes"]);
    assert_eq!(code(&apply), 0, "{}", seen(&apply));
    insta::assert_snapshot!("apply_yes", seen(&apply));
    insta::assert_snapshot!("nginx_file", s.read("allowlist.conf"));

    let replan = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&replan), 0, "{}", seen(&replan));
    insta::assert_snapshot!("plan_in_sync", seen(&replan));
}

#[test]
fn plan_json() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["plan", "-o", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("plan_json", v);
}

#[test]
fn in_sync_when_target_stores_a_different_but_equal_form() {
    // Two /25s on disk equal a declared /24; a bare IP equals its /32.
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: a.txt\n    allow: [10.1.2.0/24, 1.2.3.4]\n",
    );
    s.write("a.txt", "10.1.2.128/25\n1.2.3.4/32\n10.1.2.0/25\n");
    let o = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
}

#[test]
fn apply_needs_yes_off_a_terminal_and_changes_nothing() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["apply"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("pass --yes to confirm"), "{}", seen(&o));
    assert!(!s.exists("allowlist.conf"));
}

#[test]
fn apply_dry_run_changes_nothing() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["apply", "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(!s.exists("allowlist.conf"));
}

#[test]
fn one_refused_target_blocks_every_apply() {
    let s = Scratch::new(
        r#"version: 1
targets:
  good:
    provider: file
    path: good.txt
    allow: [198.51.100.0/24]
  wide-open:
    provider: file
    path: bad.txt
    allow: [0.0.0.0/0]
"#,
    );
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("refused_broad", seen(&o));
    assert!(
        !s.exists("good.txt"),
        "nothing may be applied when one target is refused"
    );
    assert!(!s.exists("bad.txt"));
}

#[test]
fn allow_broad_lets_everything_through() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allowBroad: true\n    allow: [0.0.0.0/0]\n",
    );
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
}

#[test]
fn except_that_empties_the_set_is_refused() {
    let s = Scratch::new(
        r#"version: 1
sets:
  nothing: {include: [192.0.2.0/24], except: [192.0.2.0/24]}
targets:
  t:
    provider: file
    path: t.txt
    allow: [nothing]
"#,
    );
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("refused_empty", seen(&o));
    assert!(!s.exists("t.txt"));
}

#[test]
fn protected_ranges_cannot_be_dropped() {
    let s = Scratch::new(
        r#"version: 1
targets:
  t:
    provider: file
    path: t.txt
    protect: [198.51.100.7]
    allow: [203.0.113.0/24]
"#,
    );
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("refused_protect", seen(&o));
    // update --remove of a protected range is refused too.
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    protect: [198.51.100.7]\n    allow: [203.0.113.0/24, 198.51.100.7]\n",
    );
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let before = s.read("t.txt");
    // (--drop-declared: past the refusal to drop a declared range, to reach the guard.)
    let o = s.run(&[
        "update",
        "-t",
        "t",
        "--remove",
        "198.51.100.7",
        "--drop-declared",
        "--yes",
    ]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("nothing was applied"));
    assert_eq!(s.read("t.txt"), before);
}

#[test]
fn max_ranges_is_enforced() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    maxRanges: 1\n    allow: [192.0.2.1, 198.51.100.1]\n",
    );
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("2 ranges after aggregation, but `t` takes at most 1"),
        "{}",
        seen(&o)
    );
}

#[test]
fn show_human_and_json() {
    let s = Scratch::new(QUICKSTART);
    let before = s.run(&["show"]);
    insta::assert_snapshot!("show_unrestricted", seen(&before));
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let human = s.run(&["show"]);
    insta::assert_snapshot!("show_human", seen(&human));
    let json = s.run(&["show", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    insta::assert_json_snapshot!("show_json", v);
}

#[test]
fn update_add_remove_set() {
    let s = Scratch::new(QUICKSTART);
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let o = s.run(&[
        "update",
        "-t",
        "local-proxy",
        "--add",
        "192.0.2.11",
        "--remove",
        "vpn",
        "--drop-declared",
        "--yes",
    ]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("update_add_remove", seen(&o));
    let o = s.run(&[
        "update",
        "-t",
        "local-proxy",
        "--set",
        "office",
        "--yes",
        "-o",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("update_set_json", v);
    // The declaration wins again on the next apply.
    let o = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2);
}

#[test]
fn update_rejects_bad_values_and_changes_nothing() {
    let s = Scratch::new(QUICKSTART);
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let before = s.read("allowlist.conf");
    let o = s.run(&[
        "update",
        "-t",
        "local-proxy",
        "--add",
        "10.0.0.256",
        "--yes",
    ]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("update_bad_cidr", seen(&o));
    let o = s.run(&["update", "-t", "local-proxy", "--add", "ofice", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("did you mean `office`?"),
        "{}",
        seen(&o)
    );
    let o = s.run(&["update", "-t", "local-prxy", "--add", "192.0.2.1", "--yes"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("did you mean `local-proxy`?"),
        "{}",
        seen(&o)
    );
    assert_eq!(s.read("allowlist.conf"), before);
}

#[test]
fn disable_needs_confirmation() {
    let s = Scratch::new(QUICKSTART);
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let before = s.read("allowlist.conf");
    let o = s.run(&["disable", "-t", "local-proxy"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("pass --yes"), "{}", seen(&o));
    assert_eq!(s.read("allowlist.conf"), before);
    let o = s.run(&["disable", "-t", "local-proxy", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("disable", seen(&o));
    insta::assert_snapshot!("nginx_disabled_file", s.read("allowlist.conf"));
    let show = s.run(&["show", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&show)).unwrap();
    assert_eq!(v["targets"][0]["unrestricted"], true);
    // Disabling again changes nothing.
    let o = s.run(&["disable", "-t", "local-proxy", "--yes"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("unchanged"));
}

#[test]
fn validate_human_json_github() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0);
    insta::assert_snapshot!("validate_ok", seen(&o));
    let o = s.run(&["validate", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("validate_ok_json", v);
}

#[cfg(feature = "every-provider")]
const BAD: &str = r#"version: 1
sets:
  office:
    - 203.0.113.0/24
    - 10.0.0.256
    - cidr: 137.117.106.90/29
      note: gateway
    - 010.0.0.1
    - 1.2.3.4/33
    - 2001:db8::/129
    - "::ffff:1.2.3.4"
    - fe80::1%eth0
    - 1.2.3
    - ""
  loop1: [loop2]
  loop2: {include: [loop1]}
  ok: [192.0.2.0/24]
targets:
  a:
    provider: fiel
    allow: [ofice]
  b:
    provider: file
    path: b.txt
    fromat: nginx
    allow: [ok]
  c:
    provider: file
    path: c.txt
    allow: []
  d:
    provider: file
    path: d.txt
    alow: [ok]
    allow: [ok]
  e:
    provider: file
    path: e.txt
    allow: [ok, 0.0.0.0/0]
"#;

/// Its snapshot lists every built-in provider.
#[cfg(feature = "every-provider")]
#[test]
fn validate_reports_every_error_located() {
    let s = Scratch::new(BAD);
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("validate_bad", seen(&o));
    let o = s.run(&["validate", "-o", "github"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("validate_bad_github", stdout(&o));
    let o = s.run(&["validate", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], false);
    // Nothing is applied from an invalid file.
    let o = s.run(&["apply", "--yes"]);
    assert_eq!(code(&o), 1);
    for f in ["b.txt", "c.txt", "d.txt", "e.txt"] {
        assert!(!s.exists(f), "{f}");
    }
}

#[test]
fn strict_turns_host_bits_into_errors() {
    let decl = "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [137.117.106.90/29]\n";
    let s = Scratch::new(decl);
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).contains(
        "`137.117.106.90/29` has host bits set; using the network boundary `137.117.106.88/29`"
    ));
    let o = s.run(&["--strict", "validate"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("strict_host_bits", seen(&o));
    let s = Scratch::new(&decl.replace("    allow:", "    strict: true\n    allow:"));
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1, "{}", seen(&o));
    assert!(stderr(&o).contains("target `t` is strict"));
}

#[test]
fn yaml_and_json_syntax_errors_are_located() {
    let s = Scratch::new("version: 1\ntargets:\n  a: [\n");
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).starts_with("rangekeeper.yaml:"), "{}", seen(&o));
    s.write("d.json", "{\"version\": 1,\n \"targets\": {}},\n");
    let o = s.run(&["-f", "d.json", "validate"]);
    insta::assert_snapshot!("json_syntax", seen(&o));
    s.write(
        "ok.json",
        r#"{"version": 1,
 "targets": {"t": {"provider": "file", "path": "t.txt",
   "allow": ["192.0.2.0/24",
             "1.2.3.4/33"]}}}"#,
    );
    let o = s.run(&["-f", "ok.json", "validate"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("json_semantic", seen(&o));
}

#[test]
fn unknown_version_and_keys() {
    let s = Scratch::new("version: 2\ntargets: {}\n");
    let o = s.run(&["validate"]);
    assert!(
        stderr(&o).contains("rangekeeper.yaml:1:10: error: unsupported declaration version 2"),
        "{}",
        seen(&o)
    );
    let s = Scratch::new("version: 1\ntargetz: {}\n");
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("targetz"), "{}", seen(&o));
    let s = Scratch::new(
        "version: 1\nsets:\n  x: {include: [192.0.2.1], exept: [192.0.2.1]}\ntargets:\n  t: {provider: file, path: t, allow: [x]}\n",
    );
    let o = s.run(&["validate"]);
    assert!(
        stderr(&o).contains("unknown key `exept` (did you mean `except`?)"),
        "{}",
        seen(&o)
    );
}

#[test]
fn missing_declaration_file() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["-f", "nope.yaml", "plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("nope.yaml: error: cannot read the declaration file"),
        "{}",
        seen(&o)
    );
}

#[test]
fn declaration_file_from_env() {
    let s = Scratch::new(QUICKSTART);
    std::fs::rename(
        s.path().join("rangekeeper.yaml"),
        s.path().join("other.yaml"),
    )
    .unwrap();
    let o = Command::cargo_bin("rangekeeper")
        .unwrap()
        .current_dir(s.path())
        .env("RANGEKEEPER_FILE", "other.yaml")
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", seen(&o));
}

#[test]
fn normalize_filter() {
    let s = Scratch::new(QUICKSTART);
    let input = "# office\n10.0.0.0/25\n10.0.0.128/25   # second half\n\n2001:db8::1\n192.0.2.0/24\n192.0.2.7\n";
    let o = s.run_stdin(&["normalize"], input);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("normalize_plain", stdout(&o));
    let o = s.run_stdin(&["normalize", "--format", "json"], input);
    assert_eq!(
        stdout(&o),
        "[\"10.0.0.0/24\",\"192.0.2.0/24\",\"2001:db8::1/128\"]\n"
    );
    let o = s.run(&["normalize", "1.2.3.4", "1.2.3.5/32"]);
    assert_eq!(stdout(&o), "1.2.3.4/31\n");
    let o = s.run_stdin(&["normalize"], "1.2.3.4\n1.2.3.256\n");
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "", "nothing may be printed on error");
    insta::assert_snapshot!("normalize_bad_line", stderr(&o));
    let o = s.run_stdin(&["normalize", "--strict"], "137.117.106.90/29\n");
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("stdin:1: `137.117.106.90/29` has host bits set"),
        "{}",
        seen(&o)
    );
    s.write("list.txt", "198.51.100.0/25\n198.51.100.128/25\n");
    let o = s.run(&["normalize", "-i", "list.txt"]);
    assert_eq!(stdout(&o), "198.51.100.0/24\n");
}

/// Its snapshot lists every built-in provider.
#[cfg(feature = "every-provider")]
#[test]
fn providers_schema_completions() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["providers"]);
    assert_eq!(code(&o), 0);
    insta::assert_snapshot!("providers", stdout(&o));
    let o = s.run(&["providers", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(v.as_array().unwrap().iter().any(|p| p["name"] == "file"));
    let o = s.run(&["schema"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["title"], "rangekeeper declaration");
    let o = s.run(&["completions", "bash"]);
    assert!(stdout(&o).contains("rangekeeper"));
    let o = s.run(&["plan", "-o", "github"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("only for `validate`"));
}

#[test]
fn unknown_target_is_suggested() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["plan", "-t", "local-prxy"]);
    assert_eq!(code(&o), 1);
    insta::assert_snapshot!("unknown_target", seen(&o));
}

#[test]
fn failed_reload_is_reported() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    reload: [\"false\"]\n    allow: [192.0.2.1]\n",
    );
    let o = s.run(&["apply", "--yes"]);
    insta::assert_snapshot!("reload_failed", seen(&o));
    assert!(s.exists("t.txt"));
}

/// The GitHub Actions ranges (a real published list, ~7,300 prefixes).
fn github_actions() -> String {
    let meta: serde_json::Value =
        serde_json::from_str(include_str!("data/github-meta-actions.json")).unwrap();
    meta["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| format!("{}\n", v.as_str().unwrap()))
        .collect()
}

#[test]
fn normalize_max_ranges_prints_the_optimal_cover_and_its_cost() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run_stdin(&["normalize", "--max-ranges", "40"], &github_actions());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 40);
    insta::assert_snapshot!("normalize_cover_40", seen(&o));
    let o = s.run(&["normalize", "--max-ranges", "1", "192.0.2.1", "2001:db8::1"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("both IPv4 and IPv6"), "{}", seen(&o));
}

#[test]
fn over_the_limit_is_refused_with_the_cost_or_covered() {
    let s = Scratch::new(QUICKSTART);
    s.write("gha.txt", &github_actions());
    let list: Vec<String> = github_actions()
        .lines()
        .filter(|l| !l.contains(':'))
        .map(|l| format!("      - {l}\n"))
        .collect();
    let decl = format!(
        "version: 1\nsets:\n  gha:\n{}targets:\n  t:\n    provider: file\n    path: t.txt\n    maxRanges: 50\n    allow: [gha]\n",
        list.concat()
    );
    s.write("rangekeeper.yaml", &decl);
    // The declaration with more settings after `maxRanges`.
    let declare = |more: &str| {
        s.write(
            "rangekeeper.yaml",
            &decl.replace("    maxRanges: 50\n", &format!("    maxRanges: 50\n{more}")),
        );
    };
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("takes at most 50. Set `onExceed: cover`"),
        "{}",
        seen(&o)
    );
    // Without allowBroad, the cover is the best one without broad prefixes.
    declare("    onExceed: cover\n");
    let o = s.run(&["plan", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let desired = v["plans"][0]["desired"].as_array().unwrap();
    assert_eq!(desired.len(), 50);
    for p in desired {
        let len: u8 = p
            .as_str()
            .unwrap()
            .split('/')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(len >= 8, "{p} is broad");
    }
    // With allowBroad, the cover applies, and maxExtra bounds its cost.
    declare("    onExceed: cover\n    allowBroad: true\n    maxExtra: 1x\n");
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 1);
    assert!(
        stdout(&o).contains("more than `maxExtra` allows (1x the declared count of each family)"),
        "{}",
        seen(&o)
    );
    declare("    onExceed: cover\n    allowBroad: true\n");
    let o = s.run(&["apply", "--yes", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let plan = &v["plans"][0];
    assert_eq!(plan["desired"].as_array().unwrap().len(), 50);
    assert_eq!(plan["cover"]["limit"], 50);
    assert!(plan["cover"]["cover"]["extra"]["v4"].as_u64().unwrap() > 0);
    assert_eq!(
        s.read("t.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        50
    );
    let o = s.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        code(&o),
        0,
        "the cover is in sync after apply: {}",
        seen(&o)
    );
}

/// The built-in providers this test binary's features leave out.
fn left_out_providers() -> Vec<&'static str> {
    [
        ("aks", cfg!(feature = "aks")),
        ("eks", cfg!(feature = "eks")),
        ("gke", cfg!(feature = "gke")),
        ("hostfw", cfg!(feature = "hostfw")),
        ("netpol", cfg!(feature = "kubernetes")),
        ("calico", cfg!(feature = "kubernetes")),
    ]
    .into_iter()
    .filter(|(_, built)| !built)
    .map(|(p, _)| p)
    .collect()
}

#[test]
fn every_example_validates() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let is_decl = path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && std::fs::read_to_string(&path).unwrap().starts_with('#')
            && std::fs::read_to_string(&path)
                .unwrap()
                .contains("\nversion: 1");
        if !is_decl {
            continue;
        }
        let mut cmd = Command::cargo_bin("rangekeeper").unwrap();
        // The workspace's plugins (plugins/<name>) that the example names are built and found
        // on PATH, as an installed plugin is.
        let text = std::fs::read_to_string(&path).unwrap();
        let plugins_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let mut search = std::env::var("PATH").unwrap_or_default();
        for entry in std::fs::read_dir(&plugins_dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if text.contains(&format!("provider: {name}\n")) {
                let exe = crate::plugins::workspace_plugin(&name);
                let dir = exe.parent().unwrap();
                search = format!("{}:{search}", dir.display());
            }
        }
        cmd.env("PATH", search);
        let o = cmd
            .env("NO_COLOR", "1")
            .arg("-f")
            .arg(&path)
            .arg("validate")
            .output()
            .unwrap();
        // An example of a provider this build left out is refused, saying how to get it.
        let text = std::fs::read_to_string(&path).unwrap();
        let missing: Vec<&str> = left_out_providers()
            .into_iter()
            .filter(|p| text.contains(&format!("provider: {p}")))
            .collect();
        if missing.is_empty() {
            assert_eq!(code(&o), 0, "{}: {}", path.display(), seen(&o));
        } else {
            assert_eq!(code(&o), 1, "{}: {}", path.display(), seen(&o));
            for p in missing {
                assert!(
                    stderr(&o).contains(&format!("built without the `{p}` provider")),
                    "{}: {}",
                    path.display(),
                    seen(&o)
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "no example declarations found in {}",
        examples.display()
    );
}

/// Its snapshot lists every built-in provider.
#[cfg(feature = "every-provider")]
#[test]
fn json_outputs_of_providers_schema_disable_apply() {
    let s = Scratch::new(QUICKSTART);
    let o = s.run(&["providers", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("providers_json", v);
    let o = s.run(&["schema"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("schema", v);
    let o = s.run(&["apply", "--yes", "-o", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("apply_json", v);
    let o = s.run(&["disable", "-t", "local-proxy", "--yes", "-o", "json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    insta::assert_json_snapshot!("disable_json", v);
}

#[test]
fn plan_shows_the_cover_and_what_it_merged() {
    let s = Scratch::new(
        r#"version: 1
targets:
  t:
    provider: file
    path: t.txt
    maxRanges: 2
    onExceed: cover
    allow: [198.51.100.0/26, 198.51.100.128/26, 203.0.113.9, 203.0.113.77]
"#,
    );
    let o = s.run(&["plan"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    insta::assert_snapshot!("plan_cover", seen(&o));
}

#[cfg(feature = "hostfw")]
const KUBE_RESTRICT_IP: &str = "restrictedPorts:\n  - 6443\n  - \"10254\"\nallowedNetworks:\n  - 198.51.100.0/24\n  - 172.17.0.1/16\n  - 2001:db8::/32\ncheckInterval: 5s\nipChain: KUBE-RESTRICT-IP\n";

#[cfg(feature = "hostfw")]
#[test]
fn kube_restrict_ip_file_supplies_a_hostfw_targets_networks() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  cp:\n    provider: hostfw\n    kubeRestrictIp: kri.yaml\n",
    );
    s.write("kri.yaml", KUBE_RESTRICT_IP);
    let o = s.run(&["validate", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["targets"][0]["ranges"],
        serde_json::json!(["172.17.0.0/16", "198.51.100.0/24", "2001:db8::/32"])
    );
    // Problems in the imported file are located in it (#10.22).
    let host_bits = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["file"] == "kri.yaml")
        .unwrap();
    assert_eq!(
        (&host_bits["line"], &host_bits["column"]),
        (&6.into(), &5.into()),
        "{v}"
    );
    assert!(
        host_bits["message"]
            .as_str()
            .unwrap()
            .contains("`172.17.0.1/16` has host bits set"),
        "{v}"
    );
    s.write(
        "kri.yaml",
        &KUBE_RESTRICT_IP.replace("198.51.100.0/24", "198.51.100.0/33"),
    );
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("kri.yaml:5:5: error: invalid CIDR "),
        "{}",
        seen(&o)
    );
    assert!(stderr(&o).contains("198.51.100.0/33"), "{}", seen(&o));
    std::fs::remove_file(s.path().join("kri.yaml")).unwrap();
    let o = s.run(&["validate"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("kri.yaml"), "{}", seen(&o));
}

/// Runs the binary inside a network namespace this test creates, so only that namespace's
/// firewall is touched. Needs root and nft: skipped with a message otherwise, failed in CI.
#[cfg(feature = "hostfw")]
#[test]
fn reconcile_enforces_a_kube_restrict_ip_config_unchanged() {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let nft = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok();
    if !root || !nft {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run this test as root with nft installed"
        );
        eprintln!("skipped: needs root and nft (root: {root}, nft: {nft})");
        return;
    }
    let ns = format!("rkt-cli-{}", std::process::id());
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let _guard = Netns(ns.clone());
    let s = Scratch::new("version: 1\ntargets: {}\n");
    s.write("kri.yaml", KUBE_RESTRICT_IP);
    let in_ns = || {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &ns]);
        c
    };
    let bin = assert_cmd::cargo::cargo_bin("rangekeeper");
    let reconcile = |extra: &[&str]| {
        in_ns()
            .arg(&bin)
            .args([
                "reconcile",
                "--once",
                "--kube-restrict-ip",
                "kri.yaml",
                "--state-dir",
                "state",
            ])
            .args(extra)
            .current_dir(s.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = reconcile(&[]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    // `ipChain` names the table (#10.21).
    let list = in_ns()
        .args(["nft", "list", "table", "inet", "KUBE-RESTRICT-IP"])
        .output()
        .unwrap();
    let rules = stdout(&list);
    for needle in [
        "198.51.100.0/24",
        "172.17.0.0/16",
        "2001:db8::/32",
        "6443",
        "10254",
    ] {
        assert!(
            rules.contains(needle),
            "{needle} not in the table:\n{rules}"
        );
    }
    // A second pass finds it in sync.
    let o = reconcile(&["-o", "json"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        stdout(&o).contains("in-sync") || stdout(&o).contains("in sync"),
        "{}",
        seen(&o)
    );
}

/// Regression: `show` and `disable` do not need the desired sets, so they must not fetch
/// live sources (an emergency `disable` never waits on a download). The source's server
/// must never see a connection.
#[test]
fn show_and_disable_fetch_no_sources() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = Scratch::new(&format!(
        "version: 1\nsets:\n  runners: {{ url: \"http://127.0.0.1:{port}/meta\", select: /actions }}\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    allow: [runners, 192.0.2.1]\n"
    ));
    s.write("t.txt", "192.0.2.1\n");
    let o = s.run(&["show"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let o = s.run(&["disable", "-t", "t", "--yes"]);
    assert_eq!(code(&o), 0, "{}", seen(&o));
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a source was fetched"
    );
}
