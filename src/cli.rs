//! Command-line types (clap derive): one struct per subcommand. Resolved settings are built
//! from these in `commands`, never passed around raw.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keep Kubernetes API-server authorized IP ranges exactly as declared.
#[derive(Debug, Parser)]
#[command(name = "rangekeeper", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub top: TopFlags,
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand's arguments, whose clap definitions are built only when that subcommand
/// is parsed, its help is printed, or the whole tree is built (completions, man pages):
/// clap's `Command::defer`. Every run then builds the top level and the one subcommand it
/// runs, not the flags of twenty others; building and dropping those was a measurable share
/// of a short command's start-up (issue 11). It reads as `T` through `Deref`.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T> std::ops::Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }
    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }
    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }
    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

impl<T: Args> Args for Lazy<T> {
    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args))
    }
    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(|c| keep_about(c, T::augment_args_for_update))
    }
}

/// Run a deferred `augment`, keeping the subcommand's own description. Built eagerly, the
/// subcommand's doc comment is applied after its arguments' (a flattened struct's doc
/// comment also sets `about`); deferred, the arguments come last, so it is put back.
fn keep_about(cmd: clap::Command, augment: fn(clap::Command) -> clap::Command) -> clap::Command {
    let about = cmd.get_about().cloned();
    let long_about = cmd.get_long_about().cloned();
    let cmd = augment(cmd)
        .about(None::<&'static str>)
        .long_about(None::<&'static str>);
    let cmd = match about {
        Some(a) => cmd.about(a),
        None => cmd,
    };
    match long_about {
        Some(a) => cmd.long_about(a),
        None => cmd,
    }
}

/// Flags given before the subcommand (`rangekeeper -f FILE plan`), as older versions and
/// scripts write them. Each subcommand also takes the ones that apply to it, and its
/// `--help` shows only those; a flag after the subcommand wins.
#[derive(Debug, Args)]
pub struct TopFlags {
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
}

/// The settings every command reads: the logging flags (given anywhere), and the resolved
/// values of the per-command flags (filled by [`Cli::resolve`]).
#[derive(Debug, Args)]
pub struct Global {
    /// More log output on stderr (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The declaration file.
    #[arg(skip)]
    pub file: PathBuf,
    /// Output format of data on stdout.
    #[arg(skip)]
    pub output: OutputFormat,
    /// Host bits set are errors.
    #[arg(skip)]
    pub strict: bool,
    /// Where live-source values are cached (and the audit log is kept).
    #[arg(skip)]
    pub state_dir: Option<PathBuf>,
    /// Echo endpoints for this machine's egress IP.
    #[arg(skip)]
    pub self_echo: Vec<reqwest::Url>,
    /// Apply even when a change locks this machine out.
    #[arg(skip)]
    pub allow_lockout: bool,
    /// Retries and deadlines of provider calls (`--read-deadline`, `--write-deadline`).
    #[arg(skip)]
    pub retry: crate::retry::Policy,
}

/// `-f FILE`.
#[derive(Debug, Args, Default)]
pub struct FileFlag {
    /// The declaration file (YAML, or JSON by extension) [env: RANGEKEEPER_FILE] [default:
    /// rangekeeper.yaml]
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `-o FORMAT`.
#[derive(Debug, Args, Default)]
pub struct OutputFlag {
    /// Output format of data on stdout [default: human]
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

/// `--strict`.
#[derive(Debug, Args, Default)]
pub struct StrictFlag {
    /// Treat host bits set in a CIDR as an error instead of normalizing with a warning, and
    /// refuse changes a provider only warns about (such as a port a policy cannot restrict)
    #[arg(long)]
    pub strict: bool,
}

/// `--state-dir DIR`.
#[derive(Debug, Args, Default)]
pub struct StateDirFlag {
    /// Where live-source values are cached and the audit log of changes is kept
    /// [env: RANGEKEEPER_STATE_DIR]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--read-deadline`, `--write-deadline`: bounds on every call to a target, retries included.
#[derive(Debug, Args, Default)]
pub struct DeadlineFlags {
    /// Give up reading a target after this long, retries included, e.g. 30s, 2m [default:
    /// 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    pub read_deadline: Option<std::time::Duration>,
    /// Give up changing a target after this long, retries and waiting for the target's own
    /// operation included [default: 30m]
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    pub write_deadline: Option<std::time::Duration>,
}

/// `reconcile --leader-elect`: several replicas, one writer, decided by a Kubernetes
/// coordination.k8s.io/v1 Lease (defaults as client-go's leader election).
#[derive(Debug, Args)]
pub struct LeaderFlags {
    /// Run as one of several replicas: only the holder of a Kubernetes Lease reads and writes
    /// targets, and it stops writing before its lease can expire. Needs the `kubernetes`
    /// feature; the Lease is in the cluster of the in-cluster service account, else of
    /// $KUBECONFIG or --lease-kubeconfig
    #[arg(long, conflicts_with = "once")]
    pub leader_elect: bool,
    /// The Lease's name
    #[arg(long, value_name = "NAME", default_value = "rangekeeper")]
    pub lease_name: String,
    /// The Lease's namespace [default: the pod's namespace in a cluster, else the
    /// kubeconfig context's, else `default`]
    #[arg(long, value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's name in the Lease (e.g. the pod name) [default: the host name and a
    /// random suffix]
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// How long other replicas wait after the leader's last renewal before taking over
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "15s")]
    pub lease_duration: std::time::Duration,
    /// The leader writes only until this long after its last successful renewal was sent,
    /// and steps down if it cannot renew by then (shorter than --lease-duration)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "10s")]
    pub renew_deadline: std::time::Duration,
    /// How often the leader renews and a follower tries to acquire
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "2s")]
    pub retry_period: std::time::Duration,
    /// The kubeconfig of the cluster that holds the Lease [default: the in-cluster service
    /// account, else $KUBECONFIG or ~/.kube/config]
    #[arg(long, value_name = "PATH")]
    pub lease_kubeconfig: Option<std::path::PathBuf>,
    /// Split the targets over N shards (consistent hashing of target names), each with its
    /// own Lease `<lease-name>-shard-<i>`: the replicas share the shards evenly, so several
    /// reconcile one fleet, and the shards of a replica that dies move within the lease
    /// duration. Give every replica the same N: a replica that sees another with a different
    /// N writes nothing until it is gone
    #[arg(long, value_name = "N", requires = "leader_elect", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub shards: Option<u32>,
}

/// What commands that fetch live sources and change targets take.
#[derive(Debug, Args, Default)]
pub struct LiveFlags {
    #[command(flatten)]
    pub state: StateDirFlag,
    /// An echo endpoint that answers with this machine's egress IP (repeatable; all must
    /// agree). Enables the lockout guard; also used by sets with `self: true`
    #[arg(long = "self-echo", value_name = "URL", value_parser = parse_echo_url)]
    pub self_echo: Vec<reqwest::Url>,
    /// Apply even when a change would leave this machine's egress IP outside a target it
    /// can reach now
    #[arg(long)]
    pub allow_lockout: bool,
}

/// The per-command flags of one subcommand, for [`Cli::resolve`].
#[derive(Default)]
struct CommandFlags<'a> {
    file: Option<&'a FileFlag>,
    output: Option<&'a OutputFlag>,
    strict: Option<&'a StrictFlag>,
    state: Option<&'a StateDirFlag>,
    live: Option<&'a LiveFlags>,
    deadline: Option<&'a DeadlineFlags>,
}

