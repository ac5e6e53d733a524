//! `plan -o markdown`: the plan as a pull-request comment. A table of every target (status,
//! counts added, removed and unchanged), then a section per target that is not in sync, or
//! that has refusals, warnings or a cover: refusals and errors first, then the ranges as a
//! `diff` block. GitHub refuses a comment over 65,536 characters, so a plan that would not
//! fit is summarised step by step (unchanged ranges, then long range lists, then in-sync rows,
//! then long messages), and as a last resort cut at a line with a note saying so; refusals
//! and errors are never summarised away before the ranges are.

use std::fmt::Write as _;

use crate::plan::{Status, TargetPlan};

/// GitHub's limit on one issue or pull-request comment, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// What the comment is rendered within: GitHub's limit less room for a workflow to add a
/// line of its own (a link to the run, say).
pub const COMMENT_BUDGET: usize = GITHUB_COMMENT_LIMIT - 1_536;

/// The first line of every plan comment, for a workflow to find and update its own comment.
pub const MARKER: &str = "<!-- rangekeeper plan -->";

/// How much a rendering shows; each step of [`LEVELS`] shows less.
#[derive(Debug, Clone, Copy)]
struct Detail {
    /// List unchanged ranges (in a collapsed block).
    unchanged: bool,
    /// At most this many added and this many removed ranges per target (`None`: all).
    ranges: Option<usize>,
    /// A table row for each target in sync (else one line naming them).
    in_sync_rows: bool,
    /// Messages (refusals, errors, warnings) longer than this are shortened.
    message_chars: usize,
    /// At most this many cover merges listed per target.
    merges: usize,
}

const LEVELS: [Detail; 6] = [
    Detail {
        unchanged: true,
        ranges: None,
        in_sync_rows: true,
        message_chars: 2_000,
        merges: 50,
    },
    Detail {
        unchanged: false,
        ranges: None,
        in_sync_rows: true,
        message_chars: 2_000,
        merges: 20,
    },
    Detail {
        unchanged: false,
        ranges: Some(50),
        in_sync_rows: true,
        message_chars: 1_000,
        merges: 10,
    },
    Detail {
        unchanged: false,
        ranges: Some(10),
        in_sync_rows: false,
        message_chars: 500,
        merges: 3,
    },
    Detail {
        unchanged: false,
        ranges: Some(0),
        in_sync_rows: false,
        message_chars: 300,
        merges: 0,
    },
    Detail {
        unchanged: false,
        ranges: Some(0),
        in_sync_rows: false,
        message_chars: 160,
        merges: 0,
    },
];

/// The plan of `file` as a pull-request comment of at most `budget` characters.
pub fn plans_markdown(file: &str, plans: &[TargetPlan], budget: usize) -> String {
    let mut last = String::new();
    for (i, detail) in LEVELS.iter().enumerate() {
        last = render(file, plans, *detail, i > 0);
        if last.chars().count() <= budget {
            return last;
        }
    }
    cut(&last, budget)
}

/// Cut `text` at the last line that leaves room for a note saying it was cut.
fn cut(text: &str, budget: usize) -> String {
    let total = text.chars().count();
    let note = |left: usize| {
        format!(
            "\n_The plan is cut here to fit in one comment ({left} more characters). Run `rangekeeper plan` for all of it._\n"
        )
    };
    let room = budget.saturating_sub(note(total).chars().count());
    let mut out = String::new();
    let mut used = 0;
    for line in text.split_inclusive('\n') {
        let n = line.chars().count();
        if used + n > room {
            break;
        }
        out.push_str(line);
        used += n;
    }
    // An open code block or collapsed section is closed so the note shows as text.
    if out.matches("```").count() % 2 == 1 {
        out.push_str("```\n");
    }
    let open = out.matches("<details>").count();
    let closed = out.matches("</details>").count();
    for _ in closed..open {
        out.push_str("</details>\n");
    }
    out.push_str(&note(total - used));
    out
}

fn status_text(p: &TargetPlan) -> String {
    match p.status {
        Status::InSync => "✅ in sync".to_owned(),
        Status::Changes if p.unrestricted => "⚠️ unrestricted now".to_owned(),
        Status::Changes => "📝 changes".to_owned(),
        Status::Refused => "⛔ refused".to_owned(),
        Status::Error => "❌ error".to_owned(),
    }
}

