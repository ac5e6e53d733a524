//! `rangekeeper providers`: the built-in providers and what they accept.

use crate::cli::{Global, OutputFormat};
use crate::commands::{self, Outcome};
use crate::registry;

pub fn run(global: &Global) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "providers")?;
    let caps: Vec<_> = registry::entries()
        .iter()
        .map(|e| (e.capabilities)())
        .collect();
    match global.output {
        OutputFormat::Json => commands::print_json(&caps)?,
        _ => commands::print_human(&crate::output::providers_human(&caps))?,
    }
    Ok(Outcome::Success)
}
