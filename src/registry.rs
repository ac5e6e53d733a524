//! Provider name -> factory. Each built-in provider sits behind a Cargo feature.

use rangekeeper_provider::{Capabilities, Provider, ProviderError, ProviderFactory, TargetConfig};

/// A built-in provider: its static capabilities and its factory.
pub struct Entry {
    pub capabilities: fn() -> Capabilities,
    pub factory: ProviderFactory,
}

/// Every built-in provider, in display order.
pub fn entries() -> Vec<Entry> {
    vec![
        Entry {
            capabilities: rangekeeper_provider_file::capabilities,
            factory: rangekeeper_provider_file::factory,
        },
        #[cfg(feature = "aks")]
        Entry {
            capabilities: rangekeeper_provider_aks::capabilities,
            factory: rangekeeper_provider_aks::factory,
        },
        #[cfg(feature = "eks")]
        Entry {
            capabilities: rangekeeper_provider_eks::capabilities,
            factory: rangekeeper_provider_eks::factory,
        },
        #[cfg(feature = "hostfw")]
        Entry {
            capabilities: rangekeeper_provider_hostfw::capabilities,
            factory: rangekeeper_provider_hostfw::factory,
        },
    ]
}

/// The names of every built-in provider.
pub fn names() -> Vec<&'static str> {
    entries().iter().map(|e| (e.capabilities)().name).collect()
}

/// Build the provider for one target.
pub fn build(provider: &str, cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let entry = entries()
        .into_iter()
        .find(|e| (e.capabilities)().name == provider)
        .ok_or_else(|| ProviderError::Config(format!("unknown provider `{provider}`")))?;
    (entry.factory)(cfg)
}
