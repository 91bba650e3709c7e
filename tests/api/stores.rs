//! API.md contract v2, "Stores": a chain on one crema. Each store has its own
//! stations, queue, pickup numbers, ordering pause, sold-out marks and
//! prices; the unscoped routes are the default (first) store's.

use std::time::Duration;

use crema::config::{Settings, StationConfig, StationMode, StoreConfig};
use serde_json::{json, Value};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// Two stores: gangnam (the default; latte at 5,200; two manual stations)
/// and hongdae (one manual station).
pub fn two_stores(settings: &mut Settings) {
    let station = |id: &str| StationConfig { id: id.into(), serves: None, mode: Some(StationMode::Manual) };
    settings.stores = vec![
        StoreConfig {
            id: "gangnam".into(),
            name: "Gangnam".into(),
            max_wait_s: None,
            prices: [("latte".to_owned(), 5200)].into(),
            stations: vec![station("bar-1"), station("bar-2")],
        },
        StoreConfig {
            id: "hongdae".into(),
            name: "Hongdae".into(),
            max_wait_s: None,
            prices: Default::default(),
            stations: vec![station("bar-1")],
        },
    ];
}

pub fn at(store: &str, items: &[(&str, u32)]) -> Value {
    let mut body = order_body(items);
    body["store"] = json!(store);
    body
}

