//! Timing of the EKS provider: call timeouts, bounded jittered retries, update polling.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use rangekeeper_provider::ProviderError;

/// Every bound and interval the provider uses. The defaults suit real EKS (updates take
/// minutes); tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// Connect timeout of one HTTP connection.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of one call (the SDK's own retries are off: ours decide).
    pub attempt_timeout: Duration,
    /// Attempts of one call that fails with throttling, a 5xx or a transport error.
    pub attempts: u32,
    /// First retry delay; doubles per attempt up to `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How often DescribeUpdate is polled while an update runs (jittered by up to a quarter).
    pub poll_interval: Duration,
    /// How long to wait for one update (ours or the one in the way) before giving up.
    pub max_wait: Duration,
    /// How often UpdateClusterConfig is retried after ResourceInUseException.
    pub conflict_retries: u32,
    /// Read-backs of the cluster to confirm an update that returned no update id.
    pub readback_attempts: u32,
    /// Most updates looked at (DescribeUpdate) when searching for the one in progress.
    pub max_updates_scanned: usize,
    /// Added to the SDK's own timeouts for the hard bound on one call (a safety net should
    /// the SDK's timeouts not fire, e.g. while resolving credentials).
    pub call_margin: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(30),
            attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            poll_interval: Duration::from_secs(10),
            max_wait: Duration::from_secs(30 * 60),
            conflict_retries: 3,
            readback_attempts: 8,
            max_updates_scanned: 25,
            call_margin: Duration::from_secs(5),
        }
    }
}

impl Tuning {
    /// Short intervals for tests against mocks and local emulators.
    pub fn fast() -> Self {
        Tuning {
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(10),
            attempts: 4,
            base_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(40),
            poll_interval: Duration::from_millis(5),
            max_wait: Duration::from_secs(20),
            conflict_retries: 3,
            readback_attempts: 5,
            max_updates_scanned: 25,
            call_margin: Duration::from_secs(1),
        }
    }

    /// Full-jitter exponential backoff before retry number `attempt` (0-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }

    /// The poll interval with up to a quarter of jitter.
    pub(crate) fn poll_delay(&self) -> Duration {
        let ms = u64::try_from(self.poll_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(ms..=ms + ms / 4))
    }

    /// The bound on one call, SDK timeouts included: every attempt, plus a margin.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.attempt_timeout + self.connect_timeout + self.call_margin
    }
}

/// Run one EKS call with a hard timeout, retrying throttling and transient failures with
/// bounded, jittered backoff. Any other error returns at once.
pub(crate) async fn with_retry<T, F, Fut>(
    tuning: &Tuning,
    what: &str,
    mut call: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        let result = match tokio::time::timeout(tuning.call_timeout(), call()).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Transient(format!(
                "{what} did not finish within {:?}",
                tuning.call_timeout()
            ))),
        };
        match result {
            Err(e @ (ProviderError::Throttled { .. } | ProviderError::Transient(_))) => {
                attempt += 1;
                if attempt >= tuning.attempts {
                    return Err(e);
                }
                let delay = match &e {
                    ProviderError::Throttled {
                        retry_after: Some(after),
                        ..
                    } => (*after).min(tuning.max_backoff),
                    _ => tuning.backoff(attempt - 1),
                };
                tracing::debug!(error = %e, ?delay, attempt, "{what}: retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let t = Tuning::default();
        for attempt in 0..40 {
            let d = t.backoff(attempt);
            assert!(d <= t.max_backoff, "{d:?}");
            assert!(
                d >= Duration::from_millis(250).min(t.max_backoff / 2),
                "{d:?}"
            );
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| t.backoff(5)).collect();
        assert!(spread.len() > 1, "no jitter");
    }

    #[tokio::test]
    async fn retries_transient_errors_a_bounded_number_of_times() {
        let calls = AtomicU32::new(0);
        let t = Tuning::fast();
        let r: Result<(), _> = with_retry(&t, "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::Transient("503".into()))
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Transient(_))));
        assert_eq!(calls.load(Ordering::SeqCst), t.attempts);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = with_retry(&Tuning::fast(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::Invalid("bad".into()))
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Invalid(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hung_call_times_out_and_is_retried() {
        let calls = AtomicU32::new(0);
        let mut t = Tuning::fast();
        t.attempt_timeout = Duration::ZERO;
        t.connect_timeout = Duration::ZERO;
        t.call_margin = Duration::from_millis(50);
        t.attempts = 2;
        let r: Result<(), _> = with_retry(&t, "hang", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Transient(m)) if m.contains("did not finish")));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
