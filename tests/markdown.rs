//! `plan -o markdown`, the pull-request comment: a small plan in full, a refused one (with a
//! cover and its cost), and a plan too large for one GitHub comment, summarised to fit.

use crate::common::{Scratch, code, seen, stdout};

/// GitHub's limit on a comment, in characters.
const GITHUB_COMMENT_LIMIT: usize = 65_536;

const SMALL: &str = r#"version: 1
sets:
  office: [203.0.113.0/24, {cidr: 198.51.100.7, note: VPN gateway}]
targets:
  edge-proxy:
    provider: file
    path: edge.conf
    format: nginx
    allow: [office, 192.0.2.10]
  bastion:
    provider: file
    path: bastion.txt
    allow: [office]
"#;

#[test]
fn small_plan_in_full() {
    let s = Scratch::new(SMALL);
    s.write(
        "edge.conf",
        "allow 203.0.113.0/24;\nallow 192.0.2.99;\ndeny all;\n",
    );
    s.write("bastion.txt", "203.0.113.0/24\n198.51.100.7\n");
    let o = s.run(&["plan", "-o", "markdown", "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", seen(&o));
    insta::assert_snapshot!("plan_markdown_small", seen(&o));
}

#[test]
fn refusals_and_covers_are_shown_with_their_cost() {
    let s = Scratch::new(
        r#"version: 1
targets:
  wide-open:
    provider: file
    path: wide.txt
    allow: [0.0.0.0/0]
  fitted:
    provider: file
    path: fitted.txt
    maxRanges: 2
    onExceed: cover
    allow: [198.51.100.0/26, 198.51.100.128/26, 203.0.113.9, 203.0.113.77]
"#,
    );
    s.write("fitted.txt", "198.51.100.0/24\n");
    let o = s.run(&["plan", "-o", "markdown"]);
    assert_eq!(code(&o), 1, "a refused plan fails: {}", seen(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("<!-- rangekeeper plan -->\n"),
        "the comment is printed for the pull request even when refused"
    );
    insta::assert_snapshot!("plan_markdown_refused", seen(&o));
}

/// Many targets and a target with thousands of new ranges: the comment fits GitHub's limit,
/// says it was summarised, and still has every target's row and every refusal.
#[test]
fn a_large_plan_is_summarised_to_fit_one_comment() {
    let mut decl = String::from("version: 1\ntargets:\n");
    decl.push_str("  huge:\n    provider: file\n    path: huge.txt\n    allow:\n");
    // Every other address, so no two merge into a shorter prefix.
    for i in 0..6_000u32 {
        let n = 2 * i;
        decl.push_str(&format!("      - 10.0.{}.{}\n", n / 256, n % 256));
    }
    decl.push_str("  refused:\n    provider: file\n    path: r.txt\n    allow: [0.0.0.0/0]\n");
    for t in 0..40 {
        decl.push_str(&format!(
            "  team-{t:02}:\n    provider: file\n    path: team-{t:02}.txt\n    allow: [192.0.2.{t}]\n"
        ));
    }
    let s = Scratch::new(&decl);
    let mut apply = vec!["apply".to_owned(), "--yes".to_owned()];
    for t in 0..40 {
        apply.extend(["-t".to_owned(), format!("team-{t:02}")]);
    }
    let o = s.run(&apply.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code(&o), 0, "{}", seen(&o));
    let o = s.run(&["plan", "-o", "markdown"]);
    assert_eq!(code(&o), 1, "one target is refused: {}", seen(&o));
    let out = stdout(&o);
    let chars = out.chars().count();
    assert!(chars <= GITHUB_COMMENT_LIMIT - 1_536, "{chars} characters");
    assert!(out.contains("Summarised to fit in one comment"));
    assert!(out.contains("| `huge` |"));
    assert!(out.contains("- **Refused:**"));
    insta::assert_snapshot!("plan_markdown_large", out);

    // The whole plan, as -o json says, is what was summarised: 6,000 ranges to add.
    let o = s.run(&["plan", "-o", "json", "-t", "huge"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["plans"][0]["add"].as_array().unwrap().len(), 6_000);
}

#[test]
fn markdown_is_for_plan_only_and_github_for_validate_only() {
    let s = Scratch::new(SMALL);
    for (args, want) in [
        (
            &["show", "-o", "markdown"][..],
            "error: `--output markdown` is only for `plan`; use human or json with `show`",
        ),
        (
            &["validate", "-o", "markdown"][..],
            "error: `--output markdown` is only for `plan`; use human, json or github with `validate`",
        ),
        (
            &["plan", "-o", "github"][..],
            "error: `--output github` is only for `validate`; use human, json or markdown with `plan`",
        ),
    ] {
        let o = s.run(args);
        assert_eq!(code(&o), 1, "{args:?}");
        assert_eq!(crate::common::stderr(&o).trim_end(), want, "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
    }
}

/// Leases are shown apart from the declared ranges: granted ones with their expiry and who
/// asked, and the plan is in sync when the target holds the declaration and its leases.
#[test]
fn leases_are_shown_apart_from_the_declaration() {
    let s = Scratch::new(
        "version: 1\ntargets:\n  ci-proxy:\n    provider: file\n    path: allow.txt\n    allow: [203.0.113.0/24]\n",
    );
    assert_eq!(code(&s.run(&["apply", "--yes"])), 0);
    let g = s.run(&[
        "grant",
        "-t",
        "ci-proxy",
        "--ttl",
        "20m",
        "--ip",
        "198.51.100.7",
        "--reason",
        "deploy @team",
    ]);
    assert_eq!(code(&g), 0, "{}", seen(&g));
    let l = s.run(&["leases", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&l)).unwrap();
    let (id, expires, by) = (
        v[0]["id"].as_str().unwrap().to_owned(),
        v[0]["expires"].as_str().unwrap().to_owned(),
        v[0]["requestedBy"].as_str().unwrap().to_owned(),
    );
    let o = s.run(&["plan", "-o", "markdown", "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "in sync with the lease kept: {}", seen(&o));
    let out = stdout(&o)
        .replace(&id, "LEASE-ID")
        .replace(&expires, "EXPIRES")
        .replace(&by.replace('@', "&#64;"), "REQUESTED-BY");
    insta::assert_snapshot!("plan_markdown_with_lease", out);
}
