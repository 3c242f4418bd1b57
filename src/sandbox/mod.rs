//! A stand-in for the outside world, served by the gateway itself under `/sandbox/`: Entra's
//! token endpoint, Partner Center's qualification endpoints and an issuer of caller tokens.
//! The gateway talks to it over HTTP with the same client code it uses in production;
//! only startup knows it exists.

mod caller_tokens;
mod entra;
mod partner_center;
mod signing;
mod state;
mod webhook_receiver;

use std::time::Duration;

use actix_web::http::Method;
use actix_web::web;
use secrecy::SecretString;
use utoipa::OpenApi;

pub use signing::SigningKey;
use state::SandboxState;

use crate::configuration::{KeySource, Settings, TokenEndpoint, TrustedIssuer};

pub const SANDBOX_TENANT: &str = "sandbox-partner.onmicrosoft.com";
/// The `aud` of the caller tokens the sandbox mints; it trusts only its own issuer.
pub const SANDBOX_AUDIENCE: &str = "api://partner-gateway";

pub struct Sandbox {
    state: web::Data<SandboxState>,
    received: web::Data<webhook_receiver::Received>,
}

/// The sandbox caller's own subscription, to the sandbox's receiver, for every event.
pub const SANDBOX_CALLER_APP: &str = "sandbox-caller-app";

