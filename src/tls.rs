//! The TLS set-up the gateway's outbound HTTP clients share (Entra and the JWKS, Partner
//! Center's client on each worker thread, webhook deliveries). Left to itself, reqwest reads
//! and parses the platform's root certificates for every client it builds: ~100 KB of heap
//! kept and ~2 ms per client. Clones of one `ClientConfig` share its verifier, roots and
//! session cache.

use std::sync::Arc;

use rustls_platform_verifier::BuilderVerifierExt;

/// What reqwest would build for itself: aws-lc-rs, TLS 1.2 and 1.3, the platform's roots,
/// SNI on, and HTTP/2 offered before HTTP/1.1 (reqwest leaves ALPN to a preconfigured set-up).
pub fn client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()
        .map_err(|error| anyhow::anyhow!("cannot load the platform's root certificates: {error}"))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A reqwest builder on a clone of `config`.
pub fn client_builder(config: &rustls::ClientConfig) -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(config.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_set_up_offers_http2_then_http1_with_sni_and_reqwest_takes_it() {
        let config = client_config().unwrap();
        assert_eq!(config.alpn_protocols, [&b"h2"[..], &b"http/1.1"[..]]);
        assert!(config.enable_sni);
        // reqwest refuses the set-up of a rustls other than its own ("unknown TLS backend").
        client_builder(&config).build().unwrap();
    }
}
