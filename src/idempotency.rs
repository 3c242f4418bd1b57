//! Caller idempotency (`Idempotency-Key`, IETF httpapi draft): one outcome per caller and key.
//! A completed answer is kept and replayed; a retry while the first is running is a conflict;
//! the same key with another request is refused. Records live in the store: with PostgreSQL
//! every replica shares them. The `MS-RequestId` sent upstream is derived from caller, key and
//! request, so Partner Center de-duplicates even a retry the store could not stop.

use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::web::Bytes;
use aws_lc_rs::digest::{SHA256, digest};

use crate::auth::Caller;
use crate::domain::{IdempotencyKey, hex};
use crate::error::PROBLEM_JSON;
use crate::store::{IdempotencyRecord, Store, StoreError};

pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error("a request with this Idempotency-Key is still being processed")]
    InProgress,
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
}

/// Claims and answers live in the store, so every replica on one database shares them: the
/// same key on another replica replays, or waits its turn.
pub struct IdempotencyStore {
    store: Store,
    ttl: Duration,
    /// A running claim older than this was left by a replica that died mid-request.
    abandoned_after: Duration,
}

/// A completed answer, as sent the first time: a 202, or Partner Center's 4xx verdict.
#[derive(Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub location: Option<String>,
    pub body: Bytes,
}

impl StoredResponse {
    pub fn to_response(&self, replayed: bool) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((CONTENT_TYPE, self.content_type));
        if let Some(location) = &self.location {
            response.insert_header((LOCATION, location.as_str()));
        }
        if replayed {
            response.insert_header((IDEMPOTENT_REPLAYED, "true"));
        }
        response.body(self.body.clone())
    }
}

/// What to do with a request carrying an idempotency key.
pub enum Claim {
    /// First of its kind: go ahead, then `complete` the guard with the answer.
    Fresh(InFlight),
    Replay(StoredResponse),
    Refused(IdempotencyError),
}

/// Whose request this is, under which key, for which request content.
pub struct IdempotentRequest {
    /// Caller and key: the record's name and the seed of the `MS-RequestId`.
    pub scope: String,
    fingerprint: [u8; 32],
}

impl IdempotentRequest {
    /// Caller, key and request content: a retry anywhere gets the same `MS-RequestId`, and a
    /// key reused for another request (on a replica without the record) does not.
    pub fn request_id_seed(&self) -> String {
        format!("{}\n{}", self.scope, hex(&self.fingerprint))
    }

    /// The record's name in the store: a digest, so neither key nor caller is stored.
    fn stored_scope(&self) -> String {
        hex(digest(&SHA256, self.scope.as_bytes()).as_ref())
    }

    /// Scoped to the caller, so two callers' keys never collide; fingerprinted over the
    /// operation and the request's canonical form (not its bytes: a client that
    /// re-serialises the same request must still be recognised).
    pub fn new(caller: &Caller, key: &IdempotencyKey, operation: &str, canonical: &[u8]) -> Self {
        let mut content = Vec::with_capacity(operation.len() + 1 + canonical.len());
        content.extend_from_slice(operation.as_bytes());
        content.push(b'\n');
        content.extend_from_slice(canonical);
        Self {
            scope: format!("{}\n{}\n{}", caller.issuer, caller.subject, key.as_str()),
            fingerprint: digest(&SHA256, &content)
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
        }
    }
}

impl IdempotencyStore {
    pub fn new(store: Store, ttl: Duration, abandoned_after: Duration) -> Self {
        Self {
            store,
            ttl,
            abandoned_after,
        }
    }

    pub async fn claim(&self, request: &IdempotentRequest) -> Result<Claim, StoreError> {
        let scope = request.stored_scope();
        let fingerprint = hex(&request.fingerprint);
        let held = self
            .store
            .claim_idempotency(
                &scope,
                &fingerprint,
                self.abandoned_after.as_millis() as i64,
            )
            .await?;
        Ok(match held {
            None => Claim::Fresh(InFlight {
                store: self.store.clone(),
                scope,
                ttl: self.ttl,
                completed: false,
            }),
            Some(IdempotencyRecord::Done {
                fingerprint: kept,
                status,
                content_type,
                location,
                body,
            }) if kept == fingerprint => Claim::Replay(StoredResponse {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                content_type: if content_type == PROBLEM_JSON {
                    PROBLEM_JSON
                } else {
                    "application/json"
                },
                location,
                body: Bytes::from(body),
            }),
            Some(IdempotencyRecord::Running { fingerprint: kept }) if kept == fingerprint => {
                Claim::Refused(IdempotencyError::InProgress)
            }
            Some(_) => Claim::Refused(IdempotencyError::KeyReused),
        })
    }
}

/// A claimed key. Completing it keeps the answer; dropping it uncompleted (an error worth
/// retrying, or the caller went away) frees the key for a retry.
pub struct InFlight {
    store: Store,
    scope: String,
    ttl: Duration,
    completed: bool,
}

impl InFlight {
    pub async fn complete(mut self, response: &StoredResponse) {
        self.completed = true;
        let body = String::from_utf8_lossy(&response.body);
        if let Err(error) = self
            .store
            .complete_idempotency(
                &self.scope,
                response.status.as_u16(),
                response.content_type,
                response.location.as_deref(),
                &body,
                self.ttl.as_millis() as i64,
            )
            .await
        {
            // The key stays claimed until it is taken for abandoned; a retry meanwhile is a 409.
            tracing::error!(%error, "cannot keep the answer for its Idempotency-Key");
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let (store, scope) = (self.store.clone(), std::mem::take(&mut self.scope));
        // Drop cannot wait: the release runs beside the request's end.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.release_idempotency(&scope).await {
                    tracing::error!(%error, "cannot free an Idempotency-Key; it frees itself when abandoned");
                }
            });
        }
    }
}
