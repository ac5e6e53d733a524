//! The declaration file: loading (YAML or JSON), and resolving raw structs into a validated
//! [`Declaration`] of named sets and targets, with every problem located at file:line:column.

pub mod raw;
pub mod schema;
pub mod source;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rangekeeper_cidr::{IpNet, RangeSet};
use rangekeeper_provider::{Imported, Location, TargetConfig};
use serde_saphyr::Spanned;

use raw::{Pos, RawDeclaration, RawEntry, RawSet, RawTarget};

use source::{self as source_spec, SourceSpec};

/// The current values of live sources, by set name (a source without a value is absent).
pub type SourceValues = HashMap<String, RangeSet>;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A located problem in a declaration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// The target the problem belongs to, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {sev}: {}", self.message)
    }
}

/// What to do when a target's canonical set exceeds its range limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnExceed {
    /// Refuse, reporting the count, the limit and what a cover would cost.
    Error,
    /// Apply the optimal cover of at most `maxRanges` prefixes.
    Cover,
}

/// A bound on the extra addresses a fit-to-limit cover may admit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MaxExtra {
    /// At most this many extra addresses.
    Addresses(u128),
    /// At most this multiple of the declared address count.
    Multiple(f64),
}

/// Per-target safety policy, with defaults filled in from the provider later.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub strict: bool,
    /// `None`: the provider's own limit.
    pub max_ranges: Option<usize>,
    /// `None`: whatever the provider accepts.
    pub allow_private: Option<bool>,
    pub allow_broad: bool,
    pub protect: RangeSet,
    pub on_exceed: OnExceed,
    pub max_extra: Option<MaxExtra>,
    /// The longest lease `grant` and `exec` accept on the target (`maxLeaseTtl`; `None`:
    /// the default of 12h).
    pub max_lease_ttl: Option<std::time::Duration>,
}

/// A validated target.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub provider: String,
    pub description: Option<String>,
    pub pos: Pos,
    /// The allow list as written (set names and literals), for display.
    pub allow_items: Vec<String>,
    /// The literal entries of the allow list (through the sets it names too), with their
    /// locations, so a problem with a range is reported where it is written.
    pub entries: Vec<(IpNet, Pos)>,
    /// The canonical desired set.
    pub desired: RangeSet,
    pub policy: Policy,
    pub config: TargetConfig,
    /// Locations of provider-specific fields, to place provider config errors.
    pub field_pos: HashMap<String, Pos>,
    /// Files the provider's import hook read for this target (watched like the declaration).
    pub imports: Vec<PathBuf>,
    /// How often the imported config asks to be checked, if it says.
    pub check_interval: Option<std::time::Duration>,
    /// The live sources (`url`, `dns`, `self` sets) this target's allow or protect list
    /// uses, directly or through other sets.
    pub sources: Vec<String>,
    /// Why this target must not be applied now (a source it uses has no value at all).
    pub source_errors: Vec<String>,
    /// What the user should know about its sources (a stale value is used).
    pub source_warnings: Vec<String>,
    /// The `discover:` template this target was discovered by (`None`: declared in
    /// `targets:`).
    pub template: Option<String>,
}

/// A resolved named set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NamedSet {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "ranges")]
    pub set: RangeSet,
    /// For a live source: where its ranges come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A validated declaration file.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// The path as the user gave it (for messages).
    pub file: String,
    pub sets: IndexMap<String, NamedSet>,
    pub targets: IndexMap<String, Target>,
    /// Targets with errors, resolved as far as they could be (their good entries), so
    /// `validate` can report every other problem of theirs in the same pass. Never planned
    /// or applied: a declaration with errors is refused as a whole.
    pub partial_targets: IndexMap<String, Target>,
    /// Warnings found while loading (host bits, ...).
    pub warnings: Vec<Diagnostic>,
    /// The live sources among the sets, in file order.
    pub sources: IndexMap<String, SourceSpec>,
    /// The `discover:` section, when the file has one.
    pub discover: Option<Discover>,
}

/// How often discovery lists again when the section does not say (`discover.interval`).
pub const DEFAULT_DISCOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// The validated `discover:` section.
#[derive(Debug, Clone)]
pub struct Discover {
    /// How often `reconcile` lists every template again.
    pub interval: std::time::Duration,
    pub templates: IndexMap<String, Template>,
}

/// A validated template of `discover:`: the target every target its provider lists is
/// made from (the template's `allow`, `protect` and policy, resolved like a target's), and
/// the provider fields that say what to list (`config.fields`).
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub pos: Pos,
    /// The template resolved as a target named after it: `provider`, `desired`, `policy`,
    /// `sources`; `config.fields` holds the template's provider fields.
    pub target: Target,
}

impl Template {
    /// The target of one discovered `name`: the template's lists and policy, the provider
    /// fields the provider gave for it. Config errors point at the template.
    pub fn instantiate(
        &self,
        name: &str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Target {
        let mut t = self.target.clone();
        t.name = name.to_owned();
        t.config.name = name.to_owned();
        t.config.fields = fields;
        t.template = Some(self.name.clone());
        for m in t
            .source_errors
            .iter_mut()
            .chain(t.source_warnings.iter_mut())
        {
            *m = m.replace(&format!("`{}`", self.name), &format!("`{name}`"));
        }
        t
    }
}

/// Options that change how strictly a file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Host bits set are errors everywhere (`--strict`).
    pub strict: bool,
    /// The file is read for its sets alone (`external-ips`): no target is needed.
    pub sets_only: bool,
}

/// What the loader needs to know of the providers: their names (for did-you-mean hints) and
/// how to call a provider's import hook (`registry::catalog()` builds it).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub names: Vec<&'static str>,
    /// Built-in providers this binary was compiled without (their Cargo features off), so a
    /// target naming one is told how to get it rather than that the name is unknown.
    pub left_out: Vec<(&'static str, &'static str)>,
    /// `(provider, target config) -> what the target imports from its provider's own files`.
    pub import: fn(&str, &TargetConfig) -> Imported,
    /// The providers that can discover targets (`discover:` templates).
    pub discovers: Vec<&'static str>,
}

