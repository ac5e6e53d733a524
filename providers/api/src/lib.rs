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
pub mod discovery;
pub mod fs;
pub mod hint;
pub mod import;
pub mod lease;
pub mod protocol;
pub mod secret;
#[cfg(feature = "serve")]
mod serve;

#[cfg(feature = "serve")]
pub use serve::{serve, serve_io};

pub use discovery::{DiscoveredTarget, Discoverer, DiscoveryFactory, TagFilter};
pub use import::{ImportHook, ImportNote, Imported, ImportedRange, Location, NoteSeverity};
pub use lease::{Lease, LeaseId, Timestamp};
pub use secret::Secret;
mod wire;

pub use wire::parse_wire_ranges;

pub use rangekeeper_cidr as cidr;
pub use rangekeeper_cidr::RangeSet;

/// What "no restriction" looks like on a target, so `disable` and `current` agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum UnrestrictedForm {
    /// An empty list lifts the restriction (AKS). Applying an empty list by accident opens
    /// the target to the whole internet, so the binary never does it outside `disable`.
    EmptyList,
    /// The list `0.0.0.0/0` (and `::/0`) lifts the restriction (EKS).
    AllAddresses,
    /// The restriction is lifted by removing the rules, file or object altogether.
    Removed,
    /// A form a newer provider knows and this rangekeeper does not (read off the wire).
    #[serde(other)]
    Unknown,
}

/// What a provider can hold. The binary checks a desired set against these before any call.
///
/// Build one with [`Capabilities::new`] and the `with_*` methods; fields a newer version adds
/// get defaults, so an older plugin's reply still reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Capabilities {
    /// The provider's name as written in `provider:` of a target.
    pub name: String,
    /// One line for `rangekeeper providers`.
    pub description: String,
    /// Most prefixes the target accepts (`None`: no fixed limit).
    #[serde(default)]
    pub max_ranges: Option<usize>,
    #[serde(default = "yes")]
    pub ipv4: bool,
    #[serde(default)]
    pub ipv6: bool,
    /// Whether IPv6 support depends on the target (a dual-stack cluster, a netpol-capable
    /// CNI): `ipv6` is then what the provider can do at best, and the provider refuses IPv6
    /// ranges itself (in `check` or `apply`) for a target that has no IPv6.
    #[serde(default)]
    pub ipv6_depends_on_target: bool,
    /// Whether private, shared, loopback, link-local and other non-global ranges are accepted.
    /// When false, the provider's [`Provider::check`] refuses them (it knows its exceptions,
    /// such as AKS's `0.0.0.0/32`); the binary adds only the target's `allowPrivate: false`.
    #[serde(default)]
    pub private_ranges: bool,
    #[serde(default = "removed")]
    pub unrestricted: UnrestrictedForm,
    /// Whether an apply finishes asynchronously on the target's side (a long-running operation).
    #[serde(default)]
    pub async_apply: bool,
    /// Whether the target can store small metadata beside the list (an owner, a lease, the
    /// declaration's hash: Kubernetes annotations, tags). When false, rangekeeper keeps such
    /// facts on its own side.
    #[serde(default)]
    pub stores_metadata: bool,
    /// Whether the target stores [`Lease`]s with its ranges ([`Provider::apply_leased`]), so
    /// `rangekeeper grant` can open it to one address for a while. A provider that says yes
    /// must: report the stored leases and a version of what it read in
    /// [`State::leases`] and [`State::version`] from `current`; write the ranges and exactly
    /// the lease records it is given in one step that fails with
    /// [`ProviderError::Conflict`] when the target is no longer at that version (its
    /// compare-and-swap: an eTag, a resourceVersion, a lock and a re-read); and refuse with
    /// [`ProviderError::Invalid`], saying why, leases that do not fit its store (a tag
    /// limit). When false, `grant` refuses on the target.
    ///
    /// How the built-in stores do it: `file` keeps a `# rangekeeper-lease:` header line per
    /// lease and a lock file beside it (version: a digest of the file); `aks` keeps
    /// `rangekeeper-lease-<id>` cluster tags in the same `If-Match` PUT as the ranges (version:
    /// the eTag); `eks` keeps the same tags via TagResource/UntagResource (version: a digest of
    /// the list and the lease tags, compared before writing and read back after); `netpol` and
    /// `calico` keep `rangekeeper.dev/lease-<id>` annotations holding the JSON form on the
    /// object that holds the ranges, in the same server-side apply as the rules, with that
    /// object's `metadata.resourceVersion` as the version (the API server refuses a stale one
    /// with 409 Conflict); `hostfw` (nftables) keeps one element per lease, with a kernel
    /// timeout and the record as its comment, in sets apart from the declared ranges (version:
    /// a digest of its table, and a nonce that the write's transaction replaces). Use
    /// [`crate::lease::Lease::tag_key`]
    /// and [`crate::lease::Lease::tag_value`] (or the JSON form) so every store reads alike.
    #[serde(default)]
    pub leases: bool,
    /// Why this target cannot store leases when `leases` is false for a reason of the target
    /// rather than of the provider (hostfw with the iptables backend): `grant` says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leases_refused: Option<String>,
}

