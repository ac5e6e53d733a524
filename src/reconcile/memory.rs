//! What the reconciler last saw of each target, kept in `<state-dir>/targets.json` across
//! runs, so a `--once` run (or a restarted loop) judges drift against the last run and labels
//! its change with the real trigger: `drift` when someone changed the target, `declaration`
//! when the desired list changed, `config` when the target's settings changed, and `initial`
//! only for a target never seen before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rangekeeper_cidr::RangeSet;

use crate::declaration::Target;

/// One target as last seen in sync (or right after an apply).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// What the target held.
    pub holds: Vec<String>,
    /// What the declaration asked for then.
    pub desired: Vec<String>,
    /// The target's provider settings then (as in the declaration, plus what its provider
    /// imported), so a settings change is reported as one.
    pub config: serde_json::Map<String, serde_json::Value>,
}

impl Seen {
    pub fn new(target: &Target, holds: &RangeSet) -> Seen {
        Seen {
            holds: strings(holds),
            desired: strings(&target.desired),
            config: target.config.fields.clone(),
        }
    }

    /// The held set (unparsable entries, from a hand-edited file, are left out).
    pub fn held(&self) -> RangeSet {
        parse(&self.holds)
    }
}

fn strings(set: &RangeSet) -> Vec<String> {
    set.prefixes().iter().map(ToString::to_string).collect()
}

fn parse(items: &[String]) -> RangeSet {
    RangeSet::from_nets(
        items
            .iter()
            .filter_map(|s| rangekeeper_cidr::parse(s).ok())
            .map(|p| p.net),
    )
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct File {
    version: u32,
    targets: BTreeMap<String, Seen>,
}

/// The targets' memory and where it is kept.
#[derive(Debug)]
pub struct Memory {
    path: PathBuf,
    targets: BTreeMap<String, Seen>,
}

impl Memory {
    /// Read `<dir>/targets.json`; a missing or unreadable file is an empty memory (every
    /// target is then new, as before the file existed).
    pub fn open(dir: &Path) -> Memory {
        let path = dir.join("targets.json");
        let targets = match rangekeeper_provider::fs::read_regular(&path, 16 << 20, "the state") {
            Ok(bytes) => match serde_json::from_slice::<File>(&bytes) {
                Ok(f) if f.version == 1 => f.targets,
                Ok(f) => {
                    tracing::warn!(
                        "{} has version {}; starting without it",
                        path.display(),
                        f.version
                    );
                    BTreeMap::new()
                }
                Err(e) => {
                    tracing::warn!(
                        "{} is not readable ({e}); starting without it",
                        path.display()
                    );
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!("cannot read {}: {e}; starting without it", path.display());
                BTreeMap::new()
            }
        };
        Memory { path, targets }
    }

    pub fn get(&self, target: &str) -> Option<&Seen> {
        self.targets.get(target)
    }

    /// Remember `seen` for `target`, writing the file (atomically) when it changed.
    pub fn remember(&mut self, target: &str, seen: Seen) {
        if self.targets.get(target) == Some(&seen) {
            return;
        }
        self.targets.insert(target.to_owned(), seen);
        let file = File {
            version: 1,
            targets: self.targets.clone(),
        };
        let written = serde_json::to_vec_pretty(&file)
            .map_err(std::io::Error::other)
            .and_then(|bytes| crate::sources::write_atomic(&self.path, &bytes));
        if let Err(e) = written {
            tracing::warn!(
                "cannot write {}: {e} (the next run judges drift without it)",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_targets_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Memory::open(dir.path());
        assert!(m.get("t").is_none());
        let seen = Seen {
            holds: vec!["192.0.2.0/24".into()],
            desired: vec!["192.0.2.0/24".into()],
            config: serde_json::Map::new(),
        };
        m.remember("t", seen.clone());
        let m = Memory::open(dir.path());
        assert_eq!(m.get("t"), Some(&seen));
        assert_eq!(
            seen.held(),
            RangeSet::from_nets([rangekeeper_cidr::parse("192.0.2.0/24").unwrap().net])
        );
        std::fs::write(dir.path().join("targets.json"), "garbage").unwrap();
        assert!(Memory::open(dir.path()).get("t").is_none());
    }
}
