//! The provider conformance suite: the contract every provider, built-in or plugin, honours.
//!
//! The suite is runtime-agnostic: it is a set of async functions that a provider crate awaits
//! inside its own `#[tokio::test]` (this crate needs no runtime). Give it a provider bound to
//! a throw-away target and two distinct, non-empty desired sets `a` and `b` that the provider
//! accepts; the target must not hold `a` when the suite starts.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conformance() {
//!     let p = my_provider_for_a_scratch_target();
//!     rangekeeper_provider::conformance::assert_conforms(&p, &set_a(), &set_b()).await;
//! }
//! ```
//!
//! What it checks, in order (each failure names the provider and the step):
//!
//! 1. `capabilities()` is self-consistent: the name is not empty; `a` and `b` are non-empty,
//!    distinct and respect `max_ranges`, `ipv4`, `ipv6` and `private_ranges`; `check(a)` and
//!    `check(b)` find no violations.
//! 2. `apply(a)` (waiting) reports `changed` and not `pending`; `current()` is then
//!    `Restriction::Ranges(a)` (canonical equality).
//! 3. `apply(a)` again reports nothing changed (and, when a write counter is given, sends
//!    nothing); the target still holds `a`.
//! 4. `apply(b)` reports `changed`, not `pending`; `current()` is `b`.
//! 5. `disable()` reports `changed`, not `pending`; `current()` is `Unrestricted`. `disable()`
//!    again reports nothing changed (and sends nothing); still `Unrestricted`.
//! 6. `apply(a)` after disable reports `changed`; `current()` is `a` again.
//! 7. `apply` of an empty set is refused with an error and changes nothing: the target still
//!    holds `a` (and, with a write counter, nothing was sent).
//!
//! Then the refusals (each is "refused" when `check` reports a violation or `apply` fails
//! with an error, and the target still holds `a` afterwards, with nothing sent):
//!
//! 8. a set over `max_ranges` (skipped when there is no limit);
//! 9. an IPv6 range on an IPv4-only provider (skipped when `ipv6` is true);
//! 10. a private range where `private_ranges` is false (skipped when they are accepted);
//! 11. `current()` of a provider bound to a missing target fails with `not_found` (given
//!     with [`Suite::with_missing_target`]);
//! 12. each injected fault (given with [`Suite::with_fault`]) makes `current()` fail with
//!     the expected typed error, and the target reads `a` again once it is cleared;
//! 13. last, `apply(b)` with `wait == false` is accepted and reports `changed` or `pending`;
//!     a synchronous provider is not `pending` and holds `b` at once; an asynchronous one
//!     is `pending` or holds `b`. The target is left with `b` (or on its way to it).
//!
//! [`Suite::report`] runs them all and returns one line per check (pass, fail, or skipped
//! with the reason), for `rangekeeper providers test`'s table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    Applied, ApplyOptions, Capabilities, Provider, ProviderError, RangeSet, Restriction, cidr,
};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One line of a conformance report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// A fault a test can inject into the target (e.g. a fake server answering 429), with the
/// error kind ([`ProviderError::kind`]) the provider must report while it lasts.
pub struct Fault<'a> {
    pub name: &'static str,
    pub inject: &'a (dyn Fn() + Sync),
    pub clear: &'a (dyn Fn() + Sync),
    pub expect: &'static str,
}

/// Counts the writes a target has received so far (e.g. PUT requests seen by a fake server),
/// so the suite can prove that a no-op apply or disable sends nothing.
pub type WriteCounter<'a> = &'a (dyn Fn() -> usize + Sync);

/// The suite for one provider and two desired sets.
pub struct Suite<'a> {
    provider: &'a dyn Provider,
    a: &'a RangeSet,
    b: &'a RangeSet,
    writes: Option<WriteCounter<'a>>,
    opts: ApplyOptions,
    missing: Option<&'a dyn Provider>,
    faults: Vec<Fault<'a>>,
}

