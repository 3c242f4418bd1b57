use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::body::query_params;
use super::body::read_json_body;
use crate::auth::{Caller, Permission};
use crate::domain::{CorrelationId, FieldError, FieldErrors};
use crate::error::{ApiError, ApiErrorKind, Problem, WithCorrelation};
use crate::state::AppState;
use crate::store::{DeliveryFilter, NewSubscription, StoredDelivery, Subscription, from_ms};
use crate::webhooks::signature::generate_secret;
use crate::webhooks::{CallbackRefusal, EventType};

/// A webhook subscription of the caller's app.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "1f0f6a0e-8d0c-4a53-a7f5-2a4c3c2b9a11",
    "url": "https://hooks.contoso.com/partner-gateway",
    "events": ["qualification.approved", "qualification.denied"],
    "createdAt": "2026-11-24T09:00:00Z"
}))]
pub struct WebhookSubscription {
    #[schema(value_type = String, format = Uuid)]
    id: String,
    url: String,
    #[schema(example = json!(["qualification.approved"]))]
    events: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    /// The signing secret (`whsec_…`): in the creation answer only, never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: Option<String>,
}

impl WebhookSubscription {
    fn new(subscription: Subscription, show_secret: bool) -> Self {
        Self {
            secret: show_secret.then_some(subscription.secret),
            id: subscription.id,
            url: subscription.url,
            events: subscription.events,
            created_at: from_ms(subscription.created_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookSubscriptions {
    items: Vec<WebhookSubscription>,
}

/// What to subscribe.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.contoso.com/partner-gateway", "events": ["qualification.approved", "qualification.denied", "qualification.expired-watch"]}))]
#[allow(dead_code)]
pub struct NewWebhookSubscription {
    /// An https URL on a host in the gateway's `webhooks.allowed_hosts`, resolving to public
    /// addresses only. Redirects from it are not followed.
    #[schema(format = "uri")]
    url: String,
    /// One or more of the events (a repeat counts once).
    #[schema(min_items = 1)]
    events: Vec<WebhookEvent>,
}

/// An event a subscription can ask for.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub enum WebhookEvent {
    #[serde(rename = "qualification.approved")]
    Approved,
    #[serde(rename = "qualification.denied")]
    Denied,
    #[serde(rename = "qualification.expired-watch")]
    ExpiredWatch,
}

/// Subscribe the caller's app to vetting notifications.
///
/// Notifications are signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature: v1,<base64 HMAC-SHA256>` with the secret answered here, once) and
/// delivered at least once: retried with exponential backoff for up to 24 hours, then
/// dead-lettered (see `GET /v1/webhook-deliveries?status=failed`).
#[utoipa::path(
    tag = "webhooks",
    request_body(content = NewWebhookSubscription, content_type = "application/json"),
    responses(
        (status = 201, description = "Subscribed; keep `secret`, it is not shown again", body = WebhookSubscription,
            headers(("Location" = String, description = "/v1/webhooks/{id}"))),
        (status = 400, description = "The request is malformed (every fault in `errors`: not a URL, an unknown event, an unknown field), or malformed credentials", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the write role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The app holds `webhooks.max_subscriptions_per_app` subscriptions already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`callback-url-refused`: the gateway will not call this URL (not https, a host outside webhooks.allowed_hosts, or an internal address); `field` is `url`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (`store-unavailable`), or the callers' signing keys cannot be fetched", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/webhooks")]
pub async fn create_webhook(
    http_request: HttpRequest,
    correlation_id: CorrelationId,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::WriteQualifications)
        .with_correlation(correlation_id)?;
    let body = read_json_body(&http_request, payload, state.max_body_bytes)
        .await
        .with_correlation(correlation_id)?;
    let (url, events) = parse_subscription(&body, &state)
        .await
        .with_correlation(correlation_id)?;
    let new = NewSubscription {
        id: uuid::Uuid::new_v4().to_string(),
        caller_app: caller.owning_app(),
        url,
        events,
        secret: generate_secret(),
        created_by: caller.subject.to_string(),
    };
    let limit = state.webhooks.max_subscriptions_per_app;
    let subscription = state
        .store
        .create_subscription(&new, limit)
        .await
        .with_correlation(correlation_id)?
        .ok_or(ApiErrorKind::SubscriptionLimit { limit })
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/v1/webhooks/{}", subscription.id)))
        .json(WebhookSubscription::new(subscription, true)))
}

/// Every fault at once (400); a well-formed request whose URL the policy refuses is a 422.
async fn parse_subscription(
    body: &[u8],
    state: &AppState,
) -> Result<(String, Vec<String>), ApiErrorKind> {
    let refuse = |e: FieldError| ApiErrorKind::Validation(e.into());
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| refuse(FieldError::new("body", format!("is not valid JSON: {e}"))))?;
    let Some(object) = value.as_object() else {
        return Err(refuse(FieldError::new(
            "body",
            "must be a JSON object with url and events",
        )));
    };
    let mut errors = FieldErrors::default();
    for field in object
        .keys()
        .filter(|k| !matches!(k.as_str(), "url" | "events"))
    {
        errors.push(FieldError::new(
            field.clone(),
            "is not a field of a subscription",
        ));
    }
    let url_position = errors.len();
    let url = match object.get("url").and_then(Value::as_str) {
        Some(raw) => match state.callback_policy.check(raw).await {
            Ok(url) => Some(Ok(url.to_string())),
            Err(CallbackRefusal::Malformed(fault)) => {
                errors.push(fault);
                None
            }
            Err(CallbackRefusal::NotAllowed(refusal)) => Some(Err(refusal)),
        },
        None => {
            errors.push(FieldError::new(
                "url",
                "is required: the https URL to notify",
            ));
            None
        }
    };
    let known = || {
        EventType::ALL
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut events: Vec<String> = Vec::new();
    match object.get("events").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for (i, item) in list.iter().enumerate() {
                match item.as_str().and_then(EventType::parse) {
                    Some(event) if !events.iter().any(|e| e == event.as_str()) => {
                        events.push(event.as_str().to_owned());
                    }
                    Some(_) => {}
                    None => errors.push(FieldError::new(
                        format!("events[{i}]"),
                        format!("must be one of {}", known()),
                    )),
                }
            }
        }
        _ => errors.push(FieldError::new(
            "events",
            format!("is required: a non-empty list of {}", known()),
        )),
    }
    let url = match url {
        Some(Ok(url)) => url,
        // With other faults, the refusal is one of them.
        Some(Err(refusal)) if !errors.is_empty() => {
            errors.insert(url_position, refusal);
            String::new()
        }
        Some(Err(refusal)) => return Err(ApiErrorKind::CallbackRefused(refusal)),
        None => String::new(),
    };
    errors.into_result()?;
    Ok((url, events))
}

/// The caller's app's webhook subscriptions (without their secrets).
#[utoipa::path(
    tag = "webhooks",
    responses(
        (status = 200, description = "The subscriptions", body = WebhookSubscriptions),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhooks")]
pub async fn list_webhooks(
    correlation_id: CorrelationId,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let subscriptions = state
        .store
        .subscriptions(&caller.owning_app())
        .await
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Ok().json(WebhookSubscriptions {
        items: subscriptions
            .into_iter()
            .map(|s| WebhookSubscription::new(s, false))
            .collect(),
    }))
}

/// One of the caller's app's webhook subscriptions (without its secret).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = WebhookSubscription),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription of this app", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhooks/{id}")]
pub async fn get_webhook(
    correlation_id: CorrelationId,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let subscription = state
        .store
        .subscription(&caller.owning_app(), &id)
        .await
        .with_correlation(correlation_id)?
        .ok_or(ApiErrorKind::ResourceNotFound {
            what: "webhook subscription",
        })
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Ok().json(WebhookSubscription::new(subscription, false)))
}

