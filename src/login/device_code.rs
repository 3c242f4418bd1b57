//! The device code flow (RFC 8628) for hosts without a browser: the person signs in on any
//! other device with a short code while this polls Entra at the interval it asks for.

use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::{LoginOptions, redeem_grant, sign_in_refusal};
use crate::configuration::Settings;

/// RFC 8628 §3.5: after `slow_down`, every later poll waits this much longer.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
    message: Option<String>,
}

fn default_interval() -> u64 {
    5
}

pub async fn sign_in(
    http: &reqwest::Client,
    settings: &Settings,
    scope: &str,
    options: &LoginOptions,
) -> anyhow::Result<SecretString> {
    let token = &settings.partner_token;
    let response = http
        .post(token.authority_path("oauth2/v2.0/devicecode"))
        .form(&[("client_id", token.client_id.as_str()), ("scope", scope)])
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("Entra could not be reached: {}", e.without_url()))?;
    if !response.status().is_success() {
        let refused: serde_json::Value = response.json().await.unwrap_or_default();
        return Err(sign_in_refusal(
            refused["error"].as_str().unwrap_or("device code refused"),
            &super::first_line(refused["error_description"].as_str().unwrap_or_default()),
        ));
    }
    let device: DeviceAuthorization = response
        .json()
        .await
        .context("Entra's device code answer could not be read")?;
    eprintln!(
        "{}",
        device.message.clone().unwrap_or_else(|| format!(
            "To sign in, open {} and enter the code {}.",
            device.verification_uri, device.user_code
        ))
    );
    eprintln!("Sign in with MFA, as an admin agent of the partner tenant. Waiting...");

    let lifetime = Duration::from_secs(device.expires_in).min(options.timeout);
    let deadline = Instant::now() + lifetime;
    let mut interval = Duration::from_secs(device.interval.max(1));
    // Bounded in count as well as time: even a poll every second cannot outlast the code.
    for _ in 0..=lifetime.as_secs() {
        tokio::time::sleep_until((Instant::now() + interval).min(deadline)).await;
        if Instant::now() >= deadline {
            break;
        }
        let grant = [
            ("grant_type", GRANT),
            ("device_code", device.device_code.expose_secret()),
        ];
        match redeem_grant(http, settings, &grant).await? {
            Ok(refresh_token) => return Ok(refresh_token),
            Err((error, description)) => match error.as_str() {
                "authorization_pending" => {}
                "slow_down" => interval += SLOW_DOWN_STEP,
                "authorization_declined" => {
                    bail!(
                        "the sign-in was declined at {}: nothing was stored",
                        device.verification_uri
                    )
                }
                "expired_token" => bail!(
                    "the code {} expired before anyone signed in with it: run login again",
                    device.user_code
                ),
                "bad_verification_code" => {
                    bail!("Entra does not know this device code ({description}): run login again")
                }
                _ => return Err(sign_in_refusal(&error, &description)),
            },
        }
    }
    if lifetime < options.timeout {
        bail!(
            "the code {} expired before anyone signed in with it: run login again",
            device.user_code
        )
    }
    bail!(
        "no sign-in with the code {} within {} s (--timeout-secs): run login again",
        device.user_code,
        lifetime.as_secs()
    )
}
