//! `rangekeeper plan`: what `apply` would change on each target.

use crate::cli::{Global, OutputFormat, PlanArgs};
use crate::commands::{self, Outcome};
use crate::plan::Status;

pub async fn run(global: &Global, args: &PlanArgs) -> anyhow::Result<Outcome> {
    if global.output == OutputFormat::Github {
        anyhow::bail!(
            "`--output github` is only for `validate`; use human, json or markdown with `plan`"
        );
    }
    let (mut decl, lockout) = commands::load(global).await?;
    let expanded = commands::discover(global, &mut decl).await;
    let bound = commands::bind(
        global,
        &decl,
        lockout.as_ref(),
        commands::select(&decl, &args.select.targets)?,
    )?;
    let plans = crate::plan::plan_all(&bound).await;
    match global.output {
        OutputFormat::Json => {
            let mut doc = serde_json::json!({ "plans": plans });
            if decl.discover.is_some() {
                doc["discovery"] = serde_json::to_value(&expanded)?;
            }
            commands::print_json(&doc)?;
        }
        OutputFormat::Markdown => commands::print_human(&crate::output::plans_markdown(
            &decl.file,
            &plans,
            crate::output::COMMENT_BUDGET,
        ))?,
        _ => commands::print_human(&format!(
            "{}{}",
            crate::output::discovery_human(&expanded),
            crate::output::plans_human(&plans)
        ))?,
    }
    let failed_templates: Vec<String> = expanded
        .failures()
        .map(|f| format!("`{}`", f.template))
        .collect();
    if !failed_templates.is_empty() {
        return Err(commands::Reported(format!(
            "discovery failed for template{} {}: the targets {} would list are not planned",
            if failed_templates.len() == 1 { "" } else { "s" },
            failed_templates.join(", "),
            if failed_templates.len() == 1 {
                "it"
            } else {
                "they"
            },
        ))
        .into());
    }
    if plans
        .iter()
        .any(|p| matches!(p.status, Status::Refused | Status::Error))
    {
        return Ok(Outcome::Failure);
    }
    if args.detailed_exitcode && plans.iter().any(|p| p.status == Status::Changes) {
        return Ok(Outcome::Changes);
    }
    Ok(Outcome::Success)
}
