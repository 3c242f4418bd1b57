//! The store on PostgreSQL, as several replicas use it: a real cluster per test, started by
//! the test (initdb + pg_ctl on a temporary directory and a Unix socket). Two gateway
//! processes sharing one are in `binary.rs`.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    EDUCATION, Postgres, TestApp, TestOptions, assert_problem, fast_watch, spawn_app_with,
};

/// A gateway on `url`'s database, calling the shared Partner Center; it asks Entra for a
/// token `token_calls` times.
async fn replica(url: &str, partner_center: &MockServer, token_calls: u64) -> TestApp {
    let url = url.to_owned();
    let app = spawn_app_with(TestOptions {
        partner_center_base_url: Some(partner_center.uri()),
        configure: Some(Box::new(move |settings, _| {
            fast_watch(settings);
            settings.store.url = Some(SecretString::from(url));
            settings.store.acquire_timeout_ms = 1_000;
        })),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint(
        &format!("pc-token-{}", uuid::Uuid::new_v4().simple()),
        token_calls,
    )
    .await;
    app
}

#[tokio::test]
async fn a_store_outage_answers_503_and_sends_nothing_upstream() {
    let database = Postgres::start();
    let partner_center = MockServer::start().await;
    let app = replica(&database.url, &partner_center, 0).await;
    assert!(crate::helpers::wait_until_ready(&app.url, Duration::from_secs(10)).await);
    database.stop();
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .named("nothing reaches Partner Center")
        .mount(&partner_center)
        .await;
    let customer = uuid::Uuid::new_v4().to_string();
    let refused = app
        .post_qualification(&customer, EDUCATION, Some(&app.writer_token()))
        .await;
    let problem = assert_problem(refused, 503, "store-unavailable").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was sent"),
        "{problem}"
    );
    let not_ready = app.get("/readyz", None).await;
    assert_eq!(not_ready.status(), 503);
    let body: Value = not_ready.json().await.unwrap();
    assert_eq!(body["checks"]["store"], "unavailable");
    partner_center.verify().await;
    app.entra.verify().await;
}

fn new_request(customer: &str) -> partner_gateway::store::NewRequest {
    partner_gateway::store::NewRequest {
        id: uuid::Uuid::new_v4(),
        caller_issuer: "issuer".into(),
        caller_subject: "subject".into(),
        caller_app: "issuer#app".into(),
        customer_id: customer.into(),
        qualification: "Education".into(),
        education_segment: Some("K12".into()),
        website: None,
        validation_code_masked: None,
        ms_request_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
    }
}

async fn open_store(database: &Postgres) -> partner_gateway::store::Store {
    let mut settings = partner_gateway::configuration::Settings::defaults()
        .unwrap()
        .store;
    settings.url = Some(SecretString::from(database.url.clone()));
    partner_gateway::store::Store::open(&settings, None, Default::default())
        .await
        .unwrap()
}

fn timeline(request: &partner_gateway::store::StoredRequest) -> Vec<&str> {
    request.timeline.iter().map(|e| e.status.as_str()).collect()
}

/// On PostgreSQL each of the POST's two writes is one statement: the request, its first
/// event and its customer's watch at once; then the answer and its event only when the
/// request is still Submitted (a poll that got there first is left alone).
#[tokio::test]
async fn the_posts_writes_record_the_request_its_timeline_and_its_watch_on_postgresql() {
    use partner_gateway::store::{PollResult, RequestOutcome, RequestStatus, Transition};
    let database = Postgres::start();
    let store = open_store(&database).await;
    let customer = uuid::Uuid::new_v4().to_string();
    let due = partner_gateway::store::now_ms() - 1;
    let answered = new_request(&customer);
    store.record_submitted(&answered, due).await.unwrap();
    let id = answered.id.to_string();
    let submitted = store.request(&id, None).await.unwrap().unwrap();
    assert_eq!(submitted.status, RequestStatus::Submitted);
    assert_eq!(submitted.education_segment.as_deref(), Some("K12"));
    assert_eq!(submitted.http_status, None);
    assert_eq!(timeline(&submitted), ["Submitted"]);

    let in_review = RequestOutcome {
        status: RequestStatus::InReview,
        reason: Some("documents checked".into()),
        http_status: Some(201),
    };
    store
        .record_outcome(answered.id, &in_review, None)
        .await
        .unwrap();
    let settled = store.request(&id, None).await.unwrap().unwrap();
    assert_eq!(settled.status, RequestStatus::InReview);
    assert_eq!(settled.status_reason.as_deref(), Some("documents checked"));
    assert_eq!(settled.http_status, Some(201));
    assert_eq!(timeline(&settled), ["Submitted", "InReview"]);
    assert_eq!(
        settled.timeline[1].reason.as_deref(),
        Some("documents checked")
    );
    // A second answer for the same request (it is no longer Submitted) changes nothing.
    store
        .record_outcome(answered.id, &in_review, None)
        .await
        .unwrap();
    let again = store.request(&id, None).await.unwrap().unwrap();
    assert_eq!(timeline(&again), ["Submitted", "InReview"]);

    // A poll moves the next request first: the late answer leaves it where the poll put it.
    let polled_first = new_request(&customer);
    store.record_submitted(&polled_first, due).await.unwrap();
    let leased = store
        .lease_due_watches("replica", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1, "one watch for the customer's two requests");
    assert_eq!(leased[0].customer_id, customer);
    assert_eq!(leased[0].polls, 0, "a new request restarts the schedule");
    let poll = PollResult {
        transitions: vec![Transition {
            request_id: polled_first.id.to_string(),
            caller_app: polled_first.caller_app.clone(),
            from: RequestStatus::Submitted,
            to: RequestStatus::Approved,
            reason: None,
            notification: None,
        }],
        next_poll_ms: due,
        polls: 1,
    };
    assert_eq!(
        store.apply_poll(&customer, "replica", &poll).await.unwrap(),
        1
    );
    store
        .record_outcome(polled_first.id, &in_review, None)
        .await
        .unwrap();
    let polled = store
        .request(&polled_first.id.to_string(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(polled.status, RequestStatus::Approved);
    assert_eq!(timeline(&polled), ["Submitted", "Approved"]);

    // The poll left the customer watched after one poll; another request for it puts the
    // watch back on the first wait.
    store
        .record_submitted(&new_request(&customer), due)
        .await
        .unwrap();
    let restarted = store
        .lease_due_watches("replica", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(restarted.len(), 1);
    assert_eq!(restarted[0].polls, 0);
    store.close().await;
}

/// Replicas lease disjoint customers at once, and a dead replica's lease lapses to another.
#[tokio::test]
async fn concurrent_leases_never_overlap_and_a_dead_replicas_lease_is_taken_over() {
    let database = Postgres::start();
    let store = open_store(&database).await;
    let due = partner_gateway::store::now_ms() - 1;
    for _ in 0..20 {
        store
            .record_submitted(&new_request(&uuid::Uuid::new_v4().to_string()), due)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        store.lease_due_watches("replica-a", 60_000, 12),
        store.lease_due_watches("replica-b", 60_000, 12)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&str> = a.iter().chain(&b).map(|w| w.customer_id.as_str()).collect();
    assert_eq!(all.len(), 20, "together they took every due customer");
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 20, "no customer leased twice");

    let lapsing = new_request(&uuid::Uuid::new_v4().to_string());
    store.record_submitted(&lapsing, due).await.unwrap();
    let held = store
        .lease_due_watches("dying-replica", 200, 10)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert!(
        store
            .lease_due_watches("replica-c", 60_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "held"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = store
        .lease_due_watches("replica-c", 60_000, 10)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1, "the lapsed lease is taken over");
    assert_eq!(taken[0].customer_id, lapsing.customer_id);
    store.close().await;
}

/// The history's query is built from the filters given: on PostgreSQL too, it pages newest
/// first with the cursor and each filter finds its own.
#[tokio::test]
async fn the_history_pages_and_filters_on_postgresql() {
    let database = Postgres::start();
    let url = database.url.clone();
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(move |settings, _| {
            settings.store.url = Some(SecretString::from(url));
        })),
        ..TestOptions::default()
    })
    .await;
    app.mount_token_endpoint("pc-token-for-the-history", 1)
        .await;
    let writer = app.writer_token();
    crate::vetting_watch::history_pages_newest_first_and_filters(&app, &writer).await;
}
