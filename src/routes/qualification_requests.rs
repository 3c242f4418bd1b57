use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, Permission};
use crate::domain::{CorrelationId, CustomerId, FieldError, FieldErrors};
use crate::error::{ApiError, ApiErrorKind, Problem, WithCorrelation};
use crate::state::AppState;
use crate::store::{ListQuery, StoredRequest, from_ms, to_ms};

use super::body::query_params;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this customer's requests.
    #[param(value_type = Option<uuid::Uuid>)]
    customer_id: Option<String>,
    /// Only requests in this status: Submitted, InReview, Approved, Denied, Accepted,
    /// Refused, Failed or WatchExpired.
    #[param(example = "InReview")]
    status: Option<String>,
    /// Only requests made at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-01T00:00:00Z")]
    since: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// `nextCursor` of the page before.
    #[param(
        pattern = r"^[0-9]{1,16}_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    )]
    cursor: Option<String>,
}

/// One status a request went through.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    #[schema(example = "InReview")]
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    at: OffsetDateTime,
}

/// Who made a request, as their token said.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestedBy {
    issuer: String,
    /// `oid`, else `sub`.
    subject: String,
    /// The owning application (`issuer#azp`).
    app: String,
}

/// The gateway's record of a qualification request, kept whatever Partner Center answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "5b0c7a43-5d0f-4b8e-9d55-0f3f2d8b1c6e",
    "customerId": "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745",
    "qualification": "Education",
    "educationSegment": "K12",
    "website": "contoso.edu",
    "status": "Approved",
    "httpStatus": 201,
    "msRequestId": "3b6a4c1e-0d2f-4a51-9c8e-2f1d7b6a5c40",
    "correlationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "requestedBy": {"issuer": "https://login.microsoftonline.com/<tenant-id>/v2.0", "subject": "9f3c…", "app": "https://login.microsoftonline.com/<tenant-id>/v2.0#<client-id>"},
    "createdAt": "2026-11-24T09:30:00Z",
    "updatedAt": "2026-11-26T15:02:10Z",
    "timeline": [
        {"status": "Submitted", "at": "2026-11-24T09:30:00Z"},
        {"status": "InReview", "at": "2026-11-24T09:30:01Z"},
        {"status": "Approved", "at": "2026-11-26T15:02:10Z"}
    ]
}))]
pub struct QualificationRequestRecord {
    #[schema(value_type = String, format = Uuid)]
    id: String,
    #[schema(value_type = String, format = Uuid)]
    customer_id: String,
    qualification: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    education_segment: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    website: Option<String>,
    /// The GCC validation code, masked to its last two characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "****56")]
    validation_code: Option<String>,
    /// Submitted (sent; Partner Center's answer not known yet), InReview, Approved, Denied,
    /// Accepted (set without vetting), Refused (Partner Center's 4xx), Failed (no verdict),
    /// WatchExpired, or a vetting status Partner Center adds later.
    #[schema(example = "InReview")]
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    status_reason: Option<String>,
    /// Partner Center's HTTP status for the POST, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    http_status: Option<i64>,
    #[schema(value_type = String, format = Uuid)]
    ms_request_id: String,
    #[schema(value_type = String, format = Uuid)]
    correlation_id: String,
    requested_by: RequestedBy,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: OffsetDateTime,
    /// Every status, oldest first (on the single-request read only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    timeline: Option<Vec<StatusChange>>,
}

