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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccessPolicy;
    use crate::auth::caller::Identity;
    use crate::configuration::Settings;

    fn entry(expires_at: u64) -> VerifiedToken {
        let policy = Arc::new(AccessPolicy::from_settings(
            &Settings::defaults().unwrap().caller_auth,
        ));
        let identity = Identity {
            issuer: "https://issuer".into(),
            subject: "subject".into(),
            app_id: None,
            name: None,
            roles: vec![],
            scopes: String::new(),
        };
        VerifiedToken {
            caller: Caller::new(identity, policy),
            issuer_index: 0,
            key_fingerprint: [0; 32],
            expires_at,
        }
    }

    #[test]
    fn a_token_is_remembered_until_its_exp_and_not_a_second_longer() {
        let cache = VerifiedTokens::new(10);
        let live = token_digest("live");
        let expired = token_digest("expired");
        cache.insert(live, entry(unix_now() + 600));
        cache.insert(expired, entry(unix_now()));
        assert!(cache.get(&live).is_some());
        assert!(cache.get(&expired).is_none());
        assert!(cache.get(&token_digest("never seen")).is_none());
        cache.forget(&live);
        assert!(cache.get(&live).is_none());
    }

    #[test]
    fn the_key_is_a_digest_of_the_whole_token() {
        assert_ne!(token_digest("a.b.c"), token_digest("a.b.d"));
        assert_eq!(token_digest("a.b.c"), token_digest("a.b.c"));
    }
}
