use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{AUDIENCE, CUSTOMER, TestApp, WRITE_ROLE, assert_problem, spawn_app};

const BODY: &str = r#"{"qualification":"StateOwnedEntity"}"#;

async fn forbid_partner_center(app: &TestApp) {
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&app.partner_center)
        .await;
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
async fn bad_tokens_get_invalid_token_and_never_reach_partner_center() {
    let app = spawn_app().await;
    forbid_partner_center(&app).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let valid = app.writer_token();
    let (head, rest) = valid.split_once('.').unwrap();
    let cases = [
        ("garbage", "not.a.jwt".to_owned()),
        (
            "expired",
            app.token_with(
                &[WRITE_ROLE],
                json!({"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200}),
            ),
        ),
        (
            "not yet valid",
            app.token_with(&[WRITE_ROLE], json!({"nbf": now + 3600})),
        ),
        (
            "wrong audience",
            app.token_with(&[WRITE_ROLE], json!({"aud": "api://someone-else"})),
        ),
        (
            "wrong issuer",
            app.token_with(&[WRITE_ROLE], json!({"iss": "https://evil.example.test/"})),
        ),
        ("tampered", format!("{head}.{}", rest.replacen('e', "f", 1))),
        (
            "unsigned",
            format!(
                "{}.{}.",
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
                rest.split('.').next().unwrap()
            ),
        ),
    ];
    for (case, token) in cases {
        let (challenge, _) = rejected(&app, &token).await;
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{case}: {challenge}"
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
