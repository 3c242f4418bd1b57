//! Protecting Partner Center: the circuit breaker and the bulkhead.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{CUSTOMER, TestApp, TestOptions, assert_problem, spawn_app_with};

const SOE: &str = r#"{"qualification":"StateOwnedEntity"}"#;

/// No retries, a breaker that opens after 4 attempts with half of them failed.
fn touchy_breaker(open_ms: u64) -> TestOptions {
    TestOptions {
        configure: Some(Box::new(move |settings, _| {
            let pc = &mut settings.partner_center;
            pc.max_retries = 0;
            pc.breaker_window = 4;
            pc.breaker_min_calls = 4;
            pc.breaker_failure_ratio = 0.5;
            pc.breaker_open_ms = open_ms;
        })),
        ..Default::default()
    }
}

async fn partner_center_answers(app: &TestApp, response: ResponseTemplate, priority: u8) {
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(response)
        .with_priority(priority)
        .mount(&app.partner_center)
        .await;
}

async fn post(app: &TestApp) -> reqwest::Response {
    app.post_qualification(CUSTOMER, SOE, Some(&app.writer_token()))
        .await
}

async fn circuit(app: &TestApp) -> Value {
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 200, "the circuit never fails readiness");
    let body: Value = ready.json().await.unwrap();
    body["details"]["partnerCenterCircuit"].clone()
}

async fn calls_seen(app: &TestApp) -> usize {
    app.partner_center.received_requests().await.unwrap().len()
}

#[tokio::test]
async fn sustained_failures_open_the_circuit_and_callers_fail_fast() {
    let app = spawn_app_with(touchy_breaker(60_000)).await;
    app.mount_token_endpoint("pc-token", 1).await;
    partner_center_answers(&app, ResponseTemplate::new(500), 1).await;
    assert!(crate::helpers::wait_until_ready(&app.url, Duration::from_secs(10)).await);
    for _ in 0..4 {
        assert_problem(post(&app).await, 502, "upstream-error").await;
    }
    assert_eq!(circuit(&app).await, "open");

    let fast = post(&app).await;
    let wait: u64 = fast.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((50..=60).contains(&wait), "Retry-After {wait}");
    assert_problem(fast, 503, "upstream-circuit-open").await;
    assert_eq!(calls_seen(&app).await, 4, "no call while open");
}

#[tokio::test]
async fn after_the_pause_one_probe_decides() {
    let app = spawn_app_with(touchy_breaker(1_500)).await;
    app.mount_token_endpoint("pc-token", 1).await;
    partner_center_answers(&app, ResponseTemplate::new(503), 2).await;
    for _ in 0..4 {
        post(&app).await;
    }
    assert_eq!(circuit(&app).await, "open");

    // The probe fails: open again.
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(circuit(&app).await, "half-open");
    assert_problem(post(&app).await, 502, "upstream-error").await;
    assert_eq!(circuit(&app).await, "open");

    // Partner Center recovers; the next probe closes the circuit.
    partner_center_answers(&app, ResponseTemplate::new(201).set_body_json(json!({})), 1).await;
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert_eq!(post(&app).await.status(), 202);
    assert_eq!(circuit(&app).await, "closed");
    assert_eq!(post(&app).await.status(), 202);
}

#[tokio::test]
async fn refusals_and_throttling_do_not_open_the_circuit() {
    let app = spawn_app_with(touchy_breaker(60_000)).await;
    app.mount_token_endpoint("pc-token", 1).await;
    partner_center_answers(&app, ResponseTemplate::new(404), 2).await;
    for _ in 0..4 {
        assert_problem(post(&app).await, 404, "upstream-rejected").await;
    }
    partner_center_answers(&app, ResponseTemplate::new(429), 1).await;
    for _ in 0..4 {
        assert_problem(post(&app).await, 429, "upstream-throttled").await;
    }
    assert_eq!(circuit(&app).await, "closed");
}

