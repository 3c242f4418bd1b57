//! The vetting watch: follows every request Submitted or InReview until Partner Center decides,
//! so callers need not poll. One poll of the customer's qualifications serves all its open
//! requests; polls follow `watch.schedule_secs` with jitter, within a per-minute budget of
//! their own, through the callers' Partner Center client (its token, breaker and bulkhead),
//! one at a time per replica. A 429 pauses the watcher for Partner Center's Retry-After.
//! Replicas lease customers from the store, so each poll is made by exactly one of them.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::web;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::configuration::WatchSettings;
use crate::domain::{CustomerId, QualificationStatus};
use crate::metrics::Metrics;
use crate::partner_center::{UpstreamCall, UpstreamError};
use crate::state::AppState;
use crate::store::{
    LeasedWatch, OpenRequest, PollResult, RequestStatus, StoreError, Transition, now_ms,
};
use crate::webhooks::{EventType, event_payload};

/// Customers leased per round.
const BATCH: u32 = 8;
/// How long a 429 without Retry-After pauses the watcher.
const DEFAULT_THROTTLE_PAUSE: Duration = Duration::from_secs(60);

pub struct Watcher {
    state: web::Data<AppState>,
    settings: WatchSettings,
    budget: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
    owner: String,
}

impl Watcher {
    pub fn new(state: web::Data<AppState>, settings: &WatchSettings, owner: String) -> Self {
        let per_minute = NonZeroU32::new(settings.polls_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            state,
            settings: settings.clone(),
            // No burst beyond a few: the budget is a steady trickle.
            budget: RateLimiter::direct(
                Quota::per_minute(per_minute)
                    .allow_burst(per_minute.min(NonZeroU32::new(4).unwrap())),
            ),
            paused_until: Mutex::new(None),
            owner,
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(self) {
        let tick = Duration::from_millis(self.settings.tick_ms);
        loop {
            if let Err(error) = self.poll_due().await {
                self.state.metrics.store_failures.inc();
                tracing::error!(%error, "vetting watch: the store failed; retrying");
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// The first wait (for a request just made).
    pub fn first_poll_ms(settings: &WatchSettings) -> i64 {
        now_ms() + wait_ms(settings, 0)
    }

    fn paused(&self) -> bool {
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        match *paused {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *paused = None;
                false
            }
            None => false,
        }
    }

    /// One round: every customer due now, one poll at a time.
    pub async fn poll_due(&self) -> Result<(), StoreError> {
        if self.paused() {
            return Ok(());
        }
        let store = &self.state.store;
        let lease_ms = (self.settings.lease_secs * 1000) as i64;
        let leased = store
            .lease_due_watches(&self.owner, lease_ms, BATCH)
            .await?;
        for watch in leased {
            if self.paused() || self.budget.check().is_err() {
                // Back in the queue shortly; the lease is given up, not held idle.
                let outcome = if self.paused() {
                    "throttled"
                } else {
                    "over_budget"
                };
                Metrics::outcome(&self.state.metrics.watch_polls, outcome);
                let retry_in = 60_000 / i64::from(self.settings.polls_per_minute.max(1));
                store
                    .postpone_watch(
                        &watch.customer_id,
                        &self.owner,
                        now_ms() + retry_in,
                        watch.polls,
                    )
                    .await?;
                continue;
            }
            self.poll(watch).await?;
        }
        Ok(())
    }

    async fn poll(&self, watch: LeasedWatch) -> Result<(), StoreError> {
        let store = &self.state.store;
        let open = store.open_requests(&watch.customer_id).await?;
        let next_poll_ms = now_ms() + wait_ms(&self.settings, watch.polls + 1);
        let Ok(customer) = CustomerId::parse(&watch.customer_id) else {
            tracing::error!(customer = %watch.customer_id, "vetting watch: a stored customer ID is not a GUID; dropping its watch");
            return self.apply(&watch, Vec::new(), next_poll_ms).await;
        };
        if open.is_empty() {
            return self.apply(&watch, Vec::new(), next_poll_ms).await;
        }
        let call = UpstreamCall::background_poll();
        let correlation_id = call.correlation_id;
        match self
            .state
            .partner_center
            .list_qualifications(customer, call)
            .await
        {
            Ok(statuses) => {
                Metrics::outcome(&self.state.metrics.watch_polls, "ok");
                let transitions = decide(&open, &statuses, self.settings.max_days);
                for transition in &transitions {
                    Metrics::outcome(&self.state.metrics.watch_transitions, transition.to.label());
                }
                self.apply(&watch, transitions, next_poll_ms).await
            }
            Err(error) => {
                let throttled = matches!(error, UpstreamError::Throttled { .. });
                let wait = match (throttled, error.retry_after()) {
                    (true, asked) => Some(asked.unwrap_or(DEFAULT_THROTTLE_PAUSE)),
                    // Partner Center asked for patience in a 503 too.
                    (false, Some(asked)) => Some(asked),
                    (false, None) => None,
                };
                let next = match wait {
                    Some(wait) => {
                        *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now() + wait);
                        now_ms() + wait.as_millis() as i64
                    }
                    None => next_poll_ms,
                };
                Metrics::outcome(
                    &self.state.metrics.watch_polls,
                    if throttled { "throttled" } else { "failed" },
                );
                tracing::warn!(
                    %error,
                    %correlation_id,
                    customer = %watch.customer_id,
                    pause_ms = wait.map(|w| w.as_millis() as u64),
                    "vetting watch: poll failed; rescheduled"
                );
                // A failure counts as a poll, so the schedule keeps stretching; a 429 does not.
                let polls = if throttled {
                    watch.polls
                } else {
                    watch.polls + 1
                };
                store
                    .postpone_watch(&watch.customer_id, &self.owner, next, polls)
                    .await
            }
        }
    }

    async fn apply(
        &self,
        watch: &LeasedWatch,
        transitions: Vec<Transition>,
        next_poll_ms: i64,
    ) -> Result<(), StoreError> {
        let result = PollResult {
            transitions,
            next_poll_ms,
            polls: watch.polls + 1,
        };
        let moved = self
            .state
            .store
            .apply_poll(&watch.customer_id, &self.owner, &result)
            .await?;
        if moved > 0 {
            tracing::info!(customer = %watch.customer_id, moved, "vetting watch: requests moved");
        }
        Ok(())
    }
}

/// The wait before poll number `polls` (0 = the first), with jitter.
fn wait_ms(settings: &WatchSettings, polls: i64) -> i64 {
    let index = (polls.max(0) as usize).min(settings.schedule_secs.len().saturating_sub(1));
    let base = settings.schedule_secs.get(index).copied().unwrap_or(3600) as f64 * 1000.0;
    let spread = 1.0 + settings.jitter * (2.0 * rand::random::<f64>() - 1.0);
    (base * spread) as i64
}

/// Each open request's next status from Partner Center's list (the entry for its
/// qualification), or WatchExpired once it has been open `max_days`.
fn decide(
    open: &[OpenRequest],
    statuses: &[QualificationStatus],
    max_days: u64,
) -> Vec<Transition> {
    let now = now_ms();
    let max_open_ms = (max_days * 86_400_000) as i64;
    let mut transitions = Vec::new();
    for request in open {
        let entry = statuses.iter().find(|s| {
            s.qualification
                .as_str()
                .eq_ignore_ascii_case(&request.qualification)
        });
        let (to, reason) = match entry {
            Some(status) => RequestStatus::of_vetting(status),
            None => (request.status.clone(), None),
        };
        let (to, reason) = if to.is_open() && now - request.created_ms >= max_open_ms {
            (
                RequestStatus::WatchExpired,
                Some(format!(
                    "still {} after {max_days} days; no longer watched",
                    to.as_str()
                )),
            )
        } else {
            (to, reason)
        };
        if to == request.status {
            continue;
        }
        let notification = EventType::for_status(&to).map(|event| {
            (
                event.as_str().to_owned(),
                event_payload(event, request, &to, reason.as_deref()),
            )
        });
        transitions.push(Transition {
            request_id: request.id.clone(),
            caller_app: request.caller_app.clone(),
            from: request.status.clone(),
            to,
            reason,
            notification,
        });
    }
    transitions
}
