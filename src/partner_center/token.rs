//! The App+User access token, redeemed from the stored refresh token and cached until shortly
//! before it expires. Concurrent misses share one request to the token endpoint; a token past
//! its refresh point is served while one background refresh replaces it; failures back off.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use super::credential::{
    CredentialHealth, CredentialRecord, CredentialSource, RefreshTokenFile, Refusal, SignedIn,
    aadsts_code, unix_now,
};
use crate::configuration::{PartnerTokenSettings, TokenEndpoint};
use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("the partner credentials are not configured")]
    NotConfigured,
    /// Entra's own words (`invalid_grant`, an AADSTS code) and what the operator must do;
    /// never the secrets sent.
    #[error("the token endpoint refused the request: {error}: {description} ({action})")]
    Refused {
        error: String,
        description: String,
        action: &'static str,
    },
    /// Entra is down or throttling (5xx, 429, `temporarily_unavailable`, `server_error`): not
    /// a verdict on the refresh token.
    #[error("the token endpoint is temporarily unavailable: {status} {error}")]
    Unavailable {
        status: u16,
        error: String,
        retry_after_secs: Option<u64>,
    },
    #[error("the token endpoint answered {status} with an unreadable body")]
    InvalidResponse { status: u16 },
    #[error("the token endpoint could not be reached: {reason}")]
    Unreachable { reason: String },
    /// Recent failures: Entra is not asked again until the backoff has passed.
    #[error("not asking the token endpoint again for {retry_after_secs} s after: {cause}")]
    BackingOff {
        retry_after_secs: u64,
        cause: Arc<TokenError>,
    },
}

impl TokenError {
    /// What an operator must do, when Entra's refusal says (never Entra's own words, which
    /// stay in the logs).
    pub fn operator_action(&self) -> Option<&'static str> {
        match self {
            Self::Refused { action, .. } => Some(action),
            Self::BackingOff { cause, .. } => cause.operator_action(),
            _ => None,
        }
    }
}

/// An access token for Partner Center, kept only as the ready-made (sensitive) header value.
#[derive(Clone)]
pub struct AccessToken {
    authorization: HeaderValue,
    /// Dropped from the cache after this long: its lifetime less the expiry margin.
    cache_for: Duration,
    /// From here on it is still served, but a background refresh replaces it.
    refresh_at: Instant,
}

impl AccessToken {
    /// `Bearer <token>`, marked sensitive so HTTP-level logging redacts it.
    pub fn authorization_header(&self) -> HeaderValue {
        self.authorization.clone()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("authorization", &"[REDACTED]")
            .field("cache_for", &self.cache_for)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

struct UntilNearExpiry;

impl Expiry<(), Arc<AccessToken>> for UntilNearExpiry {
    fn expire_after_create(
        &self,
        _: &(),
        token: &Arc<AccessToken>,
        _: Instant,
    ) -> Option<Duration> {
        Some(token.cache_for)
    }

    /// A background refresh replaces the entry: the new token's lifetime counts, not the
    /// old one's (moka would keep the old expiry otherwise).
    fn expire_after_update(
        &self,
        _: &(),
        token: &Arc<AccessToken>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(token.cache_for)
    }
}

pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    endpoint: TokenEndpoint,
    client_id: String,
    /// `None` for a public client.
    client_secret: Option<SecretString>,
    /// Replaced in memory whenever Entra rotates it.
    refresh_token: RwLock<Option<SecretString>>,
    resource: String,
    scope: String,
    expiry_margin: Duration,
    cache: Cache<(), Arc<AccessToken>>,
    store: Option<RefreshTokenFile>,
    public_client: bool,
    refreshing_ahead: AtomicBool,
    /// Every token request goes through here: one at a time, so two never redeem the same
    /// refresh token and rotations are stored in order.
    redeem_lock: tokio::sync::Mutex<()>,
    failures: Mutex<Failures>,
    failure_backoff: ExponentialBuilder,
    failure_backoff_max: Duration,
    timeout: Duration,
    metrics: Metrics,
    /// For operators: when the access token in use expires, and what is known of the
    /// refresh token (Entra drops refresh tokens left unused for 90 days).
    lifetimes: Mutex<Lifetimes>,
}

#[derive(Default)]
struct Lifetimes {
    access_token_expires_at: Option<SystemTime>,
    credential: CredentialRecord,
    /// The token in use was read from the file (rather than the settings).
    from_file: bool,
}

/// Recent token-endpoint failures, so a revoked refresh token does not become a storm of
/// requests to Entra.
#[derive(Default)]
struct Failures {
    last: Option<(Arc<TokenError>, Instant)>,
    delays: Option<ExponentialBackoff>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(deserialize_with = "seconds_as_number_or_string")]
    expires_in: u64,
    /// Entra's hint for when to refresh (v2, long-lived tokens).
    #[serde(default, deserialize_with = "optional_seconds")]
    refresh_in: Option<u64>,
}

