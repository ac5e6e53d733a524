//! `rangekeeper show`: the ranges each target holds now.

use crate::cli::{Global, OutputFormat, ShowArgs};
use crate::commands::{self, Outcome};
use crate::output;

pub async fn run(global: &Global, args: &ShowArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "show")?;
    let decl = commands::load_offline(global)?;
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
        match state {
            Ok(state) => {
                json.push(output::state_json(name, provider, &state));
                human.push_str(&output::state_human(name, provider, &state));
            }
            Err(e) => {
                failed += 1;
                json.push(serde_json::json!({"target": name, "provider": provider, "error": e.to_string()}));
                human.push_str(&format!("{name} ({provider})\n  error: {e}\n"));
            }
        }
    }
    match global.output {
        OutputFormat::Json => commands::print_json(&serde_json::json!({ "targets": json }))?,
        _ => commands::print_human(&human)?,
    }
    if failed > 0 {
        return Err(commands::Reported(format!("{failed} target(s) could not be read")).into());
    }
    Ok(Outcome::Success)
}
