//! Builds the whole service from settings. `main` and the tests both go through here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::Method;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing_actix_web::TracingLogger;
use utoipa_swagger_ui::{Config as SwaggerUiConfig, SwaggerUi};

use crate::audit::{AuditLog, audit_middleware};
use crate::auth::{CallerVerifier, refuse_token_in_url};
use crate::configuration::{Mode, ServerSettings, Settings};
use crate::correlation::correlation_middleware;
use crate::cors::{cors, cors_refusal_as_problem};
use crate::idempotency::IdempotencyStore;
use crate::lifecycle::{Lifecycle, close_connections_while_draining};
use crate::metrics::{LiveValues, Metrics, ScrapeGauge, ScrapeState, record_requests};
use crate::partner_center::{PartnerCenterClient, PerThreadClient, TokenProvider};
use crate::rate_limit::CallerRateLimiter;
use crate::routes;
use crate::sandbox::Sandbox;
use crate::state::AppState;
use crate::store::Store;
use crate::telemetry::GatewayRootSpan;
use crate::watcher::Watcher;
use crate::webhooks::{CallbackPolicy, DeliveryWorker};

pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The `/metrics` listener's address and server, when metrics are on.
    metrics_server: Option<(SocketAddr, Server)>,
    verifier: web::Data<CallerVerifier>,
    tokens: Arc<TokenProvider>,
    sandbox: Option<Arc<Sandbox>>,
    lifecycle: Lifecycle,
    shutdown: ServerSettings,
    metrics: Metrics,
    state: web::Data<AppState>,
    /// Background work that follows the store: the vetting watch and webhook deliveries.
    workers: Vec<BoxFuture<'static, ()>>,
    /// The sandbox's store, when no path was configured: removed at exit.
    _sandbox_store: Option<tempfile::TempDir>,
}

