//! Settings: built-in defaults, then an optional TOML file, then `PARTNER_GATEWAY__*` variables.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use jsonwebtoken::Algorithm;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

const DEFAULTS: &str = include_str!("defaults.toml");
pub const ENV_PREFIX: &str = "PARTNER_GATEWAY";

#[derive(Debug, thiserror::Error)]
pub enum ConfigurationError {
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    #[error("setting `{key}` (env {env}) {problem}")]
    Invalid {
        key: String,
        env: String,
        problem: String,
    },
}

impl ConfigurationError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        let key = key.into();
        Self::Invalid {
            env: env_name(&key),
            key,
            problem: problem.into(),
        }
    }
}

/// `partner_token.client_secret` → `PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET`; an item of
/// a list (`caller_auth.issuers[1].audiences`) is set through the list's variable.
pub fn env_name(key: &str) -> String {
    let key = key.split('[').next().unwrap_or(key);
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Sandbox,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub mode: Mode,
    pub server: ServerSettings,
    pub telemetry: TelemetrySettings,
    pub caller_auth: CallerAuthSettings,
    pub partner_center: PartnerCenterSettings,
    pub partner_token: PartnerTokenSettings,
    pub idempotency: IdempotencySettings,
    pub rate_limit: RateLimitSettings,
    pub sandbox: SandboxSettings,
    pub metrics: MetricsSettings,
    pub audit: AuditSettings,
    pub cors: CorsSettings,
    pub store: StoreSettings,
    pub watch: WatchSettings,
    pub webhooks: WebhookSettings,
}

/// Where requests, their history, webhook subscriptions, the outbox and idempotency answers
/// are kept: an embedded SQLite file, or PostgreSQL (`url`) shared by several replicas.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreSettings {
    /// The SQLite file; in sandbox mode a temporary file when unset.
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// `postgres://…`: takes precedence over `path`. May carry a password, hence secret.
    #[serde(default)]
    pub url: Option<SecretString>,
    pub max_connections: u32,
    /// Waiting for a connection (and SQLite's lock) longer than this answers 503.
    pub acquire_timeout_ms: u64,
}

/// The vetting watch: how often a customer with requests InReview is polled.
#[derive(Debug, Clone, Deserialize)]
pub struct WatchSettings {
    pub enabled: bool,
    /// Waits before the first, second, … poll; the last repeats.
    #[serde(deserialize_with = "one_or_many")]
    pub schedule_secs: Vec<u64>,
    /// Each wait is stretched or shrunk by up to this fraction, so polls spread out.
    pub jitter: f64,
    pub max_days: u64,
    /// Partner Center calls the watcher may make per minute, per replica.
    pub polls_per_minute: u32,
    pub tick_ms: u64,
    /// A replica's claim on a customer's poll; a dead replica's claims lapse after this.
    pub lease_secs: u64,
}

/// Signed notifications to callers' callback URLs.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    /// Hosts callback URLs may name: exact (`hooks.contoso.com`) or a subdomain wildcard
    /// (`*.contoso.com`). Empty: no subscriptions can be made.
    pub allowed_hosts: Vec<String>,
    /// Plain http callbacks (sandbox mode allows them).
    pub allow_http: bool,
    /// Callbacks resolving to loopback, private or link-local addresses (sandbox mode
    /// allows them).
    pub allow_private_addresses: bool,
    pub timeout_ms: u64,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// A delivery still failing this long after its event is dead-lettered.
    pub give_up_after_secs: u64,
    pub tick_ms: u64,
    pub lease_secs: u64,
    pub max_subscriptions_per_app: u64,
}

