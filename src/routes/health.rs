use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::CallerVerifier;
use crate::startup::AppState;

/// The process is alive. Cheap and dependency-free, for liveness probes.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The gateway can serve: settings loaded (or it would not run) and every trusted issuer's
/// signing keys held. Never fetches: the background refresh does, so probes cannot hammer
/// an identity provider. Partner Center's circuit is shown but does not fail readiness:
/// restarting a healthy pod would not mend Partner Center.
pub async fn readyz(
    verifier: web::Data<CallerVerifier>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let issuers = verifier.readiness();
    let ready = issuers.iter().all(|i| i.keys_held);
    let checks: serde_json::Map<String, serde_json::Value> = issuers
        .into_iter()
        .map(|i| {
            (
                i.issuer,
                json!(if i.keys_held { "ok" } else { "unavailable" }),
            )
        })
        .collect();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": { "callerSigningKeys": checks },
        "details": { "partnerCenterCircuit": state.partner_center.circuit_state() },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
