//! The attack suite: every forged, stale or misaddressed token is refused with the RFC 6750
//! challenge naming the failed check, and neither Partner Center nor Entra hears of it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use partner_gateway::sandbox::SigningKey;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    CUSTOMER, ISSUER, READ_ROLE, TestApp, TestOptions, WRITE_ROLE, assert_problem,
    forbid_upstream_calls, spawn_app, spawn_app_with,
};

const BODY: &str = r#"{"qualification":"StateOwnedEntity"}"#;

/// Partner Center and Entra answer reads, for tests where the caller gets through.
pub async fn serve_reads(app: &TestApp) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_type": "Bearer", "access_token": "pc-token", "expires_in": 3600,
        })))
        .mount(&app.entra)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&app.partner_center)
        .await;
}

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .expect("a WWW-Authenticate challenge")
        .to_str()
        .unwrap()
        .to_owned()
}

/// POSTs with `token` and asserts the 401 `invalid_token` answer names `reason`.
async fn assert_invalid_token(app: &TestApp, token: &str, reason: &str) {
    let response = app.post_qualification(CUSTOMER, BODY, Some(token)).await;
    let challenge = challenge(&response);
    assert_eq!(
        challenge,
        format!(
            r#"Bearer realm="partner-gateway", error="invalid_token", error_description="{reason}""#
        )
    );
    let problem = assert_problem(response, 401, "invalid-token").await;
    assert!(
        problem["detail"].as_str().unwrap().contains(reason),
        "{problem}"
    );
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn segments(token: &str) -> [String; 3] {
    let parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts.try_into().expect("three segments")
}

fn decode_segment(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// One attack, one test: a fresh gateway that must refuse the token without an upstream call.
macro_rules! refused {
    ($name:ident, $reason:expr, |$app:ident| $token:expr) => {
        #[tokio::test]
        async fn $name() {
            let $app = spawn_app().await;
            forbid_upstream_calls(&$app).await;
            let token: String = $token;
            assert_invalid_token(&$app, &token, $reason).await;
        }
    };
}

refused!(alg_none_is_refused, "algorithm not allowed", |app| {
    let [_, payload, _] = segments(&app.writer_token());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{payload}.")
});

refused!(
    hs256_signed_with_the_issuers_public_key_is_refused,
    "algorithm not allowed",
    |app| {
        // Algorithm confusion: the attacker uses the published public key as an HMAC secret.
        let public_key = serde_json::to_vec(&app.signer.public_jwk()).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(app.signer.kid().to_owned());
        let [_, payload, _] = segments(&app.writer_token());
        jsonwebtoken::encode(
            &header,
            &decode_segment(&payload),
            &EncodingKey::from_secret(&public_key),
        )
        .unwrap()
    }
);

refused!(an_expired_token_is_refused, "token expired", |app| {
    app.token_with(
        &[WRITE_ROLE],
        json!({"exp": now() - 120, "iat": now() - 3720, "nbf": now() - 3720}),
    )
});

refused!(
    a_token_not_valid_until_after_the_leeway_is_refused,
    "token not yet valid",
    |app| app.token_with(&[WRITE_ROLE], json!({"nbf": now() + 120}))
);

refused!(
    a_token_issued_in_the_future_is_refused,
    "token issued in the future",
    |app| app.token_with(&[WRITE_ROLE], json!({"iat": now() + 3600}))
);

refused!(a_foreign_issuer_is_refused, "issuer not trusted", |app| {
    app.token_with(&[WRITE_ROLE], json!({"iss": "https://evil.example.test/"}))
});

refused!(
    a_foreign_audience_is_refused,
    "audience not accepted",
    |app| { app.token_with(&[WRITE_ROLE], json!({"aud": "api://someone-else"})) }
);

refused!(
    a_token_without_exp_is_refused,
    "required claim missing",
    |app| app.token_with(&[WRITE_ROLE], json!({"exp": null}))
);

refused!(
    a_token_without_iss_is_refused,
    "required claim missing",
    |app| app.token_with(&[WRITE_ROLE], json!({"iss": null}))
);

refused!(
    a_token_without_aud_is_refused,
    "required claim missing",
    |app| app.token_with(&[WRITE_ROLE], json!({"aud": null}))
);

refused!(
    a_token_without_sub_is_refused,
    "required claim missing",
    |app| app.token_with(&[WRITE_ROLE], json!({"sub": null}))
);

refused!(a_tampered_payload_is_refused, "signature invalid", |app| {
    let [header, payload, signature] = segments(&app.reader_token());
    let mut claims = decode_segment(&payload);
    claims["roles"] = json!([WRITE_ROLE]);
    let forged = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{forged}.{signature}")
});

refused!(
    a_tampered_signature_is_refused,
    "signature invalid",
    |app| {
        let [header, payload, signature] = segments(&app.writer_token());
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 0x01;
        format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(bytes))
    }
);

refused!(
    a_token_signed_by_an_impostor_with_the_same_kid_is_refused,
    "signature invalid",
    |app| {
        let impostor = SigningKey::generate(app.signer.kid()).unwrap();
        let [_, payload, _] = segments(&app.writer_token());
        impostor.sign(&decode_segment(&payload)).unwrap()
    }
);

refused!(a_truncated_token_is_refused, "malformed token", |app| {
    let token = app.writer_token();
    let [header, payload, _] = segments(&token);
    format!("{header}.{}", &payload[..payload.len() / 2])
});

refused!(
    a_token_without_a_signature_segment_is_refused,
    "malformed token",
    |app| {
        let [header, payload, _] = segments(&app.writer_token());
        format!("{header}.{payload}")
    }
);

refused!(a_non_base64_token_is_refused, "malformed token", |_app| {
    "!!!.@@@.###".to_owned()
});

refused!(
    an_oversized_token_is_refused_before_parsing,
    "token too large",
    |_app| {
        // Not even a JWT: only a size check that comes first can name this "too large".
        "x".repeat(partner_gateway::auth::MAX_TOKEN_BYTES + 1)
    }
);

#[tokio::test]
async fn an_unknown_kid_causes_exactly_one_refetch_within_the_window() {
    let signer = SigningKey::generate("the-known-key").unwrap();
    let identity_provider = wiremock::MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(signer.jwks()))
        // The fetch at start, then one refetch for the first unknown kid: no more.
        .expect(2)
        .mount(&identity_provider)
        .await;
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        identity_provider: Some(identity_provider),
        signer: Some(signer),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    assert!(crate::helpers::wait_until_ready(&app.url, std::time::Duration::from_secs(10)).await);

    let [_, payload, _] = segments(&app.writer_token());
    for attempt in 0..3 {
        let stranger = SigningKey::generate(format!("unknown-{attempt}")).unwrap();
        let token = stranger.sign(&decode_segment(&payload)).unwrap();
        assert_invalid_token(&app, &token, "unknown signing key").await;
    }
    app.identity_provider.verify().await;
}

