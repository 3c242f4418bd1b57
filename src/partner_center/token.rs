//! The App+User access token, redeemed from the stored refresh token and cached until shortly
//! before it expires. Concurrent misses share one request to the token endpoint.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::configuration::{PartnerTokenSettings, TokenEndpoint};

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("the partner credentials are not configured")]
    NotConfigured,
    /// Entra's own words (`invalid_grant`, an AADSTS code); never the secrets sent.
    #[error("the token endpoint refused the refresh token: {error}: {description}")]
    Refused { error: String, description: String },
    #[error("the token endpoint answered {status} with an unreadable body")]
    InvalidResponse { status: u16 },
    #[error("the token endpoint could not be reached: {reason}")]
    Unreachable { reason: String },
}

/// An access token for Partner Center, kept only as the ready-made (sensitive) header value.
#[derive(Clone)]
pub struct AccessToken {
    authorization: HeaderValue,
    cache_for: Duration,
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
}

pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    endpoint: TokenEndpoint,
    client_id: String,
    client_secret: Option<SecretString>,
    /// Replaced in memory whenever Entra rotates it.
    refresh_token: RwLock<Option<SecretString>>,
    resource: String,
    scope: String,
    expiry_margin: Duration,
    cache: Cache<(), Arc<AccessToken>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(deserialize_with = "seconds_as_number_or_string")]
    expires_in: u64,
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
    pub fn new(http: reqwest::Client, settings: &PartnerTokenSettings) -> Self {
        Self {
            http,
            token_url: settings.token_url(),
            endpoint: settings.endpoint,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            refresh_token: RwLock::new(settings.refresh_token.clone()),
            resource: settings.resource.clone(),
            scope: settings.scope.clone(),
            expiry_margin: Duration::from_secs(settings.expiry_margin_secs),
            cache: Cache::builder()
                .max_capacity(1)
                .expire_after(UntilNearExpiry)
                .build(),
        }
    }

    /// A valid token: the cached one, or one fresh from the token endpoint. Callers that miss
    /// together wait on the same single request.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<AccessToken>, Arc<TokenError>> {
        let provider = self.clone();
        self.cache
            .try_get_with((), async move {
                // Its own task: a caller that goes away mid-refresh must not lose the
                // rotated refresh token Entra has already issued.
                tokio::spawn(async move { provider.redeem().await })
                    .await
                    .unwrap_or_else(|_| {
                        Err(TokenError::Unreachable {
                            reason: "the token refresh task ended abnormally".into(),
                        })
                    })
            })
            .await
    }

    /// Forget the cached token, e.g. after Partner Center refused it.
    pub async fn invalidate(&self) {
        self.cache.invalidate(&()).await;
    }

    async fn redeem(&self) -> Result<Arc<AccessToken>, TokenError> {
        let refresh_token = self
            .refresh_token
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(TokenError::NotConfigured)?;
        let client_secret = self
            .client_secret
            .as_ref()
            .ok_or(TokenError::NotConfigured)?;
        let audience = match self.endpoint {
            TokenEndpoint::V1 => ("resource", self.resource.as_str()),
            TokenEndpoint::V2 => ("scope", self.scope.as_str()),
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", client_secret.expose_secret()),
            ("refresh_token", refresh_token.expose_secret()),
            audience,
        ];
        let started = Instant::now();
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                self.log(TokenError::Unreachable {
                    reason: e.without_url().to_string(),
                })
            })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            self.log(TokenError::Unreachable {
                reason: e.without_url().to_string(),
            })
        })?;

        if !status.is_success() {
            let error = match serde_json::from_slice::<TokenErrorResponse>(&body) {
                Ok(e) => TokenError::Refused {
                    error: e.error,
                    // The first line carries the AADSTS code and reason; the rest is trace IDs.
                    description: e
                        .error_description
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect(),
                },
                Err(_) => TokenError::InvalidResponse {
                    status: status.as_u16(),
                },
            };
            return Err(self.log(error));
        }
        // Keep a rotated refresh token even if the rest of the answer turns out unusable.
        if let Ok(Rotation {
            refresh_token: Some(rotated),
        }) = serde_json::from_slice::<Rotation>(&body)
        {
            *self
                .refresh_token
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(rotated);
            tracing::info!("partner refresh token rotated; the new one replaces the old in memory");
        }
        let invalid = || TokenError::InvalidResponse {
            status: status.as_u16(),
        };
        let answer: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| self.log(invalid()))?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", answer.access_token.expose_secret()))
                .map_err(|_| self.log(invalid()))?;
        authorization.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in);
        let cache_for = if lifetime > self.expiry_margin {
            lifetime - self.expiry_margin
        } else {
            lifetime / 2
        };
        tracing::info!(
            expires_in_secs = answer.expires_in,
            cached_for_secs = cache_for.as_secs(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partner access token obtained"
        );
        Ok(Arc::new(AccessToken {
            authorization,
            cache_for,
        }))
    }

    fn log(&self, error: TokenError) -> TokenError {
        tracing::error!(token_url = %self.token_url, %error, "cannot obtain a Partner Center access token");
        error
    }
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
