//! The import hook: what a target takes from files in its provider's own format (hostfw reads
//! a kube-restrict-ip config), so users of another tool switch without rewriting anything.
//!
//! The binary calls a provider's [`ImportHook`] while it loads the declaration, before the
//! provider is built: the [`Imported::ranges`] join the target's allow-list (parsed by the
//! binary's strict CIDR parser, so host bits and `--strict` work as in the declaration), the
//! [`Imported::fields`] join the target's [`TargetConfig::fields`](crate::TargetConfig) (so the
//! factory sees imported ports like written ones, and a change to them is a config change), and
//! the [`Imported::files`] are watched by `reconcile` like the declaration file itself.

use std::path::PathBuf;
use std::time::Duration;

use crate::TargetConfig;

/// A place in an imported file (1-based line and column; `None` when unknown).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    pub file: PathBuf,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub column: Option<u64>,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, line: Option<u64>, column: Option<u64>) -> Self {
        Location {
            file: file.into(),
            line,
            column,
        }
    }
}

/// A range as written in an imported file (an address or a CIDR), with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportedRange {
    pub text: String,
    pub at: Location,
}

/// How serious an [`ImportNote`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NoteSeverity {
    /// The target cannot be used until this is fixed.
    Error,
    /// Read anyway; the user should know.
    Warning,
    /// A severity a newer provider knows and this rangekeeper does not (read off the wire).
    #[serde(other)]
    Unknown,
}

/// A problem found while importing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportNote {
    pub severity: NoteSeverity,
    /// Where in an imported file; `None`: about the target's own fields (the binary places it
    /// at the field the message names in backticks, else at the target).
    #[serde(default)]
    pub at: Option<Location>,
    pub message: String,
}

impl ImportNote {
    pub fn error(at: Option<Location>, message: impl Into<String>) -> Self {
        ImportNote {
            severity: NoteSeverity::Error,
            at,
            message: message.into(),
        }
    }

    pub fn warning(at: Option<Location>, message: impl Into<String>) -> Self {
        ImportNote {
            severity: NoteSeverity::Warning,
            at,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        !matches!(self.severity, NoteSeverity::Warning)
    }
}

/// What one target imports. The default imports nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    /// Ranges added to the target's allow-list.
    #[serde(default)]
    pub ranges: Vec<ImportedRange>,
    /// Fields added to the target's config (never replacing a field the declaration wrote:
    /// the hook reports such a conflict as an error instead).
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Every file read (or that should have been read), also when reading failed, so a fix
    /// is noticed by `reconcile`'s watch.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// How often the imported config asks to be checked (kube-restrict-ip's `checkInterval`),
    /// used as the loop interval when the target is enforced on its own.
    #[serde(default)]
    pub check_interval: Option<Duration>,
    /// Errors and warnings, in the order found.
    #[serde(default)]
    pub notes: Vec<ImportNote>,
}

impl Imported {
    /// Whether any note is an error (then nothing of this import may be used).
    pub fn has_errors(&self) -> bool {
        self.notes.iter().any(ImportNote::is_error)
    }
}

/// A provider's import hook: reads the files a target's fields name. It does no network call
/// and changes nothing; the binary calls it on every load of the declaration.
pub type ImportHook = fn(&TargetConfig) -> Imported;

/// The hook of a provider that imports nothing.
pub fn no_import(_cfg: &TargetConfig) -> Imported {
    Imported::default()
}
