//! The exec provider: a target whose provider is not built in is served by a plugin
//! executable (`rangekeeper-provider-<name>` on `PATH`, or the target's `plugin:` path)
//! speaking the JSON-lines protocol of [`rangekeeper_provider::protocol`].
//!
//! One plugin process serves every call for its target until the provider is dropped; a
//! process that died is started again on the next call (a restart, not a retry: the call
//! that saw it die fails with a typed error, and the binary's one retry policy decides).
//! Every call has a timeout; on timeout, on a broken reply and on drop the plugin's whole
//! process group is killed. Each reply line is read with a byte cap, so a plugin printing a
//! gigabyte does not grow rangekeeper's memory. The plugin's stderr lines go to the log with
//! the target's name, and the last of them are quoted when the plugin fails.

mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rangekeeper_provider::protocol::{self, Checked, Operation, WireTarget};
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, State,
    TargetConfig, Violation,
};

use session::Plugin;

/// The target fields the host reads itself and does not forward to the plugin.
pub const HOST_FIELDS: [&str; 3] = ["plugin", "pluginTimeout", "pluginApplyTimeout"];

/// Default limit on `capabilities`, `check` and `current` calls (`pluginTimeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit on `apply` and `disable` calls, which may wait for a slow target
/// (`pluginApplyTimeout`).
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest reply line read from a plugin.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// How to run the plugin of one target.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The provider name (`provider:` of the target).
    pub provider: String,
    pub exe: PathBuf,
    pub timeout: Duration,
    pub apply_timeout: Duration,
    /// The most bytes one reply line may have.
    pub max_line: usize,
    /// The target as sent to the plugin (host fields removed).
    pub target: WireTarget,
    /// The directory the plugin runs in (the declaration's directory).
    pub cwd: Option<PathBuf>,
}

impl PluginSpec {
    /// Resolve the plugin of a target: `plugin:` (relative to the declaration file) when
    /// given, else `rangekeeper-provider-<provider>` on `PATH`.
    pub fn resolve(provider: &str, cfg: &TargetConfig) -> Result<PluginSpec, ProviderError> {
        let name = &cfg.name;
        let exe = match cfg.fields.get("plugin") {
            Some(serde_json::Value::String(p)) if !p.is_empty() => {
                let p = Path::new(p);
                // `components()` drops the `./` a join in the current directory adds.
                let exe: PathBuf = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cfg.base_dir.join(p).components().collect()
                };
                if !exe.is_file() {
                    return Err(ProviderError::Config(format!(
                        "target `{name}`: `plugin` {} is not a file",
                        exe.display()
                    )));
                }
                exe
            }
            Some(other) => {
                return Err(ProviderError::Config(format!(
                    "target `{name}`: `plugin` must be the path of an executable, not {other}"
                )));
            }
            None => protocol::find_plugin(provider).ok_or_else(|| {
                ProviderError::Config(format!(
                    "target `{name}`: provider `{provider}` is not built in and no \
                     `{}{provider}` was found on PATH (or give `plugin: /path/to/exe`)",
                    protocol::PLUGIN_PREFIX
                ))
            })?,
        };
        let duration = |field: &str, default| match cfg.fields.get(field) {
            None => Ok(default),
            Some(v) => parse_duration(v)
                .map_err(|e| ProviderError::Config(format!("target `{name}`: `{field}` {e}"))),
        };
        // The plugin runs in the declaration's directory, so a relative `baseDir` would be
        // resolved twice: send it absolute.
        let base_dir = std::path::absolute(&cfg.base_dir).unwrap_or_else(|_| cfg.base_dir.clone());
        let mut target = WireTarget::from_config(cfg);
        target.base_dir = base_dir.display().to_string();
        for f in HOST_FIELDS {
            target.fields.remove(f);
        }
        Ok(PluginSpec {
            provider: provider.to_owned(),
            exe,
            timeout: duration("pluginTimeout", DEFAULT_TIMEOUT)?,
            apply_timeout: duration("pluginApplyTimeout", DEFAULT_APPLY_TIMEOUT)?,
            max_line: MAX_LINE_BYTES,
            target,
            cwd: base_dir.is_dir().then_some(base_dir),
        })
    }
}