#[derive(Deserialize)]
struct Rotation {
    refresh_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenProvider {
    /// Fails when a refresh-token file is configured but cannot be read.
    pub fn new(
        http: reqwest::Client,
        settings: &PartnerTokenSettings,
        metrics: Metrics,
    ) -> anyhow::Result<Self> {
        let store = settings
            .refresh_token_file
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
            .map(|path| RefreshTokenFile::new(path.clone(), settings.refresh_token.as_ref()));
        let mut refresh_token = settings
            .refresh_token
            .clone()
            .filter(|t| !t.expose_secret().trim().is_empty());
        let mut lifetimes = Lifetimes::default();
        if let Some(store) = &store
            && let Some((stored, record)) = store.load()?
        {
            tracing::info!(path = %store.path.display(), "using the refresh token stored by login or an earlier run");
            refresh_token = Some(stored);
            lifetimes.credential = record;
            lifetimes.from_file = true;
        }
        Ok(Self {
            http,
            token_url: settings.token_url(),
            endpoint: settings.endpoint,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret_to_send().cloned(),
            public_client: settings.client_type == crate::configuration::ClientType::Public,
            refresh_token: RwLock::new(refresh_token),
            resource: settings.resource.clone(),
            scope: settings.scope.clone(),
            expiry_margin: Duration::from_secs(settings.expiry_margin_secs),
            cache: Cache::builder()
                .max_capacity(1)
                .expire_after(UntilNearExpiry)
                .build(),
            store,
            refreshing_ahead: AtomicBool::new(false),
            redeem_lock: tokio::sync::Mutex::new(()),
            failures: Mutex::new(Failures::default()),
            failure_backoff: ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(settings.failure_backoff_base_ms))
                .with_max_delay(Duration::from_millis(settings.failure_backoff_max_ms))
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
            failure_backoff_max: Duration::from_millis(settings.failure_backoff_max_ms),
            timeout: Duration::from_millis(settings.timeout_ms),
            metrics,
            lifetimes: Mutex::new(lifetimes),
        })
    }

    /// Resolves once no token request is running: at shutdown, so a rotation Entra has
    /// already made is stored before the process exits.
    pub async fn wait_idle(&self) {
        drop(self.redeem_lock.lock().await);
    }

    /// How long the access token last obtained stays valid; `None` before the first one.
    pub fn access_token_remaining(&self) -> Option<Duration> {
        let expires_at = self.lifetimes().access_token_expires_at?;
        Some(
            expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }

    /// Time since Entra last handed out the refresh token (as this process or the token
    /// file saw it); `None` while unknown.
    pub fn refresh_token_age(&self) -> Option<Duration> {
        let renewed_at = self.lifetimes().credential.renewed_at()?;
        Some(Duration::from_secs(unix_now().saturating_sub(renewed_at)))
    }

    /// The refresh token's state for `/readyz`, metrics and `login`'s report.
    pub fn health(&self, warn_days: u64) -> CredentialHealth {
        let lifetimes = self.lifetimes();
        let source = match (&self.store, lifetimes.from_file) {
            _ if !self.has_refresh_token() => CredentialSource::None,
            (Some(store), true) => CredentialSource::File(store.path.clone()),
            _ => CredentialSource::Setting,
        };
        CredentialHealth::assess(source, lifetimes.credential.clone(), warn_days, unix_now())
    }

    /// The refresh token now in use (rotations included), for `login` to store.
    pub(crate) fn current_refresh_token(&self) -> Option<SecretString> {
        self.refresh_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lifetimes(&self) -> std::sync::MutexGuard<'_, Lifetimes> {
        self.lifetimes.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|t| !t.expose_secret().trim().is_empty())
    }

