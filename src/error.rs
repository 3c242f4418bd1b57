//! The one place where anything that goes wrong becomes an HTTP answer: RFC 9457 problem+json.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::domain::{CorrelationId, FieldError, FieldErrors, RequestId};
use crate::idempotency::IdempotencyError;
use crate::partner_center::{TokenError, UpstreamError};
use crate::rate_limit::RateLimited;

pub const PROBLEM_JSON: &str = "application/problem+json";
const TYPE_PREFIX: &str = "urn:partner-gateway:problem:";
const REALM: &str = "partner-gateway";

/// Everything a caller can be refused for, grouped by boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiErrorKind {
    #[error(transparent)]
    Validation(#[from] FieldErrors),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error("no such resource")]
    NotFound,
    /// A resource of the API that does not exist or belongs to another app.
    #[error("no such {what}")]
    ResourceNotFound { what: &'static str },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A well-formed callback URL the gateway will not call.
    #[error("callback URL refused: {}", .0.message)]
    CallbackRefused(FieldError),
    #[error("this app already holds {limit} webhook subscriptions")]
    SubscriptionLimit { limit: u64 },
    /// A browser preflight from an origin, or asking for a method or header, not allowed.
    #[error("cross-origin request refused: {reason}")]
    CorsRefused { reason: String },
    #[error("method not allowed")]
    MethodNotAllowed {
        allowed: Vec<actix_web::http::Method>,
    },
}

/// An error with what a caller needs to report it: the correlation ID and, when Partner
/// Center was called, the request ID it was called with.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ApiError {
    kind: ApiErrorKind,
    correlation_id: CorrelationId,
    request_id: Option<RequestId>,
}

impl ApiError {
    pub fn new(kind: impl Into<ApiErrorKind>, correlation_id: CorrelationId) -> Self {
        Self {
            kind: kind.into(),
            correlation_id,
            request_id: None,
        }
    }

    pub fn upstream(
        error: UpstreamError,
        correlation_id: CorrelationId,
        request_id: RequestId,
    ) -> Self {
        Self {
            kind: error.into(),
            correlation_id,
            request_id: Some(request_id),
        }
    }
}

/// Attaches the request's correlation ID to any error that can become an [`ApiError`].
pub trait WithCorrelation<T> {
    fn with_correlation(self, correlation_id: CorrelationId) -> Result<T, ApiError>;
}

impl<T, E: Into<ApiErrorKind>> WithCorrelation<T> for Result<T, E> {
    fn with_correlation(self, correlation_id: CorrelationId) -> Result<T, ApiError> {
        self.map_err(|e| ApiError::new(e, correlation_id))
    }
}

/// RFC 9457 problem details, extended with what a caller of this gateway needs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "type": "urn:partner-gateway:problem:invalid-request",
    "title": "The request is invalid",
    "status": 400,
    "detail": "educationSegment: is required when qualification is Education: HigherEducation or K12",
    "field": "educationSegment",
    "errors": [{"field": "educationSegment", "message": "is required when qualification is Education: HigherEducation or K12"}],
    "correlationId": "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745"
}))]
pub struct Problem {
    /// Stable identifier of the kind of problem; branch on this, not on `title` or `detail`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The first field at fault, when the problem is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// Every field at fault, for validation problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
    #[schema(value_type = String, format = Uuid)]
    pub correlation_id: String,
    /// The `MS-RequestId` sent to Partner Center, when it was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>, format = Uuid)]
    pub request_id: Option<String>,
    /// Partner Center's own error code, when it refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub upstream_code: Option<String>,
    /// Partner Center's own description, when it refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub upstream_description: Option<String>,
}

struct Mapping {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
}

