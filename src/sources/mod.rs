//! Live range sources for named sets (`url`, `dns`, `self`): fetching, the hold-back rules
//! for untrusted input, the on-disk cache of last good values, and resolving a declaration
//! with the values it uses.
//!
//! A source's value only changes to a fetched set that passed every check; a fetch that
//! fails, returns nothing, yields a default route or grows more than tenfold keeps the last
//! good value (marked stale). A target that uses a source without any value is not applied.

pub mod fetch;
/// The source specs are part of the declaration; fetching them is this module's job.
pub use crate::declaration::source as spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use rangekeeper_cidr::RangeSet;

use crate::declaration::{Declaration, SourceValues};
use fetch::{FetchError, Fetcher};
use spec::{SourceKind, SourceSpec};

/// The store's name for the egress IP found with `--self-echo` (not a valid set name, so it
/// never collides with one).
pub const SELF_ECHO: &str = "_self-echo";

/// A source value may grow at most this many times over the last good one in one step.
pub const MAX_GROWTH: u128 = 10;

/// What is known about one source.
#[derive(Debug, Clone)]
pub struct SourceState {
    pub spec: SourceSpec,
    /// The last good value.
    pub value: Option<RangeSet>,
    /// When the last good value was fetched.
    pub fetched_at: Option<SystemTime>,
    /// The last refresh failed or was held back: `value` is older than it should be.
    pub stale: bool,
    /// Why the last refresh gave no new value.
    pub last_error: Option<String>,
    /// The kind of the last error, for metrics.
    pub last_error_kind: Option<&'static str>,
    /// When to fetch again.
    pub next_refresh: Instant,
    /// Consecutive failed refreshes (for the retry delay).
    pub failures: u32,
}

impl SourceState {
    /// Seconds since the last good value was fetched.
    pub fn age(&self) -> Option<Duration> {
        self.fetched_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

/// What one refresh did to a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// A new value was accepted (it differs from the last good one).
    Changed,
    /// The same value again.
    Unchanged,
    /// No new value; the last good one (if any) stays.
    Failed,
}

/// Every source's state, with the on-disk cache under `<state-dir>/sources/`.
#[derive(Debug)]
pub struct Store {
    dir: Option<PathBuf>,
    pub states: IndexMap<String, SourceState>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CacheFile {
    source: String,
    identity: String,
    fetched_at: u64,
    ranges: Vec<String>,
}

impl Store {
    /// A store caching in `state_dir` (none: nothing is cached).
    pub fn new(state_dir: Option<&Path>) -> Store {
        Store {
            dir: state_dir.map(|d| d.join("sources")),
            states: IndexMap::new(),
        }
    }

    /// Track exactly these specs: new ones start from the cache (when it holds a value of
    /// the same spec) and are due at once unless the cached value is fresh; removed ones are
    /// forgotten; a changed spec starts over.
    pub fn sync(&mut self, specs: &IndexMap<String, SourceSpec>) {
        self.states
            .retain(|name, st| specs.get(name) == Some(&st.spec));
        for (name, spec) in specs {
            if self.states.contains_key(name) {
                continue;
            }
            let mut st = SourceState {
                spec: spec.clone(),
                value: None,
                fetched_at: None,
                stale: false,
                last_error: None,
                last_error_kind: None,
                next_refresh: Instant::now(),
                failures: 0,
            };
            match self.read_cache(spec) {
                Ok(Some((value, at))) => {
                    let age = SystemTime::now().duration_since(at).unwrap_or_default();
                    if age < spec.refresh {
                        st.next_refresh = Instant::now() + (spec.refresh - age);
                    }
                    st.value = Some(value);
                    st.fetched_at = Some(at);
                }
                Ok(None) => {}
                Err(why) => {
                    // Fetched at once instead; the reason stays visible until then.
                    tracing::warn!(source = %name, "ignoring the cached value: {why}");
                    st.last_error = Some(format!("the cached value was ignored: {why}"));
                    st.last_error_kind = Some("cache");
                }
            }
            self.states.insert(name.clone(), st);
        }
    }

