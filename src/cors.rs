//! CORS for internal web apps on other origins: exact origins only, no credentials mode
//! (callers send bearer tokens, not cookies). A refused preflight is answered like every other
//! refusal, as problem+json.

use actix_cors::{Cors, CorsError};
use actix_web::ResponseError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;

use crate::configuration::CorsSettings;
use crate::correlation::{X_CORRELATION_ID, correlation_id_of};
use crate::domain::{TRACEPARENT, TRACESTATE};
use crate::error::ApiError;

/// What the configured origins may send and read.
pub fn cors(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods([Method::GET, Method::HEAD, Method::POST])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
            X_CORRELATION_ID,
            header::HeaderName::from_static(TRACEPARENT),
            header::HeaderName::from_static(TRACESTATE),
        ])
        .expose_headers([
            header::LOCATION,
            X_CORRELATION_ID,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(settings.max_age_secs);
    for origin in &settings.allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Turns actix-cors' plain-text refusal into the gateway's problem+json.
pub async fn cors_refusal_as_problem(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(request).await?;
    let refusal = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
        .map(ToString::to_string);
    let Some(reason) = refusal else {
        return Ok(response.map_into_boxed_body());
    };
    let (request, _) = response.into_parts();
    let problem = ApiError::new(
        crate::error::ApiErrorKind::CorsRefused { reason },
        correlation_id_of(&request),
    );
    Ok(ServiceResponse::new(request, problem.error_response()))
}