type Failed = (&'static str, String);

impl<'a> Suite<'a> {
    pub fn new(provider: &'a dyn Provider, a: &'a RangeSet, b: &'a RangeSet) -> Self {
        Suite {
            provider,
            a,
            b,
            writes: None,
            opts: ApplyOptions::default(),
            missing: None,
            faults: Vec::new(),
        }
    }

    /// Also check that a provider bound to a target that does not exist reports `not_found`.
    pub fn with_missing_target(mut self, missing: &'a dyn Provider) -> Self {
        self.missing = Some(missing);
        self
    }

    /// Also check that an injected fault gives the expected typed error.
    pub fn with_fault(mut self, fault: Fault<'a>) -> Self {
        self.faults.push(fault);
        self
    }

    /// Also check, through `writes`, that no-op calls send nothing to the target.
    pub fn with_write_counter(mut self, writes: WriteCounter<'a>) -> Self {
        self.writes = Some(writes);
        self
    }

    /// Run every check; the first failure is returned, naming the provider and the step.
    pub async fn run(&self) -> Result<(), String> {
        let name = self.provider.capabilities().name;
        let label = if name.is_empty() { "<unnamed>" } else { &name };
        for c in self.report().await {
            if let Outcome::Fail(msg) = c.outcome {
                return Err(format!(
                    "conformance of provider `{label}`, step `{}`: {msg}",
                    c.name
                ));
            }
        }
        Ok(())
    }

    /// Run every check and report each: the life cycle first (a failure there skips the
    /// rest, which needs a target in a known state), then the refusals.
    pub async fn report(&self) -> Vec<Check> {
        let mut out = Vec::new();
        if let Err((step, msg)) = self.steps().await {
            out.push(Check {
                name: step,
                outcome: Outcome::Fail(msg),
            });
            out.push(Check {
                name: "refusals",
                outcome: Outcome::Skip("an earlier step failed".into()),
            });
            return out;
        }
        out.push(Check {
            name: "life cycle: apply, no-op, change, disable, re-apply, refuse empty",
            outcome: Outcome::Pass,
        });
        let caps = self.provider.capabilities();
        let over = over_max(&caps);
        let v6 = (!caps.ipv6).then(|| {
            self.a
                .union(&set_of([net("2a00:1450::/32")].into_iter().flatten()))
        });
        let private = (!caps.private_ranges).then(|| {
            self.a
                .union(&set_of([net("10.0.0.0/8")].into_iter().flatten()))
        });
        for (name, set, skip) in [
            ("refuse more than max_ranges", over, "no range limit"),
            (
                "refuse IPv6 on an IPv4-only target",
                v6,
                "IPv6 is supported",
            ),
            (
                "refuse private ranges where not accepted",
                private,
                "private ranges are accepted",
            ),
        ] {
            let outcome = match set {
                None => Outcome::Skip(skip.into()),
                Some(set) => to_outcome(self.refused(name, &set).await),
            };
            out.push(Check { name, outcome });
        }
        let name = "not_found for a missing target";
        out.push(Check {
            name,
            outcome: match self.missing {
                None => Outcome::Skip("no missing target given".into()),
                Some(m) => match m.current().await {
                    Err(ProviderError::NotFound(_)) => Outcome::Pass,
                    Err(e) => Outcome::Fail(format!(
                        "expected a not_found error, got {} ({e})",
                        e.kind()
                    )),
                    Ok(s) => Outcome::Fail(format!(
                        "expected a not_found error, got {}",
                        show(&s.restriction)
                    )),
                },
            },
        });
        if self.faults.is_empty() {
            out.push(Check {
                name: "typed errors on injected faults",
                outcome: Outcome::Skip("no fault injection given".into()),
            });
        }
        for f in &self.faults {
            out.push(Check {
                name: f.name,
                outcome: to_outcome(self.fault(f).await),
            });
        }
        let name = "apply without waiting";
        out.push(Check {
            name,
            outcome: to_outcome(self.no_wait(name, &caps).await),
        });
        out
    }

    /// `set` is refused by `check` or by `apply`, and the target still holds A.
    async fn refused(&self, step: &'static str, set: &RangeSet) -> Result<(), Failed> {
        if self.provider.check(set).is_empty() {
            let before = self.write_count();
            if let Ok(applied) = self.provider.apply(set, &self.opts).await {
                return Err((
                    step,
                    format!(
                        "neither check() nor apply() refused [{set}] ({applied:?}); the \
                         capabilities say the target cannot hold it"
                    ),
                ));
            }
            self.expect_no_writes(step, before)?;
        }
        self.expect_current(step, &Restriction::Ranges(self.a.clone()))
            .await
    }

    async fn no_wait(&self, step: &'static str, caps: &Capabilities) -> Result<(), Failed> {
        let opts = ApplyOptions {
            wait: false,
            ..self.opts.clone()
        };
        let applied = result(step, self.provider.apply(self.b, &opts).await)?;
        if !applied.changed && !applied.pending {
            return Err((
                step,
                format!("expected changed or pending == true (the target held A); got {applied:?}"),
            ));
        }
        let now = self.current(step).await?;
        let holds_b = now == Restriction::Ranges(self.b.clone());
        if !caps.async_apply && (applied.pending || !holds_b) {
            return Err((
                step,
                format!(
                    "a synchronous provider must finish the change at once: got {applied:?}, \
                     then {}",
                    show(&now)
                ),
            ));
        }
        if caps.async_apply && !applied.pending && !holds_b {
            return Err((
                step,
                format!(
                    "not pending, yet the target does not hold B: got {applied:?}, then {}",
                    show(&now)
                ),
            ));
        }
        Ok(())
    }

    async fn fault(&self, f: &Fault<'_>) -> Result<(), Failed> {
        (f.inject)();
        let got = self.provider.current().await;
        (f.clear)();
        match got {
            Err(e) if e.kind() == f.expect => {}
            Err(e) => {
                return Err((
                    f.name,
                    format!("expected a {} error, got {} ({e})", f.expect, e.kind()),
                ));
            }
            Ok(s) => {
                return Err((
                    f.name,
                    format!(
                        "expected a {} error, got {}",
                        f.expect,
                        show(&s.restriction)
                    ),
                ));
            }
        }
        self.expect_current(f.name, &Restriction::Ranges(self.a.clone()))
            .await
    }

    async fn steps(&self) -> Result<(), (&'static str, String)> {
        let p = self.provider;
        let (a, b) = (self.a, self.b);

        let step = "capabilities";
        self.check_capabilities().map_err(|m| (step, m))?;

        let step = "current before the first apply";
        if self.current(step).await? == Restriction::Ranges(a.clone()) {
            return Err((
                step,
                "the target already holds set A; start from a target that does not".into(),
            ));
        }

        self.apply_changes("apply(A)", a).await?;
        self.expect_current("current after apply(A)", &Restriction::Ranges(a.clone()))
            .await?;

        self.apply_no_op("apply(A) again", a).await?;
        self.expect_current(
            "current after apply(A) again",
            &Restriction::Ranges(a.clone()),
        )
        .await?;

        self.apply_changes("apply(B)", b).await?;
        self.expect_current("current after apply(B)", &Restriction::Ranges(b.clone()))
            .await?;

        let step = "disable()";
        let applied = result(step, p.disable(&self.opts).await)?;
        expect_changed(step, &applied, true)?;
        self.expect_current("current after disable()", &Restriction::Unrestricted)
            .await?;

        let step = "disable() again";
        let before = self.write_count();
        let applied = result(step, p.disable(&self.opts).await)?;
        expect_changed(step, &applied, false)?;
        self.expect_no_writes(step, before)?;
        self.expect_current("current after disable() again", &Restriction::Unrestricted)
            .await?;

        self.apply_changes("apply(A) after disable()", a).await?;
        self.expect_current(
            "current after apply(A) after disable()",
            &Restriction::Ranges(a.clone()),
        )
        .await?;

        let step = "apply(empty set)";
        let before = self.write_count();
        if let Ok(applied) = p.apply(&RangeSet::new(), &self.opts).await {
            return Err((
                step,
                format!(
                    "an empty desired set was accepted ({applied:?}); it must be refused with \
                     an error, never applied (it would lift or empty the restriction)"
                ),
            ));
        }
        self.expect_no_writes(step, before)?;
        self.expect_current(
            "current after the refused apply(empty set)",
            &Restriction::Ranges(a.clone()),
        )
        .await?;
        Ok(())
    }

    fn check_capabilities(&self) -> Result<(), String> {
        let p = self.provider;
        let caps = p.capabilities();
        if caps.name.trim().is_empty() {
            return Err("capabilities().name is empty".into());
        }
        if self.a == self.b {
            return Err("sets A and B must differ (a test setup error)".into());
        }
        for (label, set) in [("A", self.a), ("B", self.b)] {
            if set.is_empty() {
                return Err(format!("set {label} is empty (a test setup error)"));
            }
            if let Some(max) = caps.max_ranges
                && set.len() > max
            {
                return Err(format!(
                    "set {label} has {} prefixes but capabilities().max_ranges is {max}",
                    set.len()
                ));
            }
            if !caps.ipv4 && set.v4_len() > 0 {
                return Err(format!(
                    "set {label} has IPv4 prefixes but capabilities().ipv4 is false"
                ));
            }
            if !caps.ipv6 && set.v6_len() > 0 {
                return Err(format!(
                    "set {label} has IPv6 prefixes but capabilities().ipv6 is false"
                ));
            }
            if !caps.private_ranges
                && let Some(net) = set
                    .prefixes()
                    .into_iter()
                    .find(|n| cidr::special_purpose(n).is_some())
            {
                return Err(format!(
                    "set {label} has the non-global range {net} but \
                     capabilities().private_ranges is false"
                ));
            }
            let violations = p.check(set);
            if !violations.is_empty() {
                return Err(format!(
                    "check(set {label}) found violations in a set the provider should accept: \
                     {violations:?}"
                ));
            }
        }
        Ok(())
    }

    fn write_count(&self) -> Option<usize> {
        self.writes.map(|w| w())
    }

    fn expect_no_writes(
        &self,
        step: &'static str,
        before: Option<usize>,
    ) -> Result<(), (&'static str, String)> {
        match (before, self.write_count()) {
            (Some(b), Some(a)) if a != b => Err((
                step,
                format!("{} write(s) were sent to the target; expected none", a - b),
            )),
            _ => Ok(()),
        }
    }

    async fn current(&self, step: &'static str) -> Result<Restriction, (&'static str, String)> {
        result(step, self.provider.current().await).map(|s| s.restriction)
    }

    async fn expect_current(
        &self,
        step: &'static str,
        want: &Restriction,
    ) -> Result<(), (&'static str, String)> {
        let got = self.current(step).await?;
        if &got == want {
            Ok(())
        } else {
            Err((step, format!("expected {}, got {}", show(want), show(&got))))
        }
    }

    async fn apply_changes(
        &self,
        step: &'static str,
        set: &RangeSet,
    ) -> Result<(), (&'static str, String)> {
        let applied = result(step, self.provider.apply(set, &self.opts).await)?;
        expect_changed(step, &applied, true)
    }

    async fn apply_no_op(
        &self,
        step: &'static str,
        set: &RangeSet,
    ) -> Result<(), (&'static str, String)> {
        let before = self.write_count();
        let applied = result(step, self.provider.apply(set, &self.opts).await)?;
        expect_changed(step, &applied, false)?;
        self.expect_no_writes(step, before)
    }
}

/// Run the suite; the first failure is returned, naming the provider and the step.
pub async fn check(provider: &dyn Provider, a: &RangeSet, b: &RangeSet) -> Result<(), String> {
    Suite::new(provider, a, b).run().await
}

/// Run the suite and panic with the failure, for use inside a test.
pub async fn assert_conforms(provider: &dyn Provider, a: &RangeSet, b: &RangeSet) {
    if let Err(e) = check(provider, a, b).await {
        panic!("{e}");
    }
}

fn to_outcome(r: Result<(), Failed>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err((_, msg)) => Outcome::Fail(msg),
    }
}