/// The counts of one target as a phrase.
fn counts(p: &TargetPlan) -> String {
    match p.status {
        Status::InSync => format!("in sync, {}", super::count(p.desired.len(), "range")),
        Status::Error => "could not be planned".to_owned(),
        _ if p.unrestricted => format!("unrestricted now, {} to allow", p.add.len()),
        _ => {
            let mut c = format!(
                "{} to add, {} to remove, {} unchanged",
                p.add.len(),
                p.remove.len(),
                p.unchanged.len()
            );
            if !p.drift.is_empty() {
                c.push_str(", drift to repair");
            }
            c
        }
    }
}

fn render(file: &str, plans: &[TargetPlan], d: Detail, summarised: bool) -> String {
    let mut s = String::new();
    let n = |st: Status| plans.iter().filter(|p| p.status == st).count();
    let _ = writeln!(s, "{MARKER}");
    let _ = writeln!(s, "### rangekeeper plan: {}\n", code(file));
    let _ = writeln!(
        s,
        "**{} to change, {} in sync, {} refused, {} failed.**\n",
        n(Status::Changes),
        n(Status::InSync),
        n(Status::Refused),
        n(Status::Error)
    );
    if summarised {
        let _ = writeln!(
            s,
            "_Summarised to fit in one comment: run `rangekeeper plan` for every range._\n"
        );
    }
    if plans.is_empty() {
        let _ = writeln!(s, "No targets.");
        return s;
    }

    // The table: one row per target (in-sync ones named on one line when summarised).
    let _ = writeln!(
        s,
        "| target | provider | status | added | removed | unchanged |\n|---|---|---|--:|--:|--:|"
    );
    let mut in_sync = Vec::new();
    for p in plans {
        if !d.in_sync_rows && p.status == Status::InSync {
            in_sync.push(code(&p.target));
            continue;
        }
        let (add, remove, unchanged) = match p.status {
            Status::Error => ("–".to_owned(), "–".to_owned(), "–".to_owned()),
            _ => (
                p.add.len().to_string(),
                p.remove.len().to_string(),
                p.unchanged.len().to_string(),
            ),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {add} | {remove} | {unchanged} |",
            cell(&code(&p.target)),
            cell(&text(&provider_label(p))),
            status_text(p),
        );
    }
    if !in_sync.is_empty() {
        let _ = writeln!(s, "\nIn sync: {}.", in_sync.join(", "));
    }

    // Sections: refused and failed targets first, then changes, then in-sync targets with
    // something to say (warnings, a cover).
    let order = [
        Status::Refused,
        Status::Error,
        Status::Changes,
        Status::InSync,
    ];
    for st in order {
        for p in plans.iter().filter(|p| p.status == st) {
            section(&mut s, p, d);
        }
    }
    s
}

/// The provider, and the `discover:` template that found the target, if one did.
fn provider_label(p: &TargetPlan) -> String {
    match &p.discovered_by {
        Some(t) => format!("{}, discovered by {t}", p.provider),
        None => p.provider.clone(),
    }
}

fn section(s: &mut String, p: &TargetPlan, d: Detail) {
    let has_ranges = matches!(p.status, Status::Changes | Status::Refused)
        && (!p.add.is_empty() || !p.remove.is_empty());
    let interesting = p.status != Status::InSync
        || !p.leases.is_empty()
        || !p.warnings.is_empty()
        || p.cover.is_some()
        || (d.unchanged && !p.unchanged.is_empty());
    if !interesting {
        return;
    }
    let _ = writeln!(
        s,
        "\n#### {} ({}): {}\n",
        code(&p.target),
        text(&provider_label(p)),
        counts(p)
    );
    let label = match p.status {
        Status::Refused => "Refused",
        _ => "Error",
    };
    for e in p.errors.iter().filter(|e| !e.is_empty()) {
        let _ = writeln!(s, "- **{label}:** {}", message(e, d.message_chars));
    }
    for w in &p.drift {
        let _ = writeln!(s, "- Drift: {}", message(w, d.message_chars));
    }
    for w in &p.warnings {
        let _ = writeln!(s, "- Warning: {}", message(w, d.message_chars));
    }
    leases(s, p, d);
    if let Some(cover) = &p.cover {
        let _ = writeln!(s, "- Cover: {}", message(&cover.summary(), d.message_chars));
        let merges = cover.merges();
        for m in merges.iter().take(d.merges) {
            let _ = writeln!(s, "  - {}", text(m));
        }
        if merges.len() > d.merges {
            let _ = writeln!(
                s,
                "  - … and {} more merged prefixes",
                merges.len() - d.merges
            );
        }
    }
    if has_ranges {
        let _ = writeln!(s, "\n```diff");
        list(s, "+ ", &p.add.prefixes(), d.ranges, "added");
        list(s, "- ", &p.remove.prefixes(), d.ranges, "removed");
        let _ = writeln!(s, "```");
    }
    if d.unchanged && !p.unchanged.is_empty() {
        let _ = writeln!(
            s,
            "\n<details><summary>{} unchanged</summary>\n\n```",
            super::count(p.unchanged.len(), "range")
        );
        for r in p.unchanged.prefixes() {
            let _ = writeln!(s, "{r}");
        }
        let _ = writeln!(s, "```\n\n</details>");
    }
}

