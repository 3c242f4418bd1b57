//! Prometheus metrics: one registry per running gateway (so tests in one process do not mix
//! their counts), served on its own listener. Recording is a label lookup and an atomic add;
//! values that change by themselves (circuit state, token lifetimes) are read at scrape time.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::{ApiError, ApiErrorKind};
use crate::routes::matched_route;
use crate::state::AppState;

/// Seconds, from 1 ms to 60 s: facade answers, Partner Center attempts and bulkhead waits.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub operation: &'static str,
    /// The HTTP status, or why none came (`timeout`, `deadline`, `unreachable`, `answer_lost`).
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric the gateway records; cheap to clone (each family is shared).
#[derive(Clone)]
pub struct Metrics {
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_request_duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    pub upstream_retries: Family<ReasonLabels, Counter>,
    pub upstream_refusals: Family<ReasonLabels, Counter>,
    pub bulkhead_wait: Histogram,
    pub token_refreshes: Family<OutcomeLabels, Counter>,
    pub jwks_fetches: Family<OutcomeLabels, Counter>,
    pub caller_auth_refusals: Family<ReasonLabels, Counter>,
    pub verified_token_cache: Family<ResultLabels, Counter>,
    pub idempotency: Family<ResultLabels, Counter>,
    pub caller_rate_limited: Counter,
    pub audit_records: Counter,
    pub audit_write_failures: Counter,
    pub shutting_down: Gauge,
    pub watch_polls: Family<OutcomeLabels, Counter>,
    pub watch_transitions: Family<OutcomeLabels, Counter>,
    pub webhook_deliveries: Family<OutcomeLabels, Counter>,
    pub store_failures: Counter,
}

