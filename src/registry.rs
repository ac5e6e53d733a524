//! Provider name -> factory. Each built-in provider sits behind a Cargo feature.

//! This table is the one place in the binary that names providers: everything else reaches
//! them through it (their factories, their import hooks, their stand-alone modes).

use std::path::PathBuf;

use rangekeeper_provider::{
    Capabilities, Discoverer, DiscoveryFactory, ImportHook, Imported, Provider, ProviderError,
    ProviderFactory, QuotaScope, TargetConfig, import::no_import, no_quota_scope,
};

use crate::declaration::{Catalog, Standalone};

/// A built-in provider: its static capabilities, its factory and its import hook.
pub struct Entry {
    /// The name in `provider:` (the same as `capabilities().name`).
    pub name: &'static str,
    pub capabilities: fn() -> Capabilities,
    pub factory: ProviderFactory,
    /// Reads what a target takes from files of the provider's own format.
    pub import: ImportHook,
    /// Lists the targets of a `discover:` template (providers that can discover).
    pub discover: Option<DiscoveryFactory>,
    /// The API quota a target's calls count against (`reconcile` bounds each one's
    /// concurrency).
    pub quota_scope: QuotaScope,
}

/// Every built-in provider, in display order.
pub fn entries() -> Vec<Entry> {
    vec![
        Entry {
            name: "file",
            capabilities: rangekeeper_provider_file::capabilities,
            factory: rangekeeper_provider_file::factory,
            import: no_import,
            discover: None,
            quota_scope: no_quota_scope,
        },
        #[cfg(feature = "aks")]
        Entry {
            name: "aks",
            capabilities: rangekeeper_provider_aks::capabilities,
            factory: rangekeeper_provider_aks::factory,
            import: no_import,
            discover: Some(rangekeeper_provider_aks::discovery_factory),
            quota_scope: rangekeeper_provider_aks::quota_scope,
        },
        #[cfg(feature = "eks")]
        Entry {
            name: "eks",
            capabilities: rangekeeper_provider_eks::capabilities,
            factory: rangekeeper_provider_eks::factory,
            import: no_import,
            discover: Some(rangekeeper_provider_eks::discovery_factory),
            quota_scope: rangekeeper_provider_eks::quota_scope,
        },
        #[cfg(feature = "gke")]
        Entry {
            name: rangekeeper_provider_gke::NAME,
            capabilities: rangekeeper_provider_gke::capabilities,
            factory: rangekeeper_provider_gke::factory,
            import: no_import,
            discover: Some(rangekeeper_provider_gke::discovery_factory),
            quota_scope: rangekeeper_provider_gke::quota_scope,
        },
        #[cfg(feature = "hostfw")]
        Entry {
            name: "hostfw",
            capabilities: rangekeeper_provider_hostfw::capabilities,
            factory: rangekeeper_provider_hostfw::factory,
            import: rangekeeper_provider_hostfw::import,
            discover: None,
            quota_scope: no_quota_scope,
        },
        #[cfg(feature = "kubernetes")]
        Entry {
            name: rangekeeper_provider_kubernetes::netpol::NAME,
            capabilities: rangekeeper_provider_kubernetes::netpol_capabilities,
            factory: rangekeeper_provider_kubernetes::netpol_factory,
            import: no_import,
            discover: None,
            quota_scope: no_quota_scope,
        },
        #[cfg(feature = "kubernetes")]
        Entry {
            name: rangekeeper_provider_kubernetes::calico::NAME,
            capabilities: rangekeeper_provider_kubernetes::calico_capabilities,
            factory: rangekeeper_provider_kubernetes::calico_factory,
            import: no_import,
            discover: None,
            quota_scope: no_quota_scope,
        },
    ]
}

/// The names of every built-in provider.
pub fn names() -> Vec<&'static str> {
    entries().iter().map(|e| e.name).collect()
}

/// Build the provider for one target.
pub fn build(provider: &str, cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    // Every error and note a provider reports is scrubbed of bearer tokens, whatever the
    // provider (or the server behind it) put in them.
    match entries().into_iter().find(|e| e.name == provider) {
        Some(entry) => (entry.factory)(cfg).map(rangekeeper_provider::secret::scrubbed),
        // Not built in: a plugin (`plugin:` on the target, or `rangekeeper-provider-<name>`
        // on PATH) served over the exec protocol.
        None => rangekeeper_provider_exec::build(provider, cfg)
            .map(rangekeeper_provider::secret::scrubbed),
    }
}

/// The API quota a target's calls count against (see [`QuotaScope`]); a plugin's targets
/// share none.
pub fn quota_scope(provider: &str, cfg: &TargetConfig) -> Option<String> {
    entries()
        .into_iter()
        .find(|e| e.name == provider)
        .and_then(|e| (e.quota_scope)(cfg))
}

