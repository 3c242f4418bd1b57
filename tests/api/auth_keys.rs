//! Trusted issuers' keys: discovery, Entra's two issuers per tenant, rotation, outages.

use std::time::Duration;

use partner_gateway::configuration::{KeySource, TrustedIssuer};
use partner_gateway::sandbox::SigningKey;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::auth::serve_reads;
use crate::helpers::forbid_upstream_calls;
use crate::helpers::{
    READ_ROLE, TestApp, TestOptions, assert_problem, spawn_app_with, wait_until_ready,
};

const ENTRA_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const GATEWAY_APP_ID: &str = "5e1c6a43-2b5d-4c38-9d2f-1f4a8d3c7b90";

/// Publishes `keys` at `/keys`; a later call with a lower `priority` number replaces the set
/// in one step (no moment without a JWKS for a background fetch to hit).
async fn serve_keys(server: &MockServer, keys: &[&SigningKey], priority: u8) {
    let jwks = json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
    serve_at_keys(
        server,
        ResponseTemplate::new(200).set_body_json(jwks),
        priority,
    )
    .await;
}

async fn serve_at_keys(server: &MockServer, response: ResponseTemplate, priority: u8) {
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(response)
        .with_priority(priority)
        .mount(server)
        .await;
}

/// An identity provider set up before the gateway starts fetching from it.
async fn identity_provider_with(
    response: ResponseTemplate,
    expected_fetches: Option<u64>,
) -> MockServer {
    let server = MockServer::start().await;
    let mock = Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(response);
    match expected_fetches {
        Some(n) => mock.expect(n).mount(&server).await,
        None => mock.mount(&server).await,
    }
    server
}

fn jwks_of(keys: &[serde_json::Value]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))
}

fn jwk(key: &SigningKey) -> serde_json::Value {
    serde_json::to_value(key.public_jwk()).unwrap()
}

async fn status_with(app: &TestApp, token: &str) -> u16 {
    app.get("/v1/validation-codes", Some(token))
        .await
        .status()
        .as_u16()
}

fn token_signed_by(key: &SigningKey) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    key.sign(&json!({
        "iss": crate::helpers::ISSUER, "aud": crate::helpers::AUDIENCE, "sub": "rotating-caller",
        "roles": [READ_ROLE], "iat": now, "nbf": now, "exp": now + 600,
    }))
    .unwrap()
}

/// A gateway whose identity provider publishes `keys` (not the app's own signer), ready.
async fn app_with_keys(ttl_secs: u64, keys: &[&SigningKey]) -> TestApp {
    let published: Vec<_> = keys.iter().map(|k| jwk(k)).collect();
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider_with(jwks_of(&published), None).await),
        configure: Some(Box::new(move |settings, _| {
            settings.caller_auth.jwks_ttl_secs = ttl_secs;
            settings.caller_auth.jwks_retry_secs = 1;
        })),
        ..Default::default()
    })
    .await;
    assert!(wait_until_ready(&app.url, Duration::from_secs(10)).await);
    serve_reads(&app).await;
    app
}

#[tokio::test]
async fn a_new_kid_is_fetched_on_first_sight_and_the_dropped_key_stops_working() {
    let old = SigningKey::generate("2026-old").unwrap();
    let new = SigningKey::generate("2026-new").unwrap();
    let app = app_with_keys(600, &[&old]).await;
    let old_token = token_signed_by(&old);
    assert_eq!(status_with(&app, &old_token).await, 200);

    // The identity provider rotates: the new key in, the old one out.
    serve_keys(&app.identity_provider, &[&new], 1).await;

    assert_eq!(status_with(&app, &token_signed_by(&new)).await, 200);
    // The refetch dropped the old key, so even the cached verification of the old token
    // no longer counts.
    let response = app.get("/v1/validation-codes", Some(&old_token)).await;
    assert_problem(response, 401, "invalid-token").await;
}

#[tokio::test]
async fn a_dropped_key_stops_working_after_the_ttl_without_any_new_kid_seen() {
    let old = SigningKey::generate("ttl-old").unwrap();
    let new = SigningKey::generate("ttl-new").unwrap();
    let app = app_with_keys(1, &[&old]).await;
    let old_token = token_signed_by(&old);
    assert_eq!(status_with(&app, &old_token).await, 200);

    serve_keys(&app.identity_provider, &[&new], 1).await;

    // The background refresh picks the change up one TTL later.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while status_with(&app, &old_token).await == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old-key token still accepted 10 s after its key left the JWKS (TTL 1 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_with(&app, &old_token).await, 401);
    assert_eq!(status_with(&app, &token_signed_by(&new)).await, 200);
}

