//! The audit trail: exactly one record per state-changing request, whatever became of it
//! (accepted, refused by the gateway, rejected by Partner Center, failed), on the tracing
//! target `audit` and optionally appended to a JSONL file, fsynced per record. A record says
//! who asked what for which customer and what came of it; never a token, and a validation
//! code only masked.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Caller;
use crate::configuration::AuditSettings;
use crate::correlation::correlation_id_of;
use crate::domain::CorrelationId;
use crate::error::{ApiError, ApiErrorKind};
use crate::idempotency::IDEMPOTENT_REPLAYED;
use crate::metrics::Metrics;
use crate::partner_center::UpstreamError;

pub const AUDIT_TARGET: &str = "audit";

/// The operations that change state upstream, by method and route template, each with the
/// action name its records carry.
const AUDITED: [(Method, &str, &str); 4] = [
    (
        Method::POST,
        "/v1/customers/{customerId}/qualifications",
        "qualification.request",
    ),
    (Method::POST, "/v1/webhooks", "webhook.subscribe"),
    (Method::DELETE, "/v1/webhooks/{id}", "webhook.unsubscribe"),
    (
        Method::POST,
        "/v1/webhook-deliveries/{id}/redeliver",
        "webhook.redeliver",
    ),
];

fn audited_action(request: &ServiceRequest) -> Option<&'static str> {
    if !matches!(*request.method(), Method::POST | Method::DELETE) {
        return None;
    }
    let route = crate::routes::matched_route(request.request())?;
    AUDITED
        .iter()
        .find(|(method, template, _)| method == request.method() && *template == &*route)
        .map(|(_, _, action)| *action)
}

/// What the handler learned on the way, for the record; left in the request's extensions.
#[derive(Debug, Default, Clone)]
pub struct AuditDetails {
    pub customer_id: Option<String>,
    pub qualification: Option<&'static str>,
    /// Already masked: see `ValidationCode::masked`.
    pub validation_code: Option<String>,
    pub request_id: Option<String>,
    pub upstream_status: Option<u16>,
}

#[derive(Debug, Serialize)]
pub struct AuditRecord {
    pub time: String,
    pub action: &'static str,
    /// What was created or changed: the answer's `Location`, else the request's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `accepted`, `refused` (by the gateway), `rejected` (by Partner Center) or `failed`.
    pub outcome: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_fields: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualification: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub idempotent_replay: bool,
}

pub struct AuditLog {
    file: Option<(PathBuf, Arc<Mutex<File>>)>,
    metrics: Metrics,
}

impl AuditLog {
    /// Opens `audit.file` for appending (created 0600); a file that cannot be opened stops
    /// the start rather than leaving the trail silently incomplete.
    pub fn new(settings: &AuditSettings, metrics: Metrics) -> anyhow::Result<Self> {
        let file = match settings.file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            None => None,
            Some(path) => {
                use std::os::unix::fs::OpenOptionsExt;
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot open the audit file {}", path.display()))?;
                Some((path.clone(), Arc::new(Mutex::new(file))))
            }
        };
        Ok(Self { file, metrics })
    }

    /// Logs the record and, with `audit.file`, appends and syncs it before the answer goes
    /// out. A failed write is logged at error and counted: never dropped silently.
    pub async fn record(&self, record: AuditRecord) {
        tracing::info!(
            target: AUDIT_TARGET,
            time = %record.time,
            action = record.action,
            resource = record.resource.as_deref(),
            outcome = record.outcome,
            status = record.status,
            problem = record.problem,
            invalid_fields = record.invalid_fields.as_ref().map(|f| f.join(",")),
            caller_issuer = record.caller_issuer.as_deref(),
            caller = record.caller.as_deref(),
            caller_app = record.caller_app.as_deref(),
            customer_id = record.customer_id.as_deref(),
            qualification = record.qualification,
            validation_code = record.validation_code.as_deref(),
            upstream_status = record.upstream_status,
            request_id = record.request_id.as_deref(),
            idempotent_replay = record.idempotent_replay,
            "audit"
        );
        self.metrics.audit_records.inc();
        let Some((path, file)) = &self.file else {
            return;
        };
        let mut line = match serde_json::to_vec(&record) {
            Ok(line) => line,
            Err(error) => return self.write_failed(path, &error.to_string()),
        };
        line.push(b'\n');
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|written| written);
        if let Err(error) = written {
            self.write_failed(path, &error.to_string());
        }
    }

    fn write_failed(&self, path: &std::path::Path, error: &str) {
        self.metrics.audit_write_failures.inc();
        tracing::error!(
            target: AUDIT_TARGET,
            path = %path.display(),
            error,
            "AUDIT RECORD NOT WRITTEN to the audit file; it is in this log only"
        );
    }
}