    /// A valid token: the cached one, or one fresh from the token endpoint. Callers that miss
    /// together wait on the same single request. A cached token past its refresh point is
    /// still served while one background refresh replaces it.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<AccessToken>, Arc<TokenError>> {
        if let Some(token) = self.cache.get(&()).await {
            if Instant::now() >= token.refresh_at {
                self.refresh_ahead();
            }
            return Ok(token);
        }
        if let Some(backing_off) = self.backing_off() {
            return Err(backing_off);
        }
        let provider = self.clone();
        self.cache
            .try_get_with((), async move {
                // Its own task: a caller that goes away mid-refresh must not lose the
                // rotated refresh token Entra has already issued.
                tokio::spawn(async move { provider.redeem_and_record().await })
                    .await
                    .unwrap_or_else(|_| {
                        Err(TokenError::Unreachable {
                            reason: "the token refresh task ended abnormally".into(),
                        })
                    })
            })
            .await
            // The first caller to see a failure learns the backoff too.
            .map_err(|error| self.backing_off().unwrap_or(error))
    }

    /// Drops `refused` (Partner Center answered 401 to it), unless a newer token has already
    /// replaced it: a late 401 for an old token must not throw away a fresh one.
    pub async fn invalidate(&self, refused: &Arc<AccessToken>) {
        self.cache
            .entry(())
            .and_compute_with(|current| {
                let same = current.is_some_and(|entry| Arc::ptr_eq(entry.value(), refused));
                std::future::ready(if same { Op::Remove } else { Op::Nop })
            })
            .await;
    }

    fn refresh_ahead(self: &Arc<Self>) {
        if self.backing_off().is_some() || self.refreshing_ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let provider = self.clone();
        tokio::spawn(async move {
            if let Ok(token) = provider.redeem_and_record().await {
                provider.cache.insert((), token).await;
            }
            provider.refreshing_ahead.store(false, Ordering::Release);
        });
    }

    /// The last failure, while its backoff lasts.
    fn backing_off(&self) -> Option<Arc<TokenError>> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (cause, until) = failures.last.as_ref()?;
        let wait = until.saturating_duration_since(Instant::now());
        (!wait.is_zero()).then(|| {
            Arc::new(TokenError::BackingOff {
                retry_after_secs: wait.as_secs_f64().ceil() as u64,
                cause: cause.clone(),
            })
        })
    }

    async fn redeem_and_record(&self) -> Result<Arc<AccessToken>, TokenError> {
        let _one_token_request_at_a_time = self.redeem_lock.lock().await;
        // Someone else's request may have landed while we waited.
        if let Some(token) = self.cache.get(&()).await
            && Instant::now() < token.refresh_at
        {
            return Ok(token);
        }
        let result = self.redeem().await;
        Metrics::outcome(
            &self.metrics.token_refreshes,
            match &result {
                Ok(_) => "success",
                Err(TokenError::Refused { .. }) => "refused",
                Err(TokenError::InvalidResponse { .. }) => "invalid_response",
                Err(TokenError::Unavailable { .. }) => "transient",
                Err(TokenError::NotConfigured) => "not_configured",
                Err(_) => "transient",
            },
        );
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => *failures = Failures::default(),
            Err(error) => {
                // A refused refresh token waits longer each time; Entra being unreachable
                // or confused is retried at the base pace, so recovery is noticed soon.
                let base = || self.failure_backoff.build().next().unwrap_or_default();
                let wait = match error {
                    TokenError::Refused { .. } => failures
                        .delays
                        .get_or_insert_with(|| self.failure_backoff.build())
                        .next()
                        .unwrap_or(self.failure_backoff_max)
                        .min(self.failure_backoff_max),
                    // Entra said when to come back: no sooner, and no later than the cap.
                    TokenError::Unavailable {
                        retry_after_secs: Some(secs),
                        ..
                    } => base()
                        .max(Duration::from_secs(*secs))
                        .min(self.failure_backoff_max),
                    _ => base(),
                };
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    "not asking the token endpoint again before this wait"
                );
                failures.last = Some((Arc::new(error.clone()), Instant::now() + wait));
            }
        }
        result
    }

    async fn redeem(&self) -> Result<Arc<AccessToken>, TokenError> {
        self.adopt_a_newer_stored_token();
        let refresh_token = self
            .current_refresh_token()
            .ok_or(TokenError::NotConfigured)?;
        if !self.public_client && self.client_secret.is_none() {
            return Err(TokenError::NotConfigured);
        }
        let audience = match self.endpoint {
            TokenEndpoint::V1 => ("resource", self.resource.as_str()),
            TokenEndpoint::V2 => ("scope", self.scope.as_str()),
        };
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("refresh_token", refresh_token.expose_secret()),
            audience,
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.expose_secret()));
        }
        let started = Instant::now();
        let response = self
            .http
            .post(&self.token_url)
            .timeout(self.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                self.log(TokenError::Unreachable {
                    reason: e.without_url().to_string(),
                })
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await.map_err(|e| {
            self.log(TokenError::Unreachable {
                reason: e.without_url().to_string(),
            })
        })?;

        if !status.is_success() {
            let retry_after = retry_after
                .as_deref()
                .and_then(super::client::parse_retry_after);
            let answer = serde_json::from_slice::<TokenErrorResponse>(&body).ok();
            let failure = token_failure(status, answer, retry_after);
            if let TokenError::Refused {
                error,
                description,
                action,
            } = &failure
            {
                self.lifetimes().credential.refused = Some(Refusal {
                    at: unix_now(),
                    error: error.clone(),
                    code: aadsts_code(description),
                    action: (*action).to_owned(),
                });
                self.persist(false).await;
            }
            return Err(self.log(failure));
        }
        // Keep a rotated refresh token even if the rest of the answer turns out unusable.
        let rotated = match serde_json::from_slice::<Rotation>(&body) {
            Ok(Rotation {
                refresh_token: Some(rotated),
            }) => {
                *self
                    .refresh_token
                    .write()
                    .unwrap_or_else(|p| p.into_inner()) = Some(rotated);
                self.lifetimes().credential.rotated_at = Some(unix_now());
                true
            }
            _ => false,
        };
        let obtained = self.access_token_from(status, &body, started);
        if obtained.is_ok() || rotated {
            self.persist(rotated).await;
        }
        obtained
    }

    fn access_token_from(
        &self,
        status: reqwest::StatusCode,
        body: &[u8],
        started: Instant,
    ) -> Result<Arc<AccessToken>, TokenError> {
        let invalid = || TokenError::InvalidResponse {
            status: status.as_u16(),
        };
        let answer: TokenResponse =
            serde_json::from_slice(body).map_err(|_| self.log(invalid()))?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", answer.access_token.expose_secret()))
                .map_err(|_| self.log(invalid()))?;
        authorization.set_sensitive(true);
        let (cache_for, refresh_in) = token_schedule(
            Duration::from_secs(answer.expires_in),
            answer.refresh_in.map(Duration::from_secs),
            self.expiry_margin,
        );
        let signed_in = SignedIn::from_access_token(answer.access_token.expose_secret());
        {
            let mut lifetimes = self.lifetimes();
            lifetimes.access_token_expires_at =
                Some(SystemTime::now() + Duration::from_secs(answer.expires_in));
            let credential = &mut lifetimes.credential;
            credential.redeemed_at = Some(unix_now());
            credential.refused = None;
            if let Some(signed_in) = &signed_in {
                credential.remember_sign_in(signed_in);
            }
        }
        if signed_in.as_ref().is_some_and(|s| !s.mfa) {
            tracing::warn!(
                "the partner access token says the sign-in did not use MFA; Partner Center refuses App+User calls without it: run `partner-gateway login` and sign in with MFA"
            );
        }
        tracing::info!(
            expires_in_secs = answer.expires_in,
            cached_for_secs = cache_for.as_secs(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partner access token obtained"
        );
        Ok(Arc::new(AccessToken {
            authorization,
            cache_for,
            refresh_at: started + refresh_in,
        }))
    }

    /// Writes the token in use and its record to the token file, if there is one.
    async fn persist(&self, rotated: bool) {
        let Some(store) = &self.store else {
            if rotated {
                tracing::info!(
                    "partner refresh token rotated; the new one replaces the old in memory"
                );
            }
            return;
        };
        let Some(token) = self.current_refresh_token() else {
            return;
        };
        let record = self.lifetimes().credential.clone();
        match store.save(&token, &record).await {
            Ok(()) => {
                self.lifetimes().from_file = true;
                if rotated {
                    tracing::info!(path = %store.path.display(), "partner refresh token rotated; the new one is kept in memory and stored");
                }
            }
            Err(error) if rotated => {
                tracing::error!(path = %store.path.display(), %error, "partner refresh token rotated but could not be stored; a restart would use the older one")
            }
            Err(error) => {
                tracing::warn!(path = %store.path.display(), %error, "the refresh token's record could not be stored")
            }
        }
    }

    /// `partner-gateway login` may have stored a new token while this process runs: it is
    /// taken up at the next redemption, with no restart.
    fn adopt_a_newer_stored_token(&self) {
        let Some(store) = &self.store else { return };
        let Ok(Some((stored, record))) = store.load() else {
            return;
        };
        // Only a later sign-in: a file left behind by a failed write holds an older token.
        if record.signed_in_at.is_none()
            || record.signed_in_at <= self.lifetimes().credential.signed_in_at
        {
            return;
        }
        tracing::info!(path = %store.path.display(), "the token file holds a newer refresh token (from login); using it");
        *self
            .refresh_token
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(stored);
        let mut lifetimes = self.lifetimes();
        lifetimes.credential = record;
        lifetimes.from_file = true;
    }

    fn log(&self, error: TokenError) -> TokenError {
        tracing::error!(token_url = %self.token_url, %error, "cannot obtain a Partner Center access token");
        error
    }
}

