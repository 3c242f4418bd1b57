use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::body::read_json_body;
use crate::audit::AuditDetails;
use crate::auth::{Caller, Permission};
use crate::domain::{
    CorrelationId, CustomerId, FieldErrors, IDEMPOTENCY_KEY_HEADER, IdempotencyKey,
    QualificationRequest, QualificationStatus, RequestId, TraceContext,
};
use crate::error::{ApiError, PROBLEM_JSON, Problem, WithCorrelation};
use crate::idempotency::{Claim, IdempotencyError, IdempotentRequest, StoredResponse};
use crate::metrics::Metrics;
use crate::partner_center::UpstreamCall;
use crate::state::AppState;
use crate::store::{NewRequest, RequestOutcome, StoreError};
use crate::watcher::Watcher;
use crate::webhooks::{EventType, event_payload};

/// The answer to a qualification request: vetting has started (or finished) upstream.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "5b0c7a43-5d0f-4b8e-9d55-0f3f2d8b1c6e",
    "customerId": "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745",
    "qualification": "Education",
    "vettingStatus": "InReview",
    "vettingCreateDate": "2026-11-24T09:30:00Z",
    "correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "requestId": "3b6a4c1e-0d2f-4a51-9c8e-2f1d7b6a5c40"
}))]
pub struct QualificationAccepted {
    /// The gateway's record of this request: `GET /v1/qualification-requests/{id}`.
    #[schema(value_type = String, format = Uuid)]
    id: String,
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
#[schema(example = json!({
    "customerId": "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745",
    "qualifications": [
        {"qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved", "vettingCreateDate": "2026-10-02T14:05:11Z"},
        {"qualification": "Education", "vettingStatus": "Denied", "vettingReason": "Not an Education Customer", "vettingCreateDate": "2026-11-20T08:12:40Z"}
    ]
}))]
pub struct CustomerQualifications {
    #[schema(value_type = String, format = Uuid)]
    customer_id: String,
    qualifications: Vec<QualificationStatus>,
}

