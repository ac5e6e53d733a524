//! `rangekeeper apply`: make each target hold exactly its declared ranges.
//!
//! All or nothing before any change: when a guard refuses one target, or one target cannot
//! be read, nothing is applied anywhere.

use rangekeeper_provider::Applied;

use crate::cli::{ApplyArgs, ChangeArgs, Global, OutputFormat};
use crate::commands::{self, Outcome};
use crate::plan::Bound;
use crate::plan::{Status, TargetPlan};

/// What happened to one target.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetResult {
    pub target: String,
    /// `applied`, `pending`, `unchanged` or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TargetResult {
    pub fn from_outcome(
        target: &str,
        r: Result<Applied, rangekeeper_provider::ProviderError>,
    ) -> TargetResult {
        match r {
            Ok(a) => TargetResult {
                target: target.to_owned(),
                result: if a.pending {
                    "pending"
                } else if a.changed {
                    "applied"
                } else {
                    "unchanged"
                },
                notes: a.notes,
                error: None,
            },
            Err(e) => TargetResult {
                target: target.to_owned(),
                result: "failed",
                notes: Vec::new(),
                error: Some(e.to_string()),
            },
        }
    }
}

/// Human lines for apply results.
pub fn results_human(results: &[TargetResult]) -> String {
    let mut s = String::new();
    for r in results {
        match &r.error {
            Some(e) => s.push_str(&format!("{}: failed: {e}\n", r.target)),
            None => s.push_str(&format!("{}: {}\n", r.target, r.result)),
        }
        for n in &r.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
    }
    s
}

/// Print plans, refuse if any is refused, confirm, apply the changing ones, print results.
/// Shared by `apply` and `update`.
/// `trigger` names the command in the audit log (`apply`, `update`).
pub async fn execute(
    global: &Global,
    bound: &[Bound<'_>],
    plans: Vec<TargetPlan>,
    change: &ChangeArgs,
    trigger: &str,
    discovery: Option<&crate::discovery::Expanded>,
) -> anyhow::Result<Outcome> {
    let ChangeArgs {
        yes,
        dry_run,
        no_wait,
    } = *change;
    let human = global.output != OutputFormat::Json;
    if human {
        let found = discovery
            .map(crate::output::discovery_human)
            .unwrap_or_default();
        commands::print_human(&format!("{found}{}", crate::output::plans_human(&plans)))?;
    }
    let blocked = plans
        .iter()
        .filter(|p| matches!(p.status, Status::Refused | Status::Error))
        .count();
    let changing: Vec<&TargetPlan> = plans
        .iter()
        .filter(|p| p.status == Status::Changes)
        .collect();
    let finish = |results: Vec<TargetResult>| -> anyhow::Result<()> {
        if human {
            if !results.is_empty() {
                commands::print_human(&results_human(&results))?;
            }
        } else {
            let mut doc = serde_json::json!({ "plans": plans, "results": results });
            if let Some(d) = discovery {
                doc["discovery"] = serde_json::to_value(d)?;
            }
            commands::print_json(&doc)?;
        }
        Ok(())
    };
    if blocked > 0 {
        finish(Vec::new())?;
        return Err(commands::Reported(format!(
            "nothing was applied: {blocked} target{} refused or failed (see the plan)",
            if blocked == 1 { "" } else { "s" }
        ))
        .into());
    }
    // A template that could not list its targets: the fleet is not known, so nothing is
    // applied anywhere (as when one target cannot be read).
    let failed_templates: Vec<String> = discovery
        .into_iter()
        .flat_map(crate::discovery::Expanded::failures)
        .map(|f| format!("`{}`", f.template))
        .collect();
    if !failed_templates.is_empty() {
        finish(Vec::new())?;
        return Err(commands::Reported(format!(
            "nothing was applied: discovery failed for template{} {} (see above)",
            if failed_templates.len() == 1 { "" } else { "s" },
            failed_templates.join(", ")
        ))
        .into());
    }
    if changing.is_empty() {
        finish(Vec::new())?;
        tracing::info!("every target is in sync; nothing to do");
        return Ok(Outcome::Success);
    }
    if dry_run {
        finish(Vec::new())?;
        tracing::info!("dry run: nothing was applied");
        return Ok(Outcome::Success);
    }
    let audit = match commands::open_audit(global) {
        Ok(a) => a,
        Err(e) => {
            finish(Vec::new())?;
            return Err(e);
        }
    };
    let question = format!(
        "Apply these changes to {} target{}?",
        changing.len(),
        if changing.len() == 1 { "" } else { "s" }
    );
    // The plan is printed (as JSON too) before a refusal to go on without `--yes`.
    match commands::confirm(&question, yes, "--yes") {
        Ok(true) => {}
        Ok(false) => {
            finish(Vec::new())?;
            return Err(commands::Reported("cancelled: nothing was applied".into()).into());
        }
        Err(e) => {
            finish(Vec::new())?;
            return Err(e);
        }
    }
    let jobs = changing.iter().filter_map(|p| {
        bound
            .iter()
            .find(|b| b.target.name == p.target)
            .map(|b| async move {
                let (opts, progress) = commands::apply_options(&p.target, global, no_wait);
                let r = crate::plan::write(b, p, &opts).await;
                progress.finish();
                TargetResult::from_outcome(&p.target, r)
            })
    });
    let results = futures::future::join_all(jobs).await;
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    for r in &results {
        for n in &r.notes {
            tracing::warn!("{}: {n}", r.target);
        }
    }
    let audited = commands::audit_results(audit.as_ref(), trigger, &results, &|target| {
        let prefixes =
            |s: &rangekeeper_cidr::RangeSet| s.prefixes().iter().map(ToString::to_string).collect();
        plans
            .iter()
            .find(|p| p.target == target)
            .map(|p| (prefixes(&p.add), prefixes(&p.remove)))
            .unwrap_or_default()
    });
    finish(results)?;
    audited?;
    if failed > 0 {
        return Err(commands::Reported(format!(
            "{failed} target{} failed to apply",
            if failed == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(Outcome::Success)
}

pub async fn run(global: &Global, args: &ApplyArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "apply")?;
    let (mut decl, lockout) = commands::load(global).await?;
    let expanded = commands::discover(global, &mut decl).await;
    let bound = commands::bind(
        global,
        &decl,
        lockout.as_ref(),
        commands::select(&decl, &args.select.targets)?,
    )?;
    let plans = crate::plan::plan_all(&bound).await;
    let discovery = decl.discover.is_some().then_some(&expanded);
    execute(global, &bound, plans, &args.change, "apply", discovery).await
}
