//! The built-in sandbox, end to end, through the same client code as production.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_sandbox};

struct Sandbox {
    url: String,
    http: reqwest::Client,
    token: String,
}

impl Sandbox {
    async fn start(approval_delay_ms: u64) -> Self {
        let (url, http) = spawn_sandbox(approval_delay_ms).await;
        let token = caller_token(&http, &url, json!({})).await;
        Self { url, http, token }
    }

    async fn post(&self, customer: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/v1/customers/{customer}/qualifications",
                self.url
            ))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn qualifications(&self, customer: &str) -> Value {
        let response = self
            .http
            .get(format!(
                "{}/v1/customers/{customer}/qualifications",
                self.url
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["qualifications"].clone()
    }

    /// Polls until the first qualification leaves InReview; bounded in time.
    async fn settled_status(&self, customer: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let first = self.qualifications(customer).await[0].clone();
            if first["vettingStatus"] != "InReview" || Instant::now() > deadline {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

use crate::helpers::sandbox_caller_token as caller_token;

#[tokio::test]
async fn education_goes_in_review_then_approved() {
    let sandbox = Sandbox::start(300).await;
    let customer = "11111111-2222-4333-8444-555555555555";
    let response = sandbox
        .post(customer, json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"}))
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["vettingStatus"], "InReview");

    let listed = sandbox.qualifications(customer).await;
    assert_eq!(listed[0]["qualification"], "Education");
    assert_eq!(listed[0]["vettingStatus"], "InReview");

    assert_eq!(
        sandbox.settled_status(customer).await["vettingStatus"],
        "Approved"
    );
}

#[tokio::test]
async fn a_denied_website_is_denied_with_a_reason() {
    let sandbox = Sandbox::start(100).await;
    let customer = "11111111-2222-4333-8444-555555555556";
    let response = sandbox
        .post(customer, json!({"qualification": "Education", "educationSegment": "HigherEducation", "website": "denied.example"}))
        .await;
    assert_eq!(response.status(), 202);
    let settled = sandbox.settled_status(customer).await;
    assert_eq!(settled["vettingStatus"], "Denied");
    assert_eq!(settled["vettingReason"], "Not an Education Customer");
}

#[tokio::test]
async fn gcc_uses_up_a_validation_code() {
    let sandbox = Sandbox::start(100).await;
    let codes: Value = sandbox
        .http
        .get(format!("{}/v1/validation-codes", sandbox.url))
        .bearer_auth(&sandbox.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let single_use = codes["validationCodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["remainingCreates"] == 1)
        .expect("the sandbox has a single-use code");
    let code = single_use["validationId"].as_str().unwrap();

    let first = sandbox
        .post(
            "11111111-2222-4333-8444-555555555557",
            json!({"qualification": "GovernmentCommunityCloud", "validationCode": code}),
        )
        .await;
    assert_eq!(first.status(), 202);
    let second = sandbox
        .post(
            "11111111-2222-4333-8444-555555555558",
            json!({"qualification": "GovernmentCommunityCloud", "validationCode": code}),
        )
        .await;
    let problem = assert_problem(second, 422, "upstream-rejected").await;
    assert_eq!(problem["upstreamCode"], "600043");
}

#[tokio::test]
async fn state_owned_entity_has_no_vetting_and_cannot_be_requested_twice() {
    let sandbox = Sandbox::start(100).await;
    let customer = "11111111-2222-4333-8444-555555555559";
    let first = sandbox
        .post(customer, json!({"qualification": "StateOwnedEntity"}))
        .await;
    assert_eq!(first.status(), 202);
    let body: Value = first.json().await.unwrap();
    assert!(body.get("vettingStatus").is_none(), "{body}");
    let again = sandbox
        .post(customer, json!({"qualification": "StateOwnedEntity"}))
        .await;
    assert_problem(again, 409, "upstream-rejected").await;
}

#[tokio::test]
async fn simulated_failures_map_to_clear_errors() {
    let sandbox = Sandbox::start(100).await;
    let soe = json!({"qualification": "StateOwnedEntity"});
    assert_problem(
        sandbox
            .post("00000000-0000-0000-0000-000000000404", soe.clone())
            .await,
        404,
        "upstream-rejected",
    )
    .await;
    let throttled = sandbox
        .post("00000000-0000-0000-0000-000000000429", soe.clone())
        .await;
    assert_eq!(throttled.headers()["retry-after"], "120");
    assert_problem(throttled, 429, "upstream-throttled").await;
    assert_problem(
        sandbox
            .post("00000000-0000-0000-0000-000000000500", soe)
            .await,
        502,
        "upstream-error",
    )
    .await;
}

#[tokio::test]
async fn sandbox_tokens_carry_the_roles_asked_for() {
    let sandbox = Sandbox::start(100).await;
    let reader = caller_token(
        &sandbox.http,
        &sandbox.url,
        json!({"roles": ["Qualifications.Read"], "subject": "reader"}),
    )
    .await;
    let response = sandbox
        .http
        .post(format!(
            "{}/v1/customers/11111111-2222-4333-8444-555555555560/qualifications",
            sandbox.url
        ))
        .bearer_auth(reader)
        .json(&json!({"qualification": "StateOwnedEntity"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "insufficient-scope").await;
}

#[tokio::test]
async fn the_sandbox_is_ready_and_documents_its_token_endpoint() {
    let sandbox = Sandbox::start(100).await;
    assert!(crate::helpers::wait_until_ready(&sandbox.url, Duration::from_secs(10)).await);
    let spec: Value = sandbox
        .http
        .get(format!("{}/openapi.json", sandbox.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/sandbox/caller-token"]["post"].is_object());
}

#[tokio::test]
async fn a_wrong_method_on_a_sandbox_route_is_a_405_too() {
    let (url, http) = spawn_sandbox(100).await;
    let cases = [
        (
            http.head(format!("{url}/sandbox/caller-token")),
            "POST, OPTIONS",
        ),
        (
            http.post(format!("{url}/sandbox/keys")),
            "GET, HEAD, OPTIONS",
        ),
        (
            http.get(format!("{url}/sandbox/entra/some-tenant/oauth2/v2.0/token")),
            "POST, OPTIONS",
        ),
    ];
    for (request, allow) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], allow);
    }
}
