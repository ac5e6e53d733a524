//! `rangekeeper grant`, `revoke`, `leases` and `exec`: temporary access for a CI job, stored
//! with the target as a lease (see `crate::lease`).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use rangekeeper_provider::ProviderError;
use rangekeeper_provider::lease::{Lease, LeaseId, Timestamp};

use crate::cli::{ExecArgs, Global, GrantArgs, LeaseRequest, LeasesArgs, OutputFormat, RevokeArgs};
use crate::commands::{self, Outcome, Reported};
use crate::declaration::{Declaration, Target};
use crate::guard::Lockout;
use crate::lease::{self as core, Done, Edit};
use crate::plan::Bound;
use crate::reconcile::audit;

/// A lease as `grant -o json` and `leases -o json` print it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView<'a> {
    pub id: &'a LeaseId,
    pub target: &'a str,
    pub address: std::net::IpAddr,
    pub expires: Timestamp,
    pub requested_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub expired: bool,
}

impl<'a> LeaseView<'a> {
    pub fn new(target: &'a str, l: &'a Lease, now: Timestamp) -> LeaseView<'a> {
        LeaseView {
            id: &l.id,
            target,
            address: l.address,
            expires: l.expires,
            requested_by: &l.requested_by,
            reason: l.reason.as_deref(),
            expired: l.is_expired(now),
        }
    }
}

/// Bind the one target a lease is about.
fn bind_one<'a>(
    global: &Global,
    decl: &'a Declaration,
    lockout: Option<&Lockout>,
    target: &str,
) -> anyhow::Result<Vec<Bound<'a>>> {
    let targets = commands::select(decl, &[target.to_owned()])?;
    commands::bind(global, decl, lockout, targets)
}

/// The address a lease is for: `--ip`, else this machine's egress IP (the one the lockout
/// guard found, or asked of the echo endpoints now; they must agree).
async fn lease_address(
    global: &Global,
    req: &LeaseRequest,
    lockout: Option<&Lockout>,
) -> anyhow::Result<std::net::IpAddr> {
    if let Some(ip) = req.ip {
        return Ok(ip);
    }
    if let Some(l) = lockout {
        return Ok(l.ip);
    }
    let fetcher = crate::sources::fetch::Fetcher::new(global.self_echo.clone())?;
    fetcher
        .egress(&[], Duration::from_secs(10))
        .await
        .map_err(|e| {
            Reported(format!(
                "cannot find this machine's egress IP for the lease: {e}; pass --ip ADDR or --self-echo URL"
            ))
            .into()
        })
}

/// Check the request against the target and build the lease.
fn build_lease(
    target: &Target,
    req: &LeaseRequest,
    address: std::net::IpAddr,
) -> anyhow::Result<Lease> {
    let max = target.policy.max_lease_ttl.unwrap_or(core::DEFAULT_MAX_TTL);
    core::check_ttl(&target.name, req.ttl, max).map_err(Reported)?;
    let env = |k: &str| std::env::var(k).ok();
    Ok(core::new_lease(
        address,
        req.ttl,
        core::requested_by(&env),
        req.reason.clone(),
    ))
}

/// Write the audit record of a grant or revoke (when there is an audit log).
fn audit_lease(
    log: Option<&audit::AuditLog>,
    trigger: &str,
    target: &str,
    lease: &Lease,
    r: &Result<Done, ProviderError>,
) -> anyhow::Result<()> {
    let Some(log) = log else { return Ok(()) };
    let prefixes = |s: &rangekeeper_cidr::RangeSet| -> Vec<String> {
        s.prefixes().iter().map(ToString::to_string).collect()
    };
    let (added, removed, result, error) = match r {
        Ok(Done::Changed { plan, applied }) => (
            prefixes(&plan.add),
            prefixes(&plan.remove),
            if applied.pending {
                "pending"
            } else {
                "applied"
            },
            None,
        ),
        Ok(Done::Gone) => return Ok(()),
        Err(ProviderError::Invalid(m)) => (Vec::new(), Vec::new(), "refused", Some(m.clone())),
        Err(e) => (Vec::new(), Vec::new(), "failed", Some(e.to_string())),
    };
    let record = audit::Record {
        time: audit::rfc3339(std::time::SystemTime::now()),
        target,
        added,
        removed,
        trigger,
        config: Vec::new(),
        result,
        error,
        lease: Some(lease.clone()),
    };
    log.record(&record).map_err(|e| {
        let what = audit::describe(&record);
        tracing::error!("{what} was done, but its audit record is lost: {e}");
        Reported(format!(
            "{what} was done, but its audit record is lost: {e}"
        ))
        .into()
    })
}