impl Application {
    /// Binds the configured addresses (port 0 picks a free one) and assembles the app.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        Self::build_with_listener(settings, listener).await
    }

    pub async fn build_with_listener(
        mut settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let address = listener.local_addr()?;
        let metrics_listener = match settings.metrics.enabled {
            true => Some(TcpListener::bind(settings.metrics.listen).with_context(|| {
                format!(
                    "cannot listen for metrics on {} (choose another address with metrics.listen, {}, or turn them off with {}=false)",
                    settings.metrics.listen,
                    crate::configuration::env_name("metrics.listen"),
                    crate::configuration::env_name("metrics.enabled"),
                )
            })?),
            false => None,
        };
        let sandbox = match settings.mode {
            Mode::Sandbox => Some(Arc::new(Sandbox::new(&mut settings, &self_url(address))?)),
            Mode::Production => None,
        };
        let (metrics, mut registry) = Metrics::new();

        // One HTTP client for Entra and the JWKS endpoint (their calls set shorter timeouts of
        // their own); Partner Center's calls get one per worker thread, alike. They and the
        // webhooks' client share one TLS set-up, the platform's roots parsed once.
        let (connect_timeout, request_timeout) = (
            settings.partner_center.connect_timeout(),
            settings.partner_center.request_timeout(),
        );
        let tls = crate::tls::client_config()?;
        let partner_center_tls = tls.clone();
        let build_http = move || {
            crate::tls::client_builder(&partner_center_tls)
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                .user_agent(concat!("partner-gateway/", env!("CARGO_PKG_VERSION")))
                // A redirect from Partner Center or Entra is an answer to report, not to
                // follow with a bearer token.
                .redirect(reqwest::redirect::Policy::none())
                .build()
        };
        let http = build_http().context("cannot build the HTTP client")?;
        let tokens = Arc::new(TokenProvider::new(
            http.clone(),
            &settings.partner_token,
            metrics.clone(),
        )?);
        if settings.mode == Mode::Production && !tokens.has_refresh_token() {
            anyhow::bail!(
                "no partner refresh token: set partner_token.refresh_token ({}) or store one in partner_token.refresh_token_file",
                crate::configuration::env_name("partner_token.refresh_token")
            );
        }
        let lifecycle = Lifecycle::default();
        let sandbox_store = match (&sandbox, &settings.store.path, &settings.store.url) {
            (Some(_), None, None) => Some(
                tempfile::Builder::new()
                    .prefix("partner-gateway-sandbox-")
                    .tempdir()?,
            ),
            _ => None,
        };
        let store = Store::open(
            &settings.store,
            sandbox_store
                .as_ref()
                .map(|dir| dir.path().join("store.db"))
                .as_deref(),
            metrics.store_failures.clone(),
        )
        .await?;
        if let Some(sandbox) = &sandbox {
            sandbox.subscribe_receiver(&store).await?;
        }
        let state = web::Data::new(AppState {
            partner_center: PartnerCenterClient::new(
                PerThreadClient::new(http.clone(), build_http),
                &settings.partner_center,
                tokens.clone(),
                metrics.clone(),
            )?,
            partner_token: tokens.clone(),
            token_warn_days: settings.partner_token.warn_days,
            max_body_bytes: settings.server.max_body_bytes,
            idempotency: IdempotencyStore::new(
                store.clone(),
                Duration::from_secs(settings.idempotency.ttl_secs),
                // The longest a request can run, and some.
                Duration::from_millis(settings.partner_center.call_deadline_ms)
                    + Duration::from_secs(30),
            ),
            metrics: metrics.clone(),
            lifecycle: lifecycle.clone(),
            store: store.clone(),
            watch: settings.watch.clone(),
            webhooks: settings.webhooks.clone(),
            callback_policy: CallbackPolicy::new(&settings.webhooks),
        });
        // Names this replica's leases in a shared store.
        let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let mut workers = vec![
            DeliveryWorker::new(
                store.clone(),
                &settings.webhooks,
                &tls,
                metrics.clone(),
                owner.clone(),
            )?
            .run()
            .boxed(),
        ];
        workers.push(purge_expired_idempotency(store.clone()).boxed());
        if settings.watch.enabled {
            workers.push(
                Watcher::new(state.clone(), &settings.watch, owner)
                    .run()
                    .boxed(),
            );
        }
        let verifier = web::Data::new(CallerVerifier::new(
            http,
            &settings.caller_auth,
            metrics.clone(),
        ));
        let rate_limiter = web::Data::new(CallerRateLimiter::new(&settings.rate_limit));
        let audit = web::Data::new(AuditLog::new(&settings.audit, metrics.clone())?);
        registry.register_collector(Box::new(live_values(&state, &tokens)));

        let served_doc = routes::served_document(sandbox.is_some());
        let openapi_json = web::Data::new(
            routes::OpenApiJson::new(&served_doc).context("serialising the OpenAPI document")?,
        );

        let mut undocumented_routes = vec![
            (routes::OPENAPI_JSON_PATH, Method::GET),
            ("/swagger-ui", Method::GET),
            ("/swagger-ui/", Method::GET),
            ("/swagger-ui/{file}", Method::GET),
        ];
        if sandbox.is_some() {
            undocumented_routes.extend(Sandbox::UNDOCUMENTED_ROUTES);
        }
        let route_table = web::Data::new(Arc::new(routes::RouteTable::new(
            &served_doc,
            &undocumented_routes,
        )));
        let server_state = state.clone();
        let server_verifier = verifier.clone();
        let server_sandbox = sandbox.clone();
        let cors_settings = settings.cors.clone();
        let mut server = HttpServer::new(move || {
            let sandbox = server_sandbox.clone();
            App::new()
                .app_data(server_state.clone())
                .app_data(server_verifier.clone())
                .app_data(rate_limiter.clone())
                .app_data(audit.clone())
                .configure(routes::api)
                .app_data(openapi_json.clone())
                .route(
                    routes::OPENAPI_JSON_PATH,
                    web::get().to(routes::serve_openapi_json),
                )
                .route("/swagger-ui", web::get().to(redirect_to_swagger_ui))
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}")
                        .config(SwaggerUiConfig::new([routes::OPENAPI_JSON_PATH])),
                )
                .configure(move |config| {
                    if let Some(sandbox) = &sandbox {
                        sandbox.configure(config);
                    }
                })
                .app_data(route_table.clone())
                .default_service(web::to(routes::fallback))
                // Innermost, so the log line still says HEAD.
                .wrap(from_fn(routes::head_as_get))
                .wrap(Condition::new(
                    !cors_settings.allowed_origins.is_empty(),
                    cors(&cors_settings),
                ))
                .wrap(from_fn(cors_refusal_as_problem))
                .wrap(from_fn(refuse_token_in_url))
                .wrap(from_fn(audit_middleware))
                .wrap(from_fn(record_requests))
                .wrap(from_fn(close_connections_while_draining))
                .wrap(TracingLogger::<GatewayRootSpan>::new())
                // Outermost, so the span and every answer see the correlation ID.
                .wrap(from_fn(correlation_middleware))
        })
        // Signals are the application's to handle: it drains before it stops.
        .disable_signals()
        .shutdown_timeout(settings.server.shutdown_timeout().as_secs_f64().ceil() as u64)
        .listen(listener)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }
        let metrics_server = match metrics_listener {
            Some(listener) => Some((listener.local_addr()?, metrics_server(listener, registry)?)),
            None => None,
        };

        Ok(Self {
            address,
            server: server.run(),
            metrics_server,
            verifier,
            tokens,
            sandbox,
            lifecycle,
            shutdown: settings.server.clone(),
            metrics,
            state,
            workers,
            _sandbox_store: sandbox_store,
        })
    }

    /// Where Prometheus scrapes: `http://host:port/metrics`, when metrics are on.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_server
            .as_ref()
            .map(|(address, _)| format!("{}/metrics", self_url(*address)))
    }

    /// Asks for the graceful shutdown a SIGTERM would start.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.clone()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// The URL this process answers on, usable from the same machine.
    pub fn url(&self) -> String {
        self_url(self.address)
    }

    /// Tells whoever started a sandbox how to try it. Printed to stderr, outside the logs,
    /// because it carries a (sandbox-only) caller token.
    pub fn sandbox_banner(&self) -> Option<String> {
        let sandbox = self.sandbox.as_ref()?;
        let url = self.url();
        let token = sandbox.mint_caller_token().ok()?;
        Some(format!(
            "\n  partner-gateway is running in SANDBOX mode: Entra, Partner Center and caller tokens are simulated.\n\
             \n  Swagger UI:   {url}/swagger-ui/\
             \n  Caller token: curl -s -X POST {url}/sandbox/caller-token\
             \n  Try it:\n\
             \n  curl -i -X POST {url}/v1/customers/7d2456fd-2d79-46d0-9f8e-5d7ecd5f8745/qualifications \\\
             \n    -H 'Authorization: Bearer {token}' \\\
             \n    -H 'Content-Type: application/json' \\\
             \n    -d '{{\"qualification\": \"Education\", \"educationSegment\": \"K12\", \"website\": \"contoso.edu\"}}'\n\
             \n  The operator's sign-in, against this sandbox's Entra (add --device-code for the headless way):\n\
             \n  PARTNER_GATEWAY__PARTNER_TOKEN__REFRESH_TOKEN_FILE=./sandbox-refresh-token \\\
             \n    partner-gateway login --sandbox {url}\n"
        ))
    }

    /// Serves until a shutdown is asked for ([`Lifecycle::shut_down`], which `main` calls on
    /// SIGTERM or SIGINT), then drains: `/readyz` says 503 at once, requests are served for
    /// `server.shutdown_delay_ms` more, then the listener closes and in-flight requests get
    /// `server.shutdown_timeout_ms`. Background tasks stop last.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if self.sandbox.is_some() {
            tracing::warn!(
                url = %self.url(),
                "SANDBOX MODE: upstreams are simulated and tokens are minted locally; never use this against real customers"
            );
        }
        tracing::info!(
            address = %self.url(),
            metrics = self.metrics_url().as_deref(),
            "partner-gateway listening"
        );
        // Fetch the callers' signing keys now rather than on the first request, and keep
        // them fresh; a failure is not fatal (/readyz says not ready until keys are held).
        let mut refreshers = self.verifier.spawn_key_refreshers();
        refreshers.extend(self.workers.into_iter().map(tokio::spawn));
        let handle = self.server.handle();
        let metrics_server = self.metrics_server.map(|(_, server)| server);
        let metrics_handle = metrics_server.as_ref().map(Server::handle);
        let metrics_task = metrics_server.map(tokio::spawn);
        let drain = tokio::spawn(drain_on_request(
            self.lifecycle.clone(),
            handle,
            self.shutdown.clone(),
            self.metrics.clone(),
        ));
        let result = self.server.await;
        drain.abort();
        for refresher in refreshers {
            refresher.abort();
        }
        // A token redemption under way finishes, so a rotated refresh token is stored.
        if tokio::time::timeout(Duration::from_secs(5), self.tokens.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("a partner token request was still running at shutdown");
        }
        if let Some(handle) = metrics_handle {
            handle.stop(false).await;
        }
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        self.state.store.close().await;
        tracing::info!("partner-gateway stopped");
        result
    }
}

