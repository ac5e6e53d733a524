//! `rangekeeper import`: read what each target of a skeleton declaration holds now and print
//! the complete declaration on stdout (progress and warnings on stderr).

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Context as _, bail};
use rangekeeper_cidr::IpNet;
use rangekeeper_provider::{Provider, TargetConfig};

use crate::cli::{Global, ImportArgs, ImportFormat, OutputFormat};
use crate::commands::{self, Outcome, Reported};
use crate::declaration::raw::{Pos, RawDeclaration};
use crate::declaration::{DeclText, Diagnostic, LoadOptions, Severity, did_you_mean};
use crate::import::{self, Known, Read, emit};
use crate::registry;

/// One skeleton target with its provider built.
struct Bound {
    known: Known,
    provider: Box<dyn Provider>,
}

fn diag(file: &str, pos: Option<Pos>, target: Option<&str>, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        line: pos.map(|p| p.line),
        column: pos.map(|p| p.column),
        target: target.map(str::to_owned),
        message,
    }
}

fn report(diags: &[Diagnostic], summary: String) -> anyhow::Error {
    let mut err = anstream::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{}", crate::output::diagnostic_human(d));
    }
    Reported(summary).into()
}

/// Notes the skeleton gives ranges (`{cidr, note}` in sets and allow lists), by canonical
/// prefix, so imported ranges keep them and sets can be named after them.
fn skeleton_notes(doc: &serde_json::Value) -> BTreeMap<IpNet, String> {
    let mut notes = BTreeMap::new();
    let mut lists: Vec<&serde_json::Value> = Vec::new();
    if let Some(sets) = doc.get("sets").and_then(|s| s.as_object()) {
        for set in sets.values() {
            lists.push(set);
            if let Some(o) = set.as_object() {
                lists.extend(o.get("include"));
            }
        }
    }
    if let Some(targets) = doc.get("targets").and_then(|t| t.as_object()) {
        for t in targets.values() {
            lists.extend(t.get("allow"));
            lists.extend(t.get("protect"));
        }
    }
    for item in lists.iter().filter_map(|l| l.as_array()).flatten() {
        if let (Some(cidr), Some(note)) = (
            item.get("cidr").and_then(|c| c.as_str()),
            item.get("note").and_then(|n| n.as_str()),
        ) && let Ok(p) = rangekeeper_cidr::parse(cidr)
        {
            notes.entry(p.net).or_insert_with(|| note.to_owned());
        }
    }
    notes
}

