use crate::helpers::{TestOptions, mount_jwks, spawn_app, spawn_app_with};

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
    let response = app.get("/readyz", None).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["callerSigningKeys"], "ok");
}

#[tokio::test]
async fn readyz_fails_while_the_jwks_endpoint_is_down_then_recovers() {
    let app = spawn_app_with(TestOptions {
        mount_jwks: false,
        ..Default::default()
    })
    .await;
    assert_eq!(app.get("/readyz", None).await.status(), 503);

    mount_jwks(&app.identity_provider, &app.signer).await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}
