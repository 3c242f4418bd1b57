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
