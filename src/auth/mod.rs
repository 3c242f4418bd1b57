//! Caller authentication: bearer JWTs from trusted issuers, checked against their published
//! keys, then app roles or delegated scopes per operation.

mod caller;
mod extractor;
mod keys;
mod verified_cache;
mod verifier;

pub use caller::{AccessPolicy, Caller, Permission};
pub use extractor::token_in_url;
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
