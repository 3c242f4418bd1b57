//! `X-Correlation-ID` in and out, and the W3C trace context: decided once per request,
//! before logging starts.

use std::convert::Infallible;
use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::domain::{CorrelationId, TRACEPARENT, TRACESTATE, TraceContext};

pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Outermost middleware: picks the correlation ID and stamps it on every response, and
/// continues (or starts) the trace.
/// (Handler and extractor errors arrive here as responses; the request must not be cloned
/// before routing, which needs it uniquely owned.)
pub async fn correlation_middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let correlation_id = CorrelationId::from_header(
        request
            .headers()
            .get(&X_CORRELATION_ID)
            .and_then(|v| v.to_str().ok()),
    );
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let trace = TraceContext::from_headers(header(TRACEPARENT), header(TRACESTATE));
    request.extensions_mut().insert(correlation_id);
    request.extensions_mut().insert(trace);
    let mut response = next.call(request).await?.map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(&correlation_id.to_string()) {
        response.headers_mut().insert(X_CORRELATION_ID, value);
    }
    Ok(response)
}

/// Lets handlers and extractors read the request's correlation ID.
impl FromRequest for CorrelationId {
    type Error = Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(correlation_id_of(request)))
    }
}

/// Lets handlers read the request's trace context.
impl FromRequest for TraceContext {
    type Error = Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(request
            .extensions()
            .get::<TraceContext>()
            .cloned()
            .unwrap_or_default()))
    }
}

pub fn correlation_id_of(request: &HttpRequest) -> CorrelationId {
    request
        .extensions()
        .get::<CorrelationId>()
        .copied()
        .unwrap_or_default()
}
