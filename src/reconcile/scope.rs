//! Which due target starts next, and how many of one API quota may be in flight: one queue
//! of due targets per quota scope (what [`rangekeeper_provider::Provider::quota_scope`]
//! names: an AKS subscription, an EKS account and region), each with its own concurrency
//! limit under the loop's global bound. A scope's limit is additive-increase,
//! multiplicative-decrease: halved when its API throttles (or says its quota is nearly
//! spent), at most once per round of calls started after the previous cut, and raised by
//! one per success up to `--concurrency-per-scope`. Targets without a scope share only the
//! global bound.
//!
//! Picking the next target costs a heap operation and a look at each scope's earliest
//! entry, never a scan of every target: the loop runs this once per finished target.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// A quota scope; `None`: the target shares no quota.
pub type Key = Option<String>;

/// The due queues and concurrency limits of every scope.
#[derive(Debug)]
pub struct Scheduler {
    /// The most targets of one scope in flight (`--concurrency-per-scope`).
    bound: usize,
    scopes: HashMap<Key, Scope>,
}

#[derive(Debug)]
struct Scope {
    /// How many may be in flight now (between 1 and the bound; unbounded without a scope).
    limit: usize,
    in_flight: usize,
    /// When the limit was last cut: throttling seen by calls started before that is the
    /// same congestion, already answered.
    last_cut: Option<Instant>,
    /// Due times and target names; an entry the target no longer matches is dropped when
    /// it surfaces (the caller says which are current).
    queue: BinaryHeap<Reverse<(Instant, String)>>,
}

/// What a finished target tells its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The scope's API throttled this target or said its quota is nearly spent.
    Throttled,
    /// A success that saw no sign of throttling.
    Succeeded,
    /// Anything else (a failure of the target itself): the limit stays.
    Other,
}

impl Scheduler {
    pub fn new(bound: usize) -> Self {
        Scheduler {
            bound: bound.max(1),
            scopes: HashMap::new(),
        }
    }

    fn scope(&mut self, key: &Key) -> &mut Scope {
        let bound = self.bound;
        self.scopes.entry(key.clone()).or_insert_with(|| Scope {
            limit: if key.is_some() { bound } else { usize::MAX },
            in_flight: 0,
            last_cut: None,
            queue: BinaryHeap::new(),
        })
    }

    /// Queue `name` of scope `key`, due at `due`.
    pub fn push(&mut self, key: &Key, due: Instant, name: String) {
        self.scope(key).queue.push(Reverse((due, name)));
    }

    /// Drop the entries at the head of each queue that `current(scope, name, due)` says
    /// are stale.
    fn clean(&mut self, current: &impl Fn(&Key, &str, Instant) -> bool) {
        for (key, s) in &mut self.scopes {
            while let Some(Reverse((due, name))) = s.queue.peek() {
                if current(key, name, *due) {
                    break;
                }
                s.queue.pop();
            }
        }
    }

    /// The earliest entry due by `now` of a scope with room, taken off its queue (stale
    /// entries are dropped on the way). The caller starts it ([`Scheduler::started`]) or
    /// pushes it back.
    pub fn pop_due(
        &mut self,
        now: Instant,
        current: impl Fn(&Key, &str, Instant) -> bool,
    ) -> Option<(Key, Instant, String)> {
        self.clean(&current);
        let key = self
            .scopes
            .iter()
            .filter(|(_, s)| s.in_flight < s.limit)
            .filter_map(|(k, s)| s.queue.peek().map(|Reverse((due, _))| (*due, k)))
            .filter(|(due, _)| *due <= now)
            .min_by_key(|(due, _)| *due)
            .map(|(_, k)| k.clone())?;
        let Reverse((due, name)) = self.scopes.get_mut(&key)?.queue.pop()?;
        Some((key, due, name))
    }

    /// When the loop should look again for itself: the earliest current entry of a scope
    /// with room (a full scope's next target starts when one of its own finishes, which
    /// wakes the loop anyway).
    pub fn next_due(&mut self, current: impl Fn(&Key, &str, Instant) -> bool) -> Option<Instant> {
        self.clean(&current);
        self.scopes
            .values()
            .filter(|s| s.in_flight < s.limit)
            .filter_map(|s| s.queue.peek().map(|Reverse((due, _))| *due))
            .min()
    }

    /// A target of `key` was started.
    pub fn started(&mut self, key: &Key) {
        self.scope(key).in_flight += 1;
    }

    /// A target of `key`, started at `started`, finished with `outcome`. Returns the new
    /// limit when this cut it.
    pub fn finished(&mut self, key: &Key, started: Instant, outcome: Outcome) -> Option<usize> {
        let bound = self.bound;
        let s = self.scope(key);
        s.in_flight = s.in_flight.saturating_sub(1);
        if key.is_none() {
            return None;
        }
        match outcome {
            Outcome::Throttled => {
                if s.last_cut.is_some_and(|cut| started < cut) {
                    return None;
                }
                s.limit = (s.limit / 2).max(1);
                s.last_cut = Some(Instant::now());
                Some(s.limit)
            }
            Outcome::Succeeded => {
                s.limit = (s.limit + 1).min(bound);
                None
            }
            Outcome::Other => None,
        }
    }