#[tokio::test]
async fn the_bulkhead_bounds_calls_in_flight() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.max_concurrent_calls = 1;
            settings.partner_center.bulkhead_wait_ms = 100;
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("pc-token", 1).await;
    partner_center_answers(
        &app,
        ResponseTemplate::new(201)
            .set_body_json(json!({}))
            .set_delay(Duration::from_secs(2)),
        1,
    )
    .await;
    let (first, second) = tokio::join!(post(&app), async {
        // Once Partner Center has the first, it holds the only slot.
        crate::helpers::wait_for_requests(&app.partner_center, 1).await;
        post(&app).await
    });
    assert_eq!(first.status(), 202);
    assert_eq!(second.headers()["retry-after"], "1");
    assert_problem(second, 503, "upstream-busy").await;
    assert_eq!(calls_seen(&app).await, 1);
}

/// Issue #11, defect 6: a 5xx outside 500/502/503/504 still counts as Partner Center failing.
#[tokio::test]
async fn a_501_counts_against_partner_centers_health() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.breaker_window = 1;
            settings.partner_center.breaker_min_calls = 1;
            settings.partner_center.breaker_failure_ratio = 1.0;
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(501))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    let first = app.post_qualification(CUSTOMER, SOE, Some(&token)).await;
    assert_problem(first, 502, "upstream-error").await;
    let second = app.post_qualification(CUSTOMER, SOE, Some(&token)).await;
    assert_problem(second, 503, "upstream-circuit-open").await;
}

/// Issue #11, defect 6: the wait for a bulkhead slot ends with the call's deadline.
#[tokio::test]
async fn the_wait_for_a_slot_ends_at_the_calls_deadline() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.max_concurrent_calls = 1;
            settings.partner_center.bulkhead_wait_ms = 10_000;
            settings.partner_center.call_deadline_ms = 2_500;
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("pc-token", 1).await;
    let retried = "44444444-4444-4444-4444-444444444444";
    let holder = "55555555-5555-5555-5555-555555555555";
    // The retried call's first attempt fails after 1 s; its retry then queues for the slot.
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{retried}/qualifications")))
        .respond_with(ResponseTemplate::new(500).set_delay(Duration::from_millis(1_000)))
        .up_to_n_times(1)
        .mount(&app.partner_center)
        .await;
    // Takes the slot at 1 s and keeps it until its own deadline, 3.4 s.
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{holder}/qualifications")))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(10)))
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    let started = std::time::Instant::now();
    let retried_call = app.post_qualification(retried, SOE, Some(&token));
    let holding_call = async {
        tokio::time::sleep(Duration::from_millis(900)).await;
        app.post_qualification(holder, SOE, Some(&token)).await
    };
    let (retried_answer, _) = tokio::join!(
        async {
            let answer = retried_call.await;
            (answer, started.elapsed())
        },
        holding_call
    );
    let (answer, elapsed) = retried_answer;
    assert_problem(answer, 504, "upstream-timeout").await;
    assert!(
        elapsed < Duration::from_millis(3_000),
        "answered at its 2.5 s deadline, not when the slot came free: {elapsed:?}"
    );
}

/// Issue #11, defect 6: the half-open probe is taken right before the attempt, so callers
/// waiting for a token do not hold it and others are not turned away meanwhile.
#[tokio::test]
async fn no_caller_is_turned_away_while_the_probe_only_waits_for_a_token() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.partner_center.breaker_window = 1;
            settings.partner_center.breaker_min_calls = 1;
            settings.partner_center.breaker_failure_ratio = 1.0;
            settings.partner_center.breaker_open_ms = 100;
            settings.partner_center.max_retries = 0;
            settings.partner_center.call_deadline_ms = 400;
        })),
        ..Default::default()
    })
    .await;
    // A first token that lives half a second, then Entra turns slow.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "short-lived-token", "expires_in": "1",
        })))
        .up_to_n_times(1)
        .mount(&app.entra)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "slow-token", "expires_in": "3600"}))
                .set_delay(Duration::from_millis(1_500)),
        )
        .mount(&app.entra)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    let opened = app.post_qualification(CUSTOMER, SOE, Some(&token)).await;
    assert_problem(opened, 502, "upstream-error").await;
    // The circuit is half-open and the token gone.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let first = app.post_qualification(CUSTOMER, SOE, Some(&token));
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.post_qualification(CUSTOMER, SOE, Some(&token)).await
    };
    let (first, second) = tokio::join!(first, second);
    for answer in [first, second] {
        assert_problem(answer, 504, "upstream-timeout").await;
    }
}
