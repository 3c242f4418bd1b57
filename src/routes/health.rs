use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::CallerVerifier;
use crate::partner_center::credential::CredentialReport;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// `ready`, `not ready`, or `draining` once shutdown has begun.
    #[schema(example = "ready")]
    status: &'static str,
    checks: ReadinessChecks,
    details: ReadinessDetails,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessChecks {
    /// Per trusted issuer: `ok` once its signing keys are held, else `unavailable`.
    #[schema(example = json!({"https://login.microsoftonline.com/<tenant-id>/v2.0": "ok"}))]
    caller_signing_keys: BTreeMap<String, &'static str>,
    /// `ok` when the store (SQLite or PostgreSQL) answers.
    #[schema(example = "ok")]
    store: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessDetails {
    /// `closed`, `open` or `half-open`; shown, never failing readiness.
    #[schema(example = "closed")]
    partner_center_circuit: &'static str,
    /// The partner refresh token's health; shown, never failing readiness (`partner-gateway
    /// token status` and the `partner_token_status` metric say the same).
    partner_token: CredentialReport,
}

/// The process is alive. Cheap and dependency-free, for liveness probes.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Liveness { status: "ok" })
}

/// The gateway can serve: every trusted issuer's signing keys are held, the store answers,
/// and it is not shutting down.
///
/// Never fetches keys (the background refresh does), so probes cannot hammer an identity
/// provider. Partner Center's circuit is shown but does not fail readiness: restarting a
/// healthy pod would not mend Partner Center.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: some issuer's signing keys are not held yet, the store does not answer, or the replica is shutting down (`draining`)", body = Readiness),
    )
)]
#[get("/readyz")]
pub async fn readyz(
    verifier: web::Data<CallerVerifier>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let issuers = verifier.readiness();
    let draining = state.lifecycle.is_draining();
    let store_ok = state.store.ping().await;
    let ready = !draining && store_ok && issuers.iter().all(|i| i.keys_held);
    let body = Readiness {
        status: match (draining, ready) {
            (true, _) => "draining",
            (false, true) => "ready",
            (false, false) => "not ready",
        },
        checks: ReadinessChecks {
            caller_signing_keys: issuers
                .into_iter()
                .map(|i| (i.issuer, if i.keys_held { "ok" } else { "unavailable" }))
                .collect(),
            store: if store_ok { "ok" } else { "unavailable" },
        },
        details: ReadinessDetails {
            partner_center_circuit: state.partner_center.circuit_state(),
            partner_token: state
                .partner_token
                .health(state.token_warn_days)
                .report(false),
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
