//! Operator onboarding: `partner-gateway login` obtains the first App+User refresh token (in
//! a browser, or with a device code on a headless host), proves it with one redemption and
//! one harmless Partner Center read, and stores it where the gateway reads it;
//! `partner-gateway token status` reports the stored credential's health.

mod browser;
mod device_code;
mod status;

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::configuration::{ClientType, Settings};
use crate::metrics::Metrics;
use crate::partner_center::TokenProvider;
use crate::partner_center::credential::{CredentialRecord, RefreshTokenFile, unix_now};

pub use browser::code_challenge;
pub use status::{print_status, token_status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFlow {
    Browser,
    DeviceCode,
}

impl LoginFlow {
    fn label(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::DeviceCode => "device-code",
        }
    }
}

pub struct LoginOptions {
    pub flow: LoginFlow,
    /// Try to open the sign-in page in a browser on this machine.
    pub open_browser: bool,
    /// How long to wait for the person to sign in.
    pub timeout: Duration,
    /// A running sandbox gateway whose app registration to use.
    pub sandbox: Option<String>,
}

/// What Entra's token endpoint answers to a code or device-code grant.
#[derive(Deserialize)]
struct Granted {
    refresh_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct Refused {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Signs in, verifies and stores; the report goes to stdout, instructions to stderr.
pub async fn login(mut settings: Settings, options: LoginOptions) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(
            settings.partner_token.timeout_ms.max(1),
        ))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            "partner-gateway/",
            env!("CARGO_PKG_VERSION"),
            " login"
        ))
        .build()?;
    if let Some(sandbox) = &options.sandbox {
        use_sandbox_registration(&http, &mut settings, sandbox).await?;
    }
    settings.validate_for_login()?;
    let scope = with_offline_access(&settings.partner_token.scope);
    let first = match options.flow {
        LoginFlow::Browser => browser::sign_in(&http, &settings, &scope, &options).await?,
        LoginFlow::DeviceCode => device_code::sign_in(&http, &settings, &scope, &options).await?,
    };
    let verified = verify(&http, &settings, first).await?;
    let token = &settings.partner_token;
    let path = token
        .refresh_token_file
        .clone()
        .context("partner_token.refresh_token_file is required")?;
    let now = unix_now();
    let record = CredentialRecord {
        signed_in_at: Some(now),
        signed_in_with: Some(options.flow.label().to_owned()),
        rotated_at: Some(now),
        ..verified.record
    };
    if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
    }
    RefreshTokenFile::new(path.clone(), token.refresh_token.as_ref())
        .save(&verified.refresh_token, &record)
        .await
        .with_context(|| format!("cannot write the refresh-token file {}", path.display()))?;
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "unknown",
    };
    println!(
        "Signed in as {} (tenant {}); MFA: {}.",
        record.user.as_deref().unwrap_or("an unnamed user"),
        record.tenant.as_deref().unwrap_or("unknown"),
        yes_no(record.mfa)
    );
    println!(
        "Verified: Entra redeemed the refresh token, and Partner Center answered GET /v1/customers/all/validations with {} ({} validation codes).",
        verified.partner_center_status, verified.validation_codes
    );
    println!(
        "Stored in {} (mode 0600). The gateway reads it at start; a running gateway takes it up at its next token redemption.",
        path.display()
    );
    if record.mfa != Some(true) {
        println!(
            "Warning: the access token does not say the sign-in used MFA; Partner Center requires MFA for App+User calls."
        );
    }
    Ok(())
}

struct Verified {
    refresh_token: SecretString,
    record: CredentialRecord,
    partner_center_status: u16,
    validation_codes: usize,
}

/// One redemption the way the gateway does it (same code, endpoint and client type), then a
/// read Partner Center answers for any App+User token. Nothing is stored unless both pass:
/// a token Partner Center refuses must not replace one it accepts.
async fn verify(
    http: &reqwest::Client,
    settings: &Settings,
    first: SecretString,
) -> anyhow::Result<Verified> {
    let mut token_settings = settings.partner_token.clone();
    token_settings.refresh_token = Some(first);
    token_settings.refresh_token_file = None;
    let (metrics, _) = Metrics::new();
    let provider = std::sync::Arc::new(TokenProvider::new(http.clone(), &token_settings, metrics)?);
    let access = provider.get().await.map_err(|error| {
        anyhow::anyhow!(
            "the new refresh token could not be redeemed the way the gateway redeems it: {error}"
        )
    })?;
    let record = provider.health(settings.partner_token.warn_days).record;
    let refresh_token = provider
        .current_refresh_token()
        .context("the redemption left no refresh token")?;
    let url = format!(
        "{}/v1/customers/all/validations",
        settings.partner_center.base_url.trim_end_matches('/')
    );
    let response = http
        .get(&url)
        .header(
            reqwest::header::AUTHORIZATION,
            access.authorization_header(),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .header("MS-RequestId", uuid::Uuid::new_v4().to_string())
        .header("MS-CorrelationId", uuid::Uuid::new_v4().to_string())
        .header("MS-Contract-Version", "v1")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("Partner Center could not be reached: {}", e.without_url()))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let code = body["code"].as_str().unwrap_or_default();
        let description = body["description"].as_str().unwrap_or_default();
        let advice = if code == "900421" || record.mfa == Some(false) {
            "sign in again, with multi-factor authentication"
        } else if status.as_u16() == 403 {
            "the signed-in user needs an admin agent role in Partner Center"
        } else {
            "check partner_center.base_url and the user's Partner Center roles"
        };
        bail!(
            "Partner Center refused the new token with {status} {code} {description}: {advice}. Nothing was stored."
        );
    }
    let validation_codes = body
        .as_array()
        .or_else(|| body["items"].as_array())
        .map_or(0, Vec::len);
    Ok(Verified {
        refresh_token,
        record,
        partner_center_status: status.as_u16(),
        validation_codes,
    })
}

