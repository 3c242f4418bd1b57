//! The store and the vetting watch from the outside: every POST recorded with its timeline,
//! followed until Partner Center decides, and told to the app's webhooks, signed.

use std::time::Duration;

use partner_gateway::webhooks::signature::{Verdict, verify};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    CUSTOMER, EDUCATION, TestApp, TestOptions, WRITE_ROLE, eventually, fast_watch,
    partner_center_lists_education, partner_center_takes_education, spawn_app_with, subscribe,
};

const PC_TOKEN: &str = "pc-token-for-the-watch";

async fn watched_app() -> TestApp {
    spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| fast_watch(settings))),
        ..TestOptions::default()
    })
    .await
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app.get(path, Some(token)).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The request's record once its status is `wanted` (bounded wait).
async fn record_once(app: &TestApp, token: &str, id: &str, wanted: &str) -> Value {
    let path = format!("/v1/qualification-requests/{id}");
    eventually(Duration::from_secs(15), || async {
        let (_, body) = get_json(app, &path, token).await;
        (body["status"] == wanted).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("request {id} never became {wanted}"))
}

fn statuses(record: &Value) -> Vec<&str> {
    record["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect()
}

/// Partner Center answers the one Education POST for `CUSTOMER` with `vetting_status`,
/// `delay` later.
async fn partner_center_answers_the_post(app: &TestApp, vetting_status: &str, delay: Duration) {
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(
                    json!({"qualification": "Education", "vettingStatus": vetting_status}),
                )
                .set_delay(delay),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;
}

/// Posts the Education request for `CUSTOMER`: the ID of the 202.
async fn accepted_id(app: &TestApp, token: &str) -> String {
    let posted = app
        .post_qualification(CUSTOMER, EDUCATION, Some(token))
        .await;
    assert_eq!(posted.status(), 202);
    posted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The app's first delivered webhook message (bounded wait).
async fn first_delivered(app: &TestApp, token: &str) -> Value {
    eventually(Duration::from_secs(15), || async {
        let (_, page) = get_json(app, "/v1/webhook-deliveries?status=delivered", token).await;
        page["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await
    .expect("a delivery succeeds")
}

/// The event `received` carries, once its Standard Webhooks signature checks out.
fn signed_event(secret: &str, received: &wiremock::Request) -> Value {
    let header = |name: &str| received.headers[name].to_str().unwrap().to_owned();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(
        verify(
            secret,
            &header("webhook-id"),
            &header("webhook-timestamp"),
            &header("webhook-signature"),
            &received.body,
            now
        ),
        Verdict::Valid
    );
    serde_json::from_slice(&received.body).unwrap()
}

#[tokio::test]
async fn a_request_is_recorded_with_its_timeline_and_seen_by_its_own_app_only() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_takes_education(&app, CUSTOMER, 1).await;
    let writer = app.writer_token();
    let posted = app
        .post_qualification(CUSTOMER, EDUCATION, Some(&writer))
        .await;
    assert_eq!(posted.status(), 202);
    let location = posted.headers()["location"].to_str().unwrap().to_owned();
    let answer: Value = posted.json().await.unwrap();

    let (status, record) = get_json(&app, &location, &writer).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["id"], answer["id"]);
    assert_eq!(record["customerId"], CUSTOMER);
    assert_eq!(record["qualification"], "Education");
    assert_eq!(record["educationSegment"], "K12");
    assert_eq!(record["status"], "InReview");
    assert_eq!(record["httpStatus"], 201);
    assert_eq!(record["msRequestId"], answer["requestId"]);
    assert_eq!(record["correlationId"], answer["correlationId"]);
    assert_eq!(record["requestedBy"]["subject"], "caller-subject");
    assert_eq!(statuses(&record), ["Submitted", "InReview"]);

    let (status, page) = get_json(
        &app,
        &format!("/v1/qualification-requests?customerId={CUSTOMER}&status=InReview"),
        &writer,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["items"][0].get("timeline").is_none());

    // Another app sees none of it; an auditor sees everything.
    let other_app = app.token_with(&[WRITE_ROLE], json!({"azp": "another-app"}));
    let (status, _) = get_json(&app, &location, &other_app).await;
    assert_eq!(status, 404);
    let (_, page) = get_json(&app, "/v1/qualification-requests", &other_app).await;
    assert_eq!(page["items"], json!([]));
    let auditor = app.token_with(
        &["Qualifications.Read", "Qualifications.Audit"],
        json!({"azp": "auditors"}),
    );
    let (status, record) = get_json(&app, &location, &auditor).await;
    assert_eq!((status, &record["id"]), (200, &answer["id"]));
}

#[tokio::test]
async fn history_pages_with_a_cursor_and_names_each_bad_filter() {
    let app = spawn_app_with(TestOptions::default()).await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    let writer = app.writer_token();
    history_pages_newest_first_and_filters(&app, &writer).await;

    let response = app
        .get(
            "/v1/qualification-requests?customerId=nope&since=yesterday&limit=0&cursor=zz",
            Some(&writer),
        )
        .await;
    let problem = crate::helpers::assert_problem(response, 400, "invalid-request").await;
    let fields = crate::helpers::fields_at_fault(&problem);
    assert_eq!(fields, ["customerId", "since", "limit", "cursor"]);
    let response = app
        .get("/v1/qualification-requests/not-a-guid", Some(&writer))
        .await;
    crate::helpers::assert_problem(response, 400, "invalid-request").await;
}

/// Five requests for five customers (Partner Center answering on `app`'s own mock): the
/// history pages through them newest first, two at a time, and each filter finds its own.
/// Shared with the PostgreSQL tests, since each backend builds the query itself.
pub async fn history_pages_newest_first_and_filters(app: &TestApp, writer: &str) {
    let customers: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for customer in &customers {
        partner_center_takes_education(app, customer, 1).await;
        assert_eq!(
            app.post_qualification(customer, EDUCATION, Some(writer))
                .await
                .status(),
            202
        );
    }
    let customers_in = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["customerId"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/v1/qualification-requests?limit=2&cursor={c}"),
            None => "/v1/qualification-requests?limit=2".into(),
        };
        let (status, page) = get_json(app, &path, writer).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(customers_in(&page));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = customers.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let third = &customers[2];
    for (filters, expected) in [
        (format!("customerId={third}"), vec![third.clone()]),
        (
            format!("customerId={third}&status=InReview"),
            vec![third.clone()],
        ),
        (format!("customerId={third}&status=Approved"), vec![]),
        (
            "status=InReview&limit=3".to_owned(),
            newest_first[..3].to_vec(),
        ),
        ("since=2999-01-01T00:00:00Z".to_owned(), vec![]),
        (
            "since=2000-01-01T00:00:00Z&limit=1".to_owned(),
            newest_first[..1].to_vec(),
        ),
    ] {
        let path = format!("/v1/qualification-requests?{filters}");
        let (status, page) = get_json(app, &path, writer).await;
        assert_eq!(status, 200, "{filters}: {page}");
        assert_eq!(customers_in(&page), expected, "{filters}");
    }
}

/// A receiver that answers 500 `failures` times, then 204.
async fn flaky_receiver(failures: u64) -> MockServer {
    let receiver = MockServer::start().await;
    if failures > 0 {
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(500))
            .up_to_n_times(failures)
            .with_priority(1)
            .mount(&receiver)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    receiver
}

#[tokio::test]
async fn an_approval_is_polled_once_and_a_receiver_failing_three_times_gets_one_signed_delivery() {
    let app = watched_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_takes_education(&app, CUSTOMER, 1).await;
    partner_center_lists_education(&app, CUSTOMER, "Approved", 1).await;
    let receiver = flaky_receiver(3).await;
    let writer = app.writer_token();
    let (subscription, secret) = subscribe(
        &app,
        &writer,
        &format!("{}/hook", receiver.uri()),
        &["qualification.approved"],
    )
    .await;

    let id = accepted_id(&app, &writer).await;
    let record = record_once(&app, &writer, &id, "Approved").await;
    assert_eq!(statuses(&record), ["Submitted", "InReview", "Approved"]);

    let delivered = first_delivered(&app, &writer).await;
    assert_eq!(delivered["attempts"], 4, "{delivered}");
    assert_eq!(delivered["subscriptionId"], subscription.as_str());
    assert_eq!(delivered["lastStatus"], 204);

    let received = receiver.received_requests().await.unwrap();
    assert_eq!(received.len(), 4, "3 failures, then one success");
    let webhook_id = received[0].headers["webhook-id"].to_str().unwrap();
    assert!(
        received
            .iter()
            .all(|r| r.headers["webhook-id"] == webhook_id),
        "one message, retried"
    );
    let event = signed_event(&secret, received.last().unwrap());
    assert_eq!(event["type"], "qualification.approved");
    assert_eq!(event["data"]["requestId"], id.as_str());
    assert_eq!(event["data"]["customerId"], CUSTOMER);
    assert_eq!(event["data"]["status"], "Approved");
    assert_eq!(
        event["data"]["location"],
        format!("/v1/qualification-requests/{id}")
    );
    // Nothing is open any more: the watch has stopped (the GET mock expects exactly one).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.partner_center.verify().await;
}

#[tokio::test]
async fn a_denial_is_told_with_its_reason_and_one_poll_serves_every_open_request_of_the_customer() {
    let app = watched_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_takes_education(&app, CUSTOMER, 2).await;
    partner_center_lists_education(&app, CUSTOMER, "Denied", 1).await;
    let receiver = flaky_receiver(0).await;
    let writer = app.writer_token();
    subscribe(
        &app,
        &writer,
        &format!("{}/hook", receiver.uri()),
        &["qualification.denied"],
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let posted = app
            .post_qualification(CUSTOMER, EDUCATION, Some(&writer))
            .await;
        ids.push(
            posted.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let record = record_once(&app, &writer, id, "Denied").await;
        assert_eq!(record["statusReason"], "Not an Education Customer");
    }
    let received = eventually(Duration::from_secs(10), || async {
        let received = receiver.received_requests().await.unwrap();
        (received.len() >= 2).then_some(received)
    })
    .await
    .expect("both requests are told");
    let events: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["type"] == "qualification.denied"
        && e["data"]["vettingReason"] == "Not an Education Customer"));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    app.partner_center.verify().await;
}

#[tokio::test]
async fn partner_center_throttling_slows_the_watcher_and_never_the_callers() {
    let app = watched_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    let throttled_customer = uuid::Uuid::new_v4().to_string();
    partner_center_takes_education(&app, &throttled_customer, 1).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/v1/customers/{throttled_customer}/qualifications"
        )))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3600"))
        .expect(1)
        .named("the watch's one poll, throttled")
        .mount(&app.partner_center)
        .await;
    let writer = app.writer_token();
    assert_eq!(
        app.post_qualification(&throttled_customer, EDUCATION, Some(&writer))
            .await
            .status(),
        202
    );
    crate::helpers::wait_for_requests(&app.partner_center, 2).await;

    // Paused for an hour: more requests are watched, none polled; callers go straight through.
    let others: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for customer in &others {
        partner_center_takes_education(&app, customer, 1).await;
        let started = std::time::Instant::now();
        let answer = app
            .post_qualification(customer, EDUCATION, Some(&writer))
            .await;
        assert_eq!(answer.status(), 202);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a caller never waits for the watch's pause"
        );
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let gets = app
        .partner_center
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(gets, 1, "the watcher made no call after the 429");
    let metrics = app.metrics().await;
    assert_eq!(
        crate::helpers::metric_value(
            &metrics,
            r#"partner_gateway_watch_polls_total{outcome="throttled"}"#
        ),
        1.0,
        "{metrics}"
    );
    app.partner_center.verify().await;
}

