//! rangekeeper: keep Kubernetes API-server authorized IP ranges exactly as declared.
//!
//! `main` only sets up logging and the runtime and maps outcomes to exit codes:
//! 0 success or in sync, 1 error or refusal, 2 changes pending (`plan --detailed-exitcode`).

mod cli;
mod commands;
mod declaration;
mod guard;
mod import;
mod output;
mod plan;
mod reconcile;
mod registry;
mod sources;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, LogFormat};
use commands::{Outcome, Reported};

fn init_logging(global: &cli::Global) {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            0 => "warn,rangekeeper=info,rangekeeper::progress=info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RANGEKEEPER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder
            .without_time()
            .with_ansi(
                anstream::AutoStream::choice(&std::io::stderr()) != anstream::ColorChoice::Never,
            )
            .init(),
    }
}

/// Commands that need no async runtime run without one: `normalize` is a Unix filter whose
/// whole-process time matters, and starting runtime worker threads is a measurable part of it.
fn run_sync(cli: &Cli) -> Option<anyhow::Result<Outcome>> {
    let g = &cli.global;
    Some(match &cli.command {
        Command::Validate(a) => commands::validate::run(g, a),
        Command::Normalize(a) => commands::normalize::run(g, a),
        Command::Providers(_) => commands::providers::run(g),
        Command::Sources(a) => commands::sources::run(g, a),
        Command::Schema => {
            commands::print_json(&declaration::schema::schema()).map(|()| Outcome::Success)
        }
        Command::Completions(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "rangekeeper",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Success)
        }
        _ => return None,
    })
}

/// Commands that talk to targets, on a multi-threaded runtime.
async fn run_async(cli: &Cli) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Plan(a) => commands::plan::run(g, a).await,
        Command::Apply(a) => commands::apply::run(g, a).await,
        Command::Show(a) => commands::show::run(g, a).await,
        Command::Update(a) => commands::update::run(g, a).await,
        Command::Disable(a) => commands::disable::run(g, a).await,
        Command::Import(a) => commands::import::run(g, a).await,
        Command::Reconcile(a) => commands::reconcile::run(g, a).await,
        Command::Validate(_)
        | Command::Normalize(_)
        | Command::Providers(_)
        | Command::Sources(_)
        | Command::Schema
        | Command::Completions(_) => run_sync(cli).unwrap_or(Ok(Outcome::Failure)),
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1 (Terraform's convention): 2 means only "changes pending" under
    // `plan --detailed-exitcode`, so a script never reads a typo as pending changes.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli.resolve(),
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli.global);
    let result = match run_sync(&cli) {
        Some(result) => result,
        None => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run_async(&cli)),
            Err(e) => Err(anyhow::anyhow!("cannot start the async runtime: {e}")),
        },
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        Err(e) => {
            match e.downcast_ref::<Reported>() {
                Some(r) => eprintln!("error: {r}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
