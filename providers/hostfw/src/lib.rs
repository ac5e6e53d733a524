//! The host firewall provider (`provider: hostfw`): restricts new TCP connections to a host's
//! ports (a self-managed API server, hostNetwork pods) to an allow-list, with an nftables table
//! of its own (iptables fallback), atomically, for IPv4 and IPv6. It replaces kube-restrict-ip
//! and reads its config file unchanged through its import hook ([`import`]).
//!
//! Target fields (all camelCase, unknown fields rejected):
//! - `ports: [6443, 10254]` — TCP ports to restrict (required unless `kubeRestrictIp` is given);
//! - `backend: auto | nftables | iptables` — `auto` uses nftables when `nft` works here;
//! - `table: rangekeeper` — nftables table `inet <table>`; iptables chain `RK-<table>`
//!   (letters, digits, `_`, `-`; at most 25 characters; several tables may coexist);
//! - `action: reject | drop` — reject answers with a TCP reset, drop stays silent;
//! - `kubeRestrictIp: /etc/kube-restrict-ip/config.yaml` — take the ports (`restrictedPorts`),
//!   the allow-list (`allowedNetworks`, added to `allow`) and the table name (`ipChain`) from a
//!   kube-restrict-ip config file, read by [`import`];
//! - `ipv6: restrict | open` — `open` leaves IPv6 clients unrestricted, as kube-restrict-ip
//!   (iptables only) does; the default restricts them like IPv4 clients;
//! - `iptablesVariant: legacy | nft` — with the iptables backend, run `iptables-legacy-*` or
//!   `iptables-nft-*` rather than the `iptables-*` on PATH (match the host's kube-proxy);
//! - `netns: <name>` — run nft/iptables inside this named network namespace
//!   (`ip netns exec <name> ...`), e.g. to manage a container's or a test's namespace.

mod command;
mod config;
mod iptables;
pub mod kube_restrict_ip;
mod nft;
mod ranges;

use std::path::PathBuf;

use rangekeeper_provider::lease::Timestamp;
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, ImportNote, Imported, ImportedRange, Lease, Location,
    Provider, ProviderError, RangeSet, Restriction, State, TargetConfig, UnrestrictedForm,
};
use tokio::sync::{Mutex, OnceCell};

pub use config::{
    Action, BackendChoice, Config, DEFAULT_TABLE, IptablesVariant, Ipv6Mode, MAX_TABLE_LEN,
    TableName,
};
pub use kube_restrict_ip::{
    KUBE_RESTRICT_IP_DEFAULT_CHAIN, KUBE_RESTRICT_IP_DEFAULT_INTERVAL, KubeRestrictIp,
    parse_kube_restrict_ip,
};

/// The static capabilities row of `hostfw`. Leases are stored by the nftables backend (set
/// elements with a kernel timeout); a target with `backend: iptables` says it cannot.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        "hostfw",
        "Host firewall: an nftables table (iptables fallback) limiting who may open TCP connections to this host's ports",
    )
    .with_ipv6(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::Removed)
    .with_leases(true)
}

/// Why the iptables backend stores no leases.
const IPTABLES_NO_LEASES: &str = "iptables rules have no timeout, so a lease's address would stay admitted after the lease expired if rangekeeper never ran again (a dead CI runner); leases need the nftables backend (`backend: nftables`, or `auto` where `nft` works)";

/// Build the provider for one target.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(Box::new(HostFw::new(Config::from_target(cfg)?)))
}

/// The kube-restrict-ip file a target points at (`kubeRestrictIp`), resolved against the
/// declaration's directory.
pub fn kube_restrict_ip_path(cfg: &TargetConfig) -> Option<PathBuf> {
    let path = PathBuf::from(cfg.fields.get("kubeRestrictIp")?.as_str()?);
    Some(if path.is_absolute() {
        path
    } else {
        cfg.base_dir.join(path)
    })
}

