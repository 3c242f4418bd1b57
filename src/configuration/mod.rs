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
        key: &'static str,
        env: String,
        problem: String,
    },
}

impl ConfigurationError {
    fn invalid(key: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            env: env_name(key),
            problem: problem.into(),
        }
    }
}

/// `partner_token.client_secret` → `PARTNER_GATEWAY__PARTNER_TOKEN__CLIENT_SECRET`.
pub fn env_name(key: &str) -> String {
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
    pub sandbox: SandboxSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub workers: usize,
    pub max_body_bytes: usize,
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
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub leeway_secs: u64,
    pub jwks_ttl_secs: u64,
    pub algorithms: Vec<Algorithm>,
    pub write_roles: Vec<String>,
    pub read_roles: Vec<String>,
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

#[derive(Debug, Clone, Deserialize)]
pub struct PartnerTokenSettings {
    pub authority_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub endpoint: TokenEndpoint,
    pub resource: String,
    pub scope: String,
    pub expiry_margin_secs: u64,
}

impl PartnerTokenSettings {
    pub fn token_url(&self) -> String {
        let path = match self.endpoint {
            TokenEndpoint::V1 => "oauth2/token",
            TokenEndpoint::V2 => "oauth2/v2.0/token",
        };
        format!(
            "{}/{}/{path}",
            self.authority_url.trim_end_matches('/'),
            self.tenant_id
        )
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSettings {
    pub approval_delay_ms: u64,
    pub allow_non_loopback: bool,
    pub caller_token_ttl_secs: u64,
}

impl Settings {
    /// Loads and checks the settings; a bad or missing one fails here, named, not at first use.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigurationError> {
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
                    .with_list_parse_key("caller_auth.algorithms")
                    .with_list_parse_key("caller_auth.write_roles")
                    .with_list_parse_key("caller_auth.read_roles"),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
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
        if self.caller_auth.algorithms.is_empty() {
            return Err(E::invalid(
                "caller_auth.algorithms",
                "must list at least one algorithm",
            ));
        }
        if let Some(symmetric) = self
            .caller_auth
            .algorithms
            .iter()
            .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(E::invalid(
                "caller_auth.algorithms",
                format!("must hold only asymmetric algorithms, not {symmetric:?}"),
            ));
        }
        if self.caller_auth.audience.trim().is_empty() {
            return Err(E::invalid("caller_auth.audience", "is required"));
        }
        for (key, value) in [
            (
                "partner_center.connect_timeout_ms",
                self.partner_center.connect_timeout_ms,
            ),
            (
                "partner_center.request_timeout_ms",
                self.partner_center.request_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(E::invalid(key, "must be greater than 0"));
            }
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

    fn validate_production(&self) -> Result<(), ConfigurationError> {
        use ConfigurationError as E;
        let required_in_production = [
            ("caller_auth.issuer", self.caller_auth.issuer.as_str()),
            ("caller_auth.jwks_url", self.caller_auth.jwks_url.as_str()),
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
            if !present {
                return Err(E::invalid(key, "is required in production mode"));
            }
        }
        for (key, url) in [
            ("caller_auth.jwks_url", &self.caller_auth.jwks_url),
            ("partner_center.base_url", &self.partner_center.base_url),
            (
                "partner_token.authority_url",
                &self.partner_token.authority_url,
            ),
        ] {
            match Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(E::invalid(
                        key,
                        format!("must be an http(s) URL, not {url:?}"),
                    ));
                }
            }
        }
        Ok(())
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
        s.caller_auth.issuer = "https://issuer".into();
        s.caller_auth.jwks_url = "https://issuer/keys".into();
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

    #[test]
    fn symmetric_algorithms_are_refused() {
        let mut s = Settings::defaults().unwrap();
        s.caller_auth.algorithms = vec![Algorithm::HS256];
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("caller_auth.algorithms")
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
