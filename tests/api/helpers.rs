use std::io::Write;
use std::sync::{Arc, LazyLock, Mutex};

use partner_gateway::configuration::{
    KeySource, LogFormat, Mode, Settings, TrustedIssuer, UpstreamContract,
};
use partner_gateway::lifecycle::Lifecycle;
use partner_gateway::sandbox::SigningKey;
use partner_gateway::startup::Application;
use partner_gateway::telemetry::{get_subscriber, init_subscriber};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{any, body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const ISSUER: &str = "https://login.example.test/tenant/v2.0";
pub const AUDIENCE: &str = "api://partner-gateway-tests";
pub const PARTNER_TENANT: &str = "contoso-partner.onmicrosoft.com";
pub const WRITE_ROLE: &str = "Qualifications.ReadWrite";
pub const READ_ROLE: &str = "Qualifications.Read";

/// Every log line of the test process, so tests can check what was (not) logged.
static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    let echo = std::env::var("TEST_LOG").is_ok();
    init_subscriber(get_subscriber(
        "partner_gateway=debug,info",
        LogFormat::Json,
        move || LogWriter {
            buffer: sink.clone(),
            echo,
        },
    ));
    buffer
});

/// The whole suite's log and every secret it handed out, for `.ci/check-test-logs` to
/// search after the run: `target/test-logs/api-<pid>.log` and `…-<pid>.secrets`.
static SUITE_RECORD: LazyLock<Option<(Mutex<std::fs::File>, Mutex<std::fs::File>)>> =
    LazyLock::new(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
        std::fs::create_dir_all(&dir).ok()?;
        let open = |suffix: &str| {
            std::fs::File::create(dir.join(format!("api-{}.{suffix}", std::process::id()))).ok()
        };
        Some((Mutex::new(open("log")?), Mutex::new(open("secrets")?)))
    });

/// Remembers a secret the suite uses, so the log search after the run looks for it.
pub fn register_secret(secret: &str) {
    if let Some((_, secrets)) = SUITE_RECORD.as_ref() {
        let _ = writeln!(secrets.lock().unwrap(), "{secret}");
    }
}

struct LogWriter {
    buffer: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.echo {
            std::io::stdout().write_all(bytes)?;
        }
        if let Some((log, _)) = SUITE_RECORD.as_ref() {
            let _ = log.lock().unwrap().write_all(bytes);
        }
        self.buffer.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

pub struct TestApp {
    pub url: String,
    /// The separate metrics listener's `/metrics`.
    pub metrics_url: String,
    /// Starts the graceful shutdown a SIGTERM would.
    pub lifecycle: Lifecycle,
    pub http: reqwest::Client,
    /// Stands in for Partner Center.
    pub partner_center: MockServer,
    /// Stands in for Entra's token endpoint.
    pub entra: MockServer,
    /// Serves the callers' JWKS.
    pub identity_provider: MockServer,
    pub signer: SigningKey,
    pub client_secret: String,
    pub refresh_token: String,
    /// Holds the gateway's SQLite store (unless the test chose another): removed on drop.
    #[allow(dead_code)]
    pub store_dir: Arc<tempfile::TempDir>,
}

/// Adjusts the settings; gets the identity provider's mock server for its URL.
pub type ConfigureSettings = Box<dyn FnOnce(&mut Settings, &MockServer)>;

pub struct TestOptions {
    pub contract: UpstreamContract,
    pub request_timeout_ms: u64,
    pub v2_token_endpoint: bool,
    pub mount_jwks: bool,
    pub partner_center_base_url: Option<String>,
    /// An identity provider the test has already set up (mocks mounted before the gateway
    /// starts fetching keys); a fresh one otherwise.
    pub identity_provider: Option<MockServer>,
    /// The key the test's caller tokens are signed with; a fresh ES256 key otherwise.
    pub signer: Option<SigningKey>,
    /// Last word on the settings, after the defaults above.
    pub configure: Option<ConfigureSettings>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            contract: UpstreamContract::Current,
            request_timeout_ms: 5_000,
            v2_token_endpoint: false,
            mount_jwks: true,
            partner_center_base_url: None,
            configure: None,
            identity_provider: None,
            signer: None,
        }
    }
}

/// A production-mode gateway on a free port, its upstreams wiremock servers on loopback.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestOptions::default()).await
}

