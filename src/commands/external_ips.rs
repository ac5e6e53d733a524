//! `rangekeeper external-ips serve|policy|audit`: the allowed set (a declared set or
//! externalip-webhook's flags) resolved once, then the webhook, the policy or the audit.

use std::io::Read as _;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use rangekeeper_cidr::RangeSet;

use crate::cli::{
    AllowedRanges, AllowedUsers, ExternalIpsAuditArgs, ExternalIpsPolicyArgs, ExternalIpsServeArgs,
    Global, OutputFormat,
};
use crate::commands::{Outcome, Reported};
use crate::declaration::{DeclText, Declaration, LoadOptions, did_you_mean};
use crate::extip::{self, Rules, audit, cluster, policy, serve};

/// The allowed set and the declaration's other sets (for "which set would admit it").
struct Allowed {
    set: RangeSet,
    origin: String,
    others: Vec<(String, RangeSet)>,
}

/// The named set of a resolved declaration. A live source without a value is an error:
/// an empty set would deny (or, audited, flag) everything because a download failed.
fn pick(decl: &Declaration, name: &str) -> Result<Allowed, String> {
    let origin = format!("set `{name}` of {}", decl.file);
    let Some(found) = decl.sets.get(name) else {
        let names: Vec<&str> = decl.sets.keys().map(String::as_str).collect();
        return Err(format!(
            "{} has no set `{name}`{}",
            decl.file,
            did_you_mean(name, names)
        ));
    };
    if decl.sources.contains_key(name) && found.set.is_empty() {
        return Err(format!(
            "{origin} is a live source with no value now (not fetched, or the fetch failed); refusing to treat it as empty"
        ));
    }
    Ok(Allowed {
        set: found.set.clone(),
        origin,
        others: decl
            .sets
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(n, s)| (n.clone(), s.set.clone()))
            .collect(),
    })
}

async fn allowed(global: &Global, ranges: &AllowedRanges) -> anyhow::Result<Allowed> {
    if let Some(name) = &ranges.set {
        let opts = LoadOptions {
            strict: global.strict,
            sets_only: true,
        };
        let (decl, _) = crate::commands::load_with(global, opts).await?;
        return pick(&decl, name).map_err(|e| Reported(e).into());
    }
    let flags = ranges.allowed_external_ip_cidrs.clone().unwrap_or_default();
    let set = extip::parse_cidr_flags(&flags, global.strict).map_err(Reported)?;
    if set.is_empty() {
        tracing::warn!("--allowed-external-ip-cidrs is empty: every external IP is denied");
    }
    Ok(Allowed {
        set,
        origin: "--allowed-external-ip-cidrs".into(),
        others: Vec::new(),
    })
}

fn rules(a: &Allowed, users: &AllowedUsers) -> Rules {
    Rules {
        allowed: a.set.clone(),
        origin: a.origin.clone(),
        users: extip::split_list(&users.allowed_usernames),
        groups: extip::split_list(&users.allowed_groups),
    }
}

