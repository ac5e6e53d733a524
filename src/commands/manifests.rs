//! `rangekeeper manifests`: the objects `apply` would send to each target that keeps
//! Kubernetes objects, as multi-document YAML (or one JSON `List`) on stdout, for a GitOps
//! repository. Nothing is written to any target; a target whose provider keeps objects
//! that are made per node reads the cluster's nodes.

use std::io::Write;

use anyhow::Context;

use crate::cli::{Global, ManifestsArgs, OutputFormat};
use crate::commands::{self, Outcome, Reported};

pub async fn run(global: &Global, args: &ManifestsArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "manifests")?;
    let (decl, lockout) = commands::load(global).await?;
    let bound = commands::bind(
        global,
        &decl,
        lockout.as_ref(),
        commands::select(&decl, &args.select.targets)?,
    )?;
    let named = !args.select.targets.is_empty();
    let mut errors = Vec::new();
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    let rendered = futures::future::join_all(bound.iter().map(|b| async move {
        // The set apply would send: the guards' effective set (a fit-to-limit cover included).
        let checked = crate::plan::check(b, &b.target.desired);
        if !checked.errors.is_empty() {
            return Err(checked.errors.join("; "));
        }
        b.provider
            .manifests(&checked.effective)
            .await
            .map_err(|e| e.to_string())
    }))
    .await;
    for (b, r) in bound.iter().zip(rendered) {
        let name = &b.target.name;
        match r {
            Ok(Some(objs)) => objects.extend(objs),
            Ok(None) if named => errors.push(format!(
                "target `{name}`: provider `{}` keeps no Kubernetes objects, so it has no manifests to print",
                b.target.provider
            )),
            Ok(None) => skipped.push(name.clone()),
            Err(e) => errors.push(format!("target `{name}`: {e}")),
        }
    }
    if !errors.is_empty() {
        let mut err = anstream::stderr().lock();
        for e in &errors {
            let _ = writeln!(err, "error: {e}");
        }
        return Err(Reported(format!(
            "no manifests printed: {} target(s) failed",
            errors.len()
        ))
        .into());
    }
    if !skipped.is_empty() {
        tracing::info!(
            "left out (their providers keep no Kubernetes objects): {}",
            skipped.join(", ")
        );
    }
    if objects.is_empty() {
        return Err(Reported(
            "no selected target keeps Kubernetes objects, so there are no manifests to print"
                .into(),
        )
        .into());
    }
    match global.output {
        OutputFormat::Json => commands::print_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": objects,
        }))?,
        _ => {
            let mut out = String::new();
            for o in &objects {
                out.push_str("---\n");
                out.push_str(
                    &serde_saphyr::to_string(o).context("cannot write a manifest as YAML")?,
                );
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(out.as_bytes())
                .context("cannot write to stdout")?;
        }
    }
    Ok(Outcome::Success)
}