pub async fn spawn_app_with(options: TestOptions) -> TestApp {
    LazyLock::force(&LOGS);
    let partner_center = MockServer::start().await;
    let entra = MockServer::start().await;
    let identity_provider = match options.identity_provider {
        Some(server) => server,
        None => MockServer::start().await,
    };
    let signer = match options.signer {
        Some(signer) => signer,
        None => SigningKey::generate(format!("test-{}", Uuid::new_v4().simple())).unwrap(),
    };
    if options.mount_jwks {
        mount_jwks(&identity_provider, &signer).await;
    }
    let client_secret = format!("client-secret-{}", Uuid::new_v4().simple());
    let refresh_token = format!("refresh-token-{}", Uuid::new_v4().simple());
    register_secret(&client_secret);
    register_secret(&refresh_token);

    let mut settings = Settings::defaults().unwrap();
    settings.mode = Mode::Production;
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.workers = 1;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.caller_auth.issuers = vec![TrustedIssuer::new(
        ISSUER,
        AUDIENCE,
        KeySource::Jwks(format!("{}/keys", identity_provider.uri())),
    )];
    settings.partner_center.base_url = options
        .partner_center_base_url
        .unwrap_or_else(|| partner_center.uri());
    settings.partner_center.contract = options.contract;
    settings.partner_center.request_timeout_ms = options.request_timeout_ms;
    // Tests that are not about the rate limit must not trip over it.
    settings.rate_limit.requests_per_minute = 1_000_000;
    settings.rate_limit.burst = 1_000_000;
    // Retries wait milliseconds in tests, not seconds.
    settings.partner_center.retry_base_delay_ms = 5;
    settings.partner_center.retry_max_delay_ms = 40;
    settings.partner_token.authority_url = entra.uri();
    settings.partner_token.tenant_id = PARTNER_TENANT.into();
    settings.partner_token.client_id = "gateway-client-id".into();
    settings.partner_token.client_secret = Some(SecretString::from(client_secret.clone()));
    settings.partner_token.refresh_token = Some(SecretString::from(refresh_token.clone()));
    if options.v2_token_endpoint {
        settings.partner_token.endpoint = partner_gateway::configuration::TokenEndpoint::V2;
    }
    let store_dir = Arc::new(tempfile::tempdir().unwrap());
    settings.store.path = Some(store_dir.path().join("store.db"));
    if let Some(configure) = options.configure {
        configure(&mut settings, &identity_provider);
    }

    let application = Application::build(settings).await.expect("app builds");
    let url = application.url();
    let metrics_url = application
        .metrics_url()
        .expect("metrics are on by default");
    let lifecycle = application.lifecycle();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        url,
        metrics_url,
        lifecycle,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        partner_center,
        entra,
        identity_provider,
        signer,
        client_secret,
        refresh_token,
        store_dir,
    }
}

pub async fn mount_jwks(server: &MockServer, signer: &SigningKey) {
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(signer.jwks()))
        .mount(server)
        .await;
}

impl TestApp {
    /// A caller token as the identity provider would issue it.
    pub fn token_with(&self, roles: &[&str], extra: Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "caller-subject",
            "azp": "caller-app",
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        merge_claims(&mut claims, extra);
        let token = self.signer.sign(&claims).unwrap();
        register_secret(&token);
        token
    }

    pub fn writer_token(&self) -> String {
        self.token_with(&[WRITE_ROLE], json!({}))
    }

    pub fn reader_token(&self) -> String {
        self.token_with(&[READ_ROLE], json!({}))
    }

    /// Entra answers the refresh-token grant with `access_token`, `expires_in` as v1's string.
    pub async fn mount_token_endpoint(&self, access_token: &str, expected_calls: u64) {
        register_secret(access_token);
        let rotated = format!("rotated-{}", Uuid::new_v4().simple());
        register_secret(&rotated);
        Mock::given(method("POST"))
            .and(path(format!("/{PARTNER_TENANT}/oauth2/token")))
            .and(body_string_contains("grant_type=refresh_token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "token_type": "Bearer",
                "access_token": access_token,
                "expires_in": "3600",
                "resource": "https://api.partnercenter.microsoft.com",
                "refresh_token": rotated,
            })))
            .expect(expected_calls)
            .named("Entra token endpoint")
            .mount(&self.entra)
            .await;
    }

    pub async fn post_qualification(
        &self,
        customer: &str,
        body: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!(
                "{}/v1/customers/{customer}/qualifications",
                self.url
            ))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// A GET to the gateway, for tests that add headers before sending.
    pub fn get_request(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.url));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.get_request(path, token).send().await.unwrap()
    }

    /// The metrics text as Prometheus would scrape it.
    pub async fn metrics(&self) -> String {
        let response = self.http.get(&self.metrics_url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }
}

