//! `partner-gateway login` (device code and browser) and `token status`, the real binary
//! against a sandbox's Entra and Partner Center over HTTP; then a production gateway serves
//! a POST with the token login stored.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use partner_gateway::configuration::{KeySource, Mode, Settings, TrustedIssuer};
use partner_gateway::partner_center::credential::{CredentialRecord, RefreshTokenFile};
use partner_gateway::sandbox::{SANDBOX_AUDIENCE, SANDBOX_TENANT};
use partner_gateway::startup::Application;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{gateway_command, register_secret, sandbox_caller_token, spawn_sandbox_with};

const LIMIT: Duration = Duration::from_secs(60);

/// A sandbox whose device codes are polled every second and last `device_code_ttl_secs`.
async fn sandbox(device_code_ttl_secs: u64) -> (String, reqwest::Client) {
    let (url, _) = spawn_sandbox_with(60_000, |s| {
        s.sandbox.device_code_interval_secs = 1;
        s.sandbox.device_code_ttl_secs = device_code_ttl_secs;
    })
    .await;
    register_secret(
        app_registration(&url).await["clientSecret"]
            .as_str()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (url, http)
}

async fn app_registration(sandbox: &str) -> Value {
    reqwest::get(format!("{sandbox}/sandbox/app-registration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct Login {
    child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Login {
    /// `partner-gateway login --sandbox <url> <args>`, storing into `token_file`.
    fn start(sandbox: &str, token_file: &Path, args: &[&str]) -> Self {
        let mut command = gateway_command();
        command
            .args([
                "login",
                "--sandbox",
                sandbox,
                "--no-open",
                "--timeout-secs",
                "60",
            ])
            .args(args)
            .env(
                "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE",
                token_file,
            )
            .env("PARTNER_GATEWAY__PARTNER_TOKEN__LOGIN_REDIRECT_PORTS", "0")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("BROWSER")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        Self { child, stderr }
    }

    /// The first line of its instructions matching `wanted`.
    async fn instruction(&mut self, wanted: impl Fn(&str) -> Option<String>) -> String {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            let line = tokio::time::timeout(LIMIT, self.stderr.next_line())
                .await
                .expect("login prints its instructions")
                .unwrap()
                .expect("login is still running");
            if let Some(found) = wanted(&line) {
                return found;
            }
        }
        panic!("no such instruction");
    }

    async fn user_code(&mut self) -> String {
        self.instruction(|line| {
            let (_, rest) = line.split_once("enter the code ")?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .await
    }

    /// Its exit status, what it printed to stdout, and the rest of stderr.
    async fn finish(mut self) -> (bool, String, String) {
        let mut rest = String::new();
        while let Ok(Ok(Some(line))) = tokio::time::timeout(LIMIT, self.stderr.next_line()).await {
            rest.push_str(&line);
            rest.push('\n');
        }
        let output = tokio::time::timeout(LIMIT, self.child.wait_with_output())
            .await
            .expect("login ends")
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            rest,
        )
    }
}

/// What a person does on the sandbox's device page.
async fn decide_device_code(http: &reqwest::Client, sandbox: &str, form: &[(&str, &str)]) {
    let page = http
        .get(format!("{sandbox}/sandbox/entra/device"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("user_code"));
    let decided = http
        .post(format!("{sandbox}/sandbox/entra/device"))
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 200, "the code is accepted");
}

fn stored(token_file: &Path) -> Value {
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(token_file).unwrap()).unwrap();
    register_secret(stored["refresh_token"].as_str().unwrap());
    stored
}

/// A production gateway on the sandbox's Entra, Partner Center and caller tokens, with no
/// refresh token but the one in `token_file`.
/// Its URL and its metrics URL.
async fn production_gateway_on(
    sandbox: &str,
    token_file: PathBuf,
    store: &Path,
) -> (String, String) {
    let registration = app_registration(sandbox).await;
    let mut settings = Settings::defaults().unwrap();
    settings.mode = Mode::Production;
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.workers = 1;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.path = Some(store.join("store.db"));
    settings.caller_auth.issuers = vec![TrustedIssuer::new(
        format!("{sandbox}/sandbox"),
        SANDBOX_AUDIENCE,
        KeySource::Jwks(format!("{sandbox}/sandbox/keys")),
    )];
    settings.partner_center.base_url = format!("{sandbox}/sandbox/partner-center");
    let token = &mut settings.partner_token;
    token.authority_url = format!("{sandbox}/sandbox/entra");
    token.tenant_id = SANDBOX_TENANT.to_owned();
    token.client_id = registration["clientId"].as_str().unwrap().to_owned();
    token.client_secret = Some(SecretString::from(
        registration["clientSecret"].as_str().unwrap().to_owned(),
    ));
    token.refresh_token = None;
    token.refresh_token_file = Some(token_file);
    // A refused token is retried within the test's time, not minutes.
    token.failure_backoff_base_ms = 20;
    token.failure_backoff_max_ms = 50;
    settings.validate().unwrap();
    let application = Application::build(settings).await.expect("gateway builds");
    let url = application.url();
    let metrics = application.metrics_url().unwrap();
    tokio::spawn(application.run_until_stopped());
    assert!(crate::helpers::wait_until_ready(&url, LIMIT).await);
    (url, metrics)
}

async fn post_education(gateway: &str, sandbox: &str) -> reqwest::Response {
    let http = reqwest::Client::new();
    let caller = sandbox_caller_token(&http, sandbox, json!({})).await;
    http.post(format!(
        "{gateway}/v1/customers/{}/qualifications",
        uuid::Uuid::new_v4()
    ))
    .bearer_auth(caller)
    .json(
        &json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"}),
    )
    .send()
    .await
    .unwrap()
}

async fn readyz_partner_token(gateway: &str) -> Value {
    let body: Value = reqwest::get(format!("{gateway}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["details"]["partnerToken"].clone()
}

fn token_status(token_file: &Path, extra_env: &[(&str, &str)]) -> (i32, Value) {
    let mut command = gateway_command();
    command.args(["token", "status", "--json"]).env(
        "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE",
        token_file,
    );
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap(),
        serde_json::from_slice(&output.stdout).expect("token status --json prints JSON"),
    )
}

#[tokio::test]
async fn login_with_a_device_code_mends_a_running_gateway_without_a_restart() {
    let (sandbox, http) = sandbox(900).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("refresh-token");
    // The state an operator finds: a stored token Entra no longer honours.
    RefreshTokenFile::new(token_file.clone(), None)
        .save_blocking(
            &SecretString::from("sandbox-rt-revoked".to_owned()),
            &CredentialRecord::default(),
        )
        .unwrap();
    let (gateway, metrics) = production_gateway_on(&sandbox, token_file.clone(), dir.path()).await;
    let refused = post_education(&gateway, &sandbox).await;
    assert_eq!(refused.status(), 503);
    let problem: Value = refused.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("partner-token-unavailable")
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("sign in again"),
        "{problem}"
    );
    assert_eq!(readyz_partner_token(&gateway).await["status"], "unusable");
    let (code, status) = token_status(&token_file, &[]);
    assert_eq!(code, 2, "{status}");
    assert!(
        status["action"].as_str().unwrap().contains("AADSTS70008"),
        "{status}"
    );

    let mut login = Login::start(&sandbox, &token_file, &["--device-code"]);
    let user_code = login.user_code().await;
    decide_device_code(
        &http,
        &sandbox,
        &[
            ("user_code", user_code.as_str()),
            ("decision", "approve"),
            ("mfa", "true"),
            ("user", "alice@contoso.example"),
        ],
    )
    .await;
    let (success, report, _) = login.finish().await;
    assert!(success, "{report}");
    assert!(
        report.contains("Signed in as alice@contoso.example"),
        "{report}"
    );
    assert!(report.contains("MFA: yes"), "{report}");
    assert!(
        report.contains("answered GET /v1/customers/all/validations with 200"),
        "{report}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let record = stored(&token_file);
    assert_eq!(record["signed_in_with"], "device-code");
    assert_eq!(record["user"], "alice@contoso.example");
    assert_eq!(record["mfa"], true);
    assert!(record.get("refused").is_none());

    // The running gateway takes the new token up at its next redemption.
    let accepted = crate::helpers::eventually(LIMIT, || async {
        let response = post_education(&gateway, &sandbox).await;
        (response.status() == 202).then_some(())
    })
    .await;
    assert!(
        accepted.is_some(),
        "a POST is served with the token login stored"
    );
    let health = readyz_partner_token(&gateway).await;
    assert_eq!(health["status"], "usable", "{health}");
    assert_eq!(health["source"], "file");
    assert_eq!(health["mfa"], true);
    assert_eq!(health["daysLeft"], 90);
    assert!(
        health.get("user").is_none(),
        "/readyz names no one: {health}"
    );
    let scraped = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    for series in [
        r#"partner_gateway_partner_token_status{state="usable"} 1"#,
        r#"partner_gateway_partner_token_status{state="unusable"} 0"#,
        "partner_gateway_partner_refresh_token_days_left 90",
        "partner_gateway_partner_token_mfa 1",
    ] {
        assert!(scraped.contains(series), "{series} in {scraped}");
    }
    let rotated = stored(&token_file);
    assert_ne!(
        rotated["refresh_token"], record["refresh_token"],
        "the gateway stored its rotation"
    );
    assert_eq!(
        rotated["signed_in_with"], "device-code",
        "and kept the sign-in's record"
    );

    let (code, status) = token_status(&token_file, &[]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["status"], "usable");
    assert_eq!(status["user"], "alice@contoso.example");
    assert_eq!(status["daysLeft"], 90);
    let (code, status) = token_status(
        &token_file,
        &[("PARTNER_GATEWAY__PARTNER_TOKEN__WARN_DAYS", "90")],
    );
    assert_eq!((code, status["status"].as_str()), (1, Some("expiring")));
}

#[tokio::test]
async fn login_in_a_browser_with_pkce_stores_a_token_a_production_gateway_serves_with() {
    let (sandbox, http) = sandbox(900).await;
    let dir = tempfile::tempdir().unwrap();
    // Its directory is made for it, private.
    let token_file = dir.path().join("state").join("refresh-token");
    let mut login = Login::start(&sandbox, &token_file, &["--browser"]);
    let authorize = login
        .instruction(|line| {
            let url = line.trim();
            url.contains("/oauth2/v2.0/authorize?")
                .then(|| url.to_owned())
        })
        .await;
    let parsed = url::Url::parse(&authorize).unwrap();
    let query: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(query["prompt"], "login");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");
    assert_eq!(
        query["scope"],
        "https://api.partnercenter.microsoft.com/user_impersonation offline_access"
    );
    let redirect = url::Url::parse(&query["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("localhost"));

    // The browser: the sign-in page, its form sent, then Entra's redirect followed.
    let page = http.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Sign in"));
    let mut form: Vec<(String, String)> = [
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
        "scope",
    ]
    .iter()
    .map(|name| (name.to_string(), query[*name].clone()))
    .collect();
    form.extend([
        ("decision".to_owned(), "approve".to_owned()),
        ("mfa".to_owned(), "true".to_owned()),
        ("user".to_owned(), "bob@contoso.example".to_owned()),
    ]);
    let decided = http.post(&authorize).form(&form).send().await.unwrap();
    assert_eq!(decided.status(), 302);
    let location = decided.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}?code=", query["redirect_uri"]))
            || location.starts_with(&format!("{}/?code=", query["redirect_uri"])),
        "{location}"
    );
    let landed = http
        .get(location.replace("//localhost:", "//127.0.0.1:"))
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status(), 200);
    assert!(landed.text().await.unwrap().contains("Signed in"));

    let (success, report, _) = login.finish().await;
    assert!(success, "{report}");
    assert!(
        report.contains("Signed in as bob@contoso.example"),
        "{report}"
    );
    assert_eq!(stored(&token_file)["signed_in_with"], "browser");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(token_file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    let (gateway, _) = production_gateway_on(&sandbox, token_file.clone(), dir.path()).await;
    assert_eq!(post_education(&gateway, &sandbox).await.status(), 202);
    assert_eq!(readyz_partner_token(&gateway).await["source"], "file");
}

#[tokio::test]
async fn a_browser_sign_in_that_is_cancelled_says_so_and_stores_nothing() {
    let (sandbox, http) = sandbox(900).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("refresh-token");
    let mut login = Login::start(&sandbox, &token_file, &[]);
    let authorize = login
        .instruction(|line| {
            line.trim()
                .contains("/authorize?")
                .then(|| line.trim().to_owned())
        })
        .await;
    let query: Vec<(String, String)> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .into_owned()
        .chain([("decision".to_owned(), "decline".to_owned())])
        .collect();
    let decided = http.post(&authorize).form(&query).send().await.unwrap();
    let location = decided.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("error=access_denied"), "{location}");
    http.get(location.replace("//localhost:", "//127.0.0.1:"))
        .send()
        .await
        .unwrap();
    let (success, _, said) = login.finish().await;
    assert!(!success);
    assert!(said.contains("admin consent"), "{said}");
    assert!(!token_file.exists());
}

#[tokio::test]
async fn a_declined_an_expired_and_an_mfa_less_device_sign_in_store_nothing() {
    let (sandbox, http) = sandbox(3).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("refresh-token");

    // Without MFA: Partner Center refuses App+User calls, and so does the sandbox.
    for (decision, said_why) in [
        (Some("decline"), &["declined"][..]),
        (None, &["expired"][..]),
        (Some("approve"), &["900421", "multi-factor"][..]),
    ] {
        let mut login = Login::start(&sandbox, &token_file, &["--device-code"]);
        let code = login.user_code().await;
        if let Some(decision) = decision {
            decide_device_code(
                &http,
                &sandbox,
                &[("user_code", code.as_str()), ("decision", decision)],
            )
            .await;
        }
        let (success, _, said) = login.finish().await;
        assert!(!success, "{decision:?}");
        assert!(said_why.iter().all(|why| said.contains(why)), "{said}");
    }
    assert!(
        !token_file.exists(),
        "a refused sign-in leaves no token behind"
    );
}

/// Entra's `slow_down` and `authorization_pending`, answered in turn by a stand-in: login
/// polls at the interval, and 5 s slower after `slow_down` (RFC 8628).
#[tokio::test]
async fn device_code_polling_waits_while_pending_and_slows_down_when_told() {
    let entra = MockServer::start().await;
    let partner_center = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/contoso/oauth2/v2.0/devicecode"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "device_code": "dc-1", "user_code": "ABCD-EFGH",
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 60, "interval": 1,
            "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."
        })))
        .expect(1)
        .mount(&entra)
        .await;
    let device_grant = || {
        Mock::given(method("POST"))
            .and(path("/contoso/oauth2/v2.0/token"))
            .and(body_string_contains("device_code=dc-1"))
    };
    let refusal = |error: &str| {
        ResponseTemplate::new(400)
            .set_body_json(json!({"error": error, "error_description": "AADSTS70016: pending"}))
    };
    device_grant()
        .respond_with(refusal("slow_down"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&entra)
        .await;
    device_grant()
        .respond_with(refusal("authorization_pending"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&entra)
        .await;
    device_grant()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-0", "expires_in": 3600, "refresh_token": "rt-first"
        })))
        .with_priority(3)
        .expect(1)
        .mount(&entra)
        .await;
    let claims = base64_url(
        &json!({"upn": "carol@contoso.example", "tid": "t-1", "amr": ["pwd", "mfa"]}).to_string(),
    );
    Mock::given(method("POST"))
        .and(path("/contoso/oauth2/token"))
        .and(body_string_contains("refresh_token=rt-first"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("e30.{claims}.sig"), "expires_in": "3600", "refresh_token": "rt-second"
        })))
        .expect(1)
        .mount(&entra)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/all/validations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&partner_center)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("refresh-token");
    let started = Instant::now();
    let output = gateway_command()
        .args(["login", "--device-code", "--timeout-secs", "60"])
        .env("PARTNER_GATEWAY__PARTNER_TOKEN__AUTHORITY_URL", entra.uri())
        .env("PARTNER_GATEWAY__PARTNER_TOKEN__TENANT_ID", "contoso")
        .env("PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_ID", "app-1")
        .env("PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_TYPE", "public")
        .env(
            "PARTNER_GATEWAY__PARTNER_CENTER__BASE_URL",
            partner_center.uri(),
        )
        .env(
            "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE",
            &token_file,
        )
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Polls at 1 s (slow_down), 1 + 6 s (pending), 1 + 6 + 6 s (granted).
    assert!(elapsed >= Duration::from_secs(13), "{elapsed:?}");
    let polls: Vec<String> = entra
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/v2.0/token"))
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(polls.len(), 3);
    assert!(
        polls.iter().all(|p| !p.contains("client_secret")),
        "a public client sends no secret"
    );
    let record = stored(&token_file);
    assert_eq!(
        record["refresh_token"], "rt-second",
        "the verified rotation is stored"
    );
    assert_eq!(record["user"], "carol@contoso.example");
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[test]
fn token_status_fails_without_a_token_and_cannot_vouch_for_one_of_unknown_age() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("never-written");
    let (code, status) = token_status(&missing, &[]);
    assert_eq!((code, status["status"].as_str()), (2, Some("unusable")));
    assert!(
        status["action"]
            .as_str()
            .unwrap()
            .contains("partner-gateway login")
    );
    let (code, status) = token_status(
        &missing,
        &[(
            "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN",
            "pasted-refresh-token",
        )],
    );
    assert_eq!((code, status["status"].as_str()), (1, Some("unknown")));
    assert_eq!(status["source"], "setting");
}
