//! Whether this process may write to targets now: the one question the reconcile loop asks
//! its leader election (`--leader-elect`) before it starts a pass and again just before every
//! apply is sent. Without leader election the answer is always yes.
//!
//! The loop knows nothing of how the answer is reached (a Kubernetes `Lease`, or one per
//! shard, in `crate::leader`); it only trusts the deadline: a grant is valid until an instant
//! of the monotonic clock, and no write is sent at or after it. Under `--shards`, the question
//! is asked per target.

use std::time::Instant;

/// A permission to write, valid until `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Which leadership term this is: a new number after every step-down and re-acquire,
    /// so the loop can tell that another replica may have written in between.
    pub term: u64,
    /// Writes may be sent strictly before this instant (monotonic clock).
    pub until: Instant,
}

/// "May I write now, and until when?"
pub trait Fence: Send + Sync + std::fmt::Debug + 'static {
    /// Whether this process may write anything now: `None` for a follower, or a leader whose
    /// lease it could not renew in time. Under sharding, a grant while this replica holds at
    /// least one shard: its `until` is the earliest of the held shards' (the loop wakes then
    /// at the latest) and its `term` is new whenever a shard was acquired.
    fn grant(&self) -> Option<Grant>;

    /// The grant for writing to the target named `target`: the same as [`Fence::grant`]
    /// without sharding; under sharding the grant of the shard the target belongs to, `None`
    /// when another replica owns that shard.
    fn grant_for(&self, target: &str) -> Option<Grant> {
        let _ = target;
        self.grant()
    }

    /// Who writes, for the audit log (`None` without leader election).
    fn identity(&self) -> Option<String>;
}

/// No leader election: this process is the only writer, always allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unfenced;

impl Fence for Unfenced {
    fn grant(&self) -> Option<Grant> {
        // A year from now is "forever" for a grant the loop re-reads every pass.
        Instant::now()
            .checked_add(std::time::Duration::from_secs(365 * 86_400))
            .map(|until| Grant { term: 0, until })
    }
    fn identity(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfenced_always_allows() {
        let g = Unfenced.grant().unwrap();
        assert_eq!(g.term, 0);
        assert!(g.until > Instant::now() + std::time::Duration::from_secs(86_400));
        assert_eq!(Unfenced.identity(), None);
    }
}
