//! rangekeeper: keep Kubernetes API-server authorized IP ranges exactly as declared.
//!
//! `main` only sets up logging and the runtime and maps outcomes to exit codes:
//! 0 success or in sync, 1 error or refusal, 2 changes pending (`plan --detailed-exitcode`).

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use rangekeeper::{cli, commands, declaration};

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

/// The one dispatch table. Commands that talk to targets run on a multi-threaded runtime,
/// started only for them; the others (`normalize` is a Unix filter whose whole-process time
/// matters) run without one, since starting runtime worker threads is a measurable part of a
/// short command.
fn dispatch(cli: &Cli) -> anyhow::Result<Outcome> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate(a) => commands::validate::run(g, a),
        Command::Normalize(a) => commands::normalize::run(g, a),
        Command::Providers(cli::ProvidersArgs { command: None, .. }) => commands::providers::run(g),
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
        Command::Man(a) => commands::man::run(Cli::command(), a),
        Command::Plan(a) => block_on(commands::plan::run(g, a)),
        Command::Apply(a) => block_on(commands::apply::run(g, a)),
        Command::Show(a) => block_on(commands::show::run(g, a)),
        Command::Manifests(a) => block_on(commands::manifests::run(g, a)),
        Command::Update(a) => block_on(commands::update::run(g, a)),
        Command::Disable(a) => block_on(commands::disable::run(g, a)),
        Command::Import(a) => block_on(commands::import::run(g, a)),
        Command::Reconcile(a) => block_on(commands::reconcile::run(g, a)),
        Command::Grant(a) => block_on(commands::lease::grant(g, a)),
        Command::Revoke(a) => block_on(commands::lease::revoke(g, a)),
        Command::Leases(a) => block_on(commands::lease::leases(g, a)),
        Command::Exec(a) => block_on(commands::lease::exec(g, a)),
        Command::ExternalIps(cli::ExternalIpsArgs { command }) => match command {
            cli::ExternalIpsCommand::Serve(a) => block_on(commands::external_ips::serve(g, a)),
            cli::ExternalIpsCommand::Policy(a) => block_on(commands::external_ips::policy(g, a)),
            cli::ExternalIpsCommand::Audit(a) => block_on(commands::external_ips::audit(g, a)),
        },
        Command::Providers(cli::ProvidersArgs {
            command: Some(cli::ProvidersCommand::Test(a)),
            ..
        }) => block_on(commands::providers::test(g, a)),
    }
}

/// Run one async command to completion on a multi-threaded runtime.
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<Outcome> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?
        .block_on(command)
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
    match dispatch(&cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::Failure) => ExitCode::FAILURE,
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        Err(e) => {
            match e.downcast_ref::<Reported>() {
                Some(r) => eprintln!("error: {r}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
