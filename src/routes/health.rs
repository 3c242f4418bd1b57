use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::CallerVerifier;

/// The process is alive. Cheap and dependency-free, for liveness probes.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The gateway can serve: settings loaded (or it would not run) and the callers' signing keys held.
pub async fn readyz(verifier: web::Data<CallerVerifier>) -> HttpResponse {
    let keys = verifier.keys().current().await;
    let body = json!({
        "status": if keys.is_ok() { "ready" } else { "not ready" },
        "checks": { "callerSigningKeys": if keys.is_ok() { "ok" } else { "unavailable" } },
    });
    if keys.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
