//! A circuit breaker on Partner Center. While it keeps failing (a sustained failure ratio over
//! the last attempts), callers get a fast 503 with `Retry-After` instead of waiting on timeouts
//! and adding load; after a pause one probe is let through and its outcome decides.
//!
//! Hand-written rather than `failsafe`: that crate lets every call through when half-open
//! (not one probe), does not expose when an open circuit will close (needed for
//! `Retry-After`), and measures its windows in whole seconds.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Open when at least this share of the recent attempts failed...
    pub failure_ratio: f64,
    /// ...counting the last `window` attempts...
    pub window: usize,
    /// ...once there are at least this many of them.
    pub min_calls: usize,
    /// How long to fail fast before letting a probe through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Partner Center answered (any verdict, even a refusal): it is up.
    Answered,
    /// 5xx, timeout or no connection.
    Failed,
    /// Tells nothing about Partner Center's health (throttled, or the attempt never left).
    Neutral,
}

pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    recent: VecDeque<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Leave to make one attempt; report how it went with `record`. Dropped unreported (the
/// caller went away), it frees the probe slot without judging.
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State {
                phase: Phase::Closed,
                recent: VecDeque::with_capacity(settings.window),
            }),
        }
    }

    /// A permit, or how long until a probe will be let through.
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        let mut state = self.lock();
        let probe = match state.phase {
            Phase::Closed => false,
            Phase::Open { until } => {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    return Err(wait);
                }
                tracing::info!(
                    circuit = "half-open",
                    "Partner Center circuit half-open: one probe goes through"
                );
                state.phase = Phase::HalfOpen { probing: true };
                true
            }
            Phase::HalfOpen { probing: true } => return Err(Duration::from_secs(1)),
            Phase::HalfOpen { probing: false } => {
                state.phase = Phase::HalfOpen { probing: true };
                true
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    /// `closed`, `open` or `half-open`, for `/readyz` and logs.
    pub fn state_name(&self) -> &'static str {
        match self.lock().phase {
            Phase::Closed => "closed",
            Phase::Open { until } if Instant::now() < until => "open",
            Phase::Open { .. } | Phase::HalfOpen { .. } => "half-open",
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, state: &mut State, why: &str) {
        state.phase = Phase::Open {
            until: Instant::now() + self.settings.open_for,
        };
        state.recent.clear();
        tracing::warn!(
            circuit = "open",
            open_for_ms = self.settings.open_for.as_millis() as u64,
            "Partner Center circuit opened: {why}; failing fast"
        );
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        let mut state = self.lock();
        if probe {
            match outcome {
                Outcome::Answered => {
                    state.phase = Phase::Closed;
                    state.recent.clear();
                    tracing::info!(
                        circuit = "closed",
                        "Partner Center circuit closed: the probe succeeded"
                    );
                }
                Outcome::Failed => self.open(&mut state, "the probe failed"),
                Outcome::Neutral => state.phase = Phase::HalfOpen { probing: false },
            }
            return;
        }
        if state.phase != Phase::Closed || outcome == Outcome::Neutral {
            return;
        }
        if state.recent.len() == self.settings.window {
            state.recent.pop_front();
        }
        state.recent.push_back(outcome == Outcome::Failed);
        let calls = state.recent.len();
        let failures = state.recent.iter().filter(|failed| **failed).count();
        if calls >= self.settings.min_calls
            && failures as f64 >= self.settings.failure_ratio * calls as f64
        {
            let why = format!("{failures} of the last {calls} attempts failed");
            self.open(&mut state, &why);
        }
    }
}

impl Permit<'_> {
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(self.probe, Outcome::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            failure_ratio: 0.5,
            window: 4,
            min_calls: 4,
            open_for,
        })
    }

    fn attempt(breaker: &CircuitBreaker, outcome: Outcome) -> bool {
        match breaker.admit() {
            Ok(permit) => {
                permit.record(outcome);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn opens_on_the_ratio_only_once_enough_calls_were_seen() {
        let b = breaker(Duration::from_secs(60));
        assert!(attempt(&b, Outcome::Failed));
        assert!(attempt(&b, Outcome::Failed));
        assert!(attempt(&b, Outcome::Failed));
        assert_eq!(b.state_name(), "closed", "3 calls are fewer than min_calls");
        assert!(attempt(&b, Outcome::Answered));
        assert_eq!(b.state_name(), "open", "3 of 4 failed");
        let wait = b.admit().err().expect("fails fast while open");
        assert!(wait > Duration::from_secs(59));
    }

    #[test]
    fn throttling_and_abandoned_attempts_do_not_count() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..10 {
            assert!(attempt(&b, Outcome::Neutral));
            drop(b.admit().unwrap());
        }
        assert_eq!(b.state_name(), "closed");
    }

    #[test]
    fn one_probe_when_half_open_and_its_outcome_decides() {
        let b = breaker(Duration::ZERO);
        for _ in 0..4 {
            attempt(&b, Outcome::Failed);
        }
        let probe = b.admit().expect("the pause is over: a probe");
        assert!(b.admit().is_err(), "only one probe at a time");
        probe.record(Outcome::Failed);
        assert_ne!(b.state_name(), "closed");
        let probe = b.admit().expect("another probe after the pause");
        probe.record(Outcome::Answered);
        assert_eq!(b.state_name(), "closed");
        assert!(attempt(&b, Outcome::Answered));
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let b = breaker(Duration::ZERO);
        for _ in 0..4 {
            attempt(&b, Outcome::Failed);
        }
        drop(b.admit().unwrap());
        assert!(b.admit().is_ok());
    }
}
