use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::configuration::KeySource;
use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot fetch signing keys from {url}: {reason}")]
pub struct KeyError {
    url: String,
    reason: String,
}

/// How long a rate-limited unknown-`kid` lookup waits for a fetch already under way.
const REFETCH_WAIT: Duration = Duration::from_secs(1);

/// How often keys are fetched; from `caller_auth.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct KeyTiming {
    /// Held keys are refreshed this long after a successful fetch.
    pub ttl: Duration,
    /// After a failed fetch, no new fetch for this long: with no keys held, requests are
    /// answered 503 at once instead of each waiting on a dead identity provider.
    pub retry_after_failure: Duration,
    /// A token naming an unknown `kid` forces a refetch at most this often, so a flood of
    /// forged tokens cannot turn into a flood of requests to the identity provider.
    pub unknown_kid_refetch: Duration,
    /// One fetch's limit (the identity provider's, not Partner Center's).
    pub fetch_timeout: Duration,
}

/// One public key of an issuer, parsed once at fetch time rather than on every verification.
pub struct PublicKey {
    pub kid: Option<String>,
    family: KeyFamily,
    declared_alg: Option<Algorithm>,
    pub decoding: DecodingKey,
    /// SHA-256 of the key material: identifies the key across refetches.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    Ec,
    Okp,
}

impl PublicKey {
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Okp,
            // A shared secret in a public key set is never a key to trust; nor is a key
            // type this gateway does not know.
            _ => return None,
        };
        // A key declared for something other than a signature algorithm (RSA-OAEP, say) is
        // not one to check signatures with.
        let declared_alg = match jwk.common.key_algorithm {
            Some(declared) => Some(declared.to_string().parse::<Algorithm>().ok()?),
            None => None,
        };
        let material = serde_json::to_vec(&jwk.algorithm).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            family,
            declared_alg,
            decoding: DecodingKey::from_jwk(jwk).ok()?,
            fingerprint: digest(&SHA256, &material)
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes"),
        })
    }

    /// Whether this key may check a signature made with `alg`: same key family, and the
    /// algorithm the key set declares for it, if any.
    pub fn fits(&self, alg: Algorithm) -> bool {
        let family_fits = match self.family {
            KeyFamily::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyFamily::Ec => matches!(alg, Algorithm::ES256 | Algorithm::ES384),
            KeyFamily::Okp => alg == Algorithm::EdDSA,
        };
        family_fits && self.declared_alg.is_none_or(|declared| declared == alg)
    }
}

/// The usable keys of one fetch.
pub struct SigningKeys {
    keys: Vec<PublicKey>,
}

impl SigningKeys {
    /// The keys that may have signed a token: the one its `kid` names, and any key published
    /// without a `kid` (or, for a token without one, every key) that fits `alg`.
    pub fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<&PublicKey> {
        self.keys
            .iter()
            .filter(|k| match (kid, k.kid.as_deref()) {
                (Some(wanted), Some(published)) => wanted == published,
                _ => true,
            })
            .filter(|k| k.fits(alg))
            .collect()
    }

