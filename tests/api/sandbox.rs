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

/// What the issue's person does in Swagger UI: POST Education with a sandbox token, then see a
/// signed `qualification.approved` arrive at the sandbox's own receiver, nothing else running.
#[tokio::test]
async fn an_education_post_ends_in_a_signed_approval_at_the_sandbox_receiver() {
    let (url, http) = crate::helpers::spawn_sandbox_with(300, |settings| {
        settings.sandbox.watch_schedule_secs = vec![1];
        settings.watch.tick_ms = 50;
        settings.webhooks.tick_ms = 50;
    })
    .await;
    let token = crate::helpers::sandbox_caller_token(&http, &url, serde_json::json!({})).await;
    let customer = uuid::Uuid::new_v4();
    let posted = http
        .post(format!("{url}/v1/customers/{customer}/qualifications"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let id = posted.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let arrived = crate::helpers::eventually(std::time::Duration::from_secs(20), || async {
        let seen: Value = http
            .get(format!("{url}/sandbox/webhook-receiver"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen["notifications"].as_array().and_then(|n| {
            n.iter()
                .find(|n| n["body"]["data"]["requestId"] == id.as_str())
                .cloned()
        })
    })
    .await
    .expect("a notification arrives");
    assert_eq!(arrived["eventType"], "qualification.approved");
    assert_eq!(arrived["signature"], "valid", "{arrived}");
    assert!(arrived["subscriptionId"].is_string());
    let record: Value = http
        .get(format!("{url}/v1/qualification-requests/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "Approved", "{record}");

    // A notification signed with another secret is shown as such.
    let forged = http
        .post(format!("{url}/sandbox/webhook-receiver"))
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
        )
        .header(
            "webhook-signature",
            "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .body(r#"{"type":"qualification.approved"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 204);
    let seen: Value = http
        .get(format!("{url}/sandbox/webhook-receiver"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["notifications"][0]["webhookId"], "msg_forged");
    assert_eq!(seen["notifications"][0]["signature"], "bad-signature");
}