/// The static capabilities of a built-in provider.
pub fn capabilities(provider: &str) -> Option<Capabilities> {
    entries()
        .into_iter()
        .find(|e| e.name == provider)
        .map(|e| (e.capabilities)())
}

/// The built-in providers that can discover targets (`discover:` templates).
pub fn discovering() -> Vec<&'static str> {
    entries()
        .iter()
        .filter(|e| e.discover.is_some())
        .map(|e| e.name)
        .collect()
}

/// Build the discoverer of a `discover:` template (`cfg` holds its provider fields), its
/// errors scrubbed of bearer tokens. No network call happens here.
pub fn discoverer(
    provider: &str,
    cfg: &TargetConfig,
) -> Result<Box<dyn Discoverer>, ProviderError> {
    match entries()
        .into_iter()
        .find(|e| e.name == provider)
        .and_then(|e| e.discover)
    {
        Some(factory) => factory(cfg).map(rangekeeper_provider::discovery::scrubbed),
        None => Err(ProviderError::Config(format!(
            "template `{}`: the `{provider}` provider cannot discover targets (providers that can: {})",
            cfg.name,
            discovering().join(", ")
        ))),
    }
}

/// Call the import hook of a target's provider (nothing for an unknown provider).
pub fn import(provider: &str, cfg: &TargetConfig) -> Imported {
    entries()
        .into_iter()
        .find(|e| e.name == provider)
        .map_or_else(Imported::default, |e| (e.import)(cfg))
}

/// The built-in providers this binary was compiled without (their Cargo features off), each
/// with the feature that brings it.
pub fn left_out() -> Vec<(&'static str, &'static str)> {
    let all: [(&'static str, &'static str, bool); 6] = [
        ("aks", "aks", cfg!(feature = "aks")),
        ("eks", "eks", cfg!(feature = "eks")),
        ("gke", "gke", cfg!(feature = "gke")),
        ("hostfw", "hostfw", cfg!(feature = "hostfw")),
        ("netpol", "kubernetes", cfg!(feature = "kubernetes")),
        ("calico", "kubernetes", cfg!(feature = "kubernetes")),
    ];
    all.into_iter()
        .filter(|(_, _, built)| !built)
        .map(|(name, feature, _)| (name, feature))
        .collect()
}

/// What the declaration loader needs of the providers.
pub fn catalog() -> Catalog {
    Catalog {
        names: names(),
        left_out: left_out(),
        import,
        discovers: discovering(),
    }
}

/// The providers' stand-alone modes of `reconcile`: each enforces one target built from
/// another tool's config file (read through the provider's import hook) instead of a
/// declaration file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// Enforce a kube-restrict-ip config file (restrictedPorts, allowedNetworks,
    /// checkInterval, ipChain) with the hostfw provider instead of a declaration file
    #[arg(long, value_name = "FILE")]
    pub kube_restrict_ip: Option<PathBuf>,
    /// With --kube-restrict-ip: accept broad allowedNetworks (wider than /8 for IPv4 or /32
    /// for IPv6, such as 0.0.0.0/0), which are refused otherwise
    #[arg(long, requires = "kube_restrict_ip")]
    pub allow_broad: bool,
    /// With --kube-restrict-ip: leave IPv6 clients unrestricted on the restricted ports, as
    /// kube-restrict-ip does (by default IPv6 is held to allowedNetworks like IPv4)
    #[arg(long, requires = "kube_restrict_ip")]
    pub leave_ipv6_open: bool,
}

/// The stand-alone target the flags ask for, if any.
pub fn standalone(args: &StandaloneArgs) -> Result<Option<Standalone>, String> {
    let Some(file) = &args.kube_restrict_ip else {
        return Ok(None);
    };
    if !names().contains(&"hostfw") {
        return Err(
            "--kube-restrict-ip needs the hostfw provider, which this rangekeeper was built without"
                .into(),
        );
    }
    let mut fields = serde_json::Map::new();
    fields.insert(
        "kubeRestrictIp".into(),
        serde_json::Value::String(file.display().to_string()),
    );
    if args.leave_ipv6_open {
        fields.insert("ipv6".into(), serde_json::Value::String("open".into()));
    }
    Ok(Some(Standalone {
        file: file.clone(),
        what: "the kube-restrict-ip config",
        target: "kube-restrict-ip".into(),
        provider: "hostfw".into(),
        fields,
        allow_broad: args.allow_broad,
        interval_from_config: true,
        advice: vec![
            (
                "set `allowBroad: true` on the target",
                "pass `--allow-broad`",
            ),
            ("its `kubeRestrictIp` allowedNetworks", "allowedNetworks"),
            (
                "write `ipv6: open` on the target; write `ipv6: restrict` to keep this one and silence this warning",
                "pass `--leave-ipv6-open`",
            ),
        ],
    }))
}
