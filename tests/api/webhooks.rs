//! Webhook subscriptions: who may subscribe what, where; dead letters and redelivery.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    CUSTOMER, EDUCATION, TestApp, TestOptions, WRITE_ROLE, assert_problem, eventually, fast_watch,
    partner_center_lists_education, partner_center_takes_education, spawn_app_with, subscribe,
};

async fn post_subscription(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.http
        .post(format!("{}/v1/webhooks", app.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refused_callback_is_refused_at_subscription_time_naming_why() {
    // Production's policy: https, listed hosts, public addresses only. (No case here needs
    // DNS: tests talk to loopback only.)
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.webhooks.allowed_hosts = vec![
                "hooks.contoso.com".into(),
                "127.0.0.1".into(),
                "*.fabrikam.com".into(),
            ];
        })),
        ..TestOptions::default()
    })
    .await;
    let never_called = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&never_called)
        .await;
    let writer = app.writer_token();
    for (url, says) in [
        ("http://hooks.contoso.com/hook".to_owned(), "https"),
        ("https://evil.example.com/hook".to_owned(), "allowed_hosts"),
        ("https://127.0.0.1/hook".to_owned(), "internal address"),
        (format!("{}/hook", never_called.uri()), "https"),
        (
            "https://user:pw@hooks.contoso.com/hook".to_owned(),
            "credentials",
        ),
        ("https://fabrikam.com/hook".to_owned(), "allowed_hosts"),
    ] {
        let response = post_subscription(
            &app,
            &writer,
            json!({"url": url, "events": ["qualification.approved"]}),
        )
        .await;
        // Well-formed, but a URL the gateway will not call: 422, its own type.
        let problem = assert_problem(response, 422, "callback-url-refused").await;
        assert_eq!(problem["field"], "url", "{url}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{url}: {problem}"
        );
    }
    let response = post_subscription(
        &app,
        &writer,
        json!({"url": "https://127.0.0.1/h", "events": ["qualification.maybe"], "secret": "mine"}),
    )
    .await;
    let problem = assert_problem(response, 400, "invalid-request").await;
    let fields = crate::helpers::fields_at_fault(&problem);
    assert_eq!(
        fields,
        ["secret", "url", "events[0]"],
        "every fault at once: {problem}"
    );
    let response = post_subscription(
        &app,
        &app.reader_token(),
        json!({"url": "https://hooks.contoso.com/h", "events": ["qualification.approved"]}),
    )
    .await;
    assert_problem(response, 403, "insufficient-scope").await;
    let (_, page) = (
        200,
        app.get("/v1/webhooks", Some(&writer))
            .await
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(page["items"], json!([]), "nothing was subscribed");
}