/// Prometheus metrics, on a listener of their own so they are never exposed on the public
/// port nor put behind caller auth.
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    pub enabled: bool,
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// Also append each record to this JSONL file, fsynced per record.
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CorsSettings {
    /// Exact origins (`https://app.contoso.com`); empty: no CORS headers at all.
    pub allowed_origins: Vec<String>,
    pub max_age_secs: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RateLimitSettings {
    pub requests_per_minute: u32,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IdempotencySettings {
    pub ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub workers: usize,
    pub max_body_bytes: usize,
    /// After SIGTERM: `/readyz` says 503 at once, but requests are still served this long,
    /// so the load balancer stops sending them before the listener closes.
    pub shutdown_delay_ms: u64,
    /// Then in-flight requests get this long to finish.
    pub shutdown_timeout_ms: u64,
}

impl ServerSettings {
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CallerAuthSettings {
    #[serde(deserialize_with = "list_or_json")]
    pub issuers: Vec<TrustedIssuer>,
    pub write: AccessRule,
    pub read: AccessRule,
    /// May read every app's qualification requests, not only its own app's.
    pub audit: AccessRule,
    pub allowed_app_ids: Vec<String>,
    pub max_token_lifetime_secs: u64,
    pub jwks_ttl_secs: u64,
    pub jwks_retry_secs: u64,
    pub unknown_kid_refetch_secs: u64,
    pub verified_token_cache_size: u64,
    /// One key or discovery fetch's limit: the identity provider, not Partner Center.
    pub fetch_timeout_ms: u64,
}

/// An identity provider whose tokens the gateway accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedIssuer {
    /// Compared exactly with the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must be one of these.
    pub audiences: Vec<String>,
    /// OpenID configuration document whose `jwks_uri` names the keys; or give `jwks_url`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    Jwks(String),
    Discovery(String),
}

impl TrustedIssuer {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, keys: KeySource) -> Self {
        let (discovery_url, jwks_url) = match keys {
            KeySource::Jwks(url) => (None, Some(url)),
            KeySource::Discovery(url) => (Some(url), None),
        };
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            discovery_url,
            jwks_url,
            algorithms: default_algorithms(),
            leeway_secs: default_leeway_secs(),
        }
    }

    /// Valid after `Settings::validate`, which refuses both or neither URL.
    pub fn key_source(&self) -> Option<KeySource> {
        match (&self.discovery_url, &self.jwks_url) {
            (Some(url), None) => Some(KeySource::Discovery(url.clone())),
            (None, Some(url)) => Some(KeySource::Jwks(url.clone())),
            _ => None,
        }
    }
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
}

fn default_leeway_secs() -> u64 {
    60
}

/// A list of numbers; from the environment, `120,600` or a lone `60` (which the variable
/// parser hands over as a number, not a list of one).
fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<u64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Number(u64),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Number>),
        One(Number),
    }
    let numbers = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(many) => many,
        OneOrMany::One(one) => vec![one],
    };
    numbers
        .into_iter()
        .map(|n| match n {
            Number::Number(n) => Ok(n),
            Number::Text(text) => text.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("{text:?} is not a whole number of seconds"))
            }),
        })
        .collect()
}

/// Issuers come as a TOML array of tables, or, from the environment, as one JSON string.
fn list_or_json<'de, D>(deserializer: D) -> Result<Vec<TrustedIssuer>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrJson {
        List(Vec<TrustedIssuer>),
        Json(String),
    }
    match ListOrJson::deserialize(deserializer)? {
        ListOrJson::List(issuers) => Ok(issuers),
        ListOrJson::Json(text) if text.trim().is_empty() => Ok(Vec::new()),
        ListOrJson::Json(text) => serde_json::from_str(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "caller_auth.issuers is not a JSON array of issuers: {e}"
            ))
        }),
    }
}

/// Roles (app tokens) or delegated scopes (user tokens), any one of which grants an operation.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessRule {
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamContract {
    /// Validation code in the JSON body.
    Current,
    /// Validation code as `?code=` (the 2020 documentation).
    Legacy,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartnerCenterSettings {
    pub base_url: String,
    pub contract: UpstreamContract,
    pub locale: String,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_retries: usize,
    pub retry_base_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    pub call_deadline_ms: u64,
    pub breaker_failure_ratio: f64,
    pub breaker_window: usize,
    pub breaker_min_calls: usize,
    pub breaker_open_ms: u64,
    pub max_concurrent_calls: usize,
    pub bulkhead_wait_ms: u64,
}

impl PartnerCenterSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenEndpoint {
    V1,
    V2,
}

/// How the app registration proves itself to Entra: with its client secret, or (a public
/// client, "Allow public client flows" on) without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    Confidential,
    Public,
}