/// A declaration of one target built from flags rather than read from a file (`reconcile
/// --<mode> FILE`, see `registry::standalone`): the target's provider imports everything
/// from `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standalone {
    /// The file the user named; messages name it in place of a declaration file.
    pub file: PathBuf,
    /// What the file is, for messages ("the ... config").
    pub what: &'static str,
    pub target: String,
    pub provider: String,
    /// The target's provider fields (the one naming `file`, and any flags).
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub allow_broad: bool,
    /// Whether the loop interval comes from the imported config when `--interval` is not given.
    pub interval_from_config: bool,
    /// Advice that names what a declaration would write, and what to do instead in this mode
    /// (`set \`allowBroad: true\` on the target` -> `pass \`--allow-broad\``).
    pub advice: Vec<(&'static str, &'static str)>,
}

impl Standalone {
    /// A message with its advice put in this mode's terms.
    pub fn advise(&self, message: &str) -> String {
        self.advice
            .iter()
            .fold(message.to_owned(), |m, (from, to)| m.replace(from, to))
    }
}

/// Why a declaration could not be loaded: every error found, located.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_all(.0))]
pub struct LoadError(pub Vec<Diagnostic>);

fn render_all(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Declaration {
    /// Every file the targets' providers imported (watched by `reconcile` like the
    /// declaration), each once.
    pub fn imported_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for f in self.targets.values().flat_map(|t| &t.imports) {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }

    /// Read, parse and resolve a declaration file without live-source values, returning
    /// what did resolve even when there are errors (the targets without errors), so
    /// `validate` can check those too and report every problem at once. Diagnostics hold
    /// errors and warnings, in file order. Commands that need a complete declaration go
    /// through [`DeclText::resolve`] (via `sources::load_live`). `known_providers` names the
    /// providers the binary has, so a typo is reported with a suggestion.
    pub fn load_partial(
        path: &Path,
        opts: LoadOptions,
        catalog: &Catalog,
    ) -> (Option<Declaration>, Vec<Diagnostic>) {
        match DeclText::read(path) {
            Ok(t) => t.load(opts, catalog, &SourceValues::new()),
            Err(LoadError(diags)) => (None, diags),
        }
    }

    /// Parse and resolve declaration text alone (`file` is used in messages only): no
    /// provider's import hook is called and no file is read, so a target that takes its list
    /// from an imported file has none ([`DeclText::load`] calls the hooks). The declaration is
    /// `None` only when the text could not be read as a declaration at all.
    #[cfg(test)]
    pub fn parse(
        text: &str,
        file: &str,
        base_dir: PathBuf,
        is_json: bool,
        opts: LoadOptions,
        known_providers: &[&str],
    ) -> (Option<Declaration>, Vec<Diagnostic>) {
        let text = DeclText {
            text: text.to_owned(),
            file: file.to_owned(),
            base_dir,
            is_json,
            generated: false,
        };
        text.parse(opts, known_providers, None, &SourceValues::new())
    }
}

impl DeclText {
    /// Parse and resolve the text; with `import`, every target's provider import hook is
    /// called and what it imports is merged (located in the imported files).
    fn parse(
        &self,
        opts: LoadOptions,
        known_providers: &[&str],
        catalog: Option<&Catalog>,
        source_values: &SourceValues,
    ) -> (Option<Declaration>, Vec<Diagnostic>) {
        let (text, file, base_dir, is_json) =
            (&self.text, &self.file, self.base_dir.clone(), self.is_json);
        let mut cx = Resolver {
            file: file.to_owned(),
            errors: Vec::new(),
            warnings: Vec::new(),
            strict: opts.strict,
            sets_only: opts.sets_only,
            source_values: source_values.clone(),
            source_specs: IndexMap::new(),
            import: catalog.map(|c| c.import),
            left_out: catalog.map(|c| c.left_out.clone()).unwrap_or_default(),
            discovers: catalog.map(|c| c.discovers.clone()),
            generated: self.generated,
        };
        if is_json {
            // JSON's own syntax errors first, in JSON's terms; the document is then read by the
            // YAML parser (JSON is YAML) so every value keeps its location.
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
                // serde_json says column 0 at the start of a line (an error at the end of a
                // file that ends in a newline); columns here count from 1.
                cx.error(
                    Some(Pos {
                        line: e.line() as u64,
                        column: (e.column() as u64).max(1),
                    }),
                    None,
                    format!("invalid JSON: {}", strip_json_position(&e.to_string())),
                );
                return (None, cx.errors);
            }
        }
        let raw: RawDeclaration = match read_yaml(text) {
            Ok(raw) => raw,
            Err((pos, message)) => {
                cx.error(pos, None, message);
                return (None, cx.errors);
            }
        };
        let decl = cx.resolve(raw, base_dir, known_providers);
        let mut diags = cx.errors;
        diags.extend(cx.warnings);
        // The declaration's own problems first, then each imported file's, in line order.
        diags.sort_by_key(|d| (d.file != *file, d.file.clone(), d.line, d.column));
        (Some(decl), diags)
    }
}

/// Whether any diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// serde_json appends " at line L column C"; the diagnostic carries the position already.
fn strip_json_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// serde-saphyr appends " at line L, column C" (or similar); keep only the message.
/// The most YAML nodes a declaration may have (serde-saphyr's default budget).
const MAX_YAML_NODES: usize = 250_000;

/// Read declaration YAML (or JSON) into `T`: only real booleans (`true`/`false`, not YAML
/// 1.1's `yes`/`on` nor quoted strings), every error located and said for people.
pub fn read_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (Option<Pos>, String)> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { strict_booleans: true })
        .map_err(|e| {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            let msg = e.without_snippet().to_string();
            (pos, yaml_message(&clean_yaml_message(&msg), text, pos))
        })
}