    pub fn knows_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn holds(&self, fingerprint: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| &k.fingerprint == fingerprint)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// An issuer's signing keys: fetched at start and refreshed in the background, one fetch at
/// a time, with the last good keys kept when a refresh fails so an identity-provider blip
/// does not lock callers out.
pub struct KeyStore {
    http: reqwest::Client,
    source: KeySource,
    timing: KeyTiming,
    state: RwLock<State>,
    fetch_lock: tokio::sync::Mutex<()>,
    last_forced_refetch: Mutex<Option<Instant>>,
    /// The discovery document's `jwks_uri`, remembered until a key fetch from it fails.
    discovered_jwks_url: Mutex<Option<String>>,
    metrics: Metrics,
}

struct State {
    held: Option<Arc<SigningKeys>>,
    /// When the next fetch is due: a TTL after a success, a retry delay after a failure.
    next_fetch_at: Instant,
}

impl KeyStore {
    pub fn new(
        http: reqwest::Client,
        source: KeySource,
        timing: KeyTiming,
        metrics: Metrics,
    ) -> Self {
        Self {
            http,
            source,
            timing,
            state: RwLock::new(State {
                held: None,
                next_fetch_at: Instant::now(),
            }),
            fetch_lock: tokio::sync::Mutex::new(()),
            last_forced_refetch: Mutex::new(None),
            discovered_jwks_url: Mutex::new(None),
            metrics,
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The keys held right now, without fetching.
    pub fn held(&self) -> Option<Arc<SigningKeys>> {
        self.read_state().0
    }

    /// The keys to verify with. Held keys are served even when due: the background task
    /// refreshes them, so no request waits on the identity provider. With none held, one
    /// request fetches and the others wait for it, unless a fetch failed moments ago.
    pub async fn current(&self) -> Result<Arc<SigningKeys>, KeyError> {
        let (held, due) = self.read_state();
        if let Some(keys) = held {
            return Ok(keys);
        }
        if !due {
            return Err(self.unavailable());
        }
        let _one_fetch_at_a_time = self.fetch_lock.lock().await;
        match self.read_state() {
            (Some(keys), _) => Ok(keys),
            (None, true) => self.refresh().await,
            (None, false) => Err(self.unavailable()),
        }
    }

    /// One extra fetch for a token signed by a key we do not know (a rotation), rate-limited.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> Result<Arc<SigningKeys>, KeyError> {
        let allowed = {
            let mut last = self
                .last_forced_refetch
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let allowed = last.is_none_or(|t| t.elapsed() >= self.timing.unknown_kid_refetch);
            if allowed {
                *last = Some(Instant::now());
            }
            allowed
        };
        if !allowed {
            // A fetch under way may be bringing this very key: wait for it, briefly, so a
            // flood of forged kids cannot park connections behind a slow identity provider.
            let _ = tokio::time::timeout(REFETCH_WAIT, self.fetch_lock.lock()).await;
            return self.read_state().0.ok_or_else(|| self.unavailable());
        }
        let _one_fetch_at_a_time = self.fetch_lock.lock().await;
        match self.read_state().0 {
            // Someone else's fetch brought it while we waited.
            Some(keys) if keys.knows_kid(kid) => Ok(keys),
            _ => self.refresh().await,
        }
    }

    /// Keeps the keys fresh until the task is aborted; started with the server.
    pub async fn refresh_in_background(self: Arc<Self>) {
        loop {
            let next = self
                .state
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .next_fetch_at;
            tokio::time::sleep_until(next.into()).await;
            let _one_fetch_at_a_time = self.fetch_lock.lock().await;
            if self.read_state().1 {
                let _ = self.refresh().await;
            }
        }
    }

    fn read_state(&self) -> (Option<Arc<SigningKeys>>, bool) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (state.held.clone(), Instant::now() >= state.next_fetch_at)
    }

    fn unavailable(&self) -> KeyError {
        KeyError {
            url: self.source_url().to_owned(),
            reason: "no keys held and the last fetch failed".into(),
        }
    }

    fn source_url(&self) -> &str {
        match &self.source {
            KeySource::Jwks(url) | KeySource::Discovery(url) => url,
        }
    }

    /// Fetches now; the caller holds `fetch_lock`.
    async fn refresh(&self) -> Result<Arc<SigningKeys>, KeyError> {
        let outcome = self.fetch().await;
        Metrics::outcome(
            &self.metrics.jwks_fetches,
            if outcome.is_ok() {
                "success"
            } else {
                "failure"
            },
        );
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(keys) => {
                let keys = Arc::new(keys);
                tracing::info!(key_source = %self.source_url(), keys = keys.len(), "caller signing keys fetched");
                state.held = Some(keys.clone());
                state.next_fetch_at = Instant::now() + self.timing.ttl;
                Ok(keys)
            }
            Err(error) => {
                state.next_fetch_at = Instant::now() + self.timing.retry_after_failure;
                match &state.held {
                    Some(stale) => {
                        tracing::warn!(%error, "keeping the last good caller signing keys");
                        Ok(stale.clone())
                    }
                    None => {
                        tracing::error!(%error, "no caller signing keys: these callers cannot be authenticated");
                        Err(error)
                    }
                }
            }
        }
    }

