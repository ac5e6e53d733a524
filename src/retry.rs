//! The one retry policy of rangekeeper: providers make one attempt per call and return typed
//! errors; this module alone decides whether a call is made again, after how long (full
//! jitter: `random(0, min(cap, base * 2^n))`, never sooner than a server asked, a server's
//! delay capped at `rangekeeper_provider::MAX_RETRY_AFTER`, 15 minutes), and when to give up (a number of attempts and a
//! deadline over the whole operation, retries and waits included).
//!
//! One-shot commands (`plan`, `show`, `apply`, `update`, `disable`) get it through
//! [`wrap`]; the reconcile loop makes one attempt per pass under the same deadlines and
//! requeues with the same backoff ([`crate::reconcile::action::error_policy`]).

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use rangekeeper_provider::{
    Applied, ApplyOptions, Capabilities, Lease, Provider, ProviderError, RangeSet, State, Violation,
};

use rangekeeper_provider::MAX_RETRY_AFTER;

/// The default bound on reading a target (`--read-deadline`).
pub const DEFAULT_READ_DEADLINE: Duration = Duration::from_secs(60);
/// The default bound on changing a target, waiting for its operation included
/// (`--write-deadline`).
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// When a failed provider call is made again, and when rangekeeper gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The backoff bound after the first failure; doubles per failure up to `cap`.
    pub base: Duration,
    pub cap: Duration,
    /// Most attempts of one operation (1: no retry, as in one reconcile pass). Conflicts
    /// (another operation in progress, a stale eTag) do not count: they clear when the other
    /// writer is done, so only the deadline bounds them.
    pub attempts: u32,
    /// Bound on a read (`current`), every attempt and wait included.
    pub read_deadline: Duration,
    /// Bound on a change (`apply`, `disable`), every attempt and wait included.
    pub write_deadline: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            attempts: 4,
            read_deadline: DEFAULT_READ_DEADLINE,
            write_deadline: DEFAULT_WRITE_DEADLINE,
        }
    }
}

/// A read or a change: they have different deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    fn flag(self) -> &'static str {
        match self {
            Op::Read => "--read-deadline",
            Op::Write => "--write-deadline",
        }
    }
}

/// Full jitter: a random delay in `[0, min(cap, base * 2^(failures - 1))]`.
pub fn backoff(base: Duration, cap: Duration, failures: u32) -> Duration {
    let exp = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(cap);
    let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// The delay before the next attempt after the `failures`-th consecutive failure: our
/// backoff, but never sooner than the server asked (capped at [`MAX_RETRY_AFTER`]).
pub fn delay_after(
    err: Option<&ProviderError>,
    base: Duration,
    cap: Duration,
    failures: u32,
) -> Duration {
    let ours = backoff(base, cap, failures);
    match err.and_then(ProviderError::retry_after) {
        Some(server) => ours.max(server.min(MAX_RETRY_AFTER)),
        None => ours,
    }
}

impl Policy {
    /// The same deadlines with one attempt: the reconcile loop retries by requeueing.
    pub fn single_attempt(self) -> Policy {
        Policy {
            attempts: 1,
            ..self
        }
    }

    pub fn deadline(&self, op: Op) -> Duration {
        match op {
            Op::Read => self.read_deadline,
            Op::Write => self.write_deadline,
        }
    }

    /// Run `call` under this policy: retryable errors (conflict, throttled, transient) are
    /// tried again with backoff until `attempts` or the deadline runs out; the error then
    /// says what was tried. A call still running at the deadline is abandoned.
    pub async fn run<T, F, Fut>(
        &self,
        op: Op,
        what: &str,
        progress: Option<&dyn rangekeeper_provider::Progress>,
        mut call: F,
    ) -> Result<T, ProviderError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let deadline = self.deadline(op);
        let started = Instant::now();
        let mut failures = 0u32;
        // Failures that count against `attempts` (conflicts do not).
        let mut counted = 0u32;
        let mut last: Option<ProviderError> = None;
        loop {
            let remaining = deadline.saturating_sub(started.elapsed());
            let err = match tokio::time::timeout(remaining, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => {
                    let last = last
                        .map(|e| format!("; the one before failed: {e}"))
                        .unwrap_or_default();
                    return Err(ProviderError::Transient(format!(
                        "{what} did not finish within the deadline of {} ({} to change it): \
                         {} in {}, the last one still waiting{last}",
                        fmt_duration(deadline),
                        op.flag(),
                        attempts(failures + 1),
                        fmt_duration(started.elapsed()),
                    )));
                }
            };
            failures += 1;
            if !err.is_retryable() || self.attempts <= 1 {
                return Err(err);
            }
            let gave_up = |err: ProviderError, why: String| {
                let elapsed = fmt_duration(started.elapsed());
                err.map_message(|m| {
                    format!(
                        "{m} (gave up after {} in {elapsed}: {why})",
                        attempts(failures)
                    )
                })
            };
            let conflict = matches!(err, ProviderError::Conflict(_));
            if !conflict {
                counted += 1;
            }
            if counted >= self.attempts {
                return Err(gave_up(err, "no attempts left".into()));
            }
            let delay = delay_after(Some(&err), self.base, self.cap, failures);
            if started.elapsed().saturating_add(delay) >= deadline {
                let why = format!(
                    "another try in {} would pass the deadline of {} ({} to change it)",
                    fmt_duration(delay),
                    fmt_duration(deadline),
                    op.flag()
                );
                return Err(gave_up(err, why));
            }
            tracing::warn!(error = %err, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "{what}: trying again");
            if let Some(p) = progress {
                p.message(&format!("{err}; trying again in {}", fmt_duration(delay)));
            }
            tokio::time::sleep(delay).await;
            last = Some(err);
        }
    }
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{n} attempts")
    }
}

