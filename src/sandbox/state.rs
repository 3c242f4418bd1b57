use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::SigningKey;
use super::entra::directory::Directory;

/// Bounds on what the sandbox remembers, so a long-running sandbox cannot grow without limit.
pub const MAX_REMEMBERED: usize = 10_000;

pub struct SandboxState {
    pub issuer: String,
    pub audience: String,
    pub caller_token_ttl_secs: u64,
    pub signing: SigningKey,
    pub approval_delay: Duration,
    /// Only each sign-in's newest refresh token is honoured: a gateway that ignores rotation
    /// fails here.
    pub entra: Directory,
    pub partner: Mutex<PartnerCenterState>,
}

pub struct PartnerCenterState {
    pub customers: HashMap<Uuid, Vec<SandboxQualification>>,
    pub validation_codes: Vec<SandboxValidationCode>,
    /// Answers by `MS-RequestId`: a repeated write gets the first answer again.
    pub answers: HashMap<Uuid, (u16, Value)>,
}

pub struct SandboxQualification {
    pub qualification: String,
    pub vetting: Vetting,
    pub created: OffsetDateTime,
    pub created_at: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Vetting {
    /// InReview until the approval delay has passed, then Approved or Denied.
    Education {
        denied: bool,
    },
    Approved,
    None,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxValidationCode {
    pub partner_id: String,
    pub organization_name: String,
    pub validation_id: String,
    pub max_creates: u32,
    pub remaining_creates: u32,
    pub e_tag: String,
}

#[derive(Serialize)]
struct CallerClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    azp: &'a str,
    name: &'a str,
    roles: &'a [String],
    iat: u64,
    nbf: u64,
    exp: u64,
}

impl SandboxState {
    pub fn new(
        issuer: String,
        audience: String,
        approval_delay: Duration,
        caller_token_ttl_secs: u64,
        device_code_ttl: Duration,
        device_code_interval: Duration,
    ) -> anyhow::Result<Self> {
        let partner_id = Uuid::new_v4().to_string();
        let code = |id: &str, org: &str, creates: u32| SandboxValidationCode {
            partner_id: partner_id.clone(),
            organization_name: org.to_owned(),
            validation_id: id.to_owned(),
            max_creates: creates,
            remaining_creates: creates,
            e_tag: Uuid::new_v4().simple().to_string(),
        };
        Ok(Self {
            entra: Directory::new(
                format!("{issuer}/entra/{}/", super::SANDBOX_TENANT),
                device_code_ttl,
                device_code_interval,
            ),
            issuer,
            audience,
            caller_token_ttl_secs,
            signing: SigningKey::generate(format!("sandbox-{}", Uuid::new_v4().simple()))?,
            approval_delay,
            partner: Mutex::new(PartnerCenterState {
                customers: HashMap::new(),
                validation_codes: vec![
                    code("123456", "Contoso Government (sandbox)", 100),
                    code("654321", "Fabrikam County (sandbox)", 1),
                ],
                answers: HashMap::new(),
            }),
        })
    }

    pub fn mint_caller_token(
        &self,
        roles: Option<Vec<String>>,
        subject: Option<String>,
    ) -> anyhow::Result<String> {
        let now = OffsetDateTime::now_utc().unix_timestamp() as u64;
        let roles = roles.unwrap_or_else(|| vec!["Qualifications.ReadWrite".to_owned()]);
        let subject = subject.unwrap_or_else(|| "sandbox-user".to_owned());
        self.signing.sign(&CallerClaims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &subject,
            azp: super::SANDBOX_CALLER_APP,
            name: "Sandbox caller",
            roles: &roles,
            iat: now,
            nbf: now,
            exp: now + self.caller_token_ttl_secs,
        })
    }
}

impl PartnerCenterState {
    pub fn remember_answer(&mut self, request_id: Uuid, answer: (u16, Value)) {
        if self.answers.len() >= MAX_REMEMBERED {
            self.answers.clear();
        }
        self.answers.insert(request_id, answer);
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn random_secret(prefix: &str) -> String {
    format!(
        "sandbox-{prefix}-{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    )
}
