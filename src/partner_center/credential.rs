//! The partner credential as an operator sees it: the refresh-token file (written atomically,
//! mode 0600, by `login` and by every redemption), what is known of the sign-in behind it
//! (user, tenant, MFA), and its health against Entra's 90-day inactivity limit.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Entra drops a refresh token left unused this long; each redemption's new one starts again.
pub const INACTIVITY_LIMIT: Duration = Duration::from_secs(90 * 24 * 3600);
const DAY_SECS: u64 = 24 * 3600;

/// What is known about the refresh token in use, besides the token itself. Times are Unix
/// seconds. Kept in the token file beside the token, and in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// When Entra last handed out a new refresh token (a redemption or a sign-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<u64>,
    /// When `partner-gateway login` obtained the token's first ancestor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_at: Option<u64>,
    /// `browser` or `device-code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_in_with: Option<String>,
    /// The last redemption Entra accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether the last access token says the sign-in used MFA (`amr` has `mfa`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
    /// Entra's last refusal of the token, cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub at: u64,
    /// Entra's `error`, such as `invalid_grant`.
    pub error: String,
    /// The AADSTS code, when Entra gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What the operator must do.
    pub action: String,
}

impl CredentialRecord {
    /// The token's last renewal: the 90 days count from here.
    pub fn renewed_at(&self) -> Option<u64> {
        self.rotated_at.max(self.signed_in_at)
    }

    /// A sign-in read from an access token Entra issued for this refresh token.
    pub fn remember_sign_in(&mut self, signed_in: &SignedIn) {
        if signed_in.user.is_some() {
            self.user.clone_from(&signed_in.user);
        }
        if signed_in.tenant.is_some() {
            self.tenant.clone_from(&signed_in.tenant);
        }
        self.mfa = Some(signed_in.mfa);
    }
}

/// Who signed in, as an access token's claims tell it. Read without verifying the token:
/// reported to operators, never trusted for anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user: Option<String>,
    pub tenant: Option<String>,
    pub mfa: bool,
}

impl SignedIn {
    /// `None` when the token is not a JWT (Entra's tokens for Partner Center are).
    pub fn from_access_token(token: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Claims {
            upn: Option<String>,
            preferred_username: Option<String>,
            unique_name: Option<String>,
            email: Option<String>,
            tid: Option<String>,
            #[serde(default)]
            amr: Vec<String>,
        }
        let payload = token.split('.').nth(1)?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        Some(Self {
            user: claims
                .upn
                .or(claims.preferred_username)
                .or(claims.unique_name)
                .or(claims.email),
            tenant: claims.tid,
            mfa: claims.amr.iter().any(|method| method == "mfa"),
        })
    }
}

/// Where the refresh token in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    File(PathBuf),
    /// `partner_token.refresh_token` (the environment, usually).
    Setting,
    None,
}

