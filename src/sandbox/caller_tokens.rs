//! An identity provider for callers, so the API can be tried with no tenant at hand.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::state::SandboxState;
use crate::domain::{CorrelationId, FieldError, FieldErrors};
use crate::error::{ApiError, Problem};

const MAX_ROLES: usize = 16;
const MAX_TEXT: usize = 128;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallerTokenRequest {
    /// Defaults to `["Qualifications.ReadWrite"]`.
    #[schema(example = json!(["Qualifications.ReadWrite"]), max_items = 16, inline)]
    roles: Option<Vec<RoleName>>,
    /// Defaults to `sandbox-user`.
    #[schema(example = "alice@contoso.example", min_length = 1, max_length = 128)]
    subject: Option<String>,
}

/// A role to put in the token's `roles` claim.
#[derive(Deserialize, ToSchema)]
#[schema(min_length = 1, max_length = 128)]
#[serde(transparent)]
pub struct RoleName(String);

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallerTokenResponse {
    access_token: String,
    #[schema(example = "Bearer")]
    token_type: &'static str,
    #[schema(example = 3600)]
    expires_in: u64,
}

/// Get a caller token signed by the sandbox's issuer (sandbox mode only).
#[utoipa::path(
    post,
    path = "/sandbox/caller-token",
    tag = "sandbox",
    request_body(content = Option<CallerTokenRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "A caller token; paste it into Authorize", body = CallerTokenResponse),
        (status = 400, description = "Invalid request", body = Problem, content_type = "application/problem+json",
            example = json!({
                "type": "urn:partner-gateway:problem:invalid-request",
                "title": "The request is invalid",
                "status": 400,
                "detail": "subject: must be 1 to 128 characters",
                "field": "subject",
                "errors": [{"field": "subject", "message": "must be 1 to 128 characters"}],
                "correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e"
            })),
    )
)]
pub async fn issue(
    correlation_id: CorrelationId,
    state: web::Data<SandboxState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let fail = |e: FieldError| ApiError::new(FieldErrors::from(e), correlation_id);
    let defaults = || CallerTokenRequest {
        roles: None,
        subject: None,
    };
    let not_a_request = |reason: String| {
        fail(FieldError::new(
            "body",
            format!("is not a caller-token request: {reason}"),
        ))
    };
    // No body, or `null`, asks for the defaults; anything else must be an object (serde
    // would otherwise take an array for a struct).
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        defaults()
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Null) => defaults(),
            Ok(object @ serde_json::Value::Object(_)) => {
                serde_json::from_value::<CallerTokenRequest>(object)
                    .map_err(|e| not_a_request(e.to_string()))?
            }
            Ok(_) => return Err(not_a_request("must be a JSON object".into())),
            Err(e) => return Err(not_a_request(e.to_string())),
        }
    };
    let roles: Option<Vec<String>> = request
        .roles
        .map(|roles| roles.into_iter().map(|r| r.0).collect());
    if let Some(roles) = &roles
        && (roles.len() > MAX_ROLES
            || roles
                .iter()
                .any(|r| r.is_empty() || r.chars().count() > MAX_TEXT))
    {
        return Err(fail(FieldError::new(
            "roles",
            format!(
                "must hold at most {MAX_ROLES} non-empty names of at most {MAX_TEXT} characters"
            ),
        )));
    }
    if let Some(subject) = &request.subject
        && (subject.is_empty() || subject.chars().count() > MAX_TEXT)
    {
        return Err(fail(FieldError::new(
            "subject",
            format!("must be 1 to {MAX_TEXT} characters"),
        )));
    }
    let access_token = state
        .mint_caller_token(roles, request.subject)
        .map_err(|_| fail(FieldError::new("body", "could not be turned into a token")))?;
    Ok(HttpResponse::Ok().json(CallerTokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.caller_token_ttl_secs,
    }))
}

pub async fn jwks(state: web::Data<SandboxState>) -> HttpResponse {
    HttpResponse::Ok().json(state.signing.jwks())
}
