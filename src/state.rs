//! What handlers share, built once by `startup` and handed to every worker.

use crate::configuration::{WatchSettings, WebhookSettings};
use crate::idempotency::IdempotencyStore;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use std::sync::Arc;

use crate::partner_center::{PartnerCenterClient, TokenProvider};
use crate::store::Store;
use crate::webhooks::CallbackPolicy;

pub struct AppState {
    pub partner_center: PartnerCenterClient,
    /// For the credential's health in `/readyz` (the client holds it for calls).
    pub partner_token: Arc<TokenProvider>,
    pub token_warn_days: u64,
    pub max_body_bytes: usize,
    pub idempotency: IdempotencyStore,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
    pub store: Store,
    /// For the first poll of a new request's customer.
    pub watch: WatchSettings,
    pub webhooks: WebhookSettings,
    pub callback_policy: CallbackPolicy,
}