#[tokio::test]
async fn a_missing_token_gets_a_bare_challenge() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let response = app.post_qualification(CUSTOMER, BODY, None).await;
    assert_eq!(challenge(&response), r#"Bearer realm="partner-gateway""#);
    assert_problem(response, 401, "unauthenticated").await;
}

#[tokio::test]
async fn another_scheme_counts_as_no_token() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let response = app
        .http
        .get(format!("{}/v1/validation-codes", app.url))
        .header("Authorization", "Basic dXNlcjpwYXNz")
        .send()
        .await
        .unwrap();
    // RFC 6750 §3.1: an unsupported method gets the challenge without an error code.
    assert_eq!(challenge(&response), r#"Bearer realm="partner-gateway""#);
    assert_problem(response, 401, "unauthenticated").await;
}

#[tokio::test]
async fn two_authorization_headers_are_an_invalid_request() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let token = app.reader_token();
    let response = app
        .http
        .get(format!("{}/v1/validation-codes", app.url))
        .header("Authorization", format!("Bearer {token}"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="partner-gateway", error="invalid_request", error_description="more than one Authorization header""#
    );
    assert_problem(response, 400, "invalid-auth-request").await;
}

#[tokio::test]
async fn a_token_in_the_url_is_an_invalid_request() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let token = app.reader_token();
    let response = app
        .get(
            &format!("/v1/validation-codes?access_token={token}"),
            Some(&token),
        )
        .await;
    assert!(challenge(&response).contains(r#"error="invalid_request""#));
    assert_problem(response, 400, "invalid-auth-request").await;
    assert!(
        !crate::helpers::captured_logs().contains(&token),
        "a token in the URL never reaches the logs"
    );
}

#[tokio::test]
async fn a_valid_token_without_the_role_is_forbidden() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let response = app
        .post_qualification(CUSTOMER, BODY, Some(&app.reader_token()))
        .await;
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="partner-gateway", error="insufficient_scope", scope="Qualifications.ReadWrite""#
    );
    let problem = assert_problem(response, 403, "insufficient-scope").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Qualifications.ReadWrite")
    );
}