impl ApiError {
    fn mapping(&self) -> Mapping {
        use ApiErrorKind as K;
        use UpstreamError as U;
        let m = |status, slug, title, detail: String| Mapping {
            status,
            slug,
            title,
            detail,
        };
        match &self.kind {
            K::Validation(errors) => m(
                StatusCode::BAD_REQUEST,
                "invalid-request",
                "The request is invalid",
                errors.to_string(),
            ),
            K::PayloadTooLarge { limit } => m(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "The request body is too large",
                format!("The request body must not exceed {limit} bytes."),
            ),
            K::UnsupportedMediaType => m(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The request body must be JSON",
                "Send the body with Content-Type: application/json.".into(),
            ),
            K::Auth(AuthError::MissingToken) => m(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                "Send an access token as Authorization: Bearer <token>.".into(),
            ),
            K::Auth(AuthError::InvalidRequest(reason)) => m(
                StatusCode::BAD_REQUEST,
                "invalid-auth-request",
                "The request's credentials are malformed",
                format!("The request's credentials are malformed: {reason}."),
            ),
            K::Auth(AuthError::InvalidToken(reason)) => m(
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "The access token was rejected",
                format!("The access token was rejected: {reason}."),
            ),
            K::Auth(AuthError::InsufficientScope { needed }) => m(
                StatusCode::FORBIDDEN,
                "insufficient-scope",
                "The caller may not do this",
                format!(
                    "This operation needs one of these roles or scopes: {}.",
                    needed.join(", ")
                ),
            ),
            K::Auth(AuthError::AppNotAllowed) => m(
                StatusCode::FORBIDDEN,
                "app-not-allowed",
                "The calling application may not use this gateway",
                "The token's client application (azp/appid) is not on the gateway's allow-list.".into(),
            ),
            K::Auth(AuthError::KeysUnavailable) => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "caller-keys-unavailable",
                "Callers cannot be authenticated right now",
                "The gateway does not hold its identity provider's signing keys yet; try again shortly.".into(),
            ),
            K::Upstream(U::Rejected { status, .. }) if status.as_u16() == 401 => m(
                StatusCode::BAD_GATEWAY,
                "partner-credentials-rejected",
                "Partner Center refused the gateway's credentials",
                "Partner Center answered 401 to the gateway's own token; this is not about the caller's token.".into(),
            ),
            K::Upstream(U::Rejected {
                status,
                description,
                ..
            }) => m(
                // The gateway checked the request's form, so Partner Center's 400 is a refusal
                // of a well-formed request: 422, kept apart from the gateway's own 400s.
                if status.as_u16() == 400 {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
                },
                "upstream-rejected",
                "Partner Center refused the request",
                description
                    .clone()
                    .unwrap_or_else(|| format!("Partner Center answered {status}.")),
            ),
            K::Upstream(U::Throttled { retry_after_secs }) => m(
                StatusCode::TOO_MANY_REQUESTS,
                "upstream-throttled",
                "Partner Center is throttling requests",
                match retry_after_secs {
                    Some(secs) => format!("Partner Center asks to wait {secs} seconds before trying again."),
                    None => "Partner Center asks to slow down; try again later.".into(),
                },
            ),
            K::Upstream(U::ServerError {
                status,
                retry_after_secs: Some(secs),
                ..
            }) if status.as_u16() == 503 => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-unavailable",
                "Partner Center is unavailable",
                format!("Partner Center is unavailable and asks to wait {secs} seconds before trying again."),
            ),
            K::Upstream(U::ServerError { status, .. }) => m(
                StatusCode::BAD_GATEWAY,
                "upstream-error",
                "Partner Center failed",
                format!("Partner Center answered {status}."),
            ),
            K::Upstream(U::InvalidResponse { .. }) => m(
                StatusCode::BAD_GATEWAY,
                "upstream-invalid-response",
                "Partner Center sent an answer the gateway cannot read",
                "Partner Center's answer was not the JSON the gateway expects.".into(),
            ),
            K::Upstream(U::Unreachable { .. }) => m(
                StatusCode::BAD_GATEWAY,
                "upstream-unreachable",
                "Partner Center could not be reached",
                "The gateway could not connect to Partner Center.".into(),
            ),
            K::Upstream(U::AnswerLost { .. }) => m(
                StatusCode::BAD_GATEWAY,
                "upstream-unreachable",
                "Partner Center could not be reached",
                "The connection to Partner Center broke while its answer was read, on every attempt; the request may have been processed (retrying it is safe: Partner Center de-duplicates by MS-RequestId).".into(),
            ),
            K::Upstream(U::Timeout | U::DeadlineExceeded) => m(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Partner Center did not answer in time",
                "Partner Center did not answer within the gateway's timeout.".into(),
            ),
            K::Upstream(U::CircuitOpen { retry_after_secs }) => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-circuit-open",
                "Partner Center is failing; the gateway is not calling it for now",
                format!("Partner Center failed repeatedly; the gateway will try it again in {retry_after_secs} seconds."),
            ),
            K::Upstream(U::Busy) => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream-busy",
                "The gateway has too many Partner Center calls in flight",
                "Every Partner Center slot stayed busy; try again shortly.".into(),
            ),
            K::Upstream(U::Token(error)) => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "partner-token-unavailable",
                "The gateway cannot sign in to Partner Center",
                match error.operator_action() {
                    Some(action) => format!("The gateway could not obtain a Partner Center access token: Entra refused its credentials, and an operator must act: {action}."),
                    None => "The gateway could not obtain a Partner Center access token; operators have been told why in the logs.".into(),
                },
            ),
            K::Idempotency(IdempotencyError::InProgress) => m(
                StatusCode::CONFLICT,
                "idempotency-request-in-progress",
                "A request with this Idempotency-Key is still running",
                "The first request with this Idempotency-Key has not finished; retry after it has, to get its answer.".into(),
            ),
            K::Idempotency(IdempotencyError::KeyReused) => m(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key belongs to a different request",
                "This Idempotency-Key was used with a different customer or body; use a new key for a new request.".into(),
            ),
            K::RateLimited(limited) => m(
                StatusCode::TOO_MANY_REQUESTS,
                "caller-rate-limited",
                "Too many requests from this caller",
                format!(
                    "This caller has used its share of the gateway; try again in {} seconds.",
                    limited.retry_after_secs
                ),
            ),
            K::CorsRefused { reason } => m(
                StatusCode::FORBIDDEN,
                "cors-refused",
                "This cross-origin request is not allowed",
                format!("{reason}; the gateway allows only the origins, methods and headers it is configured for."),
            ),
            K::NotFound => m(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such resource",
                "No resource is served at this path.".into(),
            ),
            K::ResourceNotFound { what } => m(
                StatusCode::NOT_FOUND,
                "not-found",
                "No such resource",
                format!("No {what} with this ID is visible to the calling app."),
            ),
            K::Store(_) => m(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "The gateway's store is unavailable",
                "The gateway could not record the request, so nothing was sent to Partner Center; try again shortly.".into(),
            ),
            K::CallbackRefused(refusal) => m(
                StatusCode::UNPROCESSABLE_ENTITY,
                "callback-url-refused",
                "The gateway will not call this URL",
                format!("url: {}", refusal.message),
            ),
            K::SubscriptionLimit { limit } => m(
                StatusCode::CONFLICT,
                "subscription-limit",
                "Too many webhook subscriptions",
                format!("This app already holds {limit} webhook subscriptions; delete one first."),
            ),
            K::MethodNotAllowed { allowed } => m(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "This path does not take this method",
                format!("This path answers to {}.", allow_header(allowed)),
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let mapping = self.mapping();
        let (errors, upstream_code, upstream_description) = match &self.kind {
            ApiErrorKind::Validation(errors) => (Some(errors.as_slice().to_vec()), None, None),
            ApiErrorKind::Upstream(UpstreamError::Rejected {
                code, description, ..
            }) => (None, code.clone(), description.clone()),
            ApiErrorKind::Upstream(UpstreamError::ServerError { description, .. }) => {
                (None, None, description.clone())
            }
            _ => (None, None, None),
        };
        Problem {
            problem_type: format!("{TYPE_PREFIX}{}", mapping.slug),
            title: mapping.title.to_owned(),
            status: mapping.status.as_u16(),
            detail: mapping.detail,
            field: self.field_at_fault(errors.as_deref()),
            errors,
            correlation_id: self.correlation_id.to_string(),
            request_id: self.request_id.map(|r| r.to_string()),
            upstream_code,
            upstream_description,
        }
    }

    pub fn kind(&self) -> &ApiErrorKind {
        &self.kind
    }

    /// The problem type's slug (`invalid-token`), for the access log line.
    pub fn slug(&self) -> &'static str {
        self.mapping().slug
    }

    /// Partner Center's final word on the request (a 4xx verdict such as 400 or 409), as
    /// opposed to a failure worth retrying.
    pub fn is_upstream_verdict(&self) -> bool {
        matches!(&self.kind, ApiErrorKind::Upstream(error) if error.is_verdict())
    }

    /// The status and problem body, for an answer kept to be replayed.
    pub fn status_and_body(&self) -> (StatusCode, Vec<u8>) {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, serde_json::to_vec(&problem).unwrap_or_default())
    }

    /// The one thing the caller has to fix: a body property, a path parameter or a header.
    fn field_at_fault(&self, errors: Option<&[FieldError]>) -> Option<String> {
        let header = |name: &str| Some(name.to_owned());
        match &self.kind {
            ApiErrorKind::Validation(_) => errors.and_then(|e| e.first()).map(|e| e.field.clone()),
            ApiErrorKind::CallbackRefused(refusal) => Some(refusal.field.clone()),
            ApiErrorKind::Auth(AuthError::KeysUnavailable) => None,
            ApiErrorKind::Auth(_) => header("Authorization"),
            ApiErrorKind::Idempotency(_) => header(crate::domain::IDEMPOTENCY_KEY_HEADER),
            ApiErrorKind::UnsupportedMediaType => header("Content-Type"),
            ApiErrorKind::PayloadTooLarge { .. } => header("body"),
            ApiErrorKind::CorsRefused { .. } => header("Origin"),
            _ => None,
        }
    }

    /// When the caller may usefully try again, if the gateway knows.
    fn retry_after_secs(&self) -> Option<u64> {
        match &self.kind {
            ApiErrorKind::Upstream(
                UpstreamError::Throttled { retry_after_secs }
                | UpstreamError::ServerError {
                    retry_after_secs, ..
                },
            ) => *retry_after_secs,
            ApiErrorKind::RateLimited(limited) => Some(limited.retry_after_secs),
            ApiErrorKind::Upstream(UpstreamError::CircuitOpen { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            ApiErrorKind::Upstream(UpstreamError::Busy) => Some(1),
            ApiErrorKind::Store(_) => Some(1),
            ApiErrorKind::Upstream(UpstreamError::Token(error)) => match error.as_ref() {
                TokenError::BackingOff {
                    retry_after_secs, ..
                } => Some(*retry_after_secs),
                _ => None,
            },
            _ => None,
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        match &self.kind {
            ApiErrorKind::Auth(AuthError::MissingToken) => {
                Some(format!("Bearer realm=\"{REALM}\""))
            }
            ApiErrorKind::Auth(AuthError::InvalidRequest(reason)) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_request\", error_description=\"{reason}\""
            )),
            ApiErrorKind::Auth(AuthError::InvalidToken(reason)) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\""
            )),
            ApiErrorKind::Auth(AuthError::InsufficientScope { needed }) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                needed.join(" ")
            )),
            ApiErrorKind::Auth(AuthError::AppNotAllowed) => Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"client application not allowed\""
            )),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.mapping().status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        response.content_type(PROBLEM_JSON);
        if let Some(challenge) = self.www_authenticate() {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiErrorKind::MethodNotAllowed { allowed } = &self.kind {
            response.insert_header((header::ALLOW, allow_header(allowed)));
        }
        if let Some(secs) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        response.json(problem)
    }
}

pub fn allow_header(allowed: &[actix_web::http::Method]) -> String {
    allowed
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