/// The target's leases, apart from the declaration: kept, granted, revoked, expired.
fn leases(s: &mut String, p: &TargetPlan, d: Detail) {
    let line = |l: &rangekeeper_provider::Lease, what: &str| {
        let reason = l
            .reason
            .as_deref()
            .map(|r| format!(", {}", message(r, d.message_chars)))
            .unwrap_or_default();
        format!(
            "- Lease {} for `{}`: {what} (by {}{reason})",
            code(&l.id.to_string()),
            l.address,
            message(&l.requested_by, d.message_chars)
        )
    };
    for l in &p.leases {
        let granted = p.granted_leases.iter().any(|g| g.id == l.id);
        let what = if granted {
            format!("granted, until {}", l.expires)
        } else {
            format!("kept, until {}", l.expires)
        };
        let _ = writeln!(s, "{}", line(l, &what));
    }
    for l in &p.revoked_leases {
        let _ = writeln!(s, "{}", line(l, "revoked"));
    }
    for l in &p.expired_leases {
        let _ = writeln!(s, "{}", line(l, &format!("expired {}, removed", l.expires)));
    }
}

/// Ranges of one kind in a diff block, at most `max` of them and a line for the rest.
fn list(
    s: &mut String,
    sign: &str,
    ranges: &[rangekeeper_cidr::IpNet],
    max: Option<usize>,
    what: &str,
) {
    let shown = max.unwrap_or(ranges.len()).min(ranges.len());
    for r in &ranges[..shown] {
        let _ = writeln!(s, "{sign}{r}");
    }
    if shown < ranges.len() {
        let _ = writeln!(
            s,
            "{sign}… {} {}{what}",
            ranges.len() - shown,
            if shown == 0 { "" } else { "more " }
        );
    }
}

/// Inline code, whatever the text holds (a backtick run longer than any inside it).
fn code(t: &str) -> String {
    let t = one_line(t);
    let longest = t.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if t.starts_with('`') || t.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{t}{pad}{fence}")
}