#[tokio::test]
async fn a_restart_mid_watch_loses_nothing_and_resumes() {
    let store_dir = tempfile::tempdir().unwrap();
    let store_path = store_dir.path().join("shared.db");
    let receiver = flaky_receiver(0).await;
    let first_path = store_path.clone();
    let first = spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            fast_watch(settings);
            // Stopped before its first poll would be due.
            settings.watch.enabled = false;
            settings.store.path = Some(first_path);
            settings.server.shutdown_delay_ms = 0;
            settings.server.shutdown_timeout_ms = 1_000;
        })),
        ..TestOptions::default()
    })
    .await;
    first.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_takes_education(&first, CUSTOMER, 1).await;
    let writer = first.writer_token();
    subscribe(
        &first,
        &writer,
        &format!("{}/hook", receiver.uri()),
        &["qualification.approved"],
    )
    .await;
    let posted = first
        .post_qualification(CUSTOMER, EDUCATION, Some(&writer))
        .await;
    let id = posted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    first.lifecycle.shut_down();
    let stopped = eventually(Duration::from_secs(10), || async {
        first
            .http
            .get(format!("{}/healthz", first.url))
            .send()
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert!(stopped.is_some(), "the first gateway stopped");

    // A new gateway on the same store, with a new Partner Center; the same caller app.
    let second = spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            fast_watch(settings);
            settings.store.path = Some(store_path);
        })),
        ..TestOptions::default()
    })
    .await;
    second.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_lists_education(&second, CUSTOMER, "Approved", 1).await;
    let writer = second.writer_token();
    let record = record_once(&second, &writer, &id, "Approved").await;
    assert_eq!(statuses(&record), ["Submitted", "InReview", "Approved"]);
    let delivered = eventually(Duration::from_secs(10), || async {
        let received = receiver.received_requests().await.unwrap();
        received
            .first()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
    })
    .await
    .expect("the subscription made before the restart is told");
    assert_eq!(delivered["data"]["requestId"], id.as_str());
    drop(store_dir);
}