impl CredentialSource {
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("file {}", path.display()),
            Self::Setting => format!(
                "setting partner_token.refresh_token ({})",
                crate::configuration::env_name("partner_token.refresh_token")
            ),
            Self::None => "none".to_owned(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Setting => "setting",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Usable,
    /// Within `warn_days` of the inactivity limit.
    Expiring,
    /// Its age cannot be told (a token from the settings, never rotated here).
    Unknown,
    Unusable,
}

impl CredentialStatus {
    pub const ALL: [&'static str; 4] = ["usable", "expiring", "unknown", "unusable"];

    pub fn label(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// For cron and probes: 0 usable, 1 expiring or unknown, 2 unusable.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Usable => 0,
            Self::Expiring | Self::Unknown => 1,
            Self::Unusable => 2,
        }
    }
}

/// The credential's state and what to do about it.
#[derive(Debug, Clone)]
pub struct CredentialHealth {
    pub status: CredentialStatus,
    pub source: CredentialSource,
    pub record: CredentialRecord,
    /// When Entra drops the token if it is not redeemed before (Unix seconds).
    pub inactivity_expires_at: Option<u64>,
    pub days_left: Option<u64>,
    pub warn_days: u64,
    /// What the operator should do; `None` when nothing.
    pub action: Option<String>,
}

impl CredentialHealth {
    pub fn assess(
        source: CredentialSource,
        record: CredentialRecord,
        warn_days: u64,
        now: u64,
    ) -> Self {
        let inactivity_expires_at = record
            .renewed_at()
            .map(|at| at + INACTIVITY_LIMIT.as_secs());
        // Rounded up, as a calendar counts: 90 right after a sign-in, 0 on the last day.
        let days_left = inactivity_expires_at.map(|at| at.saturating_sub(now).div_ceil(DAY_SECS));
        let expired = inactivity_expires_at.is_some_and(|at| at <= now);
        let login = "run `partner-gateway login`";
        let (status, action) = if source == CredentialSource::None {
            (
                CredentialStatus::Unusable,
                Some(format!("there is no refresh token: {login}")),
            )
        } else if let Some(refused) = record
            .refused
            .as_ref()
            .filter(|r| record.redeemed_at.is_none_or(|ok| r.at >= ok))
        {
            (
                CredentialStatus::Unusable,
                Some(format!(
                    "Entra refused the refresh token ({}{}): {}",
                    refused.error,
                    refused
                        .code
                        .as_ref()
                        .map(|c| format!(" {c}"))
                        .unwrap_or_default(),
                    refused.action
                )),
            )
        } else if record.mfa == Some(false) {
            (
                CredentialStatus::Unusable,
                Some(format!(
                    "the sign-in did not use MFA, which Partner Center requires for App+User calls: {login} and sign in with MFA"
                )),
            )
        } else if let Some(days) = days_left {
            if expired {
                (
                    CredentialStatus::Unusable,
                    Some(format!(
                        "the refresh token went unused past Entra's 90-day limit: {login}"
                    )),
                )
            } else if days <= warn_days {
                (
                    CredentialStatus::Expiring,
                    Some(format!(
                        "the refresh token expires in {days} days unless the gateway redeems it before: start the gateway, or {login}"
                    )),
                )
            } else {
                (CredentialStatus::Usable, None)
            }
        } else {
            (
                CredentialStatus::Unknown,
                Some(format!(
                    "its age is unknown until the gateway first redeems it: keep it in partner_token.refresh_token_file ({}), or {login}",
                    crate::configuration::env_name("partner_token.refresh_token_file")
                )),
            )
        };
        Self {
            status,
            source,
            record,
            inactivity_expires_at,
            days_left,
            warn_days,
            action,
        }
    }
}

/// The credential's health as `/readyz` and `token status --json` show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialReport {
    /// `usable`, `expiring` (within `warnDays` of the 90-day inactivity limit), `unknown`
    /// (a token from the settings, not yet redeemed) or `unusable`.
    #[schema(example = "usable")]
    pub status: &'static str,
    /// `file` (`partner_token.refresh_token_file`), `setting` or `none`.
    #[schema(example = "file")]
    pub source: &'static str,
    /// The signed-in user (`token status` only: `/readyz` is unauthenticated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Whether the last access token says the sign-in used MFA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub signed_in_at: Option<String>,
    /// `browser` or `device-code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_in_with: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_rotated_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_redeemed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub inactivity_expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 90)]
    pub days_left: Option<u64>,
    #[schema(example = 14)]
    pub warn_days: u64,
    /// What the operator must do, when something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

impl CredentialHealth {
    /// `with_identity`: include the user and tenant.
    pub fn report(&self, with_identity: bool) -> CredentialReport {
        let record = &self.record;
        CredentialReport {
            status: self.status.label(),
            source: self.source.label(),
            user: record.user.clone().filter(|_| with_identity),
            tenant: record.tenant.clone().filter(|_| with_identity),
            mfa: record.mfa,
            signed_in_at: record.signed_in_at.map(rfc3339),
            signed_in_with: record.signed_in_with.clone(),
            last_rotated_at: record.rotated_at.map(rfc3339),
            last_redeemed_at: record.redeemed_at.map(rfc3339),
            inactivity_expires_at: self.inactivity_expires_at.map(rfc3339),
            days_left: self.days_left,
            warn_days: self.warn_days,
            action: self.action.clone(),
        }
    }
}

pub fn rfc3339(unix_secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The AADSTS code in Entra's description, if there is one.
pub fn aadsts_code(description: &str) -> Option<String> {
    description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| word.starts_with("AADSTS") && word.len() > 6)
        .map(str::to_owned)
}

/// Where the refresh token survives restarts, with its record. An operator who configures a
/// new refresh token (the stored one was revoked, say) is obeyed rather than overruled by the
/// file: the file names the configured token it descends from by fingerprint.
pub struct RefreshTokenFile {
    pub path: PathBuf,
    /// SHA-256 (hex) of the configured refresh token; empty when none is configured.
    seeded_from: String,
}

#[derive(Serialize, Deserialize)]
struct StoredRefreshToken {
    refresh_token: String,
    seeded_from: String,
    #[serde(flatten)]
    record: CredentialRecord,
}

impl RefreshTokenFile {
    pub fn new(path: PathBuf, configured: Option<&SecretString>) -> Self {
        Self {
            path,
            seeded_from: fingerprint(configured),
        }
    }

