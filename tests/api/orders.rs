//! The origin's functional requirements 1-7 and the "makecoffee down" scenario.

use std::time::Duration;

use crate::helpers::{history, manual_stations, spawn_app, spawn_app_with, wait_until};


const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_orders_menu_items_with_quantities() {
    let app = spawn_app().await;
    let menu = app.json("/menu").await;
    assert_eq!(menu["currency"], "KRW");
    assert!(menu["items"].as_array().unwrap().iter().any(|item| item["id"] == "americano"));

    let response = app.place(&[("americano", 2), ("latte", 1)]).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: serde_json::Value = response.json().await.unwrap();
    assert_eq!(location, format!("/orders/{}", order["id"].as_str().unwrap()));
    assert_eq!(order["customer"], "kim");
    assert_eq!(order["items"][0]["qty"], 2);
    assert_eq!(order["items"][0]["line_total"], 9000);
    assert_eq!(order["items"][1]["unit_price"], 5000);
    assert_eq!(order["total"], 14000);
    assert_eq!(order["status"], "queued");
    assert_eq!(order["version"], 2);
    assert_eq!(order["history"][0]["status"], "paid");
    assert_eq!(order["history"][1]["status"], "queued");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_an_order_charges_the_payment() {
    let app = spawn_app().await;
    let order = app.place_ok(&[("espresso", 3)]).await;
    assert_eq!(order["payment"]["status"], "captured");
    assert_eq!(order["payment"]["amount"], 3 * 3500);
    assert_eq!(app.stats().await["payment"]["captured"], 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_establishes_no_order() {
    let app = spawn_app_with(|settings| {
        settings.payment.simulated.decline_rate = 1.0;
        settings.barista.max_queue = 1;
    })
    .await;
    // The second attempt proves the first gave its queue place back.
    assert_eq!(app.place(&[("americano", 1)]).await.status(), 402);
    let response = app.place(&[("americano", 1)]).await;
    assert_eq!(response.status(), 402);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "payment_declined");
    let listed = app.json("/orders?customer=kim").await;
    assert_eq!(listed["orders"].as_array().unwrap().len(), 0, "no order may exist: {listed}");
    assert_eq!(app.json("/queue").await["depth"], 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_payment_gateway_answers_503_with_retry_after() {
    let app = spawn_app_with(|settings| settings.payment.simulated.fail_rate = 1.0).await;
    let response = app.place(&[("americano", 1)]).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "payment_unavailable");
    assert!(problem["retry_after_s"].as_u64().unwrap() >= 1);
    assert_eq!(app.json("/orders").await["orders"].as_array().unwrap().len(), 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_reaches_a_barista_who_makes_it() {
    let app = spawn_app().await;
    let order = app.place_ok(&[("americano", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let ready = app.wait_for(id, "ready", WAIT).await;
    assert!(ready["station"].as_str().unwrap().starts_with("bar-"));
    let statuses = history(&ready);
    assert_eq!(statuses, ["paid", "queued", "brewing", "ready"]);
    let made: u64 = app.json("/stations").await.as_array().unwrap().iter().map(|s| s["made"].as_u64().unwrap()).sum();
    assert_eq!(made, 1);

    let picked = app.pickup(id).await;
    assert_eq!(picked.status(), 200);
    let picked: serde_json::Value = picked.json().await.unwrap();
    assert_eq!(picked["status"], "picked_up");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_moves_forward_with_increasing_versions() {
    let app = spawn_app().await;
    let order = app.place_ok(&[("latte", 2)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let mut last_version = 0;
    let deadline = std::time::Instant::now() + WAIT;
    let ready = loop {
        let now = app.order(&id).await;
        let version = now["version"].as_u64().unwrap();
        assert!(version >= last_version, "version went back from {last_version} to {version}");
        last_version = version;
        if now["status"] == "ready" {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "the order never became ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let seqs: Vec<u64> = ready["history"].as_array().unwrap().iter().map(|h| h["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    assert_eq!(ready["version"].as_u64().unwrap(), *seqs.last().unwrap());

    let missing = app.get("/orders/no-such-order").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap()["code"], "order_not_found");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_answered_from_the_snapshot_after_passivation() {
    let app = spawn_app().await;
    let order = app.place_ok(&[("espresso", 1)]).await;
    let id = order["id"].as_str().unwrap();
    app.wait_for(id, "ready", WAIT).await;
    assert_eq!(app.pickup(id).await.status(), 200);
    // passivate_after_ms is 200 in tests: wait for the actor to stop.
    let passivated = wait_until(WAIT, || async { (app.stats().await["live_actors"] == 0).then_some(()) }).await;
    assert!(passivated.is_some(), "the settled order's actor should have stopped");
    let order = app.order(id).await;
    assert_eq!(order["status"], "picked_up");
    // A command on a passivated order revives it from its snapshot.
    let again = app.cancel(id).await;
    assert_eq!(again.status(), 409);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_queued_order_is_refunded_and_never_made() {
    let app = spawn_app().await;
    app.pause_all().await;
    let order = app.place_ok(&[("americano", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let response = app.cancel(id).await;
    assert_eq!(response.status(), 200);
    let cancelled: serde_json::Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payment"]["status"], "refunded");
    assert_eq!(app.json("/queue").await["depth"], 0);

    app.resume_all().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.order(id).await["status"], "cancelled");
    let made: u64 = app.json("/stations").await.as_array().unwrap().iter().map(|s| s["made"].as_u64().unwrap()).sum();
    assert_eq!(made, 0);
    assert_eq!(app.stats().await["payment"]["refunded"], 1);

    // Cancelling again is idempotent.
    let again = app.cancel(id).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["version"], cancelled["version"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_brewing_order_is_refunded_and_the_station_stops() {
    // Americano brews 3000 ms × 0.5 = 1.5 s.
    let app = spawn_app_with(|settings| {
        settings.barista.brew_scale = 0.5;
        settings.barista.stations = 1;
    })
    .await;
    let order = app.place_ok(&[("americano", 1)]).await;
    let id = order["id"].as_str().unwrap();
    app.wait_for(id, "brewing", WAIT).await;
    let response = app.cancel(id).await;
    assert_eq!(response.status(), 200);
    let cancelled: serde_json::Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["payment"]["status"], "refunded");
    let station = &app.json("/stations").await[0];
    assert_eq!(station["state"], "idle");
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(app.json("/stations").await[0]["made"], 0, "the station must not finish a cancelled order");
    assert_eq!(app.order(id).await["status"], "cancelled");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_when_ready_is_too_late_and_pickup_needs_ready() {
    let app = spawn_app().await;
    app.pause_all().await;
    let order = app.place_ok(&[("espresso", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let early = app.pickup(id).await;
    assert_eq!(early.status(), 409);
    assert_eq!(early.json::<serde_json::Value>().await.unwrap()["code"], "not_ready");
    app.resume_all().await;
    app.wait_for(id, "ready", WAIT).await;
    let late = app.cancel(id).await;
    assert_eq!(late.status(), 409);
    assert_eq!(late.json::<serde_json::Value>().await.unwrap()["code"], "too_late_to_cancel");
    assert_eq!(app.cancel("no-such-order").await.status(), 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_accepted_while_every_station_is_paused_and_made_on_resume() {
    let app = spawn_app().await;
    app.pause_all().await;
    assert!(app.json("/stations").await.as_array().unwrap().iter().all(|s| s["state"] == "paused"));
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.place_ok(&[("latte", 1)]).await["id"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in &ids {
        assert_eq!(app.order(id).await["status"], "queued");
    }
    let queue = app.json("/queue").await;
    let queued: Vec<&str> = queue["tickets"].as_array().unwrap().iter().map(|t| t["order"].as_str().unwrap()).collect();
    assert_eq!(queued, ids.iter().map(String::as_str).collect::<Vec<_>>(), "first in, first out");

    app.resume_all().await;
    for id in &ids {
        app.wait_for(id, "ready", WAIT).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_brewing_station_puts_its_ticket_back_at_the_head() {
    let app = spawn_app_with(|settings| {
        settings.barista.brew_scale = 1.0;
        settings.barista.stations = 1;
    })
    .await;
    let first = app.place_ok(&[("americano", 1)]).await;
    let first = first["id"].as_str().unwrap();
    app.wait_for(first, "brewing", WAIT).await;
    let second = app.place_ok(&[("americano", 1)]).await;
    assert_eq!(app.station("bar-1", "pause").await.status(), 200);
    let requeued = app.wait_for(first, "queued", WAIT).await;
    let statuses = history(&requeued);
    assert_eq!(statuses, ["paid", "queued", "brewing", "queued"]);
    let queue = app.json("/queue").await;
    assert_eq!(queue["tickets"][0]["order"], first);
    assert_eq!(queue["tickets"][1]["order"], second["id"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_turns_orders_away_before_charging() {
    let app = spawn_app_with(|settings| settings.barista.max_queue = 2).await;
    app.pause_all().await;
    app.place_ok(&[("americano", 1)]).await;
    app.place_ok(&[("americano", 1)]).await;
    let response = app.place(&[("americano", 1)]).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.json::<serde_json::Value>().await.unwrap()["code"], "overloaded");
    assert_eq!(app.stats().await["payment"]["captured"], 2, "nothing is charged for a refused order");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_station_takes_and_finishes_tickets() {
    let app = spawn_app_with(|settings| settings.barista.mode = crema::config::StationMode::Manual).await;
    assert_eq!(app.station("bar-1", "next").await.status(), 204);
    let order = app.place_ok(&[("latte", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let next = app.station("bar-1", "next").await;
    assert_eq!(next.status(), 200);
    assert_eq!(next.json::<serde_json::Value>().await.unwrap()["order"], id);
    assert_eq!(app.station("bar-1", "next").await.status(), 409, "a busy station takes no second ticket");
    app.wait_for(id, "brewing", WAIT).await;
    assert_eq!(app.station("bar-1", "done").await.status(), 200);
    app.wait_for(id, "ready", WAIT).await;
    assert_eq!(app.station("bar-1", "done").await.status(), 409);
    assert_eq!(app.station("bar-9", "next").await.status(), 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_lists_their_orders_newest_first_in_pages() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.place_ok(&[("espresso", 1)]).await["id"].as_str().unwrap().to_owned());
    }
    let other = app.post_json("/orders", &serde_json::json!({"customer": "lee", "items": [{"menu_id": "latte", "qty": 1}]})).await;
    assert_eq!(other.status(), 201);
    let first = app.json("/orders?customer=kim&limit=3").await;
    let page: Vec<&str> = first["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(page, [ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]);
    let cursor = first["next"].as_str().expect("a next cursor");
    let second = app.json(&format!("/orders?customer=kim&limit=3&after={cursor}")).await;
    let page: Vec<&str> = second["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(page, [ids[1].as_str(), ids[0].as_str()]);
    assert!(second["next"].is_null());
    assert_eq!(app.get("/orders?limit=0").await.status(), 400);
    assert_eq!(app.get("/orders?status=lost").await.status(), 400);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_that_panics_is_restarted_and_its_ticket_goes_back_to_the_head() {
    let app = spawn_app_with(|settings| {
        settings.barista.stations = 1;
        settings.barista.inject_panics = 1;
    })
    .await;
    let order = app.place_ok(&[("espresso", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let ready = app.wait_for(id, "ready", WAIT).await;
    let statuses = history(&ready);
    assert_eq!(statuses, ["paid", "queued", "brewing", "queued", "brewing", "ready"], "{ready}");
    let station = &app.json("/stations").await[0];
    assert_eq!(station["restarts"], 1);
    assert_eq!(station["made"], 1);
    // The rest of the engine lives on: payment and the pool still answer.
    app.place_ok(&[("espresso", 1)]).await;
    app.shutdown().await;
}

/// Thread per core (`server.connections_on_arbiters`, the default) and the
/// layout before it serve the same lifecycle: place, cancel with a refund,
/// brew on a station, ready, pick up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_connection_layouts_serve_the_whole_order_lifecycle() {
    for on_arbiters in [true, false] {
        let app = spawn_app_with(|settings| {
            settings.server.connections_on_arbiters = on_arbiters;
            manual_stations(settings, 1);
        })
        .await;
        let kept = app.place_ok(&[("americano", 1)]).await;
        let cancelled = app.place_ok(&[("latte", 1)]).await;
        let kept_id = kept["id"].as_str().unwrap();
        let response = app.cancel(cancelled["id"].as_str().unwrap()).await;
        assert_eq!(response.status(), 200, "layout on_arbiters={on_arbiters}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["payment"]["status"], "refunded");
        assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
        assert_eq!(app.order(kept_id).await["status"], "brewing");
        assert_eq!(app.post("/stations/bar-1/done").await.status(), 200);
        let ready = wait_until(WAIT, || async {
            let order = app.order(kept_id).await;
            (order["status"] == "ready").then_some(order)
        })
        .await;
        assert!(ready.is_some(), "layout on_arbiters={on_arbiters}: the order became ready");
        let picked: serde_json::Value = app.pickup(kept_id).await.json().await.unwrap();
        assert_eq!(picked["status"], "picked_up");
        assert_eq!(app.stats().await["payment"]["refunded"], 1);
        app.shutdown().await;
    }
}

/// API.md v2: "Pickup is idempotent": a second pickup answers 200 with the
/// same order, also once the actor has passivated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_pickup_answers_the_same_order() {
    let app = spawn_app_with(|settings| {
        settings.barista.brew_scale = 0.0;
        settings.orders.passivate_after_ms = 50;
    })
    .await;
    let id = app.place_ok(&[("americano", 1)]).await["id"].as_str().unwrap().to_owned();
    app.wait_for(&id, "ready", WAIT).await;
    let first = app.pickup(&id).await;
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = app.pickup(&id).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first, "nothing changed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after_passivation = app.pickup(&id).await;
    assert_eq!(after_passivation.status(), 200);
    let after: serde_json::Value = after_passivation.json().await.unwrap();
    assert_eq!((after["status"].clone(), after["version"].clone()), (first["status"].clone(), first["version"].clone()));
    app.shutdown().await;
}

/// API.md v2: every order gets a short pickup number at its store, from 1 up
/// by one; the queue's tickets carry it with the customer's name; numbering
/// goes on after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_get_pickup_numbers_that_go_on_after_a_restart() {
    let app = spawn_app_with(|settings| manual_stations(settings, 1)).await;
    let mut numbers = Vec::new();
    for _ in 0..3 {
        let order = app.place_ok(&[("americano", 1)]).await;
        assert_eq!(order["store"], "main");
        numbers.push(order["number"].as_u64().unwrap());
    }
    assert_eq!(numbers, [1, 2, 3]);
    let queue = app.json("/queue").await;
    let first = &queue["tickets"][0];
    assert_eq!((first["number"].as_u64(), first["customer"].as_str()), (Some(1), Some("kim")), "{queue}");
    let app = app.restart_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(app.place_ok(&[("latte", 1)]).await["number"], 4);
    app.shutdown().await;
}

/// API.md v2: a store's ordering can be paused (an emergency stop): new
/// orders get 503 `store_paused` + `Retry-After` before any charge, orders
/// already placed go on being made, and the pause holds across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_store_refuses_new_orders_before_any_charge_and_stays_paused_after_a_restart() {
    let app = spawn_app_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(app.json("/stores").await["stores"][0]["ordering"], "open");
    let placed = app.place_ok(&[("americano", 1)]).await["id"].as_str().unwrap().to_owned();
    let paused = app.post("/stores/main/ordering/pause").await;
    assert_eq!(paused.status(), 200);
    assert_eq!(paused.json::<serde_json::Value>().await.unwrap()["ordering"], "paused");
    let refused = app.place(&[("latte", 1)]).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "60");
    assert_eq!(refused.json::<serde_json::Value>().await.unwrap()["code"], "store_paused");
    assert_eq!(app.stats().await["payment"]["captured"], 1, "the refused order was not charged");
    // The order placed before the pause is still made.
    assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
    assert_eq!(app.post("/stations/bar-1/done").await.status(), 200);
    app.wait_for(&placed, "ready", WAIT).await;
    assert_eq!(app.post("/stores/gangnam/ordering/pause").await.status(), 404);
    let app = app.restart_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(app.json("/stores").await["stores"][0]["ordering"], "paused", "kept across the restart");
    assert_eq!(app.place(&[("latte", 1)]).await.status(), 503);
    assert_eq!(app.post("/stores/main/ordering/resume").await.status(), 200);
    assert_eq!(app.place(&[("latte", 1)]).await.status(), 201);
    app.shutdown().await;
}

/// API.md v2 "Sold out (86)": marked and cleared idempotently, shown in the
/// menu, refused at order time with 409 `item_unavailable` before any
/// charge, and kept across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sold_out_item_is_shown_refused_before_any_charge_and_kept_across_a_restart() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let marked = app.client.put(app.url("/stores/main/sold-out/latte")).send().await.unwrap();
        assert_eq!(marked.status(), 200);
        assert_eq!(marked.json::<serde_json::Value>().await.unwrap()["sold_out"], serde_json::json!(["latte"]));
    }
    let menu = app.json("/menu").await;
    let available = |menu: &serde_json::Value, id: &str| {
        menu["items"].as_array().unwrap().iter().find(|item| item["id"] == id).unwrap()["available"].clone()
    };
    assert_eq!((available(&menu, "latte"), available(&menu, "americano")), (false.into(), true.into()));
    let refused = app.place(&[("americano", 1), ("latte", 1)]).await;
    assert_eq!(refused.status(), 409);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "item_unavailable");
    assert!(problem["detail"].as_str().unwrap().contains("latte"), "{problem}");
    assert_eq!(app.stats().await["payment"]["captured"], 0, "nothing was charged");
    assert_eq!(app.client.put(app.url("/stores/main/sold-out/mocha")).send().await.unwrap().status(), 404);
    assert_eq!(app.client.put(app.url("/stores/gangnam/sold-out/latte")).send().await.unwrap().status(), 404);
    let app = app.restart_with(|_| {}).await;
    assert_eq!(app.json("/stores/main/sold-out").await["sold_out"], serde_json::json!(["latte"]), "kept");
    assert_eq!(app.place(&[("latte", 1)]).await.status(), 409);
    for _ in 0..2 {
        let cleared = app.client.delete(app.url("/stores/main/sold-out/latte")).send().await.unwrap();
        assert_eq!(cleared.status(), 200);
        assert_eq!(cleared.json::<serde_json::Value>().await.unwrap()["sold_out"], serde_json::json!([]));
    }
    assert_eq!(app.place(&[("latte", 1)]).await.status(), 201);
    app.shutdown().await;
}

/// API.md v2 "the pickup shelf": ready orders not yet picked up, the
/// longest-ready first; a pickup takes an order off; the shelf is rebuilt
/// after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pickup_shelf_lists_ready_orders_longest_ready_first_and_survives_a_restart() {
    let app = spawn_app_with(|settings| manual_stations(settings, 1)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.place_ok(&[("espresso", 1)]).await["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
        assert_eq!(app.post("/stations/bar-1/done").await.status(), 200);
        app.wait_for(id, "ready", WAIT).await;
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct ready times
    }
    let shelf_ids = |shelf: &serde_json::Value| -> Vec<String> {
        shelf["orders"].as_array().unwrap().iter().map(|order| order["id"].as_str().unwrap().to_owned()).collect()
    };
    let shelf = wait_until(WAIT, || async {
        let shelf = app.json("/stores/main/ready").await;
        (shelf["orders"].as_array().unwrap().len() == 3).then_some(shelf)
    })
    .await
    .expect("three orders on the shelf");
    assert_eq!(shelf_ids(&shelf), ids, "longest-ready first");
    assert_eq!(shelf["ready"], 3);
    assert_eq!(shelf["orders"][0]["number"], 1);
    assert_eq!(app.pickup(&ids[1]).await.status(), 200);
    let expected = vec![ids[0].clone(), ids[2].clone()];
    let shelf = wait_until(WAIT, || async {
        let shelf = app.json("/stores/main/ready").await;
        (shelf_ids(&shelf) == expected).then_some(shelf)
    })
    .await;
    assert!(shelf.is_some(), "a picked-up order leaves the shelf");
    assert_eq!(app.get("/stores/gangnam/ready").await.status(), 404);
    let app = app.restart_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(shelf_ids(&app.json("/stores/main/ready").await), expected, "rebuilt by recovery");
    app.shutdown().await;
}

/// API.md v2: the unscoped routes are the default store's; the scoped ones
/// answer the same for `main` and 404 `store_not_found` for any other store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_scoped_routes_equal_the_default_stores_unscoped_ones() {
    let app = spawn_app_with(|settings| manual_stations(settings, 2)).await;
    app.place_ok(&[("americano", 1)]).await;
    for path in ["menu", "queue", "stations"] {
        assert_eq!(app.json(&format!("/stores/main/{path}")).await, app.json(&format!("/{path}")).await, "{path}");
        let unknown = app.get(&format!("/stores/gangnam/{path}")).await;
        assert_eq!(unknown.status(), 404, "{path}");
        assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["code"], "store_not_found");
    }
    let taken = app.post("/stores/main/stations/bar-2/next").await;
    assert_eq!(taken.status(), 200);
    assert_eq!(app.json("/stations").await[1]["state"], "brewing", "the scoped action acted on the default store");
    assert_eq!(app.post("/stores/main/stations/bar-2/pause").await.status(), 200);
    assert_eq!(app.json("/stores/main/stations").await[1]["state"], "paused");
    assert_eq!(app.post("/stores/gangnam/stations/bar-2/resume").await.status(), 404);
    assert_eq!(app.post("/stores/main/stations/bar-9/resume").await.status(), 404);
    app.shutdown().await;
}

/// API.md v2: `POST /orders` takes an optional `store`; an unknown one is a
/// 400 `invalid_order` naming `store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_may_name_its_store() {
    let app = spawn_app().await;
    let body = |store: &str| serde_json::json!({"store": store, "customer": "kim", "items": [{"menu_id": "americano", "qty": 1}]});
    let placed = app.post_json("/orders", &body("main")).await;
    assert_eq!(placed.status(), 201);
    assert_eq!(placed.json::<serde_json::Value>().await.unwrap()["store"], "main");
    let refused = app.post_json("/orders", &body("gangnam")).await;
    assert_eq!(refused.status(), 400);
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_order");
    assert!(problem["detail"].as_str().unwrap().contains("store"), "{problem}");
    app.shutdown().await;
}