fn yes() -> bool {
    true
}

fn removed() -> UnrestrictedForm {
    UnrestrictedForm::Removed
}

impl Capabilities {
    /// IPv4 only, no range limit, no private ranges, lifted by removal, synchronous, no
    /// metadata: change what differs with the `with_*` methods.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Capabilities {
            name: name.into(),
            description: description.into(),
            max_ranges: None,
            ipv4: true,
            ipv6: false,
            ipv6_depends_on_target: false,
            private_ranges: false,
            unrestricted: UnrestrictedForm::Removed,
            async_apply: false,
            stores_metadata: false,
            leases: false,
            leases_refused: None,
        }
    }

    pub fn with_max_ranges(mut self, max: Option<usize>) -> Self {
        self.max_ranges = max;
        self
    }

    pub fn with_ipv4(mut self, yes: bool) -> Self {
        self.ipv4 = yes;
        self
    }

    pub fn with_ipv6(mut self, yes: bool) -> Self {
        self.ipv6 = yes;
        self
    }

    pub fn with_ipv6_depends_on_target(mut self, yes: bool) -> Self {
        self.ipv6_depends_on_target = yes;
        self
    }

    pub fn with_private_ranges(mut self, yes: bool) -> Self {
        self.private_ranges = yes;
        self
    }

    pub fn with_unrestricted(mut self, form: UnrestrictedForm) -> Self {
        self.unrestricted = form;
        self
    }

    pub fn with_async_apply(mut self, yes: bool) -> Self {
        self.async_apply = yes;
        self
    }

    pub fn with_stores_metadata(mut self, yes: bool) -> Self {
        self.stores_metadata = yes;
        self
    }

    /// The target stores leases ([`Capabilities::leases`] says what that takes).
    pub fn with_leases(mut self, yes: bool) -> Self {
        self.leases = yes;
        self
    }

    /// This target cannot store leases, for `reason` (a sentence naming what of the target's
    /// configuration is at fault); `leases` becomes false.
    pub fn with_leases_refused(mut self, reason: impl Into<String>) -> Self {
        self.leases = false;
        self.leases_refused = Some(reason.into());
        self
    }

    /// Why `grant` cannot store a lease on this target: the target's own reason, else that
    /// the provider cannot.
    pub fn leases_refusal(&self) -> String {
        self.leases_refused
            .clone()
            .unwrap_or_else(|| format!("the `{}` provider cannot store leases", self.name))
    }
}

/// The restriction a target holds now.
///
/// On the wire: `{"kind":"unrestricted"}` or `{"kind":"ranges","ranges":["192.0.2.0/24"]}`;
/// every range must be a canonical CIDR string, parsed by the strict parser on the way in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restriction {
    /// Anyone may connect (AKS: empty list; EKS: `0.0.0.0/0`; file: no file yet).
    Unrestricted,
    /// Only these ranges may connect.
    Ranges(RangeSet),
    /// A kind of restriction a newer provider reported that this rangekeeper does not know;
    /// the binary refuses to plan against it.
    Unknown(String),
}

