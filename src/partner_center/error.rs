use std::sync::Arc;

use reqwest::StatusCode;

use super::TokenError;

/// What went wrong talking to Partner Center, before it is turned into an HTTP answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("Partner Center refused the request with {status} (code {code:?})")]
    Rejected {
        status: StatusCode,
        code: Option<String>,
        description: Option<String>,
    },
    #[error("Partner Center is throttling (retry after {retry_after_secs:?} s)")]
    Throttled { retry_after_secs: Option<u64> },
    #[error("Partner Center failed with {status}")]
    ServerError { status: StatusCode },
    #[error("Partner Center's answer could not be read: {reason}")]
    InvalidResponse { reason: String },
    #[error("Partner Center could not be reached: {reason}")]
    Unreachable { reason: String },
    #[error("Partner Center did not answer in time")]
    Timeout,
    #[error("no Partner Center token: {0}")]
    Token(Arc<TokenError>),
}

impl From<reqwest::Error> for UpstreamError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_timeout() {
            Self::Timeout
        } else if error.is_decode() || error.is_body() {
            Self::InvalidResponse {
                reason: error.without_url().to_string(),
            }
        } else {
            Self::Unreachable {
                reason: error.without_url().to_string(),
            }
        }
    }
}