/// serde-saphyr's wording of an error, for people: which key, what was found, what to do.
fn yaml_message(msg: &str, text: &str, pos: Option<Pos>) -> String {
    // What stands at the error's place: the key of that line and the value there.
    let at = pos.and_then(|p| {
        let line = text
            .lines()
            .nth(usize::try_from(p.line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(p.column).ok()?.saturating_sub(1);
        let before = line.get(..col)?;
        let value: String = line
            .get(col..)?
            .chars()
            .take_while(|c| !matches!(c, ',' | '}' | ']' | '#') && !c.is_whitespace())
            .take(64)
            .collect();
        let key = before
            .trim_end()
            .strip_suffix(':')
            .map(|k| {
                k.rsplit(|c: char| c == '{' || c == ',' || c == '-' || c.is_whitespace())
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_owned()
            })
            .filter(|k| !k.is_empty());
        Some((key, value))
    });
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!(
            "duplicate key `{key}`: each key may appear only once in a mapping (this is the second one)"
        );
    }
    if msg.starts_with("invalid u") || msg.starts_with("invalid i") {
        let what = match &at {
            Some((Some(key), value)) => {
                format!("`{key}` must be a whole number of 0 or more, not `{value}`")
            }
            Some((None, value)) => format!("expected a whole number of 0 or more, not `{value}`"),
            None => "expected a whole number of 0 or more".to_owned(),
        };
        return what;
    }
    if msg.starts_with("budget breached") {
        return format!(
            "the file has more than {MAX_YAML_NODES} YAML values, the most rangekeeper reads; put long lists in a `url` source, or aggregate them first (`rangekeeper normalize`)"
        );
    }
    if msg.starts_with("invalid boolean")
        || (msg.contains("invalid type") && msg.contains("expected a boolean"))
    {
        return match &at {
            Some((Some(key), value)) => format!("`{key}` must be `true` or `false`, not `{value}`"),
            _ => "expected `true` or `false`".to_owned(),
        };
    }
    msg.to_owned()
}

fn clean_yaml_message(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or(msg);
    for marker in [" at line ", " at ", ", line "] {
        if let Some(i) = first.rfind(marker)
            && first[i + marker.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == 'l')
        {
            return first[..i].trim_end().to_owned();
        }
    }
    first.to_owned()
}

/// A bare `0.0.0.0` (no prefix length) reads as `0.0.0.0/32`, which AKS takes to mean
/// "only the cluster's own outbound IP" and no other target can use; it is almost always a
/// mistake for `0.0.0.0/0`. The warning says what it means and what to write instead.
pub fn bare_unspecified(text: &str) -> Option<String> {
    (text.trim() == "0.0.0.0").then(|| {
        "`0.0.0.0` is read as `0.0.0.0/32`, which AKS takes to mean \"only the cluster's own outbound IP (nodes only)\" and which admits nobody elsewhere; write `0.0.0.0/32` if that is what you mean, or `0.0.0.0/0` (with `allowBroad: true`) to allow everyone".to_owned()
    })
}

/// True when `s` is written as a set name rather than an address: a letter first, then
/// letters, digits, `-` or `_` (no `.`, `:` or `/`, which only addresses have).
pub fn is_set_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

// The one did-you-mean, shared with the providers.
pub use rangekeeper_provider::hint::did_you_mean;

/// Resolution state for a set during depth-first resolution (cycle detection).
#[derive(Clone)]
enum SetState {
    InProgress,
    Done(Resolved),
    Failed,
}

/// What a list of entries resolved to.
#[derive(Debug, Clone, Default)]
struct Resolved {
    set: RangeSet,
    /// The host-bit warnings of the entries it came from.
    host_bits: Vec<Diagnostic>,
    /// Every literal entry it came from (through set references too), with its location.
    entries: Vec<(IpNet, Pos)>,
}

struct Resolver {
    /// No target is needed (`LoadOptions::sets_only`).
    sets_only: bool,
    file: String,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    strict: bool,
    source_values: SourceValues,
    source_specs: IndexMap<String, SourceSpec>,
    /// The providers' import hook, when the loader asks for imports.
    import: Option<fn(&str, &TargetConfig) -> Imported>,
    /// Built-in providers this binary was compiled without.
    left_out: Vec<(&'static str, &'static str)>,
    /// The providers that can discover targets (`None`: not checked).
    discovers: Option<Vec<&'static str>>,
    /// The text was built by rangekeeper ([`Standalone`]): its positions mean nothing to the
    /// user and are left out.
    generated: bool,
}

impl Resolver {
    /// A position in the declaration as shown to the user.
    fn place(&self, pos: Option<Pos>) -> Option<Pos> {
        pos.filter(|_| !self.generated)
    }

    fn diag(
        &self,
        severity: Severity,
        pos: Option<Pos>,
        target: Option<&str>,
        message: String,
    ) -> Diagnostic {
        let pos = self.place(pos);
        Diagnostic {
            severity,
            file: self.file.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            target: target.map(str::to_owned),
            message,
        }
    }

    fn error(&mut self, pos: Option<Pos>, target: Option<&str>, message: String) {
        let d = self.diag(Severity::Error, pos, target, message);
        self.errors.push(d);
    }

    fn resolve(
        &mut self,
        raw: RawDeclaration,
        base_dir: PathBuf,
        known_providers: &[&str],
    ) -> Declaration {
        if raw.version.value != 1 {
            self.error(
                Some(Pos::of(&raw.version)),
                None,
                format!(
                    "unsupported declaration version {}; this rangekeeper reads version 1",
                    raw.version.value
                ),
            );
        }
        for (name, set) in &raw.sets {
            if !is_set_name(name) {
                self.error(
                    Some(Pos::of(set)),
                    None,
                    format!(
                        "set name `{name}` is not valid: use a letter first, then letters, digits, `-` or `_`"
                    ),
                );
            }
        }
        let mut states: HashMap<String, SetState> = HashMap::new();
        let names: Vec<String> = raw.sets.keys().cloned().collect();
        for name in &names {
            let mut stack = Vec::new();
            self.resolve_set(name, &raw.sets, &mut states, &mut stack);
        }
        let mut sets = IndexMap::new();
        for (name, spanned) in &raw.sets {
            if let Some(SetState::Done(Resolved { set, .. })) = states.get(name) {
                let description = match &spanned.value {
                    RawSet::Map(m) => m
                        .get("description")
                        .and_then(|v| v.value.as_str())
                        .map(str::to_owned),
                    RawSet::List(_) => None,
                };
                sets.insert(
                    name.clone(),
                    NamedSet {
                        name: name.clone(),
                        description,
                        set: set.clone(),
                        source: self.source_specs.get(name).map(ToString::to_string),
                    },
                );
            }
        }
        let mut targets = IndexMap::new();
        let mut partial_targets = IndexMap::new();
        for (name, spanned) in raw.targets {
            let pos = Pos::of(&spanned);
            let mut deps = BTreeSet::new();
            let mut seen = HashSet::new();
            for list in [&spanned.value.allow, &spanned.value.protect]
                .into_iter()
                .flatten()
            {
                for e in &list.value.0 {
                    source_deps(e.value.value.trim(), &raw.sets, &mut seen, &mut deps);
                }
            }
            if let Some((mut t, complete)) = self.resolve_target(
                &name,
                pos,
                spanned.value,
                &raw.sets,
                &mut states,
                &base_dir,
                known_providers,
            ) {
                t.sources = deps.into_iter().collect();
                if complete {
                    targets.insert(name, t);
                } else {
                    partial_targets.insert(name, t);
                }
            }
        }
        let discover = raw
            .discover
            .map(|d| self.resolve_discover(d, &raw.sets, &mut states, &base_dir, known_providers));
        if targets.is_empty()
            && partial_targets.is_empty()
            && discover.is_none()
            && self.errors.is_empty()
            && !self.sets_only
        {
            self.error(None, None, "the declaration has no targets".to_owned());
        }
        Declaration {
            file: self.file.clone(),
            sets,
            targets,
            partial_targets,
            warnings: Vec::new(),
            sources: std::mem::take(&mut self.source_specs),
            discover,
        }
    }

    /// Resolve the `discover:` section: its interval, and each template as a target named
    /// after it (its messages say "template"), whose provider must be one that discovers.
    /// Templates with errors are reported and left out.
    fn resolve_discover(
        &mut self,
        d: Spanned<raw::RawDiscover>,
        raw_sets: &IndexMap<String, Spanned<RawSet>>,
        states: &mut HashMap<String, SetState>,
        base_dir: &Path,
        known_providers: &[&str],
    ) -> Discover {
        let section = Pos::of(&d);
        let d = d.value;
        let interval = match &d.interval {
            None => DEFAULT_DISCOVERY_INTERVAL,
            Some(v) => match source::parse_duration(&v.value) {
                Ok(i) if i >= std::time::Duration::from_secs(1) => i,
                Ok(_) => {
                    self.error(
                        Some(Pos::of(v)),
                        None,
                        format!(
                            "`discover.interval` must be at least 1s, not `{}`",
                            v.value.escape_debug()
                        ),
                    );
                    DEFAULT_DISCOVERY_INTERVAL
                }
                Err(msg) => {
                    self.error(
                        Some(Pos::of(v)),
                        None,
                        format!("`discover.interval`: {msg}"),
                    );
                    DEFAULT_DISCOVERY_INTERVAL
                }
            },
        };
        if d.templates.is_empty() {
            self.error(
                Some(section),
                None,
                "`discover` has no `templates`: add at least one (a provider, what to list, and the `allow` list of what it finds), or remove the section".to_owned(),
            );
        }
        let mut templates = IndexMap::new();
        for (name, spanned) in d.templates {
            let pos = Pos::of(&spanned);
            if !is_set_name(&name) {
                self.error(
                    Some(pos),
                    Some(&name),
                    format!(
                        "template name `{name}` is not valid: use a letter first, then letters, digits, `-` or `_`"
                    ),
                );
                continue;
            }
            let errors_before = self.errors.len();
            let provider_pos = spanned.value.provider.as_ref().map(Pos::of);
            let mut deps = BTreeSet::new();
            let mut seen = HashSet::new();
            for list in [&spanned.value.allow, &spanned.value.protect]
                .into_iter()
                .flatten()
            {
                for e in &list.value.0 {
                    source_deps(e.value.value.trim(), raw_sets, &mut seen, &mut deps);
                }
            }
            let resolved = self.resolve_target(
                &name,
                pos,
                spanned.value,
                raw_sets,
                states,
                base_dir,
                known_providers,
            );
            if let Some((t, _)) = &resolved
                && let Some(discovers) = &self.discovers
                && !discovers.contains(&t.provider.as_str())
            {
                let provider = t.provider.clone();
                self.error(
                    provider_pos.or(Some(pos)),
                    Some(&name),
                    format!(
                        "target `{name}`: the `{provider}` provider cannot discover targets (providers that can: {})",
                        discovers.join(", ")
                    ),
                );
            }
            // The target resolver's words, for a template.
            let as_target = format!("target `{name}`");
            let as_template = format!("template `{name}`");
            // A template holds nothing that `disable` could lift.
            let disable = format!(
                ". To lift a restriction on purpose, use `rangekeeper disable --target {name}`"
            );
            for e in &mut self.errors[errors_before..] {
                e.message = e
                    .message
                    .replace(&as_target, &as_template)
                    .replace(&disable, "");
            }
            let ok = self.errors.len() == errors_before;
            if let (true, Some((mut target, true))) = (ok, resolved) {
                target.sources = deps.into_iter().collect();
                templates.insert(name.clone(), Template { name, pos, target });
            }
        }
        Discover {
            interval,
            templates,
        }
    }

    /// Resolve one named set, depth first. Returns its set and the host-bit warnings of the
    /// entries it came from.
    fn resolve_set(
        &mut self,
        name: &str,
        raw: &IndexMap<String, Spanned<RawSet>>,
        states: &mut HashMap<String, SetState>,
        stack: &mut Vec<String>,
    ) -> Option<Resolved> {
        match states.get(name) {
            Some(SetState::Done(r)) => return Some(r.clone()),
            Some(SetState::Failed) => return None,
            Some(SetState::InProgress) => return None, // reported by the caller
            None => {}
        }
        let spanned = raw.get(name)?;
        states.insert(name.to_owned(), SetState::InProgress);
        stack.push(name.to_owned());
        let result = match &spanned.value {
            RawSet::List(entries) => {
                let (r, ok) = self.resolve_entries(entries, None, raw, states, stack);
                ok.then_some(r)
            }
            RawSet::Map(map) if source_spec::is_source(map) => {
                match source_spec::parse(name, Pos::of(spanned), map) {
                    Ok(spec) => {
                        let value = self.source_values.get(name).cloned().unwrap_or_default();
                        self.source_specs.insert(name.to_owned(), spec);
                        Some(Resolved {
                            set: value,
                            ..Resolved::default()
                        })
                    }
                    Err(errors) => {
                        for (pos, msg) in errors {
                            self.error(Some(pos), None, msg);
                        }
                        None
                    }
                }
            }
            RawSet::Map(map) => {
                let mut ok = true;
                for (key, value) in map {
                    if !raw::SET_KEYS.contains(&key.as_str()) {
                        self.error(
                            Some(Pos::of(value)),
                            None,
                            format!(
                                "set `{name}`: unknown key `{key}`{} (a set is a list, a map with {}, or a live source with url, dns or self)",
                                did_you_mean(
                                    key,
                                    raw::SET_KEYS
                                        .iter()
                                        .chain(source_spec::SOURCE_KEYS)
                                        .copied()
                                ),
                                raw::SET_KEYS.join(", ")
                            ),
                        );
                        ok = false;
                    }
                }
                let include = self.json_list(name, "include", map.get("include"));
                let except = self.json_list(name, "except", map.get("except"));
                match (ok, include, except) {
                    (true, Some(inc), Some(exc)) => {
                        if inc.is_empty() {
                            self.error(
                                Some(Pos::of(spanned)),
                                None,
                                format!(
                                    "set `{name}`: `include` is required and must not be empty"
                                ),
                            );
                            None
                        } else {
                            let (mut i, i_ok) =
                                self.resolve_entries(&inc, None, raw, states, stack);
                            let (e, e_ok) = self.resolve_entries(&exc, None, raw, states, stack);
                            if !(i_ok && e_ok) {
                                None
                            } else {
                                i.set = i.set.difference(&e.set);
                                if let Some(rest) = i.set.without_mapped_pieces() {
                                    let d = self.diag(
                                        Severity::Warning,
                                        Some(Pos::of(spanned)),
                                        None,
                                        format!(
                                            "set `{name}`: after `except`, the IPv4-mapped block \
                                             `::ffff:0:0/96` is left as a range of its own; it is \
                                             dropped, since providers match IPv4 clients by their \
                                             IPv4 address (it would admit nobody, and no provider \
                                             accepts it); declare IPv4 ranges for IPv4 clients"
                                        ),
                                    );
                                    if !self.warnings.contains(&d) {
                                        self.warnings.push(d);
                                    }
                                    i.set = rest;
                                }
                                i.host_bits.extend(e.host_bits);
                                Some(i)
                            }
                        }
                    }
                    _ => None,
                }
            }
        };
        stack.pop();
        match &result {
            Some(r) => {
                states.insert(name.to_owned(), SetState::Done(r.clone()));
            }
            None => {
                states.insert(name.to_owned(), SetState::Failed);
            }
        }
        result
    }

    /// Read `include`/`except` of a map-form set as a list of located entries.
    fn json_list(
        &mut self,
        set: &str,
        key: &str,
        v: Option<&Spanned<serde_json::Value>>,
    ) -> Option<Vec<RawEntry>> {
        let Some(v) = v else { return Some(Vec::new()) };
        let serde_json::Value::Array(items) = &v.value else {
            self.error(
                Some(Pos::of(v)),
                None,
                format!("set `{set}`: `{key}` must be a list of set names or CIDRs"),
            );
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            // Items of a map-form set only carry the list's location.
            let s = match item {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => match o.get("cidr").and_then(|c| c.as_str()) {
                    Some(c) => c.to_owned(),
                    None => {
                        self.error(
                            Some(Pos::of(v)),
                            None,
                            format!("set `{set}`: `{key}` items must be strings or {{cidr, note}}"),
                        );
                        return None;
                    }
                },
                other => other.to_string(),
            };
            out.push(RawEntry {
                value: Spanned::new(s, v.referenced, v.defined),
            });
        }
        Some(out)
    }

    /// Resolve list entries (CIDRs and set references) into one set. Every entry is looked
    /// at (every error reported); the flag is false when any was wrong, and the set then
    /// holds what the good entries resolved to.
    fn resolve_entries(
        &mut self,
        entries: &[RawEntry],
        target: Option<&str>,
        raw: &IndexMap<String, Spanned<RawSet>>,
        states: &mut HashMap<String, SetState>,
        stack: &mut Vec<String>,
    ) -> (Resolved, bool) {
        let mut nets: Vec<IpNet> = Vec::new();
        let mut host_bits = Vec::new();
        let mut positions = Vec::new();
        let mut ok = true;
        let mut acc = RangeSet::new();
        for entry in entries {
            let text = entry.value.value.trim();
            let pos = Some(Pos::of(&entry.value));
            if is_set_name(text) {
                if !raw.contains_key(text) {
                    let names = raw.keys().map(String::as_str);
                    self.error(
                        pos,
                        target,
                        format!("unknown set `{text}`{}", did_you_mean(text, names)),
                    );
                    ok = false;
                    continue;
                }
                if stack.iter().any(|s| s == text) {
                    let mut cycle: Vec<&str> = stack
                        .iter()
                        .skip_while(|s| *s != text)
                        .map(String::as_str)
                        .collect();
                    cycle.push(text);
                    self.error(
                        pos,
                        target,
                        format!(
                            "sets refer to each other in a cycle: {}",
                            cycle.join(" -> ")
                        ),
                    );
                    ok = false;
                    continue;
                }
                match self.resolve_set(text, raw, states, stack) {
                    Some(r) => {
                        acc = acc.union(&r.set);
                        host_bits.extend(r.host_bits);
                        if r.entries.is_empty() {
                            // A live source: its ranges are located at the reference.
                            if let Some(pos) = pos {
                                positions.extend(r.set.prefixes().into_iter().map(|n| (n, pos)));
                            }
                        }
                        positions.extend(r.entries);
                    }
                    None => ok = false,
                }
                continue;
            }
            match rangekeeper_cidr::parse(text) {
                Ok(p) => {
                    if let Some(msg) = bare_unspecified(text) {
                        let d = self.diag(Severity::Warning, pos, target, msg);
                        if !self.warnings.contains(&d) {
                            self.warnings.push(d);
                        }
                    }
                    if p.host_bits {
                        let msg = rangekeeper_cidr::host_bits_message(text, &p.net, false);
                        if self.strict {
                            self.error(
                                pos,
                                target,
                                rangekeeper_cidr::host_bits_message(text, &p.net, true),
                            );
                            ok = false;
                            continue;
                        }
                        let d = self.diag(Severity::Warning, pos, target, msg);
                        if !self.warnings.contains(&d) {
                            self.warnings.push(d.clone());
                        }
                        host_bits.push(d);
                    }
                    nets.push(p.net);
                    if let Some(pos) = pos {
                        positions.push((p.net, pos));
                    }
                }
                Err(e) => {
                    self.error(pos, target, format!("invalid CIDR {e}"));
                    ok = false;
                }
            }
        }
        (
            Resolved {
                set: acc.union(&RangeSet::from_nets(nets)),
                host_bits,
                entries: positions,
            },
            ok,
        )
    }

    /// Merge what a target's provider imported from its own files: located notes, the
    /// ranges (parsed here with the strict CIDR parser, located in their file) and the
    /// fields. Returns the imported set and its items as written, or `None` after errors.
    fn take_import(
        &mut self,
        name: &str,
        pos: Pos,
        field_pos: &HashMap<String, Pos>,
        imported: Imported,
        config: &mut TargetConfig,
        strict: bool,
    ) -> Option<(RangeSet, Vec<String>)> {
        let at = |loc: &Location| (loc.file.display().to_string(), loc.line, loc.column);
        let push = |cx: &mut Self,
                    severity,
                    place: (String, Option<u64>, Option<u64>),
                    message: String| {
            let d = Diagnostic {
                severity,
                file: place.0,
                line: place.1,
                column: place.2,
                target: Some(name.to_owned()),
                message,
            };
            match severity {
                Severity::Error => cx.errors.push(d),
                Severity::Warning => {
                    if !cx.warnings.contains(&d) {
                        cx.warnings.push(d);
                    }
                }
            }
        };
        let mut failed = false;
        for note in imported.notes {
            let severity = if note.is_error() {
                failed = true;
                Severity::Error
            } else {
                Severity::Warning
            };
            let place = match &note.at {
                Some(loc) => at(loc),
                None => {
                    // About the target's own fields: at the field the message names first.
                    let p = field_pos
                        .iter()
                        .filter_map(|(k, p)| note.message.find(&format!("`{k}`")).map(|i| (i, *p)))
                        .min_by_key(|(i, _)| *i)
                        .map_or(pos, |(_, p)| p);
                    let p = self.place(Some(p));
                    (self.file.clone(), p.map(|p| p.line), p.map(|p| p.column))
                }
            };
            let message = match note.at {
                Some(_) => note.message,
                None => format!("target `{name}`: {}", note.message),
            };
            push(self, severity, place, message);
        }
        let mut nets = Vec::new();
        let mut items = Vec::new();
        for r in &imported.ranges {
            let text = r.text.trim();
            match rangekeeper_cidr::parse(text) {
                Ok(p) => {
                    if let Some(msg) = bare_unspecified(text) {
                        push(self, Severity::Warning, at(&r.at), msg);
                    }
                    if p.host_bits {
                        let msg = rangekeeper_cidr::host_bits_message(text, &p.net, false);
                        if strict {
                            push(
                                self,
                                Severity::Error,
                                at(&r.at),
                                rangekeeper_cidr::host_bits_message(text, &p.net, true),
                            );
                            failed = true;
                            continue;
                        }
                        push(self, Severity::Warning, at(&r.at), msg);
                    }
                    nets.push(p.net);
                    items.push(text.to_owned());
                }
                Err(e) => {
                    push(
                        self,
                        Severity::Error,
                        at(&r.at),
                        format!("invalid CIDR {e}"),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            return None;
        }
        for (k, v) in imported.fields {
            if config.fields.contains_key(&k) {
                // The hook reports such conflicts itself; never let an import override what
                // the declaration wrote.
                continue;
            }
            config.fields.insert(k, v);
        }
        Some((RangeSet::from_nets(nets), items))
    }

    #[allow(clippy::too_many_arguments)]
    fn resolve_target(
        &mut self,
        name: &str,
        pos: Pos,
        t: RawTarget,
        raw_sets: &IndexMap<String, Spanned<RawSet>>,
        states: &mut HashMap<String, SetState>,
        base_dir: &Path,
        known_providers: &[&str],
    ) -> Option<(Target, bool)> {
        let errors_before = self.errors.len();
        let tn = Some(name);
        let provider = match &t.provider {
            None => {
                self.error(
                    Some(pos),
                    tn,
                    format!(
                        "target `{name}` has no `provider` (one of: {})",
                        known_providers.join(", ")
                    ),
                );
                None
            }
            // A provider that is not built in is a plugin: the target's `plugin:` path, or
            // `rangekeeper-provider-<name>` on PATH.
            Some(p)
                if self.left_out.iter().any(|(n, _)| *n == p.value)
                    && !t.fields.contains_key("plugin")
                    && rangekeeper_provider::protocol::find_plugin(&p.value).is_none() =>
            {
                let feature = self
                    .left_out
                    .iter()
                    .find(|(n, _)| *n == p.value)
                    .map_or(p.value.as_str(), |(_, f)| f);
                self.error(
                    Some(Pos::of(p)),
                    tn,
                    format!(
                        "target `{name}`: this rangekeeper was built without the `{0}` provider (its Cargo feature `{feature}` is off); build it with `--features {feature}` (or the default features), or use a build that has it",
                        p.value
                    ),
                );
                None
            }
            Some(p)
                if !known_providers.contains(&p.value.as_str())
                    && !t.fields.contains_key("plugin")
                    && rangekeeper_provider::protocol::find_plugin(&p.value).is_none() =>
            {
                self.error(
                    Some(Pos::of(p)),
                    tn,
                    format!(
                        "target `{name}`: unknown provider `{}`{} (known: {}; no plugin `{}{}` on PATH)",
                        p.value,
                        did_you_mean(&p.value, known_providers.iter().copied()),
                        known_providers.join(", "),
                        rangekeeper_provider::protocol::PLUGIN_PREFIX,
                        p.value,
                    ),
                );
                None
            }
            Some(p) => Some(p.value.clone()),
        };
        let mut host_bits = Vec::new();
        let mut allow_items = Vec::new();
        // A target may take its whole list from its provider's import hook: a missing `allow`
        // is an error only when nothing was imported either (see below).
        let mut entries = Vec::new();
        let desired = match &t.allow {
            None => Some(RangeSet::new()),
            Some(list) if list.value.0.is_empty() => {
                self.error(
                    Some(Pos::of(list)),
                    tn,
                    format!(
                        "target `{name}`: `allow` is empty; an empty allow-list is never applied (on some providers it opens the target to everyone). To lift a restriction on purpose, use `rangekeeper disable --target {name}`"
                    ),
                );
                None
            }
            Some(list) => {
                allow_items = list
                    .value
                    .0
                    .iter()
                    .map(|e| e.value.value.trim().to_owned())
                    .collect();
                let mut stack = Vec::new();
                let (r, _) = self.resolve_entries(&list.value.0, tn, raw_sets, states, &mut stack);
                host_bits.extend(r.host_bits);
                entries = r.entries;
                Some(r.set)
            }
        };
        let protect = match &t.protect {
            None => RangeSet::new(),
            Some(list) => {
                let mut stack = Vec::new();
                let (r, _) = self.resolve_entries(&list.value.0, tn, raw_sets, states, &mut stack);
                host_bits.extend(r.host_bits);
                r.set
            }
        };
        let on_exceed = match &t.on_exceed {
            None => OnExceed::Error,
            Some(s) => match s.value.as_str() {
                "error" => OnExceed::Error,
                "cover" => OnExceed::Cover,
                other => {
                    self.error(Some(Pos::of(s)), tn, format!("target `{name}`: `onExceed` must be `error` or `cover`, not `{other}`{}", did_you_mean(other, ["error", "cover"])));
                    OnExceed::Error
                }
            },
        };
        let max_extra = t
            .max_extra
            .as_ref()
            .and_then(|v| match parse_max_extra(&v.value) {
                Ok(m) => Some(m),
                Err(msg) => {
                    self.error(
                        Some(Pos::of(v)),
                        tn,
                        format!("target `{name}`: `maxExtra` {msg}"),
                    );
                    None
                }
            });
        let max_lease_ttl =
            t.max_lease_ttl
                .as_ref()
                .and_then(|v| match source::parse_duration(&v.value) {
                    Ok(d) if d >= std::time::Duration::from_secs(1) => Some(d),
                    Ok(_) => {
                        self.error(
                            Some(Pos::of(v)),
                            tn,
                            format!(
                                "target `{name}`: `maxLeaseTtl` must be at least 1s, not `{}`",
                                v.value.escape_debug()
                            ),
                        );
                        None
                    }
                    Err(msg) => {
                        self.error(
                            Some(Pos::of(v)),
                            tn,
                            format!("target `{name}`: `maxLeaseTtl`: {msg}"),
                        );
                        None
                    }
                });
        let max_ranges = match &t.max_ranges {
            Some(m) if m.value == 0 => {
                self.error(
                    Some(Pos::of(m)),
                    tn,
                    format!("target `{name}`: `maxRanges` must be at least 1"),
                );
                None
            }
            Some(m) => Some(usize::try_from(m.value).unwrap_or(usize::MAX)),
            None => None,
        };
        // With errors, the target is still returned (as far as it resolved: its good
        // entries) so `validate` can check the rest of it in the same pass; it is never
        // applied (see `Declaration::partial_targets`).
        let provider = provider?;
        let desired = desired.unwrap_or_default();
        let strict = t.strict.as_ref().is_some_and(|s| s.value);
        if strict {
            for h in &host_bits {
                let mut d = h.clone();
                d.severity = Severity::Error;
                d.target = Some(name.to_owned());
                d.message = format!("{} (target `{name}` is strict)", d.message);
                self.errors.push(d);
            }
        }
        let complete = self.errors.len() == errors_before;
        let mut fields = serde_json::Map::new();
        let mut field_pos = HashMap::new();
        for (k, v) in t.fields {
            field_pos.insert(k.clone(), Pos::of(&v));
            fields.insert(k, v.value);
        }
        let mut config = TargetConfig {
            name: name.to_owned(),
            base_dir: base_dir.to_path_buf(),
            fields,
        };
        let mut desired = desired;
        let mut imports = Vec::new();
        let mut check_interval = None;
        if let Some(hook) = self.import {
            let imported = hook(&provider, &config);
            imports.clone_from(&imported.files);
            check_interval = imported.check_interval;
            let strict = self.strict || strict;
            let (set, items) =
                self.take_import(name, pos, &field_pos, imported, &mut config, strict)?;
            desired = desired.union(&set);
            allow_items.extend(items);
        }
        if t.allow.is_none() && allow_items.is_empty() {
            self.error(
                Some(pos),
                tn,
                format!("target `{name}` has no `allow` list"),
            );
            return None;
        }
        if self.generated {
            // Positions in text rangekeeper built mean nothing to the user.
            field_pos.clear();
        }
        Some((
            Target {
                name: name.to_owned(),
                provider,
                description: t.description,
                pos: if self.generated { Pos::default() } else { pos },
                allow_items,
                entries,
                desired,
                policy: Policy {
                    // `--strict` for the whole run, or `strict: true` on this target.
                    strict: self.strict || strict,
                    max_ranges,
                    allow_private: t.allow_private.map(|s| s.value),
                    allow_broad: t.allow_broad.is_some_and(|s| s.value),
                    protect,
                    on_exceed,
                    max_extra,
                    max_lease_ttl,
                },
                config,
                field_pos,
                imports,
                check_interval,
                sources: Vec::new(),
                source_errors: Vec::new(),
                source_warnings: Vec::new(),
                template: None,
            },
            complete,
        ))
    }
}

/// Collect the live sources an entry uses, following set references (each set once).
fn source_deps(
    entry: &str,
    raw: &IndexMap<String, Spanned<RawSet>>,
    seen: &mut HashSet<String>,
    out: &mut BTreeSet<String>,
) {
    if !is_set_name(entry) || !seen.insert(entry.to_owned()) {
        return;
    }
    let Some(set) = raw.get(entry) else { return };
    match &set.value {
        RawSet::List(entries) => {
            for e in entries {
                source_deps(e.value.value.trim(), raw, seen, out);
            }
        }
        RawSet::Map(map) if source_spec::is_source(map) => {
            out.insert(entry.to_owned());
        }
        RawSet::Map(map) => {
            for key in ["include", "except"] {
                let items = map
                    .get(key)
                    .and_then(|v| v.value.as_array().cloned())
                    .unwrap_or_default();
                for item in items {
                    let name = match &item {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Object(o) => o
                            .get("cidr")
                            .and_then(|c| c.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        _ => continue,
                    };
                    source_deps(name.trim(), raw, seen, out);
                }
            }
        }
    }
}

/// The largest declaration (or imported) file read: far above any real allow-list,
/// and a bound on what a wrong `-f` (a device, an endless file) can make rangekeeper read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Read a declaration file's text, or say in words why not (with what to do when it is
/// missing).
fn read_text(path: &Path, what: &str) -> Result<String, String> {
    let bytes = rangekeeper_provider::fs::read_regular(path, MAX_FILE_BYTES, what).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "cannot read {what}: it does not exist; name one with `-f FILE` or `RANGEKEEPER_FILE` (`examples/quickstart.yaml` and the other files in `examples/` are ready to copy)"
            )
        } else {
            format!("cannot read {what}: {e}")
        }
    })?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        format!("{what} is not UTF-8 text: invalid byte at line {line} (byte offset {at})")
    })
}