    async fn fetch(&self) -> Result<SigningKeys, KeyError> {
        let url = self.jwks_url().await?;
        let result = self.fetch_jwks(&url).await;
        if result.is_err() {
            // The document may have moved the keys: ask it again next time.
            *self
                .discovered_jwks_url
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }

    async fn jwks_url(&self) -> Result<String, KeyError> {
        let discovery_url = match &self.source {
            KeySource::Jwks(url) => return Ok(url.clone()),
            KeySource::Discovery(url) => url,
        };
        if let Some(known) = self
            .discovered_jwks_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(known);
        }
        #[derive(Deserialize)]
        struct OpenIdConfiguration {
            jwks_uri: String,
        }
        let document: OpenIdConfiguration = self.get_json(discovery_url).await?;
        let jwks_uri =
            checked_jwks_uri(discovery_url, &document.jwks_uri).map_err(|reason| KeyError {
                url: discovery_url.clone(),
                reason: reason.into(),
            })?;
        *self
            .discovered_jwks_url
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(jwks_uri.clone());
        Ok(jwks_uri)
    }

    async fn fetch_jwks(&self, url: &str) -> Result<SigningKeys, KeyError> {
        /// Keys are parsed one by one so one key of a type we cannot use does not hide the rest.
        #[derive(Deserialize)]
        struct RawKeySet {
            keys: Vec<serde_json::Value>,
        }
        let raw: RawKeySet = self.get_json(url).await?;
        let keys: Vec<PublicKey> = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| PublicKey::from_jwk(&jwk))
            .collect();
        if keys.is_empty() {
            return Err(KeyError {
                url: url.to_owned(),
                reason: "the key set holds no usable signing key".into(),
            });
        }
        Ok(SigningKeys { keys })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, KeyError> {
        let fail = |reason: String| KeyError {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .timeout(self.timing.fetch_timeout)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("status {}", response.status())));
        }
        response
            .json::<T>()
            .await
            .map_err(|e| fail(format!("unexpected document: {}", e.without_url())))
    }
}

/// The discovery document's `jwks_uri`, if it is one to fetch keys from: keys named by an
/// https document must come over https too.
fn checked_jwks_uri(discovery_url: &str, jwks_uri: &str) -> Result<String, &'static str> {
    let parsed = url::Url::parse(jwks_uri).map_err(|_| "jwks_uri is not a URL")?;
    let downgrade = discovery_url.starts_with("https:") && parsed.scheme() != "https";
    if downgrade || !matches!(parsed.scheme(), "http" | "https") {
        return Err("jwks_uri must be an https URL");
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_https_discovery_document_cannot_send_key_fetches_over_http() {
        let doc = "https://login.example/t/v2.0/.well-known/openid-configuration";
        assert!(checked_jwks_uri(doc, "https://login.example/t/keys").is_ok());
        assert!(checked_jwks_uri(doc, "http://login.example/t/keys").is_err());
        assert!(checked_jwks_uri(doc, "file:///etc/keys").is_err());
        assert!(checked_jwks_uri(doc, "not a url").is_err());
        let local = "http://127.0.0.1:1/.well-known/openid-configuration";
        assert!(checked_jwks_uri(local, "http://127.0.0.1:1/keys").is_ok());
    }

    fn key(extra: serde_json::Value) -> Option<PublicKey> {
        let signer = crate::sandbox::SigningKey::generate("k").unwrap();
        let mut jwk = serde_json::to_value(signer.public_jwk()).unwrap();
        if let (serde_json::Value::Object(jwk), serde_json::Value::Object(extra)) =
            (&mut jwk, extra)
        {
            jwk.extend(extra);
        }
        PublicKey::from_jwk(&serde_json::from_value(jwk).unwrap())
    }

    #[test]
    fn a_key_checks_only_its_own_family_and_declared_algorithm() {
        let ec = key(serde_json::json!({})).unwrap();
        assert!(ec.fits(Algorithm::ES256));
        assert!(!ec.fits(Algorithm::ES384), "declared ES256");
        assert!(!ec.fits(Algorithm::RS256));
        assert!(!ec.fits(Algorithm::HS256));
    }

    #[test]
    fn encryption_keys_are_not_signing_keys() {
        assert!(key(serde_json::json!({"use": "enc"})).is_none());
        assert!(key(serde_json::json!({"alg": "ECDH-ES"})).is_none());
    }
}