#[tokio::test]
async fn keys_published_without_a_kid_are_each_tried() {
    let first = SigningKey::generate("unpublished-1").unwrap();
    let second = SigningKey::generate("unpublished-2").unwrap();
    let mut anonymous = [jwk(&first), jwk(&second)];
    for key in &mut anonymous {
        key.as_object_mut().unwrap().remove("kid");
    }
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider_with(jwks_of(&anonymous), None).await),
        ..Default::default()
    })
    .await;
    serve_reads(&app).await;
    let claims = json!({
        "iss": crate::helpers::ISSUER, "aud": crate::helpers::AUDIENCE, "sub": "no-kid",
        "roles": [READ_ROLE], "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 600,
    });
    // A token without a kid, and one naming a kid the set does not spell out.
    let without_kid = second
        .sign_with_header(&claims, |header| header.kid = None)
        .unwrap();
    let with_kid = second.sign(&claims).unwrap();
    assert_eq!(status_with(&app, &without_kid).await, 200);
    assert_eq!(status_with(&app, &with_kid).await, 200);
    // An expired token signed by the second key names the failed claim, not the first key's
    // signature mismatch.
    let expired = second
        .sign_with_header(
            &json!({
                "iss": crate::helpers::ISSUER, "aud": crate::helpers::AUDIENCE, "sub": "no-kid",
                "roles": [READ_ROLE], "exp": 1_000_000_000,
            }),
            |header| header.kid = None,
        )
        .unwrap();
    let response = app.get("/v1/validation-codes", Some(&expired)).await;
    let problem = assert_problem(response, 401, "invalid-token").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("token expired"),
        "{problem}"
    );
}

#[tokio::test]
async fn unusable_keys_in_the_set_do_not_hide_the_usable_ones() {
    let signer = SigningKey::generate("usable").unwrap();
    let published = [
        json!({"kty": "oct", "kid": "shared-secret", "k": "c2VjcmV0"}),
        json!({"kty": "RSA", "kid": "encryption", "use": "enc", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "future-type", "kid": "unknown"}),
        jwk(&signer),
    ];
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider_with(jwks_of(&published), None).await),
        signer: Some(signer),
        ..Default::default()
    })
    .await;
    serve_reads(&app).await;
    assert_eq!(status_with(&app, &app.reader_token()).await, 200);
}

#[tokio::test]
async fn the_last_good_keys_are_kept_when_a_refresh_fails() {
    let key = SigningKey::generate("kept").unwrap();
    let app = app_with_keys(1, &[&key]).await;
    let token = token_signed_by(&key);
    assert_eq!(status_with(&app, &token).await, 200);

    serve_at_keys(&app.identity_provider, ResponseTemplate::new(500), 1).await;
    // Wait for two failed refreshes (TTL 1 s, then a retry 1 s later), bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = app.identity_provider.received_requests().await.unwrap();
        if seen.len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refreshes did not happen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_with(&app, &token).await, 200);
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn the_unknown_kid_window_reopens() {
    let signer = SigningKey::generate("known").unwrap();
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider_with(signer_jwks(&signer), Some(3)).await),
        signer: Some(signer),
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.unknown_kid_refetch_secs = 1;
        })),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    assert!(wait_until_ready(&app.url, Duration::from_secs(10)).await);
    for round in 0..2 {
        let stranger = SigningKey::generate(format!("stranger-{round}")).unwrap();
        let response = app
            .get("/v1/validation-codes", Some(&token_signed_by(&stranger)))
            .await;
        assert_problem(response, 401, "invalid-token").await;
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
    }
    // The fetch at start and one refetch per window: three.
    app.identity_provider.verify().await;
}

fn signer_jwks(signer: &SigningKey) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(signer.jwks())
}

