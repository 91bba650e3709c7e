//! Honest answers under faults: no answer to `POST /orders` says or implies
//! "not placed" for an order that is, or may still become, established.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{order_body, spawn_app_with, wait_until, TestApp};

/// Repeats `POST /orders` with `key` while the answer is 202 or 409
/// (outcome not known yet), as a client should; returns the final answer.
async fn place_until_final(app: &TestApp, key: &str, body: &Value) -> (u16, Value) {
    let outcome = wait_until(Duration::from_secs(20), || async {
        let response = app.place_with_key(key, body).await;
        let status = response.status().as_u16();
        let json: Value = response.json().await.unwrap();
        (!matches!(status, 202 | 409)).then_some((status, json))
    })
    .await;
    outcome.expect("a final answer within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_that_outlives_the_request_timeout_is_not_answered_as_failed() {
    // The generic request timeout (1 ms) must not cut a placement short: it
    // once answered 503 "try again" while the saga went on to charge.
    let app = spawn_app_with(|settings| {
        settings.server.request_timeout_ms = 1;
        settings.payment.simulated.latency_ms = 50;
    })
    .await;
    for n in 0..5 {
        let response = app.place_with_key(&format!("slow-{n}"), &order_body(&[("americano", 1)])).await;
        assert_eq!(response.status(), 201, "order {n}");
    }
    assert_eq!(app.stats().await["payment"]["captured"], 5);
    assert_eq!(app.json("/orders").await["orders"].as_array().unwrap().len(), 5);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_past_its_own_deadline_is_pending_and_a_retry_with_the_key_gets_the_order() {
    let app = spawn_app_with(|settings| {
        settings.orders.place_timeout_ms = 100;
        settings.payment.simulated.latency_ms = 700;
    })
    .await;
    let body = order_body(&[("latte", 1)]);
    let response = app.place_with_key("cart-1", &body).await;
    assert_eq!(response.status(), 202, "the outcome is not known yet");
    assert_eq!(response.headers()["retry-after"], "1");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let pending: Value = response.json().await.unwrap();
    assert_eq!(pending["code"], "placement_pending");
    assert_eq!(location, format!("/orders/{}", pending["order_id"].as_str().unwrap()));

    // While it is being placed, the order is neither found nor missing.
    let polled = app.get(&location).await;
    assert_eq!(polled.status(), 202);
    // The same key while the first is still running is not a second charge.
    let again = app.place_with_key("cart-1", &body).await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.json::<Value>().await.unwrap()["code"], "request_in_flight");

    let (status, order) = place_until_final(&app, "cart-1", &body).await;
    assert_eq!(status, 201);
    assert_eq!(format!("/orders/{}", order["id"].as_str().unwrap()), location, "the replay is the pending order");
    assert_eq!(app.get(&location).await.status(), 200);
    assert_eq!(app.stats().await["payment"]["captured"], 1, "charged once");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_placing_permit_is_held_until_the_placement_ends_not_until_the_answer() {
    let app = spawn_app_with(|settings| {
        settings.orders.place_timeout_ms = 100;
        settings.orders.max_placing = 1;
        settings.payment.simulated.latency_ms = 800;
    })
    .await;
    assert_eq!(app.place(&[("americano", 1)]).await.status(), 202);
    // The first placement still runs: max_placing = 1 is in use.
    assert_eq!(app.place(&[("americano", 1)]).await.status(), 429);
    let freed = wait_until(Duration::from_secs(5), || async {
        (app.place(&[("americano", 1)]).await.status() != 429).then_some(())
    })
    .await;
    assert!(freed.is_some(), "the permit comes back when the first placement ends");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_order_cannot_be_stored_is_refunded_at_once_and_reported_not_placed() {
    let app = spawn_app_with(|settings| settings.payment.simulated.latency_ms = 500).await;
    let slow = {
        let base = app.base.clone();
        tokio::spawn(async move {
            let body = order_body(&[("latte", 1)]).to_string();
            let response = crate::helpers::admin_client(30)
                .post(format!("{base}/orders"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        })
    };
    // The intent is written and the charge under way: the next write, the
    // order itself, fails as on a full disk.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.engine().journal.writer().inject_failures(1);
    let (status, problem) = slow.await.unwrap();
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["code"], "storage_unavailable");
    assert!(problem["detail"].as_str().unwrap().contains("the charge was refunded"), "{problem}");
    let stats = app.stats().await;
    assert_eq!(stats["payment"]["captured"], 1);
    assert_eq!(stats["payment"]["refunded"], 1, "refunded at once, not at the next start");
    assert!(app.json("/orders").await["orders"].as_array().unwrap().is_empty(), "no order was established");
    // The store comes back (the next write succeeds) and orders flow again.
    let ready = wait_until(Duration::from_secs(5), || async { (app.get("/readyz").await.status() == 200).then_some(()) }).await;
    assert!(ready.is_some());
    assert_eq!(app.place(&[("americano", 1)]).await.status(), 201);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_move_the_store_refuses_is_retried_so_the_order_still_becomes_ready() {
    let app = spawn_app_with(|settings| settings.barista.mode = crema::config::StationMode::Manual).await;
    let order = app.place_ok(&[("americano", 1)]).await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.station("bar-1", "next").await.status(), 200);
    app.wait_for(id, "brewing", Duration::from_secs(5)).await;
    app.engine().journal.writer().inject_failures(1);
    assert_eq!(app.station("bar-1", "done").await.status(), 200);
    app.wait_for(id, "ready", Duration::from_secs(10)).await;
    app.shutdown().await;
}
