//! A webhook receiver inside the sandbox: it keeps what it is sent, with each signature's
//! verdict, so a person sees a signed notification arrive without running anything else.

use std::collections::VecDeque;
use std::sync::Mutex;

use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::{CorrelationId, FieldError, FieldErrors};
use crate::error::{ApiError, Problem, WithCorrelation};
use crate::state::AppState;
use crate::webhooks::signature::{Verdict, verify};

const KEPT: usize = 100;

#[derive(Default)]
pub struct Received {
    url: String,
    kept: Mutex<VecDeque<Notification>>,
}

impl Received {
    pub fn new(url: String) -> Self {
        Self {
            url,
            kept: Mutex::default(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// One notification as the receiver got it.
#[derive(Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    received_at: OffsetDateTime,
    /// `webhook-id`: the same on every attempt of one delivery.
    webhook_id: Option<String>,
    webhook_timestamp: Option<String>,
    /// `valid` when a subscription's secret verifies `webhook-signature`, else why not.
    #[schema(example = "valid")]
    signature: &'static str,
    /// The subscription whose secret verified it.
    subscription_id: Option<String>,
    #[schema(example = "qualification.approved")]
    event_type: Option<String>,
    /// The notification's body, parsed.
    #[schema(value_type = Value)]
    body: Value,
}

#[derive(Serialize, ToSchema)]
pub struct ReceivedNotifications {
    /// Newest first; the last 100 are kept.
    notifications: Vec<Notification>,
}

/// Receive a webhook (the sandbox's own subscription points here).
#[utoipa::path(
    post,
    path = "/sandbox/webhook-receiver",
    tag = "sandbox",
    request_body(content = Value, content_type = "application/json", description = "A notification: any JSON document"),
    responses(
        (status = 204, description = "Kept, whatever its signature's verdict"),
        (status = 400, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive_webhook(
    request: HttpRequest,
    correlation_id: CorrelationId,
    body: Bytes,
    received: Data<Received>,
    state: Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // What a receiver keeps must be a notification, not any bytes.
    let parsed: Value = serde_json::from_slice(&body)
        .map_err(|e| FieldErrors::from(FieldError::new("body", format!("is not JSON: {e}"))))
        .with_correlation(correlation_id)?;
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let now = OffsetDateTime::now_utc();
    let mut verdict = Verdict::BadSignature;
    let mut subscription_id = None;
    if let (Some(id), Some(timestamp), Some(signature)) = (&id, &timestamp, &signature) {
        let subscriptions = state
            .store
            .subscriptions_to(received.url())
            .await
            .unwrap_or_default();
        for subscription in subscriptions {
            let this = verify(
                &subscription.secret,
                id,
                timestamp,
                signature,
                &body,
                now.unix_timestamp(),
            );
            if this == Verdict::Valid || verdict == Verdict::BadSignature {
                verdict = this;
            }
            if this == Verdict::Valid {
                subscription_id = Some(subscription.id);
                break;
            }
        }
    }
    let body = parsed;
    let notification = Notification {
        received_at: now,
        webhook_id: id,
        webhook_timestamp: timestamp,
        signature: verdict.as_str(),
        subscription_id,
        event_type: body.get("type").and_then(Value::as_str).map(str::to_owned),
        body,
    };
    let mut kept = received.kept.lock().unwrap_or_else(|e| e.into_inner());
    kept.push_front(notification);
    kept.truncate(KEPT);
    Ok(HttpResponse::NoContent().finish())
}

/// What the sandbox's webhook receiver got, newest first, with signature verdicts.
#[utoipa::path(
    get,
    path = "/sandbox/webhook-receiver",
    tag = "sandbox",
    responses((status = 200, description = "Notifications received", body = ReceivedNotifications))
)]
pub async fn list_received_webhooks(received: Data<Received>) -> HttpResponse {
    let notifications = received
        .kept
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    HttpResponse::Ok().json(ReceivedNotifications { notifications })
}
