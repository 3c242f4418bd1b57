//! The authorization code flow with PKCE: a sign-in page in a browser, and Entra's redirect
//! back to a listener on `http://localhost:<port>` (the first free port of the range).

use std::collections::HashMap;
use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use tokio::sync::mpsc;

use super::{LoginOptions, redeem_grant, sign_in_refusal};
use crate::configuration::{PortRange, Settings};

pub async fn sign_in(
    http: &reqwest::Client,
    settings: &Settings,
    scope: &str,
    options: &LoginOptions,
) -> anyhow::Result<SecretString> {
    let token = &settings.partner_token;
    let (listeners, port) = listen_on_a_free_port(token.login_redirect_ports)?;
    let redirect_uri = format!("http://localhost:{port}");
    let verifier = random_url_safe(32)?;
    let state = random_url_safe(16)?;
    let mut authorize = url::Url::parse(&token.authority_path("oauth2/v2.0/authorize"))
        .context("partner_token.authority_url does not make a URL")?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &token.client_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("response_mode", "query")
        .append_pair("scope", scope)
        .append_pair("state", &state)
        .append_pair("code_challenge", &code_challenge(&verifier))
        .append_pair("code_challenge_method", "S256")
        // A fresh sign-in (with MFA) rather than a session's single sign-on.
        .append_pair("prompt", "login");

    let (answers, mut answered) = mpsc::channel::<HashMap<String, String>>(1);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(answers.clone()))
            .route("/", web::get().to(redirected))
    })
    .workers(1)
    .disable_signals();
    for listener in listeners {
        server = server.listen(listener)?;
    }
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);

    eprintln!(
        "Open this URL in a browser and sign in (with MFA) as an admin agent of the partner tenant:\n\n  {authorize}\n"
    );
    eprintln!(
        "Waiting for Entra's redirect to {redirect_uri} (up to {} s)...",
        options.timeout.as_secs()
    );
    if options.open_browser {
        open_in_browser(authorize.as_str());
    }
    let answer = tokio::time::timeout(options.timeout, answered.recv()).await;
    handle.stop(true).await;
    let Ok(Some(answer)) = answer else {
        bail!(
            "no sign-in arrived within {} s: run login again (or --device-code on a host without a browser)",
            options.timeout.as_secs()
        );
    };
    let field = |name: &str| answer.get(name).map(String::as_str).unwrap_or_default();
    if field("state") != state {
        bail!("the redirect's state does not match this login's: ignoring it (run login again)");
    }
    if let Some(error) = answer.get("error") {
        return Err(sign_in_refusal(error, field("error_description")));
    }
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", field("code")),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
        ("scope", scope),
    ];
    match redeem_grant(http, settings, &grant).await? {
        Ok(refresh_token) => Ok(refresh_token),
        Err((error, description)) => Err(sign_in_refusal(&error, &description)),
    }
}

/// Entra's redirect: the code (or the refusal) goes to the waiting login; the browser gets a
/// page that says where to look next.
async fn redirected(
    answers: web::Data<mpsc::Sender<HashMap<String, String>>>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let query = query.into_inner();
    if !query.contains_key("code") && !query.contains_key("error") {
        return HttpResponse::NotFound().finish();
    }
    let refused = query.contains_key("error");
    let _ = answers.try_send(query);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(if refused {
            "<!doctype html><title>Sign-in refused</title><p>The sign-in was refused. The terminal running <code>partner-gateway login</code> says why.</p>"
        } else {
            "<!doctype html><title>Signed in</title><p>Signed in. You may close this tab: <code>partner-gateway login</code> is verifying the token.</p>"
        })
}

/// The first port of the range free on loopback (IPv4, and IPv6 too when the host has it,
/// since browsers may resolve `localhost` to either).
fn listen_on_a_free_port(ports: PortRange) -> anyhow::Result<(Vec<TcpListener>, u16)> {
    for port in ports.first..=ports.last {
        let Ok(v4) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        if let Ok(v6) = TcpListener::bind(("::1", port)) {
            listeners.push(v6);
        }
        return Ok((listeners, port));
    }
    bail!(
        "no free port in partner_token.login_redirect_ports ({}-{}) for Entra's redirect",
        ports.first,
        ports.last
    )
}

fn random_url_safe(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| anyhow::anyhow!("no randomness for PKCE"))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

/// PKCE's S256 challenge for the verifier (the sandbox's Entra checks with it too).
pub fn code_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// `$BROWSER`, or the desktop's opener when there is a desktop; silent when neither.
fn open_in_browser(url: &str) {
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .or_else(|| {
            if cfg!(target_os = "macos") {
                Some("open".to_owned())
            } else if std::env::var_os("DISPLAY").is_some()
                || std::env::var_os("WAYLAND_DISPLAY").is_some()
            {
                Some("xdg-open".to_owned())
            } else {
                None
            }
        });
    if let Some(opener) = opener {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636s_example() {
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_taken_port_is_skipped() {
        let taken = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let next = port.checked_add(1).unwrap();
        match listen_on_a_free_port(PortRange {
            first: port,
            last: next,
        }) {
            Ok((_, chosen)) => assert_eq!(chosen, next),
            // The next port may belong to someone else on a busy machine.
            Err(error) => assert!(error.to_string().contains("no free port")),
        }
        assert!(
            listen_on_a_free_port(PortRange {
                first: port,
                last: port
            })
            .is_err()
        );
    }
}
