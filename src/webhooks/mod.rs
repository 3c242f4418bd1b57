//! Signed notifications to the apps that asked (Standard Webhooks): the events, their
//! payloads, the callback-URL policy that keeps the gateway from being an SSRF proxy, and the
//! worker that delivers the outbox at least once.

mod callback;
mod delivery;
pub mod signature;

use serde::Serialize;
use time::OffsetDateTime;

pub use callback::CallbackPolicy;
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

/// The body of a notification, Standard Webhooks' shape: `type`, `timestamp`, `data`.
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: EventData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventData<'a> {
    request_id: &'a str,
    customer_id: &'a str,
    qualification: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    vetting_reason: Option<&'a str>,
    /// The POST's `MS-RequestId` and correlation ID, to quote to Microsoft or to us.
    ms_request_id: &'a str,
    correlation_id: &'a str,
    #[serde(with = "time::serde::rfc3339")]
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
