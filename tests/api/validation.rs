//! Every bad input gets its documented 4xx, and the server stays healthy.

use serde_json::json;

use crate::helpers::spawn_app;

async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status);
    problem
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_order_gets_its_documented_error_and_the_server_stays_healthy() {
    let app = spawn_app().await;
    let raw = |body: &'static str| {
        app.client.post(app.url("/orders")).header("content-type", "application/json").body(body).send()
    };
    let problem = expect_problem(raw("{\"customer\": \"kim\", \"items\": [").await.unwrap(), 400, "invalid_order").await;
    assert!(problem["detail"].as_str().unwrap().contains("body"));
    let problem = expect_problem(
        app.post_json("/orders", &json!({"items": [{"menu_id": "latte", "qty": 1}], "tip": 500})).await,
        400,
        "invalid_order",
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("tip"), "the detail names the field: {problem}");
    let problem = expect_problem(app.place(&[("mocha", 1)]).await, 400, "invalid_order").await;
    assert!(problem["detail"].as_str().unwrap().contains("items[0].menu_id"));
    expect_problem(app.place(&[("latte", 0)]).await, 400, "invalid_order").await;
    expect_problem(app.place(&[("latte", 21)]).await, 400, "invalid_order").await;
    expect_problem(app.place(&[("latte", 1); 21]).await, 400, "invalid_order").await;
    expect_problem(app.place(&[]).await, 400, "invalid_order").await;
    expect_problem(app.post_json("/orders", &json!({"items": [{"menu_id": "latte", "qty": -1}]})).await, 400, "invalid_order").await;

    let big = format!("{{\"customer\": \"{}\", \"items\": []}}", "x".repeat(65 * 1024));
    let response = app.client.post(app.url("/orders")).header("content-type", "application/json").body(big).send().await.unwrap();
    expect_problem(response, 413, "body_too_large").await;

    let response = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "text/plain")
        .body(crate::helpers::order_body(&[("latte", 1)]).to_string())
        .send()
        .await
        .unwrap();
    expect_problem(response, 415, "unsupported_media_type").await;

    let response = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .header("idempotency-key", "k".repeat(300))
        .body(crate::helpers::order_body(&[("latte", 1)]).to_string())
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 400, "invalid_order").await;
    assert!(problem["detail"].as_str().unwrap().contains("Idempotency-Key"));

    expect_problem(app.get("/no/such/path").await, 404, "not_found").await;
    expect_problem(app.client.delete(app.url("/menu")).send().await.unwrap(), 405, "method_not_allowed").await;

    // Nothing was charged for any of it, and ordering still works.
    assert_eq!(app.stats().await["payment"]["captured"], 0);
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.place_ok(&[("latte", 1)]).await;
    app.shutdown().await;
}
