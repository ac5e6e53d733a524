//! The connection keys every Kubernetes target shares: `kubeconfig`, `context`, `inCluster`,
//! and `force` (take fields over from another field manager).

use std::path::{Path, PathBuf};

use rangekeeper_provider::ProviderError;

use crate::kube::Source;

/// The connection keys as written.
#[derive(Debug, Default)]
pub struct RawConnection {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub in_cluster: bool,
    pub force: bool,
}

/// Where the target's cluster is and how conflicts are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub source: Source,
    /// Take fields owned by another field manager (`force: true`) instead of refusing.
    pub force: bool,
}

impl Connection {
    pub fn from_raw(
        target: &str,
        raw: RawConnection,
        base_dir: &Path,
    ) -> Result<Connection, ProviderError> {
        let source = if raw.in_cluster {
            if raw.kubeconfig.is_some() || raw.context.is_some() {
                return Err(ProviderError::Config(format!(
                    "target `{target}`: `inCluster: true` uses the pod's service account; remove `kubeconfig`/`context`, or remove `inCluster`"
                )));
            }
            Source::InCluster
        } else {
            if raw.context.as_deref() == Some("") {
                return Err(ProviderError::Config(format!(
                    "target `{target}`: `context` is empty; name a context of the kubeconfig, or leave the key out for its current context"
                )));
            }
            Source::Kubeconfig {
                path: raw
                    .kubeconfig
                    .map(|p| if p.is_absolute() { p } else { base_dir.join(p) }),
                context: raw.context,
            }
        };
        Ok(Connection {
            source,
            force: raw.force,
        })
    }
}
