use std::time::Duration;

use crate::helpers::{TestOptions, spawn_app, spawn_app_with, wait_until_ready};

#[tokio::test]
async fn healthz_answers_without_dependencies() {
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        ..Default::default()
    })
    .await;
    let response = app.get("/healthz", None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-correlation-id"));
}

#[tokio::test]
async fn readyz_is_ok_once_the_callers_keys_are_held() {
    let app = spawn_app().await;
    assert!(wait_until_ready(&app.url, Duration::from_secs(10)).await);
    let body: serde_json::Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["checks"]["callerSigningKeys"][crate::helpers::ISSUER],
        "ok"
    );
}