#[tokio::test]
async fn a_token_without_roles_or_scopes_cannot_read() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let token = app.token_with(&[], json!({"scp": "openid profile"}));
    let response = app.get("/v1/validation-codes", Some(&token)).await;
    assert!(challenge(&response).contains(r#"error="insufficient_scope""#));
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn a_scope_only_user_token_may_read_but_not_write() {
    let app = spawn_app().await;
    serve_reads(&app).await;
    let user = app.token_with(
        &[],
        json!({"scp": "openid Qualifications.Read", "oid": "user-object-id", "azp": null}),
    );
    let path = format!("/v1/customers/{CUSTOMER}/qualifications");
    assert_eq!(app.get(&path, Some(&user)).await.status(), 200);
    let response = app.post_qualification(CUSTOMER, BODY, Some(&user)).await;
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn a_scope_grants_write_as_a_role_does() {
    let app = spawn_app().await;
    serve_reads(&app).await;
    let user = app.token_with(&[], json!({"scp": "Qualifications.ReadWrite"}));
    // Validation runs after authorization: a 400 shows the caller got through.
    let response = app
        .post_qualification(CUSTOMER, r#"{"qualification":"Nope"}"#, Some(&user))
        .await;
    assert_problem(response, 400, "invalid-request").await;
}

#[tokio::test]
async fn a_role_name_in_scp_or_a_scope_name_in_roles_does_not_count_when_not_configured() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.read.roles = vec!["Reader.App".into()];
            settings.caller_auth.read.scopes = vec!["reader.user".into()];
        })),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    let crossed = app.token_with(&["reader.user"], json!({"scp": "Reader.App"}));
    let response = app.get("/v1/validation-codes", Some(&crossed)).await;
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn the_scheme_name_is_case_insensitive() {
    let app = spawn_app().await;
    serve_reads(&app).await;
    let response = app
        .http
        .get(format!("{}/v1/validation-codes", app.url))
        .header("Authorization", format!("bEaReR {}", app.reader_token()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_token_living_longer_than_allowed_is_refused() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.max_token_lifetime_secs = 3600;
        })),
        ..Default::default()
    })
    .await;
    forbid_upstream_calls(&app).await;
    let long_lived = app.token_with(&[WRITE_ROLE], json!({"exp": now() + 86_400}));
    assert_invalid_token(&app, &long_lived, "token lifetime too long").await;
}

