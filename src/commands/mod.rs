//! One module per subcommand, plus what they share: loading the declaration, selecting
//! targets, building providers, planning, confirming, and progress on stderr.

pub mod apply;
pub mod disable;
pub mod external_ips;
pub mod import;
pub mod lease;
pub mod man;
pub mod manifests;
pub mod normalize;
pub mod plan;
pub mod providers;
pub mod reconcile;
pub mod show;
pub mod sources;
pub mod update;
pub mod validate;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};

use rangekeeper_provider::{ApplyOptions, Progress, Provider};

use crate::cli::{Global, OutputFormat};
use crate::declaration::{Declaration, LoadError, LoadOptions, Target, did_you_mean};
use crate::guard::Lockout;
use crate::plan::Bound;
use crate::reconcile::audit::{self, AuditLog};
use crate::registry;

/// How a command ended, for the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 0: done, or in sync.
    Success,
    /// 2: changes pending (`plan --detailed-exitcode`).
    Changes,
    /// 1: something failed or was refused; the reason was printed.
    Failure,
    /// This code (`exec`: its command's).
    Exit(u8),
}

pub use crate::output::Reported;

/// Load the declaration, printing every diagnostic to stderr on failure and warnings always.
/// Live sources (`url`, `dns`, `self` sets) are fetched (fresh cached values in
/// `--state-dir` are used), and the egress IP is determined for the lockout guard.
pub async fn load(global: &Global) -> anyhow::Result<(Declaration, Option<Lockout>)> {
    load_with(global, load_settings(global).1).await
}

/// [`load`] with these options (`external-ips` reads a file for its sets alone).
pub async fn load_with(
    global: &Global,
    opts: LoadOptions,
) -> anyhow::Result<(Declaration, Option<Lockout>)> {
    let catalog = registry::catalog();
    let loaded = match crate::declaration::DeclText::read(&global.file) {
        Ok(text) => crate::sources::load_live(&text, opts, &catalog, &live_options(global)).await,
        Err(e) => Err(e),
    };
    let (decl, lockout) = match loaded {
        Ok((decl, lockout)) => (Ok(decl), lockout),
        Err(e) => (Err(e), None),
    };
    Ok((report_loaded(global, decl)?, lockout))
}

/// Load the declaration without fetching live sources, for commands that do not need the
/// desired sets (`show`, `disable`): an emergency `disable` never waits on a download.
pub fn load_offline(global: &Global) -> anyhow::Result<Declaration> {
    let (catalog, opts) = load_settings(global);
    let loaded = crate::declaration::DeclText::read(&global.file)
        .and_then(|text| text.resolve(opts, &catalog, &std::collections::HashMap::new()));
    report_loaded(global, loaded)
}

fn load_settings(global: &Global) -> (crate::declaration::Catalog, LoadOptions) {
    (
        registry::catalog(),
        LoadOptions {
            strict: global.strict,
            ..LoadOptions::default()
        },
    )
}

/// Warnings of a loaded declaration go to the log; a declaration that did not load prints
/// every diagnostic to stderr and is one reported error.
fn report_loaded(
    global: &Global,
    loaded: Result<Declaration, LoadError>,
) -> anyhow::Result<Declaration> {
    match loaded {
        Ok(decl) => {
            for w in &decl.warnings {
                tracing::warn!("{w}");
            }
            Ok(decl)
        }
        Err(LoadError(diags)) => {
            let n = diags
                .iter()
                .filter(|d| d.severity == crate::declaration::Severity::Error)
                .count();
            let mut err = anstream::stderr().lock();
            for d in &diags {
                let _ = writeln!(err, "{}", crate::output::diagnostic_human(d));
            }
            Err(Reported(format!(
                "{} is not valid ({n} error{})",
                global.file.display(),
                if n == 1 { "" } else { "s" }
            ))
            .into())
        }
    }
}

