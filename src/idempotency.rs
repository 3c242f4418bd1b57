//! Caller idempotency (`Idempotency-Key`, IETF httpapi draft): one outcome per caller and key.
//! A completed answer is kept and replayed; a retry while the first is running is a conflict;
//! the same key with another request is refused. The `MS-RequestId` sent upstream is derived
//! from caller and key, so even a retry through another replica (which holds no record) is
//! de-duplicated by Partner Center itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_TYPE, LOCATION};
use actix_web::web::Bytes;
use aws_lc_rs::digest::{SHA256, digest};
use moka::policy::EvictionPolicy;
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

/// Answers kept for replay live in a bounded cache; claims in flight live apart, in a map
/// that eviction never touches (it holds only requests running now), so a busy cache cannot
/// drop a running claim and let a duplicate through.
pub struct IdempotencyStore {
    done: Cache<String, Arc<Done>>,
    /// Caller and key → the fingerprint of the request running under them.
    in_flight: Mutex<HashMap<String, [u8; 32]>>,
}

struct Done {
    fingerprint: [u8; 32],
    response: StoredResponse,
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
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            // LRU, not moka's default TinyLFU: its admission filter turns away a new entry
            // that is not used more often than the one it would evict, and every answer is
            // new when it is kept; a full cache would stop keeping answers at all.
            done: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn claim(&self, request: &IdempotentRequest) -> Claim<'_> {
        // One lock over both looks, so a claim never falls between an answer being kept and
        // its claim being released.
        let mut in_flight = self.claims();
        if let Some(done) = self.done.get(&request.scope) {
            return if done.fingerprint == request.fingerprint {
                Claim::Replay(done.response.clone())
            } else {
                Claim::Refused(IdempotencyError::KeyReused)
            };
        }
        if let Some(fingerprint) = in_flight.get(&request.scope) {
            return Claim::Refused(if *fingerprint == request.fingerprint {
                IdempotencyError::InProgress
            } else {
                IdempotencyError::KeyReused
            });
        }
        in_flight.insert(request.scope.clone(), request.fingerprint);
        Claim::Fresh(InFlight {
            store: self,
            scope: request.scope.clone(),
            fingerprint: request.fingerprint,
            completed: false,
        })
    }

    /// Releases the claim on `scope` (only its holder can), keeping `answer` first when
    /// there is one.
    /// (The answer goes in before the lock is taken: `claim` looks at answers first, so a
    /// claim in between sees the answer, and the cache's upkeep stays out of the lock.)
    fn release(&self, scope: &str, answer: Option<Done>) {
        if let Some(answer) = answer {
            self.done.insert(scope.to_owned(), Arc::new(answer));
        }
        self.claims().remove(scope);
    }

    /// The lock guards single inserts and removals, which a panic cannot leave half done,
    /// so a poisoned lock is still good to use.
    fn claims(&self) -> MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A claimed key. Completing it keeps the answer; dropping it uncompleted (an error worth
/// retrying, or the caller went away) frees the key for a retry.
pub struct InFlight<'a> {
    store: &'a IdempotencyStore,
    scope: String,
    fingerprint: [u8; 32],
    completed: bool,
}

impl InFlight<'_> {
    pub fn complete(mut self, response: StoredResponse) {
        self.completed = true;
        let answer = Done {
            fingerprint: self.fingerprint,
            response,
        };
        self.store.release(&self.scope, Some(answer));
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.completed {
            self.store.release(&self.scope, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scope: &str, body: &[u8]) -> IdempotentRequest {
        IdempotentRequest {
            scope: scope.to_owned(),
            fingerprint: digest(&SHA256, body).as_ref().try_into().unwrap(),
        }
    }

    fn accepted() -> StoredResponse {
        StoredResponse {
            status: StatusCode::ACCEPTED,
            content_type: "application/json",
            location: None,
            body: Bytes::from_static(b"{}"),
        }
    }

    #[test]
    fn a_running_claim_survives_a_full_cache() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 4);
        let running = request("caller\nkey-running", b"a");
        let Claim::Fresh(_guard) = store.claim(&running) else {
            panic!("first claim is fresh");
        };
        for n in 0..200 {
            match store.claim(&request(&format!("caller\nkey-{n}"), b"b")) {
                Claim::Fresh(other) => other.complete(accepted()),
                _ => panic!("distinct keys never collide"),
            }
        }
        store.done.run_pending_tasks();
        assert!(store.done.entry_count() <= 4, "the cache stayed bounded");
        assert!(matches!(
            store.claim(&running),
            Claim::Refused(IdempotencyError::InProgress)
        ));
        assert!(matches!(
            store.claim(&request("caller\nkey-running", b"other")),
            Claim::Refused(IdempotencyError::KeyReused)
        ));
    }

    #[test]
    fn a_full_cache_keeps_the_newest_answers() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 8);
        let keys: Vec<IdempotentRequest> = (0..100)
            .map(|n| request(&format!("caller\nkey-{n}"), b"a"))
            .collect();
        for key in &keys {
            let Claim::Fresh(guard) = store.claim(key) else {
                panic!("distinct keys never collide");
            };
            guard.complete(accepted());
            store.done.run_pending_tasks();
        }
        for key in &keys[92..] {
            assert!(
                matches!(store.claim(key), Claim::Replay(_)),
                "{} was kept",
                key.scope
            );
        }
    }

    #[test]
    fn a_dropped_claim_frees_the_key_and_a_completed_one_replays() {
        let store = IdempotencyStore::new(Duration::from_secs(60), 100);
        let first = request("caller\nkey", b"a");
        drop(store.claim(&first));
        let Claim::Fresh(guard) = store.claim(&first) else {
            panic!("the key was freed");
        };
        guard.complete(accepted());
        assert!(
            matches!(store.claim(&first), Claim::Replay(r) if r.status == StatusCode::ACCEPTED)
        );
        assert!(store.claims().is_empty(), "nothing left in flight");
    }
}
