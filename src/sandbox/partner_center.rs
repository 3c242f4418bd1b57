//! Partner Center's qualification endpoints with in-memory, deterministic vetting.
//!
//! - Education: InReview, then after `sandbox.approval_delay_ms` Approved, or Denied with a
//!   reason when the website contains "denied".
//! - GovernmentCommunityCloud: needs one of the sandbox's validation codes with creates left;
//!   each request uses one; Approved at once.
//! - StateOwnedEntity: recorded without vetting fields.
//! - Customers ...0404, ...0429 and ...0500 answer 404, 429 and 500, to try error handling.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::http::header::{AUTHORIZATION, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::state::{
    MAX_REMEMBERED, PartnerCenterState, SandboxQualification, SandboxState, Vetting, lock,
};

const NOT_FOUND_CUSTOMER: &str = "00000000-0000-0000-0000-000000000404";
const THROTTLED_CUSTOMER: &str = "00000000-0000-0000-0000-000000000429";
const FAILING_CUSTOMER: &str = "00000000-0000-0000-0000-000000000500";
/// Longer than the gateway's default call deadline (60 s), so the 429 is passed on at once
/// instead of waited out.
const THROTTLE_SECS: u64 = 120;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(alias = "Qualification")]
    qualification: Option<String>,
    education_segment: Option<String>,
    website: Option<String>,
    validation_code: Option<String>,
}

pub async fn create_qualification(
    request: HttpRequest,
    state: web::Data<SandboxState>,
    customer: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let request_id = match check_call(&request, &state) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let customer = match customer_or_simulated_failure(&customer) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let Ok(body) = serde_json::from_slice::<CreateBody>(&body) else {
        return error(
            400,
            "400001",
            "The request body is not a qualification object.",
        );
    };

    let mut partner = lock(&state.partner);
    if let Some((status, answer)) = partner.answers.get(&request_id) {
        return respond(*status, answer.clone());
    }
    let code = body.validation_code.or_else(|| query.get("code").cloned());
    let (status, answer) = create(
        &mut partner,
        &state,
        customer,
        body.qualification,
        body.education_segment,
        body.website,
        code,
    );
    partner.remember_answer(request_id, (status, answer.clone()));
    respond(status, answer)
}

#[allow(clippy::too_many_arguments)]
fn create(
    partner: &mut PartnerCenterState,
    state: &SandboxState,
    customer: Uuid,
    qualification: Option<String>,
    segment: Option<String>,
    website: Option<String>,
    code: Option<String>,
) -> (u16, Value) {
    let vetting = match qualification.as_deref() {
        Some("Education") => {
            if !matches!(segment.as_deref(), Some("HigherEducation" | "K12")) {
                return error_body(
                    400,
                    "600040",
                    "educationSegment must be HigherEducation or K12.",
                );
            }
            let denied = website
                .as_deref()
                .is_some_and(|w| w.to_ascii_lowercase().contains("denied"));
            Vetting::Education { denied }
        }
        Some("GovernmentCommunityCloud") => {
            let Some(code) = code else {
                return error_body(
                    400,
                    "600041",
                    "A validation code is required for GovernmentCommunityCloud.",
                );
            };
            let Some(found) = partner
                .validation_codes
                .iter_mut()
                .find(|c| c.validation_id == code)
            else {
                return error_body(
                    400,
                    "600042",
                    "The validation code is not valid for this partner.",
                );
            };
            if found.remaining_creates == 0 {
                return error_body(400, "600043", "The validation code has no creates left.");
            }
            found.remaining_creates -= 1;
            found.e_tag = Uuid::new_v4().simple().to_string();
            Vetting::Approved
        }
        Some("StateOwnedEntity") => Vetting::None,
        _ => return error_body(400, "600044", "The qualification cannot be set."),
    };
    let name = qualification.unwrap_or_default();
    if partner.customers.len() >= MAX_REMEMBERED && !partner.customers.contains_key(&customer) {
        partner.customers.clear();
    }
    let records = partner.customers.entry(customer).or_default();
    if records
        .iter()
        .any(|r| r.qualification == name && status_of(r, state).0 != Some("Denied"))
    {
        return error_body(
            409,
            "600045",
            "The customer already has this qualification or it is being vetted.",
        );
    }
    let record = SandboxQualification {
        qualification: name,
        vetting,
        created: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc()),
        created_at: Instant::now(),
    };
    let answer = render(&record, state);
    records.push(record);
    (201, answer)
}

