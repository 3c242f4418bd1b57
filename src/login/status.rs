//! `partner-gateway token status`: the stored credential's health, read from the settings and
//! the token file without calling Entra (a redemption would rotate the token under a
//! running gateway). The exit code is for cron and probes: 0 usable, 1 expiring or of
//! unknown age, 2 unusable.

use crate::configuration::Settings;
use crate::metrics::Metrics;
use crate::partner_center::TokenProvider;
use crate::partner_center::credential::CredentialHealth;

/// The credential as the gateway would load it at start (the file in preference to the
/// setting), with no request to Entra.
pub fn token_status(settings: &Settings) -> anyhow::Result<CredentialHealth> {
    let (metrics, _) = Metrics::new();
    let tokens = TokenProvider::new(reqwest::Client::new(), &settings.partner_token, metrics)?;
    Ok(tokens.health(settings.partner_token.warn_days))
}

/// Prints the health (as JSON with `json`) and returns the exit code.
pub fn print_status(health: &CredentialHealth, json: bool) -> anyhow::Result<u8> {
    let report = health.report(true);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(health.status.exit_code());
    }
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".to_owned());
    println!("partner token: {}", report.status);
    println!("  source:           {}", health.source.describe());
    println!(
        "  signed in as:     {} (tenant {})",
        or_unknown(&report.user),
        or_unknown(&report.tenant)
    );
    println!(
        "  MFA:              {}",
        match report.mfa {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        }
    );
    if let Some(at) = &report.signed_in_at {
        println!(
            "  signed in:        {at} (login --{})",
            report.signed_in_with.as_deref().unwrap_or("?")
        );
    }
    println!(
        "  last rotated:     {}",
        or_unknown(&report.last_rotated_at)
    );
    println!(
        "  last redeemed:    {}",
        or_unknown(&report.last_redeemed_at)
    );
    match (&report.inactivity_expires_at, report.days_left) {
        (Some(at), Some(days)) => println!(
            "  unused, dies at:  {at} ({days} days left; warning from {} days)",
            report.warn_days
        ),
        _ => println!("  unused, dies at:  unknown"),
    }
    println!(
        "  action:           {}",
        report.action.as_deref().unwrap_or("none")
    );
    Ok(health.status.exit_code())
}
