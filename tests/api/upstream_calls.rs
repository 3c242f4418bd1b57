use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockBuilder, ResponseTemplate};

use crate::helpers::{CUSTOMER, TestApp, TestOptions, is_guid, spawn_app, spawn_app_with};
use partner_gateway::configuration::UpstreamContract;

const PC_TOKEN: &str = "pc-access-token-for-tests";

/// What every Partner Center call must carry.
fn partner_center_call(http_method: &str, url_path: String) -> MockBuilder {
    Mock::given(method(http_method))
        .and(path(url_path))
        .and(header(
            "Authorization",
            format!("Bearer {PC_TOKEN}").as_str(),
        ))
        .and(header("Accept", "application/json"))
        .and(header("MS-Contract-Version", "v1"))
        .and(header("X-Locale", "en-US"))
}

/// The MS-* headers Partner Center received, checked to be GUIDs.
async fn received_ids(app: &TestApp) -> Vec<(String, String)> {
    let requests = app.partner_center.received_requests().await.unwrap();
    requests
        .iter()
        .map(|r| {
            let correlation = r.headers["ms-correlationid"].to_str().unwrap().to_owned();
            let request = r.headers["ms-requestid"].to_str().unwrap().to_owned();
            assert!(
                is_guid(&correlation) && is_guid(&request),
                "{correlation} {request}"
            );
            (correlation, request)
        })
        .collect()
}

#[tokio::test]
async fn education_is_forwarded_in_the_current_contract_and_answered_202() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("POST", format!("/v1/customers/{CUSTOMER}/qualifications"))
        .and(body_json(json!({"qualification": "Education", "educationSegment": "K12", "website": "contoso.edu"})))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "qualification": "Education", "vettingStatus": "InReview", "vettingCreateDate": "2020-12-04T20:54:24Z"
        })))
        .expect(1)
        .mount(&app.partner_center)
        .await;

    let response = app
        .post_qualification(
            CUSTOMER,
            r#"{"qualification":"Education","educationSegment":"K12","website":"contoso.edu"}"#,
            Some(&app.writer_token()),
        )
        .await;

    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let correlation_header = response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert!(is_guid(body["id"].as_str().unwrap()), "{body}");
    assert_eq!(
        location,
        format!(
            "/v1/qualification-requests/{}",
            body["id"].as_str().unwrap()
        )
    );
    assert_eq!(body["customerId"], CUSTOMER);
    assert_eq!(body["qualification"], "Education");
    assert_eq!(body["vettingStatus"], "InReview");
    assert_eq!(body["vettingCreateDate"], "2020-12-04T20:54:24Z");
    let ids = received_ids(&app).await;
    assert_eq!(
        ids,
        [(
            correlation_header.clone(),
            body["requestId"].as_str().unwrap().to_owned()
        )]
    );
    assert_eq!(body["correlationId"], correlation_header);
}

async fn post_gcc(app: &TestApp) -> reqwest::Response {
    let body = r#"{"qualification":"GovernmentCommunityCloud","validationCode":"123456"}"#;
    app.post_qualification(CUSTOMER, body, Some(&app.writer_token()))
        .await
}

#[tokio::test]
async fn gcc_carries_the_code_in_the_body_in_the_current_contract() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("POST", format!("/v1/customers/{CUSTOMER}/qualifications"))
        .and(body_json(
            json!({"qualification": "GovernmentCommunityCloud", "validationCode": "123456"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "qualification": "GovernmentCommunityCloud", "vettingStatus": "Approved"
        })))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    assert_eq!(post_gcc(&app).await.status(), 202);
    let requests = app.partner_center.received_requests().await.unwrap();
    assert_eq!(
        requests[0].url.query(),
        None,
        "no ?code= in the current contract"
    );
}