/// Local ports `login --browser` may listen on for Entra's redirect, `first-last` (or one
/// port; `0` for any free one). Each must be a registered redirect URI of a web app
/// registration; a public client's `http://localhost` matches any port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Port(u16),
            Range(String),
        }
        let invalid = |text: &str| {
            serde::de::Error::custom(format!(
                "{text:?} is not a port or a range of ports such as 8400-8409"
            ))
        };
        let (first, last) = match Written::deserialize(deserializer)? {
            Written::Port(port) => (port, port),
            Written::Range(text) => {
                let parse = |s: &str| s.trim().parse::<u16>().map_err(|_| invalid(&text));
                match text.split_once('-') {
                    Some((first, last)) => (parse(first)?, parse(last)?),
                    None => (parse(&text)?, parse(&text)?),
                }
            }
        };
        if first > last || (first == 0 && last != 0) {
            return Err(invalid(&format!("{first}-{last}")));
        }
        Ok(Self { first, last })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartnerTokenSettings {
    pub authority_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// `public`: the refresh token is redeemed without the client secret.
    pub client_type: ClientType,
    pub refresh_token: Option<SecretString>,
    /// Where rotated refresh tokens are kept across restarts; read at start in preference
    /// to `refresh_token`.
    #[serde(default)]
    pub refresh_token_file: Option<std::path::PathBuf>,
    pub endpoint: TokenEndpoint,
    pub resource: String,
    pub scope: String,
    pub expiry_margin_secs: u64,
    pub failure_backoff_base_ms: u64,
    pub failure_backoff_max_ms: u64,
    /// One token request's limit: Entra answers in well under a second when it is well.
    pub timeout_ms: u64,
    /// `token status` fails (and `/readyz` says `expiring`) this many days before the
    /// refresh token's 90-day inactivity limit.
    pub warn_days: u64,
    /// Where `login --browser` listens for Entra's redirect.
    pub login_redirect_ports: PortRange,
}

impl PartnerTokenSettings {
    pub fn token_url(&self) -> String {
        self.authority_path(match self.endpoint {
            TokenEndpoint::V1 => "oauth2/token",
            TokenEndpoint::V2 => "oauth2/v2.0/token",
        })
    }

    /// `{authority}/{tenant}/{path}`: the v2 authorize, device code and token endpoints.
    pub fn authority_path(&self, path: &str) -> String {
        format!(
            "{}/{}/{path}",
            self.authority_url.trim_end_matches('/'),
            self.tenant_id
        )
    }