/// A POST of `body` with an `Idempotency-Key`.
pub async fn post_with_key(app: &TestApp, token: &str, key: &str, body: &str) -> reqwest::Response {
    app.http
        .post(format!(
            "{}/v1/customers/{CUSTOMER}/qualifications",
            app.url
        ))
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Adds `extra`'s claims to `claims`; a `null` removes the claim instead.
pub fn merge_claims(claims: &mut Value, extra: Value) {
    if let (Value::Object(claims), Value::Object(extra)) = (claims, extra) {
        for (name, value) in extra {
            if value.is_null() {
                claims.remove(&name);
            } else {
                claims.insert(name, value);
            }
        }
    }
}

/// The value of one series in Prometheus text, `name{labels}` written as Prometheus does
/// (labels in declaration order); 0 when the series is absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// The JSON log lines of the whole process that satisfy `wanted`.
pub fn log_lines(wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    captured_logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| wanted(line))
        .collect()
}

/// Waits (bounded) until `server` has seen `count` requests.
pub async fn wait_for_requests(server: &MockServer, count: usize) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.received_requests().await.unwrap().len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} requests not seen in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `/readyz` until it answers 200 (true) or `limit` passes (false).
pub async fn wait_until_ready(url: &str, limit: std::time::Duration) -> bool {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let ready = http
            .get(format!("{url}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

pub const CUSTOMER: &str = "7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745";

pub fn is_guid(value: &str) -> bool {
    value.len() == 36 && Uuid::try_parse(value).is_ok_and(|u| !u.is_nil())
}

/// Asserts an RFC 9457 problem answer and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, type_suffix: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let correlation_header = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"],
        format!("urn:partner-gateway:problem:{type_suffix}"),
        "{body}"
    );
    assert_eq!(body["status"], status);
    assert_eq!(
        body["correlationId"], correlation_header,
        "problem carries the correlation ID"
    );
    body
}

/// The single JWT-less settings used by the sandbox tests.
pub async fn spawn_sandbox(approval_delay_ms: u64) -> (String, reqwest::Client) {
    spawn_sandbox_with(approval_delay_ms, |_| {}).await
}

/// A sandbox, with the test's last word on the settings.
pub async fn spawn_sandbox_with(
    approval_delay_ms: u64,
    configure: impl FnOnce(&mut Settings),
) -> (String, reqwest::Client) {
    LazyLock::force(&LOGS);
    let mut settings = Settings::defaults().unwrap();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.workers = 1;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.sandbox.approval_delay_ms = approval_delay_ms;
    // The sandbox's 500 customer is retried: milliseconds, not the production half-second.
    settings.partner_center.retry_base_delay_ms = 5;
    settings.partner_center.retry_max_delay_ms = 40;
    configure(&mut settings);
    let application = Application::build(settings).await.expect("sandbox builds");
    let url = application.url();
    tokio::spawn(application.run_until_stopped());
    (url, reqwest::Client::new())
}

/// Neither upstream may be called: not Partner Center, and not Entra for its token.
pub async fn forbid_upstream_calls(app: &TestApp) {
    for server in [&app.partner_center, &app.entra] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .named("no upstream call")
            .mount(server)
            .await;
    }
}

/// A bare HTTP/1.1 server on loopback for answers wiremock cannot give (a connection cut
/// mid-body): the n-th connection gets `answers[n]` (the last one again after that), written
/// raw, then the connection is closed. Returns its URL and the request heads it read.
pub async fn raw_http_server(answers: Vec<Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        for n in 0..64 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // The request: its head, then as many body bytes as Content-Length says.
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            let head_end = loop {
                let Ok(read) = socket.read(&mut buffer).await else {
                    break None;
                };
                if read == 0 {
                    break None;
                }
                request.extend_from_slice(&buffer[..read]);
                if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while request.len() < head_end + length {
                match socket.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.extend_from_slice(&buffer[..read]),
                }
            }
            seen.lock().unwrap().push(head);
            let answer = &answers[n.min(answers.len() - 1)];
            let _ = socket.write_all(answer).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, heads)
}

/// The `MS-RequestId` of a raw request head.
pub fn ms_request_id(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("ms-requestid")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The gateway binary as an operator starts it, with nothing inherited from this process's
/// environment that would change its settings.
pub fn gateway_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_partner-gateway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PARTNER_GATEWAY") || name.starts_with("OTEL_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command
}