/// Log what a lease change did, on stderr.
fn log_done(target: &str, what: &str, done: &Done) {
    if let Done::Changed { plan, applied } = done {
        let list = |s: &rangekeeper_cidr::RangeSet| {
            s.prefixes()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = format!("`{target}`: {what}");
        if !plan.add.is_empty() {
            let _ = write!(line, "; added {}", list(&plan.add));
        }
        if !plan.remove.is_empty() {
            let _ = write!(line, "; removed {}", list(&plan.remove));
        }
        for l in &plan.expired_leases {
            let _ = write!(line, "; removed expired lease {} ({})", l.id, l.address);
        }
        if applied.pending {
            line.push_str(" (accepted; the target is still applying it)");
        }
        tracing::info!("{line}");
        for w in &plan.warnings {
            tracing::warn!("{target}: {w}");
        }
        for n in &applied.notes {
            tracing::warn!("{target}: {n}");
        }
    }
}

/// Grant a lease on a bound target, with its audit record.
async fn grant_on(
    global: &Global,
    b: &Bound<'_>,
    lease: &Lease,
    audit_log: Option<&audit::AuditLog>,
    trigger: &str,
) -> anyhow::Result<()> {
    let (opts, progress) = commands::apply_options(&b.target.name, global, false);
    let r = core::change(b, &Edit::Grant(lease.clone()), global.retry, &opts).await;
    progress.finish();
    audit_lease(audit_log, trigger, &b.target.name, lease, &r)?;
    match r {
        Ok(done) => {
            log_done(
                &b.target.name,
                &format!(
                    "lease {} granted to {} until {}",
                    lease.id, lease.address, lease.expires
                ),
                &done,
            );
            Ok(())
        }
        Err(e) => Err(Reported(format!("no lease was granted on `{}`: {e}", b.target.name)).into()),
    }
}

/// Revoke a lease on a bound target, with its audit record; a lease already gone is fine.
async fn revoke_on(
    global: &Global,
    b: &Bound<'_>,
    id: &LeaseId,
    audit_log: Option<&audit::AuditLog>,
    trigger: &str,
    quiet_if_gone: bool,
) -> anyhow::Result<()> {
    let (opts, progress) = commands::apply_options(&b.target.name, global, false);
    let r = core::change(b, &Edit::Revoke(id.clone()), global.retry, &opts).await;
    progress.finish();
    // The audit record names the lease as it was stored.
    let stored = match &r {
        Ok(Done::Changed { plan, .. }) => plan
            .revoked_leases
            .iter()
            .chain(&plan.expired_leases)
            .find(|l| &l.id == id)
            .cloned(),
        _ => None,
    };
    if let Some(l) = &stored {
        audit_lease(audit_log, trigger, &b.target.name, l, &r)?;
    } else if let Err(e) = &r
        && let Some(log) = audit_log
    {
        let record = audit::Record {
            time: audit::rfc3339(std::time::SystemTime::now()),
            target: &b.target.name,
            added: Vec::new(),
            removed: Vec::new(),
            trigger,
            config: Vec::new(),
            result: "failed",
            error: Some(format!("revoking lease {id}: {e}")),
            lease: None,
        };
        if let Err(err) = log.record(&record) {
            tracing::error!("the audit record of a failed revoke is lost: {err}");
        }
    }
    match r {
        Ok(Done::Gone) if quiet_if_gone => Ok(()),
        Ok(Done::Gone) => {
            eprintln!(
                "note: lease {id} is not on `{}` (it expired and was cleaned up, or was revoked already): nothing to do",
                b.target.name
            );
            Ok(())
        }
        Ok(done) => {
            log_done(&b.target.name, &format!("lease {id} revoked"), &done);
            Ok(())
        }
        Err(e) => Err(Reported(format!(
            "lease {id} on `{}` was not revoked: {e}; it lasts until it expires",
            b.target.name
        ))
        .into()),
    }
}

pub async fn grant(global: &Global, args: &GrantArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "grant")?;
    let (decl, lockout) = commands::load(global).await?;
    let bound = bind_one(global, &decl, lockout.as_ref(), &args.lease.target)?;
    let b = bound.first().context("no target bound")?;
    let address = lease_address(global, &args.lease, lockout.as_ref()).await?;
    let lease = build_lease(b.target, &args.lease, address)?;
    let audit_log = commands::open_audit(global)?;
    grant_on(global, b, &lease, audit_log.as_ref(), "grant").await?;
    if global.output == OutputFormat::Json {
        commands::print_json(&LeaseView::new(&b.target.name, &lease, Timestamp::now()))?;
    } else {
        commands::print_human(&format!("{}\n", lease.id))?;
    }
    Ok(Outcome::Success)
}

