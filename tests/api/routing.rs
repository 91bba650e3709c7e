//! API.md contract v2, "Routing": an order makes one ticket per station kind
//! its lines need; a station takes the oldest ticket of the kinds it serves;
//! the order is ready when every ticket is done; cancel withdraws them all.
//! And pacing: `max_wait_s` refuses with 503 `store_busy` before any charge.

use std::time::Duration;

use crema::config::{Settings, StationConfig, StationMode, StoreConfig};
use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// One store, `cafe`: a manual espresso bar (`bar-1`, serves `bar`) and a
/// manual oven (`oven`, serves `kitchen`).
fn bar_and_oven(settings: &mut Settings) {
    let station = |id: &str, kind: &str| StationConfig {
        id: id.into(),
        serves: Some(vec![kind.into()]),
        mode: Some(StationMode::Manual),
    };
    settings.stores = vec![StoreConfig {
        id: "cafe".into(),
        name: "Café".into(),
        max_wait_s: None,
        prices: Default::default(),
        stations: vec![station("bar-1", "bar"), station("oven", "kitchen")],
    }];
}

fn tickets(order: &Value) -> Vec<(String, String)> {
    order["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ticket| (ticket["kind"].as_str().unwrap().to_owned(), ticket["status"].as_str().unwrap().to_owned()))
        .collect()
}

fn pair(kind: &str, status: &str) -> (String, String) {
    (kind.to_owned(), status.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_kind_order_is_made_at_two_stations_and_ready_only_when_both_are_done() {
    let app = spawn_app_with(bar_and_oven).await;
    let order = app.place_ok(&[("latte", 1), ("croissant", 2)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(tickets(&order), [pair("bar", "queued"), pair("kitchen", "queued")]);
    let queue = app.json("/queue").await;
    assert_eq!(queue["depth"], 2);
    assert_eq!(queue["tickets"][0]["kind"], "bar");
    assert_eq!(queue["tickets"][0]["items"][0]["menu_id"], "latte", "a ticket carries only its kind's lines");
    assert_eq!(queue["tickets"][1]["items"].as_array().unwrap().len(), 1);
    assert_eq!(queue["tickets"][1]["items"][0]["menu_id"], "croissant");
    assert_eq!(queue["tickets"][1]["number"], 1);

    // The oven takes the kitchen ticket, though the bar ticket is older.
    let taken: Value = app.post("/stations/oven/next").await.json().await.unwrap();
    assert_eq!((taken["order"].as_str(), taken["kind"].as_str()), (Some(id.as_str()), Some("kitchen")));
    let brewing = app.wait_for(&id, "brewing", WAIT).await;
    assert_eq!(brewing["station"], "oven");
    let stations = app.json("/stations").await;
    assert_eq!(stations[1]["ticket"]["items"][0]["name"], "Butter Croissant", "the station shows what it makes");
    assert_eq!(stations[1]["serves"], json!(["kitchen"]));
    assert_eq!(app.post("/stations/oven/done").await.status(), 200);
    let half = wait_until(WAIT, || async {
        let order = app.order(&id).await;
        (tickets(&order)[1].1 == "done").then_some(order)
    })
    .await
    .expect("the kitchen ticket is done");
    assert_eq!(half["status"], "brewing", "one ticket done, one waiting: still brewing");
    assert_eq!(tickets(&half), [pair("bar", "queued"), pair("kitchen", "done")]);
    assert_eq!(app.post("/stations/oven/next").await.status(), 204, "the oven does not take the bar ticket");

    assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
    assert_eq!(app.post("/stations/bar-1/done").await.status(), 200);
    let ready = app.wait_for(&id, "ready", WAIT).await;
    assert_eq!(tickets(&ready), [pair("bar", "done"), pair("kitchen", "done")]);
    let statuses = history(&ready);
    assert_eq!(statuses, ["paid", "queued", "brewing", "ready"], "one history entry per status change");
    assert_eq!(ready["tickets"][1]["station"], "oven");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_withdraws_and_aborts_every_ticket_of_an_order() {
    let app = spawn_app_with(bar_and_oven).await;
    let id = app.place_ok(&[("americano", 1), ("croissant", 1)]).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.post("/stations/oven/next").await.status(), 200);
    app.wait_for(&id, "brewing", WAIT).await;
    let cancelled: Value = app.cancel(&id).await.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(app.json("/queue").await["depth"], 0, "the waiting ticket left the queue");
    assert_eq!(app.json("/stations").await[1]["state"], "idle", "the ticket being made was aborted");
    app.wait_for(&id, "cancelled", WAIT).await;
    assert!(wait_until(WAIT, || async { (app.order(&id).await["payment"]["status"] == "refunded").then_some(()) }).await.is_some());
    // The pool is free for the next order.
    let next = app.place_ok(&[("croissant", 1)]).await;
    let taken: Value = app.post("/stations/oven/next").await.json().await.unwrap();
    assert_eq!(taken["order"], next["id"]);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_ticket_being_made_goes_back_and_a_done_one_is_not_made_again() {
    let app = spawn_app_with(bar_and_oven).await;
    let id = app.place_ok(&[("latte", 1), ("croissant", 1)]).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.post("/stations/oven/next").await.status(), 200);
    assert_eq!(app.post("/stations/oven/done").await.status(), 200);
    assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
    wait_until(WAIT, || async { (tickets(&app.order(&id).await) == [pair("bar", "brewing"), pair("kitchen", "done")]).then_some(()) })
        .await
        .expect("one ticket done, one being made");
    let app = app.restart_with(bar_and_oven).await;
    let order = app.order(&id).await;
    assert_eq!(tickets(&order), [pair("bar", "queued"), pair("kitchen", "done")]);
    assert_eq!(order["status"], "brewing", "a ticket is done: the order stays brewing");
    let queue = app.json("/queue").await;
    assert_eq!(queue["depth"], 1, "only the bar ticket is made again");
    assert_eq!(queue["tickets"][0]["kind"], "bar");
    assert_eq!(app.post("/stations/oven/next").await.status(), 204);
    assert_eq!(app.post("/stations/bar-1/next").await.status(), 200);
    assert_eq!(app.post("/stations/bar-1/done").await.status(), 200);
    app.wait_for(&id, "ready", WAIT).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_s_refuses_with_store_busy_before_any_charge() {
    let app = spawn_app_with(|settings| {
        bar_and_oven(settings);
        settings.stores[0].max_wait_s = Some(10);
        settings.barista.brew_scale = 1.0; // a latte takes 4 s
    })
    .await;
    let first = app.place_ok(&[("latte", 1)]).await;
    app.place_ok(&[("latte", 1)]).await;
    let busy = app.place(&[("latte", 1)]).await;
    assert_eq!(busy.status(), 503, "12 s away, over the 10 s limit");
    let retry: u64 = busy.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&retry), "about 2 s too long: {retry}");
    let problem: Value = busy.json().await.unwrap();
    assert_eq!(problem["code"], "store_busy");
    assert!(problem["eta"].is_string(), "{problem}");
    assert_eq!(app.stats().await["payment"]["captured"], 2, "the refused order was not charged");
    // The kitchen is idle: a croissant is accepted at once.
    app.place_ok(&[("croissant", 1)]).await;
    // With the bar paused nothing of kind bar can be made: busy, eta null.
    assert_eq!(app.post("/stations/bar-1/pause").await.status(), 200);
    let never: Value = app.place(&[("americano", 1)]).await.json().await.unwrap();
    assert_eq!((never["code"].as_str(), &never["eta"]), (Some("store_busy"), &Value::Null));
    assert_eq!(app.post("/stations/bar-1/resume").await.status(), 200);
    // The order's own eta counts its place in the queue.
    let eta = app.order(first["id"].as_str().unwrap()).await["eta"].clone();
    assert!(eta.is_string(), "{eta}");
    app.shutdown().await;
}
