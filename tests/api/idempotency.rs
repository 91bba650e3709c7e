//! `Idempotency-Key`: replay, reuse with another body, in flight.

use std::time::Duration;

use crate::helpers::{order_body, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_replay_returns_the_same_order_and_charges_once() {
    let app = spawn_app().await;
    let body = order_body(&[("americano", 2)]);
    let first = app.place_with_key("order-42", &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();
    let again = app.place_with_key("order-42", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert!(again.headers()["location"].to_str().unwrap().ends_with(first["id"].as_str().unwrap()));
    let mut again: serde_json::Value = again.json().await.unwrap();
    let mut first = first;
    // `eta` is an estimate made when the answer is rendered; the rest is the original.
    again["eta"] = serde_json::Value::Null;
    first["eta"] = serde_json::Value::Null;
    assert_eq!(again, first, "the replay is the original body");
    assert_eq!(app.stats().await["payment"]["captured"], 1);
    assert_eq!(app.json("/orders?customer=kim").await["orders"].as_array().unwrap().len(), 1);

    let other = app.place_with_key("order-42", &order_body(&[("latte", 1)])).await;
    assert_eq!(other.status(), 422);
    assert_eq!(other.json::<serde_json::Value>().await.unwrap()["code"], "idempotency_key_reused");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_still_in_flight_is_refused_with_409() {
    let app = spawn_app_with(|settings| settings.payment.simulated.latency_ms = 400).await;
    let body = order_body(&[("latte", 1)]);
    let (first, second) = tokio::join!(app.place_with_key("slow-1", &body), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        app.place_with_key("slow-1", &body).await
    });
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 409);
    assert_eq!(second.json::<serde_json::Value>().await.unwrap()["code"], "request_in_flight");
    assert_eq!(app.stats().await["payment"]["captured"], 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_survives_a_restart() {
    let app = spawn_app().await;
    let body = order_body(&[("espresso", 1)]);
    let first: serde_json::Value = app.place_with_key("restart-1", &body).await.json().await.unwrap();
    let app = app.restart_with(|_| {}).await;
    let again = app.place_with_key("restart-1", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["id"], first["id"]);
    assert_eq!(app.stats().await["payment"]["captured"], 0, "the restarted engine charged nothing");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_201_carries_a_fresh_eta() {
    let app = spawn_app_with(|settings| settings.barista.mode = crema::config::StationMode::Manual).await;
    let body = order_body(&[("latte", 1)]);
    assert_eq!(app.place_with_key("eta-1", &body).await.status(), 201);
    // Waiting at a manual station: an estimate exists, and the replay has one (it once had null).
    let again: serde_json::Value = app.place_with_key("eta-1", &body).await.json().await.unwrap();
    assert!(again["eta"].is_string(), "{again}");
    app.shutdown().await;
}