impl Restriction {
    /// The ranges of a restricted target, `None` when unrestricted (or unknown).
    pub fn ranges(&self) -> Option<&RangeSet> {
        match self {
            Restriction::Ranges(set) => Some(set),
            Restriction::Unrestricted | Restriction::Unknown(_) => None,
        }
    }

    /// The restriction as `Some(ranges)` or `None` (unrestricted); an unknown kind is an
    /// error naming it, so nothing is planned against a state that was not understood.
    pub fn known(&self) -> Result<Option<&RangeSet>, ProviderError> {
        match self {
            Restriction::Ranges(set) => Ok(Some(set)),
            Restriction::Unrestricted => Ok(None),
            Restriction::Unknown(kind) => Err(ProviderError::Other(format!(
                "the provider reported a restriction of kind `{kind}`, which this rangekeeper \
                 does not know; upgrade rangekeeper"
            ))),
        }
    }
}

/// What `current` reports: the restriction plus provider-specific facts for `show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct State {
    pub restriction: Restriction,
    /// Facts worth showing, in display order: e.g. `("provisioningState", "Succeeded")`.
    #[serde(default)]
    pub details: Vec<(String, String)>,
    /// Things the user should know about this state (e.g. "public access is off: the list
    /// has no effect").
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The leases stored with the target, expired ones included (a provider that stores
    /// leases only; see [`Capabilities::leases`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// What the target was at when read (an eTag, a resourceVersion, a digest of a file), for
    /// the compare-and-swap of [`Provider::apply_leased`]; opaque to the binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Ways the target departs from its own restriction that the next apply repairs, each
    /// said in words (HAProxy: the ACL file a restart would load holds another list than the
    /// live ACL). A target with drift is never in sync: `plan` shows it, `apply` repairs it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// The target's API answered, and said its quota is nearly spent: the requests it has
    /// left (AKS: ARM's `x-ms-ratelimit-remaining-subscription-reads` below the provider's
    /// threshold). The binary slows the calls of the target's [`QuotaScope`]
    /// down as it does for [`ProviderError::Throttled`], before the server starts refusing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_low: Option<u64>,
}

impl State {
    pub fn new(restriction: Restriction) -> Self {
        State {
            restriction,
            details: Vec::new(),
            warnings: Vec::new(),
            leases: Vec::new(),
            version: None,
            drift: Vec::new(),
            quota_low: None,
        }
    }

    /// The leases stored with the target and the version read.
    pub fn with_leases(mut self, leases: Vec<Lease>, version: Option<String>) -> Self {
        self.leases = leases;
        self.version = version;
        self
    }

    /// Add drift that the next apply repairs (the target is then never in sync).
    pub fn with_drift(mut self, drift: impl Into<String>) -> Self {
        self.drift.push(drift.into());
        self
    }

    /// Add a fact for `show`.
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.push((key.into(), value.into()));
        self
    }

    /// Add a warning.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
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
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Applied {
    /// False when the target already held the desired state and nothing was sent.
    #[serde(default)]
    pub changed: bool,
    /// True when the change was accepted but not yet confirmed (`wait == false`).
    #[serde(default)]
    pub pending: bool,
    /// Things the user should know (e.g. "the reload command failed: ...").
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Applied {
    /// The target already held the desired state; nothing was sent.
    pub fn unchanged() -> Self {
        Applied::default()
    }

    /// The change was made and confirmed.
    pub fn changed() -> Self {
        Applied {
            changed: true,
            ..Applied::default()
        }
    }

    /// The change was accepted and not yet confirmed (`wait == false`).
    pub fn pending() -> Self {
        Applied {
            changed: true,
            pending: true,
            notes: Vec::new(),
        }
    }

    /// Add a note for the user.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Add notes for the user.
    pub fn with_notes(mut self, notes: impl IntoIterator<Item = String>) -> Self {
        self.notes.extend(notes);
        self
    }
}

/// A problem a provider finds in a desired set without any network call (e.g. AKS rejects
/// private ranges). The binary reports all of them before it applies anything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Violation {
    /// The offending range, if one range is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    pub message: String,
    /// A finding the user should see but that does not refuse the change by itself (a
    /// Calico failsafe port the policy cannot restrict): the plan shows it as a warning, and
    /// refuses it only for a strict target (`--strict` or `strict: true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
}

