//! What handlers share, built once by `startup` and handed to every worker.

use crate::idempotency::IdempotencyStore;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::partner_center::PartnerCenterClient;

pub struct AppState {
    pub partner_center: PartnerCenterClient,
    pub max_body_bytes: usize,
    pub idempotency: IdempotencyStore,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
}
