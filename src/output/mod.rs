//! Rendering of what users read: plans, shown state, provider tables, diagnostics. Human
//! text is styled with ANSI colors that `anstream` strips when stdout is not a terminal or
//! `NO_COLOR` is set; JSON is one document per command.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use rangekeeper_provider::{Capabilities, State, UnrestrictedForm};

use crate::declaration::{Diagnostic, Severity};
use crate::plan::{Status, TargetPlan};

mod markdown;
pub use markdown::{COMMENT_BUDGET, plans_markdown};

const BOLD: Style = Style::new().bold();
pub(crate) const GREEN: Style = AnsiColor::Green.on_default();
pub(crate) const RED: Style = AnsiColor::Red.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const DIM: Style = Style::new().dimmed();

/// `1 range`, `3 ranges`: a count with its noun in the right number.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub(crate) fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Human rendering of plans, with a summary line.
pub fn plans_human(plans: &[TargetPlan]) -> String {
    let mut s = String::new();
    for p in plans {
        let head = paint(BOLD, &p.target);
        let what = match p.status {
            Status::InSync => paint(
                GREEN,
                &format!("in sync ({})", count(p.desired.len(), "range")),
            ),
            Status::Changes => {
                let mut parts = vec![
                    format!("{} to add", p.add.len()),
                    format!("{} to remove", p.remove.len()),
                ];
                if p.unrestricted {
                    parts = vec![format!("unrestricted now, {} to allow", p.add.len())];
                }
                if !p.drift.is_empty() {
                    parts.push("drift to repair".to_owned());
                }
                paint(YELLOW, &parts.join(", "))
            }
            Status::Refused => paint(RED, "refused"),
            Status::Error => paint(RED, "error"),
        };
        let provider = match &p.discovered_by {
            Some(t) => format!("{}, discovered by {t}", p.provider),
            None => p.provider.clone(),
        };
        let _ = writeln!(s, "{head} ({provider}): {what}");
        for w in &p.warnings {
            let _ = writeln!(s, "  {} {w}", paint(YELLOW, "warning:"));
        }
        for e in &p.errors {
            let _ = writeln!(s, "  {} {e}", paint(RED, "error:"));
        }
        for d in &p.drift {
            let _ = writeln!(s, "  {} {d}", paint(YELLOW, "drift:"));
        }
        if let Some(cover) = &p.cover {
            let _ = writeln!(s, "  {} {}", paint(YELLOW, "cover:"), cover.summary());
            for m in cover.merges() {
                let _ = writeln!(s, "    {m}");
            }
        }
        let _ = write!(s, "{}", leases_human(p));
        if matches!(p.status, Status::Changes) {
            for a in p.add.prefixes() {
                let _ = writeln!(s, "  {}", paint(GREEN, &format!("+ {a}")));
            }
            for r in p.remove.prefixes() {
                let _ = writeln!(s, "  {}", paint(RED, &format!("- {r}")));
            }
            if !p.unchanged.is_empty() {
                let _ = writeln!(
                    s,
                    "  {}",
                    paint(DIM, &format!("= {} unchanged", p.unchanged.len()))
                );
            }
        }
    }
    let count = |st: Status| plans.iter().filter(|p| p.status == st).count();
    let _ = writeln!(
        s,
        "Plan: {} to change, {} in sync, {} refused, {} failed.",
        count(Status::Changes),
        count(Status::InSync),
        count(Status::Refused),
        count(Status::Error)
    );
    s
}