/// Redeems a code or device-code grant at the v2 token endpoint: the sign-in's first
/// refresh token. `Err(Some(..))` is Entra's refusal, `(error, description)`.
async fn redeem_grant(
    http: &reqwest::Client,
    settings: &Settings,
    grant: &[(&str, &str)],
) -> anyhow::Result<Result<SecretString, (String, String)>> {
    let token = &settings.partner_token;
    let mut form: Vec<(&str, &str)> = vec![("client_id", token.client_id.as_str())];
    form.extend_from_slice(grant);
    if token.client_type == ClientType::Confidential
        && let Some(secret) = &token.client_secret
    {
        form.push(("client_secret", secret.expose_secret()));
    }
    let response = http
        .post(token.authority_path("oauth2/v2.0/token"))
        .form(&form)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("Entra could not be reached: {}", e.without_url()))?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if status.is_success() {
        let granted: Granted =
            serde_json::from_slice(&body).context("Entra's token answer could not be read")?;
        return granted.refresh_token.map(Ok).context(
            "Entra issued no refresh token: the scope must include offline_access, and the app registration must allow it",
        );
    }
    match serde_json::from_slice::<Refused>(&body) {
        Ok(refused) => Ok(Err((refused.error, first_line(&refused.error_description)))),
        Err(_) => bail!("Entra answered {status} with an unreadable body"),
    }
}

/// What to do about Entra's refusal of a sign-in, by its code.
fn sign_in_refusal(error: &str, description: &str) -> anyhow::Error {
    let has = |code: &str| description.contains(code);
    let advice = if has("AADSTS65001") || has("AADSTS65004") || error == "consent_required" {
        "consent is missing or was declined: an admin of the partner tenant must grant admin consent to the app registration"
    } else if has("AADSTS50076") || has("AADSTS50079") || error == "interaction_required" {
        "multi-factor authentication is required: sign in with MFA"
    } else if has("AADSTS700016") || has("AADSTS700007") || has("AADSTS90002") {
        "check partner_token.client_id and partner_token.tenant_id"
    } else if has("AADSTS7000215") || has("AADSTS7000222") {
        "the client secret is invalid or expired: set a current partner_token.client_secret"
    } else if has("AADSTS7000218") {
        "the app registration is confidential: set partner_token.client_secret, or enable public client flows and set partner_token.client_type = public"
    } else if has("AADSTS50011") {
        "the redirect URI is not registered: add http://localhost:<port> for each port of partner_token.login_redirect_ports"
    } else {
        "see Entra's description"
    };
    anyhow::anyhow!("Entra refused the sign-in: {error}: {description} ({advice})")
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

fn with_offline_access(scope: &str) -> String {
    if scope.split_whitespace().any(|s| s == "offline_access") {
        scope.to_owned()
    } else {
        format!("{scope} offline_access")
    }
}

/// A running sandbox's Entra and Partner Center, and its app registration.
async fn use_sandbox_registration(
    http: &reqwest::Client,
    settings: &mut Settings,
    sandbox: &str,
) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Registration {
        authority_url: String,
        tenant_id: String,
        client_id: String,
        client_secret: SecretString,
        partner_center_url: String,
    }
    let url = format!("{}/sandbox/app-registration", sandbox.trim_end_matches('/'));
    let registration: Registration = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| anyhow::anyhow!("no sandbox answers at {sandbox}: {}", e.without_url()))?
        .json()
        .await
        .with_context(|| format!("{url} is not a partner-gateway sandbox"))?;
    let token = &mut settings.partner_token;
    token.authority_url = registration.authority_url;
    token.tenant_id = registration.tenant_id;
    token.client_id = registration.client_id;
    token.client_secret = Some(registration.client_secret);
    settings.partner_center.base_url = registration.partner_center_url;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_access_is_always_asked_for() {
        assert_eq!(
            with_offline_access("https://api.partnercenter.microsoft.com/user_impersonation"),
            "https://api.partnercenter.microsoft.com/user_impersonation offline_access"
        );
        assert_eq!(with_offline_access("a offline_access"), "a offline_access");
    }

    #[test]
    fn a_refused_sign_in_says_what_to_do() {
        let said = |error, description| sign_in_refusal(error, description).to_string();
        assert!(
            said(
                "invalid_grant",
                "AADSTS65001: The user or administrator has not consented"
            )
            .contains("admin consent")
        );
        assert!(
            said(
                "invalid_grant",
                "AADSTS50076: Due to a configuration change"
            )
            .contains("MFA")
        );
        assert!(
            said(
                "invalid_client",
                "AADSTS7000218: must contain client_secret"
            )
            .contains("public")
        );
        assert!(
            said("invalid_request", "AADSTS50011: redirect mismatch")
                .contains("login_redirect_ports")
        );
    }
}