    /// The secret to send to Entra: none for a public client.
    pub fn client_secret_to_send(&self) -> Option<&SecretString> {
        match self.client_type {
            ClientType::Confidential => self.client_secret.as_ref(),
            ClientType::Public => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSettings {
    pub approval_delay_ms: u64,
    /// Replaces `watch.schedule_secs` in sandbox mode, so a simulated approval is noticed
    /// within seconds.
    #[serde(deserialize_with = "one_or_many")]
    pub watch_schedule_secs: Vec<u64>,
    pub allow_non_loopback: bool,
    pub caller_token_ttl_secs: u64,
    /// How long a device code from the sandbox's Entra lasts, and its polling interval.
    pub device_code_ttl_secs: u64,
    pub device_code_interval_secs: u64,
}

impl Settings {
    /// Loads and checks the settings; a bad or missing one fails here, named, not at first use.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigurationError> {
        let settings = Self::load_unchecked(file)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads without the gateway's checks, for commands that need only some settings
    /// (`login`, `token status`) and check those themselves.
    pub fn load_unchecked(file: Option<&Path>) -> Result<Self, ConfigurationError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let settings: Settings = builder
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("caller_auth.write.roles")
                    .with_list_parse_key("caller_auth.write.scopes")
                    .with_list_parse_key("caller_auth.read.roles")
                    .with_list_parse_key("caller_auth.read.scopes")
                    .with_list_parse_key("caller_auth.allowed_app_ids")
                    .with_list_parse_key("cors.allowed_origins")
                    .with_list_parse_key("caller_auth.audit.roles")
                    .with_list_parse_key("caller_auth.audit.scopes")
                    .with_list_parse_key("watch.schedule_secs")
                    .with_list_parse_key("sandbox.watch_schedule_secs")
                    .with_list_parse_key("webhooks.allowed_hosts"),
            )
            .build()?
            .try_deserialize()?;
        Ok(settings)
    }

    /// The defaults alone, for tests and tools that adjust them in code.
    pub fn defaults() -> Result<Self, ConfigurationError> {
        let settings: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        if self.server.max_body_bytes == 0 {
            return Err(E::invalid(
                "server.max_body_bytes",
                "must be greater than 0",
            ));
        }
        self.validate_caller_auth()?;
        for (key, value) in [
            (
                "partner_center.connect_timeout_ms",
                self.partner_center.connect_timeout_ms,
            ),
            (
                "partner_center.request_timeout_ms",
                self.partner_center.request_timeout_ms,
            ),
            (
                "partner_center.retry_base_delay_ms",
                self.partner_center.retry_base_delay_ms,
            ),
            (
                "partner_center.call_deadline_ms",
                self.partner_center.call_deadline_ms,
            ),
            ("partner_token.timeout_ms", self.partner_token.timeout_ms),
            (
                "caller_auth.fetch_timeout_ms",
                self.caller_auth.fetch_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(E::invalid(key, "must be greater than 0"));
            }
        }
        let pc = &self.partner_center;
        if !(pc.breaker_failure_ratio > 0.0 && pc.breaker_failure_ratio <= 1.0) {
            return Err(E::invalid(
                "partner_center.breaker_failure_ratio",
                "must be above 0 and at most 1",
            ));
        }
        if pc.breaker_min_calls == 0 || pc.breaker_min_calls > pc.breaker_window {
            return Err(E::invalid(
                "partner_center.breaker_min_calls",
                "must be at least 1 and at most partner_center.breaker_window",
            ));
        }
        if pc.max_concurrent_calls == 0 {
            return Err(E::invalid(
                "partner_center.max_concurrent_calls",
                "must be greater than 0",
            ));
        }
        self.validate_cors()?;
        self.validate_store_and_watch()?;
        if self.metrics.enabled
            && self.metrics.listen == self.server.listen
            && self.server.listen.port() != 0
        {
            return Err(E::invalid(
                "metrics.listen",
                "must differ from server.listen: metrics stay off the public port",
            ));
        }
        match self.mode {
            Mode::Sandbox => {
                if !self.server.listen.ip().is_loopback() && !self.sandbox.allow_non_loopback {
                    return Err(E::invalid(
                        "server.listen",
                        format!(
                            "is {}, not a loopback address: sandbox mode mints tokens, so it listens on \
                             loopback only unless `sandbox.allow_non_loopback` ({}) is true",
                            self.server.listen,
                            env_name("sandbox.allow_non_loopback")
                        ),
                    ));
                }
            }
            Mode::Production => self.validate_production()?,
        }
        Ok(())
    }

    /// What `login` needs: the app registration, where to store the token, and URLs.
    pub fn validate_for_login(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        let token = &self.partner_token;
        for (key, value) in [
            ("partner_token.tenant_id", token.tenant_id.as_str()),
            ("partner_token.client_id", token.client_id.as_str()),
        ] {
            if value.trim().is_empty() {
                return Err(E::invalid(key, "is required to sign in"));
            }
        }
        let has_secret = token
            .client_secret
            .as_ref()
            .is_some_and(|s| !secrecy::ExposeSecret::expose_secret(s).trim().is_empty());
        if token.client_type == ClientType::Confidential && !has_secret {
            return Err(E::invalid(
                "partner_token.client_secret",
                format!(
                    "is required to sign in (or set partner_token.client_type ({}) to public)",
                    env_name("partner_token.client_type")
                ),
            ));
        }
        if token
            .refresh_token_file
            .as_ref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(E::invalid(
                "partner_token.refresh_token_file",
                "is required: it is where login stores the refresh token the gateway reads",
            ));
        }
        if token.timeout_ms == 0 {
            return Err(E::invalid(
                "partner_token.timeout_ms",
                "must be greater than 0",
            ));
        }
        check_http_url("partner_center.base_url", &self.partner_center.base_url)?;
        check_http_url("partner_token.authority_url", &token.authority_url)
    }