/// Plain text that renders as written: no HTML, no @mentions or #references that would
/// notify people or link issues, on one line. Backtick-quoted values stay code spans (where
/// nothing needs escaping); an unpaired backtick is shown as one.
fn text(t: &str) -> String {
    let t = one_line(t);
    let parts: Vec<&str> = t.split('`').collect();
    // Parts at odd positions are inside a pair of backticks, unless the last one is unpaired.
    let paired = if parts.len() % 2 == 1 {
        parts.len()
    } else {
        parts.len() - 1
    };
    let mut out = String::with_capacity(t.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && i < paired {
            out.push('`');
            out.push_str(part);
            out.push('`');
            continue;
        }
        if i % 2 == 1 {
            out.push_str("\\`");
        }
        for c in part.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '&' => out.push_str("&amp;"),
                '@' => out.push_str("&#64;"),
                '#' => out.push_str("&#35;"),
                '*' | '_' | '[' | ']' | '\\' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out
}

/// A message, shortened to `max` characters.
fn message(m: &str, max: usize) -> String {
    let n = m.chars().count();
    if n <= max {
        return text(m);
    }
    let short: String = m.chars().take(max).collect();
    format!("{} … ({} characters more)", text(&short), n - max)
}

/// A table cell: `|` escaped.
fn cell(t: &str) -> String {
    t.replace('|', "\\|")
}

fn one_line(t: &str) -> String {
    t.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rangekeeper_cidr::RangeSet;
    use rangekeeper_provider::Restriction;

    fn set(n: u32, base: u32) -> RangeSet {
        RangeSet::from_nets((0..n).map(|i| {
            let a = base + 2 * i;
            rangekeeper_cidr::parse(&format!(
                "{}.{}.{}.{}",
                a >> 24,
                (a >> 16) & 255,
                (a >> 8) & 255,
                a & 255
            ))
            .unwrap()
            .net
        }))
    }

    fn plans(targets: u32, ranges: u32, errors: usize) -> Vec<TargetPlan> {
        (0..targets)
            .map(|t| {
                TargetPlan::new(
                    &format!("target-{t}"),
                    "file",
                    &Restriction::Ranges(set(ranges / 2, 0x0a00_0000 + t * 0x1_0000)),
                    set(ranges, 0x0a00_0000 + t * 0x1_0000),
                    (0..errors)
                        .map(|e| format!("`range-{e}` is refused: {}", "why ".repeat(100)))
                        .collect(),
                    vec![],
                )
            })
            .collect()
    }

    #[test]
    fn every_plan_fits_every_budget_with_balanced_blocks() {
        for (targets, ranges, errors) in [(1, 10, 0), (3, 5_000, 0), (400, 20, 3), (1_000, 2, 1)] {
            let p = plans(targets, ranges, errors);
            for budget in [1_000, 4_000, 20_000, COMMENT_BUDGET] {
                let md = plans_markdown("rangekeeper.yaml", &p, budget);
                let n = md.chars().count();
                assert!(n <= budget, "{targets}x{ranges}: {n} > {budget}");
                assert!(md.starts_with(MARKER));
                assert_eq!(md.matches("```").count() % 2, 0, "code blocks are closed");
                assert_eq!(
                    md.matches("<details>").count(),
                    md.matches("</details>").count()
                );
            }
        }
    }

    #[test]
    fn a_plan_that_fits_is_not_summarised() {
        let md = plans_markdown("f.yaml", &plans(2, 6, 0), COMMENT_BUDGET);
        assert!(!md.contains("Summarised"));
        assert!(!md.contains("cut here"));
        assert!(
            md.contains("<details><summary>3 ranges unchanged</summary>"),
            "{md}"
        );
        assert!(
            md.contains("| `target-1` | file | 📝 changes | 3 | 0 | 3 |"),
            "{md}"
        );
    }

    #[test]
    fn a_plan_that_no_summary_fits_is_cut_with_a_note() {
        let md = plans_markdown("f.yaml", &plans(1_000, 2, 1), 4_000);
        assert!(
            md.trim_end()
                .ends_with("Run `rangekeeper plan` for all of it._"),
            "{md}"
        );
        assert!(md.contains("The plan is cut here to fit in one comment ("));
    }

    #[test]
    fn text_cannot_mention_link_or_inject_html() {
        assert_eq!(
            text("@team see #12 <details> & *this* [x](y)"),
            "&#64;team see &#35;12 &lt;details&gt; &amp; \\*this\\* \\[x\\](y)"
        );
        // Code spans stay code spans, unescaped inside; an unpaired backtick is shown as one.
        assert_eq!(text("`a_b@c` is *x*"), "`a_b@c` is \\*x\\*");
        assert_eq!(text("odd ` tick_"), "odd \\` tick\\_");
        assert_eq!(text("line\nbreak"), "line break");
    }

    #[test]
    fn code_spans_hold_any_name() {
        assert_eq!(code("prod-weu"), "`prod-weu`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(cell(&code("a|b")), "`a\\|b`");
    }

    #[test]
    fn drift_is_shown_when_the_sets_agree() {
        let mut p = plans(1, 4, 0);
        p[0].add = RangeSet::new();
        p[0].status = Status::InSync;
        p[0].fold_drift(&["the live ACL differs from its file".to_owned()]);
        let md = plans_markdown("f.yaml", &p, COMMENT_BUDGET);
        assert!(
            md.contains(
                "#### `target-0` (file): 0 to add, 0 to remove, 2 unchanged, drift to repair"
            ),
            "{md}"
        );
        assert!(
            md.contains("- Drift: the live ACL differs from its file"),
            "{md}"
        );
    }

    #[test]
    fn long_messages_are_shortened_with_the_count() {
        let m = message(&"x".repeat(30), 10);
        assert_eq!(m, "xxxxxxxxxx … (20 characters more)");
    }
}
