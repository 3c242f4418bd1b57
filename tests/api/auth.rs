use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use partner_gateway::sandbox::SigningKey;
use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{AUDIENCE, CUSTOMER, TestApp, WRITE_ROLE, assert_problem, spawn_app};

const BODY: &str = r#"{"qualification":"StateOwnedEntity"}"#;

/// Neither upstream may be called: not Partner Center, and not Entra for its token.
async fn forbid_partner_center(app: &TestApp) {
    for server in [&app.partner_center, &app.entra] {
        Mock::given(any())
            .respond_with(ResponseTemplate::new(500))
            .expect(0)
            .mount(server)
            .await;
    }
}

async fn rejected(app: &TestApp, token: &str) -> (Option<String>, serde_json::Value) {
    let response = app.post_qualification(CUSTOMER, BODY, Some(token)).await;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        challenge,
        assert_problem(response, 401, "invalid-token").await,
    )
}

#[tokio::test]
async fn a_missing_token_gets_a_bare_bearer_challenge() {
    let app = spawn_app().await;
    forbid_partner_center(&app).await;
    let response = app.post_qualification(CUSTOMER, BODY, None).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Bearer realm="partner-gateway""#
    );
    assert_problem(response, 401, "unauthenticated").await;
}

#[tokio::test]
async fn bad_tokens_fail_the_check_they_are_named_after_and_never_reach_upstream() {
    let app = spawn_app().await;
    forbid_partner_center(&app).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let valid = app.writer_token();
    let [header, payload, signature]: [&str; 3] =
        valid.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut forged_signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    forged_signature[10] ^= 0x01;
    let impostor = SigningKey::generate(app.signer.kid()).unwrap();
    let impostor_token = impostor
        .sign(
            &serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(payload).unwrap())
                .unwrap(),
        )
        .unwrap();

    let cases = [
        ("not.a.jwt".to_owned(), "malformed token"),
        (
            app.token_with(
                &[WRITE_ROLE],
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            ),
            "token expired",
        ),
        (
            app.token_with(&[WRITE_ROLE], json!({"nbf": now + 3600})),
            "token not yet valid",
        ),
        (
            app.token_with(&[WRITE_ROLE], json!({"aud": "api://someone-else"})),
            "audience not accepted",
        ),
        (
            app.token_with(&[WRITE_ROLE], json!({"iss": "https://evil.example.test/"})),
            "issuer not trusted",
        ),
        (
            app.token_with(&[WRITE_ROLE], json!({"sub": null})),
            "required claim missing",
        ),
        (
            format!("{header}.{forged_payload}.{signature}"),
            "signature invalid",
        ),
        (
            format!(
                "{header}.{payload}.{}",
                URL_SAFE_NO_PAD.encode(forged_signature)
            ),
            "signature invalid",
        ),
        (impostor_token, "signature invalid"),
        // alg "none", no signature
        (
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
            "malformed token",
        ),
    ];
    for (token, reason) in cases {
        let (challenge, problem) = rejected(&app, &token).await;
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{reason}: {challenge}"
        );
        assert!(challenge.contains(reason), "{reason}: {challenge}");
        assert!(
            problem["detail"].as_str().unwrap().contains(reason),
            "{reason}: {problem}"
        );
    }
}

#[tokio::test]
async fn a_reader_cannot_write() {
    let app = spawn_app().await;
    forbid_partner_center(&app).await;
    let response = app
        .post_qualification(CUSTOMER, BODY, Some(&app.reader_token()))
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn a_token_without_roles_cannot_read() {
    let app = spawn_app().await;
    forbid_partner_center(&app).await;
    let token = app.token_with(&[], json!({}));
    let response = app.get("/v1/validation-codes", Some(&token)).await;
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn readers_and_delegated_scopes_may_read() {
    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/customers/{CUSTOMER}/qualifications")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(2)
        .mount(&app.partner_center)
        .await;
    let path = format!("/v1/customers/{CUSTOMER}/qualifications");
    assert_eq!(
        app.get(&path, Some(&app.reader_token())).await.status(),
        200
    );
    let user = app.token_with(
        &[],
        json!({"scp": "openid Qualifications.Read", "aud": AUDIENCE}),
    );
    assert_eq!(app.get(&path, Some(&user)).await.status(), 200);
}

#[tokio::test]
async fn the_scheme_is_case_insensitive_but_must_be_bearer() {
    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    Mock::given(method("GET"))
        .and(path("/v1/customers/all/validations"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let send = |value: String| {
        app.http
            .get(format!("{}/v1/validation-codes", app.url))
            .header("Authorization", value)
            .send()
    };
    assert_eq!(
        send(format!("bEaReR {}", app.reader_token()))
            .await
            .unwrap()
            .status(),
        200
    );
    let basic = send("Basic dXNlcjpwYXNz".into()).await.unwrap();
    assert_problem(basic, 401, "invalid-token").await;
}
