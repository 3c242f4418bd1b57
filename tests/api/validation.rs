use serde_json::Value;

use crate::helpers::{
    CUSTOMER, TestApp, assert_problem, forbid_upstream_calls, is_guid, spawn_app,
};

/// No test in this file may reach Partner Center or Entra.
async fn rejected_field(app: &TestApp, customer: &str, body: &str) -> Value {
    let token = app.writer_token();
    let response = app.post_qualification(customer, body, Some(&token)).await;
    assert_problem(response, 400, "invalid-request").await
}

#[tokio::test]
async fn each_invalid_request_names_its_field_and_calls_nothing_upstream() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let cases = [
        (CUSTOMER, "", "body"),
        (CUSTOMER, "not json", "body"),
        (CUSTOMER, "[]", "body"),
        (CUSTOMER, "{}", "qualification"),
        (
            CUSTOMER,
            r#"{"qualification":"Nonprofit"}"#,
            "qualification",
        ),
        (CUSTOMER, r#"{"qualification":"None"}"#, "qualification"),
        (CUSTOMER, r#"{"qualification":"Charity"}"#, "qualification"),
        (CUSTOMER, r#"{"qualification":true}"#, "qualification"),
        (
            CUSTOMER,
            r#"{"qualification":"Education"}"#,
            "educationSegment",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"Education","educationSegment":"Primary"}"#,
            "educationSegment",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"Education","educationSegment":"K12","website":"  "}"#,
            "website",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"GovernmentCommunityCloud"}"#,
            "validationCode",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"GovernmentCommunityCloud","validationCode":"12 34"}"#,
            "validationCode",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"StateOwnedEntity","validationCode":"123456"}"#,
            "validationCode",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"Education","educationSegment":"K12","validationCode":"1"}"#,
            "validationCode",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"StateOwnedEntity","educationSegment":"K12"}"#,
            "educationSegment",
        ),
        (
            CUSTOMER,
            r#"{"qualification":"StateOwnedEntity","colour":"blue"}"#,
            "colour",
        ),
        (
            "not-a-guid",
            r#"{"qualification":"StateOwnedEntity"}"#,
            "customerId",
        ),
        (
            "00000000-0000-0000-0000-000000000000",
            r#"{"qualification":"StateOwnedEntity"}"#,
            "customerId",
        ),
    ];
    for (customer, body, field) in cases {
        let problem = rejected_field(&app, customer, body).await;
        assert_eq!(problem["field"], field, "body {body:?}: {problem}");
        assert!(
            problem["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn nonprofit_is_explained_as_not_settable() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let problem = rejected_field(&app, CUSTOMER, r#"{"qualification":"Nonprofit"}"#).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be set"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_bad_path_and_a_bad_body_are_reported_together() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let problem = rejected_field(&app, "abc", r#"{"qualification":"Education"}"#).await;
    let fields = crate::helpers::fields_at_fault(&problem);
    assert_eq!(fields, ["customerId", "educationSegment"]);
}

#[tokio::test]
async fn the_list_endpoint_validates_the_customer_id() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let response = app
        .get(
            "/v1/customers/12345/qualifications",
            Some(&app.reader_token()),
        )
        .await;
    let problem = assert_problem(response, 400, "invalid-request").await;
    assert_eq!(problem["field"], "customerId");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let website = "a".repeat(20_000);
    let body = format!(
        r#"{{"qualification":"Education","educationSegment":"K12","website":"{website}"}}"#
    );
    let response = app
        .post_qualification(CUSTOMER, &body, Some(&app.writer_token()))
        .await;
    assert_problem(response, 413, "payload-too-large").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let response = app
        .http
        .post(format!(
            "{}/v1/customers/{CUSTOMER}/qualifications",
            app.url
        ))
        .bearer_auth(app.writer_token())
        .header("Content-Type", "text/plain")
        .body(r#"{"qualification":"StateOwnedEntity"}"#)
        .send()
        .await
        .unwrap();
    assert_problem(response, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn unknown_paths_get_a_problem_document() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    assert_problem(app.get("/v2/nothing-here", None).await, 404, "not-found").await;
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_a_405_with_allow() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let customer_path = format!("{}/v1/customers/{CUSTOMER}/qualifications", app.url);
    let cases = [
        (app.http.delete(&customer_path), "GET, POST, HEAD, OPTIONS"),
        (app.http.put(&customer_path), "GET, POST, HEAD, OPTIONS"),
        (
            app.http.post(format!("{}/v1/validation-codes", app.url)),
            "GET, HEAD, OPTIONS",
        ),
        (
            app.http.post(format!("{}/healthz", app.url)),
            "GET, HEAD, OPTIONS",
        ),
        (
            app.http.post(format!("{}/swagger-ui/index.html", app.url)),
            "GET, HEAD, OPTIONS",
        ),
    ];
    for (request, allow) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["allow"], allow);
        assert_problem(response, 405, "method-not-allowed").await;
    }
}

#[tokio::test]
async fn a_trailing_slash_is_another_path_not_another_method() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    for path in ["/healthz/", "/v1/validation-codes/"] {
        assert_problem(app.get(path, None).await, 404, "not-found").await;
    }
}

#[tokio::test]
async fn options_on_a_known_path_lists_its_methods() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let options = |path: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.url))
            .send()
    };
    let response = options(&format!("/v1/customers/{CUSTOMER}/qualifications"))
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["allow"], "GET, POST, HEAD, OPTIONS");
    assert!(response.headers().contains_key("x-correlation-id"));
    let swagger_ui = options("/swagger-ui/").await.unwrap();
    assert_eq!(swagger_ui.status(), 204);
    assert_eq!(swagger_ui.headers()["allow"], "GET, HEAD, OPTIONS");
    assert_problem(options("/v2/nothing-here").await.unwrap(), 404, "not-found").await;
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let app = spawn_app().await;
    forbid_upstream_calls(&app).await;
    let head = |path: &str| app.http.head(format!("{}{path}", app.url)).send();

    let health = head("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["content-type"], "application/json");
    assert!(health.bytes().await.unwrap().is_empty());

    // The same guard as GET: no token, no answer.
    let protected = head("/v1/validation-codes").await.unwrap();
    assert_eq!(protected.status(), 401);
    assert_eq!(
        protected.headers()["www-authenticate"],
        "Bearer realm=\"partner-gateway\""
    );
    assert!(protected.bytes().await.unwrap().is_empty());
}

