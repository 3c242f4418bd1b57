//! One test binary: shared helpers, one module per area.

mod audit;
mod auth;
mod auth_keys;
mod binary;
mod configuration;
mod health;
mod helpers;
mod idempotency;
mod login;
mod metrics;
mod openapi;
mod operations;
mod partner_token;
mod postgres;
mod sandbox;
mod upstream_calls;
mod upstream_errors;
mod upstream_protection;
mod upstream_retries;
mod validation;
mod vetting_watch;
mod webhooks;
