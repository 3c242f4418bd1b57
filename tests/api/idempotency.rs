//! `Idempotency-Key` on POST: replay, conflict, mismatch, and one MS-RequestId per caller+key.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{CUSTOMER, TestApp, WRITE_ROLE, assert_problem, post_with_key, spawn_app};

const SOE: &str = r#"{"qualification":"StateOwnedEntity"}"#;
const GCC: &str = r#"{"qualification":"GovernmentCommunityCloud","validationCode":"123456"}"#;

async fn partner_center_creates(app: &TestApp, times: u64, delay: Duration) {
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(
                    json!({"qualification": "StateOwnedEntity", "vettingStatus": "None"}),
                )
                .set_delay(delay),
        )
        .expect(times)
        .mount(&app.partner_center)
        .await;
}

async fn request_ids_seen(app: &TestApp) -> Vec<String> {
    app.partner_center
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["ms-requestid"].to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_repeat_gets_the_first_answer_replayed_without_a_second_call() {
    let app = spawn_app().await;
    partner_center_creates(&app, 1, Duration::ZERO).await;
    let token = app.writer_token();
    let first = post_with_key(&app, &token, "order-42", SOE).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body: Value = first.json().await.unwrap();

    let again = post_with_key(&app, &token, "order-42", SOE).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    // The first request's record, not a second one.
    assert_eq!(
        again.headers()["location"],
        format!(
            "/v1/qualification-requests/{}",
            first_body["id"].as_str().unwrap()
        )
    );
    let again_body: Value = again.json().await.unwrap();
    assert_eq!(again_body, first_body);
}

#[tokio::test]
async fn the_request_id_is_derived_from_caller_and_key_so_other_replicas_send_the_same() {
    let token_claims = json!({"sub": "billing-service", "oid": "billing-service-oid"});
    let mut seen = Vec::new();
    // Two gateways (two replicas, or one restarted), the same caller and key.
    for _ in 0..2 {
        let app = spawn_app().await;
        partner_center_creates(&app, 1, Duration::ZERO).await;
        let token = app.token_with(&[WRITE_ROLE], token_claims.clone());
        let response = post_with_key(&app, &token, "invoice-7", SOE).await;
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        let ids = request_ids_seen(&app).await;
        assert_eq!(body["requestId"], ids[0]);
        seen.push(ids[0].clone());
    }
    assert_eq!(seen[0], seen[1]);
    let id = uuid::Uuid::parse_str(&seen[0]).unwrap();
    assert_eq!(id.get_version_num(), 5);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    partner_center_creates(&app, 1, Duration::ZERO).await;
    let token = app.writer_token();
    assert_eq!(post_with_key(&app, &token, "k-1", SOE).await.status(), 202);
    let reused = post_with_key(&app, &token, "k-1", GCC).await;
    let problem = assert_problem(reused, 422, "idempotency-key-reused").await;
    assert_eq!(problem["field"], "Idempotency-Key");
}

#[tokio::test]
async fn a_retry_while_the_first_is_running_is_a_conflict() {
    let app = spawn_app().await;
    partner_center_creates(&app, 1, Duration::from_secs(2)).await;
    let token = app.writer_token();
    let (first, second) = tokio::join!(post_with_key(&app, &token, "slow-1", SOE), async {
        // Let the first claim the key.
        tokio::time::sleep(Duration::from_millis(300)).await;
        post_with_key(&app, &token, "slow-1", SOE).await
    });
    assert_eq!(first.status(), 202);
    assert_problem(second, 409, "idempotency-request-in-progress").await;
}

#[tokio::test]
async fn a_failure_frees_the_key_and_the_retry_repeats_the_request_id() {
    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    // Four attempts (one call and three retries) all fail: 502 to the caller.
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(4)
        .expect(4)
        .with_priority(1)
        .mount(&app.partner_center)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .expect(1)
        .with_priority(2)
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    let failed = post_with_key(&app, &token, "retry-me", SOE).await;
    assert_problem(failed, 502, "upstream-error").await;
    let retried = post_with_key(&app, &token, "retry-me", SOE).await;
    assert_eq!(retried.status(), 202);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let ids = request_ids_seen(&app).await;
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
}

#[tokio::test]
async fn partner_centers_verdict_is_kept_and_replayed_like_a_202() {
    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(409).set_body_json(
            json!({"code": "600053", "description": "Qualification already exists"}),
        ))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    let first = post_with_key(&app, &token, "dup-1", SOE).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = assert_problem(first, 409, "upstream-rejected").await;
    let again = post_with_key(&app, &token, "dup-1", SOE).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.status(), 409);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let app = spawn_app().await;
    partner_center_creates(&app, 2, Duration::ZERO).await;
    let alice = app.token_with(&[WRITE_ROLE], json!({"sub": "alice"}));
    let bob = app.token_with(&[WRITE_ROLE], json!({"sub": "bob"}));
    let a = post_with_key(&app, &alice, "shared-key", SOE).await;
    let b = post_with_key(&app, &bob, "shared-key", SOE).await;
    assert_eq!(a.status(), 202);
    assert_eq!(b.status(), 202);
    assert!(b.headers().get("idempotent-replayed").is_none());
    let ids = request_ids_seen(&app).await;
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_malformed_key_is_a_400_naming_the_header_with_no_upstream_call() {
    let app = spawn_app().await;
    crate::helpers::forbid_upstream_calls(&app).await;
    let token = app.writer_token();
    let response = post_with_key(&app, &token, &"k".repeat(300), SOE).await;
    let problem = assert_problem(response, 400, "invalid-request").await;
    assert_eq!(problem["field"], "Idempotency-Key");
}

/// Issue #11, defect 7: a client that re-serialises the same request is not refused.
#[tokio::test]
async fn the_same_request_serialised_differently_is_the_same_request() {
    let app = spawn_app().await;
    partner_center_creates(&app, 1, Duration::ZERO).await;
    let token = app.token_with(&[WRITE_ROLE], serde_json::json!({}));
    let first = post_with_key(
        &app,
        &token,
        "reserialised",
        r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#,
    )
    .await;
    assert_eq!(first.status(), 202);
    let again = post_with_key(
        &app,
        &token,
        "reserialised",
        "{\n  \"website\": \"contoso.edu\",\n  \"educationSegment\": \"K12\",\n  \"qualification\": \"Education\"\n}",
    )
    .await;
    assert_eq!(again.status(), 202, "the same request, not a reused key");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
}