impl Cli {
    /// Fill [`Global`] from the flags given before and after the subcommand (after wins),
    /// then the environment, then the defaults.
    pub fn resolve(mut self) -> Cli {
        let f = self.command.flags();
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let g = &mut self.global;
        let top = &self.top;
        g.file = f
            .file
            .and_then(|x| x.file.clone())
            .or_else(|| top.file.file.clone())
            .or_else(|| env("RANGEKEEPER_FILE"))
            .unwrap_or_else(|| PathBuf::from("rangekeeper.yaml"));
        g.output = f
            .output
            .and_then(|x| x.output)
            .or(top.output.output)
            .unwrap_or_default();
        g.strict = f.strict.is_some_and(|x| x.strict) || top.strict.strict;
        let state = f.state.or(f.live.map(|l| &l.state));
        g.state_dir = state
            .and_then(|x| x.state_dir.clone())
            .or_else(|| top.live.state.state_dir.clone())
            .or_else(|| env("RANGEKEEPER_STATE_DIR"));
        g.self_echo = match f.live {
            Some(l) if !l.self_echo.is_empty() => l.self_echo.clone(),
            _ => top.live.self_echo.clone(),
        };
        g.allow_lockout = f.live.is_some_and(|l| l.allow_lockout) || top.live.allow_lockout;
        if let Some(d) = f.deadline {
            if let Some(r) = d.read_deadline {
                g.retry.read_deadline = r;
            }
            if let Some(w) = d.write_deadline {
                g.retry.write_deadline = w;
            }
        }
        self
    }
}