impl Violation {
    /// A problem with the set as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            range: None,
            message: message.into(),
            warning: false,
        }
    }

    /// A finding that warns, and refuses only a strict target (see [`Violation::warning`]).
    pub fn warn(message: impl Into<String>) -> Self {
        Violation {
            range: None,
            message: message.into(),
            warning: true,
        }
    }

    /// A problem with one range.
    pub fn at(range: impl fmt::Display, message: impl Into<String>) -> Self {
        Violation {
            range: Some(range.to_string()),
            message: message.into(),
            warning: false,
        }
    }
}

/// The longest delay a server may ask for (`Retry-After`, AWS throttling, gRPC `RetryInfo`)
/// that rangekeeper honours: longer values, up to `u64::MAX` seconds, are capped here rather
/// than overflow a [`Duration`]. Providers cap what they parse; the binary's retry policy caps
/// again whatever crossed a process boundary.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// A server-supplied delay in whole seconds, capped at [`MAX_RETRY_AFTER`] (never overflows).
pub fn retry_after_secs(secs: u64) -> Duration {
    Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs()))
}

/// Typed provider errors, so one retry policy decides for every provider.
///
/// Providers make one attempt per call and return these; the binary's retry policy alone
/// decides whether, when and how often a call is made again.
///
/// Messages are text, and carry the whole source chain of the error that caused them (build
/// them with [`error_chain`]), so an error that crossed a process boundary reads the same.
/// On the wire: `{"kind":"throttled","message":"...","retryAfterMs":2000}`; a kind this
/// version does not know reads as [`ProviderError::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// An error of a kind a newer provider knows and this rangekeeper does not (read off the
    /// wire). Not retried.
    #[error("{kind}: {message}")]
    Unknown { kind: String, message: String },
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
            ProviderError::Unknown { kind, message } => ProviderError::Unknown {
                kind,
                message: f(message),
            },
        }
    }

    /// The delay the server asked for before the next attempt, capped at [`MAX_RETRY_AFTER`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Throttled {
                retry_after: Some(d),
                ..
            } => Some((*d).min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    /// A short stable name for metrics, JSON output and the plugin protocol.
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
            ProviderError::Unknown { .. } => "unknown",
        }
    }

    /// The message without the kind's prefix.
    pub fn message(&self) -> &str {
        match self {
            ProviderError::NotFound(m)
            | ProviderError::Conflict(m)
            | ProviderError::Invalid(m)
            | ProviderError::Auth(m)
            | ProviderError::Transient(m)
            | ProviderError::Config(m)
            | ProviderError::Other(m)
            | ProviderError::Throttled { message: m, .. }
            | ProviderError::Unknown { message: m, .. } => m,
        }
    }
}

/// An error and every source under it, joined with `: ` (`connect failed: tls handshake:
/// certificate expired`), for the message of a [`ProviderError`].
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        // Some errors repeat their source in their own message; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
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
    /// Deserialize `fields` into a provider's typed config; errors name the target and the
    /// field at fault (`` `format` ``, `` `tls.ca` ``), and a value or key that is not one of
    /// the known ones is said in words with a did-you-mean, not in serde's terms.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_path_to_error::deserialize(serde_json::Value::Object(self.fields.clone())).map_err(
            |e| {
                let path = e.path().to_string();
                let message = explain_config_error(&path, &e.into_inner().to_string());
                ProviderError::Config(format!("target `{}`: {message}", self.name))
            },
        )
    }
}