    /// The sources due for a refresh at `now`.
    pub fn due(&self, now: Instant) -> Vec<SourceSpec> {
        self.states
            .values()
            .filter(|s| s.next_refresh <= now)
            .map(|s| s.spec.clone())
            .collect()
    }

    /// The earliest next refresh.
    pub fn next_refresh(&self) -> Option<Instant> {
        self.states.values().map(|s| s.next_refresh).min()
    }

    /// Record a fetch result under the hold-back rules.
    pub fn record(&mut self, name: &str, result: Result<RangeSet, FetchError>) -> Refreshed {
        // A value accepted with `rangekeeper sources accept` while this process runs is
        // newer than what it holds: it becomes the last good value the new one is held to.
        let accepted = self
            .states
            .get(name)
            .and_then(|st| match self.read_cache(&st.spec) {
                Ok(Some((v, at))) if st.fetched_at.is_none_or(|f| at > f) => Some((v, at)),
                _ => None,
            });
        let Some(st) = self.states.get_mut(name) else {
            return Refreshed::Failed;
        };
        if let Some((v, at)) = accepted {
            st.value = Some(v);
            st.fetched_at = Some(at);
        }
        let held = match &result {
            Ok(new) => hold_back(name, st.value.as_ref(), new)
                .is_some()
                .then(|| new.clone()),
            Err(_) => None,
        };
        let verdict =
            result
                .map_err(|e| (e.kind(), e.to_string()))
                .and_then(|new| match hold_back(name, st.value.as_ref(), &new) {
                    Some(why) => Err(("held_back", why)),
                    None => Ok(new),
                });
        match verdict {
            Ok(new) => {
                let changed = st.value.as_ref() != Some(&new);
                st.value = Some(new);
                st.fetched_at = Some(SystemTime::now());
                st.stale = false;
                st.last_error = None;
                st.last_error_kind = None;
                st.failures = 0;
                st.next_refresh = Instant::now() + jittered(st.spec.refresh);
                let spec = st.spec.clone();
                let (value, at) = (st.value.clone(), st.fetched_at);
                if let (Some(value), Some(at)) = (value, at)
                    && let Err(e) = self.write_cache(&spec, &value, at)
                {
                    tracing::warn!(source = %name, "cannot cache the source's value: {e}");
                }
                self.remove_pending(name);
                if changed {
                    Refreshed::Changed
                } else {
                    Refreshed::Unchanged
                }
            }
            Err((kind, why)) => {
                st.failures = st.failures.saturating_add(1);
                st.stale = st.value.is_some();
                st.last_error = Some(why.clone());
                st.last_error_kind = Some(kind);
                // Retry sooner than the refresh interval, backing off up to it.
                let retry = Duration::from_secs(5)
                    .saturating_mul(1 << st.failures.min(8))
                    .min(st.spec.refresh);
                st.next_refresh = Instant::now() + jittered(retry);
                if st.value.is_some() {
                    tracing::warn!(source = %name, kind, "source not refreshed, keeping its last good value: {why}");
                } else {
                    tracing::error!(source = %name, kind, "source has no value: {why}");
                }
                let spec = st.spec.clone();
                if let Some(held) = held {
                    self.write_pending(&spec, &held);
                }
                Refreshed::Failed
            }
        }
    }

    /// The value of every source that has one.
    pub fn values(&self) -> SourceValues {
        self.states
            .iter()
            .filter_map(|(n, s)| s.value.clone().map(|v| (n.clone(), v)))
            .collect()
    }

    /// This machine's egress IP: the value of a `self` set, or of `--self-echo`.
    pub fn egress(&self) -> Option<(std::net::IpAddr, String)> {
        self.states.iter().find_map(|(name, st)| {
            if !matches!(st.spec.kind, SourceKind::Egress { .. }) {
                return None;
            }
            let v = st.value.as_ref()?;
            let net = v.prefixes().into_iter().next()?;
            let via = if name == SELF_ECHO {
                "found with --self-echo".to_owned()
            } else {
                format!("set `{name}`")
            };
            Some((net.addr(), via))
        })
    }