pub async fn revoke(global: &Global, args: &RevokeArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "revoke")?;
    let id = LeaseId::parse(&args.lease).map_err(|e| Reported(format!("--lease: {e}")))?;
    let (decl, lockout) = commands::load(global).await?;
    let bound = bind_one(global, &decl, lockout.as_ref(), &args.target)?;
    let b = bound.first().context("no target bound")?;
    let audit_log = commands::open_audit(global)?;
    revoke_on(global, b, &id, audit_log.as_ref(), "revoke", false).await?;
    Ok(Outcome::Success)
}

/// The `leases` table.
pub fn leases_human(rows: &[LeaseView<'_>]) -> String {
    if rows.is_empty() {
        return "no leases\n".to_owned();
    }
    let header = [
        "TARGET",
        "LEASE",
        "ADDRESS",
        "EXPIRES",
        "REQUESTED BY",
        "REASON",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.target.to_owned(),
                r.id.to_string(),
                r.address.to_string(),
                if r.expired {
                    format!("{} (expired)", r.expires)
                } else {
                    r.expires.to_string()
                },
                r.requested_by.escape_debug().to_string(),
                r.reason.unwrap_or("").escape_debug().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |row: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &cells {
        line(row);
    }
    s
}

pub async fn leases(global: &Global, args: &LeasesArgs) -> anyhow::Result<Outcome> {
    commands::reject_github(global, "leases")?;
    let decl = commands::load_offline(global)?;
    let targets = commands::select(&decl, &args.select.targets)?;
    let bound = commands::bind(global, &decl, None, targets)?;
    let reads = futures::future::join_all(bound.iter().map(|b| async move {
        if !b.provider.capabilities().leases {
            return None;
        }
        Some(b.provider.current().await)
    }))
    .await;
    let now = Timestamp::now();
    let mut states = Vec::new();
    let mut failed = 0usize;
    for (b, r) in bound.iter().zip(reads) {
        match r {
            None if !args.select.targets.is_empty() => {
                let caps = b.provider.capabilities();
                tracing::warn!(
                    "target `{}`: {}",
                    b.target.name,
                    caps.leases_refused.unwrap_or_else(|| format!(
                        "the `{}` provider cannot store leases",
                        b.target.provider
                    ))
                );
            }
            None => {}
            Some(Ok(state)) => states.push((b.target.name.as_str(), state.leases)),
            Some(Err(e)) => {
                failed += 1;
                tracing::error!("cannot read the leases of `{}`: {e}", b.target.name);
            }
        }
    }
    let mut rows: Vec<LeaseView<'_>> = states
        .iter()
        .flat_map(|(t, ls)| ls.iter().map(|l| LeaseView::new(t, l, now)))
        .collect();
    rows.sort_by(|a, b| (a.target, a.expires, a.id).cmp(&(b.target, b.expires, b.id)));
    if global.output == OutputFormat::Json {
        commands::print_json(&rows)?;
    } else {
        commands::print_human(&leases_human(&rows))?;
    }
    if failed > 0 {
        return Err(Reported(format!(
            "the leases of {failed} target{} could not be read",
            if failed == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(Outcome::Success)
}

/// The endpoint `--wait-reachable` waits for: the URL given, else the target's API server as
/// its provider reports it in its details (`fqdn` or `endpoint`).
fn reachable_url(
    given: Option<&reqwest::Url>,
    state: &rangekeeper_provider::State,
    target: &str,
) -> anyhow::Result<reqwest::Url> {
    if let Some(u) = given {
        return Ok(u.clone());
    }
    for (k, v) in &state.details {
        if k == "fqdn" || k == "endpoint" {
            let text = if v.contains("://") {
                v.clone()
            } else {
                format!("https://{v}/")
            };
            if let Ok(u) = reqwest::Url::parse(&text) {
                return Ok(u);
            }
        }
    }
    Err(Reported(format!(
        "target `{target}` reports no API endpoint to wait for: pass --wait-reachable URL"
    ))
    .into())
}

/// Wait, at most `timeout`, until `url`'s host accepts a TLS connection (any HTTP answer
/// will do: the question is whether this machine gets through, not whether it may log in).
async fn wait_reachable(url: &reqwest::Url, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;
    let started = std::time::Instant::now();
    loop {
        let last = match client.get(url.clone()).send().await {
            Ok(_) => {
                tracing::info!(
                    "{} is reachable after {}s",
                    crate::sources::spec::redact(url),
                    started.elapsed().as_secs()
                );
                return Ok(());
            }
            Err(e) => rangekeeper_provider::error_chain(&e),
        };
        if started.elapsed() >= timeout {
            return Err(Reported(format!(
                "{} did not accept a connection within {} (--wait-timeout): {last}",
                crate::sources::spec::redact(url),
                crate::sources::spec::format_duration(timeout)
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_secs(2).min(timeout)).await;
    }
}

/// The signals `exec` forwards to its command.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot watch SIGHUP")?,
        })
    }

    /// The next signal's number.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => 15,
            _ = self.int.recv() => 2,
            _ = self.hup.recv() => 1,
        }
    }
}

/// Run the command to its end, forwarding signals; its exit code (128 + the signal when a
/// signal ended it).
async fn run_command(
    args: &ExecArgs,
    signals: &mut Signals,
    lease: &Lease,
    target: &str,
) -> anyhow::Result<u8> {
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after --")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .env("RANGEKEEPER_LEASE", lease.id.as_str())
        .env("RANGEKEEPER_LEASE_TARGET", target)
        .env("RANGEKEEPER_LEASE_ADDRESS", lease.address.to_string())
        .spawn()
        .with_context(|| format!("cannot run `{}`", program.to_string_lossy()))?;
    let pid = child.id();
    let status = loop {
        tokio::select! {
            st = child.wait() => break st.context("cannot wait for the command")?,
            sig = signals.next() => {
                tracing::warn!("signal {sig}: passing it on to the command and revoking the lease when it ends");
                let s = match sig {
                    2 => rustix::process::Signal::INT,
                    1 => rustix::process::Signal::HUP,
                    _ => rustix::process::Signal::TERM,
                };
                if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, s);
                }
            }
        }
    };
    use std::os::unix::process::ExitStatusExt as _;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        (None, None) => 1,
    })
}