/// What the `discover:` templates found, for `plan`, `show` and `apply`: per template, the
/// targets made, those pending (not planned yet), those overridden by a declared target,
/// and a failed listing. Empty when the declaration has no templates.
pub fn discovery_human(expanded: &crate::discovery::Expanded) -> String {
    let mut s = String::new();
    for t in &expanded.0 {
        let head = paint(BOLD, &format!("template {}", t.template));
        match &t.failure {
            Some(f) => {
                let kept = match f.kept {
                    Some(n) => format!(
                        "; its last good list stays in force ({})",
                        count(n, "target")
                    ),
                    None => String::new(),
                };
                let _ = writeln!(
                    s,
                    "{head} ({}): {} {}{kept}",
                    t.provider,
                    paint(RED, "discovery failed:"),
                    f.error
                );
            }
            None => {
                let mut parts = vec![format!("{} discovered", count(t.targets.len(), "target"))];
                if !t.pending.is_empty() {
                    parts.push(format!("{} pending", t.pending.len()));
                }
                if !t.overridden.is_empty() {
                    parts.push(format!("{} declared in `targets:`", t.overridden.len()));
                }
                let _ = writeln!(s, "{head} ({}): {}", t.provider, parts.join(", "));
            }
        }
        for p in &t.pending {
            let _ = writeln!(
                s,
                "  {} {}: {}",
                paint(YELLOW, "pending:"),
                p.target,
                p.reason
            );
        }
        for n in &t.overridden {
            let _ = writeln!(
                s,
                "  {} {n}: the target declared in `targets:` is used",
                paint(DIM, "overridden:")
            );
        }
        for n in &t.duplicates {
            let _ = writeln!(
                s,
                "  {} {n}: listed by an earlier template, which is used",
                paint(DIM, "duplicate:")
            );
        }
    }
    s
}

/// The leases of a plan, apart from the declared ranges: kept, granted, revoked, expired.
fn leases_human(p: &TargetPlan) -> String {
    let mut s = String::new();
    let line = |l: &rangekeeper_provider::Lease, what: &str| {
        let reason = l
            .reason
            .as_deref()
            .map(|r| format!(", {}", r.escape_debug()))
            .unwrap_or_default();
        format!(
            "lease {} {}: {} (by {}{reason})",
            l.id,
            l.address,
            what,
            l.requested_by.escape_debug()
        )
    };
    for l in &p.leases {
        let granted = p.granted_leases.iter().any(|g| g.id == l.id);
        let text = line(l, &format!("until {}", l.expires));
        if granted {
            let _ = writeln!(s, "  {}", paint(GREEN, &format!("+ {text}")));
        } else {
            let _ = writeln!(s, "  {}", paint(DIM, &format!("= {text}")));
        }
    }
    for l in &p.revoked_leases {
        let _ = writeln!(s, "  {}", paint(RED, &format!("- {}", line(l, "revoked"))));
    }
    for l in &p.expired_leases {
        let text = line(l, &format!("expired {}", l.expires));
        let _ = writeln!(s, "  {}", paint(RED, &format!("- {text}")));
    }
    s
}

/// Human rendering of one target's current state.
pub fn state_human(target: &str, provider: &str, state: &State) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} ({provider})", paint(BOLD, target));
    for (k, v) in &state.details {
        let _ = writeln!(s, "  {k}: {v}");
    }
    match state.restriction.ranges() {
        None => {
            let _ = writeln!(s, "  {}", paint(YELLOW, "unrestricted: anyone may connect"));
        }
        Some(set) => {
            let _ = writeln!(s, "  ranges ({}):", set.len());
            for p in set.prefixes() {
                let _ = writeln!(s, "    {p}");
            }
        }
    }
    if !state.leases.is_empty() {
        let now = rangekeeper_provider::Timestamp::now();
        let _ = writeln!(s, "  leases ({}):", state.leases.len());
        for l in &state.leases {
            let when = if l.is_expired(now) {
                format!("expired {}", l.expires)
            } else {
                format!("until {}", l.expires)
            };
            let _ = writeln!(
                s,
                "    {} {} {when} (by {})",
                l.id,
                l.address,
                l.requested_by.escape_debug()
            );
        }
    }
    for w in &state.warnings {
        let _ = writeln!(s, "  {} {w}", paint(YELLOW, "warning:"));
    }
    for d in &state.drift {
        let _ = writeln!(s, "  {} {d}", paint(YELLOW, "drift:"));
    }
    s
}

