//! The audit trail: one record per state-changing request, whatever its outcome.

use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    CUSTOMER, ISSUER, TestApp, TestOptions, log_lines, metric_value, post_with_key, spawn_app,
    spawn_app_with,
};

const GCC: &str = r#"{"qualification":"GovernmentCommunityCloud","validationCode":"739104"}"#;

/// Posts `body` with a fresh correlation ID and returns the audit records logged for it.
async fn post_and_audit(
    app: &TestApp,
    customer: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, Vec<Value>) {
    let correlation = Uuid::new_v4().to_string();
    let mut request = app
        .http
        .post(format!(
            "{}/v1/customers/{customer}/qualifications",
            app.url
        ))
        .header("Content-Type", "application/json")
        .header("X-Correlation-ID", &correlation)
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let status = request.send().await.unwrap().status().as_u16();
    let records = log_lines(|line| {
        line["target"] == "audit" && line["correlation_id"] == correlation.as_str()
    });
    (status, records)
}

fn only(records: Vec<Value>) -> Value {
    assert_eq!(records.len(), 1, "exactly one audit record: {records:?}");
    records.into_iter().next().unwrap()
}

#[tokio::test]
async fn every_outcome_of_a_post_leaves_exactly_one_record() {
    let app = spawn_app().await;
    app.mount_token_endpoint("audit-access-token", 1).await;
    let refused_customer = "11111111-1111-1111-1111-111111111111";
    let failing_customer = "22222222-2222-2222-2222-222222222222";
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved"
        })))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/customers/{refused_customer}/qualifications"
        )))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(json!({"code": 600041, "description": "already qualified"})),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/customers/{failing_customer}/qualifications"
        )))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.partner_center)
        .await;
    let token = app.token_with(
        &["Qualifications.ReadWrite"],
        json!({"oid": "auditor-oid", "azp": "audit-app"}),
    );

    let (status, records) = post_and_audit(&app, CUSTOMER, GCC, Some(&token)).await;
    assert_eq!(status, 202);
    let accepted = only(records);
    for (field, value) in [
        ("action", json!("qualification.request")),
        ("outcome", json!("accepted")),
        ("status", json!(202)),
        ("upstream_status", json!(201)),
        ("caller", json!("auditor-oid")),
        ("caller_issuer", json!(ISSUER)),
        ("caller_app", json!("audit-app")),
        ("customer_id", json!(CUSTOMER)),
        ("qualification", json!("GovernmentCommunityCloud")),
        ("validation_code", json!("****04")),
        ("idempotent_replay", json!(false)),
    ] {
        assert_eq!(accepted[field], value, "{field} in {accepted}");
    }
    assert!(
        accepted["request_id"]
            .as_str()
            .is_some_and(|id| Uuid::try_parse(id).is_ok())
    );
    assert!(
        accepted["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{accepted}"
    );

    let (status, records) = post_and_audit(
        &app,
        "not-a-guid",
        r#"{"qualification":"Nope"}"#,
        Some(&token),
    )
    .await;
    assert_eq!(status, 400);
    let invalid = only(records);
    assert_eq!(invalid["outcome"], "refused");
    assert_eq!(invalid["problem"], "invalid-request");
    assert_eq!(invalid["invalid_fields"], "customerId,qualification");
    assert_eq!(invalid["caller"], "auditor-oid");
    assert!(invalid.get("upstream_status").is_none());

    let (status, records) = post_and_audit(&app, CUSTOMER, GCC, Some("not.a.token")).await;
    assert_eq!(status, 401);
    let unauthenticated = only(records);
    assert_eq!(unauthenticated["outcome"], "refused");
    assert_eq!(unauthenticated["problem"], "invalid-token");
    assert!(
        unauthenticated.get("caller").is_none(),
        "no caller was verified"
    );

    let (status, records) = post_and_audit(&app, refused_customer, GCC, Some(&token)).await;
    assert_eq!(status, 409);
    let rejected = only(records);
    assert_eq!(rejected["outcome"], "rejected");
    assert_eq!(rejected["upstream_status"], 409);
    assert_eq!(rejected["problem"], "upstream-rejected");

    let (status, records) = post_and_audit(&app, failing_customer, GCC, Some(&token)).await;
    assert_eq!(status, 502);
    let failed = only(records);
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["upstream_status"], 500);

    let everything = crate::helpers::captured_logs();
    assert!(
        !everything.contains("739104"),
        "the validation code is never logged whole"
    );
    assert!(!everything.contains(&token), "nor the caller's token");
    assert_eq!(
        metric_value(&app.metrics().await, "partner_gateway_audit_records_total"),
        5.0
    );
}

