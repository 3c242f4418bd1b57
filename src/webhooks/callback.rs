//! Which callback URLs a subscription may name, checked when it is made and again, address by
//! address, when each delivery connects: https (unless allowed otherwise), an allowed host, and
//! public addresses only, so a caller cannot make the gateway reach into its own network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::configuration::WebhookSettings;
use crate::domain::FieldError;

/// Why a callback URL cannot be subscribed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackRefusal {
    /// Not a URL: a 400 with the request's other faults.
    Malformed(FieldError),
    /// A URL the gateway will not call (scheme, host, address): a 422.
    NotAllowed(FieldError),
}

impl CallbackRefusal {
    pub fn into_field_error(self) -> FieldError {
        match self {
            Self::Malformed(e) | Self::NotAllowed(e) => e,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallbackPolicy {
    allowed_hosts: Vec<String>,
    allow_http: bool,
    allow_private_addresses: bool,
}

impl CallbackPolicy {
    pub fn new(settings: &WebhookSettings) -> Self {
        Self {
            allowed_hosts: settings
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allow_http: settings.allow_http,
            allow_private_addresses: settings.allow_private_addresses,
        }
    }

    /// A subscription's URL, or why not: not a URL at all, or one the policy refuses (each
    /// with the reason a caller can act on).
    pub async fn check(&self, raw: &str) -> Result<Url, CallbackRefusal> {
        let refuse = |message: String| CallbackRefusal::NotAllowed(FieldError::new("url", message));
        let url = Url::parse(raw).map_err(|e| {
            CallbackRefusal::Malformed(FieldError::new("url", format!("is not a URL: {e}")))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(refuse(format!("must be an https URL, not {other}:")));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("must not carry credentials".into()));
        }
        if url.fragment().is_some() {
            return Err(refuse("must not have a #fragment".into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| refuse("must name a host".into()))?
            .to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(refuse(format!(
                "names host {host:?}, which is not in the gateway's webhooks.allowed_hosts"
            )));
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
            Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
            _ => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| refuse(format!("names host {host:?}, which does not resolve")))?
                .map(|a| a.ip())
                .collect(),
        };
        if let Some(private) = addresses.iter().find(|ip| !self.address_allowed(**ip)) {
            return Err(refuse(format!(
                "resolves to {private}, a loopback, private or otherwise internal address"
            )));
        }
        Ok(url)
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => allowed == host,
            })
    }

    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.allow_private_addresses || is_public(ip)
    }

    /// The resolver deliveries connect through: a host that resolves to an internal address
    /// at delivery time (DNS rebinding) gets no connection.
    pub fn resolver(&self) -> Arc<dyn Resolve> {
        Arc::new(PublicOnly(self.clone()))
    }
}

struct PublicOnly(CallbackPolicy);

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| policy.address_allowed(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{} resolves to no allowed address", name.as_str()).into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Routable on the internet: not loopback, private, link-local, CGNAT, unique-local,
/// multicast, documentation or unspecified.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], allow_private: bool) -> CallbackPolicy {
        CallbackPolicy {
            allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
            allow_http: false,
            allow_private_addresses: allow_private,
        }
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["20.190.128.1", "8.8.8.8", "2603:1030::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn hosts_match_exactly_or_as_subdomains_of_a_wildcard() {
        let p = policy(&["hooks.contoso.com", "*.fabrikam.com"], false);
        assert!(p.host_allowed("hooks.contoso.com"));
        assert!(!p.host_allowed("evilhooks.contoso.com"));
        assert!(!p.host_allowed("contoso.com"));
        assert!(p.host_allowed("a.fabrikam.com"));
        assert!(p.host_allowed("a.b.fabrikam.com"));
        assert!(!p.host_allowed("fabrikam.com"));
        assert!(!p.host_allowed("evilfabrikam.com"));
    }

    #[tokio::test]
    async fn refuses_http_credentials_unlisted_hosts_and_internal_literals() {
        let p = policy(&["127.0.0.1", "hooks.contoso.com"], false);
        for (url, says) in [
            ("http://hooks.contoso.com/x", "https"),
            ("https://user:pw@hooks.contoso.com/x", "credentials"),
            ("https://other.example/x", "allowed_hosts"),
            ("https://127.0.0.1/x", "internal"),
            ("not a url", "not a URL"),
        ] {
            let refused = p.check(url).await.unwrap_err();
            assert_eq!(
                matches!(refused, CallbackRefusal::Malformed(_)),
                url == "not a url",
                "{url}"
            );
            let refused = refused.into_field_error();
            assert_eq!(refused.field, "url");
            assert!(refused.message.contains(says), "{url}: {}", refused.message);
        }
        let open = policy(&["127.0.0.1"], true);
        assert!(open.check("https://127.0.0.1:8443/hook").await.is_ok());
    }
}
