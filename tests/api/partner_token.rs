use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    CUSTOMER, PARTNER_TENANT, TestApp, TestOptions, captured_logs, spawn_app, spawn_app_with,
};

async fn mount_list(app: &TestApp, token: &str, calls: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .and(wiremock::matchers::header(
            "Authorization",
            format!("Bearer {token}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(calls)
        .mount(&app.partner_center)
        .await;
}

async fn list(app: &TestApp) -> u16 {
    app.get(
        &format!("/v1/customers/{CUSTOMER}/qualifications"),
        Some(&app.reader_token()),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn the_v1_grant_sends_resource_and_the_credentials() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("client_id=gateway-client-id"))
        .and(body_string_contains(
            format!("client_secret={}", app.client_secret).as_str(),
        ))
        .and(body_string_contains(
            format!("refresh_token={}", app.refresh_token).as_str(),
        ))
        .and(body_string_contains(
            "resource=https%3A%2F%2Fapi.partnercenter.microsoft.com",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "v1-token", "expires_in": "3599"
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    mount_list(&app, "v1-token", 1).await;
    assert_eq!(list(&app).await, 200);
}

#[tokio::test]
async fn the_v2_grant_sends_scope_and_accepts_a_numeric_expiry() {
    let app = spawn_app_with(TestOptions {
        v2_token_endpoint: true,
        ..Default::default()
    })
    .await;
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains(
            "scope=https%3A%2F%2Fapi.partnercenter.microsoft.com%2Fuser_impersonation",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "v2-token", "expires_in": 3599
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    mount_list(&app, "v2-token", 1).await;
    assert_eq!(list(&app).await, 200);
}

#[tokio::test]
async fn the_token_is_cached_across_requests() {
    let app = spawn_app().await;
    app.mount_token_endpoint("cached-token", 1).await;
    mount_list(&app, "cached-token", 3).await;
    for _ in 0..3 {
        assert_eq!(list(&app).await, 200);
    }
}

#[tokio::test]
async fn concurrent_requests_on_a_cold_cache_share_one_token_request() {
    let app = spawn_app().await;
    // A slow token endpoint makes sure the requests really overlap.
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"token_type": "Bearer", "access_token": "shared", "expires_in": "3600"}),
                )
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&app.entra)
        .await;
    mount_list(&app, "shared", 25).await;
    let requests = (0..25).map(|_| list(&app));
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_for_the_next_refresh() {
    let app = spawn_app().await;
    // The first token lives one second, so the second request must refresh.
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
        .and(body_string_contains(format!("refresh_token={}", app.refresh_token).as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "first", "expires_in": "1", "refresh_token": "rotated-once"
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
        .and(body_string_contains("refresh_token=rotated-once"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "second", "expires_in": "3600"
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    mount_list(&app, "first", 1).await;
    mount_list(&app, "second", 1).await;
    assert_eq!(list(&app).await, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(list(&app).await, 200);
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "secret-access-token-7f3a", "expires_in": "3600",
            "refresh_token": "secret-rotated-refresh-9c1d"
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    mount_list(&app, "secret-access-token-7f3a", 1).await;
    let caller_token = app.reader_token();
    let response = app
        .get(
            &format!("/v1/customers/{CUSTOMER}/qualifications"),
            Some(&caller_token),
        )
        .await;
    assert_eq!(response.status(), 200);
    let correlation = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let logs = captured_logs();
    assert!(
        logs.contains(&correlation),
        "the request's lines carry its correlation ID"
    );
    for secret in [
        app.client_secret.as_str(),
        app.refresh_token.as_str(),
        "secret-access-token-7f3a",
        "secret-rotated-refresh-9c1d",
        caller_token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
}

fn token_answer(access_token: &str, extra: serde_json::Value) -> ResponseTemplate {
    let mut body =
        json!({"token_type": "Bearer", "access_token": access_token, "expires_in": "3600"});
    crate::helpers::merge_claims(&mut body, extra);
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test]
async fn a_token_past_its_refresh_point_is_served_while_one_background_refresh_replaces_it() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_token.expiry_margin_secs = 0;
        })),
        ..Default::default()
    })
    .await;
    let started = tokio::time::Instant::now();
    // The first token lives 3 s, and Entra says to refresh it after 1 s.
    Mock::given(method("POST"))
        .respond_with(token_answer(
            "early",
            json!({"expires_in": 3, "refresh_in": 1}),
        ))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&app.entra)
        .await;
    Mock::given(method("POST"))
        .respond_with(token_answer("late", json!({})))
        .expect(1)
        .with_priority(2)
        .mount(&app.entra)
        .await;
    mount_list(&app, "early", 2).await;
    mount_list(&app, "late", 1).await;

    assert_eq!(list(&app).await, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // Past the refresh point: answered at once with the old token, refresh in the background.
    assert_eq!(list(&app).await, 200);
    crate::helpers::wait_for_requests(&app.entra, 2).await;
    // Past the first token's expiry, the refreshed one is still cached: no third request.
    tokio::time::sleep_until(started + Duration::from_millis(3_300)).await;
    assert_eq!(list(&app).await, 200);
}

#[tokio::test]
async fn a_thousand_concurrent_misses_make_one_token_request() {
    use partner_gateway::configuration::Settings;
    use partner_gateway::metrics::Metrics;
    use partner_gateway::partner_center::TokenProvider;
    use secrecy::SecretString;

    let entra = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(token_answer("shared", json!({})).set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&entra)
        .await;
    let mut settings = Settings::defaults().unwrap().partner_token;
    settings.authority_url = entra.uri();
    settings.tenant_id = PARTNER_TENANT.into();
    settings.client_id = "gateway-client-id".into();
    settings.client_secret = Some(SecretString::from("secret"));
    settings.refresh_token = Some(SecretString::from("refresh"));
    let provider = std::sync::Arc::new(
        TokenProvider::new(reqwest::Client::new(), &settings, Metrics::unregistered()).unwrap(),
    );
    let gets = (0..1_000).map(|_| {
        let provider = provider.clone();
        tokio::spawn(async move { provider.get().await.is_ok() })
    });
    let results = futures_util::future::join_all(gets).await;
    assert!(results.into_iter().all(|r| r.unwrap()));
}

/// A gateway configured with `refresh_token` and the store file `file`.
async fn spawn_with_store(file: &std::path::Path, refresh_token: &str) -> TestApp {
    let (file, refresh_token) = (file.to_owned(), refresh_token.to_owned());
    spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            settings.partner_token.refresh_token_file = Some(file);
            settings.partner_token.refresh_token = Some(secrecy::SecretString::from(refresh_token));
        })),
        ..Default::default()
    })
    .await
}

