//! `rangekeeper sources accept SET`: take a live source's held-back value (a change larger
//! than the hold-back rules let through on their own) as its new last good value.

use std::collections::HashMap;

use anyhow::anyhow;

use crate::cli::{Global, OutputFormat, SourcesArgs, SourcesCommand};
use crate::commands::{self, Outcome};
use crate::declaration::{DeclText, LoadOptions};
use crate::registry;
use crate::sources::{Store, tracked_specs};

pub fn run(global: &Global, args: &SourcesArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "sources")?;
    match &args.command {
        SourcesCommand::Accept(a) => accept(global, &a.set),
    }
}

fn accept(global: &Global, set: &str) -> anyhow::Result<Outcome> {
    let catalog = registry::catalog();
    let text = DeclText::read(&global.file).map_err(|e| anyhow!("{e}"))?;
    let decl = text
        .resolve(
            LoadOptions {
                strict: global.strict,
                ..LoadOptions::default()
            },
            &catalog,
            &HashMap::new(),
        )
        .map_err(|e| anyhow!("{e}"))?;
    let specs = tracked_specs(&decl, &[]);
    if !specs.contains_key(set) {
        let known: Vec<&str> = specs.keys().map(String::as_str).collect();
        return Err(anyhow!(
            "no live source `{set}` in {}{}{}",
            decl.file,
            crate::declaration::did_you_mean(set, known.iter().copied()),
            if known.is_empty() {
                String::new()
            } else {
                format!("; live sources: {}", known.join(", "))
            }
        ));
    }
    let state_dir = commands::reconcile::state_dir(global)?;
    let mut store = Store::new(Some(&state_dir));
    store.sync(&specs);
    let (old, new) = store.accept(set).map_err(|e| anyhow!(e))?;
    let old = old.unwrap_or_default();
    let (added, removed) = crate::plan::prefix_diff(&old, &new);
    match global.output {
        OutputFormat::Json => commands::print_json(&serde_json::json!({
            "source": set,
            "accepted": new,
            "added": added,
            "removed": removed,
        }))?,
        _ => {
            let mut s = format!(
                "accepted the held-back value of `{set}`: {} (was {})\n",
                crate::output::count(new.len(), "range"),
                crate::output::count(old.len(), "range"),
            );
            for a in &added {
                s.push_str(&format!("  + {a}\n"));
            }
            for r in &removed {
                s.push_str(&format!("  - {r}\n"));
            }
            commands::print_human(&s)?;
        }
    }
    Ok(Outcome::Success)
}