/// A declaration file's text, read once, so it can be resolved again with new source
/// values without reading the file again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclText {
    pub text: String,
    /// The path as the user gave it (for messages).
    pub file: String,
    pub base_dir: PathBuf,
    pub is_json: bool,
    /// Built by rangekeeper from flags ([`DeclText::standalone`]), not read from a file.
    pub generated: bool,
}

impl DeclText {
    /// Read a declaration file (following symlinks): a regular file of at most
    /// [`MAX_FILE_BYTES`], UTF-8 (a leading byte-order mark is dropped).
    pub fn read(path: &Path) -> Result<DeclText, LoadError> {
        let file = path.display().to_string();
        let text = read_text(path, "the declaration file").map_err(|message| {
            LoadError(vec![Diagnostic {
                severity: Severity::Error,
                file: file.clone(),
                line: None,
                column: None,
                target: None,
                message,
            }])
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Ok(DeclText {
            text,
            file,
            base_dir,
            is_json,
            generated: false,
        })
    }

    /// The declaration of a stand-alone target: built as data (serialized by serde, so no
    /// path can break its syntax) and named after the user's file in messages. Its provider's
    /// import hook reads that file on every load.
    pub fn standalone(s: &Standalone) -> DeclText {
        let mut target = s.fields.clone();
        target.insert("provider".into(), s.provider.clone().into());
        if s.allow_broad {
            target.insert("allowBroad".into(), true.into());
        }
        let mut targets = serde_json::Map::new();
        targets.insert(s.target.clone(), serde_json::Value::Object(target));
        let doc = serde_json::json!({ "version": 1, "targets": targets });
        DeclText {
            text: doc.to_string(),
            file: s.file.display().to_string(),
            base_dir: PathBuf::from("."),
            is_json: true,
            generated: true,
        }
    }

    /// Parse and resolve with every provider's import hook called: what `validate` shows,
    /// including the targets that did resolve when others have errors.
    pub fn load(
        &self,
        opts: LoadOptions,
        catalog: &Catalog,
        values: &SourceValues,
    ) -> (Option<Declaration>, Vec<Diagnostic>) {
        self.parse(opts, &catalog.names, Some(catalog), values)
    }

    /// Resolve the text with these source values; errors fail, warnings are kept.
    pub fn resolve(
        &self,
        opts: LoadOptions,
        catalog: &Catalog,
        values: &SourceValues,
    ) -> Result<Declaration, LoadError> {
        let (decl, diags) = self.load(opts, catalog, values);
        match decl {
            Some(mut d) if !has_errors(&diags) => {
                d.warnings = diags;
                Ok(d)
            }
            _ => Err(LoadError(diags)),
        }
    }
}

/// `maxExtra`: a whole number of addresses, or a multiple of the declared count like `"3x"`.
fn parse_max_extra(v: &serde_json::Value) -> Result<MaxExtra, String> {
    match v {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(|n| MaxExtra::Addresses(u128::from(n)))
            .ok_or_else(|| {
                format!("must be a whole number of addresses or a multiple like \"2x\", not {n}")
            }),
        serde_json::Value::String(s) => {
            let t = s.trim();
            if let Some(m) = t.strip_suffix('x') {
                match m.trim().parse::<f64>() {
                    Ok(f) if f.is_finite() && f >= 0.0 => Ok(MaxExtra::Multiple(f)),
                    _ => Err(format!("`{s}` is not a multiple like \"2x\"")),
                }
            } else {
                t.parse::<u128>().map(MaxExtra::Addresses).map_err(|_| {
                    format!("`{s}` is not a whole number of addresses or a multiple like \"2x\"")
                })
            }
        }
        other => Err(format!(
            "must be a whole number of addresses or a multiple like \"2x\", not {other}"
        )),
    }
}

impl Target {
    /// Locate a provider config error: at the field it names when it names one, with a
    /// hint when an unknown field looks like a misspelt common key (`alow` -> `allow`).
    pub fn config_error(&self, file: &str, mut message: String) -> Diagnostic {
        if let Some(unknown) = self
            .field_pos
            .keys()
            .find(|k| message.contains(&format!("unknown field `{k}`")))
            && !message.contains("did you mean")
        {
            message.push_str(&did_you_mean(
                unknown,
                raw::TARGET_COMMON_KEYS.iter().copied(),
            ));
        }
        // The field the message names first (serde lists the expected fields after it).
        let pos = self
            .field_pos
            .iter()
            .filter_map(|(k, p)| message.find(&format!("`{k}`")).map(|at| (at, *p)))
            .min_by_key(|(at, _)| *at)
            .map_or(self.pos, |(_, p)| p);
        let known = pos.line > 0;
        Diagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line: known.then_some(pos.line),
            column: known.then_some(pos.column),
            target: Some(self.name.clone()),
            message,
        }
    }

    /// A diagnostic at the target's own location.
    pub fn diagnostic(&self, file: &str, severity: Severity, message: String) -> Diagnostic {
        self.diagnostic_at(self.pos, file, severity, message)
    }

    /// A diagnostic at `pos` (an entry of the target, a field); positions in text
    /// rangekeeper built itself (line 0) are left out.
    pub fn diagnostic_at(
        &self,
        pos: Pos,
        file: &str,
        severity: Severity,
        message: String,
    ) -> Diagnostic {
        let known = pos.line > 0;
        Diagnostic {
            severity,
            file: file.to_owned(),
            line: known.then_some(pos.line),
            column: known.then_some(pos.column),
            target: Some(self.name.clone()),
            message,
        }
    }

    /// Where the entry that put `range` in the desired set is written: the entry equal to
    /// it, else the first one (in file order) inside it or around it.
    pub fn entry_at(&self, range: &IpNet) -> Option<Pos> {
        self.entries
            .iter()
            .find(|(n, _)| n == range)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(n, _)| range.contains(n) || n.contains(range))
            })
            .map(|(_, p)| *p)
    }
}
