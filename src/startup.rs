//! Builds the whole service from settings. `main` and the tests both go through here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::CallerVerifier;
use crate::configuration::{Mode, Settings};
use crate::correlation::correlation_middleware;
use crate::idempotency::IdempotencyStore;
use crate::partner_center::{PartnerCenterClient, TokenProvider};
use crate::rate_limit::CallerRateLimiter;
use crate::routes;
use crate::sandbox::Sandbox;
use crate::telemetry::GatewayRootSpan;

/// What handlers share, built once.
pub struct AppState {
    pub partner_center: PartnerCenterClient,
    pub max_body_bytes: usize,
    pub idempotency: IdempotencyStore,
}

pub struct Application {
    address: SocketAddr,
    server: Server,
    verifier: web::Data<CallerVerifier>,
    sandbox: Option<Arc<Sandbox>>,
}

impl Application {
    /// Binds the configured address (port 0 picks a free one) and assembles the app.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        Self::build_with_listener(settings, listener)
    }

    pub fn build_with_listener(
        mut settings: Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let address = listener.local_addr()?;
        let sandbox = match settings.mode {
            Mode::Sandbox => Some(Arc::new(Sandbox::new(&mut settings, &self_url(address))?)),
            Mode::Production => None,
        };

        // One HTTP client for every upstream: Partner Center, Entra and the JWKS endpoint.
        let http = reqwest::Client::builder()
            .connect_timeout(settings.partner_center.connect_timeout())
            .timeout(settings.partner_center.request_timeout())
            .user_agent(concat!("partner-gateway/", env!("CARGO_PKG_VERSION")))
            // A redirect from Partner Center or Entra is an answer to report, not to follow
            // with a bearer token.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot build the HTTP client")?;
        let tokens = Arc::new(TokenProvider::new(http.clone(), &settings.partner_token)?);
        if settings.mode == Mode::Production && !tokens.has_refresh_token() {
            anyhow::bail!(
                "no partner refresh token: set partner_token.refresh_token ({}) or store one in partner_token.refresh_token_file",
                crate::configuration::env_name("partner_token.refresh_token")
            );
        }
        let state = web::Data::new(AppState {
            partner_center: PartnerCenterClient::new(
                http.clone(),
                &settings.partner_center,
                tokens,
            ),
            max_body_bytes: settings.server.max_body_bytes,
            idempotency: IdempotencyStore::new(
                Duration::from_secs(settings.idempotency.ttl_secs),
                settings.idempotency.max_entries,
            ),
        });
        let verifier = web::Data::new(CallerVerifier::new(http, &settings.caller_auth));
        let rate_limiter = web::Data::new(CallerRateLimiter::new(&settings.rate_limit));

        let served_doc = routes::served_document(sandbox.is_some());

        let mut undocumented_routes = vec![
            ("/openapi.json", Method::GET),
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
        let server_verifier = verifier.clone();
        let server_sandbox = sandbox.clone();
        let mut server = HttpServer::new(move || {
            let (app, _) = App::new()
                .into_utoipa_app()
                .app_data(state.clone())
                .app_data(server_verifier.clone())
                .app_data(rate_limiter.clone())
                .configure(routes::api)
                .split_for_parts();
            let sandbox = server_sandbox.clone();
            app.route("/swagger-ui", web::get().to(redirect_to_swagger_ui))
                .service(
                    SwaggerUi::new("/swagger-ui/{_:.*}").url("/openapi.json", served_doc.clone()),
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
                .wrap(TracingLogger::<GatewayRootSpan>::new())
                // Outermost, so the span and every answer see the correlation ID.
                .wrap(from_fn(correlation_middleware))
        })
        .listen(listener)?;
        if settings.server.workers > 0 {
            server = server.workers(settings.server.workers);
        }

        Ok(Self {
            address,
            server: server.run(),
            verifier,
            sandbox,
        })
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
             \n    -d '{{\"qualification\": \"Education\", \"educationSegment\": \"K12\", \"website\": \"contoso.edu\"}}'\n"
        ))
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if self.sandbox.is_some() {
            tracing::warn!(
                url = %self.url(),
                "SANDBOX MODE: upstreams are simulated and tokens are minted locally; never use this against real customers"
            );
        }
        // Fetch the callers' signing keys now rather than on the first request, and keep
        // them fresh; a failure is not fatal (/readyz says not ready until keys are held).
        let refreshers = self.verifier.spawn_key_refreshers();
        let result = self.server.await;
        for refresher in refreshers {
            refresher.abort();
        }
        result
    }
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