    /// The stored token, when there is one and it descends from the configured one (or
    /// none is configured).
    pub fn load(&self) -> anyhow::Result<Option<(SecretString, CredentialRecord)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                anyhow::bail!(
                    "cannot read the refresh-token file {}: {e}",
                    self.path.display()
                )
            }
        };
        let stored: StoredRefreshToken = serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!(
                "the refresh-token file {} is not one this gateway wrote",
                self.path.display()
            )
        })?;
        if stored.refresh_token.trim().is_empty() {
            return Ok(None);
        }
        if !self.seeded_from.is_empty() && stored.seeded_from != self.seeded_from {
            tracing::warn!(path = %self.path.display(), "the configured refresh token changed since the stored one was written; using the configured one");
            return Ok(None);
        }
        let mut record = stored.record;
        // Files written before the time was recorded: the modification time stands in.
        if record.renewed_at().is_none() {
            record.rotated_at = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
        }
        Ok(Some((SecretString::from(stored.refresh_token), record)))
    }

    pub fn save_blocking(
        &self,
        token: &SecretString,
        record: &CredentialRecord,
    ) -> std::io::Result<()> {
        write_private_atomically(&self.path, &self.contents(token, record)?)
    }

    pub async fn save(
        &self,
        token: &SecretString,
        record: &CredentialRecord,
    ) -> std::io::Result<()> {
        let (path, contents) = (self.path.clone(), self.contents(token, record)?);
        tokio::task::spawn_blocking(move || write_private_atomically(&path, &contents))
            .await
            .map_err(std::io::Error::other)?
    }

    fn contents(&self, token: &SecretString, record: &CredentialRecord) -> std::io::Result<String> {
        serde_json::to_string(&StoredRefreshToken {
            refresh_token: token.expose_secret().to_owned(),
            seeded_from: self.seeded_from.clone(),
            record: record.clone(),
        })
        .map_err(std::io::Error::other)
    }
}

fn fingerprint(token: Option<&SecretString>) -> String {
    token
        .filter(|t| !t.expose_secret().trim().is_empty())
        .map(|t| {
            crate::domain::hex(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.expose_secret().as_bytes())
                    .as_ref(),
            )
        })
        .unwrap_or_default()
}

