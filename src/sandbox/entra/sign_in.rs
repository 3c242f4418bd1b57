//! The pages a person signs in on: the v2 authorize endpoint (authorization code with PKCE,
//! as `login --browser` uses it) and the device code endpoint with its verification page
//! (`login --device-code`). Each page offers signing in with or without MFA, or declining.

use std::collections::HashMap;

use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::directory::{DeviceDecision, SANDBOX_OPERATOR, SignIn};
use super::refuse;
use crate::sandbox::state::SandboxState;

type Form = web::Form<HashMap<String, String>>;
type Query = web::Query<HashMap<String, String>>;

/// The parameters `authorize` carries from its page to the redirect.
const CARRIED: [&str; 6] = [
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
];

pub async fn authorize_page(state: web::Data<SandboxState>, query: Query) -> HttpResponse {
    if let Err(problem) = check_authorize(&state, &query) {
        return page(
            400,
            "Sign-in request refused",
            &format!("<p>{}</p>", escape(&problem)),
        );
    }
    let hidden: String = CARRIED
        .iter()
        .map(|name| {
            format!(
                r#"<input type="hidden" name="{name}" value="{}">"#,
                escape(query.get(*name).map(String::as_str).unwrap_or_default())
            )
        })
        .collect();
    page(
        200,
        "Sign in to the sandbox partner tenant",
        &format!(
            r#"<p>An app asks to act as you in Partner Center (<code>{scope}</code>).</p>
<form method="post">{hidden}{who}
<button name="decision" value="approve">Sign in</button>
<button name="decision" value="decline">Cancel</button></form>"#,
            scope = escape(query.get("scope").map(String::as_str).unwrap_or_default()),
            who = who_fields(),
        ),
    )
}

/// The page's answer: back to the redirect URI with a code, or with `access_denied`.
pub async fn authorize_decision(state: web::Data<SandboxState>, form: Form) -> HttpResponse {
    if let Err(problem) = check_authorize(&state, &form) {
        return page(
            400,
            "Sign-in request refused",
            &format!("<p>{}</p>", escape(&problem)),
        );
    }
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let Ok(mut redirect) = url::Url::parse(field("redirect_uri")) else {
        return page(
            400,
            "Sign-in request refused",
            "<p>The redirect URI is not a URL.</p>",
        );
    };
    {
        let mut pairs = redirect.query_pairs_mut();
        if field("decision") == "approve" {
            let code = state.entra.remember_code(
                field("client_id"),
                field("redirect_uri"),
                field("code_challenge"),
                sign_in_from(&form),
            );
            pairs.append_pair("code", &code);
        } else {
            pairs.append_pair("error", "access_denied");
            pairs.append_pair(
                "error_description",
                "AADSTS65004: User declined to consent to access the app (sandbox).",
            );
        }
        pairs.append_pair("state", field("state"));
    }
    HttpResponse::Found()
        .insert_header((LOCATION, redirect.as_str()))
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish()
}

/// What Entra checks before showing a sign-in page: the client, a loopback redirect (the
/// sandbox's app registration is a public client's `http://localhost`), PKCE with S256.
fn check_authorize(state: &SandboxState, params: &HashMap<String, String>) -> Result<(), String> {
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    if field("client_id") != state.entra.client_id {
        return Err(
            "AADSTS700016: the client_id is not an app registration of this tenant.".into(),
        );
    }
    if params.contains_key("response_type") && field("response_type") != "code" {
        return Err("AADSTS900144: response_type must be code.".into());
    }
    let loopback = url::Url::parse(field("redirect_uri")).is_ok_and(|u| {
        u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    });
    if !loopback {
        return Err(
            "AADSTS50011: the redirect URI must be http://localhost:<port> for this app registration."
                .into(),
        );
    }
    if field("code_challenge_method") != "S256" || field("code_challenge").len() < 43 {
        return Err("AADSTS9002325: Proof Key for Code Exchange (S256) is required.".into());
    }
    if !field("scope").split(' ').any(|s| s == "offline_access") {
        return Err("the scope must include offline_access, or no refresh token is issued.".into());
    }
    Ok(())
}

/// `POST /oauth2/v2.0/devicecode`: a device code for `login --device-code` to poll with.
pub async fn device_code(state: web::Data<SandboxState>, form: Form) -> HttpResponse {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    if field("client_id") != state.entra.client_id {
        return refuse(
            "unauthorized_client",
            "AADSTS700016: Application with that identifier was not found in the directory (sandbox).",
        );
    }
    if field("scope").is_empty() {
        return refuse(
            "invalid_request",
            "AADSTS900144: The request body must contain the parameter 'scope' (sandbox).",
        );
    }
    let (device_code, user_code) = state.entra.start_device_flow(field("client_id"));
    let verification_uri = format!("{}/entra/device", state.issuer);
    HttpResponse::Ok().json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "expires_in": state.entra.device_code_ttl.as_secs(),
        "interval": state.entra.device_code_interval.as_secs(),
        "message": format!("To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} to authenticate."),
    }))
}

pub async fn device_page() -> HttpResponse {
    page(
        200,
        "Enter code",
        &format!(
            r#"<p>Enter the code shown by the app that asks to sign you in.</p>
<form method="post"><label>Code <input name="user_code" autofocus></label>{}
<button name="decision" value="approve">Sign in</button>
<button name="decision" value="decline">Decline</button></form>"#,
            who_fields()
        ),
    )
}

pub async fn device_decision(state: web::Data<SandboxState>, form: Form) -> HttpResponse {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let approve = field("decision") == "approve";
    let decision = if approve {
        DeviceDecision::Approved(sign_in_from(&form))
    } else {
        DeviceDecision::Declined
    };
    if !state.entra.decide_device_flow(field("user_code"), decision) {
        return page(
            400,
            "Code not recognised",
            "<p>That code is not known, was already used, or has expired.</p>",
        );
    }
    let said = if approve {
        "You have signed in. You may close this window and return to the app."
    } else {
        "You declined the sign-in. You may close this window."
    };
    page(200, "Done", &format!("<p>{said}</p>"))
}

fn who_fields() -> String {
    format!(
        r#"<p><label>User <input name="user" value="{SANDBOX_OPERATOR}"></label></p>
<p><label><input type="checkbox" name="mfa" value="true" checked> Signed in with multi-factor authentication</label></p>"#
    )
}

fn sign_in_from(form: &HashMap<String, String>) -> SignIn {
    let user: String = form
        .get("user")
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .unwrap_or(SANDBOX_OPERATOR)
        .chars()
        .take(128)
        .collect();
    SignIn {
        user,
        mfa: form.get("mfa").is_some_and(|v| v == "true"),
    }
}

fn page(status: u16, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
        .content_type("text/html; charset=utf-8")
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(format!(
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>{title}</h1>{body}
<p><small>partner-gateway sandbox: no real account is involved.</small></p></body></html>"#
        ))
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