/// What a failed token request means: Entra unavailable (by status or its error code) is
/// transient; anything else it says is a refusal, with what the operator must do about it.
fn token_failure(
    status: reqwest::StatusCode,
    answer: Option<TokenErrorResponse>,
    retry_after_secs: Option<u64>,
) -> TokenError {
    let transient_code = answer
        .as_ref()
        .is_some_and(|a| matches!(a.error.as_str(), "temporarily_unavailable" | "server_error"));
    if status.is_server_error() || status.as_u16() == 429 || transient_code {
        return TokenError::Unavailable {
            status: status.as_u16(),
            error: answer.map(|a| a.error).unwrap_or_default(),
            retry_after_secs,
        };
    }
    let Some(answer) = answer else {
        return TokenError::InvalidResponse {
            status: status.as_u16(),
        };
    };
    // The first line carries the AADSTS code and reason; the rest is trace IDs.
    let description: String = answer
        .error_description
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    TokenError::Refused {
        action: operator_action(&answer.error, &description),
        error: answer.error,
        description,
    }
}

/// Entra's refusal in terms of what to do next, by AADSTS code where it gives one.
fn operator_action(error: &str, description: &str) -> &'static str {
    const ACTIONS: [(&[&str], &str); 7] = [
        (
            &["AADSTS700082", "AADSTS70008", "AADSTS700084"],
            "the refresh token expired (unused too long): sign in again with `partner-gateway login`",
        ),
        (
            &["AADSTS50173", "AADSTS50133", "AADSTS50089", "AADSTS700081"],
            "the refresh token was revoked (password change or session revocation): sign in again with `partner-gateway login`",
        ),
        (
            &["AADSTS50076", "AADSTS50078", "AADSTS50079", "AADSTS50074"],
            "multi-factor authentication is required: sign in again with MFA (`partner-gateway login`)",
        ),
        (
            &["AADSTS65001", "AADSTS65004"],
            "consent is missing: grant admin consent to the app registration, then `partner-gateway login`",
        ),
        (
            &["AADSTS7000215", "AADSTS7000222"],
            "the client secret is invalid or expired: set a current one",
        ),
        (
            &["AADSTS700016", "AADSTS700007"],
            "the client id is not known in this tenant: check partner_token.client_id and tenant_id",
        ),
        (
            &["AADSTS90002", "AADSTS90072"],
            "the tenant is wrong: check partner_token.tenant_id",
        ),
    ];
    for (codes, action) in ACTIONS {
        if codes.iter().any(|code| {
            description
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == *code)
        }) {
            return action;
        }
    }
    match error {
        "invalid_grant" => {
            "the refresh token was refused: sign in again with `partner-gateway login`"
        }
        "invalid_client" | "unauthorized_client" => {
            "the app's credentials were refused: check client id and secret"
        }
        _ => "see Entra's description",
    }
}

