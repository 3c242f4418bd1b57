//! `partner-gateway token status`: the stored credential's health, read from the settings and
//! the token file without calling Entra (a redemption would rotate the token under a
//! running gateway). The exit code is for cron and probes: 0 usable, 1 expiring or of
//! unknown age, 2 unusable.

use crate::configuration::Settings;
use crate::partner_center::credential::{
    CredentialHealth, CredentialRecord, CredentialSource, RefreshTokenFile, unix_now,
};

pub fn token_status(settings: &Settings) -> anyhow::Result<CredentialHealth> {
    let token = &settings.partner_token;
    let stored = match token
        .refresh_token_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(path) => RefreshTokenFile::new(path.clone(), token.refresh_token.as_ref())
            .load()?
            .map(|(_, record)| (CredentialSource::File(path.clone()), record)),
        None => None,
    };
    let configured = token
        .refresh_token
        .as_ref()
        .is_some_and(|t| !secrecy::ExposeSecret::expose_secret(t).trim().is_empty());
    let (source, record) = stored.unwrap_or(if configured {
        (CredentialSource::Setting, CredentialRecord::default())
    } else {
        (CredentialSource::None, CredentialRecord::default())
    });
    Ok(CredentialHealth::assess(
        source,
        record,
        token.warn_days,
        unix_now(),
    ))
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