pub async fn exec(global: &Global, args: &ExecArgs) -> anyhow::Result<Outcome> {
    // Watched from the start: a cancellation during the grant still revokes.
    let mut signals = Signals::new()?;
    let (decl, lockout) = commands::load(global).await?;
    let bound = bind_one(global, &decl, lockout.as_ref(), &args.lease.target)?;
    let b = bound.first().context("no target bound")?;
    let address = lease_address(global, &args.lease, lockout.as_ref()).await?;
    let lease = build_lease(b.target, &args.lease, address)?;
    let url = match &args.wait_reachable {
        None => None,
        Some(given) => {
            let state = b
                .provider
                .current()
                .await
                .map_err(|e| Reported(format!("cannot read `{}`: {e}", b.target.name)))?;
            Some(reachable_url(given.as_ref(), &state, &b.target.name)?)
        }
    };
    let audit_log = commands::open_audit(global)?;
    let granted = tokio::select! {
        r = grant_on(global, b, &lease, audit_log.as_ref(), "exec") => Ok(r),
        sig = signals.next() => {
            tracing::warn!("signal {sig} while granting: the lease is revoked and the command not run");
            Err(sig)
        }
    };
    let code = match granted {
        Ok(Err(e)) => {
            // A grant that failed after its record was written (a list update that failed
            // after the tags, a lost answer) must not stay behind until it expires.
            let _ = revoke_on(global, b, &lease.id, audit_log.as_ref(), "exec", true).await;
            return Err(e);
        }
        Err(sig) => u8::try_from(128 + sig).unwrap_or(255),
        Ok(Ok(())) => {
            tracing::info!(
                "lease {} on `{}`: running the command",
                lease.id,
                b.target.name
            );
            let ready = match &url {
                None => Ok(()),
                Some(u) => tokio::select! {
                    r = wait_reachable(u, args.wait_timeout) => r,
                    sig = signals.next() => Err(anyhow::anyhow!("signal {sig} while waiting for the target")),
                },
            };
            let ran = match ready {
                Ok(()) => run_command(args, &mut signals, &lease, &b.target.name).await,
                Err(e) => Err(e),
            };
            ran.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                1
            })
        }
    };
    // Revoked whatever happened; a signal now does not stop it (the TTL is the backstop when
    // the job is killed outright).
    // The exit code stays the command's (callers rely on it); a failed revoke is said on
    // stderr.
    if let Err(e) = revoke_on(global, b, &lease.id, audit_log.as_ref(), "exec", false).await {
        eprintln!("error: {e:#}");
    }
    Ok(Outcome::Exit(code))
}