/// The live-source settings of the global flags.
pub fn live_options(global: &Global) -> crate::sources::LiveOptions {
    crate::sources::LiveOptions {
        state_dir: global.state_dir.clone(),
        self_echo: global.self_echo.clone(),
        allow_lockout: global.allow_lockout,
    }
}

/// Join the targets the declaration's `discover:` templates list to it (every template
/// listed once, concurrently, under the command's retry policy), logging the explicit
/// targets that override discovered ones. A template whose listing failed contributes
/// nothing and is named in what this returns.
pub async fn discover(global: &Global, decl: &mut Declaration) -> crate::discovery::Expanded {
    if decl.discover.is_none() {
        return crate::discovery::Expanded::default();
    }
    let fleet = crate::discovery::discover_all(decl, global.retry).await;
    let expanded = fleet.expand(decl);
    for t in &expanded.0 {
        for n in &t.overridden {
            tracing::info!(
                "`{n}`, discovered by template `{}`, is declared in `targets:`; the declared target is used",
                t.template
            );
        }
        for n in &t.duplicates {
            tracing::warn!(
                "`{n}` is listed by template `{}` too; the template written first is used",
                t.template
            );
        }
    }
    expanded
}

/// The targets named with `--target` (all when none), in declaration order.
pub fn select<'a>(decl: &'a Declaration, names: &[String]) -> anyhow::Result<Vec<&'a Target>> {
    for n in names {
        if !decl.targets.contains_key(n) {
            let hint = did_you_mean(n, decl.targets.keys().map(String::as_str));
            bail!(
                "no target `{n}` in {}{hint}; targets: {}",
                decl.file,
                decl.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(decl
        .targets
        .values()
        .filter(|t| names.is_empty() || names.contains(&t.name))
        .collect())
}

/// Build the provider of every selected target, its calls under the retry policy of the
/// command's flags; config errors are located and all reported.
pub fn bind<'a>(
    global: &Global,
    decl: &Declaration,
    lockout: Option<&Lockout>,
    targets: Vec<&'a Target>,
) -> anyhow::Result<Vec<Bound<'a>>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (t, built) in build_all(&targets) {
        match built {
            Ok(provider) => out.push(Bound {
                target: t,
                provider: crate::retry::wrap(provider, &t.name, global.retry),
                lockout: lockout.cloned(),
            }),
            Err(e) => errors.push(t.config_error(&decl.file, e.to_string())),
        }
    }
    if !errors.is_empty() {
        let mut err = anstream::stderr().lock();
        for d in &errors {
            let _ = writeln!(err, "{}", crate::output::diagnostic_human(d));
        }
        return Err(Reported(format!("{} is not valid", decl.file)).into());
    }
    Ok(out)
}

/// A target's provider, or why it could not be built.
type Built = Result<Box<dyn Provider>, rangekeeper_provider::ProviderError>;

/// Build every target's provider, a few at a time on their own threads: a plugin's start
/// (process, hello, capabilities) then overlaps with the others' instead of adding up.
fn build_all<'a>(targets: &[&'a Target]) -> Vec<(&'a Target, Built)> {
    const AT_ONCE: usize = 16;
    let mut out = Vec::with_capacity(targets.len());
    for chunk in targets.chunks(AT_ONCE) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|t| (*t, s.spawn(|| registry::build(&t.provider, &t.config))))
                .collect();
            for (t, h) in handles {
                let built = h.join().unwrap_or_else(|_| {
                    Err(rangekeeper_provider::ProviderError::Other(format!(
                        "building the provider of target `{}` panicked",
                        t.name
                    )))
                });
                out.push((t, built));
            }
        });
    }
    out
}

/// Print a JSON document on stdout.
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v).context("cannot write to stdout")?;
    writeln!(out).context("cannot write to stdout")?;
    Ok(())
}

/// Print human text on stdout (colors stripped when not a terminal or NO_COLOR is set).
pub fn print_human(text: &str) -> anyhow::Result<()> {
    let mut out = anstream::stdout().lock();
    out.write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    out.flush().context("cannot write to stdout")?;
    Ok(())
}