/// Ask Partner Center to vet a customer for a qualification.
///
/// Vetting is asynchronous: the gateway follows it and tells subscribed webhooks; its record,
/// with the status timeline, is at the `Location` answered.
#[utoipa::path(
    tag = "qualifications",
    params(
        ("customerId" = uuid::Uuid, Path, description = "The customer's Microsoft tenant ID"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = r#"^("[!#-~]{1,255}"|[!#-~]{1,255})$"#,
            description = "Makes retries safe: the first answer for this caller and key (the 202, or Partner Center's refusal) is replayed for 24 h, byte for byte, with `Idempotent-Replayed: true`: its body's correlationId and requestId are the first request's, `X-Correlation-ID` is this one's. A retry while the first runs gets 409, the same key with another request 422. 1-255 visible ASCII characters other than `\"`, bare or quoted, e.g. a UUID. (No example value on purpose: Swagger UI would send it with every try.)"),
    ),
    request_body(content = crate::domain::QualificationRequestBody, content_type = "application/json",
        examples(
            ("Education" = (summary = "Education (K12 or HigherEducation)", value = json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"}))),
            ("GovernmentCommunityCloud" = (summary = "GCC, with a code from GET /v1/validation-codes", value = json!({"qualification": "GovernmentCommunityCloud", "validationCode": "123456"}))),
            ("StateOwnedEntity" = (summary = "State-owned entity", value = json!({"qualification": "StateOwnedEntity"}))),
        )),
    responses(
        (status = 202, description = "Partner Center accepted the request; vetting follows", body = QualificationAccepted,
            headers(("Location" = String, description = "The gateway's record of the request, with its status timeline: /v1/qualification-requests/{id}"))),
        (status = 400, description = "Invalid request (every faulty field in `errors`) or malformed credentials; nothing was sent to Partner Center", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the write role or its app is not allowed, or Partner Center refused the partner (e.g. missing GDAP role for GCC)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Partner Center does not know the customer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The customer already has, or is being vetted for, this qualification; or a request with the same Idempotency-Key is still running", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Partner Center refused the well-formed request (e.g. an unknown validation code), or the Idempotency-Key was used for a different request", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This caller is over its rate limit (`caller-rate-limited`) or Partner Center is throttling (`upstream-throttled`); wait Retry-After seconds", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed, refused the gateway's credentials, or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partner Center cannot be called now: no Partner Center token, the circuit is open, too many calls in flight, or Partner Center is unavailable; or the callers' signing keys cannot be fetched; or the gateway's store cannot record the request (`store-unavailable`: nothing was sent). `type` says which", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time (one attempt's timeout, or the whole call's deadline)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/v1/customers/{customerId}/qualifications")]
pub async fn create_qualification(
    http_request: HttpRequest,
    correlation_id: CorrelationId,
    trace: TraceContext,
    caller: Caller,
    customer_id: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut audit = AuditDetails::default();
    let answer = create(
        &http_request,
        correlation_id,
        trace,
        &caller,
        &customer_id,
        payload,
        &state,
        &mut audit,
    )
    .await;
    http_request.extensions_mut().insert(audit);
    answer
}

#[allow(clippy::too_many_arguments)]
async fn create(
    http_request: &HttpRequest,
    correlation_id: CorrelationId,
    trace: TraceContext,
    caller: &Caller,
    customer_id: &str,
    payload: web::Payload,
    state: &AppState,
    audit: &mut AuditDetails,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::WriteQualifications)
        .with_correlation(correlation_id)?;
    let body = read_json_body(http_request, payload, state.max_body_bytes)
        .await
        .with_correlation(correlation_id)?;

    // Every fault at once: path, body and header.
    let customer = CustomerId::parse(customer_id);
    let request = QualificationRequest::from_json(&body);
    let idempotency_key = http_request
        .headers()
        .get(IDEMPOTENCY_KEY_HEADER)
        .map(|value| {
            value
                .to_str()
                .map_err(|_| IdempotencyKey::parse("").unwrap_err())
                .and_then(IdempotencyKey::parse)
        });
    if let Ok(customer) = &customer {
        audit.customer_id = Some(customer.to_string());
    }
    if let Ok(request) = &request {
        audit.qualification = Some(request.qualification().as_str());
        if let QualificationRequest::GovernmentCommunityCloud { validation_code } = request {
            audit.validation_code = Some(validation_code.masked());
        }
    }
    let (customer, request, idempotency_key) =
        match (customer, request, idempotency_key.transpose()) {
            (Ok(customer), Ok(request), Ok(key)) => (customer, request, key),
            (customer, request, key) => {
                let mut errors = FieldErrors::default();
                if let Err(e) = customer {
                    errors.push(e);
                }
                if let Err(e) = request {
                    errors.extend(e);
                }
                if let Err(e) = key {
                    errors.push(e);
                }
                return Err(ApiError::new(errors, correlation_id));
            }
        };

    let Some(key) = idempotency_key else {
        let call = UpstreamCall::new(correlation_id, trace);
        return Ok(
            request_qualification(state, caller, customer, &request, call, audit)
                .await?
                .to_response(false),
        );
    };
    let operation = format!("POST /v1/customers/{customer}/qualifications");
    let idempotent = IdempotentRequest::new(
        caller,
        &key,
        &operation,
        request.canonical_form().as_bytes(),
    );
    let claim = state
        .idempotency
        .claim(&idempotent)
        .await
        .map_err(|e| store_failure(state, e, correlation_id))?;
    Metrics::result(
        &state.metrics.idempotency,
        match &claim {
            Claim::Replay(_) => "replay",
            Claim::Refused(IdempotencyError::InProgress) => "in_progress",
            Claim::Refused(IdempotencyError::KeyReused) => "key_reused",
            Claim::Fresh(_) => "fresh",
        },
    );
    match claim {
        Claim::Replay(stored) => Ok(stored.to_response(true)),
        Claim::Refused(reason) => Err(ApiError::new(reason, correlation_id)),
        Claim::Fresh(in_flight) => {
            let call = UpstreamCall {
                correlation_id,
                request_id: RequestId::derived_from(&idempotent.request_id_seed()),
                trace,
                single_attempt: false,
            };
            match request_qualification(state, caller, customer, &request, call, audit).await {
                Ok(answer) => {
                    in_flight.complete(&answer).await;
                    Ok(answer.to_response(false))
                }
                // Partner Center's verdict is the answer for this key, as a 202 would be.
                Err(error) if error.is_upstream_verdict() => {
                    let (status, body) = error.status_and_body();
                    in_flight
                        .complete(&StoredResponse {
                            status,
                            content_type: PROBLEM_JSON,
                            location: None,
                            body: body.into(),
                        })
                        .await;
                    Err(error)
                }
                // Anything else drops `in_flight`, freeing the key: the caller may retry,
                // and the retry carries the same MS-RequestId.
                Err(error) => Err(error),
            }
        }
    }
}

/// The call to Partner Center and the 202 it becomes, kept whole so it can be replayed;
/// recorded before it is sent (a store that cannot record it stops it there) and after.
async fn request_qualification(
    state: &AppState,
    caller: &Caller,
    customer: CustomerId,
    request: &QualificationRequest,
    call: UpstreamCall,
    audit: &mut AuditDetails,
) -> Result<StoredResponse, ApiError> {
    audit.request_id = Some(call.request_id.to_string());
    let (correlation_id, request_id) = (call.correlation_id, call.request_id);
    let record = NewRequest::new(caller, customer, request, request_id, correlation_id);
    state
        .store
        .record_submitted(&record, Watcher::first_poll_ms(&state.watch))
        .await
        .map_err(|e| store_failure(state, e, correlation_id))?;
    let answer = state
        .partner_center
        .create_qualification(customer, request, call)
        .await;
    let outcome = match &answer {
        Ok((status, upstream_status)) => RequestOutcome::accepted(status, upstream_status.as_u16()),
        Err(error) => RequestOutcome::failed(error),
    };
    let notification = EventType::for_status(&outcome.status).map(|event| {
        let stored = record.as_stored();
        (
            event,
            event_payload(event, &stored, &outcome.status, outcome.reason.as_deref()),
        )
    });
    if let Err(error) = state
        .store
        .record_outcome(
            record.id,
            &outcome,
            notification
                .as_ref()
                .map(|(event, payload)| (event.as_str(), payload.as_str())),
        )
        .await
    {
        // Partner Center has answered: that answer goes to the caller. The request stays
        // Submitted, and watched, so the watch records the outcome (and notifies) later.
        state.metrics.store_failures.inc();
        tracing::error!(%error, request = %record.id, "cannot record Partner Center's answer; the vetting watch will");
    }
    let (status, upstream_status) = answer.map_err(|e| {
        audit.upstream_status = e.upstream_status();
        ApiError::upstream(e, correlation_id, request_id)
    })?;
    audit.upstream_status = Some(upstream_status.as_u16());
    // The audit record and the access line say the rest.
    tracing::debug!(
        customer = %customer,
        qualification = request.qualification().as_str(),
        vetting_status = status.vetting_status.as_ref().map(|s| s.as_str()),
        "qualification requested"
    );
    let accepted = QualificationAccepted {
        id: record.id.to_string(),
        customer_id: customer.to_string(),
        status,
        correlation_id: correlation_id.to_string(),
        request_id: request_id.to_string(),
    };
    Ok(StoredResponse {
        status: StatusCode::ACCEPTED,
        content_type: "application/json",
        location: Some(format!("/v1/qualification-requests/{}", record.id)),
        body: serde_json::to_vec(&accepted)
            .expect("the answer serializes")
            .into(),
    })
}

fn store_failure(state: &AppState, error: StoreError, correlation_id: CorrelationId) -> ApiError {
    state.metrics.store_failures.inc();
    tracing::error!(%error, "the store cannot record the request; nothing sent to Partner Center");
    ApiError::new(error, correlation_id)
}

/// List a customer's qualifications and where their vetting stands.
#[utoipa::path(
    tag = "qualifications",
    params(("customerId" = uuid::Uuid, Path, description = "The customer's Microsoft tenant ID")),
    responses(
        (status = 200, description = "The customer's qualifications", body = CustomerQualifications),
        (status = 400, description = "customerId is not a GUID, or malformed credentials (two Authorization headers, a token in the URL)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed, or Partner Center refused the partner", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Partner Center does not know the customer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Partner Center refused the well-formed request (its code and description in upstreamCode/upstreamDescription)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This caller is over its rate limit (`caller-rate-limited`) or Partner Center is throttling (`upstream-throttled`); wait Retry-After seconds", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Partner Center failed, refused the gateway's credentials, or answered nonsense", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Partner Center cannot be called now: no Partner Center token, the circuit is open, too many calls in flight, or Partner Center is unavailable; or the callers' signing keys cannot be fetched. `type` says which", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "Partner Center did not answer in time (one attempt's timeout, or the whole call's deadline)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/customers/{customerId}/qualifications")]
pub async fn list_qualifications(
    correlation_id: CorrelationId,
    trace: TraceContext,
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

    let call = UpstreamCall::new(correlation_id, trace);
    let request_id = call.request_id;
    let qualifications = state
        .partner_center
        .list_qualifications(customer, call)
        .await
        .map_err(|e| ApiError::upstream(e, correlation_id, request_id))?;
    Ok(HttpResponse::Ok().json(CustomerQualifications {
        customer_id: customer.to_string(),
        qualifications,
    }))
}
