//! Timing of the EKS provider: call timeouts and update polling. Each call makes one attempt:
//! retries (throttling, server errors, another update in progress) belong to the binary's
//! one retry policy, so they never multiply.

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
    /// Timeout of one call (the SDK's own retries are off: the binary's policy decides).
    pub attempt_timeout: Duration,
    /// How often DescribeUpdate is polled while our update runs, and the pause between two
    /// read-backs (jittered by up to a quarter).
    pub poll_interval: Duration,
    /// How long to wait for our update before giving up.
    pub max_wait: Duration,
    /// Read-backs of the cluster to confirm an update that returned no update id.
    pub readback_attempts: u32,
    /// Added to the SDK's own timeouts for the hard bound on one call (a safety net should
    /// the SDK's timeouts not fire, e.g. while resolving credentials).
    pub call_margin: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(10),
            max_wait: Duration::from_secs(30 * 60),
            readback_attempts: 8,
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
            poll_interval: Duration::from_millis(5),
            max_wait: Duration::from_secs(20),
            readback_attempts: 5,
            call_margin: Duration::from_secs(1),
        }
    }

    /// The poll interval with up to a quarter of jitter.
    pub(crate) fn poll_delay(&self) -> Duration {
        let ms = u64::try_from(self.poll_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Duration::from_millis(rand::rng().random_range(ms..=ms.saturating_add(ms / 4)))
    }

    /// The bound on one call, SDK timeouts included, plus a margin.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.attempt_timeout + self.connect_timeout + self.call_margin
    }
}

/// Make one EKS call with a hard timeout. Errors are returned as they are, typed, for the
/// binary's retry policy; a call that does not finish in time is [`ProviderError::Transient`].
pub(crate) async fn bounded<T, F, Fut>(
    tuning: &Tuning,
    what: &str,
    call: F,
) -> Result<T, ProviderError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    match tokio::time::timeout(tuning.call_timeout(), call()).await {
        Ok(r) => r,
        Err(_) => Err(ProviderError::Transient(format!(
            "{what} did not finish within {:?}",
            tuning.call_timeout()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    // These asserted the provider's own retry counts; retries now belong to the binary's
    // policy (tested there), so they assert one attempt per call.

    #[tokio::test]
    async fn transient_errors_are_returned_after_one_attempt() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = bounded(&Tuning::fast(), "test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::Transient("503".into()))
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Transient(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn permanent_errors_are_returned_as_they_are() {
        let r: Result<(), _> = bounded(&Tuning::fast(), "test", || async {
            Err(ProviderError::Invalid("bad".into()))
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Invalid(_))));
    }

    #[tokio::test]
    async fn a_hung_call_times_out_as_transient() {
        let calls = AtomicU32::new(0);
        let mut t = Tuning::fast();
        t.attempt_timeout = Duration::ZERO;
        t.connect_timeout = Duration::ZERO;
        t.call_margin = Duration::from_millis(50);
        let r: Result<(), _> = bounded(&t, "hang", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            Ok(())
        })
        .await;
        assert!(matches!(r, Err(ProviderError::Transient(m)) if m.contains("did not finish")));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_poll_delay_is_jittered_and_bounded() {
        let t = Tuning::default();
        for _ in 0..50 {
            let d = t.poll_delay();
            assert!(d >= t.poll_interval && d <= t.poll_interval + t.poll_interval / 4);
        }
    }
}