async fn entra_expects_refresh_token(app: &TestApp, refresh_token: &str, answer: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(body_string_contains(
            format!("refresh_token={refresh_token}").as_str(),
        ))
        .respond_with(answer)
        .expect(1)
        .mount(&app.entra)
        .await;
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("refresh-token");

    let first = spawn_with_store(&file, "configured-at-deploy").await;
    entra_expects_refresh_token(
        &first,
        "configured-at-deploy",
        token_answer("t1", json!({"refresh_token": "rotated-weeks-ago"})),
    )
    .await;
    mount_list(&first, "t1", 1).await;
    assert_eq!(list(&first).await, 200);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("rotated-weeks-ago"), "{stored}");
    assert!(
        !stored.contains("configured-at-deploy"),
        "only a fingerprint of it"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the gateway's user may read it");

    // A new process with the same (now stale) configuration prefers the stored token.
    let restarted = spawn_with_store(&file, "configured-at-deploy").await;
    entra_expects_refresh_token(
        &restarted,
        "rotated-weeks-ago",
        token_answer("t2", json!({})),
    )
    .await;
    mount_list(&restarted, "t2", 1).await;
    assert_eq!(list(&restarted).await, 200);
}

#[tokio::test]
async fn a_newly_configured_refresh_token_wins_over_the_stored_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("refresh-token");
    let first = spawn_with_store(&file, "revoked-since").await;
    entra_expects_refresh_token(
        &first,
        "revoked-since",
        token_answer("t1", json!({"refresh_token": "descends-from-revoked"})),
    )
    .await;
    mount_list(&first, "t1", 1).await;
    assert_eq!(list(&first).await, 200);

    // The operator consents again and configures the new refresh token.
    let redeployed = spawn_with_store(&file, "fresh-consent").await;
    entra_expects_refresh_token(&redeployed, "fresh-consent", token_answer("t2", json!({}))).await;
    mount_list(&redeployed, "t2", 1).await;
    assert_eq!(list(&redeployed).await, 200);
}

