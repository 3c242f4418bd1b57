//! HTTP handlers only: extract, parse into domain types, call, answer.

mod body;
mod fallback;
mod health;
mod openapi;
mod qualification_requests;
mod qualifications;
mod validation_codes;
mod webhooks;

use utoipa_actix_web::service_config::ServiceConfig;

pub use fallback::{RouteTable, fallback, head_as_get, matched_route};
pub use openapi::{ApiDoc, openapi_document, served_document};

/// The documented API: every route registered here is in the OpenAPI document, and only these.
pub fn api(config: &mut ServiceConfig) {
    config
        .service(qualifications::create_qualification)
        .service(qualifications::list_qualifications)
        .service(qualification_requests::list_qualification_requests)
        .service(qualification_requests::get_qualification_request)
        .service(validation_codes::list_validation_codes)
        .service(webhooks::create_webhook)
        .service(webhooks::list_webhooks)
        .service(webhooks::get_webhook)
        .service(webhooks::delete_webhook)
        .service(webhooks::list_webhook_deliveries)
        .service(webhooks::redeliver_webhook)
        .service(health::healthz)
        .service(health::readyz);
}
