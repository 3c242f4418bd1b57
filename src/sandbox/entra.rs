//! Entra's refresh-token grant, as the secure application model uses it.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::state::{ACCESS_TOKEN_TTL_SECS, SandboxState};

pub async fn token_v1(
    state: web::Data<SandboxState>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    // v1 sends expires_in as a string.
    redeem(
        &state,
        &form,
        "resource",
        json!(ACCESS_TOKEN_TTL_SECS.to_string()),
    )
}

pub async fn token_v2(
    state: web::Data<SandboxState>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    redeem(&state, &form, "scope", json!(ACCESS_TOKEN_TTL_SECS))
}

fn redeem(
    state: &SandboxState,
    form: &HashMap<String, String>,
    audience_field: &str,
    expires_in: Value,
) -> HttpResponse {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("grant_type") != "refresh_token" {
        return refuse(
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type (sandbox).",
        );
    }
    if field(audience_field).is_empty() {
        return refuse(
            "invalid_request",
            &format!(
                "AADSTS900144: The request body must contain the parameter '{audience_field}' (sandbox)."
            ),
        );
    }
    if field("client_id") != state.client_id || field("client_secret") != state.client_secret {
        return HttpResponse::Unauthorized().json(json!({
            "error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided (sandbox).",
        }));
    }
    match state.redeem(field("refresh_token")) {
        Some((access_token, refresh_token)) => HttpResponse::Ok().json(json!({
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": expires_in,
            "resource": field(audience_field),
            "refresh_token": refresh_token,
        })),
        None => refuse(
            "invalid_grant",
            "AADSTS70008: The refresh token has expired or was replaced by a newer one (sandbox).",
        ),
    }
}

fn refuse(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": error, "error_description": description}))
}
