//! HTTP handlers only: extract, parse into domain types, call, answer.

mod body;
mod health;
mod openapi;
mod qualifications;
mod validation_codes;

use actix_web::{HttpRequest, HttpResponse};
use utoipa_actix_web::service_config::ServiceConfig;

pub use health::{healthz, readyz};
pub use openapi::{ApiDoc, openapi_document};

use crate::correlation::correlation_id_of;
use crate::error::{ApiError, ApiErrorKind};

/// The documented API: every route registered here is in the OpenAPI document, and only these.
pub fn api(config: &mut ServiceConfig) {
    config
        .service(qualifications::create_qualification)
        .service(qualifications::list_qualifications)
        .service(validation_codes::list_validation_codes);
}

/// Unknown paths get a problem document too, never an empty 404.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        ApiErrorKind::NotFound,
        correlation_id_of(&request),
    ))
}
