use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Permission};
use crate::domain::{CorrelationId, PartnerValidationCode};
use crate::error::{ApiError, Problem, WithCorrelation};
use crate::partner_center::UpstreamCall;
use crate::startup::AppState;

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
        (status = 403, description = "The caller lacks the read role", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Partner Center is throttling", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The gateway cannot obtain a Partner Center token", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/validation-codes")]
pub async fn list_validation_codes(
    correlation_id: CorrelationId,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let call = UpstreamCall::new(correlation_id);
    let validation_codes = state
        .partner_center
        .list_validation_codes(call)
        .await
        .map_err(|e| ApiError::upstream(e, correlation_id, call.request_id))?;
    Ok(HttpResponse::Ok().json(ValidationCodes { validation_codes }))
}
