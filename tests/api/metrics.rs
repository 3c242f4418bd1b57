//! `/metrics` on its own listener: what a platform team's Prometheus sees.

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{CUSTOMER, metric_value, post_with_key, spawn_app};

const POST_ROUTE: &str = "/v1/customers/{customerId}/qualifications";

#[tokio::test]
async fn requests_upstream_calls_tokens_and_refusals_are_counted() {
    let app = spawn_app().await;
    app.mount_token_endpoint("metrics-access-token", 1).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"qualification": "StateOwnedEntity"})),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let body = r#"{"qualification":"StateOwnedEntity"}"#;
    let accepted = app
        .post_qualification(CUSTOMER, body, Some(&app.writer_token()))
        .await;
    assert_eq!(accepted.status(), 202);
    let expired = app.token_with(&["Qualifications.ReadWrite"], json!({"exp": 1_000_000}));
    assert_eq!(
        app.post_qualification(CUSTOMER, body, Some(&expired))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_qualification(CUSTOMER, body, None).await.status(),
        401
    );

    let text = app.metrics().await;
    let value = |series: &str| metric_value(&text, series);
    let requests = |class: &str| {
        value(&format!(
            r#"partner_gateway_http_requests_total{{route="{POST_ROUTE}",method="POST",status_class="{class}"}}"#
        ))
    };
    assert_eq!(requests("2xx"), 1.0, "{text}");
    assert_eq!(requests("4xx"), 2.0, "{text}");
    assert_eq!(
        value(&format!(
            r#"partner_gateway_http_request_duration_seconds_count{{route="{POST_ROUTE}",method="POST"}}"#
        )),
        3.0
    );
    assert_eq!(
        value(
            r#"partner_gateway_partner_center_requests_total{operation="create_qualification",status="201"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            r#"partner_gateway_partner_center_request_duration_seconds_count{operation="create_qualification"}"#
        ),
        1.0
    );
    assert_eq!(
        value(r#"partner_gateway_partner_token_refreshes_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(
        value(
            r#"partner_gateway_caller_auth_refusals_total{reason="invalid_token:token_expired"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(r#"partner_gateway_caller_auth_refusals_total{reason="missing_token"}"#),
        1.0
    );
    assert!(value(r#"partner_gateway_caller_jwks_fetches_total{outcome="success"}"#) >= 1.0);
    assert_eq!(
        value(r#"partner_gateway_caller_verified_token_cache_total{result="miss"}"#),
        2.0,
        "the accepted and the expired token were each verified once"
    );
    assert_eq!(
        value(r#"partner_gateway_partner_center_circuit_state{state="closed"}"#),
        1.0
    );
    assert_eq!(
        value(r#"partner_gateway_partner_center_circuit_state{state="open"}"#),
        0.0
    );
    let remaining = value("partner_gateway_partner_token_remaining_seconds");
    assert!((3500.0..=3600.0).contains(&remaining), "{remaining}");
    let age = value("partner_gateway_partner_refresh_token_age_seconds");
    assert!(
        text.contains("partner_gateway_partner_refresh_token_age_seconds ") && age < 60.0,
        "Entra rotated the refresh token just now: {age}"
    );
    assert_eq!(value(r#"partner_gateway_build_info{version="0.1.0"}"#), 1.0);
    assert!(
        !text.contains("metrics-access-token") && !text.contains(&app.refresh_token),
        "no secret in the metrics"
    );
}

#[tokio::test]
async fn a_repeat_caller_and_a_replayed_key_count_as_hits() {
    let app = spawn_app().await;
    app.mount_token_endpoint("hits-access-token", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    for _ in 0..2 {
        let response = post_with_key(
            &app,
            &token,
            "metrics-key-1",
            r#"{"qualification":"StateOwnedEntity"}"#,
        )
        .await;
        assert_eq!(response.status(), 202);
    }
    let text = app.metrics().await;
    let value = |series: &str| metric_value(&text, series);
    assert_eq!(
        value(r#"partner_gateway_caller_verified_token_cache_total{result="hit"}"#),
        1.0
    );
    assert_eq!(
        value(r#"partner_gateway_idempotency_requests_total{result="fresh"}"#),
        1.0
    );
    assert_eq!(
        value(r#"partner_gateway_idempotency_requests_total{result="replay"}"#),
        1.0
    );
}

#[tokio::test]
async fn rate_limit_refusals_and_bulkhead_waits_are_counted() {
    use crate::helpers::{TestOptions, spawn_app_with};
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.rate_limit.requests_per_minute = 1;
            settings.rate_limit.burst = 1;
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("limit-access-token", 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .mount(&app.partner_center)
        .await;
    let token = app.reader_token();
    assert_eq!(
        app.get("/v1/validation-codes", Some(&token)).await.status(),
        200
    );
    assert_eq!(
        app.get("/v1/validation-codes", Some(&token)).await.status(),
        429
    );
    let text = app.metrics().await;
    assert_eq!(
        metric_value(&text, "partner_gateway_caller_rate_limited_total"),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "partner_gateway_partner_center_bulkhead_wait_seconds_count"
        ),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_are_served_only_on_their_own_listener() {
    let app = spawn_app().await;
    let public = app.get("/metrics", None).await;
    assert_eq!(public.status(), 404, "not on the public port");
    let scraped = app.http.get(&app.metrics_url).send().await.unwrap();
    assert_eq!(scraped.status(), 200, "no caller token needed");
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(scraped.text().await.unwrap().ends_with("# EOF\n"));
}