/// `850ms`, `3.2s`, `60s`, `30m`.
fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() != 0 && d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        crate::sources::spec::format_duration(Duration::from_secs(d.as_secs()))
    }
}

/// A provider whose calls go through a [`Policy`].
struct Retrying {
    inner: Box<dyn Provider>,
    target: String,
    policy: Policy,
}

/// Put `provider` (bound to `target`) under `policy`.
pub fn wrap(provider: Box<dyn Provider>, target: &str, policy: Policy) -> Box<dyn Provider> {
    Box::new(Retrying {
        inner: provider,
        target: target.to_owned(),
        policy,
    })
}

#[async_trait::async_trait]
impl Provider for Retrying {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn check(&self, desired: &RangeSet) -> Vec<Violation> {
        self.inner.check(desired)
    }

    async fn current(&self) -> Result<State, ProviderError> {
        let what = format!("reading `{}`", self.target);
        self.policy
            .run(Op::Read, &what, None, || self.inner.current())
            .await
    }

    /// The provider's checks that read the target: a read, under the read deadline.
    async fn preflight(
        &self,
        desired: &RangeSet,
        current: &State,
    ) -> Result<Vec<Violation>, ProviderError> {
        let what = format!("checking the change to `{}`", self.target);
        self.policy
            .run(Op::Read, &what, None, || {
                self.inner.preflight(desired, current)
            })
            .await
    }

    async fn apply(
        &self,
        desired: &RangeSet,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let what = format!("applying to `{}`", self.target);
        self.policy
            .run(Op::Write, &what, Some(opts.progress.as_ref()), || {
                self.inner.apply(desired, opts)
            })
            .await
    }

    async fn disable(&self, opts: &ApplyOptions) -> Result<Applied, ProviderError> {
        let what = format!("disabling `{}`", self.target);
        self.policy
            .run(Op::Write, &what, Some(opts.progress.as_ref()), || {
                self.inner.disable(opts)
            })
            .await
    }

    /// Rendering may read the target (nodes, for per-node objects): a read.
    async fn manifests(
        &self,
        desired: &RangeSet,
    ) -> Result<Option<Vec<serde_json::Value>>, ProviderError> {
        let what = format!("rendering the manifests of `{}`", self.target);
        self.policy
            .run(Op::Read, &what, None, || self.inner.manifests(desired))
            .await
    }

    /// A conditional write: throttling and transient faults are retried, but a conflict is
    /// returned at once, since the version it was made against is stale and only a new read
    /// and a new plan can go on ([`crate::lease::change`] and the reconcile loop do that).
    async fn apply_leased(
        &self,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let what = format!("applying to `{}`", self.target);
        self.policy
            .run(Op::Write, &what, Some(opts.progress.as_ref()), || async {
                match self
                    .inner
                    .apply_leased(desired, leases, version, opts)
                    .await
                {
                    Err(ProviderError::Conflict(m)) => Ok(Err(ProviderError::Conflict(m))),
                    other => other.map(Ok),
                }
            })
            .await?
    }