pub async fn list_qualifications(
    request: HttpRequest,
    state: web::Data<SandboxState>,
    customer: web::Path<String>,
) -> HttpResponse {
    if let Err(response) = check_call(&request, &state) {
        return *response;
    }
    let customer = match customer_or_simulated_failure(&customer) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    let partner = lock(&state.partner);
    let items: Vec<Value> = partner
        .customers
        .get(&customer)
        .map(|records| records.iter().map(|r| render(r, &state)).collect())
        .unwrap_or_default();
    // The bare-array shape; the POST answer uses the object shape.
    HttpResponse::Ok().json(items)
}

pub async fn list_validations(
    request: HttpRequest,
    state: web::Data<SandboxState>,
) -> HttpResponse {
    if let Err(response) = check_call(&request, &state) {
        return *response;
    }
    let partner = lock(&state.partner);
    HttpResponse::Ok().json(&partner.validation_codes)
}

fn status_of(
    record: &SandboxQualification,
    state: &SandboxState,
) -> (Option<&'static str>, Option<&'static str>) {
    match record.vetting {
        Vetting::None => (None, None),
        Vetting::Approved => (Some("Approved"), None),
        Vetting::Education { denied } => {
            if record.created_at.elapsed() < state.approval_delay {
                (Some("InReview"), None)
            } else if denied {
                (Some("Denied"), Some("Not an Education Customer"))
            } else {
                (Some("Approved"), None)
            }
        }
    }
}

fn render(record: &SandboxQualification, state: &SandboxState) -> Value {
    let (status, reason) = status_of(record, state);
    let mut item = json!({"qualification": record.qualification});
    if let Some(status) = status {
        item["vettingStatus"] = json!(status);
        item["vettingCreateDate"] = json!(record.created.format(&Rfc3339).unwrap_or_default());
    }
    if let Some(reason) = reason {
        item["vettingReason"] = json!(reason);
    }
    item
}

/// What Partner Center demands of every call: its own bearer token and GUID request headers.
fn check_call(request: &HttpRequest, state: &SandboxState) -> Result<Uuid, Box<HttpResponse>> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let token = header(AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| state.entra.access_token_mfa(t)) {
        None => {
            return Err(Box::new(error(
                401,
                "401",
                "The access token is missing, expired or not issued by the sandbox's Entra.",
            )));
        }
        // Enforced by Partner Center for App+User calls since April 2026.
        Some(false) => {
            return Err(Box::new(error(
                401,
                "900421",
                "Multi-factor authentication is required for App+User calls: the token's sign-in did not use MFA.",
            )));
        }
        Some(true) => {}
    }
    let guid = |name: &str| header(name).and_then(|v| Uuid::try_parse(v).ok());
    if guid("MS-CorrelationId").is_none() {
        return Err(Box::new(error(
            400,
            "2000",
            "MS-CorrelationId must be a GUID.",
        )));
    }
    let Some(request_id) = guid("MS-RequestId") else {
        return Err(Box::new(error(400, "2000", "MS-RequestId must be a GUID.")));
    };
    if header("MS-Contract-Version") != Some("v1") {
        return Err(Box::new(error(
            400,
            "2001",
            "MS-Contract-Version must be v1.",
        )));
    }
    Ok(request_id)
}

fn customer_or_simulated_failure(raw: &str) -> Result<Uuid, Box<HttpResponse>> {
    match raw {
        NOT_FOUND_CUSTOMER => Err(Box::new(error(404, "600001", "Customer not found (sandbox)."))),
        THROTTLED_CUSTOMER => Err(Box::new(HttpResponse::TooManyRequests()
            .insert_header((RETRY_AFTER, THROTTLE_SECS))
            .json(json!({
                "statusCode": 429,
                "message": format!("Rate limit is exceeded. Try again in {THROTTLE_SECS} seconds."),
            })))),
        FAILING_CUSTOMER => Err(Box::new(error(500, "500", "Internal server error (sandbox)."))),
        other => Uuid::try_parse(other)
            .map_err(|_| Box::new(error(400, "600000", "The customer ID is not a GUID."))),
    }
}

fn error_body(status: u16, code: &str, description: &str) -> (u16, Value) {
    (
        status,
        json!({"code": code, "description": description, "data": [], "source": "PartnerFD"}),
    )
}

fn error(status: u16, code: &str, description: &str) -> HttpResponse {
    let (status, body) = error_body(status, code, description);
    respond(status, body)
}

fn respond(status: u16, body: Value) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(body)
}