impl Sandbox {
    /// Builds the sandbox for a gateway reachable at `gateway_url` and points the
    /// settings' upstream URLs and credentials at it.
    pub fn new(settings: &mut Settings, gateway_url: &str) -> anyhow::Result<Self> {
        let base = format!("{}/sandbox", gateway_url.trim_end_matches('/'));
        let state = SandboxState::new(
            base.clone(),
            SANDBOX_AUDIENCE.to_owned(),
            Duration::from_millis(settings.sandbox.approval_delay_ms),
            settings.sandbox.caller_token_ttl_secs,
            Duration::from_secs(settings.sandbox.device_code_ttl_secs),
            Duration::from_secs(settings.sandbox.device_code_interval_secs),
        )?;

        settings.caller_auth.issuers = vec![TrustedIssuer::new(
            base.clone(),
            SANDBOX_AUDIENCE,
            KeySource::Jwks(format!("{base}/keys")),
        )];
        settings.partner_center.base_url = format!("{base}/partner-center");
        let token = &mut settings.partner_token;
        token.authority_url = format!("{base}/entra");
        token.tenant_id = SANDBOX_TENANT.to_owned();
        token.endpoint = TokenEndpoint::V1;
        token.client_id = state.entra.client_id.clone();
        token.client_secret = Some(SecretString::from(state.entra.client_secret.clone()));
        token.client_type = crate::configuration::ClientType::Confidential;
        token.refresh_token = Some(SecretString::from(state.entra.sandbox_refresh_token()));

        // The vetting watch notices a simulated approval within seconds, and may notify the
        // receiver on this very gateway, over plain http on loopback.
        settings.watch.schedule_secs = settings.sandbox.watch_schedule_secs.clone();
        let webhooks = &mut settings.webhooks;
        webhooks.allow_http = true;
        webhooks.allow_private_addresses = true;
        if let Some(host) = url::Url::parse(gateway_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
        {
            webhooks.allowed_hosts.push(host);
        }
        webhooks.allowed_hosts.push("localhost".to_owned());

        Ok(Self {
            state: web::Data::new(state),
            received: web::Data::new(webhook_receiver::Received::new(format!(
                "{base}/webhook-receiver"
            ))),
        })
    }

    /// Subscribes the sandbox caller's app to the sandbox receiver (once per store), so a
    /// POST made with a sandbox token is followed by a signed notification there.
    pub async fn subscribe_receiver(&self, store: &crate::store::Store) -> anyhow::Result<()> {
        let url = self.received.url();
        if !store.subscriptions_to(url).await?.is_empty() {
            return Ok(());
        }
        let subscription = crate::store::NewSubscription {
            id: uuid::Uuid::new_v4().to_string(),
            caller_app: crate::auth::owning_app(&self.state.issuer, SANDBOX_CALLER_APP),
            url: url.to_owned(),
            events: crate::webhooks::EventType::ALL
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            secret: crate::webhooks::signature::generate_secret(),
            created_by: "sandbox".to_owned(),
        };
        store.create_subscription(&subscription, u64::MAX).await?;
        Ok(())
    }

    pub fn configure(&self, config: &mut web::ServiceConfig) {
        config.service(
            web::scope("/sandbox")
                .app_data(self.state.clone())
                .route("/caller-token", web::post().to(caller_tokens::issue))
                .route("/keys", web::get().to(caller_tokens::jwks))
                .service(
                    web::resource("/webhook-receiver")
                        .app_data(self.received.clone())
                        .route(web::post().to(webhook_receiver::receive_webhook))
                        .route(web::get().to(webhook_receiver::list_received_webhooks)),
                )
                .route("/app-registration", web::get().to(entra::app_registration))
                .route(
                    "/entra/{tenant}/oauth2/token",
                    web::post().to(entra::token_v1),
                )
                .route(
                    "/entra/{tenant}/oauth2/v2.0/token",
                    web::post().to(entra::token_v2),
                )
                .service(
                    web::resource("/entra/{tenant}/oauth2/v2.0/authorize")
                        .route(web::get().to(entra::sign_in::authorize_page))
                        .route(web::post().to(entra::sign_in::authorize_decision)),
                )
                .route(
                    "/entra/{tenant}/oauth2/v2.0/devicecode",
                    web::post().to(entra::sign_in::device_code),
                )
                .service(
                    web::resource("/entra/device")
                        .route(web::get().to(entra::sign_in::device_page))
                        .route(web::post().to(entra::sign_in::device_decision)),
                )
                .route(
                    "/partner-center/v1/customers/all/validations",
                    web::get().to(partner_center::list_validations),
                )
                .route(
                    "/partner-center/v1/customers/{customer}/qualifications",
                    web::post().to(partner_center::create_qualification),
                )
                .route(
                    "/partner-center/v1/customers/{customer}/qualifications",
                    web::get().to(partner_center::list_qualifications),
                ),
        );
    }

    /// The routes [`Self::configure`] serves besides the documented caller-token one, so a
    /// wrong method on them is a 405 like anywhere else.
    pub const UNDOCUMENTED_ROUTES: [(&'static str, Method); 12] = [
        ("/sandbox/keys", Method::GET),
        ("/sandbox/app-registration", Method::GET),
        ("/sandbox/entra/{tenant}/oauth2/v2.0/authorize", Method::GET),
        (
            "/sandbox/entra/{tenant}/oauth2/v2.0/authorize",
            Method::POST,
        ),
        (
            "/sandbox/entra/{tenant}/oauth2/v2.0/devicecode",
            Method::POST,
        ),
        ("/sandbox/entra/device", Method::GET),
        ("/sandbox/entra/device", Method::POST),
        ("/sandbox/entra/{tenant}/oauth2/token", Method::POST),
        ("/sandbox/entra/{tenant}/oauth2/v2.0/token", Method::POST),
        (
            "/sandbox/partner-center/v1/customers/all/validations",
            Method::GET,
        ),
        (
            "/sandbox/partner-center/v1/customers/{customer}/qualifications",
            Method::POST,
        ),
        (
            "/sandbox/partner-center/v1/customers/{customer}/qualifications",
            Method::GET,
        ),
    ];

    /// A caller token for the start-up banner.
    pub fn mint_caller_token(&self) -> anyhow::Result<String> {
        self.state.mint_caller_token(None, None)
    }

    /// The sandbox's own operations, added to the served document in sandbox mode only.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        SandboxDoc::openapi()
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(caller_tokens::issue, webhook_receiver::receive_webhook, webhook_receiver::list_received_webhooks),
    tags((name = "sandbox", description = "Sandbox mode only: get a caller token here, then Authorize. POST a qualification and, a few seconds after the simulated vetting ends, GET the webhook receiver: the sandbox caller's app is subscribed to it"))
)]
struct SandboxDoc;
