//! HTTP handlers only: extract, parse into domain types, call, answer.

mod body;
mod fallback;
mod health;
mod openapi;
mod qualification_requests;
mod qualifications;
mod validation_codes;
mod webhooks;

use actix_web::dev::HttpServiceFactory;
use utoipa_actix_web::OpenApiFactory;

pub use fallback::{RouteTable, fallback, head_as_get, matched_route};
pub use openapi::{
    ApiDoc, OPENAPI_JSON_PATH, OpenApiJson, openapi_document, serve_openapi_json, served_document,
};

/// Where [`api`] registers its routes: the document collects them (with their operations)
/// through utoipa's config, once; each server worker takes them through actix's plain one, so a
/// worker does not build the document again.
pub trait RouteRegistry {
    fn service<F>(&mut self, factory: F) -> &mut Self
    where
        F: HttpServiceFactory + OpenApiFactory + 'static;
}

impl RouteRegistry for actix_web::web::ServiceConfig {
    fn service<F>(&mut self, factory: F) -> &mut Self
    where
        F: HttpServiceFactory + OpenApiFactory + 'static,
    {
        actix_web::web::ServiceConfig::service(self, factory)
    }
}

impl RouteRegistry for utoipa_actix_web::service_config::ServiceConfig<'_> {
    fn service<F>(&mut self, factory: F) -> &mut Self
    where
        F: HttpServiceFactory + OpenApiFactory + 'static,
    {
        utoipa_actix_web::service_config::ServiceConfig::service(self, factory)
    }
}

/// The documented API: every route registered here is in the OpenAPI document, and only these.
pub fn api<R: RouteRegistry>(config: &mut R) {
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
