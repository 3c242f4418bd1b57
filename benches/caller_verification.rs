//! What a caller's token costs the gateway: a full RS256 verification (cold) against a
//! lookup in the verified-token cache (a repeat caller). Run: `cargo bench --bench caller_verification`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use partner_gateway::auth::CallerVerifier;
use partner_gateway::configuration::{KeySource, Settings, TrustedIssuer};
use partner_gateway::metrics::Metrics;
use partner_gateway::sandbox::SigningKey;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISSUER: &str = "https://login.example.test/tenant/v2.0";
const AUDIENCE: &str = "api://partner-gateway-bench";

fn verification(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let key = SigningKey::generate_rsa("bench-rs256").expect("RSA key");
    // A real JWKS endpoint on loopback, fetched once per verifier.
    let identity_provider = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/keys"))
            .respond_with(ResponseTemplate::new(200).set_body_json(key.jwks()))
            .mount(&server)
            .await;
        server
    });
    let verifier_with_cache = |size: u64| {
        let mut settings = Settings::defaults().expect("defaults").caller_auth;
        settings.issuers = vec![TrustedIssuer::new(
            ISSUER,
            AUDIENCE,
            KeySource::Jwks(format!("{}/keys", identity_provider.uri())),
        )];
        settings.verified_token_cache_size = size;
        CallerVerifier::new(reqwest::Client::new(), &settings, Metrics::unregistered())
    };
    let cold = verifier_with_cache(0);
    let cached = verifier_with_cache(10_000);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = key
        .sign(&json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "oid": "bench-oid",
            "azp": "bench-app", "roles": ["Qualifications.ReadWrite"],
            "iat": now, "nbf": now, "exp": now + 3600,
        }))
        .expect("token");
    runtime.block_on(async {
        cold.verify(&token).await.expect("cold verifier accepts");
        cached
            .verify(&token)
            .await
            .expect("cached verifier accepts");
    });

    let mut group = c.benchmark_group("caller_token_verification");
    group.bench_function("rs256_cold", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cold.verify(black_box(&token)).await.unwrap()) })
    });
    group.bench_function("rs256_cached", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(cached.verify(black_box(&token)).await.unwrap()) })
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
