//! Caller authentication: bearer JWTs checked against a JWKS, then roles or scopes per operation.

mod caller;
mod extractor;
mod keys;
mod verifier;

pub use caller::{Caller, Permission, RolePolicy};
pub use keys::{KeyError, KeyStore};
pub use verifier::CallerVerifier;

/// Why a caller was turned away. Descriptions name the failed check only, nothing more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    MissingToken,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("the caller's token lacks a role or scope this operation needs")]
    InsufficientScope { needed: Vec<String> },
    #[error("signing keys of the caller's identity provider are unavailable")]
    KeysUnavailable,
}