/// A duration as seconds (a number) or text with a unit: `500ms`, `30s`, `5m`, `1h`.
fn parse_duration(v: &serde_json::Value) -> Result<Duration, String> {
    let bad = || format!("must be a duration such as `30s`, `500ms` or `5m`, not {v}");
    let d = match v {
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(bad)?,
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: u64 = num.parse().map_err(|_| bad())?;
            match unit {
                "ms" => Duration::from_millis(n),
                "s" | "" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// Build the provider of a target served by a plugin: starts the plugin, negotiates the
/// protocol and reads its capabilities.
pub fn build(provider: &str, cfg: &TargetConfig) -> Result<Box<dyn Provider>, ProviderError> {
    let spec = PluginSpec::resolve(provider, cfg)?;
    Ok(Box::new(ExecProvider::start(spec)?))
}

/// What a plugin can do in general (no target), for `rangekeeper providers`.
pub fn general_capabilities(
    provider: &str,
    exe: &Path,
    timeout: Duration,
) -> Result<Capabilities, ProviderError> {
    let spec = PluginSpec {
        provider: provider.to_owned(),
        exe: exe.to_path_buf(),
        timeout,
        apply_timeout: timeout,
        max_line: MAX_LINE_BYTES,
        target: WireTarget {
            name: String::new(),
            base_dir: String::new(),
            fields: Default::default(),
        },
        cwd: None,
    };
    Plugin::new(spec).call_untargeted_capabilities()
}

/// A target served by a plugin process.
pub struct ExecProvider {
    plugin: Arc<Plugin>,
    caps: Capabilities,
}

impl ExecProvider {
    /// Start the plugin and read its capabilities for this target.
    pub fn start(spec: PluginSpec) -> Result<ExecProvider, ProviderError> {
        let plugin = Arc::new(Plugin::new(spec));
        let caps = plugin.call::<Capabilities>(Operation::Capabilities, None)?;
        Ok(ExecProvider { plugin, caps })
    }

    /// How many plugin processes were started so far (the first, then restarts).
    pub fn starts(&self) -> usize {
        self.plugin.starts()
    }

    /// Run a blocking call on its own thread, so a slow plugin does not hold up the async
    /// runtime (other targets go on).
    async fn call_async<T>(
        &self,
        op: Operation,
        opts: Option<&ApplyOptions>,
    ) -> Result<T, ProviderError>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        let plugin = self.plugin.clone();
        let progress = opts.map(|o| o.progress.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("rangekeeper-plugin-call".into())
            .spawn(move || {
                let r = plugin.call::<T>(op, progress.as_deref());
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            return Err(ProviderError::Other(format!(
                "{}: cannot start a thread for the call: {e}",
                self.plugin.label()
            )));
        }
        rx.await.unwrap_or_else(|_| {
            Err(ProviderError::Other(format!(
                "{}: the call ended without a result",
                self.plugin.label()
            )))
        })
    }
}

#[async_trait::async_trait]
impl Provider for ExecProvider {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        let op = Operation::Check {
            ranges: protocol::wire_ranges(desired),
        };
        match self.plugin.call::<Checked>(op, None) {
            Ok(c) => c.violations,
            // A check that could not run refuses the set: nothing is applied unchecked.
            Err(e) => vec![Violation::new(format!("the plugin's check failed: {e}"))],
        }
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let state: State = self.call_async(Operation::Current, None).await?;
        if state.restriction.ranges().is_some_and(RangeSet::is_empty) {
            return Err(ProviderError::Other(format!(
                "{}: `current` reported an empty list of ranges; a target that admits \
                 everyone is reported as {{\"kind\":\"unrestricted\"}}, and one that admits \
                 no one cannot be managed",
                self.plugin.label()
            )));
        }
        Ok(state)
    }

    async fn preflight(
        &self,
        desired: &RangeSet,
        current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        let op = Operation::Preflight {
            ranges: protocol::wire_ranges(desired),
            current: current.clone(),
        };
        match self.call_async::<Checked>(op, None).await {
            Ok(c) => Ok(c.violations),
            // A plugin older than `preflight` has none: the trait's default.
            Err(ProviderError::Unknown { kind, .. }) if kind == protocol::UNSUPPORTED => {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        if desired.is_empty() {
            return Err(ProviderError::Invalid(
                "an empty allow-list is never applied; use `rangekeeper disable` to lift \
                 the restriction"
                    .into(),
            ));
        }
        let op = Operation::Apply {
            ranges: protocol::wire_ranges(desired),
            wait: opts.wait,
        };
        self.call_async(op, Some(opts)).await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        self.call_async(Operation::Disable { wait: opts.wait }, Some(opts))
            .await
    }

    /// Sent only to a plugin whose capabilities say it stores leases; an older plugin that
    /// does not know the operation answers `unsupported`, which reads as a refusal.
    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        if !self.capabilities().leases {
            return Err(ProviderError::Invalid(format!(
                "the `{}` plugin cannot store leases",
                self.capabilities().name
            )));
        }
        if desired.is_empty() {
            return Err(ProviderError::Invalid(
                "an empty allow-list is never applied; use `rangekeeper disable` to lift \
                 the restriction"
                    .into(),
            ));
        }
        let op = Operation::ApplyLeased {
            ranges: protocol::wire_ranges(desired),
            leases: leases.to_vec(),
            version: version.map(str::to_owned),
            wait: opts.wait,
        };
        self.call_async(op, Some(opts)).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_numbers_and_units() {
        let d = |v: serde_json::Value| parse_duration(&v);
        assert_eq!(d(serde_json::json!(2)), Ok(Duration::from_secs(2)));
        assert_eq!(
            d(serde_json::json!("500ms")),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(d(serde_json::json!("5m")), Ok(Duration::from_secs(300)));
        assert!(d(serde_json::json!("0s")).is_err());
        assert!(d(serde_json::json!("soon")).unwrap_err().contains("`30s`"));
        assert!(d(serde_json::json!(-1)).is_err());
    }
}
