//! Running it: CORS for browser apps, trace context, the access line, graceful drain.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;
use wiremock::matchers::{header, method};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{CUSTOMER, TestOptions, log_lines, spawn_app, spawn_app_with};

const PORTAL: &str = "https://portal.example.test";

async fn spawn_with_cors() -> crate::helpers::TestApp {
    spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.cors.allowed_origins = vec![PORTAL.into()];
        })),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_and_exposed_headers() {
    let app = spawn_with_cors().await;
    let preflight = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/customers/{CUSTOMER}/qualifications", app.url),
        )
        .header("Origin", PORTAL)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key,x-correlation-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], PORTAL);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-correlation-id",
    ] {
        assert!(allowed.contains(name), "{name} in {allowed}");
    }
    assert!(
        !headers.contains_key("access-control-allow-credentials"),
        "bearer tokens, not cookies"
    );

    let actual = app
        .get_request("/healthz", None)
        .header("Origin", PORTAL)
        .send()
        .await
        .unwrap();
    assert_eq!(actual.status(), 200);
    assert_eq!(actual.headers()["access-control-allow-origin"], PORTAL);
    let exposed = actual.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "location",
        "x-correlation-id",
        "retry-after",
        "idempotent-replayed",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
}

#[tokio::test]
async fn another_origin_gets_no_cors_headers() {
    let app = spawn_with_cors().await;
    let actual = app
        .get_request("/healthz", None)
        .header("Origin", "https://evil.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(actual.status(), 200, "the request itself is served...");
    assert!(
        !actual.headers().contains_key("access-control-allow-origin"),
        "...but the browser is not allowed to read it"
    );
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/healthz", app.url))
        .header("Origin", "https://evil.example.test")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert!(
        preflight.status().is_client_error(),
        "{}",
        preflight.status()
    );
}

#[tokio::test]
async fn without_configured_origins_there_is_no_cors_at_all() {
    let app = spawn_app().await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/healthz", app.url))
        .header("Origin", PORTAL)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204, "the plain OPTIONS answer");
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn the_callers_trace_is_continued_to_partner_center_and_in_the_logs() {
    let app = spawn_app().await;
    app.mount_token_endpoint("trace-access-token", 1).await;
    let trace_id = format!("{:032x}", Uuid::new_v4().as_u128());
    Mock::given(method("GET"))
        .and(header("tracestate", "vendor=abc"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let response = app
        .get_request("/v1/validation-codes", Some(&app.reader_token()))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("tracestate", "vendor=abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = &app.partner_center.received_requests().await.unwrap()[0];
    let sent = received.headers["traceparent"].to_str().unwrap();
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id.as_str(), "01")
    );
    assert_ne!(parts[2], "00f067aa0ba902b7", "the gateway's own span");

    let lines = log_lines(|line| line["trace_id"] == trace_id.as_str());
    assert!(
        lines.iter().any(|l| l["target"] == "access")
            && lines.iter().any(|l| l["message"]
                .as_str()
                .is_some_and(|m| m.contains("Partner Center answered"))),
        "every line of the request names the trace: {lines:?}"
    );
}

#[tokio::test]
async fn a_request_without_a_trace_starts_one() {
    let app = spawn_app().await;
    app.mount_token_endpoint("trace-access-token", 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .mount(&app.partner_center)
        .await;
    let response = app
        .get("/v1/validation-codes", Some(&app.reader_token()))
        .await;
    assert_eq!(response.status(), 200);
    let received = &app.partner_center.received_requests().await.unwrap()[0];
    let sent = received.headers["traceparent"].to_str().unwrap();
    assert_eq!(sent.len(), 55, "{sent}");
    assert!(!received.headers.contains_key("tracestate"));
}

#[tokio::test]
async fn one_compact_access_line_per_request_and_a_refusal_is_one_line() {
    let app = spawn_app().await;
    let correlation = Uuid::new_v4().to_string();
    let response = app
        .get_request("/v1/validation-codes?code=123456", Some("not.a.token"))
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let lines = log_lines(|line| line["correlation_id"] == correlation.as_str());
    assert_eq!(lines.len(), 1, "one line for a refused token: {lines:?}");
    let access = &lines[0];
    assert_eq!(access["target"], "access");
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["status"], 401);
    assert_eq!(access["problem"], "invalid-token");
    assert_eq!(access["http.route"], "/v1/validation-codes");
    assert_eq!(access["http.path"], "/v1/validation-codes");
    assert_eq!(access["http.query_params"], "code", "names, never values");
    assert!(access["latency_ms"].as_f64().is_some());
    let latency = access["latency_ms"].to_string();
    assert!(
        latency
            .split('.')
            .nth(1)
            .is_none_or(|decimals| decimals.len() <= 3),
        "latency in milliseconds to the microsecond, without float noise: {latency}"
    );
    assert!(
        !access.to_string().contains("123456"),
        "no query value: {access}"
    );
    assert!(access.to_string().len() < 900, "compact: {access}");
}

#[tokio::test]
async fn lines_inside_a_request_carry_the_ids_but_not_the_request_fields() {
    let app = spawn_app().await;
    app.mount_token_endpoint("compact-access-token", 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .mount(&app.partner_center)
        .await;
    let correlation = Uuid::new_v4().to_string();
    let response = app
        .get_request("/v1/validation-codes", Some(&app.reader_token()))
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = log_lines(|line| line["correlation_id"] == correlation.as_str());
    let access: Vec<_> = lines.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 1, "{lines:?}");
    assert_eq!(access[0]["caller"], "caller-subject");
    let sent = &app.partner_center.received_requests().await.unwrap()[0];
    assert_eq!(
        access[0]["ms_request_id"],
        sent.headers["ms-requestid"].to_str().unwrap(),
        "the access line says what Partner Center was asked and answered"
    );
    assert_eq!(access[0]["upstream_status"], 200);
    assert_eq!(access[0]["upstream_attempts"], 1);
    let inner: Vec<_> = lines.iter().filter(|l| l["target"] != "access").collect();
    assert!(
        !inner.is_empty(),
        "the Partner Center call logged inside the request"
    );
    for line in inner {
        assert!(line["trace_id"].is_string(), "{line}");
        assert!(
            line.get("http.user_agent").is_none() && line.get("caller").is_none(),
            "the request span's fields only on the access line: {line}"
        );
    }
}

#[tokio::test]
async fn draining_answers_readyz_503_and_closes_connections_while_still_serving() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.server.shutdown_delay_ms = 60_000;
        })),
        ..Default::default()
    })
    .await;
    assert!(crate::helpers::wait_until_ready(&app.url, Duration::from_secs(10)).await);
    let before = app.get("/healthz", None).await;
    assert!(
        before
            .headers()
            .get("connection")
            .is_none_or(|c| c != "close")
    );

    app.lifecycle.shut_down();
    let readiness = app.get("/readyz", None).await;
    assert_eq!(readiness.status(), 503);
    assert_eq!(
        readiness.json::<serde_json::Value>().await.unwrap()["status"],
        "draining"
    );
    let still_served = app.get("/healthz", None).await;
    assert_eq!(
        still_served.status(),
        200,
        "requests are still served while draining"
    );
    assert_eq!(still_served.headers()["connection"], "close");
    let text = app.metrics().await;
    assert_eq!(
        crate::helpers::metric_value(&text, "partner_gateway_shutting_down"),
        1.0
    );
}
