use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;

use crate::domain::{FieldError, FieldErrors};
use crate::error::ApiErrorKind;

/// Reads a JSON request body of at most `limit` bytes, refusing other media types.
pub async fn read_json_body(
    request: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, ApiErrorKind> {
    let is_json = matches!(
        request.mime_type(),
        Ok(Some(mime)) if mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON)
    );
    if !is_json {
        return Err(ApiErrorKind::UnsupportedMediaType);
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiErrorKind::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| {
            ApiErrorKind::Validation(
                crate::domain::FieldError::new("body", "could not be read completely").into(),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiErrorKind::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The query string as `T`, or a problem naming it (not actix's plain-text 400).
pub fn query_params<T: serde::de::DeserializeOwned>(
    request: &HttpRequest,
) -> Result<T, FieldErrors> {
    web::Query::<T>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| FieldError::new("query", format!("cannot be read: {e}")).into())
}