    fn validate_production(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        let required_in_production = [
            (
                "partner_token.tenant_id",
                self.partner_token.tenant_id.as_str(),
            ),
            (
                "partner_token.client_id",
                self.partner_token.client_id.as_str(),
            ),
        ];
        for (key, value) in required_in_production {
            if value.trim().is_empty() {
                return Err(E::invalid(key, "is required in production mode"));
            }
        }
        for (key, secret) in [
            (
                "partner_token.client_secret",
                &self.partner_token.client_secret,
            ),
            (
                "partner_token.refresh_token",
                &self.partner_token.refresh_token,
            ),
        ] {
            let present = secret
                .as_ref()
                .is_some_and(|s| !secrecy::ExposeSecret::expose_secret(s).trim().is_empty());
            // A stored refresh token may stand in for the configured one (checked at start).
            let stored = key == "partner_token.refresh_token"
                && self.partner_token.refresh_token_file.is_some();
            let public = key == "partner_token.client_secret"
                && self.partner_token.client_type == ClientType::Public;
            if !present && !stored && !public {
                return Err(E::invalid(key, "is required in production mode"));
            }
        }
        if self.store.path.is_none() && self.store.url.is_none() {
            return Err(E::invalid(
                "store.path",
                format!(
                    "(an SQLite file) or store.url ({}, PostgreSQL) is required in production mode",
                    env_name("store.url")
                ),
            ));
        }
        if self.caller_auth.issuers.is_empty() {
            return Err(E::invalid(
                "caller_auth.issuers",
                "must name at least one trusted issuer in production mode",
            ));
        }
        for (i, trusted) in self.caller_auth.issuers.iter().enumerate() {
            let (field, url) = match (&trusted.discovery_url, &trusted.jwks_url) {
                (Some(url), _) => ("discovery_url", url),
                (None, Some(url)) => ("jwks_url", url),
                (None, None) => continue,
            };
            // Keys fetched over plain http could be swapped by anyone on the path.
            if !is_https_or_loopback(url) {
                return Err(E::invalid(
                    format!("caller_auth.issuers[{i}].{field}"),
                    format!(
                        "must be an https URL in production (http only on loopback), not {url:?}"
                    ),
                ));
            }
        }
        for (key, url) in [
            ("partner_center.base_url", &self.partner_center.base_url),
            (
                "partner_token.authority_url",
                &self.partner_token.authority_url,
            ),
        ] {
            check_http_url(key, url)?;
        }
        Ok(())
    }

