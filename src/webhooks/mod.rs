//! Signed notifications to the apps that asked (Standard Webhooks): the events, their
//! payloads, the callback-URL policy that keeps the gateway from being an SSRF proxy, and the
//! worker that delivers the outbox at least once.

mod callback;
mod delivery;
pub mod signature;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use callback::{CallbackPolicy, CallbackRefusal};
pub use delivery::DeliveryWorker;

use crate::store::{RequestStatus, StoredRequest};

/// What a subscription can ask to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Approved,
    Denied,
    ExpiredWatch,
}

impl EventType {
    pub const ALL: [EventType; 3] = [Self::Approved, Self::Denied, Self::ExpiredWatch];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "qualification.approved",
            Self::Denied => "qualification.denied",
            Self::ExpiredWatch => "qualification.expired-watch",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw)
    }

    /// The event a request's new status announces, if any.
    pub fn for_status(status: &RequestStatus) -> Option<Self> {
        match status {
            RequestStatus::Approved => Some(Self::Approved),
            RequestStatus::Denied => Some(Self::Denied),
            RequestStatus::WatchExpired => Some(Self::ExpiredWatch),
            _ => None,
        }
    }
}

/// A notification's body, in Standard Webhooks' shape: `type`, `timestamp`, `data`. Signed
/// byte for byte as sent: verify the raw body before parsing it.
#[derive(Serialize, ToSchema)]
#[schema(as = QualificationEvent, example = json!({
    "type": "qualification.approved",
    "timestamp": "2026-11-26T15:02:10Z",
    "data": {
        "requestId": "5b0c7a43-5d0f-4b8e-9d55-0f3f2d8b1c6e",
        "customerId": "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745",
        "qualification": "Education",
        "status": "Approved",
        "msRequestId": "3b6a4c1e-0d2f-4a51-9c8e-2f1d7b6a5c40",
        "correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "requestedAt": "2026-11-24T09:30:00Z",
        "location": "/v1/qualification-requests/5b0c7a43-5d0f-4b8e-9d55-0f3f2d8b1c6e"
    }
}))]
pub struct Envelope<'a> {
    /// `qualification.approved`, `qualification.denied` or `qualification.expired-watch`.
    #[serde(rename = "type")]
    event_type: &'static str,
    /// When the gateway saw the change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    timestamp: OffsetDateTime,
    #[schema(inline)]
    data: EventData<'a>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventData<'a> {
    /// The `id` the POST answered.
    #[schema(value_type = String, format = Uuid)]
    request_id: &'a str,
    #[schema(value_type = String, format = Uuid)]
    customer_id: &'a str,
    qualification: &'a str,
    /// Approved, Denied, or WatchExpired (still in review after `watch.max_days`).
    status: &'a str,
    /// Partner Center's reason for a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    vetting_reason: Option<&'a str>,
    /// The POST's `MS-RequestId` and correlation ID, to quote to Microsoft or to us.
    #[schema(value_type = String, format = Uuid)]
    ms_request_id: &'a str,
    #[schema(value_type = String, format = Uuid)]
    correlation_id: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    requested_at: OffsetDateTime,
    /// Where the request and its timeline are read.
    location: String,
}

/// The notification for `request` moving to `status`, serialised once: every attempt sends
/// (and signs) the same bytes.
pub fn event_payload(
    event: EventType,
    request: &StoredRequest,
    status: &RequestStatus,
    reason: Option<&str>,
) -> String {
    let envelope = Envelope {
        event_type: event.as_str(),
        timestamp: OffsetDateTime::now_utc(),
        data: EventData {
            request_id: &request.id,
            customer_id: &request.customer_id,
            qualification: &request.qualification,
            status: status.as_str(),
            vetting_reason: reason,
            ms_request_id: &request.ms_request_id,
            correlation_id: &request.correlation_id,
            requested_at: crate::store::from_ms(request.created_ms),
            location: format!("/v1/qualification-requests/{}", request.id),
        },
    };
    serde_json::to_string(&envelope).expect("the payload serializes")
}