impl Command {
    fn flags(&self) -> CommandFlags<'_> {
        let c = |file, output, strict| CommandFlags {
            file: Some(file),
            output: Some(output),
            strict: Some(strict),
            ..CommandFlags::default()
        };
        match self {
            Command::Validate(a) => c(&a.file, &a.output, &a.strict),
            Command::Normalize(a) => CommandFlags {
                output: Some(&a.output),
                strict: Some(&a.strict),
                ..CommandFlags::default()
            },
            Command::Plan(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Apply(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Manifests(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Show(a) => CommandFlags {
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Update(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Disable(a) => CommandFlags {
                state: Some(&a.state),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Reconcile(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Grant(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Revoke(a) => CommandFlags {
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Leases(a) => CommandFlags {
                deadline: Some(&a.deadline),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Exec(a) => CommandFlags {
                file: Some(&a.file),
                strict: Some(&a.strict),
                live: Some(&a.live),
                deadline: Some(&a.deadline),
                ..CommandFlags::default()
            },
            Command::Sources(SourcesArgs {
                command: SourcesCommand::Accept(a),
            }) => CommandFlags {
                state: Some(&a.state),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Providers(ProvidersArgs {
                command: Some(ProvidersCommand::Test(t)),
                ..
            }) => CommandFlags {
                file: Some(&t.file),
                output: Some(&t.output),
                ..CommandFlags::default()
            },
            Command::Providers(a) => CommandFlags {
                output: Some(&a.output),
                ..CommandFlags::default()
            },
            Command::Import(a) => CommandFlags {
                file: Some(&a.file),
                deadline: Some(&a.deadline),
                ..CommandFlags::default()
            },
            Command::ExternalIps(ExternalIpsArgs {
                command: ExternalIpsCommand::Serve(a),
            }) => CommandFlags {
                file: Some(&a.file),
                strict: Some(&a.strict),
                state: Some(&a.state),
                ..CommandFlags::default()
            },
            Command::ExternalIps(ExternalIpsArgs {
                command: ExternalIpsCommand::Policy(a),
            }) => CommandFlags {
                state: Some(&a.state),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::ExternalIps(ExternalIpsArgs {
                command: ExternalIpsCommand::Audit(a),
            }) => CommandFlags {
                state: Some(&a.state),
                ..c(&a.file, &a.output, &a.strict)
            },
            Command::Schema | Command::Completions(_) | Command::Man(_) => CommandFlags::default(),
        }
    }
}

fn parse_echo_url(s: &str) -> Result<reqwest::Url, String> {
    crate::sources::spec::parse_url(s)
}

/// A deadline: a duration of at least one second.
fn parse_deadline(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::sources::spec::parse_duration(s)?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!("a deadline must be at least 1s, not `{s}`"));
    }
    Ok(d)
}

/// A `--reason`: one line of at most 100 characters, so it fits every lease store.
fn parse_reason(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.chars().any(char::is_control) {
        return Err("a reason is one line of text without control characters".into());
    }
    if t.chars().count() > 100 {
        return Err(format!(
            "a reason has at most 100 characters (this one has {})",
            t.chars().count()
        ));
    }
    Ok(t.to_owned())
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::sources::spec::parse_duration(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Tables and text for people
    #[default]
    Human,
    /// One JSON document
    Json,
    /// GitHub Actions annotations (`validate` only)
    Github,
    /// A pull-request comment in Markdown, fitted to GitHub's comment size (`plan` only)
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the declaration file and every target's desired ranges, without any network call
    Validate(Lazy<ValidateArgs>),
    /// Read CIDRs (arguments, files or stdin) and print the canonical aggregate
    Normalize(Lazy<NormalizeArgs>),
    /// Show what `apply` would change on each target
    Plan(Lazy<PlanArgs>),
    /// Make each target hold exactly its declared ranges
    Apply(Lazy<ApplyArgs>),
    /// Show the ranges each target holds now
    Show(Lazy<ShowArgs>),
    /// Print the objects `apply` would send to targets that keep Kubernetes objects, as
    /// multi-document YAML for a GitOps repository (`-o json`: one `List`)
    Manifests(Lazy<ManifestsArgs>),
    /// Change one target's current ranges by hand (add, remove or set)
    Update(Lazy<UpdateArgs>),
    /// Lift a target's restriction (anyone may connect afterwards)
    Disable(Lazy<DisableArgs>),
    /// Read what each target of a skeleton declaration holds now and print the complete
    /// declaration, with shared ranges factored into named sets
    Import(Lazy<ImportArgs>),
    /// Keep every target converged: one pass (`--once`, for cron) or a loop that corrects drift
    Reconcile(Lazy<ReconcileArgs>),
    /// Open a target to one address for a while (this machine's egress IP by default):
    /// store a lease with the target and print its id
    Grant(Lazy<GrantArgs>),
    /// Remove a lease (a lease already gone is not an error)
    Revoke(Lazy<RevokeArgs>),
    /// List the leases stored with each target
    Leases(Lazy<LeasesArgs>),
    /// Grant a lease, run a command, and revoke the lease when it ends (also when it fails
    /// or the job is cancelled); exits with the command's exit code
    Exec(Lazy<ExecArgs>),
    /// Manage live range sources (`url`, `dns`, `self` sets)
    Sources(SourcesArgs),
    /// List the built-in providers and what they accept
    Providers(ProvidersArgs),
    /// Service externalIPs (CVE-2020-8554): an admission webhook, a ValidatingAdmissionPolicy,
    /// and an audit of existing Services, all from one allowed set
    #[command(name = "external-ips")]
    ExternalIps(ExternalIpsArgs),
    /// Print the JSON Schema of the declaration file
    Schema,
    /// Print shell completions
    Completions(Lazy<CompletionsArgs>),
    /// Print the manual page (roff), or write one page per command to a directory
    Man(Lazy<ManArgs>),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
}

#[derive(Debug, Args)]
pub struct ProvidersArgs {
    #[command(subcommand)]
    pub command: Option<ProvidersCommand>,
    #[command(flatten)]
    pub output: OutputFlag,
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Run the conformance suite against a provider, built-in or plugin, and print a
    /// pass/fail table (exit 0 only if every check passes). It changes and disables the
    /// target: give it a throw-away one.
    Test(Lazy<ProvidersTestArgs>),
}

#[derive(Debug, Args)]
pub struct ProvidersTestArgs {
    /// The provider: a built-in name, or a plugin's (`rangekeeper-provider-NAME` on PATH)
    pub name: String,
    /// Test against this target of the declaration file (its provider-specific fields);
    /// without it, a scratch target in a temporary directory with no fields
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// A target of the declaration file that does not exist, to check that the provider
    /// reports `not_found`
    #[arg(long, value_name = "TARGET")]
    pub missing_target: Option<String>,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
}

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
    /// Output format of the list (`-o json` is the same as `--format json`)
    #[arg(long, value_enum)]
    pub format: Option<ListFormat>,
    /// At most this many prefixes: print the optimal cover and its cost
    #[arg(long, value_name = "K")]
    pub max_ranges: Option<usize>,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
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
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    /// Exit 0 when in sync, 2 when changes are pending, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub change: ChangeArgs,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

/// The lease a `grant` or `exec` asks for.
#[derive(Debug, Args)]
pub struct LeaseRequest {
    /// The target to open
    #[arg(short, long, value_name = "NAME")]
    pub target: String,
    /// How long the lease lasts, e.g. 20m, 1h (at most the target's `maxLeaseTtl`, default
    /// 12h)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub ttl: std::time::Duration,
    /// The address to allow [default: this machine's egress IP, from echo endpoints that
    /// must agree (--self-echo)]
    #[arg(long, value_name = "ADDR", conflicts_with = "self_echo")]
    pub ip: Option<std::net::IpAddr>,
    /// Why the lease is needed (shown in `leases` and the audit log)
    #[arg(long, value_name = "TEXT", value_parser = parse_reason)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub lease: LeaseRequest,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The target the lease is on
    #[arg(short, long, value_name = "NAME")]
    pub target: String,
    /// The lease id `grant` printed
    #[arg(long = "lease", value_name = "ID")]
    pub lease: String,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct LeasesArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub lease: LeaseRequest,
    /// Before running the command, wait (at most --wait-timeout) until the target's API
    /// endpoint, or this URL, accepts a TLS connection from here (a cloud provider's change may take minutes
    /// to take effect)
    #[arg(long, value_name = "URL", num_args = 0..=1, require_equals = false)]
    pub wait_reachable: Option<Option<reqwest::Url>>,
    /// The bound on --wait-reachable
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "10m")]
    pub wait_timeout: std::time::Duration,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
    /// The command and its arguments (after `--`)
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
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
pub struct ManifestsArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    /// Output format of the declaration on stdout [default: yaml]
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<ImportFormat>,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

/// What `import` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// The skeleton's YAML with `sets` and `allow` filled in (comments kept)
    Yaml,
    /// A JSON declaration
    Json,
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
    /// Let --remove drop ranges the declaration requires for this target (until the next
    /// apply or reconcile puts them back)
    #[arg(long, requires = "remove")]
    pub drop_declared: bool,
    #[command(flatten)]
    pub change: ChangeArgs,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
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
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub state: StateDirFlag,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub select: TargetSelect,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub live: LiveFlags,
    /// One pass over every target, then exit: 0 when all converged, 1 naming the failed ones
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Time between passes over a converged target (loop mode), e.g. 60s, 5m [default: 60s,
    /// or the check interval of a stand-alone mode's config file]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub interval: Option<std::time::Duration>,
    #[command(flatten)]
    pub standalone: crate::registry::StandaloneArgs,
    /// Longest wait before retrying a failed target (failures back off exponentially)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "5m")]
    pub max_backoff: std::time::Duration,
    /// At most this many targets are read or applied at the same time, in all
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// At most this many targets of one API quota (an AKS subscription, an EKS account and
    /// region) at the same time; halved while that API throttles, regained one per success
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency_per_scope: u16,
    /// Serve Prometheus metrics, /healthz and /readyz on this address (e.g. 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// On SIGTERM/SIGINT, how long in-flight applies may take to finish
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "30s")]
    pub grace: std::time::Duration,
    /// How often the declaration file is checked for changes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "2s")]
    pub watch_interval: std::time::Duration,
    #[command(flatten)]
    pub deadline: DeadlineFlags,
    #[command(flatten)]
    pub leader: LeaderFlags,
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
    Accept(Lazy<AcceptArgs>),
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The set whose held-back value to accept
    #[arg(value_name = "SET")]
    pub set: String,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub state: StateDirFlag,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write rangekeeper.1 and a page per subcommand (rangekeeper-plan.1, ...) into this
    /// directory instead of printing rangekeeper.1 on stdout
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExternalIpsArgs {
    #[command(subcommand)]
    pub command: ExternalIpsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ExternalIpsCommand {
    /// A validating admission webhook for Services (externalip-webhook's behaviour and
    /// messages) over TLS at /validate-service
    Serve(Lazy<ExternalIpsServeArgs>),
    /// Print (or --apply) a ValidatingAdmissionPolicy and binding that enforce the set in the
    /// API server itself (Kubernetes 1.30 and later)
    Policy(Lazy<ExternalIpsPolicyArgs>),
    /// List Services whose externalIPs fall outside the set: exit 0 when all comply, 2 when
    /// some do not, 1 on error
    Audit(Lazy<ExternalIpsAuditArgs>),
}

/// Where the allowed external-IP ranges come from.
#[derive(Debug, Args)]
pub struct AllowedRanges {
    /// The declared set of allowed ranges (a set of the -f FILE declaration)
    #[arg(
        long = "set",
        value_name = "NAME",
        conflicts_with = "allowed_external_ip_cidrs",
        required_unless_present = "allowed_external_ip_cidrs"
    )]
    pub set: Option<String>,
    /// The allowed ranges instead of a declared set, comma-separated (externalip-webhook's
    /// flag; repeatable); an empty value denies every external IP
    #[arg(long, value_name = "CIDRS", num_args = 1)]
    pub allowed_external_ip_cidrs: Option<Vec<String>>,
}

/// Who may set externalIPs at all (externalip-webhook's flags).
#[derive(Debug, Args)]
pub struct AllowedUsers {
    /// Only these users may set externalIPs (comma-separated, repeatable; with
    /// --allowed-groups, members of those too)
    #[arg(long, value_name = "USERS")]
    pub allowed_usernames: Vec<String>,
    /// Only members of these groups may set externalIPs (comma-separated, repeatable)
    #[arg(long, value_name = "GROUPS")]
    pub allowed_groups: Vec<String>,
}

/// Which cluster to talk to.
#[derive(Debug, Args)]
pub struct KubeFlags {
    /// The kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service
    /// account]
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current context]
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExternalIpsServeArgs {
    #[command(flatten)]
    pub ranges: AllowedRanges,
    #[command(flatten)]
    pub users: AllowedUsers,
    /// The serving certificate (PEM chain); read again when it changes
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: PathBuf,
    /// The serving certificate's private key (PEM); read again when it changes
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: PathBuf,
    /// Where the webhook listens: `:PORT` (every address) or `HOST:PORT`
    #[arg(
        long,
        value_name = "ADDR",
        default_value = ":9443",
        conflicts_with = "webhook_port"
    )]
    pub listen: String,
    /// The webhook's port on every address (externalip-webhook's flag; same as --listen :PORT)
    #[arg(long, value_name = "PORT")]
    pub webhook_port: Option<u16>,
    /// Serve /metrics, /healthz and /readyz over plain HTTP here too, e.g. :8080 (they are
    /// always on the TLS port)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// How often the declaration and the certificate files are checked for changes
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, default_value = "2s")]
    pub watch_interval: std::time::Duration,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub state: StateDirFlag,
}

#[derive(Debug, Args)]
pub struct ExternalIpsPolicyArgs {
    #[command(flatten)]
    pub ranges: AllowedRanges,
    #[command(flatten)]
    pub users: AllowedUsers,
    /// The name of the policy and of its binding
    #[arg(long, value_name = "NAME", default_value = "rangekeeper-external-ips")]
    pub name: String,
    /// A namespace the policy does not apply to (repeatable)
    #[arg(long, value_name = "NAMESPACE")]
    pub exempt_namespace: Vec<String>,
    /// Namespaces with this label are exempt (KEY=VALUE, repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    pub exempt_namespace_label: Vec<(String, String)>,
    /// Requests by this user are not checked (repeatable)
    #[arg(long, value_name = "USER")]
    pub exempt_user: Vec<String>,
    /// Requests by members of this group are not checked (repeatable)
    #[arg(long, value_name = "GROUP")]
    pub exempt_group: Vec<String>,
    /// Server-side apply both objects to the cluster (field manager rangekeeper), after a
    /// server-side dry run, instead of printing them
    #[arg(long)]
    pub apply: bool,
    /// With --apply: take over fields another field manager owns
    #[arg(long, requires = "apply")]
    pub force_conflicts: bool,
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub file: FileFlag,
    // Output is YAML for `kubectl apply -f -`; `-o json` a JSON List
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub state: StateDirFlag,
}

#[derive(Debug, Args)]
pub struct ExternalIpsAuditArgs {
    #[command(flatten)]
    pub ranges: AllowedRanges,
    /// Read `kubectl get services -A -o json` from this file ("-" is stdin) instead of the
    /// cluster
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Also judge load balancers: status.loadBalancer.ingress IPs and
    /// spec.loadBalancerSourceRanges
    #[arg(long)]
    pub load_balancer: bool,
    #[command(flatten)]
    pub kube: KubeFlags,
    #[command(flatten)]
    pub file: FileFlag,
    #[command(flatten)]
    pub output: OutputFlag,
    #[command(flatten)]
    pub strict: StrictFlag,
    #[command(flatten)]
    pub state: StateDirFlag,
}

/// `KEY=VALUE`.
fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}