impl Metrics {
    /// The metrics and the registry that serves them; register scrape-time collectors on
    /// the registry before serving it.
    pub fn new() -> (Self, Registry) {
        let metrics = Self {
            http_requests: Family::default(),
            http_request_duration: Family::new_with_constructor(latency_histogram),
            upstream_requests: Family::default(),
            upstream_request_duration: Family::new_with_constructor(latency_histogram),
            upstream_retries: Family::default(),
            upstream_refusals: Family::default(),
            bulkhead_wait: latency_histogram(),
            token_refreshes: Family::default(),
            jwks_fetches: Family::default(),
            caller_auth_refusals: Family::default(),
            verified_token_cache: Family::default(),
            idempotency: Family::default(),
            caller_rate_limited: Counter::default(),
            audit_records: Counter::default(),
            audit_write_failures: Counter::default(),
            shutting_down: Gauge::default(),
            watch_polls: Family::default(),
            watch_transitions: Family::default(),
            webhook_deliveries: Family::default(),
            store_failures: Counter::default(),
        };
        let mut registry = Registry::with_prefix("partner_gateway");
        let m = &metrics;
        registry.register(
            "http_requests",
            "Requests answered by the gateway, by route template, method and status class",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route template and method",
            m.http_request_duration.clone(),
        );
        registry.register(
            "partner_center_requests",
            "HTTP attempts to Partner Center, by operation and status (or why none came: timeout, deadline, unreachable, answer_lost)",
            m.upstream_requests.clone(),
        );
        registry.register(
            "partner_center_request_duration_seconds",
            "Time of one HTTP attempt to Partner Center, by operation",
            m.upstream_request_duration.clone(),
        );
        registry.register(
            "partner_center_retries",
            "Partner Center attempts repeated, by the reason of the failure before",
            m.upstream_retries.clone(),
        );
        registry.register(
            "partner_center_refusals",
            "Partner Center calls refused without an attempt: circuit_open, bulkhead_full, deadline",
            m.upstream_refusals.clone(),
        );
        registry.register(
            "partner_center_bulkhead_wait_seconds",
            "Time a call waited for a Partner Center slot (refused ones included)",
            m.bulkhead_wait.clone(),
        );
        registry.register(
            "partner_token_refreshes",
            "Requests to Entra's token endpoint, by outcome: success, refused, transient, invalid_response",
            m.token_refreshes.clone(),
        );
        registry.register(
            "caller_jwks_fetches",
            "Fetches of a trusted issuer's signing keys, by outcome",
            m.jwks_fetches.clone(),
        );
        registry.register(
            "caller_auth_refusals",
            "Callers turned away by authentication or authorization, by reason",
            m.caller_auth_refusals.clone(),
        );
        registry.register(
            "caller_verified_token_cache",
            "Caller tokens found (hit) or not (miss) among tokens verified before",
            m.verified_token_cache.clone(),
        );
        registry.register(
            "idempotency_requests",
            "POSTs with an Idempotency-Key, by result: fresh, replay, in_progress, key_reused",
            m.idempotency.clone(),
        );
        registry.register(
            "caller_rate_limited",
            "Requests refused by the per-caller rate limit",
            m.caller_rate_limited.clone(),
        );
        registry.register(
            "audit_records",
            "Audit records written",
            m.audit_records.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit records that could not be appended to audit.file",
            m.audit_write_failures.clone(),
        );
        registry.register(
            "shutting_down",
            "1 once a shutdown signal arrived: the replica is draining",
            m.shutting_down.clone(),
        );
        registry.register(
            "watch_polls",
            "Vetting-watch polls of Partner Center, by outcome: ok, throttled, failed, over_budget",
            m.watch_polls.clone(),
        );
        registry.register(
            "watch_transitions",
            "Qualification requests the watcher moved, by new status",
            m.watch_transitions.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered, retry, dead_lettered, dropped",
            m.webhook_deliveries.clone(),
        );
        registry.register(
            "store_failures",
            "Store statements that failed: answered 503, retried by a worker, or a POST's outcome written behind its answer (left to the vetting watch)",
            m.store_failures.clone(),
        );
        let info: Family<Vec<(String, String)>, Gauge> = Family::default();
        info.get_or_create(&vec![(
            "version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        )])
        .set(1);
        registry.register("build_info", "The running version", info);
        (metrics, registry)
    }

    /// For components built outside a running gateway (benchmarks).
    pub fn unregistered() -> Self {
        Self::new().0
    }

    pub fn record_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status_class,
            })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn record_upstream(&self, operation: &'static str, status: String, elapsed: Duration) {
        self.upstream_requests
            .get_or_create(&UpstreamLabels { operation, status })
            .inc();
        self.upstream_request_duration
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count(family: &Family<ReasonLabels, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn outcome(family: &Family<OutcomeLabels, Counter>, outcome: &'static str) {
        family.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn result(family: &Family<ResultLabels, Counter>, result: &'static str) {
        family.get_or_create(&ResultLabels { result }).inc();
    }
}

/// A value read when Prometheus scrapes, not when something happens.
pub struct ScrapeGauge {
    pub name: &'static str,
    pub help: &'static str,
    /// `None`: not known (yet), so not exported.
    pub read: Box<dyn Fn() -> Option<f64> + Send + Sync>,
}

/// A gauge whose one labelled series is set to 1 for the current state: `state="open"`, say.
pub struct ScrapeState {
    pub name: &'static str,
    pub help: &'static str,
    pub states: &'static [&'static str],
    pub read: Box<dyn Fn() -> &'static str + Send + Sync>,
}

/// Scrape-time values, registered once on the registry.
#[derive(Default)]
pub struct LiveValues {
    pub gauges: Vec<ScrapeGauge>,
    pub states: Vec<ScrapeState>,
}

impl fmt::Debug for LiveValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveValues")
            .field(
                "gauges",
                &self.gauges.iter().map(|g| g.name).collect::<Vec<_>>(),
            )
            .field(
                "states",
                &self.states.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Collector for LiveValues {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        for gauge in &self.gauges {
            let Some(value) = (gauge.read)() else {
                continue;
            };
            let metric = ConstGauge::new(value);
            let descriptor =
                encoder.encode_descriptor(gauge.name, gauge.help, None, metric.metric_type())?;
            metric.encode(descriptor)?;
        }
        for state in &self.states {
            let current = (state.read)();
            let mut descriptor = encoder.encode_descriptor(
                state.name,
                state.help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for name in state.states {
                let labels = [("state", *name)];
                let series = descriptor.encode_family(&labels)?;
                ConstGauge::new(i64::from(*name == current)).encode(series)?;
            }
        }
        Ok(())
    }
}

/// The registry as served: Prometheus' text exposition (OpenMetrics flavour).
pub fn render(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

pub type SharedRegistry = Arc<Registry>;

/// Counts every answer by route template, method and status class, and the refusals of
/// callers by reason, as the one error mapping decided them.
pub async fn record_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // The state, not a copy of its metrics: that would be an atomic add (and a drop) for
    // each of their two dozen families, per request.
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(request).await;
    };
    let metrics = &state.metrics;
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.call(request).await?;
    let route = matched_route(response.request());
    metrics.record_request(
        route.as_deref().unwrap_or("unmatched"),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    if let Some(error) = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
    {
        match error.kind() {
            ApiErrorKind::Auth(refusal) => {
                Metrics::count(&metrics.caller_auth_refusals, &refusal.reason());
            }
            ApiErrorKind::RateLimited(_) => {
                metrics.caller_rate_limited.inc();
            }
            _ => {}
        }
    }
    Ok(response)
}