    /// Mark each target's source problems: no value (the target is not applied) or stale.
    pub fn annotate(&self, decl: &mut Declaration) {
        // Discovery templates too: the targets made from them inherit their marks.
        let templates = decl
            .discover
            .iter_mut()
            .flat_map(|d| d.templates.values_mut().map(|t| &mut t.target));
        for t in decl.targets.values_mut().chain(templates) {
            t.source_errors.clear();
            t.source_warnings.clear();
            for s in &t.sources {
                let st = self.states.get(s);
                match st.and_then(|st| st.value.as_ref().map(|_| st)) {
                    None => t.source_errors.push(format!(
                        "source `{s}` has no value{}; `{}` is not applied so its allow-list never shrinks because a download failed",
                        st.and_then(|st| st.last_error.as_ref())
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_else(|| " (not fetched yet)".into()),
                        t.name
                    )),
                    Some(st) if st.stale => t.source_warnings.push(format!(
                        "source `{s}` is stale: using its last good value{} ({})",
                        st.age()
                            .map(|a| format!(" from {} ago", spec::format_duration(Duration::from_secs(a.as_secs()))))
                            .unwrap_or_default(),
                        st.last_error.as_deref().unwrap_or("not refreshed")
                    )),
                    Some(_) => {}
                }
            }
        }
    }

    /// This machine's egress IP as the lockout guard uses it, when a `self` source or the
    /// echo endpoints found it (runtime state, kept out of the declaration).
    pub fn lockout(&self, allowed: bool) -> Option<crate::guard::Lockout> {
        self.egress()
            .map(|(ip, via)| crate::guard::Lockout { ip, via, allowed })
    }

    /// Fetch every due source concurrently and record the results. Returns whether any
    /// value changed.
    pub async fn refresh_due(&mut self, fetcher: &Fetcher) -> bool {
        let due = self.due(Instant::now());
        let results = futures::future::join_all(due.iter().map(|spec| async move {
            tracing::debug!(source = %spec.name, "fetching {spec}");
            (spec.name.clone(), fetcher.fetch(spec).await)
        }))
        .await;
        let mut changed = false;
        for (name, r) in results {
            changed |= self.record(&name, r) == Refreshed::Changed;
        }
        changed
    }

    fn cache_path(&self, name: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{name}.json")))
    }

    fn pending_path(&self, name: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{name}.held-back.json")))
    }

    /// The cached value of `spec`, checked like a fetched value: `Ok(None)` when there is
    /// none (or it belongs to another spec), `Err` with the reason when a cache file exists
    /// but cannot be used (it does not parse, holds a bad or empty value, is dated in the
    /// future, or fails the hold-back rules).
    fn read_cache(&self, spec: &SourceSpec) -> Result<Option<(RangeSet, SystemTime)>, String> {
        let Some(path) = self.cache_path(&spec.name) else {
            return Ok(None);
        };
        read_value_file(&path, spec)
    }

    fn write_cache(
        &self,
        spec: &SourceSpec,
        value: &RangeSet,
        at: SystemTime,
    ) -> std::io::Result<()> {
        match self.cache_path(&spec.name) {
            Some(path) => write_value_file(&path, spec, value, at),
            None => Ok(()),
        }
    }

    /// Keep a held-back value where `rangekeeper sources accept` finds it.
    fn write_pending(&self, spec: &SourceSpec, value: &RangeSet) {
        if let Some(path) = self.pending_path(&spec.name)
            && let Err(e) = write_value_file(&path, spec, value, SystemTime::now())
        {
            tracing::warn!(source = %spec.name, "cannot keep the held-back value: {e}");
        }
    }

