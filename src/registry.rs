//! Provider name -> factory. Each built-in provider sits behind a Cargo feature.

use rangekeeper_provider::{Capabilities, Provider, ProviderError, ProviderFactory, TargetConfig};

/// A built-in provider: its static capabilities and its factory.
pub struct Entry {
    /// The name in `provider:` (the same as `capabilities().name`).
    pub name: &'static str,
    pub capabilities: fn() -> Capabilities,
    pub factory: ProviderFactory,
}

/// Every built-in provider, in display order.
pub fn entries() -> Vec<Entry> {
    vec![
        Entry {
            name: "file",
            capabilities: rangekeeper_provider_file::capabilities,
            factory: rangekeeper_provider_file::factory,
        },
        #[cfg(feature = "aks")]
        Entry {
            name: "aks",
            capabilities: rangekeeper_provider_aks::capabilities,
            factory: rangekeeper_provider_aks::factory,
        },
        #[cfg(feature = "eks")]
        Entry {
            name: "eks",
            capabilities: rangekeeper_provider_eks::capabilities,
            factory: rangekeeper_provider_eks::factory,
        },
        #[cfg(feature = "gke")]
        Entry {
            name: rangekeeper_provider_gke::NAME,
            capabilities: rangekeeper_provider_gke::capabilities,
            factory: rangekeeper_provider_gke::factory,
        },
        #[cfg(feature = "hostfw")]
        Entry {
            name: "hostfw",
            capabilities: rangekeeper_provider_hostfw::capabilities,
            factory: rangekeeper_provider_hostfw::factory,
        },
    ]
}

/// The names of every built-in provider.
pub fn names() -> Vec<&'static str> {
    entries().iter().map(|e| e.name).collect()
}

/// Build the provider for one target.
pub fn build(provider: &str, cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let entry = entries()
        .into_iter()
        .find(|e| e.name == provider)
        .ok_or_else(|| ProviderError::Config(format!("unknown provider `{provider}`")))?;
    // Every error and note a provider reports is scrubbed of bearer tokens, whatever the
    // provider (or the server behind it) put in them.
    (entry.factory)(cfg).map(rangekeeper_provider::secret::scrubbed)
}

/// Ranges that providers import from their own config files, merged into the targets'
/// desired sets at load time: a `hostfw` target's `kubeRestrictIp` file contributes its
/// `allowedNetworks`, so kube-restrict-ip users switch without rewriting anything. Returns
/// the problems found, located at the field that names the file.
pub fn import_ranges(
    decl: &mut crate::declaration::Declaration,
    strict: bool,
) -> Vec<crate::declaration::Diagnostic> {
    #[allow(unused_mut)]
    let mut diags = Vec::new();
    #[cfg(feature = "hostfw")]
    for t in decl.targets.values_mut() {
        use crate::declaration::{Diagnostic, Severity};
        if t.provider != "hostfw" {
            continue;
        }
        let Some(path) = rangekeeper_provider_hostfw::kube_restrict_ip_path(&t.config) else {
            continue;
        };
        let pos = t.field_pos.get("kubeRestrictIp").copied().unwrap_or(t.pos);
        let diag = |severity, message: String| Diagnostic {
            severity,
            file: decl.file.clone(),
            line: Some(pos.line),
            column: Some(pos.column),
            target: Some(t.name.clone()),
            message: format!("target `{}`: {message}", t.name),
        };
        let k = match rangekeeper_provider_hostfw::load_kube_restrict_ip(&path) {
            Ok(k) => k,
            Err(e) => {
                diags.push(diag(Severity::Error, e.to_string()));
                continue;
            }
        };
        let mut nets = Vec::new();
        for n in &k.networks {
            match rangekeeper_cidr::parse(n) {
                Ok(p) => {
                    if p.host_bits {
                        let msg = format!(
                            "{}: allowedNetworks `{n}` has host bits set; using the network boundary `{}`",
                            path.display(),
                            p.net
                        );
                        if strict || t.policy.strict {
                            diags.push(diag(
                                Severity::Error,
                                format!("{msg} (strict mode rejects it)"),
                            ));
                            continue;
                        }
                        diags.push(diag(Severity::Warning, msg));
                    }
                    nets.push(p.net);
                }
                Err(e) => diags.push(diag(
                    Severity::Error,
                    format!("{}: allowedNetworks: invalid CIDR {e}", path.display()),
                )),
            }
        }
        t.desired = t
            .desired
            .union(&rangekeeper_cidr::RangeSet::from_nets(nets));
        t.allow_items.extend(k.networks.iter().cloned());
    }
    let _ = (&decl, strict);
    diags
}
