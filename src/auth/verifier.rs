use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::caller::{AccessPolicy, Identity};
use super::keys::{KeyStore, KeyTiming, PublicKey, SigningKeys};
use super::verified_cache::{VerifiedToken, VerifiedTokens, token_digest, unix_now};
use super::{AuthError, Caller};
use crate::configuration::{CallerAuthSettings, TrustedIssuer};
use crate::metrics::Metrics;

/// Tokens larger than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Checks callers' bearer tokens against the trusted issuers' keys and claims.
pub struct CallerVerifier {
    issuers: Vec<Issuer>,
    /// One per distinct key source: Entra's v1 and v2 issuers of a tenant share one.
    key_stores: Vec<Arc<KeyStore>>,
    policy: Arc<AccessPolicy>,
    allowed_app_ids: Vec<String>,
    max_lifetime_secs: Option<u64>,
    verified: Option<VerifiedTokens>,
    metrics: Metrics,
}

struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway_secs: u64,
    keys: Arc<KeyStore>,
}

/// How ready each issuer is to authenticate its callers.
pub struct IssuerReadiness {
    pub issuer: String,
    pub keys_held: bool,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    oid: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    name: Option<String>,
    exp: Option<u64>,
    iat: Option<u64>,
    nbf: Option<u64>,
    #[serde(default)]
    roles: Vec<String>,
    scp: Option<String>,
}

impl CallerVerifier {
    pub fn new(http: reqwest::Client, settings: &CallerAuthSettings, metrics: Metrics) -> Self {
        let timing = KeyTiming {
            ttl: Duration::from_secs(settings.jwks_ttl_secs),
            retry_after_failure: Duration::from_secs(settings.jwks_retry_secs),
            unknown_kid_refetch: Duration::from_secs(settings.unknown_kid_refetch_secs),
            fetch_timeout: Duration::from_millis(settings.fetch_timeout_ms),
        };
        let mut stores = HashMap::new();
        let issuers = settings
            .issuers
            .iter()
            .filter_map(|trusted: &TrustedIssuer| {
                let source = trusted.key_source()?;
                let keys = stores
                    .entry(source.clone())
                    .or_insert_with(|| {
                        Arc::new(KeyStore::new(http.clone(), source, timing, metrics.clone()))
                    })
                    .clone();
                Some(Issuer {
                    issuer: trusted.issuer.clone(),
                    audiences: trusted.audiences.clone(),
                    algorithms: trusted.algorithms.clone(),
                    leeway_secs: trusted.leeway_secs,
                    keys,
                })
            })
            .collect();
        Self {
            issuers,
            key_stores: stores.into_values().collect(),
            policy: Arc::new(AccessPolicy::from_settings(settings)),
            allowed_app_ids: settings
                .allowed_app_ids
                .iter()
                .filter(|id| !id.trim().is_empty())
                .cloned()
                .collect(),
            max_lifetime_secs: Some(settings.max_token_lifetime_secs).filter(|&s| s > 0),
            verified: Some(settings.verified_token_cache_size)
                .filter(|&size| size > 0)
                .map(VerifiedTokens::new),
            metrics,
        }
    }

    /// Fetches every issuer's keys now and keeps them fresh; abort the tasks to stop.
    pub fn spawn_key_refreshers(&self) -> Vec<JoinHandle<()>> {
        self.key_stores
            .iter()
            .map(|store| tokio::spawn(store.clone().refresh_in_background()))
            .collect()
    }

