//! Caller authentication: bearer JWTs from trusted issuers, checked against their published
//! keys, then app roles or delegated scopes per operation.

mod caller;
mod extractor;
mod keys;
mod verified_cache;
mod verifier;

pub use caller::{AccessPolicy, Caller, Permission, owning_app};
pub use extractor::{refuse_token_in_url, token_in_url};
pub use keys::{KeyError, KeyStore, KeyTiming};
pub use verifier::{CallerVerifier, IssuerReadiness, MAX_TOKEN_BYTES};

/// Why a caller was turned away. Descriptions name the failed check only, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    MissingToken,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("the caller's token lacks a role or scope this operation needs")]
    InsufficientScope { needed: Vec<String> },
    #[error("the calling application is not on the gateway's allow-list")]
    AppNotAllowed,
    #[error("signing keys of the caller's identity provider are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    /// A bounded label for metrics and logs: the kind of refusal, and for a rejected token
    /// the check it failed (`invalid_token:token_expired`).
    pub fn reason(&self) -> String {
        let slug = |text: &str| text.replace([' ', '-'], "_");
        match self {
            Self::MissingToken => "missing_token".into(),
            Self::InvalidRequest(_) => "invalid_request".into(),
            Self::InvalidToken(check) => format!("invalid_token:{}", slug(check)),
            Self::InsufficientScope { .. } => "insufficient_scope".into(),
            Self::AppNotAllowed => "app_not_allowed".into(),
            Self::KeysUnavailable => "keys_unavailable".into(),
        }
    }
}