fn net(s: &str) -> Option<cidr::IpNet> {
    cidr::parse(s).ok().map(|p| p.net)
}

fn set_of(nets: impl IntoIterator<Item = cidr::IpNet>) -> RangeSet {
    RangeSet::from_nets(nets)
}

/// `max_ranges + 1` single addresses of a family the provider holds, none adjacent (so
/// they do not merge), all globally routable.
fn over_max(caps: &Capabilities) -> Option<RangeSet> {
    let n = caps.max_ranges?.checked_add(1)?;
    let addrs: Vec<IpAddr> = if caps.ipv4 {
        // 23.0.0.0/8 is ordinary unicast space.
        (0..n)
            .filter_map(|i| u32::try_from(i).ok())
            .map(|i| {
                IpAddr::V4(Ipv4Addr::from(
                    0x1700_0001u32.wrapping_add(i.wrapping_mul(2)),
                ))
            })
            .collect()
    } else {
        (0..n)
            .map(|i| {
                IpAddr::V6(Ipv6Addr::from(
                    0x2a00_1450_0000_0000_0000_0000_0000_0001u128 + 2 * i as u128,
                ))
            })
            .collect()
    };
    Some(set_of(addrs.into_iter().map(cidr::IpNet::from)))
}

fn result<T>(step: &'static str, r: Result<T, ProviderError>) -> Result<T, (&'static str, String)> {
    r.map_err(|e| (step, format!("failed with a {} error: {e}", e.kind())))
}