/// A slow `HEAD` with a `GET` pipelined behind it on one connection: the `HEAD`'s answer must
/// carry no body even though the connection has moved on to the `GET` (or the `GET`'s answer
/// would be read as the rest of the `HEAD`'s).
#[tokio::test]
async fn a_slow_head_with_a_pipelined_get_behind_it_sends_no_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app().await;
    app.mount_token_endpoint("pc-token", 1).await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([]))
                .set_delay(std::time::Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let host = app.url.trim_start_matches("http://");
    let token = app.reader_token();
    let requests = format!(
        "HEAD /v1/validation-codes HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    let mut connection = tokio::net::TcpStream::connect(host).await.unwrap();
    connection.write_all(requests.as_bytes()).await.unwrap();
    let mut answers = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connection.read_to_string(&mut answers),
    )
    .await
    .expect("both answers within 10 s")
    .unwrap();

    let (head_answer, rest) = answers.split_once("\r\n\r\n").unwrap();
    assert!(head_answer.starts_with("HTTP/1.1 200"), "{answers}");
    assert!(
        rest.starts_with("HTTP/1.1 200"),
        "the GET's answer follows the HEAD's headers at once: {answers}"
    );
    assert!(rest.ends_with(r#"{"status":"ok"}"#), "{answers}");
}

#[tokio::test]
async fn a_guid_correlation_id_from_the_caller_is_echoed() {
    let app = spawn_app().await;
    let mine = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let response = app
        .get_request("/healthz", None)
        .header("X-Correlation-ID", mine)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlation-id"], mine);
}

#[tokio::test]
async fn a_correlation_id_that_is_not_a_guid_is_replaced() {
    let app = spawn_app().await;
    let response = app
        .get_request("/healthz", None)
        .header("X-Correlation-ID", "my-trace-42")
        .send()
        .await
        .unwrap();
    let echoed = response.headers()["x-correlation-id"].to_str().unwrap();
    assert!(is_guid(echoed), "{echoed}");
}
