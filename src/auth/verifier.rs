use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::{AuthError, Caller, KeyStore, RolePolicy};
use crate::configuration::CallerAuthSettings;

/// Tokens larger than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

pub struct CallerVerifier {
    keys: KeyStore,
    issuer: String,
    audience: String,
    leeway_secs: u64,
    algorithms: Vec<Algorithm>,
    policy: Arc<RolePolicy>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    oid: Option<String>,
    azp: Option<String>,
    appid: Option<String>,
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// Delegated scopes, space-separated.
    scp: Option<String>,
}

impl CallerVerifier {
    pub fn new(keys: KeyStore, settings: &CallerAuthSettings) -> Self {
        Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway_secs: settings.leeway_secs,
            algorithms: settings.algorithms.clone(),
            policy: Arc::new(RolePolicy {
                read: settings.read_roles.clone(),
                write: settings.write_roles.clone(),
            }),
        }
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::InvalidToken("token too large"));
        }
        let header =
            decode_header(token).map_err(|_| AuthError::InvalidToken("malformed token"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::InvalidToken("algorithm not allowed"));
        }

        let keys = self
            .keys
            .current()
            .await
            .map_err(|_| AuthError::KeysUnavailable)?;
        let keys = match &header.kid {
            Some(kid) if keys.find(kid).is_none() => self
                .keys
                .refetch_for_unknown_kid()
                .await
                .map_err(|_| AuthError::KeysUnavailable)?,
            _ => keys,
        };
        let candidates = candidate_keys(&keys, header.kid.as_deref(), header.alg);
        if candidates.is_empty() {
            return Err(AuthError::InvalidToken("unknown signing key"));
        }

        let validation = self.validation(header.alg);
        let mut last_error = AuthError::InvalidToken("unknown signing key");
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match decode::<Claims>(token, &key, &validation) {
                Ok(data) => return Ok(self.caller_from(data.claims)),
                Err(e) => last_error = AuthError::InvalidToken(describe(e.kind())),
            }
        }
        Err(last_error)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        // `sub` too: a caller without one would leave a blank in the audit trail.
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation
    }

    fn caller_from(&self, claims: Claims) -> Caller {
        let granted: HashSet<&str> = claims
            .roles
            .iter()
            .map(String::as_str)
            .chain(claims.scp.as_deref().unwrap_or_default().split_whitespace())
            .collect();
        let any_of = |wanted: &[String]| wanted.iter().any(|w| granted.contains(w.as_str()));
        Caller {
            granted_read: any_of(&self.policy.read),
            granted_write: any_of(&self.policy.write),
            policy: self.policy.clone(),
            issuer: claims.iss,
            subject: claims.oid.or(claims.sub).unwrap_or_default(),
            app_id: claims.azp.or(claims.appid),
            name: claims.name,
        }
    }
}

/// The key named by `kid`, or, for a token without one, every key that fits the algorithm.
fn candidate_keys<'a>(keys: &'a JwkSet, kid: Option<&str>, alg: Algorithm) -> Vec<&'a Jwk> {
    let fits = |jwk: &&Jwk| {
        let family_fits = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            AlgorithmParameters::EllipticCurve(_) => {
                matches!(alg, Algorithm::ES256 | Algorithm::ES384)
            }
            AlgorithmParameters::OctetKeyPair(_) => alg == Algorithm::EdDSA,
            _ => false,
        };
        let declared_alg_fits = jwk
            .common
            .key_algorithm
            .is_none_or(|declared| declared.to_string() == format!("{alg:?}"));
        let for_signatures = matches!(
            jwk.common.public_key_use,
            None | Some(PublicKeyUse::Signature)
        );
        family_fits && declared_alg_fits && for_signatures
    };
    match kid {
        Some(kid) => keys.find(kid).into_iter().filter(fits).collect(),
        None => keys.keys.iter().filter(fits).collect(),
    }
}

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
