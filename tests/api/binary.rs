//! The real binary as an operator runs it: SIGTERM while requests keep coming (none may
//! fail), and spans exported to an OTLP collector.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUDIENCE, CUSTOMER, ISSUER, PARTNER_TENANT, gateway_command, mount_jwks};
use partner_gateway::sandbox::SigningKey;

/// The binary on free loopback ports, its JSON log collected; killed if the test fails
/// before it exits on its own.
struct RunningGateway {
    child: Child,
    url: String,
    log: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl RunningGateway {
    fn start(env: &[(&str, &str)]) -> Self {
        let mut child = crate::helpers::gateway_command()
            .envs([
                ("PARTNER_GATEWAY__SERVER__LISTEN", "127.0.0.1:0"),
                ("PARTNER_GATEWAY__METRICS__LISTEN", "127.0.0.1:0"),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let stdout = child.stdout.take().unwrap();
        // The address comes from the start-up log line; the rest is kept for the end.
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("partner-gateway listening") {
                    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = address_tx.send(parsed["address"].as_str().unwrap().to_owned());
                }
                lines.push(line);
            }
            lines
        });
        let mut gateway = Self {
            child,
            url: String::new(),
            log: Some(log),
        };
        gateway.url = address_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway says where it listens");
        gateway
    }

    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
    }

    /// Waits (bounded) for a clean exit; returns the log.
    async fn wait_for_exit(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let exit = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(exit.success(), "exit {exit:?}");
        self.log.take().unwrap().join().unwrap().join("\n")
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SLOW_CUSTOMER: &str = "33333333-3333-3333-3333-333333333333";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_a_sigterm_all_succeed_and_in_flight_ones_finish() {
    let identity_provider = MockServer::start().await;
    let signer = SigningKey::generate("shutdown-test").unwrap();
    mount_jwks(&identity_provider, &signer).await;
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "shutdown-access-token", "expires_in": 3600,
        })))
        .mount(&entra)
        .await;
    let partner_center = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(20)))
        .mount(&partner_center)
        .await;
    // In flight when the listener closes: must still be answered.
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/customers/{SLOW_CUSTOMER}/qualifications"
        )))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(2_500)))
        .mount(&partner_center)
        .await;

    let issuers = json!([{
        "issuer": ISSUER, "audiences": [AUDIENCE],
        "jwks_url": format!("{}/keys", identity_provider.uri()),
    }]);
    let store = tempfile::tempdir().unwrap();
    let store_path = store.path().join("store.db");
    let gateway = RunningGateway::start(&[
        ("PARTNER_GATEWAY__MODE", "production"),
        ("PARTNER_GATEWAY__STORE__PATH", store_path.to_str().unwrap()),
        ("PARTNER_GATEWAY__SERVER__WORKERS", "2"),
        ("PARTNER_GATEWAY__SERVER__SHUTDOWN_DELAY_MS", "1500"),
        ("PARTNER_GATEWAY__SERVER__SHUTDOWN_TIMEOUT_MS", "10000"),
        ("PARTNER_GATEWAY__RATE_LIMIT__REQUESTS_PER_MINUTE", "0"),
        (
            "PARTNER_GATEWAY__CALLER_AUTH__ISSUERS",
            &issuers.to_string(),
        ),
        (
            "PARTNER_GATEWAY__PARTNER_CENTER__BASE_URL",
            &partner_center.uri(),
        ),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__AUTHORITY_URL",
            &entra.uri(),
        ),
        ("PARTNER_GATEWAY__PARTNER_TOKEN__TENANT_ID", PARTNER_TENANT),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_ID",
            "gateway-client-id",
        ),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET",
            "shutdown-client-secret",
        ),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN",
            "shutdown-refresh-token",
        ),
    ]);
    let url = gateway.url.clone();
    assert!(crate::helpers::wait_until_ready(&url, Duration::from_secs(20)).await);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = signer
        .sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "shutdown-caller",
            "roles": ["Qualifications.ReadWrite"], "iat": now, "exp": now + 600,
        }))
        .unwrap();
    let http = reqwest::Client::new();
    let post = |customer: &str| {
        http.post(format!("{url}/v1/customers/{customer}/qualifications"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body(r#"{"qualification":"StateOwnedEntity"}"#)
            .send()
    };
    assert_eq!(post(CUSTOMER).await.unwrap().status(), 202, "warmed up");

    // Four clients send back to back, from before the signal until well into the delay.
    let keep_sending = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let keep_sending = keep_sending.clone();
            async move {
                let mut statuses = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while keep_sending.load(Ordering::Relaxed) && Instant::now() < deadline {
                    statuses.push(post(CUSTOMER).await.map(|r| r.status().as_u16()));
                }
                statuses
            }
        })
        .collect();
    let traffic = futures_util::future::join_all(clients);
    let slow = post(SLOW_CUSTOMER);
    let signal = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway.terminate();
        // /readyz turns 503 at once, while requests are still answered.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
            if ready.status() == 503 {
                break;
            }
            assert!(Instant::now() < deadline, "readyz still 200 after SIGTERM");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        keep_sending.store(false, Ordering::Relaxed);
    };
    let (statuses, slow, ()) = tokio::join!(traffic, slow, signal);

    let statuses: Vec<_> = statuses.into_iter().flatten().collect();
    let failed: Vec<_> = statuses.iter().filter(|s| !matches!(s, Ok(202))).collect();
    println!(
        "shutdown test: {} requests through SIGTERM, {} failed; the in-flight one answered {:?}",
        statuses.len(),
        failed.len(),
        slow.as_ref().map(|r| r.status().as_u16())
    );
    assert!(statuses.len() >= 8, "traffic flowed: {}", statuses.len());
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        slow.unwrap().status(),
        202,
        "the request in flight at close finished"
    );

    let log = gateway.wait_for_exit().await;
    assert!(log.contains("shutdown signal received") && log.contains("partner-gateway stopped"));
    assert!(!log.contains("shutdown-client-secret") && !log.contains("shutdown-refresh-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_the_otlp_collector_in_the_callers_trace() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .and(wiremock::matchers::header(
            "content-type",
            "application/x-protobuf",
        ))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let gateway = RunningGateway::start(&[
        ("PARTNER_GATEWAY__SERVER__SHUTDOWN_DELAY_MS", "0"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.uri()),
        ("OTEL_SERVICE_NAME", "partner-gateway-under-test"),
    ]);
    let http = reqwest::Client::new();
    let token = crate::helpers::sandbox_caller_token(&http, &gateway.url, json!({})).await;
    let trace_id = "5c1e0a7f3b2d4e6f8a9b0c1d2e3f4a5b";
    let response = http
        .get(format!("{}/v1/validation-codes", gateway.url))
        .bearer_auth(token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    gateway.terminate();
    let log = gateway.wait_for_exit().await;
    assert!(
        log.contains(&format!(r#""trace_id":"{trace_id}""#)),
        "the log names the trace"
    );

    let exports = collector.received_requests().await.unwrap();
    assert!(!exports.is_empty(), "spans were flushed at shutdown");
    let raw_trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let exported = |needle: &[u8]| {
        exports
            .iter()
            .any(|r| r.body.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        exported(&raw_trace_id),
        "the caller's trace ID is in the export"
    );
    assert!(
        exported(b"partner-gateway-under-test"),
        "OTEL_SERVICE_NAME is the service"
    );
    assert!(
        exported(b"partner_center"),
        "the Partner Center call is a span of its own"
    );
}

/// Two real gateway processes on one PostgreSQL (a throwaway cluster): each request's
/// customer is polled by exactly one of them, and an Idempotency-Key answered by one is
/// replayed by the other without a second Partner Center call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_on_one_postgres_poll_each_request_once_and_share_idempotency_answers()
 {
    let database = crate::helpers::Postgres::start();
    let identity_provider = MockServer::start().await;
    let signer = SigningKey::generate("replicas-test").unwrap();
    mount_jwks(&identity_provider, &signer).await;
    let entra = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "replicas-access-token", "expires_in": 3600,
        })))
        .mount(&entra)
        .await;
    let partner_center = MockServer::start().await;
    let customers: Vec<String> = (0..6).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for customer in &customers {
        let at = format!("/v1/customers/{customer}/qualifications");
        Mock::given(method("POST"))
            .and(path(at.clone()))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(
                    json!({"qualification": "Education", "vettingStatus": "InReview"}),
                ),
            )
            .expect(1)
            .mount(&partner_center)
            .await;
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!([{"qualification": "Education", "vettingStatus": "Approved"}]),
            ))
            .expect(1)
            .named("one poll per request, by either process")
            .mount(&partner_center)
            .await;
    }

    let issuers = json!([{
        "issuer": ISSUER, "audiences": [AUDIENCE],
        "jwks_url": format!("{}/keys", identity_provider.uri()),
    }])
    .to_string();
    let (pc, authority) = (partner_center.uri(), entra.uri());
    let env = [
        ("PARTNER_GATEWAY__MODE", "production"),
        ("PARTNER_GATEWAY__STORE__URL", database.url.as_str()),
        ("PARTNER_GATEWAY__WATCH__SCHEDULE_SECS", "1"),
        ("PARTNER_GATEWAY__WATCH__JITTER", "0"),
        ("PARTNER_GATEWAY__WATCH__TICK_MS", "50"),
        ("PARTNER_GATEWAY__RATE_LIMIT__REQUESTS_PER_MINUTE", "0"),
        ("PARTNER_GATEWAY__CALLER_AUTH__ISSUERS", issuers.as_str()),
        ("PARTNER_GATEWAY__PARTNER_CENTER__BASE_URL", pc.as_str()),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__AUTHORITY_URL",
            authority.as_str(),
        ),
        ("PARTNER_GATEWAY__PARTNER_TOKEN__TENANT_ID", PARTNER_TENANT),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_ID",
            "gateway-client-id",
        ),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET",
            "replicas-client-secret",
        ),
        (
            "PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN",
            "replicas-refresh-token",
        ),
    ];
    let gateways = [RunningGateway::start(&env), RunningGateway::start(&env)];
    for gateway in &gateways {
        assert!(crate::helpers::wait_until_ready(&gateway.url, Duration::from_secs(20)).await);
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = signer
        .sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "replica-caller", "azp": "replica-app",
            "roles": ["Qualifications.ReadWrite"], "iat": now, "exp": now + 600,
        }))
        .unwrap();
    crate::helpers::register_secret(&token);
    let http = reqwest::Client::new();
    let post = |url: &str, customer: &str, key: Option<&str>| {
        let mut request = http
            .post(format!("{url}/v1/customers/{customer}/qualifications"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request
    };
    let mut ids = Vec::new();
    for (n, customer) in customers.iter().enumerate() {
        let answer = post(&gateways[n % 2].url, customer, None)
            .body(crate::helpers::EDUCATION)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        ids.push(
            answer.json::<serde_json::Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let approved = crate::helpers::eventually(Duration::from_secs(20), || async {
            let record: serde_json::Value = http
                .get(format!(
                    "{}/v1/qualification-requests/{id}",
                    gateways[1].url
                ))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (record["status"] == "Approved").then_some(())
        })
        .await;
        assert!(approved.is_some(), "{id} approved");
    }
    // Both watchers go on polling rounds: still one GET per customer.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    partner_center.verify().await;

    let keyed_customer = uuid::Uuid::new_v4().to_string();
    Mock::given(method("POST"))
        .and(path(format!(
            "/v1/customers/{keyed_customer}/qualifications"
        )))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"qualification": "StateOwnedEntity"})),
        )
        .expect(1)
        .named("the keyed POST, once")
        .mount(&partner_center)
        .await;
    let key = format!("order-{}", uuid::Uuid::new_v4().simple());
    let soe = r#"{"qualification":"StateOwnedEntity"}"#;
    let first = post(&gateways[0].url, &keyed_customer, Some(&key))
        .body(soe)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let first_body: serde_json::Value = first.json().await.unwrap();
    let again = post(&gateways[1].url, &keyed_customer, Some(&key))
        .body(soe)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first_body);
    partner_center.verify().await;
}

/// The binary allocates with jemalloc as main.rs sets it up (two arenas, pages free for 50 ms
/// purged by jemalloc's own thread), and an operator's `MALLOC_CONF` still overrides it.
#[test]
fn the_binary_runs_on_jemalloc_with_its_settings_which_malloc_conf_overrides() {
    let options = |malloc_conf: &str| {
        let output = gateway_command()
            .arg("openapi")
            .env("MALLOC_CONF", malloc_conf)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        // stats_print: jemalloc prints its options (and statistics) to stderr at exit.
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let shipped = options("stats_print:true");
    for option in [
        "opt.narenas: 2\n",
        "opt.background_thread: true",
        "opt.dirty_decay_ms: 50 ",
        "opt.muzzy_decay_ms: 0 ",
        "opt.tcache_max: 4096\n",
    ] {
        assert!(shipped.contains(option), "no {option:?} in:\n{shipped}");
    }
    let overridden = options("stats_print:true,narenas:3,dirty_decay_ms:1000");
    assert!(overridden.contains("opt.narenas: 3\n"), "{overridden}");
    assert!(
        overridden.contains("opt.dirty_decay_ms: 1000 "),
        "{overridden}"
    );
}