#[tokio::test]
async fn only_allowed_client_applications_get_through() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.caller_auth.allowed_app_ids = vec!["trusted-app".into()];
        })),
        ..Default::default()
    })
    .await;
    serve_reads(&app).await;
    let stranger = app.token_with(&[READ_ROLE], json!({"azp": "caller-app"}));
    let response = app.get("/v1/validation-codes", Some(&stranger)).await;
    assert!(challenge(&response).contains(r#"error="insufficient_scope""#));
    assert_problem(response, 403, "app-not-allowed").await;

    // A v1 token names its client in `appid`.
    let trusted = app.token_with(&[READ_ROLE], json!({"azp": null, "appid": "trusted-app"}));
    assert_eq!(
        app.get("/v1/validation-codes", Some(&trusted))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_caller_is_on_the_request_span() {
    let app = spawn_app().await;
    serve_reads(&app).await;
    let subject = format!("oid-{}", uuid::Uuid::new_v4().simple());
    let token = app.token_with(
        &[READ_ROLE],
        json!({"oid": subject, "azp": "span-test-app", "name": "Ada Lovelace"}),
    );
    assert_eq!(
        app.get("/v1/validation-codes", Some(&token)).await.status(),
        200
    );
    let logs = crate::helpers::captured_logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&subject))
        .expect("a log line inside the request span names the caller");
    for field in [
        format!(r#""caller":"{subject}""#),
        r#""caller_app":"span-test-app""#.to_owned(),
        format!(r#""caller_issuer":"{ISSUER}""#),
        r#""caller_name":"Ada Lovelace""#.to_owned(),
    ] {
        assert!(line.contains(&field), "{field} in {line}");
    }
    assert!(!logs.contains(&token), "the token itself is never logged");
}

#[tokio::test]
async fn each_caller_has_its_own_rate_limit() {
    let app = spawn_app_with(TestOptions {
        configure: Some(Box::new(|settings, _| {
            settings.rate_limit.requests_per_minute = 2;
            settings.rate_limit.burst = 2;
        })),
        ..Default::default()
    })
    .await;
    serve_reads(&app).await;
    let busy = app.token_with(&[READ_ROLE], json!({"sub": "busy-service"}));
    for _ in 0..2 {
        assert_eq!(
            app.get("/v1/validation-codes", Some(&busy)).await.status(),
            200
        );
    }
    let limited = app.get("/v1/validation-codes", Some(&busy)).await;
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert_problem(limited, 429, "caller-rate-limited").await;
    // Partner Center heard only the admitted two.
    assert_eq!(
        app.partner_center.received_requests().await.unwrap().len(),
        2
    );

    let other = app.token_with(&[READ_ROLE], json!({"sub": "quiet-service"}));
    assert_eq!(
        app.get("/v1/validation-codes", Some(&other)).await.status(),
        200
    );
}

/// Issue #11, defect 3: RFC 7515 §4.1.11, a critical extension the gateway cannot honour.
#[tokio::test]
async fn a_token_with_a_crit_header_is_refused() {
    let app = spawn_app().await;
    crate::helpers::forbid_upstream_calls(&app).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = app
        .signer
        .sign_with_header(
            &json!({
                "iss": crate::helpers::ISSUER, "aud": crate::helpers::AUDIENCE, "sub": "s",
                "roles": [crate::helpers::READ_ROLE], "iat": now, "exp": now + 600, "b64": false,
            }),
            |header| header.crit = Some(vec!["b64".into()]),
        )
        .unwrap();
    let response = app.get("/v1/validation-codes", Some(&token)).await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("unsupported critical header"),
        "{challenge}"
    );
    crate::helpers::assert_problem(response, 401, "invalid-token").await;
}

/// Issue #11, defect 4: a blank `oid` does not stand in for a real `sub`.
#[tokio::test]
async fn a_blank_oid_does_not_hide_the_sub() {
    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&app.partner_center)
        .await;
    let token = app.token_with(
        &[crate::helpers::READ_ROLE],
        json!({"oid": "", "sub": "the-real-subject"}),
    );
    let correlation = uuid::Uuid::new_v4().to_string();
    let response = app
        .get_request("/v1/validation-codes", Some(&token))
        .header("X-Correlation-ID", &correlation)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let access = crate::helpers::log_lines(|l| {
        l["target"] == "access" && l["correlation_id"] == correlation.as_str()
    });
    assert_eq!(access[0]["caller"], "the-real-subject");
}

/// Issue #11, defect 4: no caller identity at all is refused, blank strings included.
#[tokio::test]
async fn a_token_without_a_non_blank_oid_or_sub_is_refused() {
    let app = spawn_app().await;
    crate::helpers::forbid_upstream_calls(&app).await;
    for claims in [
        json!({"sub": ""}),
        json!({"sub": "  ", "oid": ""}),
        json!({"sub": "", "oid": " "}),
    ] {
        let token = app.token_with(&[crate::helpers::READ_ROLE], claims.clone());
        let response = app.get("/v1/validation-codes", Some(&token)).await;
        let problem = crate::helpers::assert_problem(response, 401, "invalid-token").await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("required claim missing"),
            "{claims}: {problem}"
        );
    }
}

/// Issue #11, defect 5: `access_token` in the URL in any spelling, and never logged.
#[tokio::test]
async fn a_token_in_the_url_is_refused_in_any_spelling_and_never_logged() {
    let app = spawn_app().await;
    crate::helpers::forbid_upstream_calls(&app).await;
    for (query, secret) in [
        ("Access_Token=url-secret-one", "url-secret-one"),
        ("access%5Ftoken=url-secret-two", "url-secret-two"),
        ("x=1&ACCESS_TOKEN=url-secret-three", "url-secret-three"),
    ] {
        let response = app
            .get(&format!("/v1/validation-codes?{query}"), None)
            .await;
        crate::helpers::assert_problem(response, 400, "invalid-auth-request").await;
        assert!(
            !crate::helpers::captured_logs().contains(secret),
            "{query} stays out of the logs"
        );
    }
}