fn write_private_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let directory = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".refresh-token-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(directory)?;
    file.write_all(contents.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    // The rename itself survives a crash only once the directory is synced.
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn assess(record: CredentialRecord) -> CredentialHealth {
        CredentialHealth::assess(CredentialSource::File("/tmp/t".into()), record, 14, NOW)
    }

    fn renewed_days_ago(days: u64) -> CredentialRecord {
        CredentialRecord {
            rotated_at: Some(NOW - days * DAY_SECS),
            mfa: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn the_90_days_count_from_the_last_renewal_and_warn_days_before() {
        let fresh = assess(renewed_days_ago(1));
        assert_eq!(fresh.status, CredentialStatus::Usable);
        assert_eq!(fresh.days_left, Some(89));
        assert_eq!(fresh.action, None);
        let near = assess(renewed_days_ago(76));
        assert_eq!(
            (near.status, near.days_left),
            (CredentialStatus::Expiring, Some(14))
        );
        assert_eq!(
            assess(renewed_days_ago(75)).status,
            CredentialStatus::Usable
        );
        let dead = assess(renewed_days_ago(91));
        assert_eq!(dead.status, CredentialStatus::Unusable);
        assert!(dead.action.unwrap().contains("login"));
        assert_eq!(
            [fresh.status, near.status, dead.status].map(CredentialStatus::exit_code),
            [0, 1, 2]
        );
    }

    #[test]
    fn a_refusal_since_the_last_success_or_no_mfa_makes_it_unusable() {
        let refusal = |at| Refusal {
            at,
            error: "invalid_grant".into(),
            code: Some("AADSTS700082".into()),
            action: "sign in again".into(),
        };
        let mut record = renewed_days_ago(1);
        record.redeemed_at = Some(NOW - 100);
        record.refused = Some(refusal(NOW - 50));
        let refused = assess(record.clone());
        assert_eq!(refused.status, CredentialStatus::Unusable);
        assert!(refused.action.unwrap().contains("AADSTS700082"));
        record.refused = Some(refusal(NOW - 200));
        assert_eq!(
            assess(record.clone()).status,
            CredentialStatus::Usable,
            "an older refusal is history"
        );
        record.mfa = Some(false);
        assert!(assess(record).action.unwrap().contains("MFA"));
    }

    #[test]
    fn a_token_of_unknown_age_or_none_at_all_is_said_so() {
        let unknown = CredentialHealth::assess(
            CredentialSource::Setting,
            CredentialRecord::default(),
            14,
            NOW,
        );
        assert_eq!(unknown.status, CredentialStatus::Unknown);
        let none =
            CredentialHealth::assess(CredentialSource::None, CredentialRecord::default(), 14, NOW);
        assert_eq!(none.status, CredentialStatus::Unusable);
    }

    #[test]
    fn the_sign_in_is_read_from_the_access_tokens_claims() {
        let encode = |claims: serde_json::Value| {
            format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
        };
        let signed_in = SignedIn::from_access_token(&encode(serde_json::json!({
            "unique_name": "old@contoso.com", "upn": "admin@contoso.com",
            "tid": "tenant-1", "amr": ["pwd", "mfa"]
        })))
        .unwrap();
        assert_eq!(signed_in.user.as_deref(), Some("admin@contoso.com"));
        assert_eq!(signed_in.tenant.as_deref(), Some("tenant-1"));
        assert!(signed_in.mfa);
        let no_mfa =
            SignedIn::from_access_token(&encode(serde_json::json!({"amr": ["pwd"]}))).unwrap();
        assert!(!no_mfa.mfa);
        assert_eq!(SignedIn::from_access_token("opaque-token"), None);
    }

    #[test]
    fn the_aadsts_code_is_picked_out_of_the_description() {
        assert_eq!(
            aadsts_code("AADSTS700082: The refresh token has expired").as_deref(),
            Some("AADSTS700082")
        );
        assert_eq!(aadsts_code("no code here"), None);
    }

    #[test]
    fn the_file_is_private_replaced_whole_and_keeps_the_record() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("refresh-token");
        write_private_atomically(&path, "first").unwrap();
        let file = RefreshTokenFile::new(path.clone(), None);
        let record = renewed_days_ago(3);
        file.save_blocking(&SecretString::from("rt-2"), &record)
            .unwrap();
        let (token, loaded) = file.load().unwrap().unwrap();
        assert_eq!(token.expose_secret(), "rt-2");
        assert_eq!(loaded, record);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}
