use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot fetch the JWKS from {url}: {reason}")]
pub struct KeyError {
    url: String,
    reason: String,
}

/// Refetching on an unknown `kid` at most this often keeps a flood of forged tokens
/// from turning into a flood of requests to the identity provider.
const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed refresh with keys still held, wait this long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The caller issuer's signing keys: fetched lazily, one fetch at a time, cached for a TTL,
/// and kept when a refresh fails so an identity-provider blip does not lock callers out.
pub struct KeyStore {
    http: reqwest::Client,
    url: String,
    ttl: Duration,
    held: RwLock<Option<HeldKeys>>,
    fetch_lock: tokio::sync::Mutex<()>,
    last_forced_refetch: Mutex<Option<Instant>>,
}

#[derive(Clone)]
struct HeldKeys {
    keys: Arc<JwkSet>,
    refresh_at: Instant,
}

impl KeyStore {
    pub fn new(http: reqwest::Client, url: String, ttl: Duration) -> Self {
        Self {
            http,
            url,
            ttl,
            held: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_forced_refetch: Mutex::new(None),
        }
    }

    /// The keys to verify with, fetching them if none are held or they are due for refresh.
    pub async fn current(&self) -> Result<Arc<JwkSet>, KeyError> {
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        // One request refreshes; while it does, the others use the keys already held
        // instead of queueing behind a slow identity provider.
        let _one_fetch_at_a_time = match self.fetch_lock.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.read_held() {
                Some(stale) => return Ok(stale.keys),
                None => self.fetch_lock.lock().await,
            },
        };
        if let Some(keys) = self.fresh() {
            return Ok(keys);
        }
        self.refresh().await
    }

    /// One extra fetch for a token signed by a key we do not know (a rotation), rate-limited.
    pub async fn refetch_for_unknown_kid(&self) -> Result<Arc<JwkSet>, KeyError> {
        let allowed = {
            let mut last = self
                .last_forced_refetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let allowed = last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFETCH_INTERVAL);
            if allowed {
                *last = Some(Instant::now());
            }
            allowed
        };
        if !allowed {
            return self.current().await;
        }
        let _one_fetch_at_a_time = self.fetch_lock.lock().await;
        self.refresh().await
    }

    fn fresh(&self) -> Option<Arc<JwkSet>> {
        self.read_held()
            .filter(|h| Instant::now() < h.refresh_at)
            .map(|h| h.keys)
    }

    fn read_held(&self) -> Option<HeldKeys> {
        self.held.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn store(&self, keys: Arc<JwkSet>, refresh_in: Duration) {
        *self.held.write().unwrap_or_else(|p| p.into_inner()) = Some(HeldKeys {
            keys,
            refresh_at: Instant::now() + refresh_in,
        });
    }

    async fn refresh(&self) -> Result<Arc<JwkSet>, KeyError> {
        match self.fetch().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                tracing::info!(jwks_url = %self.url, keys = keys.keys.len(), "caller signing keys fetched");
                self.store(keys.clone(), self.ttl);
                Ok(keys)
            }
            Err(error) => match self.read_held() {
                Some(stale) => {
                    tracing::warn!(%error, "keeping the last good caller signing keys");
                    self.store(stale.keys.clone(), RETRY_AFTER_FAILURE.min(self.ttl));
                    Ok(stale.keys)
                }
                None => {
                    tracing::error!(%error, "no caller signing keys: callers cannot be authenticated");
                    Err(error)
                }
            },
        }
    }

    async fn fetch(&self) -> Result<JwkSet, KeyError> {
        let fail = |reason: String| KeyError {
            url: self.url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        response
            .json::<JwkSet>()
            .await
            .map_err(|e| fail(format!("not a JWKS: {}", e.without_url())))
    }
}
