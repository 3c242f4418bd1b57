use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{CUSTOMER, TestApp, TestOptions, assert_problem, spawn_app, spawn_app_with};

const SOE: &str = r#"{"qualification":"StateOwnedEntity"}"#;

/// Partner Center answers every attempt with `response`; exactly `attempts` arrive.
async fn partner_center_answers(app: &TestApp, response: ResponseTemplate, attempts: u64) {
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(response)
        .expect(attempts)
        .mount(&app.partner_center)
        .await;
}

/// A 2 s deadline per logical call: Partner Center's longer waits are passed on, not waited.
fn short_deadline() -> TestOptions {
    TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.call_deadline_ms = 2_000;
        })),
        ..Default::default()
    }
}

async fn post(app: &TestApp) -> reqwest::Response {
    app.post_qualification(CUSTOMER, SOE, Some(&app.writer_token()))
        .await
}

/// The problem names the MS-RequestId that Partner Center saw.
async fn assert_names_request_id(app: &TestApp, problem: &Value) {
    let sent = app.partner_center.received_requests().await.unwrap();
    assert_eq!(
        problem["requestId"],
        sent[0].headers["ms-requestid"].to_str().unwrap()
    );
}

#[tokio::test]
async fn a_partner_center_400_is_a_422_with_its_code_and_description() {
    let app = spawn_app().await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(400).set_body_json(json!({
            "code": 600042, "description": "The validation code is not valid.", "data": [], "source": "PartnerFD"
        })),
        1,
    )
    .await;
    let problem = assert_problem(post(&app).await, 422, "upstream-rejected").await;
    assert_eq!(problem["upstreamCode"], "600042");
    assert_eq!(
        problem["upstreamDescription"],
        "The validation code is not valid."
    );
    assert_names_request_id(&app, &problem).await;
}

#[tokio::test]
async fn an_unknown_customer_is_a_404() {
    let app = spawn_app().await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(404)
            .set_body_json(json!({"code": "600001", "description": "Customer not found"})),
        1,
    )
    .await;
    let problem = assert_problem(post(&app).await, 404, "upstream-rejected").await;
    assert_eq!(problem["upstreamCode"], "600001");
}

#[tokio::test]
async fn a_401_gets_one_fresh_token_and_one_retry_then_is_the_gateways_problem() {
    let app = spawn_app().await;
    // The refused token is dropped: the retry redeems a new one. No third attempt.
    app.mount_token_endpoint("pc-token", 2).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&app.partner_center)
        .await;
    let response = post(&app).await;
    assert!(response.headers().get("www-authenticate").is_none());
    assert_problem(response, 502, "partner-credentials-rejected").await;
}

#[tokio::test]
async fn throttling_beyond_the_deadline_is_passed_on_with_retry_after() {
    let app = spawn_app_with(short_deadline()).await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "17")
            .set_body_json(json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 17 seconds."})),
        1,
    )
    .await;
    let response = post(&app).await;
    assert_eq!(response.headers()["retry-after"], "17");
    assert_problem(response, 429, "upstream-throttled").await;
}

#[tokio::test]
async fn throttling_without_the_header_takes_the_wait_from_the_message() {
    let app = spawn_app_with(short_deadline()).await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(429)
            .set_body_json(json!({"statusCode": 429, "message": "Rate limit is exceeded. Try again in 57 seconds."})),
        1,
    )
    .await;
    let response = post(&app).await;
    assert_eq!(response.headers()["retry-after"], "57");
    assert_problem(response, 429, "upstream-throttled").await;
}

#[tokio::test]
async fn a_partner_center_5xx_is_retried_then_a_502() {
    let app = spawn_app().await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(503).set_body_string("<html>down</html>"),
        4,
    )
    .await;
    let problem = assert_problem(post(&app).await, 502, "upstream-error").await;
    assert_names_request_id(&app, &problem).await;
}

#[tokio::test]
async fn an_answer_that_is_not_json_is_a_502() {
    let app = spawn_app().await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(201).set_body_string("<html>surprise</html>"),
        1,
    )
    .await;
    assert_problem(post(&app).await, 502, "upstream-invalid-response").await;
}

