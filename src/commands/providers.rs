//! `rangekeeper providers`: the built-in providers and the plugins on PATH, with what they
//! accept; `rangekeeper providers test`: the conformance suite against any of them.

use std::time::Duration;

use anyhow::{Context, bail};
use rangekeeper_provider::conformance::{Check, Outcome, Suite};
use rangekeeper_provider::{Provider, RangeSet, TargetConfig};

use crate::cli::{Global, OutputFormat, ProvidersTestArgs};
use crate::commands::{self, Outcome as Exit};
use crate::output::ProviderRow;
use crate::registry;

/// How long `rangekeeper providers` waits for a plugin's capabilities.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(global: &Global) -> anyhow::Result<Exit> {
    commands::reject_github(global, "providers")?;
    let builtin = registry::names();
    let mut rows: Vec<ProviderRow> = registry::entries()
        .iter()
        .map(|e| ProviderRow {
            capabilities: Some((e.capabilities)()),
            provider: e.name.to_owned(),
            plugin: None,
            error: None,
        })
        .collect();
    for (name, exe) in rangekeeper_provider::protocol::discover_plugins() {
        if builtin.contains(&name.as_str()) {
            continue;
        }
        let caps = rangekeeper_provider_exec::general_capabilities(&name, &exe, LIST_TIMEOUT);
        rows.push(ProviderRow {
            provider: name,
            plugin: Some(exe.display().to_string()),
            error: caps.as_ref().err().map(ToString::to_string),
            capabilities: caps.ok(),
        });
    }
    match global.output {
        OutputFormat::Json => commands::print_json(&rows)?,
        _ => commands::print_human(&crate::output::providers_human(&rows))?,
    }
    Ok(Exit::Success)
}

/// One line of the `providers test` report.
#[derive(Debug, serde::Serialize)]
struct Row {
    check: &'static str,
    result: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    provider: String,
    passed: bool,
    checks: Vec<Row>,
}

/// Run the conformance suite against one provider: on a declared target (`--target`), or on
/// a scratch target in a temporary directory.
pub async fn test(global: &Global, args: &ProvidersTestArgs) -> anyhow::Result<Exit> {
    commands::reject_github(global, "providers test")?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let decl = match (&args.target, &args.missing_target) {
        (None, None) => None,
        _ => Some(commands::load_offline(global)?),
    };
    let config = |name: &str| -> anyhow::Result<TargetConfig> {
        let Some(decl) = &decl else {
            return Ok(TargetConfig {
                name: "conformance".into(),
                base_dir: scratch.path().to_path_buf(),
                fields: serde_json::Map::new(),
            });
        };
        let t = decl
            .targets
            .get(name)
            .with_context(|| format!("no target `{name}` in {}", decl.file))?;
        if t.provider != args.name {
            bail!(
                "target `{name}` in {} uses provider `{}`, not `{}`",
                decl.file,
                t.provider,
                args.name
            );
        }
        Ok(t.config.clone())
    };
    let build = |cfg: &TargetConfig| -> anyhow::Result<Box<dyn Provider>> {
        registry::build(&args.name, cfg)
            .with_context(|| format!("cannot build provider `{}`", args.name))
    };
    let provider = build(&config(args.target.as_deref().unwrap_or_default())?)?;
    let missing = match &args.missing_target {
        Some(m) => Some(build(&config(m)?)?),
        None => None,
    };
    let caps = provider.capabilities();
    let (a, b) = sample_sets(caps.ipv4, caps.ipv6);
    let mut suite = Suite::new(provider.as_ref(), &a, &b);
    if let Some(m) = &missing {
        suite = suite.with_missing_target(m.as_ref());
    }
    let checks = suite.report().await;
    let report = Report {
        provider: args.name.clone(),
        passed: !checks.iter().any(|c| matches!(c.outcome, Outcome::Fail(_))),
        checks: checks.into_iter().map(row).collect(),
    };
    match global.output {
        OutputFormat::Json => commands::print_json(&report)?,
        _ => commands::print_human(&report_human(&report))?,
    }
    Ok(if report.passed {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Two distinct globally routable sets in the families the provider holds.
fn sample_sets(ipv4: bool, ipv6: bool) -> (RangeSet, RangeSet) {
    let parse = |items: &[&str]| {
        RangeSet::from_nets(
            items
                .iter()
                .filter(|s| if s.contains(':') { ipv6 } else { ipv4 })
                .filter_map(|s| rangekeeper_cidr::parse(s).ok().map(|p| p.net)),
        )
    };
    (
        parse(&["23.1.2.0/24", "2a00:1450:4001::/48"]),
        parse(&["23.1.8.0/23", "23.1.20.7/32", "2a00:1450:4002::/48"]),
    )
}

fn row(c: Check) -> Row {
    let (result, detail) = match c.outcome {
        Outcome::Pass => ("pass", String::new()),
        Outcome::Fail(m) => ("FAIL", m),
        Outcome::Skip(m) => ("skip", m),
    };
    Row {
        check: c.name,
        result,
        detail,
    }
}

fn report_human(r: &Report) -> String {
    let width = r
        .checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let mut s = format!("{:<width$}  RESULT  DETAIL\n", "CHECK");
    for c in &r.checks {
        s.push_str(&format!(
            "{:<width$}  {:<6}  {}",
            c.check, c.result, c.detail
        ));
        s = s.trim_end().to_owned();
        s.push('\n');
    }
    let count = |res: &str| r.checks.iter().filter(|c| c.result == res).count();
    s.push_str(&format!(
        "provider `{}`: {} passed, {} failed, {} skipped\n",
        r.provider,
        count("pass"),
        count("FAIL"),
        count("skip")
    ));
    s
}
