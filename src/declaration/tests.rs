//! Unit tests of the declaration loader: sets and references, literals, policy knobs,
//! provider fields, and that every problem is reported once, located.

use std::path::PathBuf;

use super::*;
use rangekeeper_provider::ImportedRange;

const KNOWN: &[&str] = &["file", "aks"];

fn load_with(text: &str, opts: LoadOptions) -> (Option<Declaration>, Vec<Diagnostic>) {
    Declaration::parse(text, "t.yaml", PathBuf::from("."), false, opts, KNOWN)
}

fn load(text: &str) -> (Option<Declaration>, Vec<Diagnostic>) {
    load_with(text, LoadOptions::default())
}

/// A declaration that must load without errors.
fn ok(text: &str) -> Declaration {
    let (decl, diags) = load(text);
    assert!(!has_errors(&diags), "{diags:#?}");
    decl.expect("a declaration")
}

fn errors(diags: &[Diagnostic]) -> Vec<&Diagnostic> {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

fn set(items: &[&str]) -> RangeSet {
    RangeSet::from_nets(
        items
            .iter()
            .map(|s| rangekeeper_cidr::parse(s).unwrap().net),
    )
}

fn file_target(allow: &str) -> String {
    format!(
        "version: 1\ntargets:\n  t:\n    provider: file\n    path: a.conf\n    allow: {allow}\n"
    )
}

#[test]
fn sets_resolve_through_include_except_and_references() {
    let d = ok("\
version: 1
sets:
  office: [203.0.113.0/24, 198.51.100.7]
  vpn: [2001:db8:1234::/48]
  staff: [office, vpn]
  most:
    include: [staff]
    except: [203.0.113.128/25]
targets:
  t:
    provider: file
    path: a.conf
    allow: [most, 192.0.2.0/26, 192.0.2.64/26]
");
    let t = &d.targets["t"];
    assert_eq!(
        t.desired,
        set(&[
            "203.0.113.0/25",
            "198.51.100.7/32",
            "2001:db8:1234::/48",
            "192.0.2.0/25"
        ])
    );
    assert_eq!(t.allow_items, vec!["most", "192.0.2.0/26", "192.0.2.64/26"]);
    assert_eq!(d.sets.len(), 4);
    assert_eq!(d.sets["staff"].set.len(), 3);
}

#[test]
fn a_bare_address_is_a_single_host() {
    let d = ok(&file_target("[198.51.100.7, 2001:db8::1]"));
    assert_eq!(
        d.targets["t"].desired,
        set(&["198.51.100.7/32", "2001:db8::1/128"])
    );
}

#[test]
fn host_bits_warn_at_the_entry_and_strict_makes_them_errors() {
    let text = file_target("[137.117.106.90/29]");
    let (decl, diags) = load(&text);
    assert!(!has_errors(&diags), "{diags:#?}");
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(diags[0].severity, Severity::Warning);
    assert_eq!(diags[0].line, Some(6), "{diags:#?}");
    assert!(diags[0].message.contains("137.117.106.88/29"), "{diags:#?}");
    assert_eq!(
        decl.unwrap().targets["t"].desired,
        set(&["137.117.106.88/29"])
    );

    let (_, diags) = load_with(
        &text,
        LoadOptions {
            strict: true,
            ..LoadOptions::default()
        },
    );
    assert_eq!(errors(&diags).len(), 1, "{diags:#?}");
    // `strict: true` on the target does the same for that target alone.
    let (_, diags) = load(&format!("{text}    strict: true\n"));
    assert_eq!(errors(&diags).len(), 1, "{diags:#?}");
}

#[test]
fn an_unknown_set_is_an_error_with_a_suggestion_at_its_line() {
    let (_, diags) = load(
        "\
version: 1
sets:
  office: [203.0.113.0/24]
targets:
  t:
    provider: file
    path: a.conf
    allow: [ofice]
",
    );
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{diags:#?}");
    assert_eq!(e[0].line, Some(8), "{diags:#?}");
    assert!(e[0].message.contains("`office`"), "{diags:#?}");
}

#[test]
fn a_cycle_of_sets_is_an_error() {
    let (_, diags) = load(
        "\
version: 1
sets:
  a: [b]
  b: [a]
targets:
  t:
    provider: file
    path: a.conf
    allow: [a]
",
    );
    assert!(
        errors(&diags).iter().any(|d| d.message.contains("cycle")),
        "{diags:#?}"
    );
}

#[test]
fn an_unknown_provider_is_an_error_with_a_suggestion() {
    let (_, diags) =
        load("version: 1\ntargets:\n  t:\n    provider: fiel\n    allow: [192.0.2.0/24]\n");
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{diags:#?}");
    assert!(e[0].message.contains("`file`"), "{diags:#?}");
    assert_eq!(e[0].target.as_deref(), Some("t"));
}

#[test]
fn every_bad_cidr_is_reported_once_in_one_pass_each_at_its_line() {
    let (_, diags) = load(
        "\
version: 1
sets:
  a: [1.2.3.4/33]
targets:
  t:
    provider: file
    path: a.conf
    allow:
      - a
      - 010.0.0.1
      - 192.0.2.0/24
      - 300.1.1.1
",
    );
    let e = errors(&diags);
    let lines: Vec<Option<u64>> = e.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![Some(3), Some(10), Some(12)], "{diags:#?}");
}

#[test]
fn policy_knobs_are_read_and_protect_resolves_sets() {
    let d = ok("\
version: 1
sets:
  gw: [198.51.100.7]
targets:
  t:
    provider: file
    path: a.conf
    allow: [gw, 192.0.2.0/24]
    protect: [gw]
    maxRanges: 20
    onExceed: cover
    maxExtra: 4x
    allowBroad: true
    allowPrivate: false
  u:
    provider: file
    path: b.conf
    allow: [192.0.2.0/24]
    maxExtra: 1000
");
    let p = &d.targets["t"].policy;
    assert_eq!(p.protect, set(&["198.51.100.7/32"]));
    assert_eq!(p.max_ranges, Some(20));
    assert_eq!(p.on_exceed, OnExceed::Cover);
    assert_eq!(p.max_extra, Some(MaxExtra::Multiple(4.0)));
    assert!(p.allow_broad);
    assert_eq!(p.allow_private, Some(false));
    let q = &d.targets["u"].policy;
    assert_eq!(q.max_extra, Some(MaxExtra::Addresses(1000)));
    assert_eq!(
        (q.max_ranges, q.on_exceed, q.allow_broad, q.allow_private),
        (None, OnExceed::Error, false, None),
        "defaults"
    );
}

#[test]
fn provider_fields_reach_the_provider_and_common_fields_do_not() {
    let d = ok("\
version: 1
targets:
  t:
    provider: file
    description: the proxy
    path: a.conf
    format: nginx
    allow: [192.0.2.0/24]
    maxRanges: 5
");
    let t = &d.targets["t"];
    let mut keys: Vec<&str> = t.config.fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["format", "path"]);
    assert_eq!(t.config.name, "t");
    assert_eq!(t.description.as_deref(), Some("the proxy"));
    assert!(t.field_pos.contains_key("path"));
}

#[test]
fn the_version_must_be_1() {
    for text in ["targets: {}\n", "version: 2\ntargets: {}\n"] {
        let (_, diags) = load(text);
        assert!(
            errors(&diags).iter().any(|d| d.message.contains("version")),
            "{text}: {diags:#?}"
        );
    }
}

#[test]
fn json_declarations_are_located_too() {
    let text = "{\n  \"version\": 1,\n  \"targets\": {\n    \"t\": {\n      \"provider\": \"file\",\n      \"path\": \"a.conf\",\n      \"allow\": [\"1.2.3.4/33\"]\n    }\n  }\n}\n";
    let (_, diags) = Declaration::parse(
        text,
        "t.json",
        PathBuf::from("."),
        true,
        LoadOptions::default(),
        KNOWN,
    );
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{diags:#?}");
    assert_eq!(e[0].line, Some(7), "{diags:#?}");
    let (_, diags) = Declaration::parse(
        "{\"version\": 1,",
        "t.json",
        PathBuf::from("."),
        true,
        LoadOptions::default(),
        KNOWN,
    );
    assert!(
        errors(&diags)[0].message.starts_with("invalid JSON"),
        "{diags:#?}"
    );
}

#[test]
fn a_target_without_allow_is_an_error_naming_it() {
    let (_, diags) = load("version: 1\ntargets:\n  t:\n    provider: file\n    path: a.conf\n");
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{diags:#?}");
    assert!(e[0].message.contains("`t`"), "{diags:#?}");
}

// ---------------------------------------------------------------------------------------
// The providers' import hook (#11.1): called by the loader, never by `Declaration::parse`.

/// A hook that imports from a `from:` field: two ranges in `imported.txt` (one with host
/// bits, one invalid when the field says `bad`), a `ports` field, and a warning.
fn test_hook(provider: &str, cfg: &TargetConfig) -> Imported {
    let mut out = Imported::default();
    let Some(from) = cfg.fields.get("from").and_then(|v| v.as_str()) else {
        return out;
    };
    assert_eq!(provider, "file");
    let at = |line| Location::new("imported.txt", Some(line), Some(3));
    out.files.push(cfg.base_dir.join("imported.txt"));
    out.ranges.push(ImportedRange {
        text: "198.51.100.7/24".into(),
        at: at(2),
    });
    out.ranges.push(ImportedRange {
        text: if from == "bad" {
            "10.0.0.0/33"
        } else {
            "2001:db8::/32"
        }
        .into(),
        at: at(3),
    });
    out.fields.insert("ports".into(), serde_json::json!([6443]));
    out.fields
        .insert("path".into(), serde_json::json!("not-this.txt"));
    out.check_interval = Some(std::time::Duration::from_secs(5));
    out.notes.push(rangekeeper_provider::ImportNote::warning(
        None,
        "`from` is read",
    ));
    out
}

fn catalog() -> Catalog {
    Catalog {
        names: KNOWN.to_vec(),
        left_out: vec![("gke", "gke")],
        import: test_hook,
        discovers: vec!["file"],
    }
}

fn text(body: &str) -> DeclText {
    DeclText {
        text: body.to_owned(),
        file: "t.yaml".into(),
        base_dir: PathBuf::from("."),
        is_json: false,
        generated: false,
    }
}

const IMPORTING: &str =
    "version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n    from: good\n";

#[test]
fn imported_ranges_join_the_allow_list_located_in_their_file() {
    let (decl, diags) =
        text(IMPORTING).load(LoadOptions::default(), &catalog(), &Default::default());
    assert!(!has_errors(&diags), "{diags:#?}");
    let t = &decl.unwrap().targets["t"];
    assert_eq!(t.desired, set(&["198.51.100.0/24", "2001:db8::/32"]));
    assert_eq!(t.allow_items, vec!["198.51.100.7/24", "2001:db8::/32"]);
    assert_eq!(t.imports, vec![PathBuf::from("./imported.txt")]);
    assert_eq!(t.check_interval, Some(std::time::Duration::from_secs(5)));
    // Imported fields join the config; a field the declaration wrote is never replaced.
    assert_eq!(t.config.fields["ports"], serde_json::json!([6443]));
    assert_eq!(t.config.fields["path"], serde_json::json!("t.txt"));
    // The declaration's notes first (at the field the note names), then the imported file's.
    let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "t.yaml:6:11: warning: target `t`: `from` is read",
            "imported.txt:2:3: warning: `198.51.100.7/24` has host bits set; using the network boundary `198.51.100.0/24`",
        ]
    );
    // --strict: the host bits are an error at the imported line, and nothing is used.
    let (decl, diags) = text(IMPORTING).load(
        LoadOptions {
            strict: true,
            ..LoadOptions::default()
        },
        &catalog(),
        &Default::default(),
    );
    assert!(decl.unwrap().targets.is_empty());
    assert_eq!(
        errors(&diags)[0].to_string().split(": error").next(),
        Some("imported.txt:2:3")
    );
}

#[test]
fn every_bad_imported_range_is_an_error_at_its_line() {
    let (decl, diags) = text(&IMPORTING.replace("good", "bad")).load(
        LoadOptions::default(),
        &catalog(),
        &Default::default(),
    );
    assert!(decl.unwrap().targets.is_empty());
    let errs = errors(&diags);
    assert_eq!(errs.len(), 1, "{diags:#?}");
    assert_eq!(
        (errs[0].file.as_str(), errs[0].line),
        ("imported.txt", Some(3))
    );
    assert!(errs[0].message.starts_with("invalid CIDR"), "{}", errs[0]);
}

#[test]
fn parse_reads_no_file_and_a_target_needs_allow_or_imports() {
    // Without the hook, nothing is imported: the target has no list.
    let (_, diags) = load(IMPORTING);
    assert!(
        errors(&diags)[0].message.contains("has no `allow` list"),
        "{diags:#?}"
    );
    // With the hook but a target that imports nothing, the same error.
    let (_, diags) = text("version: 1\ntargets:\n  t:\n    provider: file\n    path: t.txt\n")
        .load(LoadOptions::default(), &catalog(), &Default::default());
    assert!(errors(&diags)[0].message.contains("has no `allow` list"));
}

#[test]
fn a_standalone_declaration_shows_no_positions_of_its_own_text() {
    let mut fields = serde_json::Map::new();
    fields.insert("path".into(), "t.txt".into());
    fields.insert("from".into(), "it\"s: {odd} path".into());
    let s = Standalone {
        file: PathBuf::from("imported.txt"),
        what: "the test config",
        target: "t".into(),
        provider: "file".into(),
        fields,
        allow_broad: true,
        interval_from_config: true,
        advice: vec![("write `x`", "pass `--x`")],
    };
    assert_eq!(s.advise("a; write `x` to do it"), "a; pass `--x` to do it");
    let (decl, diags) =
        DeclText::standalone(&s).load(LoadOptions::default(), &catalog(), &Default::default());
    let decl = decl.unwrap();
    assert!(decl.targets["t"].policy.allow_broad);
    assert_eq!(decl.file, "imported.txt");
    let own = diags
        .iter()
        .find(|d| d.message.contains("`from` is read"))
        .unwrap();
    assert_eq!((own.line, own.column), (None, None), "{own}");
    assert_eq!(decl.targets["t"].config.fields["from"], "it\"s: {odd} path");
}

#[test]
fn a_built_in_provider_left_out_of_this_build_says_how_to_get_it() {
    let text = DeclText {
        text: "version: 1\ntargets:\n  t:\n    provider: gke\n    allow: [192.0.2.0/24]\n"
            .to_owned(),
        file: "t.yaml".to_owned(),
        base_dir: PathBuf::from("."),
        is_json: false,
        generated: false,
    };
    let (_, diags) = text.load(LoadOptions::default(), &catalog(), &SourceValues::new());
    let e = errors(&diags);
    assert_eq!(e.len(), 1, "{diags:#?}");
    assert!(
        e[0].message.contains("built without the `gke` provider")
            && e[0].message.contains("--features gke"),
        "{diags:#?}"
    );
    assert_eq!(e[0].line, Some(4), "{diags:#?}");
}