    fn remove_pending(&self, name: &str) {
        if let Some(path) = self.pending_path(name) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Accept the value held back for `name` (written by an earlier refresh): it becomes the
    /// last good value in the cache. Returns the value it replaces (if any) and the new one.
    pub fn accept(&mut self, name: &str) -> Result<(Option<RangeSet>, RangeSet), String> {
        let st = self
            .states
            .get(name)
            .ok_or_else(|| format!("no live source `{name}` in the declaration"))?;
        let spec = st.spec.clone();
        let old = st.value.clone();
        let path = self
            .pending_path(name)
            .ok_or("no state directory: pass --state-dir")?;
        let (value, _) = read_value_file(&path, &spec)
            .map_err(|e| format!("the held-back value of `{name}` cannot be used: {e}"))?
            .ok_or_else(|| {
                format!(
                    "nothing is held back for `{name}` (no {}); its last good value is in force",
                    path.display()
                )
            })?;
        // The one rule a person cannot waive: a source never yields every address.
        if let Some(why) = hold_back(name, None, &value) {
            return Err(format!(
                "the held-back value of `{name}` cannot be accepted: {why}"
            ));
        }
        let now = SystemTime::now();
        self.write_cache(&spec, &value, now)
            .map_err(|e| format!("cannot write the cache of `{name}`: {e}"))?;
        self.remove_pending(name);
        if let Some(st) = self.states.get_mut(name) {
            st.value = Some(value.clone());
            st.fetched_at = Some(now);
            st.stale = false;
            st.last_error = None;
            st.last_error_kind = None;
        }
        Ok((old, value))
    }
}

/// The most bytes a cache file may hold (a source's own cap is 16 MiB of JSON by default;
/// its canonical ranges are smaller).
const MAX_CACHE_BYTES: u64 = 64 << 20;

/// Read a value file of `spec` (the cache, or a held-back value): `Ok(None)` when it does
/// not exist or belongs to another spec (the source changed), `Err` when it exists but
/// cannot be used. The value passes the same checks as a fetched one: strict CIDRs in
/// canonical form, not empty, not dated in the future, no default route.
fn read_value_file(
    path: &Path,
    spec: &SourceSpec,
) -> Result<Option<(RangeSet, SystemTime)>, String> {
    let bytes = match rangekeeper_provider::fs::read_regular(path, MAX_CACHE_BYTES, "a cache file")
    {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let c: CacheFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} does not parse: {e}", path.display()))?;
    if c.identity != spec.identity() {
        return Ok(None);
    }
    let mut nets = Vec::with_capacity(c.ranges.len());
    for r in &c.ranges {
        match rangekeeper_cidr::parse(r) {
            Ok(p) if !p.host_bits => nets.push(p.net),
            Ok(p) => {
                return Err(format!(
                    "{}: `{r}` is not in canonical form (`{}`); rangekeeper never writes that",
                    path.display(),
                    p.net
                ));
            }
            Err(e) => return Err(format!("{}: invalid CIDR {e}", path.display())),
        }
    }
    let set = RangeSet::from_nets(nets);
    if set.is_empty() {
        return Err(format!("{} holds no ranges", path.display()));
    }
    let at = UNIX_EPOCH + Duration::from_secs(c.fetched_at);
    if at > SystemTime::now() + Duration::from_secs(300) {
        return Err(format!(
            "{} is dated in the future (fetchedAt {})",
            path.display(),
            c.fetched_at
        ));
    }
    if let Some(why) = hold_back(&spec.name, None, &set) {
        return Err(format!("{}: {why}", path.display()));
    }
    Ok(Some((set, at)))
}

fn write_value_file(
    path: &Path,
    spec: &SourceSpec,
    value: &RangeSet,
    at: SystemTime,
) -> std::io::Result<()> {
    let c = CacheFile {
        source: spec.name.clone(),
        identity: spec.identity(),
        fetched_at: at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        ranges: value.prefixes().iter().map(ToString::to_string).collect(),
    };
    let mut text = serde_json::to_string_pretty(&c).map_err(std::io::Error::other)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Why a value is held back instead of replacing `old`, if it is. Every value a source can
/// take, fetched or read from the cache, goes through this.
///
/// - A value holding `0.0.0.0/0` or `::/0` is never used.
/// - Against the last good value, each family (IPv4 and IPv6 alike) may grow or shrink at
///   most [`MAX_GROWTH`]-fold in one step, in ranges and in addresses. A family that
///   appears or disappears is measured against one range of a /24 (IPv4) or /48 (IPv6), so
///   growth from nothing is bounded too.
///
/// The last good value stays in force; `rangekeeper sources accept SET` takes the held-back
/// value when the change is legitimate.
pub fn hold_back(name: &str, old: Option<&RangeSet>, new: &RangeSet) -> Option<String> {
    if let Some(p) = new.prefixes().into_iter().find(|p| p.prefix_len() == 0) {
        return Some(format!(
            "it yields `{p}` (every address); held back, never applied from a source"
        ));
    }
    let old = old?;
    let (oc, nc) = (old.address_count(), new.address_count());
    let families = [
        (
            "IPv4",
            old.v4_len() as u128,
            new.v4_len() as u128,
            u128::from(oc.v4),
            u128::from(nc.v4),
            1u128 << 8,
        ),
        (
            "IPv6",
            old.v6_len() as u128,
            new.v6_len() as u128,
            oc.v6,
            nc.v6,
            1u128 << 80,
        ),
    ];
    for (family, o_len, n_len, o_addrs, n_addrs, unit) in families {
        // A family that appears or disappears is measured against one range of a typical
        // size, so a feed cannot jump from no IPv6 to half the internet, nor drop a whole
        // family of a large list, while a small egress or DNS source may switch families.
        let beyond_one =
            |len: u128, addrs: u128| len > MAX_GROWTH || addrs > unit.saturating_mul(MAX_GROWTH);
        let (grew, from_none) = if o_len == 0 && n_len == 0 {
            (None, false)
        } else if o_len == 0 {
            (beyond_one(n_len, n_addrs).then_some(true), true)
        } else if n_len == 0 {
            (beyond_one(o_len, o_addrs).then_some(false), true)
        } else if sharp_change(o_len, n_len) || sharp_change(o_addrs, n_addrs) {
            (Some(n_addrs > o_addrs || n_len > o_len), false)
        } else {
            (None, false)
        };
        if let Some(grew) = grew {
            return Some(format!(
                "it {} more than {MAX_GROWTH}-fold in {family} ({o_len} -> {n_len} range{}, {o_addrs} -> {n_addrs} address{}{}); held back as suspicious, the last good value stays (if the change is legitimate: `rangekeeper sources accept {name}`)",
                if grew { "grew" } else { "shrank" },
                plural(n_len),
                if n_addrs == 1 { "" } else { "es" },
                if from_none {
                    format!(
                        "; a family that appears or disappears is measured against one /{}",
                        if family == "IPv4" { 24 } else { 48 }
                    )
                } else {
                    String::new()
                },
            ));
        }
    }
    None
}

/// Whether `new` is more than [`MAX_GROWTH`] times larger or smaller than `old` (which is
/// not zero; a family that disappears entirely is a sharp shrink).
fn sharp_change(old: u128, new: u128) -> bool {
    old > 0 && (new > old.saturating_mul(MAX_GROWTH) || new.saturating_mul(MAX_GROWTH) < old)
}

fn plural(n: u128) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Up to 10% random extra, so many instances do not refresh in lockstep.
pub fn jittered(d: Duration) -> Duration {
    let extra = rand::random::<f64>() * 0.1;
    d + d.mul_f64(extra)
}

/// Write a file atomically (see [`rangekeeper_provider::fs::write_atomic`]), creating its
/// directory first; a new file is readable by its owner only.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    rangekeeper_provider::fs::write_atomic(path, bytes, 0o600).map(|_| ())
}

/// Options for resolving a declaration with live values.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub state_dir: Option<PathBuf>,
    pub self_echo: Vec<reqwest::Url>,
    pub allow_lockout: bool,
}

/// The specs to track for a declaration: its sources, plus `--self-echo` when given and no
/// `self` set exists.
pub fn tracked_specs(
    decl: &Declaration,
    self_echo: &[reqwest::Url],
) -> IndexMap<String, SourceSpec> {
    let mut specs = decl.sources.clone();
    let has_self = specs
        .values()
        .any(|s| matches!(s.kind, SourceKind::Egress { .. }));
    if !self_echo.is_empty() && !has_self {
        specs.insert(
            SELF_ECHO.to_owned(),
            SourceSpec {
                name: SELF_ECHO.to_owned(),
                kind: SourceKind::Egress {
                    endpoints: self_echo.to_vec(),
                },
                refresh: Duration::from_secs(600),
                timeout: Duration::from_secs(10),
                max_bytes: 1024,
            },
        );
    }
    specs
}

/// Load a declaration for a one-shot command: resolve it, fetch the sources it uses (cached
/// values in the state dir are used while fresh), resolve it again with their values, and
/// mark source problems. Returns it with this machine's egress IP for the lockout guard,
/// when one was found.
pub async fn load_live(
    text: &crate::declaration::DeclText,
    opts: crate::declaration::LoadOptions,
    catalog: &crate::declaration::Catalog,
    live: &LiveOptions,
) -> Result<(Declaration, Option<crate::guard::Lockout>), crate::declaration::LoadError> {
    let first = text.resolve(opts, catalog, &HashMap::new())?;
    let specs = tracked_specs(&first, &live.self_echo);
    if specs.is_empty() {
        return Ok((first, None));
    }
    let mut store = Store::new(live.state_dir.as_deref());
    store.sync(&specs);
    match Fetcher::new(live.self_echo.clone()) {
        Ok(fetcher) => {
            // Whether a value changed does not matter here: the declaration is resolved
            // from the store's values either way.
            store.refresh_due(&fetcher).await;
        }
        Err(e) => tracing::error!("cannot fetch the sources: {e:#}"),
    }
    let mut decl = text.resolve(opts, catalog, &store.values())?;
    store.annotate(&mut decl);
    Ok((decl, store.lockout(live.allow_lockout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(
            items
                .iter()
                .map(|s| rangekeeper_cidr::parse(s).unwrap().net),
        )
    }

    #[test]
    fn default_routes_are_held_back() {
        assert!(hold_back("s", None, &set(&["0.0.0.0/0"])).is_some());
        assert!(hold_back("s", Some(&set(&["192.0.2.0/24"])), &set(&["::/0"])).is_some());
        assert!(hold_back("s", None, &set(&["0.0.0.0/1"])).is_none());
    }

    #[test]
    fn sharp_shrinks_are_held_back_like_growth() {
        let old = set(&["192.0.2.0/24", "198.51.100.0/24"]);
        assert!(hold_back("s", Some(&old), &set(&["192.0.2.1"])).is_some());
        assert!(hold_back("s", Some(&old), &set(&["192.0.2.0/25"])).is_none());
    }

    #[test]
    fn growth_is_bounded_per_family_and_from_none() {
        let old = set(&["192.0.2.0/24"]);
        // IPv6 from none: one /48 is fine, a /32 is 65536 of them.
        assert!(hold_back("s", Some(&old), &set(&["192.0.2.0/24", "2001:db8::/48"])).is_none());
        assert!(hold_back("s", Some(&old), &set(&["192.0.2.0/24", "2001:db8::/32"])).is_some());
        // A big IPv6 part does not hide a sharp IPv4 change.
        let mixed = set(&["192.0.2.0/24", "2001:db8::/32"]);
        assert!(hold_back("s", Some(&mixed), &set(&["10.0.0.0/16", "2001:db8::/32"])).is_some());
        // An egress IP may move from IPv4 to IPv6.
        assert!(hold_back("s", Some(&set(&["192.0.2.1"])), &set(&["2001:db8::1"])).is_none());
    }

    #[test]
    fn tenfold_growth_is_held_back() {
        let old = set(&["192.0.2.0/24"]);
        assert!(hold_back("s", Some(&old), &set(&["10.0.0.0/20"])).is_some());
        assert!(hold_back("s", Some(&old), &set(&["10.0.0.0/22"])).is_none());
        let many: Vec<String> = (0..11).map(|i| format!("192.0.2.{}", i * 2)).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(hold_back("s", Some(&set(&["198.51.100.1"])), &set(&many)).is_some());
    }
}