/// A caller token from a sandbox's `POST /sandbox/caller-token`.
pub async fn sandbox_caller_token(http: &reqwest::Client, url: &str, body: Value) -> String {
    let response = http
        .post(format!("{url}/sandbox/caller-token"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["tokenType"], "Bearer");
    body["accessToken"].as_str().unwrap().to_owned()
}

/// The vetting watch and webhook deliveries on a test's time scale: a poll a second after a
/// request, rounds every 50 ms, retries after 50-200 ms, receivers on loopback allowed.
pub fn fast_watch(settings: &mut Settings) {
    settings.watch.schedule_secs = vec![1];
    settings.watch.jitter = 0.0;
    settings.watch.tick_ms = 50;
    settings.webhooks.tick_ms = 50;
    settings.webhooks.retry_base_ms = 50;
    settings.webhooks.retry_max_ms = 200;
    settings.webhooks.allowed_hosts = vec!["127.0.0.1".into()];
    settings.webhooks.allow_http = true;
    settings.webhooks.allow_private_addresses = true;
}

/// Waits (bounded: `limit`, 50 ms apart) until `check` gives something.
pub async fn eventually<T, F, Fut>(limit: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Subscribes the token's app to `events` at `url`; the subscription's id and secret.
pub async fn subscribe(app: &TestApp, token: &str, url: &str, events: &[&str]) -> (String, String) {
    let response = app
        .http
        .post(format!("{}/v1/webhooks", app.url))
        .bearer_auth(token)
        .json(&json!({"url": url, "events": events}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let secret = body["secret"].as_str().unwrap().to_owned();
    register_secret(&secret);
    (body["id"].as_str().unwrap().to_owned(), secret)
}

/// Partner Center takes an Education request for `customer` (InReview), `times` times.
pub async fn partner_center_takes_education(app: &TestApp, customer: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/v1/customers/{customer}/qualifications")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "qualification": "Education", "vettingStatus": "InReview", "vettingCreateDate": "2026-11-30T10:00:00Z"
        })))
        .expect(times)
        .named("Partner Center POST")
        .mount(&app.partner_center)
        .await;
}

/// Partner Center lists `customer`'s Education vetting as `status`, exactly `times` times.
pub async fn partner_center_lists_education(
    app: &TestApp,
    customer: &str,
    status: &str,
    times: u64,
) {
    let mut entry = json!({"qualification": "Education", "vettingStatus": status, "vettingCreateDate": "2026-11-30T10:00:00Z"});
    if status == "Denied" {
        entry["vettingReason"] = json!("Not an Education Customer");
    }
    Mock::given(method("GET"))
        .and(path(format!("/v1/customers/{customer}/qualifications")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([entry])))
        .expect(times)
        .named("Partner Center GET (the watch)")
        .mount(&app.partner_center)
        .await;
}

pub const EDUCATION: &str =
    r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#;

/// A throwaway PostgreSQL cluster from Debian's `postgresql` package: initdb and pg_ctl on a
/// temporary directory, listening on a Unix socket only; stopped and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    /// `postgres://…?host=<socket dir>`, for `store.url`.
    pub url: String,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("socket");
        std::fs::create_dir(&socket).unwrap();
        if running_as_root() {
            // initdb refuses to run as root: the cluster belongs to the package's user.
            let owned = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let cluster = Self {
            url: format!(
                "postgres://postgres@localhost/postgres?host={}&port={port}",
                socket.display()
            ),
            dir,
            bin,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-c listen_addresses='' -k {} -p {port} -c fsync=off -c synchronous_commit=off",
            socket.display()
        );
        let log = cluster.dir.path().join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "30",
                "-o",
                &options,
                "start",
            ],
        );
        cluster
    }

    /// Stops the server at once (an outage, or the end of the test).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "20",
                "stop",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut command = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            std::process::Command::new(self.bin.join(program))
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success() || args.last() == Some(&"stop"),
            "{program}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// The server's programs, installed from Debian's `postgresql` package first when missing
/// (as .ci/run does), so the README's one test command works on a fresh machine.
fn postgres_bin_dir() -> std::path::PathBuf {
    static BIN: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
        if let Some(bin) = installed_postgres() {
            return bin;
        }
        let apt = |args: &[&str]| {
            let mut command = if running_as_root() {
                std::process::Command::new("apt-get")
            } else {
                let mut sudo = std::process::Command::new("sudo");
                sudo.args(["-n", "apt-get"]);
                sudo
            };
            command
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        eprintln!("tests: installing Debian's postgresql for the store tests");
        if !apt(&["install", "-y", "-qq", "postgresql"]) {
            apt(&["update", "-qq"]);
            apt(&["install", "-y", "-qq", "postgresql"]);
        }
        installed_postgres().expect(
            "PostgreSQL's server is not installed and could not be: apt-get install -y postgresql",
        )
    });
    BIN.clone()
}

/// Where Debian puts the server programs (not on PATH): the newest version's.
fn installed_postgres() -> Option<std::path::PathBuf> {
    let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").exists());
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// The fields a problem+json names in its `errors`, in order.
pub fn fields_at_fault(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}
