//! A request quota per scope for the fakes (an ARM subscription, an EKS region): counts the
//! requests in flight in each scope and the most ever in flight at once (what a client's
//! per-scope concurrency bound must keep under), and throttles a request that arrives while
//! a limit is already in flight, as a cloud API refuses callers over their rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inner {
    in_flight: HashMap<String, usize>,
    most: HashMap<String, usize>,
    /// Requests of one scope in flight beyond which a new one is throttled.
    limit: Option<usize>,
    throttled: usize,
}

/// The quota of a fake server, shared by its request handlers.
#[derive(Debug, Clone, Default)]
pub struct Quota(Arc<Mutex<Inner>>);

/// One request in flight; dropping it (answered, or its connection gone) ends it.
#[derive(Debug)]
pub struct Ticket {
    quota: Quota,
    scope: String,
    /// Whether the request is over the limit and must be answered as throttled.
    pub throttled: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut g = self.quota.lock();
        if let Some(n) = g.in_flight.get_mut(&self.scope) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Quota {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request of `scope` arrives.
    pub fn enter(&self, scope: &str) -> Ticket {
        let mut g = self.lock();
        let limit = g.limit;
        let n = g.in_flight.entry(scope.to_owned()).or_default();
        let throttled = limit.is_some_and(|l| *n >= l);
        *n += 1;
        let now = *n;
        let most = g.most.entry(scope.to_owned()).or_default();
        *most = (*most).max(now);
        if throttled {
            g.throttled += 1;
        }
        Ticket {
            quota: self.clone(),
            scope: scope.to_owned(),
            throttled,
        }
    }

    /// Throttle a request that arrives while `limit` of its scope are in flight (`None`:
    /// never).
    pub fn set_limit(&self, limit: Option<usize>) {
        self.lock().limit = limit;
    }

    /// The most requests of each scope that were in flight at once.
    pub fn most_in_flight(&self) -> HashMap<String, usize> {
        self.lock().most.clone()
    }

    /// How many requests were throttled.
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }
}