    /// How many targets of `key` may be in flight now.
    #[cfg(test)]
    pub fn limit(&self, key: &Key) -> usize {
        self.scopes.get(key).map_or(
            if key.is_some() {
                self.bound
            } else {
                usize::MAX
            },
            |s| s.limit,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(s: &str) -> Key {
        Some(s.to_owned())
    }

    #[test]
    fn a_scope_never_has_more_in_flight_than_its_limit() {
        let mut s = Scheduler::new(2);
        let now = Instant::now();
        for i in 0..5 {
            s.push(&key("a"), now, format!("a{i}"));
            s.push(&None, now, format!("n{i}"));
        }
        let mut started = Vec::new();
        while let Some((k, _, name)) = s.pop_due(now, |_, _, _| true) {
            s.started(&k);
            started.push(name);
        }
        // Two of scope a, every unscoped one.
        assert_eq!(started.iter().filter(|n| n.starts_with('a')).count(), 2);
        assert_eq!(started.iter().filter(|n| n.starts_with('n')).count(), 5);
        // One finishes: one more of a may start.
        s.finished(&key("a"), now, Outcome::Succeeded);
        let (k, _, name) = s.pop_due(now, |_, _, _| true).unwrap();
        assert_eq!(k, key("a"));
        assert!(name.starts_with('a'));
    }

    #[test]
    fn throttling_halves_once_per_round_and_successes_add_one_up_to_the_bound() {
        let mut s = Scheduler::new(16);
        let a = key("a");
        let before = Instant::now();
        for _ in 0..16 {
            s.started(&a);
        }
        // The whole round is throttled: one cut, not sixteen.
        assert_eq!(s.finished(&a, before, Outcome::Throttled), Some(8));
        for _ in 0..15 {
            assert_eq!(s.finished(&a, before, Outcome::Throttled), None);
        }
        assert_eq!(s.limit(&a), 8);
        // A call started after the cut and throttled again: halved again, down to 1 at least.
        std::thread::sleep(Duration::from_millis(2));
        for want in [4, 2, 1, 1] {
            s.started(&a);
            let after = Instant::now();
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(s.finished(&a, after, Outcome::Throttled), Some(want));
        }
        for _ in 0..40 {
            s.started(&a);
            s.finished(&a, Instant::now(), Outcome::Succeeded);
        }
        assert_eq!(s.limit(&a), 16);
        // Unscoped targets are never limited here.
        s.finished(&None, before, Outcome::Throttled);
        assert_eq!(s.limit(&None), usize::MAX);
    }

    #[test]
    fn stale_entries_are_dropped_and_the_earliest_due_goes_first() {
        let mut s = Scheduler::new(4);
        let now = Instant::now();
        s.push(&key("a"), now + Duration::from_secs(1), "late".into());
        s.push(&key("b"), now, "stale".into());
        s.push(&key("b"), now - Duration::from_secs(1), "early".into());
        let current = |_: &Key, n: &str, _: Instant| n != "stale";
        let (_, _, first) = s.pop_due(now, current).unwrap();
        assert_eq!(first, "early");
        assert!(
            s.pop_due(now, current).is_none(),
            "the stale entry is dropped"
        );
        assert_eq!(s.next_due(current), Some(now + Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod regression {
    use super::*;
    use std::cell::Cell;

    /// Issue 16's benchmark: the loop copied and sorted every due target each time one
    /// finished, so a pass cost O(targets²) and the CPU per target grew with the fleet
    /// (5.6 ms at 1,000, 9.7 ms at 10,000). Starting the next target must look at a few
    /// queue heads, not at every target.
    #[test]
    fn starting_the_next_target_does_not_look_at_every_target() {
        let mut s = Scheduler::new(16);
        let now = Instant::now();
        let scopes = [key("a"), key("b"), None];
        for i in 0..10_000 {
            s.push(&scopes[i % 3], now, format!("t{i:05}"));
        }
        let looked = Cell::new(0usize);
        let current = |_: &Key, _: &str, _: Instant| {
            looked.set(looked.get() + 1);
            true
        };
        for _ in 0..100 {
            let (k, _, _) = s.pop_due(now, current).unwrap();
            s.started(&k);
            s.finished(&k, now, Outcome::Succeeded);
            assert!(s.next_due(current).is_some());
        }
        // Each call checks each scope's head once: 3 scopes, 2 calls, 100 rounds.
        assert!(looked.get() <= 600, "{} entries looked at", looked.get());
    }

    fn key(s: &str) -> Key {
        Some(s.to_owned())
    }
}
