//! The host firewall provider (`provider: hostfw`): restricts new TCP connections to a host's
//! ports (a self-managed API server, hostNetwork pods) to an allow-list, with an nftables table
//! of its own (iptables fallback), atomically, for IPv4 and IPv6. It replaces kube-restrict-ip
//! and reads its config file unchanged ([`load_kube_restrict_ip`]).
//!
//! Target fields (all camelCase, unknown fields rejected):
//! - `ports: [6443, 10254]` — TCP ports to restrict (required unless `kubeRestrictIp` is given);
//! - `backend: auto | nftables | iptables` — `auto` uses nftables when `nft` works here;
//! - `table: rangekeeper` — nftables table `inet <table>`; iptables chain `RK-<table>`
//!   (letters, digits, `_`, `-`; at most 25 characters; several tables may coexist);
//! - `action: reject | drop` — reject answers with a TCP reset, drop stays silent;
//! - `kubeRestrictIp: /etc/kube-restrict-ip/config.yaml` — take the ports from a
//!   kube-restrict-ip config file (the binary adds its `allowedNetworks` to the allow-list);
//! - `iptablesVariant: legacy | nft` — with the iptables backend, run `iptables-legacy-*` or
//!   `iptables-nft-*` rather than the `iptables-*` on PATH (match the host's kube-proxy);
//! - `netns: <name>` — run nft/iptables inside this named network namespace
//!   (`ip netns exec <name> ...`), e.g. to manage a container's or a test's namespace.

mod command;
mod config;
mod iptables;
mod nft;
mod ranges;

use std::path::PathBuf;

use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, Restriction, State,
    TargetConfig, UnrestrictedForm,
};
use tokio::sync::{Mutex, OnceCell};

pub use config::{
    Action, BackendChoice, Config, DEFAULT_TABLE, IptablesVariant, KUBE_RESTRICT_IP_DEFAULT_CHAIN,
    KUBE_RESTRICT_IP_DEFAULT_INTERVAL, KubeRestrictIp, MAX_TABLE_LEN, TableName,
    load_kube_restrict_ip, parse_kube_restrict_ip,
};

/// The static capabilities row of `hostfw`.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        "hostfw",
        "Host firewall: an nftables table (iptables fallback) limiting who may open TCP connections to this host's ports",
    )
    .with_ipv6(true)
    .with_private_ranges(true)
    .with_unrestricted(UnrestrictedForm::Removed)
}

/// Build the provider for one target.
pub fn factory(cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    Ok(Box::new(HostFw::new(Config::from_target(cfg)?)))
}

/// The kube-restrict-ip file a target points at (`kubeRestrictIp`), resolved against the
/// declaration's directory, so the binary can add its `allowedNetworks` to the target's allow-list.
pub fn kube_restrict_ip_path(cfg: &TargetConfig) -> Option<PathBuf> {
    let path = PathBuf::from(cfg.fields.get("kubeRestrictIp")?.as_str()?);
    Some(if path.is_absolute() {
        path
    } else {
        cfg.base_dir.join(path)
    })
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
        if let Some(ns) = &self.cfg.netns {
            d.push(("netns".to_owned(), ns.clone()));
        }
        if let Some(k) = &self.cfg.kube_restrict_ip {
            d.push(("kubeRestrictIp".to_owned(), k.path.display().to_string()));
        }
        d
    }
}

#[async_trait::async_trait]
impl Provider for HostFw {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let backend = self.backend().await?;
        let live = self.live(backend).await?;
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
            State::new(Restriction::Ranges(live.allow))
        };
        state.details = self.details(backend);
        if let Some(k) = &self.cfg.kube_restrict_ip
            && let Some(w) =
                iptables::kube_restrict_ip_leftover(&self.runner, &self.cfg, &k.chain).await
        {
            state.warnings.push(w);
        }
        if let Some(w) = self.other_backend_leftover(backend).await {
            state.warnings.push(w);
        }
        Ok(state)
    }

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
        let backend = self.backend().await?;
        let before = self.live(backend).await?;
        if before.present && before.problems.is_empty() && before.allow == *desired {
            return Ok(Applied::default());
        }
        opts.progress.message(&format!(
            "writing {} rules for tcp {}",
            backend.name(),
            self.cfg.ports_list()
        ));
        match backend {
            Backend::Nftables => nft::write(&self.runner, &self.cfg, desired).await?,
            Backend::Iptables => iptables::write(&self.runner, &self.cfg, desired).await?,
        }
        let mut applied = Applied::changed();
        if !before.problems.is_empty() {
            applied.notes.push(format!(
                "rewrote rules that were missing, modified or declared differently: {}",
                before.problems.join("; ")
            ));
        }
        // The write is synchronous; confirm it by reading back.
        let after = self.live(backend).await?;
        if !(after.present && after.problems.is_empty() && after.allow == *desired) {
            return Err(ProviderError::Other(format!(
                "after writing, the {} rules read back differently: {}",
                backend.name(),
                if after.problems.is_empty() {
                    format!("allow-list {} instead of {}", after.allow, desired)
                } else {
                    after.problems.join("; ")
                }
            )));
        }
        Ok(applied)
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
