use std::sync::Arc;
use std::time::Duration;

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
    ServerError {
        status: StatusCode,
        retry_after_secs: Option<u64>,
        /// Whatever text Partner Center sent with it, cleaned.
        description: Option<String>,
    },
    #[error("Partner Center's answer could not be read: {reason}")]
    InvalidResponse { reason: String },
    #[error("Partner Center could not be reached: {reason}")]
    Unreachable { reason: String },
    /// The connection broke while the answer was read: the request may have been processed.
    #[error("Partner Center's answer was cut off: {reason}")]
    AnswerLost { reason: String },
    #[error("Partner Center did not answer in time")]
    Timeout,
    /// The logical call's deadline passed (waiting for a token, or an attempt cut short).
    #[error("the call's deadline passed before Partner Center answered")]
    DeadlineExceeded,
    #[error("no Partner Center token: {0}")]
    Token(Arc<TokenError>),
    /// The circuit breaker is failing fast after sustained failures.
    #[error("Partner Center's circuit is open (probe in {retry_after_secs} s)")]
    CircuitOpen { retry_after_secs: u64 },
    /// Every upstream slot stayed taken for the bulkhead's wait.
    #[error("too many Partner Center calls in flight")]
    Busy,
}

impl UpstreamError {
    /// Worth another attempt with the same `MS-RequestId`: the request may not have been
    /// processed, or Partner Center says it is momentarily unable to. Never a 4xx verdict
    /// on the request itself (400, 403, 404, 409, 412).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. }
            | Self::AnswerLost { .. }
            | Self::Timeout
            | Self::Throttled { .. } => true,
            Self::ServerError { status, .. } => matches!(status.as_u16(), 500 | 502 | 503 | 504),
            Self::Rejected { status, .. } => status.as_u16() == 408,
            Self::InvalidResponse { .. }
            | Self::Token(_)
            | Self::CircuitOpen { .. }
            | Self::Busy
            | Self::DeadlineExceeded => false,
        }
    }

    /// The status Partner Center answered with, when it answered.
    /// Partner Center's final word on the request (a 4xx such as 400 or 409), as opposed to
    /// a failure worth retrying.
    pub fn is_verdict(&self) -> bool {
        matches!(self, Self::Rejected { status, .. }
            if status.is_client_error() && !matches!(status.as_u16(), 401 | 408 | 429))
    }

    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } | Self::ServerError { status, .. } => {
                Some(status.as_u16())
            }
            Self::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// A bounded label for metrics: why an attempt failed.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            Self::Rejected { status, .. } if status.as_u16() == 401 => "unauthorized",
            Self::Rejected { .. } => "rejected",
            Self::Throttled { .. } => "throttled",
            Self::ServerError { .. } => "server_error",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Unreachable { .. } => "unreachable",
            Self::AnswerLost { .. } => "answer_lost",
            Self::Timeout => "timeout",
            Self::DeadlineExceeded => "deadline",
            Self::Token(_) => "token",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Busy => "busy",
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::Rejected { status, .. } if status.as_u16() == 401)
    }

    /// The wait Partner Center asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after_secs }
            | Self::ServerError {
                retry_after_secs, ..
            } => retry_after_secs.map(Duration::from_secs),
            Self::CircuitOpen { retry_after_secs } => Some(Duration::from_secs(*retry_after_secs)),
            _ => None,
        }
    }
}

impl UpstreamError {
    /// A failed exchange, sending or reading the answer. `cut_short`: the attempt had less
    /// than its full timeout because the call's deadline was near, so a timeout is ours, not
    /// a mark against Partner Center. A body that broke off is a lost answer (Partner Center
    /// may have acted: worth the same-MS-RequestId retry), not an unreadable one.
    pub fn from_transport(error: reqwest::Error, cut_short: bool) -> Self {
        // Errors drop the URL: in the legacy contract it carries the validation code.
        let error = error.without_url();
        if error.is_timeout() {
            return if cut_short {
                Self::DeadlineExceeded
            } else {
                Self::Timeout
            };
        }
        let reason = error.to_string();
        if error.is_body() || error.is_decode() {
            Self::AnswerLost { reason }
        } else {
            Self::Unreachable { reason }
        }
    }
}