/// How long a token stays cached (its lifetime less the margin, or half a lifetime shorter
/// than the margin) and when to start refreshing it: Entra's `refresh_in` if given, else at
/// 80 % of the lifetime (as MSAL does), never after it leaves the cache.
fn token_schedule(
    lifetime: Duration,
    refresh_in: Option<Duration>,
    margin: Duration,
) -> (Duration, Duration) {
    let cache_for = if lifetime > margin {
        lifetime - margin
    } else {
        lifetime / 2
    };
    let refresh_in = refresh_in.unwrap_or(lifetime.mul_f64(0.8)).min(cache_for);
    (cache_for, refresh_in)
}

fn optional_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Value>::deserialize(deserializer).map(|value| match value? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// v1 sends `"expires_in": "3600"`, v2 sends `3600`.
fn seconds_as_number_or_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrString {
        Number(u64),
        String(String),
    }
    match NumberOrString::deserialize(deserializer)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn entra_outages_are_transient_and_refusals_say_what_to_do() {
        let answer = |error: &str, description: &str| {
            Some(TokenErrorResponse {
                error: error.into(),
                error_description: description.into(),
            })
        };
        let status = |code: u16| reqwest::StatusCode::from_u16(code).unwrap();
        for (code, error) in [
            (503, "temporarily_unavailable"),
            (500, "server_error"),
            (429, "invalid_grant"),
            (400, "temporarily_unavailable"),
        ] {
            assert!(
                matches!(
                    token_failure(status(code), answer(error, "AADSTS50033"), Some(7)),
                    TokenError::Unavailable {
                        retry_after_secs: Some(7),
                        ..
                    }
                ),
                "{code} {error}"
            );
        }
        assert!(matches!(
            token_failure(status(502), None, None),
            TokenError::Unavailable { .. }
        ));
        assert!(matches!(
            token_failure(status(400), None, None),
            TokenError::InvalidResponse { status: 400 }
        ));
        let refusal = |description: &str| match token_failure(
            status(400),
            answer("invalid_grant", description),
            None,
        ) {
            TokenError::Refused { action, .. } => action,
            other => panic!("{other:?}"),
        };
        assert!(
            refusal("AADSTS700082: The refresh token has expired due to inactivity.")
                .contains("expired")
        );
        assert!(
            refusal("AADSTS50173: The provided grant has expired due to it being revoked")
                .contains("revoked")
        );
        assert!(refusal("AADSTS50076: Due to a configuration change ... you must use multi-factor authentication").contains("multi-factor"));
        assert!(
            refusal("AADSTS50078: Presented multi-factor authentication has expired")
                .contains("multi-factor")
        );
        assert!(refusal("AADSTS700007: Application identifier mismatch").contains("client id"));
        assert!(
            refusal("AADSTS700082x").contains("sign in again"),
            "the generic invalid_grant advice"
        );
    }

    #[test]
    fn a_token_is_refreshed_at_80_percent_and_dropped_at_the_margin() {
        let (cache_for, refresh_in) = token_schedule(60 * MINUTE, None, 5 * MINUTE);
        assert_eq!(cache_for, 55 * MINUTE);
        assert_eq!(refresh_in, 48 * MINUTE);
    }

    #[test]
    fn entras_refresh_in_wins_but_never_past_the_cache_lifetime() {
        let (_, refresh_in) = token_schedule(60 * MINUTE, Some(30 * MINUTE), 5 * MINUTE);
        assert_eq!(refresh_in, 30 * MINUTE);
        let (cache_for, refresh_in) = token_schedule(60 * MINUTE, Some(59 * MINUTE), 5 * MINUTE);
        assert_eq!(refresh_in, cache_for);
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_kept_for_half_its_life() {
        let (cache_for, refresh_in) = token_schedule(MINUTE, None, 5 * MINUTE);
        assert_eq!(cache_for, MINUTE / 2);
        assert_eq!(refresh_in, MINUTE / 2);
    }
}