/// Writes the one record of an audited request once its answer is known.
pub async fn audit_middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(action) = audited_action(&request) else {
        return next.call(request).await;
    };
    let log = request.app_data::<web::Data<AuditLog>>().cloned();
    // Not a clone of the request: routing needs it uniquely owned.
    let correlation_id = correlation_id_of(request.request());
    let result = next.call(request).await;
    if let Some(log) = log {
        log.record(record_of(action, correlation_id, &result)).await;
    }
    result
}

fn record_of<B>(
    action: &'static str,
    correlation_id: CorrelationId,
    result: &Result<ServiceResponse<B>, actix_web::Error>,
) -> AuditRecord {
    let (status, error, replayed, request) = match result {
        Ok(response) => (
            response.status().as_u16(),
            response.response().error(),
            response.headers().contains_key(IDEMPOTENT_REPLAYED),
            Some(response.request()),
        ),
        Err(error) => (
            error.error_response().status().as_u16(),
            Some(error),
            false,
            None,
        ),
    };
    let api_error = error.and_then(|e| e.as_error::<ApiError>());
    let details = request
        .and_then(|r| r.extensions().get::<AuditDetails>().cloned())
        .unwrap_or_default();
    let caller = request.and_then(|r| r.extensions().get::<Caller>().cloned());
    AuditRecord {
        time: OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default(),
        action,
        resource: result.as_ref().ok().and_then(|response| {
            let location = response.headers().get(actix_web::http::header::LOCATION);
            match location.and_then(|l| l.to_str().ok()) {
                Some(location) => Some(location.to_owned()),
                None if action != "qualification.request" => {
                    Some(response.request().path().to_owned())
                }
                None => None,
            }
        }),
        outcome: outcome(status, api_error, replayed),
        status,
        problem: api_error.map(ApiError::slug),
        invalid_fields: api_error.and_then(|e| match e.kind() {
            ApiErrorKind::Validation(errors) => {
                Some(errors.as_slice().iter().map(|e| e.field.clone()).collect())
            }
            _ => None,
        }),
        caller_issuer: caller.as_ref().map(|c| c.issuer.to_string()),
        caller: caller.as_ref().map(|c| c.subject.to_string()),
        caller_app: caller
            .as_ref()
            .and_then(|c| c.app_id.as_deref().map(str::to_owned)),
        customer_id: details.customer_id,
        qualification: details.qualification,
        validation_code: details.validation_code,
        upstream_status: details.upstream_status,
        correlation_id: correlation_id.to_string(),
        request_id: details.request_id,
        idempotent_replay: replayed,
    }
}

fn outcome(status: u16, error: Option<&ApiError>, replayed: bool) -> &'static str {
    match error.map(ApiError::kind) {
        _ if (200..300).contains(&status) => "accepted",
        Some(ApiErrorKind::Upstream(UpstreamError::Rejected { status, .. }))
            if status.as_u16() != 401 =>
        {
            "rejected"
        }
        Some(ApiErrorKind::Upstream(_)) => "failed",
        // Only Partner Center's verdicts are kept for replay.
        None if replayed => "rejected",
        _ if status >= 500 => "failed",
        _ => "refused",
    }
}