#[tokio::test]
async fn gcc_carries_the_code_in_the_query_in_the_legacy_contract() {
    let app = spawn_app_with(TestOptions {
        contract: UpstreamContract::Legacy,
        ..Default::default()
    })
    .await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("POST", format!("/v1/customers/{CUSTOMER}/qualifications"))
        .and(query_param("code", "123456"))
        .and(body_json(
            json!({"qualification": "GovernmentCommunityCloud"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "qualification": "GovernmentCommunityCloud", "vettingStatus": "InReview"
        })))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    assert_eq!(post_gcc(&app).await.status(), 202);
}

#[tokio::test]
async fn state_owned_entity_without_vetting_fields_is_answered_without_them() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("POST", format!("/v1/customers/{CUSTOMER}/qualifications"))
        .and(body_json(json!({"qualification": "StateOwnedEntity"})))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"qualification": "StateOwnedEntity"})),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let response = app
        .post_qualification(
            CUSTOMER,
            r#"{"qualification":"StateOwnedEntity"}"#,
            Some(&app.writer_token()),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["qualification"], "StateOwnedEntity");
    assert!(body.get("vettingStatus").is_none(), "{body}");
}

#[tokio::test]
async fn the_list_accepts_both_shapes_and_both_date_spellings() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    let bare = "7d2456fd-2d79-46d0-9f8e-5d7ecd5f0001";
    let wrapped = "7d2456fd-2d79-46d0-9f8e-5d7ecd5f0002";
    partner_center_call("GET", format!("/v1/customers/{bare}/qualifications"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing("vettingCreatedDate")))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    partner_center_call("GET", format!("/v1/customers/{wrapped}/qualifications"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"qualifications": listing("vettingCreateDate")})),
        )
        .expect(1)
        .mount(&app.partner_center)
        .await;

    let token = app.reader_token();
    let mut answers = Vec::new();
    for customer in [bare, wrapped] {
        let response = app
            .get(
                &format!("/v1/customers/{customer}/qualifications"),
                Some(&token),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["customerId"], customer);
        answers.push(body["qualifications"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], listing("vettingCreateDate"));
}

/// A denied Education, a StateOwnedEntity without vetting and an unknown status,
/// with the vetting date under `date_key`.
fn listing(date_key: &str) -> Value {
    let mut denied = json!({"qualification": "Education", "vettingStatus": "Denied",
                            "vettingReason": "Not an Education Customer"});
    denied[date_key] = json!("2020-12-04T20:54:24Z");
    json!([
        denied,
        {"qualification": "StateOwnedEntity"},
        {"qualification": "Education", "vettingStatus": "Escalated"}
    ])
}

#[tokio::test]
async fn validation_codes_are_listed_from_the_partner_wide_endpoint() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("GET", "/v1/customers/all/validations".into())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "partnerId": "0c39d3b4-6a3e-4a8a-a3e7-1b8b0b2d1a11", "organizationName": "Contoso Government",
            "validationId": "123456", "maxCreates": 10, "remainingCreates": 9, "eTag": "abc"
        }])))
        .expect(1)
        .mount(&app.partner_center)
        .await;
    let response = app
        .get("/v1/validation-codes", Some(&app.reader_token()))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"validationCodes": [{
            "validationId": "123456", "partnerId": "0c39d3b4-6a3e-4a8a-a3e7-1b8b0b2d1a11",
            "organizationName": "Contoso Government", "maxCreates": 10, "remainingCreates": 9, "etag": "abc"
        }]})
    );
}

#[tokio::test]
async fn each_logical_call_gets_its_own_request_id_under_one_correlation_id() {
    let app = spawn_app().await;
    app.mount_token_endpoint(PC_TOKEN, 1).await;
    partner_center_call("GET", format!("/v1/customers/{CUSTOMER}/qualifications"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(2)
        .mount(&app.partner_center)
        .await;
    let correlation = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for _ in 0..2 {
        let response = app
            .get_request(
                &format!("/v1/customers/{CUSTOMER}/qualifications"),
                Some(&app.reader_token()),
            )
            .header("X-Correlation-ID", correlation)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let ids = received_ids(&app).await;
    assert!(ids.iter().all(|(c, _)| c == correlation), "{ids:?}");
    assert_ne!(ids[0].1, ids[1].1, "a new MS-RequestId per logical call");
}