/// The largest kube-restrict-ip config read (a ConfigMap holds at most 1 MiB).
const MAX_KUBE_RESTRICT_IP_BYTES: u64 = 1 << 20;

/// The import hook: a target with `kubeRestrictIp: FILE` takes its ports (as `ports`), its
/// allow-list (`allowedNetworks`) and its table name (`ipChain`, unless `table` is written)
/// from kube-restrict-ip's config file, read as kube-restrict-ip reads it. Problems point
/// into that file.
pub fn import(cfg: &TargetConfig) -> Imported {
    let mut out = Imported::default();
    let Some(path) = kube_restrict_ip_path(cfg) else {
        return out;
    };
    out.files.push(path.clone());
    // Shown as the declaration wrote it (relative to the current directory when it is).
    let shown = match cfg.fields.get("kubeRestrictIp").and_then(|v| v.as_str()) {
        Some(written) if cfg.base_dir == std::path::Path::new(".") => PathBuf::from(written),
        _ => path.clone(),
    };
    for field in ["ports", "kubeRestrictIpChain"] {
        if cfg.fields.contains_key(field) {
            out.notes.push(ImportNote::error(
                None,
                if field == "ports" {
                    "give either `ports` or `kubeRestrictIp` (whose restrictedPorts are the ports), not both".to_owned()
                } else {
                    "`kubeRestrictIpChain` is read from the kube-restrict-ip config's ipChain; do not write it".to_owned()
                },
            ));
        }
    }
    let bytes = match rangekeeper_provider::fs::read_regular(
        &path,
        MAX_KUBE_RESTRICT_IP_BYTES,
        "a kube-restrict-ip config",
    )
    .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
    {
        Ok(text) => text,
        Err(e) => {
            out.notes.push(ImportNote::error(
                Some(Location::new(&shown, None, None)),
                format!("cannot read the kube-restrict-ip config: {e}"),
            ));
            return out;
        }
    };
    let (parsed, problems) = parse_kube_restrict_ip(&bytes);
    let usable = problems.iter().all(|p| !p.error);
    for p in problems {
        let (line, column) = p.at.known();
        let at = Some(Location::new(&shown, line, column));
        out.notes.push(if p.error {
            ImportNote::error(at, p.message)
        } else {
            ImportNote::warning(at, p.message)
        });
    }
    let Some(k) = parsed else {
        return out;
    };
    // The networks go to the binary's CIDR parser even when the file has other errors, so
    // every error is reported at once; the rest is used only from a file without errors.
    out.ranges = k
        .networks
        .iter()
        .map(|n| {
            let (line, column) = n.at.known();
            ImportedRange {
                text: n.value.clone(),
                at: Location::new(&shown, line, column),
            }
        })
        .collect();
    if !usable {
        return out;
    }
    out.fields
        .insert("ports".into(), serde_json::json!(k.ports));
    out.fields.insert(
        "kubeRestrictIpChain".into(),
        serde_json::json!(k.legacy_chain()),
    );
    if let Some(chain) = &k.chain {
        if cfg.fields.contains_key("table") {
            let (line, column) = chain.at.known();
            out.notes.push(ImportNote::warning(
                Some(Location::new(&shown, line, column)),
                format!(
                    "ipChain `{}` is not used: the target's `table` names rangekeeper's table",
                    chain.value
                ),
            ));
        } else {
            out.fields
                .insert("table".into(), serde_json::json!(chain.value.as_str()));
        }
    }
    out.check_interval = Some(k.interval);
    if !cfg.fields.contains_key("ipv6") {
        out.notes.push(ImportNote::warning(
            None,
            format!(
                "kube-restrict-ip leaves IPv6 open, but this target restricts IPv6 clients on tcp {} too: only the IPv6 networks of its `kubeRestrictIp` allowedNetworks (and loopback) may connect. For kube-restrict-ip's behaviour write `ipv6: open` on the target; write `ipv6: restrict` to keep this one and silence this warning",
                config::join_ports(&k.ports.iter().copied().collect())
            ),
        ));
    }
    out
}

