//! `rangekeeper show`: the ranges each target holds now.

use crate::cli::{Global, OutputFormat, ShowArgs};
use crate::commands::{self, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &ShowArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "show")?;
    let mut decl = commands::load_offline(global)?;
    let expanded = commands::discover(global, &mut decl).await;
    let bound = commands::bind(
        global,
        &decl,
        None,
        commands::select(&decl, &args.select.targets)?,
    )?;
    let states = futures::future::join_all(bound.iter().map(|b| b.provider.current())).await;
    let mut json = Vec::new();
    let mut human = String::new();
    let mut failed = 0;
    for (b, state) in bound.iter().zip(states) {
        let (name, provider) = (&b.target.name, &b.target.provider);
        // A discovered target says by which template.
        let label = match &b.target.template {
            Some(t) => format!("{provider}, discovered by {t}"),
            None => provider.clone(),
        };
        let mut item = match state {
            Ok(state) => {
                human.push_str(&output::state_human(name, &label, &state));
                output::state_json(name, provider, &state)
            }
            Err(e) => {
                failed += 1;
                human.push_str(&format!("{name} ({label})\n  error: {e}\n"));
                serde_json::json!({"target": name, "provider": provider, "error": e.to_string()})
            }
        };
        if let Some(t) = &b.target.template {
            item["discoveredBy"] = serde_json::Value::String(t.clone());
        }
        json.push(item);
    }
    match global.output {
        OutputFormat::Json => {
            let mut doc = serde_json::json!({ "targets": json });
            if decl.discover.is_some() {
                doc["discovery"] = serde_json::to_value(&expanded)?;
            }
            commands::print_json(&doc)?;
        }
        _ => commands::print_human(&format!("{}{human}", output::discovery_human(&expanded)))?,
    }
    if failed > 0 {
        return Err(commands::Reported(format!("{failed} target(s) could not be read")).into());
    }
    let failures: Vec<String> = expanded
        .failures()
        .map(|f| format!("`{}`", f.template))
        .collect();
    if !failures.is_empty() {
        return Err(commands::Reported(format!(
            "discovery failed for template{} {}",
            if failures.len() == 1 { "" } else { "s" },
            failures.join(", ")
        ))
        .into());
    }
    Ok(Outcome::Success)
}