pub async fn place_at(app: &TestApp, store: &str, items: &[(&str, u32)]) -> Value {
    let response = app.post_json("/orders", &at(store, items)).await;
    assert_eq!(response.status(), 201, "{store}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_store_has_its_own_stations_queue_numbers_and_prices() {
    let app = spawn_app_with(two_stores).await;
    let stores = app.json("/stores").await;
    let ids: Vec<&str> = stores["stores"].as_array().unwrap().iter().map(|store| store["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gangnam", "hongdae"], "the default store first");
    assert_eq!(stores["stores"][1], json!({"id": "hongdae", "name": "Hongdae", "ordering": "open", "currency": "KRW", "max_wait_s": null}));

    // Prices: the store's override, on its menu and in its orders.
    let price = |menu: &Value| menu["items"].as_array().unwrap().iter().find(|item| item["id"] == "latte").unwrap()["price"].clone();
    assert_eq!(price(&app.json("/stores/gangnam/menu").await), 5200);
    assert_eq!(price(&app.json("/stores/hongdae/menu").await), 5000);
    assert_eq!(app.json("/menu").await, app.json("/stores/gangnam/menu").await, "unscoped = the default store's");

    let g1 = place_at(&app, "gangnam", &[("latte", 1)]).await;
    let h1 = place_at(&app, "hongdae", &[("latte", 1)]).await;
    let g2 = app.place_ok(&[("americano", 1)]).await;
    assert_eq!((g1["store"].as_str(), g1["number"].as_u64(), g1["total"].as_u64()), (Some("gangnam"), Some(1), Some(5200)));
    assert_eq!((h1["store"].as_str(), h1["number"].as_u64(), h1["total"].as_u64()), (Some("hongdae"), Some(1), Some(5000)));
    assert_eq!((g2["store"].as_str(), g2["number"].as_u64()), (Some("gangnam"), Some(2)), "no store: the default store");

    // Queues and stations are the store's own.
    let queued = |queue: &Value| -> Vec<String> {
        queue["tickets"].as_array().unwrap().iter().map(|ticket| ticket["order"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(queued(&app.json("/stores/gangnam/queue").await), [g1["id"].as_str().unwrap(), g2["id"].as_str().unwrap()]);
    assert_eq!(queued(&app.json("/stores/hongdae/queue").await), [h1["id"].as_str().unwrap()]);
    assert_eq!(app.json("/queue").await, app.json("/stores/gangnam/queue").await);
    assert_eq!(app.json("/stores/hongdae/stations").await.as_array().unwrap().len(), 1);
    assert_eq!(app.json("/stations").await.as_array().unwrap().len(), 2);
    let taken = app.post("/stores/hongdae/stations/bar-1/next").await;
    assert_eq!(taken.json::<Value>().await.unwrap()["order"], h1["id"], "hongdae's bar-1 takes hongdae's ticket");
    assert_eq!(app.post("/stores/hongdae/stations/bar-1/done").await.status(), 200);
    app.wait_for(h1["id"].as_str().unwrap(), "ready", WAIT).await;
    assert_eq!(app.order(g1["id"].as_str().unwrap()).await["status"], "queued", "gangnam's orders wait for gangnam's stations");
    assert_eq!(app.post("/stores/hongdae/stations/bar-2/next").await.status(), 404, "hongdae has no bar-2");

    // The shelf is the store's own.
    let shelf = wait_until(WAIT, || async {
        let shelf = app.json("/stores/hongdae/ready").await;
        (shelf["ready"] == 1).then_some(shelf)
    })
    .await
    .expect("hongdae's shelf");
    assert_eq!(shelf["orders"][0]["id"], h1["id"]);
    assert_eq!(app.json("/stores/gangnam/ready").await["ready"], 0);

    // Unknown stores.
    assert_eq!(app.get("/stores/main/menu").await.status(), 404, "no main when stores are configured");
    let refused = app.post_json("/orders", &at("main", &[("latte", 1)])).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.json::<Value>().await.unwrap()["detail"].as_str().unwrap().contains("store"));
    let stats = app.stats().await;
    assert_eq!(stats["stores"]["gangnam"]["queue_depth"], 2);
    assert_eq!(stats["stores"]["hongdae"]["stations"]["total"], 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_sold_out_marks_and_numbers_are_per_store_and_kept_across_a_restart() {
    let app = spawn_app_with(two_stores).await;
    assert_eq!(app.post("/stores/hongdae/ordering/pause").await.status(), 200);
    assert_eq!(app.post_json("/orders", &at("hongdae", &[("latte", 1)])).await.status(), 503);
    place_at(&app, "gangnam", &[("latte", 1)]).await;
    assert_eq!(app.client.put(app.url("/stores/gangnam/sold-out/milk.oat")).send().await.unwrap().status(), 200);
    assert_eq!(app.json("/stores/hongdae/sold-out").await["sold_out"], json!([]));
    assert_eq!(app.post("/stores/gangnam/stations/bar-2/pause").await.status(), 200);
    place_at(&app, "gangnam", &[("americano", 1)]).await;

    let app = app.restart_with(two_stores).await;
    let stores = app.json("/stores").await;
    assert_eq!((stores["stores"][0]["ordering"].as_str(), stores["stores"][1]["ordering"].as_str()), (Some("open"), Some("paused")));
    assert_eq!(app.json("/stores/gangnam/sold-out").await["sold_out"], json!(["milk.oat"]));
    assert_eq!(app.json("/stores/hongdae/sold-out").await["sold_out"], json!([]));
    let state = |stations: &Value, at: usize| stations[at]["state"].as_str().unwrap().to_owned();
    let gangnam = app.json("/stores/gangnam/stations").await;
    assert_eq!((state(&gangnam, 0), state(&gangnam, 1)), ("idle".into(), "paused".into()));
    assert_eq!(state(&app.json("/stores/hongdae/stations").await, 0), "idle", "hongdae's bar-1 is another station");
    assert_eq!(place_at(&app, "gangnam", &[("latte", 1)]).await["number"], 3, "gangnam's numbers go on");
    assert_eq!(app.post("/stores/hongdae/ordering/resume").await.status(), 200);
    assert_eq!(place_at(&app, "hongdae", &[("latte", 1)]).await["number"], 1, "hongdae's start at 1");
    app.shutdown().await;
}

/// `GET /stats` per store: orders, revenue (cancelled orders do not count),
/// lead time paid → ready, and the pickup shelf's count and oldest wait;
/// rebuilt from disk after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_give_each_stores_orders_revenue_lead_time_and_shelf() {
    let app = spawn_app_with(two_stores).await;
    let kept = place_at(&app, "gangnam", &[("latte", 2)]).await;
    let cancelled = place_at(&app, "gangnam", &[("americano", 1)]).await;
    assert_eq!(app.cancel(cancelled["id"].as_str().unwrap()).await.status(), 200);
    let made = place_at(&app, "hongdae", &[("espresso", 1)]).await;
    assert_eq!(app.post("/stores/hongdae/stations/bar-1/next").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(app.post("/stores/hongdae/stations/bar-1/done").await.status(), 200);
    app.wait_for(made["id"].as_str().unwrap(), "ready", WAIT).await;
    let check = |stats: &Value| {
        let gangnam = &stats["stores"]["gangnam"];
        let hongdae = &stats["stores"]["hongdae"];
        assert_eq!((gangnam["orders"].as_u64(), gangnam["revenue"].as_u64()), (Some(2), Some(2 * 5200)), "{stats}");
        assert_eq!((hongdae["orders"].as_u64(), hongdae["revenue"].as_u64()), (Some(1), Some(3500)));
        assert_eq!(stats["revenue"], 2 * 5200 + 3500);
        assert_eq!(hongdae["ready"], 1);
        assert!(hongdae["oldest_ready_s"].is_u64());
        assert_eq!(gangnam["oldest_ready_s"], Value::Null);
        let p50 = hongdae["lead_time_ms"]["p50"].as_u64().expect("one lead time");
        assert!(p50 >= 50, "paid → ready took at least the 50 ms at the station: {p50}");
        assert_eq!(hongdae["lead_time_ms"]["of"], 1);
        assert_eq!(gangnam["lead_time_ms"]["p90"], Value::Null, "none made yet");
        assert_eq!(stats["lead_time_ms"]["p50"], p50);
    };
    let stats = wait_until(WAIT, || async {
        let stats = app.stats().await;
        (stats["stores"]["hongdae"]["ready"] == 1 && stats["stores"]["gangnam"]["revenue"] == 2 * 5200).then_some(stats)
    })
    .await
    .expect("the projection caught up");
    check(&stats);
    let app = app.restart_with(two_stores).await;
    check(&app.stats().await);
    assert_eq!(kept["total"], 2 * 5200);
    app.shutdown().await;
}
