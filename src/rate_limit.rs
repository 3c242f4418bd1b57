//! A per-caller rate limit on the facade, so one runaway client cannot spend the partner
//! tenant's Partner Center quota for everyone. Keyed by the verified caller (issuer and
//! `oid`/`sub`), which a middleware in front of authentication could not know.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Caller;
use crate::configuration::RateLimitSettings;

/// Forget idle callers' buckets every this many checks, so the map stays bounded.
const SWEEP_EVERY: u64 = 4096;

pub struct CallerRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("caller rate limit exceeded; retry after {retry_after_secs} s")]
pub struct RateLimited {
    pub retry_after_secs: u64,
}

impl CallerRateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limiter = NonZeroU32::new(settings.requests_per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(settings.burst).unwrap_or(per_minute);
            RateLimiter::dashmap(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Self {
            limiter,
            checks: AtomicU64::new(0),
        }
    }

    pub fn admit(&self, caller: &Caller) -> Result<(), RateLimited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        let key = format!("{}\n{}", caller.issuer, caller.subject);
        limiter.check_key(&key).map_err(|not_until| {
            let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
            RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }
}