    /// As [`Provider::apply_leased`]: a conflict is returned at once.
    async fn apply_leased_declared(
        &self,
        declared: &RangeSet,
        desired: &RangeSet,
        leases: &[Lease],
        version: Option<&str>,
        opts: &ApplyOptions,
    ) -> Result<Applied, ProviderError> {
        let what = format!("applying to `{}`", self.target);
        self.policy
            .run(Op::Write, &what, Some(opts.progress.as_ref()), || async {
                match self
                    .inner
                    .apply_leased_declared(declared, desired, leases, version, opts)
                    .await
                {
                    Err(ProviderError::Conflict(m)) => Ok(Err(ProviderError::Conflict(m))),
                    other => other.map(Ok),
                }
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> Policy {
        Policy {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(20),
            attempts: 4,
            read_deadline: Duration::from_secs(10),
            write_deadline: Duration::from_secs(10),
        }
    }

    #[test]
    fn full_jitter_spans_zero_to_the_capped_exponential() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(1000);
        let mut below_half = false;
        for n in 1..=30 {
            let bound = (base * 2u32.pow((n - 1).min(10))).min(cap);
            for _ in 0..50 {
                let d = backoff(base, cap, n);
                assert!(d <= bound, "failure {n}: {d:?} > {bound:?}");
                below_half |= d < bound / 2;
            }
        }
        assert!(below_half, "full jitter reaches below half the bound");
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(base, cap, 5)).collect();
        assert!(spread.len() > 10, "no jitter: {spread:?}");
    }

    #[test]
    fn a_server_delay_is_honoured_and_capped() {
        let base = Duration::from_millis(1);
        let err = |d| ProviderError::Throttled {
            message: "slow down".into(),
            retry_after: Some(d),
        };
        assert_eq!(
            delay_after(Some(&err(Duration::from_secs(7))), base, base, 1),
            Duration::from_secs(7)
        );
        // Even Duration::MAX (u64::MAX seconds and more) neither overflows nor panics.
        assert_eq!(
            delay_after(Some(&err(Duration::MAX)), base, base, u32::MAX),
            MAX_RETRY_AFTER
        );
    }

    #[tokio::test]
    async fn retryable_errors_are_retried_up_to_the_attempts_and_say_so() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = fast()
            .run(Op::Read, "reading `t`", None, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::Transient("connection refused".into()))
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), "transient");
        assert!(
            e.to_string()
                .contains("connection refused (gave up after 4 attempts in"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn permanent_errors_and_single_attempts_are_not_retried() {
        for (policy, err) in [
            (fast(), ProviderError::Invalid("bad".into())),
            (
                fast().single_attempt(),
                ProviderError::Conflict("409".into()),
            ),
        ] {
            let calls = AtomicU32::new(0);
            let e = policy
                .run(Op::Write, "applying", None, || {
                    let err = err.clone();
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { Err::<(), _>(err) }
                })
                .await
                .unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(e, err, "the error is passed on unchanged");
        }
    }

    #[tokio::test]
    async fn a_conflict_reruns_the_whole_operation_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let r = fast()
            .run(Op::Write, "applying", None, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(ProviderError::Conflict("412".into())),
                    1 => Err(ProviderError::Throttled {
                        message: "429".into(),
                        retry_after: Some(Duration::from_millis(30)),
                    }),
                    _ => Ok(7),
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn conflicts_are_bounded_by_the_deadline_not_the_attempts() {
        let calls = AtomicU32::new(0);
        let r = fast()
            .run(Op::Write, "applying", None, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 10 {
                    Err(ProviderError::Conflict(
                        "another operation is in progress".into(),
                    ))
                } else {
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 11);

        let p = Policy {
            write_deadline: Duration::from_millis(300),
            ..fast()
        };
        let e = p
            .run(Op::Write, "applying", None, || async {
                Err::<(), _>(ProviderError::Conflict("in progress".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), "conflict");
        assert!(e.to_string().contains("--write-deadline"), "{e}");
    }

    #[tokio::test]
    async fn the_deadline_bounds_a_hung_call_and_the_retries() {
        let p = Policy {
            read_deadline: Duration::from_millis(200),
            ..fast()
        };
        let started = Instant::now();
        let e = p
            .run(Op::Read, "reading `t`", None, || async {
                std::future::pending::<Result<(), ProviderError>>().await
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(e.kind(), "transient");
        assert!(
            e.to_string()
                .contains("within the deadline of 200ms (--read-deadline"),
            "{e}"
        );

        // A server asking for more time than is left: give up at once, saying why.
        let started = Instant::now();
        let e = p
            .run(Op::Read, "reading `t`", None, || async {
                Err::<(), _>(ProviderError::Throttled {
                    message: "slow down".into(),
                    retry_after: Some(Duration::from_secs(u64::MAX)),
                })
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(e.to_string().contains("would pass the deadline"), "{e}");
    }
}