    pub fn readiness(&self) -> Vec<IssuerReadiness> {
        self.issuers
            .iter()
            .map(|i| IssuerReadiness {
                issuer: i.issuer.clone(),
                keys_held: i.keys.held().is_some(),
            })
            .collect()
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::InvalidToken("token too large"));
        }
        let digest = token_digest(token);
        if let Some(caller) = self.remembered(&digest) {
            Metrics::result(&self.metrics.verified_token_cache, "hit");
            return Ok(caller);
        }
        if self.verified.is_some() {
            Metrics::result(&self.metrics.verified_token_cache, "miss");
        }
        let verified = self.verify_signed(token).await?;
        self.check_app_allowed(&verified.caller)?;
        let caller = verified.caller.clone();
        if let Some(cache) = &self.verified {
            cache.insert(digest, verified);
        }
        Ok(caller)
    }

    /// A token that passed every check before, while the key that signed it is still held.
    fn remembered(&self, digest: &[u8; 32]) -> Option<Caller> {
        let cache = self.verified.as_ref()?;
        let entry = cache.get(digest)?;
        let key_still_held = self.issuers[entry.issuer_index]
            .keys
            .held()
            .is_some_and(|keys| keys.holds(&entry.key_fingerprint));
        if key_still_held {
            Some(entry.caller.clone())
        } else {
            cache.forget(digest);
            None
        }
    }

    async fn verify_signed(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        let header = decode_header(token).map_err(|_| header_problem(token))?;
        // RFC 7515 §4.1.11: extensions listed as critical must be understood, and this
        // gateway understands none.
        if header.crit.is_some() {
            return Err(AuthError::InvalidToken("unsupported critical header"));
        }
        let (issuer_index, issuer) = self.issuer_of(token)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(AuthError::InvalidToken("algorithm not allowed"));
        }

        let keys = issuer
            .keys
            .current()
            .await
            .map_err(|_| AuthError::KeysUnavailable)?;
        let keys = match &header.kid {
            Some(kid) if !keys.knows_kid(kid) => issuer
                .keys
                .refetch_for_unknown_kid(kid)
                .await
                .map_err(|_| AuthError::KeysUnavailable)?,
            _ => keys,
        };
        let (claims, key) = self.check_signature_and_claims(token, &header, issuer, &keys)?;
        self.check_times(&claims, issuer.leeway_secs)?;

        let expires_at = claims.exp.unwrap_or_default();
        // A blank `oid` or `sub` is no identity: it would share one rate-limit bucket and one
        // idempotency namespace with every other blank caller, and leave the audit blank.
        let present = |claim: Option<String>| claim.filter(|value| !value.trim().is_empty());
        let subject = present(claims.oid)
            .or(present(claims.sub))
            .ok_or(AuthError::InvalidToken("required claim missing"))?;
        let identity = Identity {
            issuer: claims.iss.unwrap_or_default(),
            subject,
            app_id: claims.azp.or(claims.appid),
            name: claims.name,
            roles: claims.roles,
            scopes: claims.scp.unwrap_or_default(),
        };
        Ok(VerifiedToken {
            caller: Caller::new(identity, self.policy.clone()),
            issuer_index,
            key_fingerprint: key.fingerprint,
            expires_at,
        })
    }

    /// The trusted issuer the token claims to come from; the signature is checked next,
    /// with that issuer's keys and rules.
    fn issuer_of(&self, token: &str) -> Result<(usize, &Issuer), AuthError> {
        #[derive(Deserialize)]
        struct Unverified {
            iss: Option<serde_json::Value>,
        }
        let claimed: Unverified = token
            .split('.')
            .nth(1)
            .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(AuthError::InvalidToken("malformed token"))?;
        let iss = match claimed.iss {
            None => return Err(AuthError::InvalidToken("required claim missing")),
            Some(serde_json::Value::String(iss)) => iss,
            Some(_) => return Err(AuthError::InvalidToken("malformed token")),
        };
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
            .ok_or(AuthError::InvalidToken("issuer not trusted"))
    }

    fn check_signature_and_claims<'k>(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &Issuer,
        keys: &'k SigningKeys,
    ) -> Result<(Claims, &'k PublicKey), AuthError> {
        let candidates = keys.candidates(header.kid.as_deref(), header.alg);
        if candidates.is_empty() {
            return Err(AuthError::InvalidToken("unknown signing key"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&issuer.audiences);
        // `sub` too: a caller without one would leave a blank in the audit trail.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = issuer.leeway_secs;
        validation.validate_nbf = true;

        for key in candidates {
            match decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => return Ok((data.claims, key)),
                // Not this key: try the next one a kid-less token could be signed with.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
                // The right key, and a claim failed: that is the answer.
                Err(e) => return Err(AuthError::InvalidToken(describe(e.kind()))),
            }
        }
        Err(AuthError::InvalidToken("signature invalid"))
    }

    /// `iat` in the future and over-long lifetimes; jsonwebtoken checks neither.
    fn check_times(&self, claims: &Claims, leeway_secs: u64) -> Result<(), AuthError> {
        let now = unix_now();
        if claims.iat.is_some_and(|iat| iat > now + leeway_secs) {
            return Err(AuthError::InvalidToken("token issued in the future"));
        }
        if let Some(max) = self.max_lifetime_secs {
            let start = claims.iat.or(claims.nbf).unwrap_or(now);
            if claims.exp.unwrap_or_default().saturating_sub(start) > max {
                return Err(AuthError::InvalidToken("token lifetime too long"));
            }
        }
        Ok(())
    }

    fn check_app_allowed(&self, caller: &Caller) -> Result<(), AuthError> {
        if self.allowed_app_ids.is_empty() {
            return Ok(());
        }
        match &caller.app_id {
            Some(app)
                if self
                    .allowed_app_ids
                    .iter()
                    .any(|allowed| **allowed == **app) =>
            {
                Ok(())
            }
            _ => Err(AuthError::AppNotAllowed),
        }
    }
}

/// `alg: none` (which jsonwebtoken cannot even name) is an algorithm refused, not a
/// malformed token; anything else unreadable in the header is malformed.
fn header_problem(token: &str) -> AuthError {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
    }
    let names_an_unknown_algorithm = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|json| serde_json::from_slice::<RawHeader>(&json).ok())
        .is_some_and(|h| h.alg.parse::<Algorithm>().is_err());
    if names_an_unknown_algorithm {
        AuthError::InvalidToken("algorithm not allowed")
    } else {
        AuthError::InvalidToken("malformed token")
    }
}

/// The name of the failed check, and nothing that would help an attacker more.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "issuer not trusted",
        ErrorKind::InvalidAudience => "audience not accepted",
        ErrorKind::InvalidSignature => "signature invalid",
        ErrorKind::MissingRequiredClaim(_) => "required claim missing",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        _ => "malformed token",
    }
}