/// The outcome is written behind the answer (the caller does not wait for its commit), yet a
/// read of the history waits for it: here SQLite's write lock is held by someone else from
/// before Partner Center answers until after the GET is sent.
#[tokio::test]
async fn the_outcome_is_written_behind_the_answer_and_a_read_waits_for_it() {
    use sqlx::{Connection, Executor};
    // One read connection, opened before the lock (opening one waits for SQLite's lock), and
    // no watcher to hold it while it waits for the lock itself.
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.store.max_connections = 1;
            settings.watch.enabled = false;
        })),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_answers_the_post(&app, "InReview", Duration::from_secs(2)).await;
    let writer = app.writer_token();
    let (status, _) = get_json(&app, "/v1/qualification-requests", &writer).await;
    assert_eq!(status, 200);
    let posting = {
        let (app_url, token) = (app.url.clone(), writer.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{app_url}/v1/customers/{CUSTOMER}/qualifications"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(EDUCATION)
                .send()
                .await
                .unwrap()
        })
    };
    crate::helpers::wait_for_requests(&app.partner_center, 1).await;
    let database = app.store_dir.path().join("store.db");
    let mut lock =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
    lock.execute("BEGIN IMMEDIATE").await.unwrap();

    let posted = posting.await.unwrap();
    assert_eq!(
        posted.status(),
        202,
        "answered while the outcome cannot be written yet"
    );
    let location = posted.headers()["location"].to_str().unwrap().to_owned();
    let reading = {
        let request = app.get_request(&location, Some(&writer));
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.execute("ROLLBACK").await.unwrap();
    let record: Value = reading.await.unwrap().json().await.unwrap();
    assert_eq!(record["status"], "InReview", "{record}");
    assert_eq!(statuses(&record), ["Submitted", "InReview"]);
}

