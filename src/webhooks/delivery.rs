//! Delivers the outbox: leases due deliveries, POSTs each signed, and records the attempt.
//! At least once: a delivery whose answer is lost (or whose replica dies mid-attempt) is
//! sent again, with the same `webhook-id`, for the receiver to de-duplicate.

use std::time::Duration;

use futures_util::StreamExt;
use url::{Host, Url};

use super::CallbackPolicy;
use super::signature::sign;
use crate::configuration::WebhookSettings;
use crate::metrics::Metrics;
use crate::store::{LeasedDelivery, Store, StoreError, now_ms};

/// Deliveries leased per round, and attempted at once.
const BATCH: u32 = 32;
const CONCURRENCY: usize = 8;

pub struct DeliveryWorker {
    store: Store,
    http: reqwest::Client,
    policy: CallbackPolicy,
    settings: WebhookSettings,
    /// Names this replica's leases.
    owner: String,
    metrics: Metrics,
}

enum Attempt {
    Delivered(u16),
    Failed { status: Option<u16>, error: String },
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        settings: &WebhookSettings,
        tls: &rustls::ClientConfig,
        metrics: Metrics,
        owner: String,
    ) -> anyhow::Result<Self> {
        let policy = CallbackPolicy::new(settings);
        let http = crate::tls::client_builder(tls)
            .timeout(Duration::from_millis(settings.timeout_ms))
            .connect_timeout(Duration::from_millis(settings.timeout_ms.min(5_000)))
            // A redirect could point anywhere: it is a failed delivery, not a hop to follow.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(policy.resolver())
            .user_agent(concat!(
                "partner-gateway-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Self {
            store,
            http,
            policy,
            settings: settings.clone(),
            owner,
            metrics,
        })
    }

    /// Runs until the task is aborted; a store outage is logged and waited out.
    pub async fn run(self) {
        let tick = Duration::from_millis(self.settings.tick_ms);
        loop {
            match self.deliver_due().await {
                // A full batch: more may be due, go again at once.
                Ok(n) if n == BATCH as usize => continue,
                Ok(_) => {}
                Err(error) => {
                    self.metrics.store_failures.inc();
                    tracing::error!(%error, "webhook deliveries: the store failed; retrying");
                }
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// One round: every delivery due now, a few at a time.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let lease_ms = (self.settings.lease_secs * 1000) as i64;
        let due = self
            .store
            .lease_due_deliveries(&self.owner, lease_ms, BATCH)
            .await?;
        let count = due.len();
        futures_util::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |delivery| async move {
                if let Err(error) = self.deliver(delivery).await {
                    self.metrics.store_failures.inc();
                    tracing::error!(%error, "webhook delivery: cannot record the attempt");
                }
            })
            .await;
        Ok(count)
    }

    async fn deliver(&self, delivery: LeasedDelivery) -> Result<(), StoreError> {
        let Some(subscription) = &delivery.subscription else {
            Metrics::outcome(&self.metrics.webhook_deliveries, "dropped");
            return self
                .store
                .record_attempt(
                    &delivery.id,
                    &self.owner,
                    false,
                    None,
                    Some("the subscription was deleted"),
                    None,
                )
                .await;
        };
        let outcome = self
            .attempt(&subscription.url, &subscription.secret, &delivery)
            .await;
        let (delivered, status, error) = match &outcome {
            Attempt::Delivered(status) => (true, Some(*status), None),
            Attempt::Failed { status, error } => (false, *status, Some(error.as_str())),
        };
        let next = if delivered {
            None
        } else {
            self.next_attempt(&delivery)
        };
        let result = match (delivered, next) {
            (true, _) => "delivered",
            (false, Some(_)) => "retry",
            (false, None) => "dead_lettered",
        };
        Metrics::outcome(&self.metrics.webhook_deliveries, result);
        tracing::info!(
            webhook_id = %delivery.id,
            subscription = %subscription.id,
            event = %delivery.event_type,
            attempt = delivery.attempts + 1,
            status,
            error,
            result,
            "webhook delivery"
        );
        self.store
            .record_attempt(&delivery.id, &self.owner, delivered, status, error, next)
            .await
    }

    async fn attempt(&self, url: &str, secret: &str, delivery: &LeasedDelivery) -> Attempt {
        let failed = |status, error: String| Attempt::Failed { status, error };
        let Ok(parsed) = Url::parse(url) else {
            return failed(None, "the callback URL no longer parses".into());
        };
        // An address literal is not resolved, so the resolver's check is made here.
        let literal = match parsed.host() {
            Some(Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.policy.address_allowed(ip)) {
            return failed(None, "the callback address is not allowed".into());
        }
        let timestamp = now_ms() / 1000;
        let signature = sign(secret, &delivery.id, timestamp, delivery.payload.as_bytes());
        let sent = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {
                Attempt::Delivered(response.status().as_u16())
            }
            Ok(response) => {
                let status = response.status().as_u16();
                failed(Some(status), format!("the receiver answered {status}"))
            }
            Err(error) if error.is_timeout() => {
                failed(None, "the receiver did not answer in time".into())
            }
            Err(error) if error.is_connect() => {
                failed(None, "cannot connect to the receiver".into())
            }
            Err(_) => failed(None, "the delivery failed in transit".into()),
        }
    }

    /// Exponential backoff with jitter; `None` once the retry window has passed.
    fn next_attempt(&self, delivery: &LeasedDelivery) -> Option<i64> {
        let exponent = delivery.attempts.clamp(0, 30) as u32;
        let base = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << exponent.min(20));
        let wait =
            base.min(self.settings.retry_max_ms) as f64 * (0.8 + 0.4 * rand::random::<f64>());
        let next = now_ms() + wait as i64;
        let give_up_at = delivery.retry_from_ms + (self.settings.give_up_after_secs * 1000) as i64;
        (next < give_up_at).then_some(next)
    }
}
