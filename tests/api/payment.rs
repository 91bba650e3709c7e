//! The payment service as a real process (`crema payment-sim`): stopped,
//! slowed, and with crema killed while charges are in flight.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crema::config::GatewayKind;
use serde_json::{json, Value};

use crate::helpers::{free_port, orders_until_killed, spawn_app_with, wait_until, Process, TestApp};

async fn crema_against(payment_url: String, configure: impl FnOnce(&mut crema::config::Settings)) -> TestApp {
    spawn_app_with(move |settings| {
        settings.payment.gateway = GatewayKind::Http;
        settings.payment.url = payment_url;
        configure(settings);
    })
    .await
}

async fn ledger(client: &reqwest::Client, sim: &str, status: &str) -> Vec<Value> {
    let body: Value = client.get(format!("{sim}/payments?status={status}")).send().await.unwrap().json().await.unwrap();
    body["payments"].as_array().unwrap().clone()
}

async fn set_faults(client: &reqwest::Client, sim: &str, faults: Value) {
    let response = client.post(format!("{sim}/admin/faults")).json(&faults).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Places an order until it is accepted, waiting `Retry-After` between tries.
async fn place_until_accepted(app: &TestApp, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let response = app.place(&[("latte", 1)]).await;
        if response.status() == 201 {
            return response.json().await.unwrap();
        }
        assert_eq!(response.status(), 503, "only 503 while payment recovers");
        let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(Instant::now() < deadline, "payment did not recover within {within:?}");
        tokio::time::sleep(Duration::from_millis(wait.min(1) * 200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_payment_service_gets_fast_503s_and_orders_flow_again_when_it_returns() {
    let port = free_port();
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Process::payment_sim(port, sim_dir.path(), &[]);
    let app = crema_against(sim.base.clone(), |settings| {
        settings.payment.breaker.min_calls = 3;
        settings.payment.breaker.window = 6;
        settings.payment.breaker.open_ms = 1_000;
        settings.payment.breaker.half_open_probes = 1;
    })
    .await;
    app.place_ok(&[("americano", 1)]).await;

    sim.kill_9();
    for _ in 0..5 {
        let started = Instant::now();
        let response = app.place(&[("americano", 1)]).await;
        assert!(started.elapsed() < Duration::from_millis(900), "refused in {:?}", started.elapsed());
        assert_eq!(response.status(), 503);
        let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(retry >= 1);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "payment_unavailable");
    }
    assert_eq!(app.json("/orders").await["orders"].as_array().unwrap().len(), 1, "no order without payment");
    assert_eq!(app.stats().await["payment"]["breaker"], "open");

    let sim = Process::payment_sim(port, sim_dir.path(), &[]);
    place_until_accepted(&app, Duration::from_secs(15)).await;
    let closed = wait_until(Duration::from_secs(5), || async {
        (app.stats().await["payment"]["breaker"] == "closed").then_some(())
    })
    .await;
    assert!(closed.is_some(), "the breaker closes by itself once payment is back");
    let captured = ledger(&app.client, &sim.base, "captured").await;
    assert_eq!(captured.len(), 2, "the restarted payment service kept the first charge: {captured:?}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_payments_are_shed_quickly_and_the_breaker_closes_by_itself() {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Process::payment_sim(free_port(), sim_dir.path(), &["--latency-ms", "800", "--jitter-ms", "220"]);
    let app = crema_against(sim.base.clone(), |settings| {
        settings.payment.timeout_ms = 2_000;
        settings.payment.breaker.max_concurrent = 5;
        settings.payment.breaker.slow_call_ms = 500;
        settings.payment.breaker.slow_call_rate = 0.5;
        settings.payment.breaker.min_calls = 5;
        settings.payment.breaker.window = 10;
        settings.payment.breaker.open_ms = 1_500;
        settings.payment.breaker.half_open_probes = 2;
    })
    .await;
    let app = Arc::new(app);
    let mut clients = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = app.place(&[("americano", 1)]).await;
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (status, retry_after, started.elapsed())
        }));
    }
    let mut results = Vec::new();
    for client in clients {
        results.push(client.await.unwrap());
    }
    let accepted = results.iter().filter(|(status, _, _)| *status == 201).count();
    let shed: Vec<_> = results.iter().filter(|(status, _, _)| *status == 503).collect();
    assert_eq!(accepted + shed.len(), 20, "only 201 or 503: {results:?}");
    assert!(accepted >= 1 && accepted <= 5, "the bulkhead lets at most 5 through: {results:?}");
    for (_, retry_after, took) in &shed {
        assert!(retry_after.is_some(), "a shed request says when to retry");
        assert!(*took < Duration::from_millis(300), "shed quickly, not after the slow call: {took:?}");
    }
    // Five slow calls out of five: the breaker is open now.
    assert_eq!(app.stats().await["payment"]["breaker"], "open");

    set_faults(&app.client, &sim.base, json!({"latency_ms": 0, "jitter_ms": 0})).await;
    place_until_accepted(&app, Duration::from_secs(15)).await;
    let closed = wait_until(Duration::from_secs(10), || async {
        if app.stats().await["payment"]["breaker"] == "closed" {
            return Some(());
        }
        app.place(&[("espresso", 1)]).await;
        None
    })
    .await;
    assert!(closed.is_some(), "the breaker closes by itself when latency is normal again");
    assert_eq!(app.place(&[("espresso", 1)]).await.status(), 201);
    drop(sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_charges_in_flight_leaves_no_orphan_charge() {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Process::payment_sim(free_port(), sim_dir.path(), &["--latency-ms", "20", "--jitter-ms", "60"]);
    let crema_dir = tempfile::tempdir().unwrap();
    let data = crema_dir.path().join("data");
    let envs = [
        ("CREMA_PAYMENT__GATEWAY", "http"),
        ("CREMA_PAYMENT__URL", sim.base.as_str()),
        ("CREMA_PAYMENT__TIMEOUT_MS", "2000"),
    ];
    let crema = Process::crema(&data, &envs);
    let acknowledged = orders_until_killed(crema, 16, 100).await;
    let client = crate::helpers::admin_client(10);

    let crema = Process::crema(&data, &envs);
    let base = crema.base.clone();
    for order in &acknowledged {
        let response = client.get(format!("{base}/orders/{}", order["id"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(response.status(), 200, "an acknowledged order was lost: {order}");
    }
    // Every capture belongs to an established order, or has been refunded.
    let settled = wait_until(Duration::from_secs(20), || async {
        let mut orphans = Vec::new();
        for payment in ledger(&client, &sim.base, "captured").await {
            let id = payment["order_id"].as_str().unwrap();
            let response = client.get(format!("{base}/orders/{id}")).send().await.ok()?;
            if response.status() != 200 {
                orphans.push(payment);
            }
        }
        orphans.is_empty().then_some(())
    })
    .await;
    assert!(settled.is_some(), "a captured payment has no order and was not refunded");
    // No order was charged twice, and every refund was of an order never established.
    let all: Value = client.get(format!("{}/payments", sim.base)).send().await.unwrap().json().await.unwrap();
    let mut charges_by_order: HashMap<String, usize> = HashMap::new();
    let mut keys = HashSet::new();
    for payment in all["payments"].as_array().unwrap() {
        assert!(keys.insert(payment["idempotency_key"].as_str().unwrap().to_owned()));
        if payment["status"] != "declined" {
            *charges_by_order.entry(payment["order_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    assert!(charges_by_order.values().all(|count| *count == 1), "an order was charged twice");
    let refunded = ledger(&client, &sim.base, "refunded").await;
    eprintln!("after kill -9: {} acknowledged, {} charges, {} refunded as orphans", acknowledged.len(), keys.len(), refunded.len());
    for payment in refunded {
        let id = payment["order_id"].as_str().unwrap();
        let response = client.get(format!("{base}/orders/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "a refunded charge belongs to an established order: {payment}");
    }
    assert!(crema.terminate().success());
}
