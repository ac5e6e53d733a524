//! The provider contract of rangekeeper.
//!
//! A declared allow-list is parsed once into a canonical [`RangeSet`]; every target is a
//! [`Provider`] that can read its current [`Restriction`] and apply a new one. Everything
//! else (plan, apply, reconcile) is the same diff between the two, done by the binary.
//!
//! A provider instance is bound to one target: the binary's registry builds it from the
//! target's provider-specific fields ([`TargetConfig`]) with a [`ProviderFactory`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod fs;
pub mod secret;

pub use secret::Secret;

pub use rangekeeper_cidr as cidr;
pub use rangekeeper_cidr::RangeSet;

/// What "no restriction" looks like on a target, so `disable` and `current` agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnrestrictedForm {
    /// An empty list lifts the restriction (AKS). Applying an empty list by accident opens
    /// the target to the whole internet, so the binary never does it outside `disable`.
    EmptyList,
    /// The list `0.0.0.0/0` (and `::/0`) lifts the restriction (EKS).
    AllAddresses,
    /// The restriction is lifted by removing the rules, file or object altogether.
    Removed,
}

/// What a provider can hold. The binary checks a desired set against these before any call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    /// The provider's name as written in `provider:` of a target.
    pub name: &'static str,
    /// One line for `rangekeeper providers`.
    pub description: &'static str,
    /// Most prefixes the target accepts (`None`: no fixed limit).
    pub max_ranges: Option<usize>,
    pub ipv4: bool,
    pub ipv6: bool,
    /// Whether private, shared, loopback, link-local and other non-global ranges are accepted.
    pub private_ranges: bool,
    pub unrestricted: UnrestrictedForm,
    /// Whether an apply finishes asynchronously on the target's side (a long-running operation).
    pub async_apply: bool,
}

/// The restriction a target holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restriction {
    /// Anyone may connect (AKS: empty list; EKS: `0.0.0.0/0`; file: no file yet).
    Unrestricted,
    /// Only these ranges may connect.
    Ranges(RangeSet),
}

impl Restriction {
    /// The ranges of a restricted target, `None` when unrestricted.
    pub fn ranges(&self) -> Option<&RangeSet> {
        match self {
            Restriction::Unrestricted => None,
            Restriction::Ranges(set) => Some(set),
        }
    }
}

/// What `current` reports: the restriction plus provider-specific facts for `show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub restriction: Restriction,
    /// Facts worth showing, in display order: e.g. `("provisioningState", "Succeeded")`.
    pub details: Vec<(String, String)>,
    /// Things the user should know about this state (e.g. "public access is off: the list
    /// has no effect").
    pub warnings: Vec<String>,
}

impl State {
    pub fn new(restriction: Restriction) -> Self {
        State {
            restriction,
            details: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Receives progress messages while a provider waits (LRO polling, update polling). The
/// binary shows them as a spinner on stderr; tests may record them.
pub trait Progress: Send + Sync {
    fn message(&self, msg: &str);
}

/// A [`Progress`] that drops every message.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn message(&self, _msg: &str) {}
}

/// How an apply or disable should behave.
#[derive(Clone)]
pub struct ApplyOptions {
    /// Wait for an asynchronous change to finish and confirm it by reading back (`--no-wait`
    /// clears this).
    pub wait: bool,
    pub progress: Arc<dyn Progress>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            wait: true,
            progress: Arc::new(NoProgress),
        }
    }
}

impl fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplyOptions")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// The outcome of an apply or disable that the target accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// False when the target already held the desired state and nothing was sent.
    pub changed: bool,
    /// True when the change was accepted but not yet confirmed (`wait == false`).
    pub pending: bool,
    /// Things the user should know (e.g. "the reload command failed: ...").
    pub notes: Vec<String>,
}

/// A problem a provider finds in a desired set without any network call (e.g. AKS rejects
/// private ranges). The binary reports all of them before it applies anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The offending range, if one range is at fault.
    pub range: Option<String>,
    pub message: String,
}

/// Typed provider errors, so one retry policy decides for every provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The target (cluster, file directory, ...) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Someone else changed or is changing the target; re-read and retry.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The target asked us to slow down.
    #[error("throttled: {message}")]
    Throttled {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The target rejected the request as invalid; retrying will not help.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Missing or rejected credentials or permissions.
    #[error("authentication or permission: {0}")]
    Auth(String),
    /// A timeout, connection error or server error that may heal on retry.
    #[error("transient: {0}")]
    Transient(String),
    /// The target configuration in the declaration is wrong (unknown field, bad value).
    #[error("{0}")]
    Config(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    /// Whether retrying the same operation (after re-reading) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::Conflict(_)
                | ProviderError::Throttled { .. }
                | ProviderError::Transient(_)
        )
    }

    /// The same error with its message rewritten (e.g. secrets scrubbed from it).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> ProviderError {
        match self {
            ProviderError::NotFound(m) => ProviderError::NotFound(f(m)),
            ProviderError::Conflict(m) => ProviderError::Conflict(f(m)),
            ProviderError::Throttled {
                message,
                retry_after,
            } => ProviderError::Throttled {
                message: f(message),
                retry_after,
            },
            ProviderError::Invalid(m) => ProviderError::Invalid(f(m)),
            ProviderError::Auth(m) => ProviderError::Auth(f(m)),
            ProviderError::Transient(m) => ProviderError::Transient(f(m)),
            ProviderError::Config(m) => ProviderError::Config(f(m)),
            ProviderError::Other(m) => ProviderError::Other(f(m)),
        }
    }

    /// A short stable name for metrics and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Conflict(_) => "conflict",
            ProviderError::Throttled { .. } => "throttled",
            ProviderError::Invalid(_) => "invalid",
            ProviderError::Auth(_) => "auth",
            ProviderError::Transient(_) => "transient",
            ProviderError::Config(_) => "config",
            ProviderError::Other(_) => "other",
        }
    }
}

/// The provider-specific part of a target declaration, handed to a [`ProviderFactory`].
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The target's name in the declaration.
    pub name: String,
    /// The directory of the declaration file; relative paths in `fields` resolve against it.
    pub base_dir: PathBuf,
    /// Every field of the target that is not one of the common ones (`provider`, `allow`,
    /// `protect`, policy knobs). A provider deserializes these into its own typed config
    /// (use `#[serde(deny_unknown_fields, rename_all = "camelCase")]` so typos are errors).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl TargetConfig {
    /// Deserialize `fields` into a provider's typed config; errors name the target.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_value(serde_json::Value::Object(self.fields.clone()))
            .map_err(|e| ProviderError::Config(format!("target `{}`: {e}", self.name)))
    }
}

/// A target that can report and change its allow-list. Every call must be idempotent.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// Provider-specific checks of a desired set that need no network call, beyond what
    /// [`Capabilities`] already says (the binary checks max ranges, IPv6 and private ranges).
    fn check(&self, _desired: &RangeSet) -> Vec<Violation> {
        Vec::new()
    }

    /// Read what the target holds now.
    async fn current(&self) -> Result<State, ProviderError>;

    /// Make the target hold exactly `desired` (never empty: the binary guarantees it).
    /// Must send nothing when the target already holds `desired`.
    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError>;

    /// Lift the restriction (the target's [`UnrestrictedForm`]).
    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError>;
}

/// Builds a provider bound to one target.
pub type ProviderFactory = fn(&TargetConfig) -> Result<Box<dyn Provider>, ProviderError>;
