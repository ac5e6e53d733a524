//! Command-line types (clap derive): one struct per subcommand. Resolved settings are built
//! from these in `commands`, never passed around raw.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keep Kubernetes API-server authorized IP ranges exactly as declared.
#[derive(Debug, Parser)]
#[command(name = "rangekeeper", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The declaration file (YAML, or JSON by extension)
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        env = "RANGEKEEPER_FILE",
        default_value = "rangekeeper.yaml"
    )]
    pub file: PathBuf,
    /// Output format of data on stdout
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Treat host bits set in a CIDR as an error instead of normalizing with a warning
    #[arg(long, global = true)]
    pub strict: bool,
    /// More log output on stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where live-source values are cached (and, for `reconcile`, the audit log is kept)
    #[arg(long, global = true, env = "RANGEKEEPER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// An echo endpoint that answers with this machine's egress IP (repeatable; all must
    /// agree). Enables the lockout guard; also used by sets with `self: true`
    #[arg(long = "self-echo", global = true, value_name = "URL", value_parser = parse_echo_url)]
    pub self_echo: Vec<reqwest::Url>,
    /// Apply even when a change would leave this machine's egress IP outside a target it
    /// can reach now
    #[arg(long, global = true)]
    pub allow_lockout: bool,
}

fn parse_echo_url(s: &str) -> Result<reqwest::Url, String> {
    crate::sources::spec::parse_url(s)
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::sources::spec::parse_duration(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and text for people
    Human,
    /// One JSON document
    Json,
    /// GitHub Actions annotations (`validate` only)
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the declaration file and every target's desired ranges, without any network call
    Validate(ValidateArgs),
    /// Read CIDRs (arguments, files or stdin) and print the canonical aggregate
    Normalize(NormalizeArgs),
    /// Show what `apply` would change on each target
    Plan(PlanArgs),
    /// Make each target hold exactly its declared ranges
    Apply(ApplyArgs),
    /// Show the ranges each target holds now
    Show(ShowArgs),
    /// Change one target's current ranges by hand (add, remove or set)
    Update(UpdateArgs),
    /// Lift a target's restriction (anyone may connect afterwards)
    Disable(DisableArgs),
    /// Keep every target converged: one pass (`--once`, for cron) or a loop that corrects drift
    Reconcile(ReconcileArgs),
    /// Manage live range sources (`url`, `dns`, `self` sets)
    Sources(SourcesArgs),
    /// List the built-in providers and what they accept
    Providers,
    /// Print the JSON Schema of the declaration file
    Schema,
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// One prefix per line
    Plain,
    /// A JSON array of prefixes
    Json,
}

#[derive(Debug, Args)]
pub struct NormalizeArgs {
    /// CIDRs to normalize; with none, read stdin (or --input files)
    pub cidrs: Vec<String>,
    /// Read CIDRs from these files ("-" is stdin), one per line, `#` comments
    #[arg(short, long = "input")]
    pub inputs: Vec<PathBuf>,
    /// Output format of the list
    #[arg(long, value_enum, default_value_t = ListFormat::Plain)]
    pub format: ListFormat,
    /// At most this many prefixes: print the optimal cover and its cost
    #[arg(long, value_name = "K")]
    pub max_ranges: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TargetSelect {
    /// Only these targets (repeatable; default: all)
    #[arg(short, long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    /// Exit 0 when in sync, 2 when changes are pending, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// How a change is confirmed and waited for (`apply`, `update`).
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Apply without asking
    #[arg(short, long)]
    pub yes: bool,
    /// Only show the plan
    #[arg(long)]
    pub dry_run: bool,
    /// Return once a target accepted the change, without waiting for it to finish
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub select: TargetSelect,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The target to change
    #[arg(short, long = "target", value_name = "NAME")]
    pub target: String,
    /// Add these CIDRs or sets to what the target holds now
    #[arg(long, value_name = "CIDR|SET", conflicts_with = "set")]
    pub add: Vec<String>,
    /// Remove these CIDRs or sets from what the target holds now
    #[arg(long, value_name = "CIDR|SET", conflicts_with = "set")]
    pub remove: Vec<String>,
    /// Replace what the target holds with exactly these CIDRs or sets
    #[arg(long, value_name = "CIDR|SET")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The target whose restriction to lift
    #[arg(short, long = "target", value_name = "NAME")]
    pub target: String,
    /// Confirm: anyone will be able to reach the target
    #[arg(short, long)]
    pub yes: bool,
    /// Return once the target accepted the change, without waiting for it to finish
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    /// One pass over every target, then exit: 0 when all converged, 1 naming the failed ones
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Time between passes over a converged target (loop mode), e.g. 60s, 5m [default: 60s,
    /// or the checkInterval of --kube-restrict-ip]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub interval: Option<std::time::Duration>,
    /// Enforce a kube-restrict-ip config file (restrictedPorts, allowedNetworks,
    /// checkInterval) with the hostfw provider instead of a declaration file
    #[arg(long, value_name = "FILE")]
    pub kube_restrict_ip: Option<std::path::PathBuf>,
    /// Longest wait before retrying a failed target (failures back off exponentially)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "5m")]
    pub max_backoff: std::time::Duration,
    /// At most this many targets are read or applied at the same time
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Serve Prometheus metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// On SIGTERM/SIGINT, how long in-flight applies may take to finish
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "30s")]
    pub grace: std::time::Duration,
    /// How often the declaration file is checked for changes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "2s")]
    pub watch_interval: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct SourcesArgs {
    #[command(subcommand)]
    pub command: SourcesCommand,
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Accept the value held back for a source (it grew or shrank more than tenfold) as its
    /// new last good value, in the state directory
    Accept {
        /// The set whose held-back value to accept
        #[arg(value_name = "SET")]
        set: String,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
