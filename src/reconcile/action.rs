//! What to do after a reconcile: requeue after a delay. Successes requeue at the interval
//! with jitter; [`error_policy`] alone decides backoff after a failure, with the delays of
//! the one retry policy ([`crate::retry`]).

use std::time::Duration;

use rangekeeper_provider::ProviderError;

/// Why one reconcile of a target did not converge it.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A live source the target uses has no value: the target is not applied.
    #[error("{}", .0.join("; "))]
    Source(Vec<String>),
    /// The target's provider configuration is wrong.
    #[error("{0}")]
    Config(String),
    /// The current ranges could not be read.
    #[error("cannot read the current ranges: {0}")]
    Read(ProviderError),
    /// A guard refused the change; nothing was applied.
    #[error("refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// The provider rejected or failed the change.
    #[error("apply failed: {0}")]
    Apply(ProviderError),
    /// Under leader election, the change was ready but this replica's grant had run out
    /// (it is not, or no longer provably, the leader): nothing was sent.
    #[error(
        "not applied: this replica no longer holds the lease for this target (leader, or its shard's holder); nothing was sent"
    )]
    Fenced,
    /// The reconcile task panicked (a bug): counted as a failure of the target.
    #[error("internal error (a bug, please report it): the reconcile panicked: {0}")]
    Panicked(String),
}

impl ReconcileError {
    /// A short stable name for metrics (`ProviderError::kind()` for provider errors).
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Source(_) => "source",
            ReconcileError::Config(_) => "config",
            ReconcileError::Read(e) | ReconcileError::Apply(e) => e.kind(),
            ReconcileError::Refused(_) => "refused",
            ReconcileError::Panicked(_) => "panic",
            ReconcileError::Fenced => "fenced",
        }
    }

    /// Whether trying again soon may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Read(e) | ReconcileError::Apply(e) => e.is_retryable(),
            _ => false,
        }
    }

    fn provider_error(&self) -> Option<&ProviderError> {
        match self {
            ReconcileError::Read(e) | ReconcileError::Apply(e) => Some(e),
            _ => None,
        }
    }
}

/// When to reconcile a target again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub requeue_after: Duration,
}

/// The first retry delay after a failure.
pub const BASE_BACKOFF: Duration = Duration::from_secs(1);

/// After a success: the interval, plus or minus up to 10%.
pub fn requeue(interval: Duration) -> Action {
    let factor = 0.9 + rand::random::<f64>() * 0.2;
    Action {
        requeue_after: interval.mul_f64(factor),
    }
}

/// After the `failures`-th consecutive failure: exponential backoff from [`BASE_BACKOFF`]
/// up to `cap`, with full jitter (`random(0, min(cap, base * 2^n))`). A throttled target's
/// `retry_after` is honoured (capped at [`rangekeeper_provider::MAX_RETRY_AFTER`]): never retried
/// sooner than it asked.
pub fn error_policy(err: &ReconcileError, failures: u32, cap: Duration) -> Action {
    Action {
        requeue_after: crate::retry::delay_after(err.provider_error(), BASE_BACKOFF, cap, failures),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ReconcileError {
        ReconcileError::Apply(ProviderError::Transient("503".into()))
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cap = Duration::from_secs(60);
        let mut last_max = Duration::ZERO;
        for n in 1..=12 {
            let d = error_policy(&transient(), n, cap).requeue_after;
            let exp = (BASE_BACKOFF * 2u32.pow(n - 1)).min(cap);
            // Full jitter: anywhere from zero up to the capped exponential.
            assert!(d <= exp, "attempt {n}: {d:?} vs {exp:?}");
            assert!(exp >= last_max);
            last_max = exp;
        }
        assert_eq!(last_max, cap);
    }

    #[test]
    fn throttling_is_honoured() {
        let e = ReconcileError::Apply(ProviderError::Throttled {
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(40)),
        });
        let d = error_policy(&e, 1, Duration::from_secs(5)).requeue_after;
        assert!(
            d >= Duration::from_secs(40) && d <= Duration::from_secs(44),
            "{d:?}"
        );
    }

    #[test]
    fn success_requeues_near_the_interval() {
        for _ in 0..100 {
            let d = requeue(Duration::from_secs(60)).requeue_after;
            assert!(d >= Duration::from_secs(54) && d <= Duration::from_secs(66));
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(transient().kind(), "transient");
        assert!(transient().is_retryable());
        assert_eq!(ReconcileError::Refused(vec![]).kind(), "refused");
        assert!(!ReconcileError::Source(vec![]).is_retryable());
    }
}
