//! What the sandbox's Entra remembers: refresh-token families (one rotation chain per
//! sign-in, only each chain's newest token honoured), authorization codes, device codes and
//! the access tokens it issued, all bounded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::sandbox::SigningKey;
use crate::sandbox::state::{MAX_REMEMBERED, lock, random_secret};

pub const ACCESS_TOKEN_TTL_SECS: u64 = 3600;
const AUTHORIZATION_CODE_TTL: Duration = Duration::from_secs(600);
const MAX_FAMILIES: usize = 1_000;
/// Whom the sandbox's own configured refresh token belongs to.
pub const SANDBOX_OPERATOR: &str = "operator@sandbox-partner.onmicrosoft.com";

/// A person who signed in: reported back in the access tokens' claims.
#[derive(Clone, Debug)]
pub struct SignIn {
    pub user: String,
    pub mfa: bool,
}

struct Family {
    newest: String,
    sign_in: SignIn,
    /// Issued to a public client (no secret): redeemable without one.
    public: bool,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    sign_in: SignIn,
    expires_at: Instant,
}

pub enum DeviceDecision {
    Pending,
    Approved(SignIn),
    Declined,
}

struct DeviceFlow {
    user_code: String,
    client_id: String,
    expires_at: Instant,
    interval: Duration,
    last_poll: Option<Instant>,
    decision: DeviceDecision,
}

/// How a device-code poll is answered.
pub enum DevicePoll {
    Pending,
    SlowDown,
    Declined,
    Expired,
    Unknown,
    Approved { sign_in: SignIn },
}

pub struct Directory {
    pub client_id: String,
    pub client_secret: String,
    /// The tenant's object ID, as `tid` in access tokens.
    pub tenant_object_id: String,
    pub issuer: String,
    pub device_code_ttl: Duration,
    pub device_code_interval: Duration,
    families: std::sync::Mutex<Vec<Family>>,
    codes: std::sync::Mutex<HashMap<String, PendingCode>>,
    devices: std::sync::Mutex<HashMap<String, DeviceFlow>>,
    /// Access token → when it expires, and whether its sign-in used MFA.
    access_tokens: std::sync::Mutex<HashMap<String, (Instant, bool)>>,
}

/// Tokens handed out for one grant.
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    tid: &'a str,
    upn: &'a str,
    unique_name: &'a str,
    appid: &'a str,
    amr: &'a [&'a str],
    scp: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    /// Unique per token.
    uti: String,
}

impl Directory {
    pub fn new(issuer: String, device_code_ttl: Duration, device_code_interval: Duration) -> Self {
        Self {
            client_id: Uuid::new_v4().to_string(),
            client_secret: random_secret("cs"),
            tenant_object_id: Uuid::new_v4().to_string(),
            issuer,
            device_code_ttl,
            device_code_interval,
            families: std::sync::Mutex::new(vec![Family {
                newest: random_secret("rt"),
                sign_in: SignIn {
                    user: SANDBOX_OPERATOR.to_owned(),
                    mfa: true,
                },
                public: false,
            }]),
            codes: Default::default(),
            devices: Default::default(),
            access_tokens: Default::default(),
        }
    }

    /// The newest token of the sandbox's own family: what the sandbox gateway is given.
    pub fn sandbox_refresh_token(&self) -> String {
        lock(&self.families)[0].newest.clone()
    }

    /// Whether the token's family may be redeemed without a secret; `None` for a token that
    /// is no family's newest.
    pub fn family_is_public(&self, presented: &str) -> Option<bool> {
        lock(&self.families)
            .iter()
            .find(|f| f.newest == presented)
            .map(|f| f.public)
    }

    /// Redeems the refresh token if it is its family's newest, rotating it.
    pub fn redeem_refresh_token(
        &self,
        signing: &SigningKey,
        presented: &str,
    ) -> anyhow::Result<Option<Issued>> {
        let mut families = lock(&self.families);
        let Some(family) = families.iter_mut().find(|f| f.newest == presented) else {
            return Ok(None);
        };
        family.newest = random_secret("rt");
        let (refresh_token, sign_in) = (family.newest.clone(), family.sign_in.clone());
        drop(families);
        Ok(Some(Issued {
            access_token: self.issue_access_token(signing, &sign_in)?,
            refresh_token,
        }))
    }

    /// A new sign-in's first tokens (an approved code or device flow): a family of its own.
    pub fn start_family(
        &self,
        signing: &SigningKey,
        sign_in: SignIn,
        public: bool,
    ) -> anyhow::Result<Issued> {
        let access_token = self.issue_access_token(signing, &sign_in)?;
        let refresh_token = random_secret("rt");
        let mut families = lock(&self.families);
        if families.len() >= MAX_FAMILIES {
            // The sandbox's own family (the first) is never dropped.
            families.remove(1);
        }
        families.push(Family {
            newest: refresh_token.clone(),
            sign_in,
            public,
        });
        Ok(Issued {
            access_token,
            refresh_token,
        })
    }

