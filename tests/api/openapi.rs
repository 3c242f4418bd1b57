use serde_json::Value;

use crate::helpers::spawn_app;

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let generated = partner_gateway::routes::openapi_document()
        .to_pretty_json()
        .unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json exists");
    assert!(
        generated.trim() == committed.trim(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_spec_is_served_with_the_three_operations_and_bearer_auth() {
    let app = spawn_app().await;
    let served = app.get("/openapi.json", None).await;
    assert_eq!(served.headers()["content-type"], "application/json");
    let spec: Value = served.json().await.unwrap();
    // Serialised once at start, from the same registration as the committed document.
    assert_eq!(
        spec,
        serde_json::to_value(partner_gateway::routes::openapi_document()).unwrap()
    );
    assert_eq!(spec["info"]["version"], "1");
    let qualifications = &spec["paths"]["/v1/customers/{customerId}/qualifications"];
    assert!(qualifications["post"].is_object() && qualifications["get"].is_object());
    assert!(spec["paths"]["/v1/validation-codes"]["get"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        qualifications["post"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    assert!(
        spec["paths"]["/sandbox/caller-token"].is_null(),
        "sandbox routes only in sandbox mode"
    );
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let redirect = app.get("/swagger-ui", None).await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/swagger-ui/");
    let page = app.get("/swagger-ui/", None).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let bundle = app.get("/swagger-ui/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status(), 200);
    let config = app
        .get("/swagger-ui/swagger-initializer.js", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(config.contains("/openapi.json"), "{config}");
}

#[test]
fn every_answer_is_documented_with_its_headers_and_an_example() {
    for sandbox in [false, true] {
        let served = partner_gateway::routes::served_document(sandbox);
        assert_conventions(&serde_json::to_value(&served).unwrap());
    }
    let spec = serde_json::to_value(partner_gateway::routes::openapi_document()).unwrap();
    let body = &spec["components"]["schemas"]["EducationQualificationRequest"];
    assert_eq!(body["additionalProperties"], false);
    let post = &spec["paths"]["/v1/customers/{customerId}/qualifications"]["post"];
    assert!(
        post["responses"]["202"]["headers"]
            .get("Location")
            .is_some()
    );
    // A 400 example is one the operation can answer.
    let codes_400 = &spec["paths"]["/v1/validation-codes"]["get"]["responses"]["400"];
    assert_eq!(
        codes_400["content"]["application/problem+json"]["example"]["type"],
        "urn:partner-gateway:problem:invalid-auth-request"
    );
    let sandbox = serde_json::to_value(partner_gateway::routes::served_document(true)).unwrap();
    let token_400 = &sandbox["paths"]["/sandbox/caller-token"]["post"]["responses"]["400"];
    assert_eq!(
        token_400["content"]["application/problem+json"]["example"]["type"],
        "urn:partner-gateway:problem:invalid-request"
    );
}

/// Each answer documents the headers the code sends with it, and no others.
fn assert_conventions(spec: &Value) {
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security").is_some();
            assert_eq!(
                secured,
                path.starts_with("/v1/"),
                "{method} {path}: bearer on /v1 only"
            );
            let takes_idempotency_key = operation["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "Idempotency-Key"));
            assert_eq!(
                takes_idempotency_key,
                method == "post" && path == "/v1/customers/{customerId}/qualifications",
                "{method} {path}: Idempotency-Key"
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                let at = format!("{method} {path} {status}");
                let has = |header: &str| response["headers"].get(header).is_some();
                assert!(has("X-Correlation-ID"), "{at}: X-Correlation-ID");
                // Only what the code can send: /readyz's 503 carries no Retry-After.
                assert_eq!(
                    has("Retry-After"),
                    secured && ["429", "502", "503"].contains(&status.as_str()),
                    "{at}: Retry-After"
                );
                assert_eq!(
                    has("WWW-Authenticate"),
                    secured && ["400", "401", "403"].contains(&status.as_str()),
                    "{at}: WWW-Authenticate"
                );
                let replayable = ["202", "403", "404", "409", "422", "default"];
                assert_eq!(
                    has("Idempotent-Replayed"),
                    takes_idempotency_key && replayable.contains(&status.as_str()),
                    "{at}: Idempotent-Replayed"
                );
                if let Some(problem) = response["content"].get("application/problem+json") {
                    let example = &problem["example"];
                    assert!(example.is_object(), "{at}: an example problem");
                    if status != "default" {
                        assert_eq!(example["status"].to_string(), *status, "{at}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_notifications_are_described_as_openapi_webhooks() {
    let spec = serde_json::to_value(partner_gateway::routes::openapi_document()).unwrap();
    let events: Vec<&String> = spec["webhooks"].as_object().unwrap().keys().collect();
    assert_eq!(
        events,
        [
            "qualification.approved",
            "qualification.denied",
            "qualification.expired-watch"
        ]
    );
    let approved = &spec["webhooks"]["qualification.approved"]["post"];
    let headers: Vec<&str> = approved["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    );
    let schema = approved["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = schema.rsplit('/').next().unwrap();
    let event = &spec["components"]["schemas"][name];
    assert_eq!(
        event["required"],
        serde_json::json!(["type", "timestamp", "data"]),
        "{event}"
    );
    // The subscription and delivery operations sit beside them.
    for path in [
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhook-deliveries",
        "/v1/webhook-deliveries/{id}/redeliver",
        "/v1/qualification-requests",
        "/v1/qualification-requests/{id}",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path}");
    }
}
