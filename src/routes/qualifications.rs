use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::body::read_json_body;
use crate::auth::{Caller, Permission};
use crate::domain::{
    CorrelationId, CustomerId, FieldErrors, QualificationRequest, QualificationStatus,
};
use crate::error::{ApiError, Problem, WithCorrelation};
use crate::partner_center::UpstreamCall;
use crate::startup::AppState;

/// The answer to a qualification request: vetting has started (or finished) upstream.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualificationAccepted {
    #[schema(value_type = String, format = Uuid)]
    customer_id: String,
    #[serde(flatten)]
    status: QualificationStatus,
    #[schema(value_type = String, format = Uuid)]
    correlation_id: String,
    /// The `MS-RequestId` Partner Center saw; quote it to Microsoft support.
    #[schema(value_type = String, format = Uuid)]
    request_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerQualifications {
    #[schema(value_type = String, format = Uuid)]
    customer_id: String,
    qualifications: Vec<QualificationStatus>,
}

/// Ask Partner Center to vet a customer for a qualification.
///
/// Vetting is asynchronous: follow it with the GET on the `Location` answered.
#[utoipa::path(
    tag = "qualifications",
    params(("customerId" = uuid::Uuid, Path, description = "The customer's Microsoft tenant ID")),
    request_body(content = crate::domain::QualificationRequestBody, content_type = "application/json"),
    responses(
        (status = 202, description = "Partner Center accepted the request; vetting follows", body = QualificationAccepted,
            headers(("Location" = String, description = "Where to follow the vetting"))),
        (status = 400, description = "Invalid request; nothing was sent to Partner Center", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the write role, or Partner Center refused the partner (e.g. missing GDAP role for GCC)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Partner Center does not know the customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer already has, or is being vetted for, this qualification", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Partner Center is throttling", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The gateway cannot obtain a Partner Center token", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/customers/{customerId}/qualifications")]
pub async fn create_qualification(
    http_request: HttpRequest,
    correlation_id: CorrelationId,
    caller: Caller,
    customer_id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::WriteQualifications)
        .with_correlation(correlation_id)?;
    let body = read_json_body(&http_request, payload, state.max_body_bytes)
        .await
        .with_correlation(correlation_id)?;

    let customer = CustomerId::parse(&customer_id);
    let request = QualificationRequest::from_json(&body);
    let (customer, request) = match (customer, request) {
        (Ok(customer), Ok(request)) => (customer, request),
        (customer, request) => {
            let mut errors = FieldErrors::default();
            if let Err(e) = customer {
                errors.push(e);
            }
            if let Err(e) = request {
                errors.extend(e);
            }
            return Err(ApiError::new(errors, correlation_id));
        }
    };

    let call = UpstreamCall::new(correlation_id);
    let status = state
        .partner_center
        .create_qualification(customer, &request, call)
        .await
        .map_err(|e| ApiError::upstream(e, correlation_id, call.request_id))?;
    tracing::info!(
        customer = %customer,
        qualification = request.qualification().as_str(),
        vetting_status = status.vetting_status.as_ref().map(|s| s.as_str()),
        "qualification requested"
    );

    Ok(HttpResponse::Accepted()
        .insert_header((LOCATION, format!("/v1/customers/{customer}/qualifications")))
        .json(QualificationAccepted {
            customer_id: customer.to_string(),
            status,
            correlation_id: correlation_id.to_string(),
            request_id: call.request_id.to_string(),
        }))
}

/// List a customer's qualifications and where their vetting stands.
#[utoipa::path(
    tag = "qualifications",
    params(("customerId" = uuid::Uuid, Path, description = "The customer's Microsoft tenant ID")),
    responses(
        (status = 200, description = "The customer's qualifications", body = CustomerQualifications),
        (status = 400, description = "customerId is not a GUID", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Partner Center does not know the customer", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Partner Center is throttling", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The gateway cannot obtain a Partner Center token", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/customers/{customerId}/qualifications")]
pub async fn list_qualifications(
    correlation_id: CorrelationId,
    caller: Caller,
    customer_id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let customer = CustomerId::parse(&customer_id)
        .map_err(FieldErrors::from)
        .with_correlation(correlation_id)?;

    let call = UpstreamCall::new(correlation_id);
    let qualifications = state
        .partner_center
        .list_qualifications(customer, call)
        .await
        .map_err(|e| ApiError::upstream(e, correlation_id, call.request_id))?;
    Ok(HttpResponse::Ok().json(CustomerQualifications {
        customer_id: customer.to_string(),
        qualifications,
    }))
}
