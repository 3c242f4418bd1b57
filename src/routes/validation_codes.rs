use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Permission};
use crate::domain::{CorrelationId, PartnerValidationCode, TraceContext};
use crate::error::{ApiError, Problem, WithCorrelation};
use crate::partner_center::UpstreamCall;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationCodes {
    validation_codes: Vec<PartnerValidationCode>,
}

/// List the partner's GovernmentCommunityCloud validation codes, to pick one for a GCC request.
#[utoipa::path(
    tag = "validation codes",
    responses(
        (status = 200, description = "The partner's validation codes", body = ValidationCodes),
        (status = 400, description = "Malformed credentials (two Authorization headers, a token in the URL)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed, or Partner Center refused the partner", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Partner Center refused the request (its code and description in upstreamCode/upstreamDescription)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This caller is over its rate limit (`caller-rate-limited`) or Partner Center is throttling (`upstream-throttled`); wait Retry-After seconds", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed, refused the gateway's credentials, or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partner Center cannot be called now: no Partner Center token, the circuit is open, too many calls in flight, or Partner Center is unavailable; or the callers' signing keys cannot be fetched. `type` says which", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time (one attempt's timeout, or the whole call's deadline)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/validation-codes")]
pub async fn list_validation_codes(
    correlation_id: CorrelationId,
    trace: TraceContext,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let call = UpstreamCall::new(correlation_id, trace);
    let request_id = call.request_id;
    let validation_codes = state
        .partner_center
        .list_validation_codes(call)
        .await
        .map_err(|e| ApiError::upstream(e, correlation_id, request_id))?;
    Ok(HttpResponse::Ok().json(ValidationCodes { validation_codes }))
}
