//! Caller idempotency (`Idempotency-Key`, IETF httpapi draft): one outcome per caller and key.
//! A completed answer is kept and replayed; a retry while the first is running is a conflict;
//! the same key with another request is refused. The `MS-RequestId` sent upstream is derived
//! from caller and key, so even a retry through another replica (which holds no record) is
//! de-duplicated by Partner Center itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::web::Bytes;
use aws_lc_rs::digest::{SHA256, digest};
use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::auth::Caller;
use crate::domain::IdempotencyKey;

pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyError {
    #[error("a request with this Idempotency-Key is still being processed")]
    InProgress,
    #[error("this Idempotency-Key was used for a different request")]
    KeyReused,
}

pub struct IdempotencyStore {
    records: Cache<String, Arc<Record>>,
    next_owner: AtomicU64,
}

enum Record {
    InFlight {
        owner: u64,
        fingerprint: [u8; 32],
    },
    Done {
        fingerprint: [u8; 32],
        response: StoredResponse,
    },
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
pub enum Claim<'a> {
    /// First of its kind: go ahead, then `complete` the guard with the answer.
    Fresh(InFlight<'a>),
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
        let content: String = self
            .fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}\n{content}", self.scope)
    }

    /// Scoped to the caller, so two callers' keys never collide; fingerprinted over the
    /// operation and the exact body bytes.
    pub fn new(caller: &Caller, key: &IdempotencyKey, operation: &str, body: &[u8]) -> Self {
        let mut content = Vec::with_capacity(operation.len() + 1 + body.len());
        content.extend_from_slice(operation.as_bytes());
        content.push(b'\n');
        content.extend_from_slice(body);
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
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            records: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            next_owner: AtomicU64::new(1),
        }
    }

    pub fn claim(&self, request: &IdempotentRequest) -> Claim<'_> {
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        let entry = self
            .records
            .entry(request.scope.clone())
            .or_insert_with(|| {
                Arc::new(Record::InFlight {
                    owner,
                    fingerprint: request.fingerprint,
                })
            });
        if entry.is_fresh() {
            return Claim::Fresh(InFlight {
                store: self,
                scope: request.scope.clone(),
                owner,
                fingerprint: request.fingerprint,
                completed: false,
            });
        }
        match entry.value().as_ref() {
            Record::InFlight { fingerprint, .. } | Record::Done { fingerprint, .. }
                if *fingerprint != request.fingerprint =>
            {
                Claim::Refused(IdempotencyError::KeyReused)
            }
            Record::InFlight { .. } => Claim::Refused(IdempotencyError::InProgress),
            Record::Done { response, .. } => Claim::Replay(response.clone()),
        }
    }
}

/// A claimed key. Completing it keeps the answer; dropping it uncompleted (an error worth
/// retrying, or the caller went away) frees the key for a retry.
pub struct InFlight<'a> {
    store: &'a IdempotencyStore,
    scope: String,
    owner: u64,
    fingerprint: [u8; 32],
    completed: bool,
}

impl InFlight<'_> {
    pub fn complete(mut self, response: StoredResponse) {
        self.completed = true;
        self.store.records.insert(
            self.scope.clone(),
            Arc::new(Record::Done {
                fingerprint: self.fingerprint,
                response,
            }),
        );
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let owner = self.owner;
        self.store
            .records
            .entry(self.scope.clone())
            .and_compute_with(|existing| match existing {
                Some(entry) if matches!(entry.value().as_ref(), Record::InFlight { owner: o, .. } if *o == owner) => {
                    Op::Remove
                }
                _ => Op::Nop,
            });
    }
}