pub async fn serve(global: &Global, args: &ExternalIpsServeArgs) -> anyhow::Result<Outcome> {
    let first = allowed(global, &args.ranges).await?;
    let initial = rules(&first, &args.users);
    let listen = match args.webhook_port {
        Some(p) => serve::parse_listen(&format!(":{p}")),
        None => serve::parse_listen(&args.listen),
    }
    .map_err(|e| anyhow!("--listen: {e}"))?;
    let certs = Arc::new(
        serve::CertStore::open(&args.tls_cert_file, &args.tls_private_key_file)
            .map_err(Reported)?,
    );
    let hook = Arc::new(serve::Webhook::new(initial.clone()));
    let listener = serve::bind(&listen).await?;
    let local = listener.local_addr()?;
    let _metrics = match &args.metrics_addr {
        Some(m) => {
            let addrs = serve::parse_listen(m).map_err(|e| anyhow!("--metrics-addr: {e}"))?;
            let mut last = None;
            let mut started = None;
            for a in addrs {
                match crate::reconcile::server::start(a, hook.clone()).await {
                    Ok(h) => {
                        started = Some(h);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (started, last) {
                (Some(h), _) => Some(h),
                (None, Some(e)) => return Err(e),
                (None, None) => None,
            }
        }
        None => None,
    };
    tracing::info!(
        "serving the externalIPs webhook on https://{local}/validate-service: {} ({}){}",
        initial.origin,
        crate::output::count(initial.allowed.len(), "range"),
        if initial.users.is_empty() && initial.groups.is_empty() {
            String::new()
        } else {
            format!(
                "; only users [{}] and groups [{}] may set externalIPs",
                initial.users.join(", "),
                initial.groups.join(", ")
            )
        }
    );
    let _certs_watch = serve::watch_certs(certs.clone(), hook.clone(), args.watch_interval);
    let _rules_watch = args.ranges.set.clone().map(|set| {
        let hook = hook.clone();
        let users = extip::split_list(&args.users.allowed_usernames);
        let groups = extip::split_list(&args.users.allowed_groups);
        let file = global.file.clone();
        let opts = LoadOptions {
            strict: global.strict,
            sets_only: true,
        };
        let live = crate::commands::live_options(global);
        let every = args.watch_interval;
        tokio::spawn(async move {
            let mut last_text = DeclText::read(&file).ok().map(|t| t.text);
            loop {
                tokio::time::sleep(every).await;
                let text = match DeclText::read(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        let m = e.to_string();
                        if last_text.as_deref() != Some(m.as_str()) {
                            tracing::error!("{m}; the last valid set stays in force");
                            hook.rules_rejected();
                            last_text = Some(m);
                        }
                        continue;
                    }
                };
                if last_text.as_deref() == Some(text.text.as_str()) {
                    continue;
                }
                last_text = Some(text.text.clone());
                let loaded = crate::sources::load_live(
                    &text,
                    opts,
                    &crate::registry::catalog(),
                    &live,
                )
                .await
                .map_err(|e| e.to_string())
                .and_then(|(d, _)| pick(&d, &set));
                match loaded {
                    Ok(a) => {
                        let n = a.set.len();
                        hook.set_rules(Rules {
                            allowed: a.set,
                            origin: a.origin.clone(),
                            users: users.clone(),
                            groups: groups.clone(),
                        });
                        tracing::info!(
                            "the declaration changed: {} ({}) is in force",
                            a.origin,
                            crate::output::count(n, "range")
                        );
                    }
                    Err(e) => {
                        tracing::error!(
                            "the changed declaration is rejected: {e}; the last valid set stays in force"
                        );
                        hook.rules_rejected();
                    }
                }
            }
        })
    });
    serve::serve_tls(
        listener,
        certs,
        hook,
        crate::commands::reconcile::shutdown_signal(),
    )
    .await?;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}

pub async fn policy(global: &Global, args: &ExternalIpsPolicyArgs) -> anyhow::Result<Outcome> {
    crate::commands::reject_github(global, "external-ips policy")?;
    let a = allowed(global, &args.ranges).await?;
    let rules = rules(&a, &args.users);
    let opts = policy::Options {
        name: args.name.clone(),
        exempt_namespaces: args.exempt_namespace.clone(),
        exempt_labels: args.exempt_namespace_label.clone(),
        exempt_users: args.exempt_user.clone(),
        exempt_groups: args.exempt_group.clone(),
    };
    let (p, b) = policy::generate(&rules, &opts).map_err(|e| Reported(e.to_string()))?;
    if rules.allowed.is_empty() {
        tracing::warn!(
            "{} is empty: the policy denies every external IP",
            rules.origin
        );
    } else if policy::ips_within_cost(rules.allowed.len()) < 1000 {
        tracing::warn!(
            "with {}, a Service with more than {} external IPs may be refused for CEL cost (failurePolicy Fail: refused, never let through)",
            crate::output::count(rules.allowed.len(), "range"),
            policy::ips_within_cost(rules.allowed.len())
        );
    }
    if args.apply {
        let client = cluster::client(
            args.kube.kubeconfig.as_deref(),
            args.kube.context.as_deref(),
        )
        .await?;
        cluster::apply_policy(&client, &p, &b, args.force_conflicts).await?;
        tracing::info!(
            "applied ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding {} ({}: {})",
            args.name,
            rules.origin,
            crate::output::count(rules.allowed.len(), "range")
        );
        return Ok(Outcome::Success);
    }
    match global.output {
        OutputFormat::Json => crate::commands::print_json(&serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [p, b],
        }))?,
        _ => {
            let mut out = String::new();
            for (i, doc) in [p, b].iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(
                    &serde_saphyr::to_string(doc).context("cannot write the policy as YAML")?,
                );
            }
            crate::commands::print_human(&out)?;
        }
    }
    Ok(Outcome::Success)
}

pub async fn audit(global: &Global, args: &ExternalIpsAuditArgs) -> anyhow::Result<Outcome> {
    crate::commands::reject_github(global, "external-ips audit")?;
    let a = allowed(global, &args.ranges).await?;
    let services = match &args.input {
        Some(path) => {
            let (text, name) = if path.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read stdin")?;
                (s, "stdin".to_owned())
            } else {
                (
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                    path.display().to_string(),
                )
            };
            audit::parse_services(&text).map_err(|e| Reported(format!("{name}: {e}")))?
        }
        None => {
            let client = cluster::client(
                args.kube.kubeconfig.as_deref(),
                args.kube.context.as_deref(),
            )
            .await?;
            cluster::list_services(&client).await?
        }
    };
    let others: audit::OtherSets<'_> = a.others.iter().map(|(n, s)| (n.as_str(), s)).collect();
    let report = audit::audit(&services, &a.set, &a.origin, &others, args.load_balancer);
    match global.output {
        OutputFormat::Json => crate::commands::print_json(&report)?,
        _ => crate::commands::print_human(&audit::human(&report))?,
    }
    if report.non_compliant > 0 {
        Ok(Outcome::Changes)
    } else {
        Ok(Outcome::Success)
    }
}