/// With `wait == true` (the suite's options) an accepted change is confirmed, never pending.
fn expect_changed(
    step: &'static str,
    applied: &Applied,
    want: bool,
) -> Result<(), (&'static str, String)> {
    if applied.changed != want {
        let what = if want {
            "changed == true: the target did not hold this state"
        } else {
            "changed == false: the target already held this state, so nothing may be sent"
        };
        return Err((step, format!("expected {what}; got {applied:?}")));
    }
    if applied.pending {
        return Err((
            step,
            format!("pending == true although the call was asked to wait; got {applied:?}"),
        ));
    }
    Ok(())
}

fn show(r: &Restriction) -> String {
    match r {
        Restriction::Unrestricted => "Unrestricted".into(),
        Restriction::Ranges(set) => format!("Ranges([{set}])"),
        Restriction::Unknown(kind) => format!("Unknown({kind})"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    use super::*;
    use crate::{Capabilities, State, UnrestrictedForm};

    /// The in-memory provider's futures never wait, so polling once finishes them.
    fn block_on<F: Future>(fut: F) -> F::Output {
        struct Noop;
        impl Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[derive(Default, Clone, Copy, PartialEq)]
    enum Bug {
        #[default]
        None,
        AlwaysChanged,
        AcceptsEmpty,
        DisableKeepsRanges,
        EmptyName,
        AcceptsOverMax,
        NoWaitStaysPending,
    }

    #[derive(Default)]
    struct Memory {
        held: Mutex<Option<RangeSet>>,
        writes: AtomicUsize,
        bug: Bug,
    }

    impl Memory {
        fn with(bug: Bug) -> Self {
            Memory {
                bug,
                ..Memory::default()
            }
        }
        fn write(&self, v: Option<RangeSet>) -> Applied {
            self.writes.fetch_add(1, Ordering::SeqCst);
            *self.held.lock().unwrap() = v;
            Applied {
                changed: true,
                ..Applied::default()
            }
        }
    }

    #[async_trait::async_trait]
    impl Provider for Memory {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new(
                if self.bug == Bug::EmptyName {
                    ""
                } else {
                    "memory"
                },
                "test",
            )
            .with_max_ranges(Some(4))
            .with_private_ranges(true)
            .with_unrestricted(UnrestrictedForm::Removed)
        }
        async fn current(&self) -> Result<State, ProviderError> {
            Ok(State::new(match self.held.lock().unwrap().clone() {
                None => Restriction::Unrestricted,
                Some(s) => Restriction::Ranges(s),
            }))
        }
        async fn apply(
            &self,
            desired: &RangeSet,
            _opts: &ApplyOptions,
        ) -> Result<Applied, ProviderError> {
            if desired.is_empty() && self.bug != Bug::AcceptsEmpty {
                return Err(ProviderError::Invalid("empty".into()));
            }
            if desired.v6_len() > 0 {
                return Err(ProviderError::Invalid("IPv4 only".into()));
            }
            if desired.len() > 4 && self.bug != Bug::AcceptsOverMax {
                return Err(ProviderError::Invalid("over 4".into()));
            }
            if !_opts.wait && self.bug == Bug::NoWaitStaysPending {
                return Ok(Applied::pending());
            }
            if self.held.lock().unwrap().as_ref() == Some(desired) && self.bug != Bug::AlwaysChanged
            {
                return Ok(Applied::default());
            }
            Ok(self.write(Some(desired.clone())))
        }
        async fn disable(&self, _opts: &ApplyOptions) -> Result<Applied, ProviderError> {
            if self.bug == Bug::DisableKeepsRanges {
                return Ok(Applied {
                    changed: true,
                    ..Applied::default()
                });
            }
            if self.held.lock().unwrap().is_none() {
                return Ok(Applied::default());
            }
            Ok(self.write(None))
        }
    }

    fn set(items: &[&str]) -> RangeSet {
        RangeSet::from_nets(items.iter().map(|s| cidr::parse(s).unwrap().net))
    }

    fn run(p: &Memory, a: &RangeSet, b: &RangeSet) -> Result<(), String> {
        let writes = || p.writes.load(Ordering::SeqCst);
        block_on(Suite::new(p, a, b).with_write_counter(&writes).run())
    }

    #[test]
    fn a_correct_provider_passes() {
        let (a, b) = (
            set(&["192.0.2.0/24"]),
            set(&["198.51.100.7", "203.0.113.0/25"]),
        );
        run(&Memory::default(), &a, &b).unwrap();
        block_on(assert_conforms(&Memory::default(), &a, &b));
    }

    #[test]
    fn each_bug_is_caught_and_names_the_provider_and_step() {
        let (a, b) = (set(&["192.0.2.0/24"]), set(&["198.51.100.7"]));
        for (bug, step) in [
            (Bug::AlwaysChanged, "step `apply(A) again`"),
            (Bug::AcceptsEmpty, "step `apply(empty set)`"),
            (Bug::DisableKeepsRanges, "step `current after disable()`"),
            (Bug::EmptyName, "step `capabilities`"),
            (Bug::AcceptsOverMax, "step `refuse more than max_ranges`"),
            (Bug::NoWaitStaysPending, "step `apply without waiting`"),
        ] {
            let err = run(&Memory::with(bug), &a, &b).unwrap_err();
            assert!(err.contains(step), "{err}");
            let name = if bug == Bug::EmptyName {
                "<unnamed>"
            } else {
                "memory"
            };
            assert!(err.contains(&format!("provider `{name}`")), "{err}");
        }
    }

    #[test]
    fn sets_the_provider_cannot_hold_are_setup_errors() {
        let a = set(&["192.0.2.0/24"]);
        for (b, want) in [
            (set(&["2001:db8::/32"]), "ipv6 is false"),
            (a.clone(), "must differ"),
            (RangeSet::new(), "set B is empty"),
            (
                set(&["1.0.0.1", "1.0.0.3", "1.0.0.5", "1.0.0.7", "1.0.0.9"]),
                "max_ranges is 4",
            ),
        ] {
            let err = run(&Memory::default(), &a, &b).unwrap_err();
            assert!(
                err.contains("step `capabilities`") && err.contains(want),
                "{err}"
            );
        }
    }

    #[test]
    fn the_report_lists_every_check_and_why_one_was_skipped() {
        let (a, b) = (set(&["192.0.2.0/24"]), set(&["198.51.100.7"]));
        let p = Memory::default();
        let report = block_on(Suite::new(&p, &a, &b).report());
        let lines: Vec<String> = report
            .iter()
            .map(|c| format!("{}: {:?}", c.name, c.outcome))
            .collect();
        assert_eq!(
            lines,
            [
                "life cycle: apply, no-op, change, disable, re-apply, refuse empty: Pass",
                "refuse more than max_ranges: Pass",
                "refuse IPv6 on an IPv4-only target: Pass",
                "refuse private ranges where not accepted: Skip(\"private ranges are accepted\")",
                "not_found for a missing target: Skip(\"no missing target given\")",
                "typed errors on injected faults: Skip(\"no fault injection given\")",
                "apply without waiting: Pass",
            ]
        );
    }

    /// A target that is not there: every read is `not_found`, or (buggy) unrestricted.
    struct Missing(bool);

    #[async_trait::async_trait]
    impl Provider for Missing {
        fn capabilities(&self) -> Capabilities {
            Capabilities::new("missing", "test")
        }
        async fn current(&self) -> Result<State, ProviderError> {
            if self.0 {
                Err(ProviderError::NotFound("no such cluster".into()))
            } else {
                Ok(State::new(Restriction::Unrestricted))
            }
        }
        async fn apply(&self, _: &RangeSet, _: &ApplyOptions) -> Result<Applied, ProviderError> {
            Err(ProviderError::NotFound("no such cluster".into()))
        }
        async fn disable(&self, _: &ApplyOptions) -> Result<Applied, ProviderError> {
            Err(ProviderError::NotFound("no such cluster".into()))
        }
    }

    #[test]
    fn a_missing_target_must_read_as_not_found() {
        let (a, b) = (set(&["192.0.2.0/24"]), set(&["198.51.100.7"]));
        let p = Memory::default();
        let good = Missing(true);
        block_on(Suite::new(&p, &a, &b).with_missing_target(&good).run()).unwrap();
        let p = Memory::default();
        let bad = Missing(false);
        let err = block_on(Suite::new(&p, &a, &b).with_missing_target(&bad).run()).unwrap_err();
        assert!(
            err.contains("step `not_found for a missing target`")
                && err.contains("got Unrestricted"),
            "{err}"
        );
    }

    #[test]
    fn an_injected_fault_must_give_the_expected_kind() {
        let (a, b) = (set(&["192.0.2.0/24"]), set(&["198.51.100.7"]));
        let p = Memory::default();
        // The in-memory provider has no fault to inject: current() still succeeds, which
        // the check must report as a failure.
        let (inject, clear) = (|| {}, || {});
        let err = block_on(
            Suite::new(&p, &a, &b)
                .with_fault(Fault {
                    name: "throttled on 429",
                    inject: &inject,
                    clear: &clear,
                    expect: "throttled",
                })
                .run(),
        )
        .unwrap_err();
        assert!(
            err.contains("step `throttled on 429`") && err.contains("expected a throttled error"),
            "{err}"
        );
    }

    #[test]
    fn a_target_already_holding_a_is_refused() {
        let (a, b) = (set(&["192.0.2.0/24"]), set(&["198.51.100.7"]));
        let p = Memory::default();
        *p.held.lock().unwrap() = Some(a.clone());
        let err = run(&p, &a, &b).unwrap_err();
        assert!(err.contains("already holds set A"), "{err}");
    }
}