pub async fn run(global: &Global, args: &ImportArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "import")?;
    let text = DeclText::read(&global.file).map_err(|e| {
        report(
            &e.0,
            format!("cannot import from {}", global.file.display()),
        )
    })?;
    let file = text.file.clone();
    if text.is_json
        && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text.text)
    {
        let pos = Pos {
            line: e.line() as u64,
            column: e.column() as u64,
        };
        return Err(report(
            &[diag(&file, Some(pos), None, format!("invalid JSON: {e}"))],
            format!("{file} is not a valid skeleton"),
        ));
    }
    let raw: RawDeclaration = crate::declaration::read_yaml(&text.text).map_err(|(pos, msg)| {
        report(
            &[diag(&file, pos, None, msg)],
            format!("{file} is not a valid skeleton"),
        )
    })?;
    let doc: serde_json::Value =
        serde_saphyr::from_str(&text.text).with_context(|| format!("cannot read {file}"))?;
    if raw.version.value != 1 {
        return Err(report(
            &[diag(
                &file,
                Some(Pos::of(&raw.version)),
                None,
                format!(
                    "unsupported declaration version {}; this rangekeeper reads version 1",
                    raw.version.value
                ),
            )],
            format!("{file} is not a valid skeleton"),
        ));
    }
    for n in &args.select.targets {
        if !raw.targets.contains_key(n) {
            let hint = did_you_mean(n, raw.targets.keys().map(String::as_str));
            bail!(
                "no target `{n}` in {file}{hint}; targets: {}",
                raw.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    if raw.targets.is_empty() {
        bail!("{file} has no targets to import");
    }
    // Build every selected target's provider; report all config errors at once.
    let mut bound = Vec::new();
    let mut errors = Vec::new();
    let target_names: Vec<String> = raw.targets.keys().cloned().collect();
    for (name, t) in &raw.targets {
        if !args.select.targets.is_empty() && !args.select.targets.contains(name) {
            continue;
        }
        let pos = Pos::of(t);
        let Some(provider) = &t.value.provider else {
            errors.push(diag(
                &file,
                Some(pos),
                Some(name),
                format!(
                    "target `{name}` has no `provider` (one of: {})",
                    registry::names().join(", ")
                ),
            ));
            continue;
        };
        let mut config = TargetConfig {
            name: name.clone(),
            base_dir: text.base_dir.clone(),
            fields: t
                .value
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
        };
        // Settings the provider imports from its own files (as the loader merges them).
        let imported = registry::import(&provider.value, &config);
        if imported.has_errors() {
            for note in imported.notes.iter().filter(|n| n.is_error()) {
                errors.push(match &note.at {
                    Some(at) => crate::declaration::Diagnostic {
                        severity: crate::declaration::Severity::Error,
                        file: at.file.display().to_string(),
                        line: at.line,
                        column: at.column,
                        target: Some(name.clone()),
                        message: note.message.clone(),
                    },
                    None => diag(
                        &file,
                        Some(Pos::of(provider)),
                        Some(name),
                        format!("target `{name}`: {}", note.message),
                    ),
                });
            }
            continue;
        }
        for (k, v) in imported.fields {
            config.fields.entry(k).or_insert(v);
        }
        // Reads go through the one retry policy, bounded by `--read-deadline`, like `show`.
        match registry::build(&provider.value, &config)
            .map(|p| crate::retry::wrap(p, name, global.retry))
        {
            Ok(p) => bound.push(Bound {
                known: Known {
                    name: name.clone(),
                    allow_private: t.value.allow_private.as_ref().map(|v| v.value),
                    allow_broad: t.value.allow_broad.as_ref().is_some_and(|v| v.value),
                },
                provider: p,
            }),
            Err(e) => errors.push(diag(
                &file,
                Some(Pos::of(provider)),
                Some(name),
                format!("target `{name}`: {e}"),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(report(&errors, format!("{file} is not a valid skeleton")));
    }
    tracing::info!(target: "rangekeeper::progress", "reading {} target{}", bound.len(), if bound.len() == 1 { "" } else { "s" });
    let states = futures::future::join_all(bound.iter().map(|b| b.provider.current())).await;
    let mut failed = Vec::new();
    let mut ok = Vec::new();
    for (b, s) in bound.iter().zip(states) {
        match s {
            Ok(state) => {
                tracing::debug!("{}: {}", b.known.name, import::describe(&state.restriction));
                use rangekeeper_provider::Restriction;
                if !matches!(
                    state.restriction,
                    Restriction::Unrestricted | Restriction::Ranges(_)
                ) {
                    failed.push(format!(
                        "{}: the provider reports {}, which cannot be imported faithfully",
                        b.known.name,
                        import::describe(&state.restriction)
                    ));
                }
                ok.push(state);
            }
            Err(e) => failed.push(format!(
                "{}: cannot read the current ranges: {e}",
                b.known.name
            )),
        }
    }
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("error: {f}");
        }
        return Err(Reported(format!(
            "{} of {} targets could not be read; nothing was printed",
            failed.len(),
            bound.len()
        ))
        .into());
    }
    let reads: Vec<Read<'_>> = bound
        .iter()
        .zip(&ok)
        .map(|(b, state)| Read {
            known: b.known.clone(),
            caps: b.provider.capabilities(),
            state,
        })
        .collect();
    let started = std::time::Instant::now();
    let notes = skeleton_notes(&doc);
    let taken: Vec<String> = raw.sets.keys().cloned().collect();
    let (out, rep) = import::plan(&reads, &notes, &taken);
    for w in &rep.warnings {
        tracing::warn!("{w}");
    }
    // `-o` after `import`, else `rangekeeper -o json import`.
    let format = args.output.unwrap_or(match global.output {
        OutputFormat::Json => ImportFormat::Json,
        _ => ImportFormat::Yaml,
    });
    let (body, is_json) = match format {
        ImportFormat::Json => (
            serde_json::to_string_pretty(&emit::rebuild(&doc, &out))? + "\n",
            true,
        ),
        _ => match (!text.is_json)
            .then(|| emit::splice_yaml(&text.text, &target_names, &out))
            .flatten()
        {
            Some(yaml) => (yaml, false),
            None => {
                tracing::warn!(
                    "{file} is not block-style YAML, so its comments and formatting cannot be kept; the declaration is rebuilt from its values"
                );
                (
                    serde_saphyr::to_string(&emit::rebuild(&doc, &out))
                        .context("cannot write the declaration as YAML")?,
                    false,
                )
            }
        },
    };
    self_check(&body, is_json, &text, &reads, &bound)?;
    tracing::debug!(
        "factored and written in {} ms",
        started.elapsed().as_millis()
    );
    for i in &rep.infos {
        tracing::info!(target: "rangekeeper::progress", "{i}");
    }
    commands::print_human(&body)?;
    Ok(Outcome::Success)
}

/// Load what import wrote as a declaration and confirm that every imported target declares
/// exactly what it holds and that the guards accept it, so a bug never prints a declaration
/// whose first plan would change something.
fn self_check(
    body: &str,
    is_json: bool,
    text: &DeclText,
    reads: &[Read<'_>],
    bound: &[Bound],
) -> anyhow::Result<()> {
    let (decl, diags) = DeclText {
        text: body.to_owned(),
        file: "<imported>".to_owned(),
        base_dir: text.base_dir.clone(),
        is_json,
        generated: false,
    }
    .load(
        LoadOptions::default(),
        &registry::catalog(),
        &Default::default(),
    );
    let imported = |t: &Option<String>| {
        t.as_deref().is_some_and(|t| {
            reads
                .iter()
                .any(|r| r.known.name == t && r.state.restriction.ranges().is_some())
        })
    };
    let mut bugs = Vec::new();
    for d in diags.iter().filter(|d| d.severity == Severity::Error) {
        if imported(&d.target) || d.target.is_none() {
            bugs.push(d.to_string());
        } else {
            tracing::warn!("the printed declaration is not complete: {}", d.message);
        }
    }
    if let Some(decl) = decl {
        for (r, b) in reads.iter().zip(bound) {
            let Some(held) = r.state.restriction.ranges() else {
                continue;
            };
            let Some(t) = decl.targets.get(&r.known.name) else {
                bugs.push(format!(
                    "target `{}` is missing from the output",
                    r.known.name
                ));
                continue;
            };
            if &t.desired != held {
                bugs.push(format!(
                    "target `{}` would declare {} but holds {held}",
                    r.known.name, t.desired
                ));
            }
            let checked = crate::guard::check(&t.name, &t.desired, &t.policy, &r.caps, &|s| {
                b.provider.check(s)
            });
            for e in checked.errors {
                tracing::warn!("{}: plan will refuse what it holds today: {e}", t.name);
            }
        }
    }
    if !bugs.is_empty() {
        bail!(
            "internal error: the imported declaration does not reproduce what the targets hold (please report this): {}",
            bugs.join("; ")
        );
    }
    Ok(())
}