#[tokio::test]
async fn subscriptions_belong_to_their_app_and_show_their_secret_once() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            fast_watch(settings);
            settings.webhooks.max_subscriptions_per_app = 2;
        })),
        ..TestOptions::default()
    })
    .await;
    let writer = app.writer_token();
    let (id, secret) = subscribe(
        &app,
        &writer,
        "http://127.0.0.1:9/a",
        &["qualification.approved", "qualification.approved"],
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    let listed: Value = app
        .get("/v1/webhooks", Some(&writer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(
        listed["items"][0]["events"],
        json!(["qualification.approved"])
    );
    assert!(listed["items"][0].get("secret").is_none(), "{listed}");
    let one: Value = app
        .get(&format!("/v1/webhooks/{id}"), Some(&writer))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        one.get("secret").is_none() && one["url"] == "http://127.0.0.1:9/a",
        "{one}"
    );

    let other = app.token_with(&[WRITE_ROLE], json!({"azp": "someone-else"}));
    assert_problem(
        app.get(&format!("/v1/webhooks/{id}"), Some(&other)).await,
        404,
        "not-found",
    )
    .await;
    let deleted = app
        .http
        .delete(format!("{}/v1/webhooks/{id}", app.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_problem(deleted, 404, "not-found").await;

    subscribe(
        &app,
        &writer,
        "http://127.0.0.1:9/b",
        &["qualification.denied"],
    )
    .await;
    let third = post_subscription(
        &app,
        &writer,
        json!({"url": "http://127.0.0.1:9/c", "events": ["qualification.denied"]}),
    )
    .await;
    assert_problem(third, 409, "subscription-limit").await;

    let deleted = app
        .http
        .delete(format!("{}/v1/webhooks/{id}", app.url))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_problem(
        app.get(&format!("/v1/webhooks/{id}"), Some(&writer)).await,
        404,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_receiver_down_past_the_retry_window_is_dead_lettered_and_can_be_redelivered() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            fast_watch(settings);
            settings.webhooks.give_up_after_secs = 1;
        })),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint("pc-token-dead-letter", 1).await;
    partner_center_takes_education(&app, CUSTOMER, 1).await;
    partner_center_lists_education(&app, CUSTOMER, "Approved", 1).await;
    let receiver = MockServer::start().await;
    let down = Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503))
        .mount_as_scoped(&receiver)
        .await;
    let writer = app.writer_token();
    subscribe(
        &app,
        &writer,
        &format!("{}/hook", receiver.uri()),
        &["qualification.approved"],
    )
    .await;
    assert_eq!(
        app.post_qualification(CUSTOMER, EDUCATION, Some(&writer))
            .await
            .status(),
        202
    );

    let dead = eventually(Duration::from_secs(15), || async {
        let page: Value = app
            .get("/v1/webhook-deliveries?status=failed", Some(&writer))
            .await
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await
    .expect("the delivery is dead-lettered");
    assert_eq!(dead["status"], "failed");
    assert_eq!(dead["lastStatus"], 503);
    assert!(dead["attempts"].as_i64().unwrap() >= 2, "{dead}");
    assert_eq!(dead["payload"]["type"], "qualification.approved");
    let attempts_while_down = receiver.received_requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received_requests().await.unwrap().len(),
        attempts_while_down,
        "dead letters are not retried"
    );

    // The receiver is back; the operator redelivers.
    drop(down);
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&receiver)
        .await;
    let id = dead["id"].as_str().unwrap();
    let other = app.token_with(&[WRITE_ROLE], json!({"azp": "someone-else"}));
    let refused = app
        .http
        .post(format!("{}/v1/webhook-deliveries/{id}/redeliver", app.url))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 404, "not-found").await;
    let queued = app
        .http
        .post(format!("{}/v1/webhook-deliveries/{id}/redeliver", app.url))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let delivered = eventually(Duration::from_secs(10), || async {
        let page: Value = app
            .get("/v1/webhook-deliveries?status=delivered", Some(&writer))
            .await
            .json()
            .await
            .unwrap();
        page["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await
    .expect("the redelivery succeeds");
    assert_eq!(delivered["id"], id);
    let received = receiver.received_requests().await.unwrap();
    assert_eq!(
        received.last().unwrap().headers["webhook-id"],
        id,
        "the same message id"
    );
    receiver.verify().await;
}

/// The README's verification snippet accepts what the gateway signs, and nothing else.
#[tokio::test]
async fn the_readmes_python_snippet_verifies_a_real_delivery() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("# verify_webhook.py")
        .expect("the README has the snippet");
    let snippet = &readme[start..];
    let snippet = &snippet[..snippet.find("```").unwrap()];

    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| fast_watch(settings))),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint("pc-token-readme", 1).await;
    partner_center_takes_education(&app, CUSTOMER, 1).await;
    partner_center_lists_education(&app, CUSTOMER, "Approved", 1).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let writer = app.writer_token();
    let (_, secret) = subscribe(
        &app,
        &writer,
        &format!("{}/hook", receiver.uri()),
        &["qualification.approved"],
    )
    .await;
    assert_eq!(
        app.post_qualification(CUSTOMER, EDUCATION, Some(&writer))
            .await
            .status(),
        202
    );
    let delivery = eventually(Duration::from_secs(15), || async {
        receiver.received_requests().await.unwrap().first().cloned()
    })
    .await
    .expect("a delivery arrives");

    let dir = tempfile::tempdir().unwrap();
    let header = |name: &str| delivery.headers[name].to_str().unwrap().to_owned();
    let headers = json!({
        "webhook-id": header("webhook-id"),
        "webhook-timestamp": header("webhook-timestamp"),
        "webhook-signature": header("webhook-signature"),
    });
    std::fs::write(dir.path().join("verify_webhook.py"), snippet).unwrap();
    std::fs::write(dir.path().join("headers.json"), headers.to_string()).unwrap();
    std::fs::write(dir.path().join("secret"), &secret).unwrap();
    let check = |body: &[u8]| {
        std::fs::write(dir.path().join("body"), body).unwrap();
        let output = std::process::Command::new("python3")
            .current_dir(dir.path())
            .arg("-c")
            .arg("import json; from verify_webhook import verify; print(verify(open('secret').read(), json.load(open('headers.json')), open('body', 'rb').read()))")
            .output()
            .expect("python3 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(check(&delivery.body), "True");
    let mut tampered = delivery.body.clone();
    tampered.push(b' ');
    assert_eq!(check(&tampered), "False");
}
