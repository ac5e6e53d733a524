//! What the reconciler last saw of each target, kept in `<state-dir>/targets.json` across
//! runs, so a `--once` run (or a restarted loop) judges drift against the last run and labels
//! its change with the real trigger: `drift` when someone changed the target, `declaration`
//! when the desired list changed, `config` when the target's settings changed, and `initial`
//! only for a target never seen before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The file as written, borrowing the memory (no copy of every target per write).
#[derive(serde::Serialize)]
struct FileRef<'a> {
    version: u32,
    targets: &'a BTreeMap<String, Seen>,
}

/// Shortest time between two writes while targets keep finishing. Each write is the whole
/// file, so writing it once per target made a first pass over N targets write O(N^2) bytes
/// (10,000 targets: 10,000 writes of up to 3 MB). What is not yet written is written when the
/// reconciler has nothing in flight ([`Memory::flush`]) and when the memory is dropped.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The targets' memory and where it is kept.
#[derive(Debug)]
pub struct Memory {
    path: PathBuf,
    targets: BTreeMap<String, Seen>,
    /// Remembered but not yet written.
    dirty: bool,
    /// When the file was last written by this process.
    written: Option<Instant>,
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
        Memory {
            path,
            targets,
            dirty: false,
            written: None,
        }
    }

    pub fn get(&self, target: &str) -> Option<&Seen> {
        self.targets.get(target)
    }

    /// Remember `seen` for `target`, writing the file (atomically) when it changed and the
    /// last write is [`WRITE_EVERY`] old; otherwise at the next [`Memory::flush`].
    pub fn remember(&mut self, target: &str, seen: Seen) {
        if self.targets.get(target) == Some(&seen) {
            return;
        }
        self.targets.insert(target.to_owned(), seen);
        self.dirty = true;
        if self.written.is_none_or(|t| t.elapsed() >= WRITE_EVERY) {
            self.flush();
        }
    }

    /// Write what was remembered and not yet written, if anything.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        self.written = Some(Instant::now());
        let file = FileRef {
            version: 1,
            targets: &self.targets,
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

impl Drop for Memory {
    fn drop(&mut self) {
        self.flush();
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

    fn seen(range: &str) -> Seen {
        Seen {
            holds: vec![range.into()],
            desired: vec![range.into()],
            config: serde_json::Map::new(),
        }
    }

    fn on_disk(dir: &Path) -> Vec<String> {
        Memory::open(dir).targets.keys().cloned().collect()
    }

    #[test]
    fn a_burst_of_targets_is_written_at_most_once_a_second_and_flushed_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Memory::open(dir.path());
        m.remember("t0", seen("192.0.2.0/24"));
        assert_eq!(
            on_disk(dir.path()),
            ["t0"],
            "the first one is written at once"
        );
        for i in 1..1000 {
            m.remember(&format!("t{i}"), seen("192.0.2.0/24"));
        }
        assert_eq!(on_disk(dir.path()), ["t0"], "not one write per target");
        m.flush();
        assert_eq!(on_disk(dir.path()).len(), 1000);
        // A target seen again unchanged writes nothing; a change after the interval is
        // written at once.
        std::thread::sleep(WRITE_EVERY);
        m.remember("t1", seen("192.0.2.0/24"));
        assert!(!m.dirty);
        m.remember("t1", seen("198.51.100.0/24"));
        assert!(!m.dirty);
        assert_eq!(
            Memory::open(dir.path()).get("t1"),
            Some(&seen("198.51.100.0/24"))
        );
        // What is pending when the memory goes away is written then.
        m.remember("late", seen("192.0.2.0/24"));
        assert!(m.dirty);
        drop(m);
        assert!(Memory::open(dir.path()).get("late").is_some());
    }
}