#[tokio::test]
async fn invalid_grant_is_a_503_with_retry_after_and_entra_is_not_asked_again_at_once() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_token.failure_backoff_base_ms = 10_000;
        })),
        ..Default::default()
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: x",
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    for _ in 0..5 {
        let response = app
            .get(
                &format!("/v1/customers/{CUSTOMER}/qualifications"),
                Some(&app.reader_token()),
            )
            .await;
        // From the very first answer: 10 s base, jitter of up to as much again.
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((5..=20).contains(&wait), "Retry-After {wait}");
        crate::helpers::assert_problem(response, 503, "partner-token-unavailable").await;
    }
    let logs = captured_logs();
    assert!(logs.contains("invalid_grant") && logs.contains("AADSTS700082"));
}

#[tokio::test]
async fn after_the_backoff_entra_is_asked_again() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_token.failure_backoff_base_ms = 100;
            settings.partner_token.failure_backoff_max_ms = 100;
        })),
        ..Default::default()
    })
    .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&app.entra)
        .await;
    Mock::given(method("POST"))
        .respond_with(token_answer("recovered", json!({})))
        .expect(1)
        .with_priority(2)
        .mount(&app.entra)
        .await;
    mount_list(&app, "recovered", 1).await;
    assert_eq!(list(&app).await, 503);
    // 100 ms base, jitter of up to as much again.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(list(&app).await, 200);
}

/// A gateway whose partner tenant is its own, so its token log lines (which name the token
/// URL, and so the tenant) are told apart from other tests' (mock servers and their ports are
/// reused); failures back off for 100 ms.
async fn spawn_with_own_tenant() -> (TestApp, String) {
    let tenant = format!("tenant-{}.onmicrosoft.com", uuid::Uuid::new_v4().simple());
    let configured = tenant.clone();
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            settings.partner_token.failure_backoff_base_ms = 100;
            settings.partner_token.tenant_id = configured;
        })),
        ..Default::default()
    })
    .await;
    (app, tenant)
}

/// Issue #11, defect 1: Entra's own outage answer is not a revoked refresh token.
#[tokio::test]
async fn an_entra_outage_is_transient_honours_retry_after_and_is_not_called_a_refusal() {
    let (app, tenant) = spawn_with_own_tenant().await;
    Mock::given(method("POST"))
        .and(path(format!("/{tenant}/oauth2/token")))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("Retry-After", "7")
                .set_body_json(json!({
                    "error": "temporarily_unavailable",
                    "error_description": "AADSTS50033: Retry the request.\r\nTrace ID: x",
                })),
        )
        .expect(1)
        .mount(&app.entra)
        .await;
    let response = app
        .get("/v1/validation-codes", Some(&app.reader_token()))
        .await;
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (7..=8).contains(&wait),
        "Entra's Retry-After is honoured: {wait}"
    );
    crate::helpers::assert_problem(response, 503, "partner-token-unavailable").await;
    let lines: Vec<String> = captured_logs()
        .lines()
        .filter(|l| l.contains(&tenant))
        .map(str::to_owned)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("temporarily unavailable")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("refused")),
        "an outage is not a refusal: {lines:?}"
    );
}

/// Issue #11, defect 1: a refusal says which, and what the operator must do.
#[tokio::test]
async fn a_refused_refresh_token_is_logged_with_what_the_operator_must_do() {
    let (app, tenant) = spawn_with_own_tenant().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication.",
        })))
        .mount(&app.entra)
        .await;
    let response = app
        .get("/v1/validation-codes", Some(&app.reader_token()))
        .await;
    crate::helpers::assert_problem(response, 503, "partner-token-unavailable").await;
    assert!(
        captured_logs()
            .lines()
            .any(|l| l.contains(&tenant) && l.contains("multi-factor authentication is required")),
        "the log names the cause and the remedy"
    );
}