#[tokio::test]
async fn entra_v1_and_v2_issuers_of_one_tenant_share_one_discovered_key_set() {
    let entra_key = SigningKey::generate_rsa("entra-rs256").unwrap();
    let idp = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{ENTRA_TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": format!("https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"),
            "jwks_uri": format!("{}/{ENTRA_TENANT}/discovery/v2.0/keys", idp.uri()),
        })))
        .expect(1)
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/{ENTRA_TENANT}/discovery/v2.0/keys")))
        .respond_with(ResponseTemplate::new(200).set_body_json(entra_key.jwks()))
        .expect(1)
        .mount(&idp)
        .await;
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(idp),
        configure: Some(Box::new(|settings, idp| {
            let discovery = format!(
                "{}/{ENTRA_TENANT}/v2.0/.well-known/openid-configuration",
                idp.uri()
            );
            let audiences = vec![format!("api://{GATEWAY_APP_ID}"), GATEWAY_APP_ID.to_owned()];
            let mut v1 = TrustedIssuer::new(
                format!("https://sts.windows.net/{ENTRA_TENANT}/"),
                "",
                KeySource::Discovery(discovery.clone()),
            );
            v1.audiences = audiences.clone();
            let mut v2 = TrustedIssuer::new(
                format!("https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"),
                "",
                KeySource::Discovery(discovery),
            );
            v2.audiences = audiences;
            settings.caller_auth.issuers = vec![v1, v2];
        })),
        ..Default::default()
    })
    .await;
    serve_reads(&app).await;
    assert!(wait_until_ready(&app.url, Duration::from_secs(10)).await);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // A v1 token: sts.windows.net issuer, App ID URI audience, client in `appid`.
    let v1 = entra_key
        .sign(&json!({
            "iss": format!("https://sts.windows.net/{ENTRA_TENANT}/"),
            "aud": format!("api://{GATEWAY_APP_ID}"),
            "sub": "v1-subject", "oid": "v1-object", "appid": "v1-client", "ver": "1.0",
            "roles": [READ_ROLE], "iat": now, "nbf": now, "exp": now + 3600,
        }))
        .unwrap();
    // A v2 token: login.microsoftonline.com/…/v2.0 issuer, client ID audience, `azp`.
    let v2 = entra_key
        .sign(&json!({
            "iss": format!("https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0"),
            "aud": GATEWAY_APP_ID,
            "sub": "v2-subject", "oid": "v2-object", "azp": "v2-client", "ver": "2.0",
            "scp": "Qualifications.Read", "iat": now, "nbf": now, "exp": now + 3600,
        }))
        .unwrap();
    assert_eq!(status_with(&app, &v1).await, 200);
    assert_eq!(status_with(&app, &v2).await, 200);

    // The tenant's other issuer spellings are not trusted by accident.
    let foreign = entra_key
        .sign(&json!({
            "iss": format!("https://login.microsoftonline.com/{ENTRA_TENANT}/"),
            "aud": GATEWAY_APP_ID, "sub": "s", "roles": [READ_ROLE], "exp": now + 3600,
        }))
        .unwrap();
    assert_eq!(status_with(&app, &foreign).await, 401);
}

#[tokio::test]
async fn with_the_jwks_endpoint_down_at_start_callers_get_503_then_service_once_it_answers() {
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.jwks_retry_secs = 1;
        })),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    let token = app.writer_token();

    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body["checks"]["callerSigningKeys"][crate::helpers::ISSUER],
        "unavailable"
    );
    let response = app.get("/v1/validation-codes", Some(&token)).await;
    assert_problem(response, 503, "caller-keys-unavailable").await;

    crate::helpers::mount_jwks(&app.identity_provider, &app.signer).await;
    assert!(
        wait_until_ready(&app.url, Duration::from_secs(10)).await,
        "ready within 10 s of the JWKS answering (retry every 1 s)"
    );
    // The caller gets through now: a bad body is judged (400) without an upstream call.
    let response = app
        .post_qualification(crate::helpers::CUSTOMER, "{}", Some(&token))
        .await;
    assert_problem(response, 400, "invalid-request").await;
}

#[tokio::test]
async fn without_keys_a_failed_fetch_is_not_repeated_for_every_request() {
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider_with(ResponseTemplate::new(500), Some(1)).await),
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.jwks_retry_secs = 600;
        })),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    let token = app.reader_token();
    for _ in 0..5 {
        let response = app.get("/v1/validation-codes", Some(&token)).await;
        assert_problem(response, 503, "caller-keys-unavailable").await;
    }
    app.identity_provider.verify().await;
}

#[tokio::test]
async fn tokens_within_the_leeway_are_accepted() {
    let app = spawn_app_with(TestOptions::default()).await;
    serve_reads(&app).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // 60 s of leeway by default: 30 s either way is fine.
    for claims in [
        json!({"exp": now - 30, "iat": now - 630, "nbf": now - 630}),
        json!({"nbf": now + 30, "iat": now + 30}),
    ] {
        let token = app.token_with(&[READ_ROLE], claims.clone());
        assert_eq!(status_with(&app, &token).await, 200, "{claims}");
    }
}
