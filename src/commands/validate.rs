//! `rangekeeper validate`: check the declaration and every target's desired set offline.

use std::io::Write;

use crate::cli::{Global, OutputFormat, ValidateArgs};
use crate::commands::Outcome;
use crate::declaration::{Declaration, Diagnostic, LoadOptions, Severity};
use crate::output;
use crate::registry;

pub fn run(global: &Global, _args: &ValidateArgs) -> anyhow::Result<Outcome> {
    if global.output == OutputFormat::Markdown {
        anyhow::bail!(
            "`--output markdown` is only for `plan`; use human, json or github with `validate`"
        );
    }
    let (decl, mut diags) = Declaration::load_partial(
        &global.file,
        LoadOptions {
            strict: global.strict,
            ..LoadOptions::default()
        },
        &registry::catalog(),
    );
    let mut targets = Vec::new();
    if let Some(decl) = &decl {
        // Targets with errors are checked as far as they resolved, so every problem shows
        // in one pass; of the guard's findings, only those about one range are theirs (a
        // finding about the whole set would be about a set that is not what was meant).
        let all = decl
            .targets
            .values()
            .map(|t| (t, true))
            .chain(decl.partial_targets.values().map(|t| (t, false)));
        for (t, complete) in all {
            match registry::build(&t.provider, &t.config) {
                Err(e) => diags.push(t.config_error(&decl.file, e.to_string())),
                Ok(provider) => {
                    let caps = provider.capabilities();
                    let checked =
                        crate::guard::check(&t.name, &t.desired, &t.policy, &caps, &|set| {
                            provider.check(set)
                        });
                    // validate makes no network call: live sources are not fetched, so an
                    // allow-list made only of sources is empty here and not an error.
                    let unfetched_only = !t.sources.is_empty() && t.desired.is_empty();
                    for (e, range) in checked.errors.into_iter().zip(checked.error_ranges) {
                        if unfetched_only || (!complete && range.is_none()) {
                            continue;
                        }
                        let pos = range.and_then(|r| t.entry_at(&r)).unwrap_or(t.pos);
                        diags.push(t.diagnostic_at(
                            pos,
                            &decl.file,
                            Severity::Error,
                            format!("target `{}`: {e}", t.name),
                        ));
                    }
                    if !complete {
                        continue;
                    }
                    if let Some(cover) = &checked.cover {
                        diags.push(t.diagnostic(
                            &decl.file,
                            Severity::Warning,
                            format!("target `{}`: {}", t.name, cover.summary()),
                        ));
                    }
                    for w in checked.warnings {
                        diags.push(t.diagnostic(
                            &decl.file,
                            Severity::Warning,
                            format!("target `{}`: {w}", t.name),
                        ));
                    }
                    let mut target = serde_json::json!({
                        "target": t.name,
                        "provider": t.provider,
                        "description": t.description,
                        "allow": t.allow_items,
                        "ranges": checked.effective,
                    });
                    if !t.sources.is_empty() {
                        target["sources"] = t
                            .sources
                            .iter()
                            .map(|s| (s.clone(), serde_json::json!("not fetched")))
                            .collect::<serde_json::Map<_, _>>()
                            .into();
                    }
                    targets.push(target);
                }
            }
        }
    }
    let mut templates = Vec::new();
    if let Some(discover) = decl.as_ref().and_then(|d| d.discover.as_ref()) {
        let file = decl.as_ref().map(|d| d.file.clone()).unwrap_or_default();
        for t in discover.templates.values() {
            let target = &t.target;
            // The provider fields are checked by the provider's discoverer factory, which
            // makes no call; the lists and policy like a target's, against the provider's
            // capabilities (what a provider checks per target is checked by `plan`).
            if let Err(e) = registry::discoverer(&target.provider, &target.config) {
                let msg = e.to_string().replace(
                    &format!("target `{}`", t.name),
                    &format!("template `{}`", t.name),
                );
                diags.push(target.config_error(&file, msg));
                continue;
            }
            let Some(caps) = registry::capabilities(&target.provider) else {
                continue;
            };
            let checked =
                crate::guard::check(&t.name, &target.desired, &target.policy, &caps, &|_| {
                    Vec::new()
                });
            let unfetched_only = !target.sources.is_empty() && target.desired.is_empty();
            for (e, range) in checked.errors.into_iter().zip(checked.error_ranges) {
                if unfetched_only {
                    continue;
                }
                let pos = range.and_then(|r| target.entry_at(&r)).unwrap_or(t.pos);
                diags.push(target.diagnostic_at(
                    pos,
                    &file,
                    Severity::Error,
                    format!("template `{}`: {e}", t.name),
                ));
            }
            for w in checked.warnings {
                diags.push(target.diagnostic(
                    &file,
                    Severity::Warning,
                    format!("template `{}`: {w}", t.name),
                ));
            }
            templates.push(serde_json::json!({
                "template": t.name,
                "provider": target.provider,
                "description": target.description,
                "allow": target.allow_items,
                "ranges": checked.effective,
                "discover": target.config.fields,
            }));
        }
    }
    let mut diags = once_each(diags);
    // The declaration's own problems first, then each imported file's, in line order.
    diags.sort_by_key(|d| {
        (
            d.file != global_file_name(&decl, global),
            d.file.clone(),
            d.line,
            d.column,
        )
    });
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let valid = errors == 0;
    match global.output {
        OutputFormat::Json => {
            let mut doc = serde_json::json!({
                "file": global.file.display().to_string(),
                "valid": valid,
                "diagnostics": diags,
                "sets": decl.as_ref().map(|d| d.sets.values().collect::<Vec<_>>()),
                "targets": targets,
            });
            if decl.as_ref().is_some_and(|d| d.discover.is_some()) {
                doc["templates"] = serde_json::Value::Array(templates);
            }
            crate::commands::print_json(&doc)?;
        }
        OutputFormat::Github => {
            let mut out = std::io::stdout().lock();
            for d in &diags {
                writeln!(out, "{}", output::github_annotation(d))?;
            }
        }
        OutputFormat::Human | OutputFormat::Markdown => {
            let mut err = anstream::stderr().lock();
            for d in &diags {
                writeln!(err, "{}", output::diagnostic_human(d))?;
            }
            drop(err);
            if let Some(decl) = decl.as_ref().filter(|_| valid) {
                crate::commands::print_human(&summary(decl, &diags))?;
            }
        }
    }
    if valid {
        Ok(Outcome::Success)
    } else {
        Err(crate::commands::Reported(format!(
            "{} is not valid ({errors} error{})",
            global.file.display(),
            if errors == 1 { "" } else { "s" }
        ))
        .into())
    }
}

