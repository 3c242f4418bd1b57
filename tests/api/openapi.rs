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
    let spec: Value = app.get("/openapi.json", None).await.json().await.unwrap();
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
