//! `rangekeeper reconcile`: one pass over every target (`--once`, for cron) or a loop that
//! keeps them converged, with metrics, health endpoints and an audit log.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;

use crate::cli::{Global, OutputFormat, ReconcileArgs};
use crate::commands::{self, Outcome, Reported};
use crate::declaration::LoadOptions;
use crate::reconcile::{self, Settings, Summary, metrics::Metrics};
use crate::registry;

/// The state directory: `--state-dir`, else systemd's `$STATE_DIRECTORY`, else
/// `$XDG_STATE_HOME/rangekeeper`, else `~/.local/state/rangekeeper`.
pub fn state_dir(global: &Global) -> anyhow::Result<PathBuf> {
    if let Some(d) = &global.state_dir {
        return Ok(d.clone());
    }
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        let s = d.to_string_lossy().into_owned();
        return Ok(PathBuf::from(s.split(':').next().unwrap_or(&s)));
    }
    if let Some(d) = env("XDG_STATE_HOME") {
        return Ok(d.join("rangekeeper"));
    }
    if let Some(h) = env("HOME") {
        return Ok(h.join(".local/state/rangekeeper"));
    }
    bail!("no state directory: pass --state-dir (or set RANGEKEEPER_STATE_DIR)")
}

/// Resolves on SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("signal received: no new reconciles start");
}

fn summary_human(s: &[Summary]) -> String {
    let mut out = String::new();
    for r in s {
        match r.result {
            "applied" | "pending" => {
                out.push_str(&format!(
                    "{}: {} ({}): +{} -{}\n",
                    r.target,
                    r.result,
                    r.trigger.unwrap_or("initial"),
                    r.added.len(),
                    r.removed.len()
                ));
                for c in &r.config {
                    out.push_str(&format!("  setting: {c}\n"));
                }
            }
            "in-sync" => out.push_str(&format!("{}: in sync\n", r.target)),
            _ => out.push_str(&format!(
                "{}: {}: {}\n",
                r.target,
                r.result,
                r.error.as_deref().unwrap_or("")
            )),
        }
        if let Some(e) = &r.audit_error {
            out.push_str(&format!("  error: {e}\n"));
        }
        for w in &r.warnings {
            out.push_str(&format!("  warning: {w}\n"));
        }
        for n in &r.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
    }
    out
}

/// The loop's interval when neither `--interval` nor a stand-alone config file gives one.
const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(global: &Global, args: &ReconcileArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "reconcile")?;
    #[cfg(not(feature = "kubernetes"))]
    if args.leader.leader_elect {
        return Err(Reported(
            "--leader-elect needs the `kubernetes` feature (the Lease is a Kubernetes object), and this rangekeeper was built without it; build it with `--features kubernetes` (on by default)".into(),
        )
        .into());
    }
    #[cfg(feature = "kubernetes")]
    let leader = if args.leader.leader_elect {
        Some(
            crate::leader::Settings::from_flags(&args.leader)
                .map_err(|e| Reported(format!("{e:#}")))?,
        )
    } else {
        None
    };
    let standalone = registry::standalone(&args.standalone).map_err(Reported)?;
    let settings = Settings {
        file: standalone
            .as_ref()
            .map_or_else(|| global.file.clone(), |s| s.file.clone()),
        standalone,
        load: LoadOptions {
            strict: global.strict,
            ..LoadOptions::default()
        },
        live: commands::live_options(global),
        state_dir: state_dir(global)?,
        targets: args.select.targets.clone(),
        once: args.once,
        interval: args.interval.unwrap_or(DEFAULT_INTERVAL),
        interval_given: args.interval.is_some(),
        max_backoff: args.max_backoff,
        concurrency: usize::from(args.concurrency),
        concurrency_per_scope: usize::from(args.concurrency_per_scope),
        grace: args.grace,
        watch_interval: args.watch_interval,
        retry: global.retry,
        build: crate::registry::build,
        scope_of: crate::registry::quota_scope,
        fence: Arc::new(reconcile::fence::Unfenced),
    };
    let metrics = Arc::new(Metrics::default());
    // Leader election first: a replica that cannot reach the Lease at all (no kubeconfig,
    // forbidden) fails at start instead of standing by for ever.
    #[cfg(feature = "kubernetes")]
    let (settings, election) = match leader {
        Some(l) => {
            let running = crate::leader::start(l, metrics.clone()).await?;
            let fence = running.fence.clone();
            (Settings { fence, ..settings }, Some(running))
        }
        None => (settings, None),
    };
    let server = match args.metrics_addr {
        Some(addr) => Some(reconcile::server::start(addr, metrics.clone()).await?),
        None => None,
    };
    let outcome = reconcile::run(settings, metrics, shutdown_signal()).await;
    // The loop has written its last: give the lease up so a follower takes over now.
    #[cfg(feature = "kubernetes")]
    if let Some(e) = election {
        e.stop().await;
    }
    if let Some(s) = server {
        s.abort();
    }
    let outcome = outcome?;
    let discovers = !outcome.discovery.0.is_empty();
    if args.once {
        match global.output {
            OutputFormat::Json => {
                let mut doc = serde_json::json!({ "results": outcome.summaries });
                if discovers {
                    doc["discovery"] = serde_json::to_value(&outcome.discovery)?;
                }
                commands::print_json(&doc)?;
            }
            _ => commands::print_human(&format!(
                "{}{}",
                crate::output::discovery_human(&outcome.discovery),
                summary_human(&outcome.summaries)
            ))?,
        }
    }
    if outcome.aborted {
        return Err(Reported("stopped before in-flight changes finished".into()).into());
    }
    let failed: Vec<&str> = outcome
        .summaries
        .iter()
        .filter(|s| matches!(s.result, "failed" | "refused"))
        .map(|s| s.target.as_str())
        .collect();
    let unrecorded: Vec<&str> = outcome
        .summaries
        .iter()
        .filter(|s| s.audit_error.is_some())
        .map(|s| s.target.as_str())
        .collect();
    if args.once && !unrecorded.is_empty() {
        return Err(Reported(format!(
            "the audit record of the change to {} could not be written (the change{} made; see above)",
            unrecorded.join(", "),
            if unrecorded.len() == 1 { " was" } else { "s were" }
        ))
        .into());
    }
    let failed_templates: Vec<String> = outcome
        .discovery
        .failures()
        .map(|f| format!("`{}`", f.template))
        .collect();
    if args.once && !failed_templates.is_empty() {
        return Err(Reported(format!(
            "discovery failed for template{} {}{}",
            if failed_templates.len() == 1 { "" } else { "s" },
            failed_templates.join(", "),
            if failed.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} target(s) not converged: {}",
                    failed.len(),
                    failed.join(", ")
                )
            }
        ))
        .into());
    }
    if args.once && !failed.is_empty() {
        return Err(Reported(format!(
            "{} target{} not converged: {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            failed.join(", ")
        ))
        .into());
    }
    Ok(Outcome::Success)
}