/// The `` `a` `` items of a serde message, in order.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// serde's wording of a config error, for people: ``unknown variant `nginix`, expected one
/// of `plain`, `nginx` `` at `format` becomes ``` `format` must be one of `plain`, `nginx`,
/// not `nginix` (did you mean `nginx`?) ```.
fn explain_config_error(path: &str, msg: &str) -> String {
    let at = (!path.is_empty() && path != ".").then_some(path);
    let one_of = |names: &[&str]| match names {
        [] => "nothing".to_owned(),
        [one] => format!("`{one}`"),
        many => format!(
            "one of {}",
            many.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let hint = |given: &str, names: &[&str]| hint::did_you_mean(given, names.iter().copied());
    if msg.starts_with("unknown variant `") {
        let names = backticked(msg);
        if let Some((given, expected)) = names.split_first() {
            let field = at.map_or("the value".to_owned(), |p| format!("`{p}`"));
            return format!(
                "{field} must be {}, not `{given}`{}",
                one_of(expected),
                hint(given, expected)
            );
        }
    }
    if msg.starts_with("unknown field `") {
        let names = backticked(msg);
        if let Some((given, expected)) = names.split_first() {
            // The path ends with the unknown key itself; name the map it is in, if nested.
            let parent = at.and_then(|p| p.strip_suffix(given)?.strip_suffix('.'));
            let inside = parent.map(|p| format!(" in `{p}`")).unwrap_or_default();
            return format!(
                "unknown field `{given}`{inside}{}; expected {}",
                hint(given, expected),
                one_of(expected)
            );
        }
    }
    match at {
        Some(p) => format!("`{p}`: {msg}"),
        None => msg.to_owned(),
    }
}

/// A target that can report and change its allow-list. Every call must be idempotent.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// Provider-specific checks of a desired set that need no network call. The binary checks
    /// `max_ranges`, `ipv4` and `ipv6` of [`Capabilities`] itself; non-global ranges are
    /// refused here when `private_ranges` is false (the provider knows its exceptions), and
    /// the binary adds only a target's explicit `allowPrivate: false`.
    fn check(&self, _desired: &RangeSet) -> Vec<Violation> {
        Vec::new()
    }

    /// Read what the target holds now.
    async fn current(&self) -> Result<State, ProviderError>;

    /// Checks of a desired set that need the target itself (AKS: the cluster's nodes must
    /// keep reaching their API server from their outbound IPs), run while planning, before
    /// anything is applied anywhere. `current` is what [`Provider::current`] just returned;
    /// the binary calls this only for a target whose plan changes it, with the set it would
    /// apply. Each [`Violation`] refuses the plan of this target (and so every apply of the
    /// run: nothing is written anywhere); an error means the check could not be made, and
    /// the plan fails the same way. The default finds nothing.
    ///
    /// A provider should keep the same check in `apply` as a last line only when it is the
    /// same code, so the two can never disagree. The arguments and results are plain serde
    /// types, so the exec-plugin protocol can carry the call.
    async fn preflight(
        &self,
        _desired: &RangeSet,
        _current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        Ok(Vec::new())
    }

    /// Make the target hold exactly `desired` (never empty: the binary guarantees it).
    /// Must send nothing when the target already holds `desired`.
    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError>;

    /// Lift the restriction (the target's [`UnrestrictedForm`]).
    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError>;

    /// The objects [`Provider::apply`] of `desired` makes the target hold, as documents a
    /// GitOps tool can apply instead (`rangekeeper manifests`): exactly what `apply` sends,
    /// in the order it sends them. `None` (the default): the provider keeps no such objects.
    /// It may read the target (e.g. its nodes, for objects made per node), never write it.
    async fn manifests(
        &self,
        _desired: &RangeSet,
    ) -> Result<Option<Vec<serde_json::Value>>, ProviderError> {
        Ok(None)
    }

    /// Make the target hold `desired` (never empty) and exactly the lease records `leases`,
    /// in one conditional write: only when the target is still at `version` (the
    /// [`State::version`] of the read the change was planned from); a target changed since
    /// is a [`ProviderError::Conflict`], and the binary plans again from a new read. The
    /// binary calls this instead of [`Provider::apply`] for every change to a provider whose
    /// [`Capabilities::leases`] is true, so lease records and their addresses never part;
    /// `desired` already holds every lease's address. Leases the store cannot hold (a tag
    /// limit) are refused with [`ProviderError::Invalid`] saying why. Must send nothing when
    /// the target already holds both.
    ///
    /// The default refuses: the provider cannot store leases.
    async fn apply_leased(
        &self,
        _desired: &RangeSet,
        _leases: &[Lease],
        _version: Option<&str>,
        _opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        Err(ProviderError::Invalid(self.capabilities().leases_refusal()))
    }

    /// [`Provider::apply_leased`] told which part of `desired` the declaration holds:
    /// `declared` is what the target must keep admitting once every lease has expired
    /// (`desired` is `declared` plus the leases' addresses, under the binary's guards). The
    /// binary calls this one; a provider whose store expires leases by itself needs it to
    /// keep an address that is both declared and leased out of the expiring store (hostfw:
    /// nftables set elements with a kernel timeout). The default ignores `declared`.
    async fn apply_leased_declared(
        &self,
        _declared: &RangeSet,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        self.apply_leased(desired, leases, version, opts).await
    }
}

/// The one refusal of an empty desired set, for the top of every [`Provider::apply`]: an empty
/// list is never applied (depending on the target it lifts the restriction or shuts every
/// client out); [`Provider::disable`] is how a restriction is lifted on purpose.
/// `consequence` says what an empty list would do on this target.
pub fn refuse_empty(desired: &RangeSet, consequence: &str) -> Result<(), ProviderError> {
    if desired.is_empty() {
        return Err(ProviderError::Invalid(format!(
            "refusing to apply an empty allow-list: {consequence}; use `rangekeeper disable` to lift a restriction on purpose"
        )));
    }
    Ok(())
}

/// Builds a provider bound to one target.
pub type ProviderFactory = fn(&TargetConfig) -> Result<Box<dyn Provider>, ProviderError>;

/// The API quota a target's calls count against, as an opaque key, read offline from the
/// target's settings (AKS: the subscription; EKS: the credentials and the region, which
/// name the account's regional quota). Targets with the same key share one concurrency
/// bound of the binary (`reconcile --concurrency-per-scope`), which it lowers while calls of
/// the scope are throttled ([`ProviderError::Throttled`], [`State::quota_low`]) and raises
/// again as they succeed. `None`: the target shares no quota with others (settings that do
/// not parse also give `None`: the factory reports them). Keys should start with the
/// provider's name, so two providers never share one by accident.
pub type QuotaScope = fn(&TargetConfig) -> Option<String>;

/// The [`QuotaScope`] of a provider whose targets share no API quota.
pub fn no_quota_scope(_: &TargetConfig) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_are_explained_with_the_field_and_a_suggestion() {
        assert_eq!(
            explain_config_error(
                "format",
                "unknown variant `nginix`, expected one of `plain`, `nginx`, `haproxy`, `json`"
            ),
            "`format` must be one of `plain`, `nginx`, `haproxy`, `json`, not `nginix` (did you mean `nginx`?)"
        );
        assert_eq!(
            explain_config_error("pth", "unknown field `pth`, expected `path` or `format`"),
            "unknown field `pth` (did you mean `path`?); expected one of `path`, `format`"
        );
        assert_eq!(
            explain_config_error("tls.ca", "invalid type: integer `1`, expected a string"),
            "`tls.ca`: invalid type: integer `1`, expected a string"
        );
        assert_eq!(
            explain_config_error("tls.key", "unknown field `key`, expected `ca`"),
            "unknown field `key` in `tls`; expected `ca`"
        );
        assert_eq!(
            explain_config_error(".", "missing field `path`"),
            "missing field `path`"
        );
    }
}
