//! HTTP handlers only: extract, parse into domain types, call, answer.

mod body;
mod fallback;
mod health;
mod openapi;
mod qualifications;
mod validation_codes;

use utoipa_actix_web::service_config::ServiceConfig;

pub use fallback::{RouteTable, fallback, head_as_get, matched_route};
pub use openapi::{ApiDoc, openapi_document, served_document};

/// The documented API: every route registered here is in the OpenAPI document, and only these.
pub fn api(config: &mut ServiceConfig) {
    config
        .service(qualifications::create_qualification)
        .service(qualifications::list_qualifications)
        .service(validation_codes::list_validation_codes)
        .service(health::healthz)
        .service(health::readyz);
}