    fn validate_store_and_watch(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        if let Some(url) = &self.store.url {
            let url = secrecy::ExposeSecret::expose_secret(url);
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(E::invalid(
                    "store.url",
                    "must be a postgres:// URL (leave it unset for the embedded SQLite file)",
                ));
            }
        }
        if self.store.max_connections == 0 {
            return Err(E::invalid(
                "store.max_connections",
                "must be greater than 0",
            ));
        }
        let watch = &self.watch;
        if watch.schedule_secs.is_empty() || watch.schedule_secs.contains(&0) {
            return Err(E::invalid(
                "watch.schedule_secs",
                "must list at least one wait, each above 0 seconds",
            ));
        }
        if !(0.0..1.0).contains(&watch.jitter) {
            return Err(E::invalid("watch.jitter", "must be at least 0 and below 1"));
        }
        for (key, value) in [
            ("watch.max_days", watch.max_days),
            ("watch.polls_per_minute", u64::from(watch.polls_per_minute)),
            ("watch.tick_ms", watch.tick_ms),
            ("watch.lease_secs", watch.lease_secs),
            ("webhooks.timeout_ms", self.webhooks.timeout_ms),
            ("webhooks.retry_base_ms", self.webhooks.retry_base_ms),
            ("webhooks.tick_ms", self.webhooks.tick_ms),
            ("webhooks.lease_secs", self.webhooks.lease_secs),
        ] {
            if value == 0 {
                return Err(E::invalid(key, "must be greater than 0"));
            }
        }
        for (i, host) in self.webhooks.allowed_hosts.iter().enumerate() {
            let bare = host.strip_prefix("*.").unwrap_or(host);
            if bare.is_empty() || bare.contains(['*', '/', ':', '@']) || bare != bare.trim() {
                return Err(E::invalid(
                    format!("webhooks.allowed_hosts[{i}]"),
                    format!(
                        "must be a host name (hooks.contoso.com) or *.contoso.com, not {host:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Exact origins only: a wildcard would let any page call with its users' tokens.
    fn validate_cors(&self) -> Result<(), ConfigurationError> {
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            let key = format!("cors.allowed_origins[{i}]");
            let parsed = Url::parse(origin).map_err(|_| {
                ConfigurationError::invalid(
                    &key,
                    format!("must be an origin such as https://app.example.com, not {origin:?}"),
                )
            })?;
            let exact = matches!(parsed.scheme(), "http" | "https")
                && parsed.host().is_some()
                && parsed.path() == "/"
                && parsed.query().is_none()
                && parsed.fragment().is_none()
                && parsed.username().is_empty()
                && !origin.ends_with('/')
                && !origin.contains('*');
            if !exact {
                return Err(ConfigurationError::invalid(
                    key,
                    format!(
                        "must be an exact origin (scheme://host[:port], no path, no wildcard), not {origin:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_caller_auth(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        let auth = &self.caller_auth;
        let mut seen = std::collections::HashSet::new();
        for (i, trusted) in auth.issuers.iter().enumerate() {
            let key = |field: &str| format!("caller_auth.issuers[{i}].{field}");
            if trusted.issuer.trim().is_empty() {
                return Err(E::invalid(key("issuer"), "is required"));
            }
            if !seen.insert(trusted.issuer.as_str()) {
                return Err(E::invalid(
                    key("issuer"),
                    format!("names {:?} a second time", trusted.issuer),
                ));
            }
            if trusted.audiences.is_empty() || trusted.audiences.iter().any(|a| a.trim().is_empty())
            {
                return Err(E::invalid(
                    key("audiences"),
                    "must list at least one audience, none of them blank",
                ));
            }
            match (&trusted.discovery_url, &trusted.jwks_url) {
                (Some(url), None) => check_http_url(key("discovery_url"), url)?,
                (None, Some(url)) => check_http_url(key("jwks_url"), url)?,
                _ => {
                    return Err(E::invalid(
                        key("discovery_url"),
                        "or `jwks_url` is required, not both",
                    ));
                }
            }
            if trusted.algorithms.is_empty() {
                return Err(E::invalid(
                    key("algorithms"),
                    "must list at least one algorithm",
                ));
            }
            if let Some(symmetric) = trusted
                .algorithms
                .iter()
                .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            {
                return Err(E::invalid(
                    key("algorithms"),
                    format!("must hold only asymmetric algorithms, not {symmetric:?}"),
                ));
            }
        }
        for (key, rule) in [
            ("caller_auth.write", &auth.write),
            ("caller_auth.read", &auth.read),
        ] {
            if rule
                .roles
                .iter()
                .chain(&rule.scopes)
                .all(|r| r.trim().is_empty())
            {
                return Err(E::invalid(
                    key,
                    "must name at least one role or scope, or no caller could use the operation",
                ));
            }
        }
        for (key, value) in [
            ("caller_auth.jwks_ttl_secs", auth.jwks_ttl_secs),
            ("caller_auth.jwks_retry_secs", auth.jwks_retry_secs),
            // 0 would let every forged `kid` reach the identity provider.
            (
                "caller_auth.unknown_kid_refetch_secs",
                auth.unknown_kid_refetch_secs,
            ),
        ] {
            if value == 0 {
                return Err(E::invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

fn is_https_or_loopback(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            || match u.host() {
                Some(url::Host::Domain(name)) => name == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    })
}

fn check_http_url(key: impl Into<String>, url: &str) -> Result<(), ConfigurationError> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(ConfigurationError::invalid(
            key,
            format!("must be an http(s) URL, not {url:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_describe_a_loopback_sandbox() {
        let s = Settings::defaults().unwrap();
        assert_eq!(s.mode, Mode::Sandbox);
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        s.validate().unwrap();
    }

    #[test]
    fn production_names_the_first_missing_credential() {
        let mut s = Settings::defaults().unwrap();
        s.mode = Mode::Production;
        s.caller_auth.issuers = vec![TrustedIssuer::new(
            "https://issuer",
            "api://gateway",
            KeySource::Jwks("https://issuer/keys".into()),
        )];
        s.partner_token.tenant_id = "contoso.onmicrosoft.com".into();
        s.partner_token.client_id = "app".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("partner_token.client_secret"), "{err}");
        assert!(
            err.contains("PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn sandbox_refuses_a_public_address_unless_allowed() {
        let mut s = Settings::defaults().unwrap();
        s.server.listen = "0.0.0.0:8080".parse().unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("sandbox.allow_non_loopback"), "{err}");
        s.sandbox.allow_non_loopback = true;
        s.validate().unwrap();
    }

    fn one_issuer() -> TrustedIssuer {
        TrustedIssuer::new(
            "https://issuer",
            "api://gateway",
            KeySource::Jwks("https://issuer/keys".into()),
        )
    }

    #[test]
    fn symmetric_algorithms_are_refused() {
        let mut s = Settings::defaults().unwrap();
        let mut issuer = one_issuer();
        issuer.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
        s.caller_auth.issuers = vec![issuer];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("caller_auth.issuers[0].algorithms"), "{err}");
        assert!(
            err.contains("(env PARTNER_GATEWAY__CALLER_AUTH__ISSUERS)"),
            "{err}"
        );
    }

    #[test]
    fn an_issuer_needs_exactly_one_key_source_and_an_audience() {
        let mut s = Settings::defaults().unwrap();
        let mut both = one_issuer();
        both.discovery_url = Some("https://issuer/.well-known/openid-configuration".into());
        s.caller_auth.issuers = vec![both];
        assert!(s.validate().unwrap_err().to_string().contains("not both"));

        let mut no_audience = one_issuer();
        no_audience.audiences.clear();
        s.caller_auth.issuers = vec![no_audience];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("caller_auth.issuers[0].audiences"), "{err}");

        s.caller_auth.issuers = vec![one_issuer(), one_issuer()];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("caller_auth.issuers[1].issuer"), "{err}");
    }

    #[test]
    fn production_fetches_keys_over_https_or_from_loopback_only() {
        let mut s = Settings::defaults().unwrap();
        s.mode = Mode::Production;
        s.partner_token.tenant_id = "t".into();
        s.partner_token.client_id = "c".into();
        s.partner_token.client_secret = Some(SecretString::from("s"));
        s.partner_token.refresh_token = Some(SecretString::from("r"));
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("store.path") && err.contains("PARTNER_GATEWAY__STORE__URL"),
            "{err}"
        );
        s.store.path = Some("gateway.db".into());
        let with_keys_at = |url: &str| {
            TrustedIssuer::new("https://issuer", "api://gw", KeySource::Jwks(url.into()))
        };
        s.caller_auth.issuers = vec![with_keys_at("http://idp.example.com/keys")];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("caller_auth.issuers[0].jwks_url"), "{err}");
        for fine in ["https://idp.example.com/keys", "http://127.0.0.1:9000/keys"] {
            s.caller_auth.issuers = vec![with_keys_at(fine)];
            s.validate().unwrap();
        }
    }

    #[test]
    fn an_operation_nobody_may_call_is_refused() {
        let mut s = Settings::defaults().unwrap();
        s.caller_auth.write.roles.clear();
        s.caller_auth.write.scopes = vec![" ".into()];
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("caller_auth.write"), "{err}");
    }

    #[test]
    fn issuers_load_from_toml_and_from_one_json_variable() {
        let toml = r#"
            [[caller_auth.issuers]]
            issuer = "https://sts.windows.net/t/"
            audiences = ["api://gateway"]
            discovery_url = "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration"
            algorithms = ["RS256"]
        "#;
        let from_toml: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .add_source(File::from_str(toml, FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let issuer = &from_toml.caller_auth.issuers[0];
        assert_eq!(issuer.algorithms, vec![Algorithm::RS256]);
        assert_eq!(issuer.leeway_secs, 60);
        assert!(matches!(issuer.key_source(), Some(KeySource::Discovery(_))));

        let json = r#"[{"issuer": "https://a", "audiences": ["x"], "jwks_url": "https://a/keys"}]"#;
        let from_json: Settings = Config::builder()
            .add_source(File::from_str(DEFAULTS, FileFormat::Toml))
            .set_override("caller_auth.issuers", json)
            .unwrap()
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(from_json.caller_auth.issuers[0].issuer, "https://a");
        assert_eq!(
            from_json.caller_auth.issuers[0].algorithms,
            vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
        );
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut s = Settings::defaults().unwrap();
        s.partner_token.client_secret = Some(SecretString::from("s3cr3t-value"));
        s.partner_token.refresh_token = Some(SecretString::from("refresh-value"));
        let printed = format!("{s:?}");
        assert!(!printed.contains("s3cr3t-value") && !printed.contains("refresh-value"));
        assert_eq!(
            s.partner_token.client_secret.unwrap().expose_secret(),
            "s3cr3t-value"
        );
    }

    #[test]
    fn token_url_follows_the_endpoint_version() {
        let mut t = Settings::defaults().unwrap().partner_token;
        t.tenant_id = "contoso".into();
        assert_eq!(
            t.token_url(),
            "https://login.microsoftonline.com/contoso/oauth2/token"
        );
        t.endpoint = TokenEndpoint::V2;
        assert_eq!(
            t.token_url(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
    }
}
