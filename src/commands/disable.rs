//! `rangekeeper disable`: lift one target's restriction, only when explicitly confirmed.

use anyhow::Context as _;
use rangekeeper_provider::Restriction;

use crate::cli::{DisableArgs, Global, OutputFormat};
use crate::commands::apply::{TargetResult, results_human};
use crate::commands::{self, Outcome};

pub async fn run(global: &Global, args: &DisableArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "disable")?;
    let mut decl = commands::load_offline(global)?;
    // A target not declared may be a discovered one: only then are the templates listed
    // (an emergency `disable` of a declared target never waits on a listing).
    if !decl.targets.contains_key(&args.target) && decl.discover.is_some() {
        let expanded = commands::discover(global, &mut decl).await;
        if !decl.targets.contains_key(&args.target) {
            if let Some(p) = expanded.pending().find(|p| p.target == args.target) {
                anyhow::bail!(
                    "`{}` (discovered by template `{}`) is pending: {}; it cannot be disabled until it is ready",
                    p.target,
                    p.template,
                    p.reason
                );
            }
            let failed: Vec<String> = expanded
                .failures()
                .map(|f| format!("template `{}`: {}", f.template, f.error))
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "no target `{}` is declared, and discovery failed, so it may be one a template would list ({})",
                    args.target,
                    failed.join("; ")
                );
            }
        }
    }
    let bound = commands::bind(
        global,
        &decl,
        None,
        commands::select(&decl, std::slice::from_ref(&args.target))?,
    )?;
    let b = bound.first().context("no target selected")?;
    let state = b
        .provider
        .current()
        .await
        .with_context(|| format!("cannot read the current ranges of `{}`", args.target))?;
    let mut audit = None;
    let result = if state.restriction == Restriction::Unrestricted {
        tracing::info!("`{}` is already unrestricted; nothing to do", args.target);
        TargetResult {
            target: args.target.clone(),
            result: "unchanged",
            notes: Vec::new(),
            error: None,
        }
    } else {
        let n = state.restriction.ranges().map_or(0, |s| s.len());
        let question = format!(
            "Lift the restriction on `{}` ({} provider, {} now)? Anyone will be able to connect.",
            args.target,
            b.target.provider,
            crate::output::count(n, "range")
        );
        if !commands::confirm(&question, args.yes, "--yes")? {
            return Err(commands::Reported("cancelled: nothing was changed".into()).into());
        }
        audit = commands::open_audit(global)?;
        let (opts, progress) = commands::apply_options(&args.target, global, args.no_wait);
        let r = b.provider.disable(&opts).await;
        progress.finish();
        let mut result = TargetResult::from_outcome(&args.target, r);
        if result.result == "applied" {
            result.result = "disabled";
        }
        result
    };
    let failed = result.error.is_some();
    // Everything the target held is removed.
    let removed: Vec<String> = state
        .restriction
        .ranges()
        .map(|s| s.prefixes().iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    let audited = commands::audit_results(
        audit.as_ref(),
        "disable",
        std::slice::from_ref(&result),
        &|_| (Vec::new(), removed.clone()),
    );
    match global.output {
        OutputFormat::Json => commands::print_json(&serde_json::json!({ "results": [result] }))?,
        _ => commands::print_human(&results_human(std::slice::from_ref(&result)))?,
    }
    audited?;
    if failed {
        return Err(commands::Reported(format!("`{}` could not be disabled", args.target)).into());
    }
    Ok(Outcome::Success)
}