/// Partner Center may decide in its answer to the POST: then the request path's own write
/// tells the subscriptions of the caller's app that asked for the event, and no other.
#[tokio::test]
async fn an_approval_in_the_answer_to_the_post_is_told_at_once_to_the_subscriptions_that_asked() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            fast_watch(settings);
            // No poll could have found it: the answer to the POST did.
            settings.watch.enabled = false;
        })),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_answers_the_post(&app, "Approved", Duration::ZERO).await;
    let (approvals, denials, other_app) = (
        flaky_receiver(0).await,
        flaky_receiver(0).await,
        flaky_receiver(0).await,
    );
    let writer = app.writer_token();
    let hook = |receiver: &MockServer| format!("{}/hook", receiver.uri());
    let (subscription, secret) = subscribe(
        &app,
        &writer,
        &hook(&approvals),
        &["qualification.approved"],
    )
    .await;
    subscribe(&app, &writer, &hook(&denials), &["qualification.denied"]).await;
    let other_writer = app.token_with(&[WRITE_ROLE], json!({"azp": "another-app"}));
    subscribe(
        &app,
        &other_writer,
        &hook(&other_app),
        &["qualification.approved"],
    )
    .await;

    let id = accepted_id(&app, &writer).await;
    let record = record_once(&app, &writer, &id, "Approved").await;
    assert_eq!(statuses(&record), ["Submitted", "Approved"]);
    let delivered = first_delivered(&app, &writer).await;
    assert_eq!(delivered["subscriptionId"], subscription.as_str());

    let received = approvals.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    let event = signed_event(&secret, &received[0]);
    assert_eq!(event["type"], "qualification.approved");
    assert_eq!(event["data"]["requestId"], id.as_str());
    // What was queued, whatever became of it: one delivery, and none for the other app.
    let (_, mine) = get_json(&app, "/v1/webhook-deliveries", &writer).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");
    let (_, theirs) = get_json(&app, "/v1/webhook-deliveries", &other_writer).await;
    assert_eq!(theirs["items"], json!([]), "{theirs}");
    assert_eq!(denials.received_requests().await.unwrap().len(), 0);
    assert_eq!(other_app.received_requests().await.unwrap().len(), 0);
}