/// Each problem once: the same finding at the same place (a range in a set that several
/// targets use, say) is one diagnostic naming every target it concerns.
fn once_each(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<(Diagnostic, Vec<String>, String)> = Vec::new();
    for d in diags {
        let (targets, rest) = match &d.target {
            Some(t) => match d.message.strip_prefix(&format!("target `{t}`: ")) {
                Some(rest) => (vec![t.clone()], rest.to_owned()),
                None => (Vec::new(), d.message.clone()),
            },
            None => (Vec::new(), d.message.clone()),
        };
        if let Some((_, seen_targets, _)) = out.iter_mut().find(|(o, _, r)| {
            o.severity == d.severity && o.line == d.line && o.column == d.column && *r == rest
        }) {
            for t in targets {
                if !seen_targets.contains(&t) {
                    seen_targets.push(t);
                }
            }
            continue;
        }
        out.push((d, targets, rest));
    }
    out.into_iter()
        .map(|(mut d, targets, rest)| {
            if targets.len() > 1 {
                let names: Vec<String> = targets.iter().map(|t| format!("`{t}`")).collect();
                d.message = format!("targets {}: {rest}", names.join(", "));
                d.target = None;
            }
            d
        })
        .collect()
}

fn summary(decl: &Declaration, diags: &[Diagnostic]) -> String {
    let warnings = diags.len();
    let mut s = format!(
        "{} is valid: {} set{}, {} target{}",
        decl.file,
        decl.sets.len(),
        if decl.sets.len() == 1 { "" } else { "s" },
        decl.targets.len(),
        if decl.targets.len() == 1 { "" } else { "s" },
    );
    if warnings > 0 {
        s.push_str(&format!(
            ", {warnings} warning{}",
            if warnings == 1 { "" } else { "s" }
        ));
    }
    if let Some(d) = &decl.discover {
        s.push_str(&format!(
            ", {} discovery template{} (listed every {})",
            d.templates.len(),
            if d.templates.len() == 1 { "" } else { "s" },
            crate::sources::spec::format_duration(d.interval)
        ));
    }
    s.push('\n');
    let live = |t: &crate::declaration::Target| {
        if t.sources.is_empty() {
            String::new()
        } else {
            format!(
                " + live sources {} (not fetched by validate)",
                t.sources.join(", ")
            )
        }
    };
    for t in decl.targets.values() {
        s.push_str(&format!(
            "  {} ({}): {}{}\n",
            t.name,
            t.provider,
            output::count(t.desired.len(), "range"),
            live(t)
        ));
    }
    for t in decl.discover.iter().flat_map(|d| d.templates.values()) {
        s.push_str(&format!(
            "  template {} ({}, discovers targets; not listed by validate): {}{}\n",
            t.name,
            t.target.provider,
            output::count(t.target.desired.len(), "range"),
            live(&t.target)
        ));
    }
    s
}

/// The declaration file's name as diagnostics show it.
fn global_file_name(decl: &Option<crate::declaration::Declaration>, global: &Global) -> String {
    decl.as_ref()
        .map_or_else(|| global.file.display().to_string(), |d| d.file.clone())
}