/// Ask for confirmation on the terminal, or require `--yes` when there is none.
pub fn confirm(question: &str, yes: bool, flag_hint: &str) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!("not running on a terminal, so nothing was changed: pass {flag_hint} to confirm");
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Progress on stderr: a spinner on a terminal, log lines otherwise.
pub struct StderrProgress {
    target: String,
    bar: Option<indicatif::ProgressBar>,
}

impl StderrProgress {
    pub fn new(target: &str, quiet: bool) -> Arc<StderrProgress> {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar.set_prefix(target.to_owned());
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar
        });
        Arc::new(StderrProgress {
            target: target.to_owned(),
            bar,
        })
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for StderrProgress {
    fn message(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(msg.to_owned()),
            None => tracing::info!(target: "rangekeeper::progress", "{}: {msg}", self.target),
        }
    }
}

/// Apply options for one target with a progress sink.
pub fn apply_options(
    target: &str,
    global: &Global,
    no_wait: bool,
) -> (ApplyOptions, Arc<StderrProgress>) {
    let progress = StderrProgress::new(target, global.quiet);
    (
        ApplyOptions {
            wait: !no_wait,
            progress: progress.clone(),
        },
        progress,
    )
}

/// The audit log in `--state-dir`, when one is set. Commands that change targets open it
/// before they change anything, so a log that cannot even be opened stops them first.
pub fn open_audit(global: &Global) -> anyhow::Result<Option<AuditLog>> {
    let Some(dir) = &global.state_dir else {
        return Ok(None);
    };
    AuditLog::open(dir).map(Some).map_err(|e| {
        Reported(format!(
            "cannot open the audit log in {}: {e}; nothing was changed",
            dir.display()
        ))
        .into()
    })
}

/// The prefixes a change added and removed, as the audit log records them.
pub type AddedRemoved = (Vec<String>, Vec<String>);

/// Write one audit record per target a command changed or tried to change (`result` of
/// `applied`, `pending`, `disabled` or `failed`; `unchanged` targets are not recorded). A
/// record that cannot be written is an error saying what was done and that its record is
/// lost (the change itself was made).
pub fn audit_results(
    log: Option<&AuditLog>,
    trigger: &str,
    results: &[apply::TargetResult],
    diff: &dyn Fn(&str) -> AddedRemoved,
) -> anyhow::Result<()> {
    let Some(log) = log else { return Ok(()) };
    let time = audit::rfc3339(std::time::SystemTime::now());
    let mut lost = Vec::new();
    for r in results.iter().filter(|r| r.result != "unchanged") {
        let (added, removed) = diff(&r.target);
        let record = audit::Record {
            time: time.clone(),
            target: &r.target,
            added,
            removed,
            trigger,
            config: Vec::new(),
            result: r.result,
            error: r.error.clone(),
            lease: None,
            writer: None,
        };
        if let Err(e) = log.record(&record) {
            let what = audit::describe(&record);
            tracing::error!("{what} was done, but its audit record is lost: {e}");
            lost.push(format!("{what} ({e})"));
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(Reported(format!(
        "the change{} made, but {} audit record{} lost: {}",
        if lost.len() == 1 { " was" } else { "s were" },
        if lost.len() == 1 { "its" } else { "their" },
        if lost.len() == 1 { " is" } else { "s are" },
        lost.join("; ")
    ))
    .into())
}

/// `--output github` is only for `validate` and `--output markdown` only for `plan`: every
/// other command refuses both (it would otherwise print its human output in their place).
pub fn reject_github(global: &Global, command: &str) -> anyhow::Result<()> {
    let (format, owner) = match global.output {
        OutputFormat::Github => ("github", "validate"),
        OutputFormat::Markdown => ("markdown", "plan"),
        OutputFormat::Human | OutputFormat::Json => return Ok(()),
    };
    Err(anyhow!(
        "`--output {format}` is only for `{owner}`; use human or json with `{command}`"
    ))
}
