use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{SHA256, digest};
use moka::Expiry;
use moka::sync::Cache;

use super::Caller;

/// Tokens that passed every check, keyed by the SHA-256 of the raw token, so a repeat caller
/// costs a hash and a lookup instead of a signature verification. The raw token is never kept.
pub struct VerifiedTokens {
    cache: Cache<[u8; 32], Arc<VerifiedToken>>,
}

pub struct VerifiedToken {
    pub caller: Caller,
    /// Which issuer's key store and which key vouched for it: the entry stops counting
    /// as soon as that key leaves the issuer's key set.
    pub issuer_index: usize,
    pub key_fingerprint: [u8; 32],
    /// The token's `exp`, in Unix seconds.
    pub expires_at: u64,
}

struct UntilTokenExpiry;

impl Expiry<[u8; 32], Arc<VerifiedToken>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        token: &Arc<VerifiedToken>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            token.expires_at.saturating_sub(unix_now()),
        ))
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn token_digest(token: &str) -> [u8; 32] {
    digest(&SHA256, token.as_bytes())
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

impl VerifiedTokens {
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilTokenExpiry)
                .build(),
        }
    }

    /// A token verified before and not yet expired (moka's expiry is checked on read,
    /// and `exp` again here, to the second).
    pub fn get(&self, digest: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        self.cache
            .get(digest)
            .filter(|token| token.expires_at > unix_now())
    }

    pub fn insert(&self, digest: [u8; 32], token: VerifiedToken) {
        self.cache.insert(digest, Arc::new(token));
    }

    pub fn forget(&self, digest: &[u8; 32]) {
        self.cache.invalidate(digest);
    }
}
