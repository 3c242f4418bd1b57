//! Entra, as far as the gateway and `partner-gateway login` use it: the v1 and v2 token
//! endpoints (refresh-token, authorization-code and device-code grants), the v2 authorize
//! endpoint and the device code endpoint, with sign-in pages a person can click through.

pub mod directory;
pub mod sign_in;

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use self::directory::{ACCESS_TOKEN_TTL_SECS, DevicePoll, Issued};
use super::state::SandboxState;

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub async fn token_v1(
    state: web::Data<SandboxState>,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    // v1 sends expires_in as a string.
    token(
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
    token(&state, &form, "scope", json!(ACCESS_TOKEN_TTL_SECS))
}

fn token(
    state: &SandboxState,
    form: &HashMap<String, String>,
    audience_field: &str,
    expires_in: Value,
) -> HttpResponse {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let entra = &state.entra;
    if field("client_id") != entra.client_id {
        return invalid_client(
            "AADSTS700016: Application with that identifier was not found in the directory (sandbox).",
        );
    }
    // No secret: a public client (the sandbox's app registration allows public client flows).
    let public = match form.get("client_secret") {
        Some(secret) if *secret == entra.client_secret => false,
        Some(_) => {
            return invalid_client("AADSTS7000215: Invalid client secret provided (sandbox).");
        }
        None => true,
    };
    let issued = match field("grant_type") {
        "refresh_token" => {
            if field(audience_field).is_empty() {
                return refuse(
                    "invalid_request",
                    &format!(
                        "AADSTS900144: The request body must contain the parameter '{audience_field}' (sandbox)."
                    ),
                );
            }
            let presented = field("refresh_token");
            if public && entra.family_is_public(presented) == Some(false) {
                return invalid_client(
                    "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret' (sandbox).",
                );
            }
            match entra.redeem_refresh_token(&state.signing, presented) {
                Ok(Some(issued)) => issued,
                Ok(None) => {
                    return refuse(
                        "invalid_grant",
                        "AADSTS70008: The refresh token has expired or was replaced by a newer one (sandbox).",
                    );
                }
                Err(error) => return server_error(&error),
            }
        }
        "authorization_code" => match entra.redeem_code(
            &state.signing,
            field("code"),
            field("client_id"),
            field("redirect_uri"),
            field("code_verifier"),
            public,
        ) {
            Ok(Ok(issued)) => issued,
            Ok(Err(description)) => return refuse("invalid_grant", description),
            Err(error) => return server_error(&error),
        },
        DEVICE_CODE_GRANT => {
            let (error, description) = match entra
                .poll_device_flow(field("device_code"), field("client_id"))
            {
                DevicePoll::Approved { sign_in } => {
                    match entra.start_family(&state.signing, sign_in, public) {
                        Ok(issued) => return granted(issued, field(audience_field), expires_in),
                        Err(error) => return server_error(&error),
                    }
                }
                DevicePoll::Pending => (
                    "authorization_pending",
                    "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling (sandbox).",
                ),
                DevicePoll::SlowDown => (
                    "slow_down",
                    "AADSTS70016: Polling too fast: wait the interval, plus 5 seconds from now on (sandbox).",
                ),
                DevicePoll::Declined => (
                    "authorization_declined",
                    "AADSTS70000: The user declined the sign-in (sandbox).",
                ),
                DevicePoll::Expired => (
                    "expired_token",
                    "AADSTS70020: The device code has expired (sandbox).",
                ),
                DevicePoll::Unknown => (
                    "bad_verification_code",
                    "AADSTS70019: The device code is not known (sandbox).",
                ),
            };
            return refuse(error, description);
        }
        _ => {
            return refuse(
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type (sandbox).",
            );
        }
    };
    granted(issued, field(audience_field), expires_in)
}

/// The sandbox's app registration, for `partner-gateway login --sandbox <url>` (the sandbox
/// listens on loopback only; its secret guards nothing real).
pub async fn app_registration(state: web::Data<SandboxState>) -> HttpResponse {
    let base = state.issuer.as_str();
    HttpResponse::Ok().json(json!({
        "authorityUrl": format!("{base}/entra"),
        "tenantId": super::SANDBOX_TENANT,
        "clientId": state.entra.client_id,
        "clientSecret": state.entra.client_secret,
        "partnerCenterUrl": format!("{base}/partner-center"),
        "publicClientFlows": true,
        "redirectUris": "http://localhost on any port",
    }))
}

fn granted(issued: Issued, audience: &str, expires_in: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "token_type": "Bearer",
        "access_token": issued.access_token,
        "expires_in": expires_in,
        "resource": audience,
        "refresh_token": issued.refresh_token,
    }))
}

fn invalid_client(description: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .json(json!({"error": "invalid_client", "error_description": description}))
}

fn server_error(error: &anyhow::Error) -> HttpResponse {
    HttpResponse::InternalServerError().json(json!({
        "error": "server_error",
        "error_description": format!("AADSTS90000: the sandbox could not sign a token: {error}"),
    }))
}

pub(super) fn refuse(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": error, "error_description": description}))
}