/// Expired Idempotency-Key answers go every few minutes (a claim also clears its own).
async fn purge_expired_idempotency(store: Store) {
    loop {
        tokio::time::sleep(Duration::from_secs(300)).await;
        match store.purge_expired_idempotency().await {
            Ok(purged) => tracing::debug!(purged, "expired Idempotency-Key answers purged"),
            Err(error) => tracing::warn!(%error, "cannot purge expired Idempotency-Key answers"),
        }
    }
}

async fn drain_on_request(
    lifecycle: Lifecycle,
    server: ServerHandle,
    settings: ServerSettings,
    metrics: Metrics,
) {
    lifecycle.asked().await;
    metrics.shutting_down.set(1);
    tracing::info!(
        delay_ms = settings.shutdown_delay_ms,
        timeout_ms = settings.shutdown_timeout_ms,
        "shutting down: /readyz answers 503; still serving until the delay has passed"
    );
    tokio::time::sleep(settings.shutdown_delay()).await;
    tracing::info!("shutting down: listener closed; waiting for requests in flight");
    if tokio::time::timeout(settings.shutdown_timeout(), server.stop(true))
        .await
        .is_err()
    {
        tracing::warn!("shutting down: requests still in flight after the timeout are dropped");
        server.stop(false).await;
    }
}