/// What a backend found of ours on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Live {
    /// Whether any table, chain or jump of ours exists.
    pub present: bool,
    /// The allowed prefixes read back (both families).
    pub allow: RangeSet,
    /// How the live rules differ from what we would write (empty: exactly ours).
    pub problems: Vec<String>,
}

impl Live {
    pub(crate) fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }
}

/// The firewall tool in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nftables,
    Iptables,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
        }
    }
}

/// A `hostfw` target.
#[derive(Debug)]
pub struct HostFw {
    cfg: Config,
    runner: command::Runner,
    backend: OnceCell<Backend>,
    /// Serializes writes from this process (reads need no lock: every write is atomic).
    write_lock: Mutex<()>,
}

impl HostFw {
    pub fn new(cfg: Config) -> Self {
        HostFw {
            runner: command::Runner::new(cfg.netns.clone()),
            cfg,
            backend: OnceCell::new(),
            write_lock: Mutex::new(()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The backend in use, deciding `auto` on first use.
    pub async fn backend(&self) -> Result<Backend, ProviderError> {
        self.backend
            .get_or_try_init(|| async {
                Ok(match self.cfg.backend {
                    BackendChoice::Nftables => Backend::Nftables,
                    BackendChoice::Iptables => Backend::Iptables,
                    BackendChoice::Auto => {
                        if nft::usable(&self.runner).await? {
                            Backend::Nftables
                        } else {
                            tracing::info!(target = %self.cfg.target, "nft is not usable here; using iptables");
                            Backend::Iptables
                        }
                    }
                })
            })
            .await
            .copied()
    }

    async fn live(&self, backend: Backend) -> Result<Live, ProviderError> {
        match backend {
            Backend::Nftables => Ok(nft::read(&self.runner, &self.cfg).await?.live),
            Backend::Iptables => Ok(iptables::read(&self.runner, &self.cfg).await?.0),
        }
    }

    /// Rules of ours written by the other backend (say before `backend:` changed) keep
    /// enforcing their list; name them. Best effort: if the other tool is missing, nothing.
    async fn other_backend_leftover(&self, backend: Backend) -> Option<String> {
        let (other, what) = match backend {
            Backend::Nftables => (
                Backend::Iptables,
                format!("iptables chain {}", self.cfg.table.chain()),
            ),
            Backend::Iptables => (
                Backend::Nftables,
                format!("nftables table inet {}", self.cfg.table),
            ),
        };
        let live = self.live(other).await.ok()?;
        live.present.then(|| {
            format!(
                "the {what} (written with backend {}) is still present and keeps enforcing its own list; remove it with `disable` using `backend: {}`",
                other.name(),
                other.name()
            )
        })
    }

    fn details(&self, backend: Backend) -> Vec<(String, String)> {
        let mut d = vec![
            ("backend".to_owned(), backend.name().to_owned()),
            (
                match backend {
                    Backend::Nftables => "table".to_owned(),
                    Backend::Iptables => "chain".to_owned(),
                },
                match backend {
                    Backend::Nftables => format!("inet {}", self.cfg.table),
                    Backend::Iptables => self.cfg.table.chain(),
                },
            ),
            ("ports".to_owned(), format!("tcp {}", self.cfg.ports_list())),
            ("action".to_owned(), self.cfg.action.to_string()),
        ];
        if self.cfg.ipv6 == Ipv6Mode::Open {
            d.push(("ipv6".to_owned(), "open (not restricted)".to_owned()));
        }
        if let Some(ns) = &self.cfg.netns {
            d.push(("netns".to_owned(), ns.clone()));
        }
        if let Some((path, _)) = &self.cfg.kube_restrict_ip {
            d.push(("kubeRestrictIp".to_owned(), path.display().to_string()));
        }
        d
    }
}

impl HostFw {
    /// The refusal of leases on a target whose rules are written with iptables.
    fn iptables_refusal(how: &str) -> String {
        format!(
            "it uses the iptables backend of the `hostfw` provider ({how}), which cannot store leases: {IPTABLES_NO_LEASES}"
        )
    }

    /// Make the nftables table hold `permanent` and the lease elements `leases`, from the
    /// table as read in `before` (the caller holds the write lock); confirm by reading back.
    async fn write_nft(
        &self,
        before: &nft::Table,
        permanent: &RangeSet,
        leases: &[Lease],
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let now = nft::now_f64();
        let mut elems = Vec::new();
        for l in leases {
            match nft::LeaseElem::new(l, now).map_err(ProviderError::Invalid)? {
                Some(e) => elems.push(e),
                // Stored already and ending now: its element is timing out; let it go.
                None if before.lease_comments.contains_key(&l.address) => {}
                None => {
                    return Err(ProviderError::Invalid(format!(
                        "target `{}`: lease {} ends at {}, less than a second from now: too soon for the whole-second timeout of an nftables element; grant it for longer",
                        self.cfg.target, l.id, l.expires
                    )));
                }
            }
        }
        let want: std::collections::BTreeMap<_, _> =
            elems.iter().map(|e| (e.addr, e.comment.clone())).collect();
        if before.live.present
            && before.live.problems.is_empty()
            && before.live.allow == *permanent
            && before.lease_comments == want
        {
            return Ok(Applied::unchanged());
        }
        opts.progress.message(&format!(
            "writing nftables rules for tcp {}",
            self.cfg.ports_list()
        ));
        let content = nft::Content {
            ports: self.cfg.ports.clone(),
            permanent: permanent.clone(),
            leases: elems.clone(),
        };
        nft::write(&self.runner, &self.cfg, before, &content).await?;
        let mut applied = Applied::changed();
        if !before.live.problems.is_empty() {
            applied.notes.push(format!(
                "rewrote rules that were missing, modified or declared differently: {}",
                before.live.problems.join("; ")
            ));
        }
        // The write is synchronous; confirm it by reading back. A lease element may time out
        // between the write and this read only when it had less than a few seconds left.
        let after = nft::read(&self.runner, &self.cfg).await?;
        let mut wrong = after.live.problems.clone();
        if !after.live.present {
            wrong.push("the table is missing".into());
        }
        if after.live.allow != *permanent {
            wrong.push(format!(
                "allow-list {} instead of {permanent}",
                after.live.allow
            ));
        }
        for (addr, comment) in &after.lease_comments {
            if want.get(addr) != Some(comment) {
                wrong.push(format!("an unexpected lease element {addr} (`{comment}`)"));
            }
        }
        for e in &elems {
            if e.timeout > 3 && !after.lease_comments.contains_key(&e.addr) {
                wrong.push(format!("the lease element {} is missing", e.addr));
            }
        }
        if !wrong.is_empty() {
            return Err(ProviderError::Other(format!(
                "after writing, the nftables rules read back differently: {}",
                wrong.join("; ")
            )));
        }
        Ok(applied)
    }

    /// The iptables write of `desired` (no leases), confirmed by reading back.
    async fn write_iptables(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let before = iptables::read(&self.runner, &self.cfg).await?.0;
        if before.present && before.problems.is_empty() && before.allow == *desired {
            return Ok(Applied::default());
        }
        opts.progress.message(&format!(
            "writing iptables rules for tcp {}",
            self.cfg.ports_list()
        ));
        iptables::write(&self.runner, &self.cfg, desired).await?;
        let mut applied = Applied::changed();
        if !before.problems.is_empty() {
            applied.notes.push(format!(
                "rewrote rules that were missing, modified or declared differently: {}",
                before.problems.join("; ")
            ));
        }
        let after = iptables::read(&self.runner, &self.cfg).await?.0;
        if !(after.present && after.problems.is_empty() && after.allow == *desired) {
            return Err(ProviderError::Other(format!(
                "after writing, the iptables rules read back differently: {}",
                if after.problems.is_empty() {
                    format!("allow-list {} instead of {}", after.allow, desired)
                } else {
                    after.problems.join("; ")
                }
            )));
        }
        Ok(applied)
    }
}

#[async_trait::async_trait]
impl Provider for HostFw {
    fn capabilities(&self) -> Capabilities {
        match self.cfg.backend {
            BackendChoice::Iptables => {
                capabilities().with_leases_refused(Self::iptables_refusal("`backend: iptables`"))
            }
            BackendChoice::Auto | BackendChoice::Nftables => capabilities(),
        }
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let backend = self.backend().await?;
        let (live, admitted, leases, version) = match backend {
            Backend::Nftables => {
                let t = nft::read(&self.runner, &self.cfg).await?;
                let admitted = t.admitted();
                (t.live, admitted, t.leases, Some(t.version))
            }
            Backend::Iptables => {
                let live = iptables::read(&self.runner, &self.cfg).await?.0;
                let admitted = live.allow.clone();
                (live, admitted, Vec::new(), None)
            }
        };
        let mut state = if !live.present {
            State::new(Restriction::Unrestricted)
        } else if !live.problems.is_empty() {
            // Not what we would write: the ports may be open. Report it unrestricted so the
            // plan shows a change and the next apply rewrites the rules.
            let mut s = State::new(Restriction::Unrestricted);
            s.warnings.push(format!(
                "rules missing or modified (the next apply rewrites them): {}",
                live.problems.join("; ")
            ));
            s
        } else {
            State::new(Restriction::Ranges(admitted))
        };
        state = state.with_leases(leases, version);
        state.details = self.details(backend);
        if let Some((_, chain)) = &self.cfg.kube_restrict_ip
            && let Some(w) =
                iptables::kube_restrict_ip_leftover(&self.runner, &self.cfg, chain).await
        {
            state.warnings.push(w);
        }
        if let Some(w) = self.other_backend_leftover(backend).await {
            state.warnings.push(w);
        }
        Ok(state)
    }

    /// Every address of `desired` is admitted for good; unexpired leases whose address it
    /// holds are kept (as the file provider keeps their records), the others dropped.
    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        // An empty allow-list would drop every client on the restricted ports (the API server
        // included); the binary never asks for one, and neither may anything else.
        rangekeeper_provider::refuse_empty(
            desired,
            "it would shut every client out of the restricted ports",
        )?;
        let _guard = self.write_lock.lock().await;
        match self.backend().await? {
            Backend::Iptables => self.write_iptables(desired, opts).await,
            Backend::Nftables => {
                let before = nft::read(&self.runner, &self.cfg).await?;
                let now = Timestamp::now();
                let keep: Vec<Lease> = before
                    .leases
                    .iter()
                    .filter(|l| !l.is_expired(now) && desired.contains_net(&l.net()))
                    .cloned()
                    .collect();
                self.write_nft(&before, desired, &keep, opts).await
            }
        }
    }

    /// Without the declared part of `desired`, every address of it is taken as declared:
    /// nothing is ever kept out of the ranges admitted for good (the binary calls
    /// [`Provider::apply_leased_declared`]).
    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        self.apply_leased_declared(desired, desired, leases, version, opts)
            .await
    }

    async fn apply_leased_declared(
        &self,
        declared: &RangeSet,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        rangekeeper_provider::refuse_empty(
            desired,
            "it would shut every client out of the restricted ports",
        )?;
        rangekeeper_provider::lease::refuse_unheld(desired, leases)?;
        // One element per address: a second lease of an address already leased would share
        // its element (one timeout, one record) and lose a record.
        for (i, l) in leases.iter().enumerate() {
            if let Some(other) = leases[..i].iter().find(|o| o.address == l.address) {
                return Err(ProviderError::Invalid(format!(
                    "target `{}` already holds lease {} for {} (requested by {}, until {}); the hostfw provider keeps one lease per address (one nftables set element with its own timeout), so lease {} cannot be added: wait for that lease to end or revoke it",
                    self.cfg.target,
                    other.id,
                    other.address,
                    other.requested_by,
                    other.expires,
                    l.id
                )));
            }
        }
        for l in leases {
            nft::lease_comment(l).map_err(|e| {
                ProviderError::Invalid(format!("target `{}`: {e}", self.cfg.target))
            })?;
        }
        // Check and write under this process's lock; the transaction's nonce swap makes the
        // kernel refuse the write if any other process changed the table since the re-read
        // below (see the `nft` module).
        let _guard = self.write_lock.lock().await;
        let backend = self.backend().await?;
        if backend == Backend::Iptables {
            if !leases.is_empty() {
                return Err(ProviderError::Invalid(format!(
                    "target `{}` cannot store leases: {}",
                    self.cfg.target,
                    Self::iptables_refusal(match self.cfg.backend {
                        BackendChoice::Iptables => "`backend: iptables`",
                        _ => "`backend: auto`, and `nft` is not usable here",
                    })
                )));
            }
            // No leases to keep: a plain write (iptables has no version to compare).
            return self.write_iptables(desired, opts).await;
        }
        let before = nft::read(&self.runner, &self.cfg).await?;
        if let Some(v) = version
            && v != before.version
        {
            return Err(ProviderError::Conflict(format!(
                "the nftables table inet {} changed since it was read (another writer, or a lease that expired)",
                self.cfg.table
            )));
        }
        // The declared ranges are admitted for good; an address only a lease brings is kept
        // out of them, so the kernel stops admitting it when the lease's element times out.
        let lease_only = RangeSet::from_nets(
            leases
                .iter()
                .filter(|l| !declared.contains_net(&l.net()))
                .map(Lease::net),
        );
        let permanent = desired.difference(&lease_only);
        if permanent.is_empty() {
            // Only leases would admit anyone: once they expired, every client would be shut
            // out. The binary never asks for this (a declaration is never empty).
            return Err(ProviderError::Invalid(format!(
                "target `{}`: refusing an allow-list of leases alone; once they expired every client would be shut out of the restricted ports",
                self.cfg.target
            )));
        }
        self.write_nft(&before, &permanent, leases, opts).await
    }

    async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let _guard = self.write_lock.lock().await;
        let backend = self.backend().await?;
        let changed = match backend {
            Backend::Nftables => nft::remove(&self.runner, &self.cfg).await?,
            Backend::Iptables => iptables::remove(&self.runner, &self.cfg).await?,
        };
        Ok(if changed {
            Applied::changed()
        } else {
            Applied::unchanged()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_row() {
        let c = capabilities();
        assert_eq!(c.name, "hostfw");
        assert_eq!(c.max_ranges, None);
        assert!(c.ipv4 && c.ipv6 && c.private_ranges && !c.async_apply);
        assert_eq!(c.unrestricted, UnrestrictedForm::Removed);
    }

    #[test]
    fn factory_validates_and_finds_kube_restrict_ip_path() {
        let mut fields = serde_json::Map::new();
        fields.insert("ports".into(), serde_json::json!([6443]));
        let t = TargetConfig {
            name: "cp".into(),
            base_dir: PathBuf::from("/etc/rk"),
            fields,
        };
        assert!(factory(&t).is_ok());
        assert_eq!(kube_restrict_ip_path(&t), None);
        let mut t2 = t.clone();
        t2.fields
            .insert("kubeRestrictIp".into(), serde_json::json!("krip.yaml"));
        assert_eq!(
            kube_restrict_ip_path(&t2),
            Some(PathBuf::from("/etc/rk/krip.yaml"))
        );
        let mut t3 = t;
        t3.fields.insert("bogus".into(), serde_json::json!(1));
        assert!(factory(&t3).is_err());
    }

    /// #11.1, #10.21: the import hook hands the file's ports and ipChain to the factory as
    /// fields, its networks as located ranges, and refuses what would conflict.
    #[test]
    fn import_hook_reads_the_kube_restrict_ip_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("krip.yaml"),
            "restrictedPorts: [10254, 9100]\nallowedNetworks:\n  - 10.0.0.0/8\nipChain: MY-CHAIN\ncheckInterval: 30s\n",
        )
        .unwrap();
        let target = |fields: serde_json::Value| TargetConfig {
            name: "cp".into(),
            base_dir: dir.path().to_owned(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        };
        assert_eq!(
            import(&target(serde_json::json!({"ports": [1]}))),
            Imported::default()
        );

        let t = target(serde_json::json!({"kubeRestrictIp": "krip.yaml", "ipv6": "restrict"}));
        let got = import(&t);
        assert!(got.notes.is_empty(), "{:?}", got.notes);
        assert_eq!(got.files, vec![dir.path().join("krip.yaml")]);
        assert_eq!(got.check_interval, Some(std::time::Duration::from_secs(30)));
        assert_eq!(got.ranges.len(), 1);
        assert_eq!(got.ranges[0].text, "10.0.0.0/8");
        assert_eq!(
            (got.ranges[0].at.line, got.ranges[0].at.column),
            (Some(3), Some(5))
        );
        assert_eq!(got.fields["ports"], serde_json::json!([9100, 10254]));
        assert_eq!(got.fields["table"], serde_json::json!("MY-CHAIN"));
        let mut merged = t.clone();
        merged.fields.extend(got.fields);
        let built = Config::from_target(&merged).unwrap();
        assert_eq!(built.table.as_str(), "MY-CHAIN");
        assert_eq!(built.table.chain(), "RK-MY-CHAIN");
        assert_eq!(built.ports_list(), "9100,10254");
        assert_eq!(built.kube_restrict_ip.unwrap().1, "MY-CHAIN");

        // `table` written: it wins, with a warning at ipChain; no `ipv6`: the IPv6 warning.
        let got = import(&target(
            serde_json::json!({"kubeRestrictIp": "krip.yaml", "table": "t"}),
        ));
        assert!(!got.has_errors());
        assert!(!got.fields.contains_key("table"));
        assert_eq!(got.notes.len(), 2, "{:?}", got.notes);
        assert!(
            got.notes[0]
                .message
                .contains("ipChain `MY-CHAIN` is not used")
        );
        assert_eq!(got.notes[0].at.as_ref().unwrap().line, Some(4));
        assert!(
            got.notes[1]
                .message
                .contains("kube-restrict-ip leaves IPv6 open")
        );

        // Both `ports` and `kubeRestrictIp`; a missing file (still watched).
        let got = import(&target(
            serde_json::json!({"kubeRestrictIp": "krip.yaml", "ports": [1]}),
        ));
        assert!(got.has_errors() && got.notes[0].message.contains("not both"));
        let got = import(&target(serde_json::json!({"kubeRestrictIp": "gone.yaml"})));
        assert!(got.has_errors(), "{got:?}");
        assert_eq!(got.files, vec![dir.path().join("gone.yaml")]);
        // Without the import, the factory says so instead of reading the file itself.
        let e = factory(&target(serde_json::json!({"kubeRestrictIp": "krip.yaml"})))
            .err()
            .unwrap();
        assert!(e.to_string().contains("were not imported"), "{e}");
    }

    #[tokio::test]
    async fn an_empty_allow_list_is_refused_before_any_command_runs() {
        let mut fields = serde_json::Map::new();
        fields.insert("ports".into(), serde_json::json!([6443]));
        // A namespace that does not exist: any command run would fail as NotFound.
        fields.insert("netns".into(), serde_json::json!("rk-never-created"));
        let t = TargetConfig {
            name: "cp".into(),
            base_dir: PathBuf::from("/etc/rk"),
            fields,
        };
        let p = factory(&t).unwrap();
        let err = p
            .apply(&RangeSet::new(), &ApplyOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Invalid(_)), "{err:?}");
    }
}