    fn issue_access_token(&self, signing: &SigningKey, sign_in: &SignIn) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
        let methods: &[&str] = if sign_in.mfa {
            &["pwd", "mfa"]
        } else {
            &["pwd"]
        };
        let token = signing.sign(&AccessTokenClaims {
            aud: "https://api.partnercenter.microsoft.com",
            iss: &self.issuer,
            tid: &self.tenant_object_id,
            upn: &sign_in.user,
            unique_name: &sign_in.user,
            appid: &self.client_id,
            amr: methods,
            scp: "user_impersonation",
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            uti: Uuid::new_v4().simple().to_string(),
        })?;
        let mut tokens = lock(&self.access_tokens);
        tokens.retain(|_, (expires, _)| *expires > Instant::now());
        if tokens.len() < MAX_REMEMBERED {
            tokens.insert(
                token.clone(),
                (
                    Instant::now() + Duration::from_secs(ACCESS_TOKEN_TTL_SECS),
                    sign_in.mfa,
                ),
            );
        }
        Ok(token)
    }

    /// `Some(mfa)` for a live access token this Entra issued.
    pub fn access_token_mfa(&self, token: &str) -> Option<bool> {
        lock(&self.access_tokens)
            .get(token)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, mfa)| *mfa)
    }

    pub fn remember_code(
        &self,
        client_id: &str,
        redirect_uri: &str,
        code_challenge: &str,
        sign_in: SignIn,
    ) -> String {
        let code = random_secret("code");
        let mut codes = lock(&self.codes);
        codes.retain(|_, c| c.expires_at > Instant::now());
        if codes.len() >= MAX_REMEMBERED {
            codes.clear();
        }
        codes.insert(
            code.clone(),
            PendingCode {
                client_id: client_id.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                code_challenge: code_challenge.to_owned(),
                sign_in,
                expires_at: Instant::now() + AUTHORIZATION_CODE_TTL,
            },
        );
        code
    }

    /// Redeems an authorization code once; the error is Entra's AADSTS description.
    pub fn redeem_code(
        &self,
        signing: &SigningKey,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        public: bool,
    ) -> anyhow::Result<Result<Issued, &'static str>> {
        let Some(pending) = lock(&self.codes).remove(code) else {
            return Ok(Err(
                "AADSTS70008: The provided authorization code has expired or was already redeemed (sandbox).",
            ));
        };
        if pending.expires_at <= Instant::now() {
            return Ok(Err(
                "AADSTS70008: The provided authorization code has expired (sandbox).",
            ));
        }
        if pending.client_id != client_id {
            return Ok(Err(
                "AADSTS700007: The authorization code was issued to another client (sandbox).",
            ));
        }
        if pending.redirect_uri != redirect_uri {
            return Ok(Err(
                "AADSTS50011: The redirect URI does not match the one the code was issued for (sandbox).",
            ));
        }
        if crate::login::code_challenge(code_verifier) != pending.code_challenge {
            return Ok(Err(
                "AADSTS501481: The code verifier does not match the code challenge (sandbox).",
            ));
        }
        Ok(Ok(self.start_family(signing, pending.sign_in, public)?))
    }

    /// A new device flow: (device code, user code).
    pub fn start_device_flow(&self, client_id: &str) -> (String, String) {
        let device_code = random_secret("dc");
        let letters: String = Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .filter(char::is_ascii_alphabetic)
            .chain("KQWXYZ".chars())
            .take(8)
            .collect::<String>()
            .to_uppercase();
        let user_code = format!("{}-{}", &letters[..4], &letters[4..]);
        let mut devices = lock(&self.devices);
        devices.retain(|_, d| d.expires_at > Instant::now());
        if devices.len() >= MAX_REMEMBERED {
            devices.clear();
        }
        devices.insert(
            device_code.clone(),
            DeviceFlow {
                user_code: user_code.clone(),
                client_id: client_id.to_owned(),
                expires_at: Instant::now() + self.device_code_ttl,
                interval: self.device_code_interval,
                last_poll: None,
                decision: DeviceDecision::Pending,
            },
        );
        (device_code, user_code)
    }

    /// The person at the verification page decides; `false` for an unknown or expired code.
    pub fn decide_device_flow(&self, user_code: &str, decision: DeviceDecision) -> bool {
        let wanted = user_code.trim().to_uppercase();
        let mut devices = lock(&self.devices);
        match devices
            .values_mut()
            .find(|d| d.user_code == wanted && d.expires_at > Instant::now())
        {
            Some(flow) if matches!(flow.decision, DeviceDecision::Pending) => {
                flow.decision = decision;
                true
            }
            _ => false,
        }
    }

    pub fn poll_device_flow(&self, device_code: &str, client_id: &str) -> DevicePoll {
        let mut devices = lock(&self.devices);
        let Some(flow) = devices
            .get_mut(device_code)
            .filter(|f| f.client_id == client_id)
        else {
            return DevicePoll::Unknown;
        };
        let now = Instant::now();
        if flow.expires_at <= now {
            devices.remove(device_code);
            return DevicePoll::Expired;
        }
        // A little slack for the network: a client that waits `interval` is never told off.
        let too_soon = flow.last_poll.is_some_and(|last| {
            now.duration_since(last) + Duration::from_millis(100) < flow.interval
        });
        flow.last_poll = Some(now);
        if too_soon {
            return DevicePoll::SlowDown;
        }
        match &flow.decision {
            DeviceDecision::Pending => DevicePoll::Pending,
            DeviceDecision::Declined => {
                devices.remove(device_code);
                DevicePoll::Declined
            }
            DeviceDecision::Approved(sign_in) => {
                let sign_in = sign_in.clone();
                devices.remove(device_code);
                DevicePoll::Approved { sign_in }
            }
        }
    }
}