/// A JSON value for one target's current state.
pub fn state_json(target: &str, provider: &str, state: &State) -> serde_json::Value {
    let mut v = serde_json::json!({
        "target": target,
        "provider": provider,
        "unrestricted": state.restriction.ranges().is_none(),
        "ranges": state.restriction.ranges(),
        "details": state
            .details
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<serde_json::Map<_, _>>(),
        "warnings": state.warnings,
    });
    if !state.leases.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "leases".into(),
            serde_json::to_value(&state.leases).unwrap_or_default(),
        );
    }
    if !state.drift.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("drift".into(), serde_json::json!(state.drift));
    }
    v
}

fn unrestricted_form(u: UnrestrictedForm) -> &'static str {
    match u {
        UnrestrictedForm::EmptyList => "empty list",
        UnrestrictedForm::AllAddresses => "0.0.0.0/0, ::/0",
        UnrestrictedForm::Removed => "rules removed",
        _ => "unknown",
    }
}

/// One row of `rangekeeper providers`: a built-in, or a plugin found on PATH.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRow {
    #[serde(flatten)]
    pub capabilities: Option<Capabilities>,
    /// The name written in `provider:` (a plugin's may differ from its capabilities' name).
    pub provider: String,
    /// The plugin executable; absent for a built-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Why a plugin's capabilities could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Human table of provider capabilities.
pub fn providers_human(listed: &[ProviderRow]) -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let rows: Vec<[String; 9]> = listed
        .iter()
        .map(|r| {
            let plugin = r
                .plugin
                .as_ref()
                .map(|p| format!(" (plugin {p})"))
                .unwrap_or_default();
            match &r.capabilities {
                Some(c) => [
                    r.provider.clone(),
                    c.max_ranges.map_or("-".to_owned(), |m| m.to_string()),
                    yes(c.ipv4).to_owned(),
                    yes(c.ipv6).to_owned(),
                    yes(c.private_ranges).to_owned(),
                    unrestricted_form(c.unrestricted).to_owned(),
                    yes(c.async_apply).to_owned(),
                    yes(c.leases).to_owned(),
                    format!("{}{plugin}", c.description),
                ],
                None => {
                    let mut row = [
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        String::new(),
                    ];
                    row[0] = r.provider.clone();
                    row[8] = format!(
                        "error: {}{plugin}",
                        r.error.as_deref().unwrap_or("no capabilities")
                    );
                    row
                }
            }
        })
        .collect();
    let header = [
        "NAME",
        "MAX",
        "IPV4",
        "IPV6",
        "PRIVATE",
        "UNRESTRICTED AS",
        "ASYNC",
        "LEASES",
        "DESCRIPTION",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut s = String::new();
    let line = |cells: Vec<&str>, s: &mut String| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ");
            }
        }
        let _ = writeln!(s, "{}", out.trim_end());
    };
    line(header.to_vec(), &mut s);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut s);
    }
    s
}

/// A diagnostic as a GitHub Actions workflow command.
pub fn github_annotation(d: &Diagnostic) -> String {
    let kind = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut props = format!("file={}", escape_property(&d.file));
    if let Some(l) = d.line {
        let _ = write!(props, ",line={l}");
    }
    if let Some(c) = d.column {
        let _ = write!(props, ",col={c}");
    }
    format!("::{kind} {props}::{}", escape_data(&d.message))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// A diagnostic for a terminal (colored severity).
pub fn diagnostic_human(d: &Diagnostic) -> String {
    let text = d.to_string();
    let (word, style) = match d.severity {
        Severity::Error => (": error:", RED),
        Severity::Warning => (": warning:", YELLOW),
    };
    text.replacen(word, &format!(": {}", paint(style, &word[2..])), 1)
}

/// An error already reported to the user in full (diagnostics printed); exit 1 quietly.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// A plain table: columns padded to their widest cell, two spaces apart, the last one
/// unpadded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ");
            }
        }
        let _ = writeln!(s, "{}", out.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    s
}