#[tokio::test]
async fn a_token_in_the_url_of_a_post_is_audited_as_refused() {
    let app = spawn_app().await;
    let correlation = Uuid::new_v4().to_string();
    let response = app
        .http
        .post(format!(
            "{}/v1/customers/{CUSTOMER}/qualifications?Access_Token=abc",
            app.url
        ))
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(response, 400, "invalid-auth-request").await;
    let record = only(log_lines(|l| {
        l["target"] == "audit" && l["correlation_id"] == correlation.as_str()
    }));
    assert_eq!(record["problem"], "invalid-auth-request");
}

#[tokio::test]
async fn reads_are_not_audited() {
    let app = spawn_app().await;
    let correlation = Uuid::new_v4().to_string();
    let _ = app
        .get_request("/v1/validation-codes", None)
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert!(
        log_lines(|l| l["target"] == "audit" && l["correlation_id"] == correlation.as_str())
            .is_empty()
    );
}

#[tokio::test]
async fn records_are_appended_to_the_audit_file_with_replays_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let configured = file.clone();
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            settings.audit.file = Some(configured)
        })),
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint("file-access-token", 1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let token = app.writer_token();
    for _ in 0..2 {
        let response = post_with_key(&app, &token, "audit-file-key", GCC).await;
        assert_eq!(response.status(), 202);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{text}");
    assert_eq!(records[0]["idempotent_replay"], false);
    assert_eq!(records[1]["idempotent_replay"], true);
    assert_eq!(records[1]["outcome"], "accepted");
    assert!(!text.contains("739104") && text.contains("****04"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn a_failed_audit_write_is_logged_loudly_and_counted() {
    // /dev/full opens, then refuses every write.
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.audit.file = Some("/dev/full".into())
        })),
        ..Default::default()
    })
    .await;
    let (status, records) =
        post_and_audit(&app, "not-a-guid", "{}", Some(&app.writer_token())).await;
    assert_eq!(status, 400);
    assert_eq!(
        records.iter().filter(|r| r["level"] == "INFO").count(),
        1,
        "{records:?}"
    );
    assert!(
        records.iter().any(|r| r["level"] == "ERROR"
            && r["message"]
                .as_str()
                .unwrap()
                .contains("AUDIT RECORD NOT WRITTEN")),
        "{records:?}"
    );
    assert_eq!(
        metric_value(
            &app.metrics().await,
            "partner_gateway_audit_write_failures_total"
        ),
        1.0
    );
}

/// Subscribing, unsubscribing and redelivering change what the gateway sends out: audited.
#[tokio::test]
async fn webhook_subscription_changes_are_audited_with_what_they_changed() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| crate::helpers::fast_watch(settings))),
        ..TestOptions::default()
    })
    .await;
    let writer = app.writer_token();
    let audited = |correlation: String| {
        log_lines(move |l| l["target"] == "audit" && l["correlation_id"] == correlation.as_str())
    };
    let correlation = Uuid::new_v4().to_string();
    let created = app
        .http
        .post(format!("{}/v1/webhooks", app.url))
        .bearer_auth(&writer)
        .header("X-Correlation-ID", &correlation)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["qualification.approved"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let secret = created.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::helpers::register_secret(&secret);
    let record = only(audited(correlation));
    assert_eq!(record["action"], "webhook.subscribe");
    assert_eq!(record["outcome"], "accepted");
    assert_eq!(record["resource"], location.as_str());
    assert_eq!(record["caller_app"], "caller-app");
    assert!(
        !record.to_string().contains(&secret),
        "no secret in the record"
    );

    let correlation = Uuid::new_v4().to_string();
    let deleted = app
        .http
        .delete(format!("{}{location}", app.url))
        .bearer_auth(&writer)
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let record = only(audited(correlation));
    assert_eq!(record["action"], "webhook.unsubscribe");
    assert_eq!(record["resource"], location.as_str());

    let correlation = Uuid::new_v4().to_string();
    let refused = app
        .http
        .post(format!(
            "{}/v1/webhook-deliveries/msg_unknown/redeliver",
            app.url
        ))
        .bearer_auth(&writer)
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404);
    let record = only(audited(correlation));
    assert_eq!(
        (&record["action"], &record["outcome"]),
        (&json!("webhook.redeliver"), &json!("refused"))
    );
}