impl QualificationRequestRecord {
    fn new(request: StoredRequest, with_timeline: bool) -> Self {
        Self {
            timeline: with_timeline.then(|| {
                request
                    .timeline
                    .iter()
                    .map(|event| StatusChange {
                        status: event.status.clone(),
                        reason: event.reason.clone(),
                        at: from_ms(event.at_ms),
                    })
                    .collect()
            }),
            id: request.id,
            customer_id: request.customer_id,
            qualification: request.qualification,
            education_segment: request.education_segment,
            website: request.website,
            validation_code: request.validation_code_masked,
            status: request.status.as_str().to_owned(),
            status_reason: request.status_reason,
            http_status: request.http_status,
            ms_request_id: request.ms_request_id,
            correlation_id: request.correlation_id,
            requested_by: RequestedBy {
                issuer: request.caller_issuer,
                subject: request.caller_subject,
                app: request.caller_app,
            },
            created_at: from_ms(request.created_ms),
            updated_at: from_ms(request.updated_ms),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualificationRequestPage {
    /// Newest first.
    items: Vec<QualificationRequestRecord>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next_cursor: Option<String>,
}

/// Qualification requests made through the gateway, newest first, a page at a time.
///
/// A caller sees its own application's requests; a holder of the auditor role
/// (`caller_auth.audit`) sees everyone's.
#[utoipa::path(
    tag = "qualification requests",
    params(ListParams),
    responses(
        (status = 200, description = "A page of requests", body = QualificationRequestPage),
        (status = 400, description = "A filter is malformed (each in `errors`), or malformed credentials", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (`store-unavailable`), or the callers' signing keys cannot be fetched", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/qualification-requests")]
pub async fn list_qualification_requests(
    correlation_id: CorrelationId,
    caller: Caller,
    http_request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let mut query = query_params::<ListParams>(&http_request)
        .and_then(|params| parse_list_params(&params))
        .with_correlation(correlation_id)?;
    query.caller_app = visible_app(&caller);
    let page = state
        .store
        .requests(&query)
        .await
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Ok().json(QualificationRequestPage {
        next_cursor: page.next.map(|(ms, id)| format!("{ms}_{id}")),
        items: page
            .items
            .into_iter()
            .map(|r| QualificationRequestRecord::new(r, false))
            .collect(),
    }))
}

/// One qualification request, with the timeline of its statuses.
#[utoipa::path(
    tag = "qualification requests",
    params(("id" = uuid::Uuid, Path, description = "The `id` the POST answered")),
    responses(
        (status = 200, description = "The request", body = QualificationRequestRecord),
        (status = 400, description = "id is not a GUID, or malformed credentials", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid caller token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller lacks the read role or its app is not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such request, or another app's (to a caller without the auditor role)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (`store-unavailable`), or the callers' signing keys cannot be fetched", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/v1/qualification-requests/{id}")]
pub async fn get_qualification_request(
    correlation_id: CorrelationId,
    caller: Caller,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller
        .require(Permission::ReadQualifications)
        .with_correlation(correlation_id)?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| FieldErrors::from(FieldError::new("id", "must be a GUID")))
        .with_correlation(correlation_id)?;
    let request = state
        .store
        .request(&id.to_string(), visible_app(&caller).as_deref())
        .await
        .with_correlation(correlation_id)?
        .ok_or(ApiErrorKind::ResourceNotFound {
            what: "qualification request",
        })
        .with_correlation(correlation_id)?;
    Ok(HttpResponse::Ok().json(QualificationRequestRecord::new(request, true)))
}

/// `None` (all apps) for auditors; the caller's own app otherwise.
fn visible_app(caller: &Caller) -> Option<String> {
    (!caller.may(Permission::AuditQualifications)).then(|| caller.owning_app())
}

fn parse_list_params(params: &ListParams) -> Result<ListQuery, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut query = ListQuery {
        limit: DEFAULT_PAGE,
        ..ListQuery::default()
    };
    if let Some(customer) = &params.customer_id {
        match CustomerId::parse(customer) {
            Ok(customer) => query.customer_id = Some(customer.to_string()),
            Err(e) => errors.push(FieldError::new("customerId", e.message)),
        }
    }
    if let Some(status) = &params.status {
        query.status = Some(status.clone());
    }
    if let Some(since) = &params.since {
        match OffsetDateTime::parse(since, &Rfc3339) {
            Ok(since) => query.since_ms = Some(to_ms(since)),
            Err(_) => errors.push(FieldError::new(
                "since",
                "must be an RFC 3339 time such as 2026-11-01T00:00:00Z",
            )),
        }
    }
    if let Some(limit) = &params.limit {
        match limit.parse::<u32>() {
            Ok(limit @ 1..=MAX_PAGE) => query.limit = limit,
            _ => errors.push(FieldError::new(
                "limit",
                format!("must be a whole number from 1 to {MAX_PAGE}"),
            )),
        }
    }
    if let Some(cursor) = &params.cursor {
        // Where the page before ended: its last request's creation time and ID.
        let decoded = cursor.split_once('_').and_then(|(ms, id)| {
            let id = uuid::Uuid::try_parse(id).ok()?;
            Some((ms.parse::<i64>().ok()?, id.hyphenated().to_string()))
        });
        match decoded {
            Some(before) => query.before = Some(before),
            None => errors.push(FieldError::new(
                "cursor",
                "is not a nextCursor this gateway gave",
            )),
        }
    }
    errors.into_result().map(|()| query)
}
