use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use super::{AuthError, Caller, CallerVerifier};
use crate::correlation::correlation_id_of;
use crate::error::ApiError;
use crate::rate_limit::CallerRateLimiter;

/// Authenticates the caller and applies its rate limit before the handler runs; the handler
/// then asks for a permission.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let correlation_id = correlation_id_of(request);
        let verifier = request.app_data::<web::Data<CallerVerifier>>().cloned();
        let limiter = request.app_data::<web::Data<CallerRateLimiter>>().cloned();
        let token = bearer_token(request);
        let request = request.clone();
        Box::pin(async move {
            let verifier = verifier
                .ok_or_else(|| ApiError::new(AuthError::KeysUnavailable, correlation_id))?;
            let caller = match token {
                Ok(token) => verifier.verify(&token).await,
                Err(e) => Err(e),
            }
            // Reported once, on the request's access line (and counted), not logged here.
            .map_err(|e| ApiError::new(e, correlation_id))?;
            // One call to the subscriber for the four (an absent one stays empty).
            let span = tracing::Span::current();
            tracing::record_all!(
                span,
                caller = &*caller.subject,
                caller_issuer = &*caller.issuer,
                caller_app = caller.app_id.as_deref(),
                caller_name = caller.name.as_deref()
            );
            // For the audit record, written after the handler.
            request.extensions_mut().insert(caller.clone());
            if let Some(limiter) = limiter {
                limiter
                    .admit(&caller)
                    .map_err(|limited| ApiError::new(limited, correlation_id))?;
            }
            Ok(caller)
        })
    }
}

/// Exactly one `Authorization: Bearer <token>` header; the scheme is case-insensitive (RFC 7235).
/// Per RFC 6750 §3.1, another scheme counts as no token at all, and two headers are an
/// invalid request. (A token in the URL is refused earlier, by the correlation middleware.)
fn bearer_token(request: &HttpRequest) -> Result<String, AuthError> {
    let mut values = request.headers().get_all(AUTHORIZATION);
    let Some(value) = values.next() else {
        return Err(AuthError::MissingToken);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidRequest("malformed Authorization header"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::InvalidRequest("empty bearer token"));
    }
    Ok(token.to_owned())
}

/// RFC 6750 §2.3 `?access_token=`, in any spelling (`Access_Token`, `access%5Ftoken`):
/// compared decoded and case-insensitively. (Query values are never logged either way.)
pub fn token_in_url(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(name, _)| name.trim().eq_ignore_ascii_case("access_token"))
}

/// Refuses a token sent in the URL on every path, health and spec included: it has been
/// exposed to proxies and browser history, and must not be honoured.
pub async fn refuse_token_in_url(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if token_in_url(request.query_string()) {
        let refusal = ApiError::new(
            AuthError::InvalidRequest("send the token in the Authorization header, not the URL"),
            correlation_id_of(request.request()),
        );
        // As an error response, so the access line, the audit and metrics see what it was.
        return Ok(request.error_response(refusal));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}