#[tokio::test]
async fn a_partner_center_that_stays_slow_is_a_504_after_the_retries() {
    let app = spawn_app_with(TestOptions {
        request_timeout_ms: 300,
        ..Default::default()
    })
    .await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(201)
            .set_body_json(json!({"qualification": "StateOwnedEntity"}))
            .set_delay(Duration::from_secs(3)),
        4,
    )
    .await;
    assert_problem(post(&app).await, 504, "upstream-timeout").await;
}

#[tokio::test]
async fn a_refused_refresh_token_is_a_503_and_partner_center_is_not_called() {
    let app = spawn_app().await;
    Mock::given(method("POST"))
        .and(path("/contoso-partner.onmicrosoft.com/oauth2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "AADSTS70008: The provided authorization code or refresh token has expired.\r\nTrace ID: 1",
        })))
        .expect(1)
        .mount(&app.entra)
        .await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&app.partner_center)
        .await;
    let problem = assert_problem(post(&app).await, 503, "partner-token-unavailable").await;
    assert!(
        !problem.to_string().contains("AADSTS"),
        "internals stay in the logs: {problem}"
    );
    // What the operator must do is said, though.
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("the refresh token expired (unused too long): sign in again with `partner-gateway login`"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_unreachable_partner_center_is_a_502() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = spawn_app_with(TestOptions {
        partner_center_base_url: Some(format!("http://127.0.0.1:{closed_port}")),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("pc-token", 1).await;
    assert_problem(post(&app).await, 502, "upstream-unreachable").await;
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed_with_the_token() {
    let app = spawn_app().await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(302).insert_header("Location", "http://127.0.0.1:9/elsewhere"),
        1,
    )
    .await;
    assert_problem(post(&app).await, 502, "upstream-invalid-response").await;
}

/// Issue #11, defect 8: error bodies that are not objects still make clean problems.
#[tokio::test]
async fn error_bodies_that_are_not_objects_become_clean_problems() {
    // One attempt each, and the breaker kept out of it.
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.max_retries = 0;
            settings.partner_center.breaker_min_calls = settings.partner_center.breaker_window;
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("pc-token", 1).await;
    let html = "<html><head><title>Bad Gateway</title></head><body><h1>502&nbsp;Bad Gateway</h1></body></html>";
    /// Partner Center's status, content type and body; the gateway's status, type and
    /// `upstreamDescription`.
    type Case<'a> = (u16, &'a str, &'a str, u16, &'a str, Option<&'a str>);
    let cases: [Case; 8] = [
        (
            403,
            "application/json",
            r#""Customer tagging denied.""#,
            403,
            "upstream-rejected",
            Some("Customer tagging denied."),
        ),
        (
            404,
            "text/plain",
            "No such customer\n",
            404,
            "upstream-rejected",
            Some("No such customer"),
        ),
        (409, "text/plain", "", 409, "upstream-rejected", None),
        (
            400,
            "text/html",
            html,
            422,
            "upstream-rejected",
            Some("Bad Gateway 502 Bad Gateway"),
        ),
        (
            500,
            "application/json",
            r#""Internal failure""#,
            502,
            "upstream-error",
            Some("Internal failure"),
        ),
        (
            502,
            "text/html",
            html,
            502,
            "upstream-error",
            Some("Bad Gateway 502 Bad Gateway"),
        ),
        (504, "text/plain", "", 502, "upstream-error", None),
        (
            507,
            "text/plain",
            "Insufficient Storage",
            502,
            "upstream-error",
            Some("Insufficient Storage"),
        ),
    ];
    for (n, (status, content_type, body, answered, slug, description)) in cases.iter().enumerate() {
        let customer = format!("66666666-6666-6666-6666-{n:012}");
        Mock::given(method("POST"))
            .and(path(format!("/v1/customers/{customer}/qualifications")))
            .respond_with(
                ResponseTemplate::new(*status).set_body_raw(body.as_bytes().to_vec(), content_type),
            )
            .mount(&app.partner_center)
            .await;
        let response = app
            .post_qualification(&customer, SOE, Some(&app.writer_token()))
            .await;
        let problem = assert_problem(response, *answered, slug).await;
        assert_eq!(
            problem["upstreamDescription"].as_str(),
            *description,
            "{status} {content_type}: {problem}"
        );
    }
}