/// Unsubscribe; deliveries still pending for it are dropped.
#[utoipa::path(
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "Unsubscribed"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the write role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription of this app", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/v1/webhooks/{id}")]
pub async fn delete_webhook(
    correlation_id: CorrelationId,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::WriteQualifications)
        .with_correlation(correlation_id)?;
    let deleted = state
        .store
        .delete_subscription(&caller.owning_app(), &id)
        .await
        .with_correlation(correlation_id)?;
    if !deleted {
        return Err(ApiError::new(
            ApiErrorKind::ResourceNotFound {
                what: "webhook subscription",
            },
            correlation_id,
        ));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// pending, delivered or failed (dead-lettered after the retry window).
    #[param(example = "failed", pattern = "^(pending|delivered|failed)$")]
    status: Option<String>,
    #[param(value_type = Option<uuid::Uuid>)]
    subscription_id: Option<String>,
    /// 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

/// One notification to one subscription, and how its delivery went.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// The `webhook-id` header: the same on every attempt, for receivers to de-duplicate.
    #[schema(example = "msg_2b3c9d0e4f5a6b7c8d9e0f1a2b3c4d5e")]
    id: String,
    #[schema(value_type = String, format = Uuid)]
    subscription_id: String,
    #[schema(example = "qualification.approved")]
    event_type: String,
    /// pending, delivered or failed.
    #[schema(example = "failed")]
    status: String,
    attempts: i64,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(nullable = false, value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<OffsetDateTime>,
    /// The receiver's last HTTP status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    #[schema(nullable = false, value_type = Option<String>, format = DateTime)]
    delivered_at: Option<OffsetDateTime>,
    /// The notification, as signed and sent.
    #[schema(value_type = Object)]
    payload: Value,
}

impl From<StoredDelivery> for WebhookDelivery {
    fn from(d: StoredDelivery) -> Self {
        Self {
            next_attempt_at: (d.status == "pending").then(|| from_ms(d.next_attempt_ms)),
            payload: serde_json::from_str(&d.payload).unwrap_or(Value::Null),
            id: d.id,
            subscription_id: d.subscription_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: from_ms(d.created_ms),
            delivered_at: d.delivered_ms.map(from_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveries {
    /// Newest first.
    items: Vec<WebhookDelivery>,
}

/// The caller's app's webhook deliveries, newest first; `?status=failed` lists the
/// dead-lettered ones.
#[utoipa::path(
    tag = "webhooks",
    params(DeliveryParams),
    responses(
        (status = 200, description = "Deliveries", body = WebhookDeliveries),
        (status = 400, description = "A filter is malformed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhook-deliveries")]
pub async fn list_webhook_deliveries(
    http_request: HttpRequest,
    correlation_id: CorrelationId,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let params: DeliveryParams = query_params(&http_request).with_correlation(correlation_id)?;
    let mut errors = FieldErrors::default();
    if let Some(status) = &params.status
        && !matches!(status.as_str(), "pending" | "delivered" | "failed")
    {
        errors.push(FieldError::new(
            "status",
            "must be pending, delivered or failed",
        ));
    }
    let limit = match params.limit.as_deref().map(str::parse::<u32>) {
        None => 50,
        Some(Ok(limit @ 1..=200)) => limit,
        Some(_) => {
            errors.push(FieldError::new(
                "limit",
                "must be a whole number from 1 to 200",
            ));
            50
        }
    };
    if let Some(id) = &params.subscription_id
        && uuid::Uuid::parse_str(id).is_err()
    {
        errors.push(FieldError::new("subscriptionId", "must be a GUID"));
    }
    errors.into_result().with_correlation(correlation_id)?;
    let deliveries = state
        .store
        .deliveries(&DeliveryFilter {
            caller_app: caller.owning_app(),
            status: params.status,
            subscription_id: params.subscription_id,
            limit,
        })
        .await
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Ok().json(WebhookDeliveries {
        items: deliveries.into_iter().map(WebhookDelivery::from).collect(),
    }))
}

/// Send a delivery again, now, with a fresh 24-hour retry window (a dead-lettered one, say).
#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id (its `webhook-id`)")),
    responses(
        (status = 202, description = "Queued: due now", body = WebhookDelivery),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the write role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery of this app", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/webhook-deliveries/{id}/redeliver")]
pub async fn redeliver_webhook(
    correlation_id: CorrelationId,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::WriteQualifications)
        .with_correlation(correlation_id)?;
    let delivery = state
        .store
        .redeliver(&caller.owning_app(), &id)
        .await
        .with_correlation(correlation_id)?
        .ok_or(ApiErrorKind::ResourceNotFound {
            what: "webhook delivery",
        })
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Accepted().json(WebhookDelivery::from(delivery)))
}