/// Circuit state and token lifetimes, read at each scrape.
fn live_values(state: &web::Data<AppState>, tokens: &Arc<TokenProvider>) -> LiveValues {
    let circuit = state.clone();
    let (remaining, age) = (tokens.clone(), tokens.clone());
    let warn_days = state.token_warn_days;
    let health = |read: fn(&crate::partner_center::credential::CredentialHealth) -> Option<f64>| {
        let tokens = tokens.clone();
        Box::new(move || read(&tokens.health(warn_days)))
            as Box<dyn Fn() -> Option<f64> + Send + Sync>
    };
    let status = tokens.clone();
    LiveValues {
        gauges: vec![
            ScrapeGauge {
                name: "partner_token_remaining_seconds",
                help: "Seconds until the Partner Center access token in use expires",
                read: Box::new(move || remaining.access_token_remaining().map(|d| d.as_secs_f64())),
            },
            ScrapeGauge {
                name: "partner_refresh_token_age_seconds",
                help: "Seconds since Entra last rotated the refresh token (it expires after 90 days unused)",
                read: Box::new(move || age.refresh_token_age().map(|d| d.as_secs_f64())),
            },
            ScrapeGauge {
                name: "partner_refresh_token_days_left",
                help: "Days before the refresh token dies unused (Entra's 90-day inactivity limit)",
                read: health(|h| h.days_left.map(|d| d as f64)),
            },
            ScrapeGauge {
                name: "partner_token_last_redeemed_timestamp_seconds",
                help: "When Entra last accepted the refresh token (Unix seconds)",
                read: health(|h| h.record.redeemed_at.map(|t| t as f64)),
            },
            ScrapeGauge {
                name: "partner_token_mfa",
                help: "1 when the last access token says the sign-in used MFA (Partner Center requires it), else 0",
                read: health(|h| h.record.mfa.map(|m| f64::from(u8::from(m)))),
            },
        ],
        states: vec![
            ScrapeState {
                name: "partner_center_circuit_state",
                help: "Partner Center's circuit breaker: 1 for the current state",
                states: &["closed", "open", "half-open"],
                read: Box::new(move || circuit.partner_center.circuit_state()),
            },
            ScrapeState {
                name: "partner_token_status",
                help: "The partner credential: 1 for usable, expiring (within warn_days), unknown (age) or unusable",
                states: &crate::partner_center::credential::CredentialStatus::ALL,
                read: Box::new(move || status.health(warn_days).status.label()),
            },
        ],
    }
}

/// `/metrics` on a listener of its own: one worker, no caller auth, nothing else served.
fn metrics_server(
    listener: TcpListener,
    registry: prometheus_client::registry::Registry,
) -> std::io::Result<Server> {
    let registry = web::Data::new(registry);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(registry.clone())
            .route("/metrics", web::get().to(serve_metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}

async fn serve_metrics(registry: web::Data<prometheus_client::registry::Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&registry))
}

async fn redirect_to_swagger_ui() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/swagger-ui/"))
        .finish()
}

/// A listener on 0.0.0.0 or [::] is reached through loopback from the same machine.
fn self_url(address: SocketAddr) -> String {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, address.port()))
}
