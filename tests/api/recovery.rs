//! Durability: graceful restarts, a SIGKILL in the middle of a rush, and a
//! snapshot that does not decode.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{manual_stations, orders_until_killed, spawn_app_with, test_settings, wait_ready, wait_until, Process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_order_survives_kill_9_and_is_made_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Process::crema(&data, &[]);
    let acknowledged = orders_until_killed(server, 8, 150).await;
    let client = crate::helpers::admin_client(10);

    let server = Process::crema(&data, &[]);
    let base = server.base.clone();
    for order in &acknowledged {
        let id = order["id"].as_str().unwrap();
        let response = client.get(format!("{base}/orders/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "acknowledged order {id} was lost");
        let now: Value = response.json().await.unwrap();
        assert_eq!(now["items"], order["items"]);
        assert_eq!(now["total"], order["total"]);
        assert!(now["version"].as_u64() >= order["version"].as_u64());
    }
    // Queued ones still get made.
    for order in &acknowledged {
        let id = order["id"].as_str().unwrap();
        let ready = wait_until(Duration::from_secs(90), || async {
            let now: Value = client.get(format!("{base}/orders/{id}")).send().await.ok()?.json().await.ok()?;
            (now["status"] == "ready").then_some(())
        })
        .await;
        assert!(ready.is_some(), "order {id} was never made after the restart");
    }
    // No order appears twice.
    let mut seen = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/orders?limit=200");
        if let Some(cursor) = &after {
            url.push_str(&format!("&after={cursor}"));
        }
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for order in page["orders"].as_array().unwrap() {
            assert!(seen.insert(order["id"].as_str().unwrap().to_owned()), "order listed twice: {order}");
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    for order in &acknowledged {
        assert!(seen.contains(order["id"].as_str().unwrap()));
    }
    let stats: Value = client.get(format!("{base}/stats")).send().await.unwrap().json().await.unwrap();
    let counted: u64 = stats["orders"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(counted as usize, seen.len(), "the projection counts every order once: {stats}");

    let status = server.terminate();
    assert!(status.success(), "SIGTERM shuts down cleanly: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brewing_order_goes_back_to_the_head_of_the_queue_after_a_restart() {
    let app = spawn_app_with(|settings| {
        settings.barista.brew_scale = 10.0;
        settings.barista.stations = 1;
    })
    .await;
    let first = app.place_ok(&[("espresso", 1)]).await;
    let first = first["id"].as_str().unwrap().to_owned();
    app.wait_for(&first, "brewing", Duration::from_secs(5)).await;
    let second = app.place_ok(&[("espresso", 1)]).await["id"].as_str().unwrap().to_owned();
    let app = app.restart_with(|settings| manual_stations(settings, 1)).await;
    assert_eq!(app.recovery_requeued(), 1);
    // A brewing order's ticket is out of the index by design: no false alarm.
    assert_eq!(app.recovery_disagreements(), 0);
    let queue = app.json("/queue").await;
    let order: Vec<&str> = queue["tickets"].as_array().unwrap().iter().map(|t| t["order"].as_str().unwrap()).collect();
    assert_eq!(order, [first.as_str(), second.as_str()]);
    let requeued = app.order(&first).await;
    assert_eq!(requeued["status"], "queued");
    let next: Value = app.station("bar-1", "next").await.json().await.unwrap();
    assert_eq!(next["order"], first.as_str());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_does_not_decode_stops_start_up_loudly() {
    let app = spawn_app_with(|_| {}).await;
    app.place_ok(&[("latte", 1)]).await;
    let dir = app.shutdown().await;
    let data = dir.path().join("data");
    {
        let options = rocksdb::Options::default();
        let cfs = rocksdb::DB::list_cf(&options, &data).unwrap();
        let db = rocksdb::DB::open_cf(&options, &data, cfs).unwrap();
        db.put_cf(db.cf_handle("orders").unwrap(), b"0000-broken", b"\x01\x01not bincode").unwrap();
    }
    let settings = {
        let mut settings = test_settings(dir.path());
        settings.store.data_dir = data;
        settings
    };
    let err = match crema::app::App::start(settings).await {
        Ok(_) => panic!("start-up must fail on a corrupt snapshot"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("0000-broken") && err.contains("does not decode"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_by_status_survive_a_restart() {
    let app = spawn_app().await;
    let mut ids = HashMap::new();
    for _ in 0..3 {
        let order = app.place_ok(&[("espresso", 1)]).await;
        ids.insert(order["id"].as_str().unwrap().to_owned(), ());
    }
    for id in ids.keys() {
        app.wait_for(id, "ready", Duration::from_secs(10)).await;
    }
    let dir = app.shutdown().await;
    let data = dir.path().join("data");
    let app = spawn_app_with(move |settings| settings.store.data_dir = data).await;
    assert_eq!(app.stats().await["orders"]["ready"], 3);
    app.shutdown().await;
    drop(dir);
}

use crate::helpers::spawn_app;

/// API.md v2: "Station pause state is kept across restarts too". Before, a
/// paused station came back unpaused after a crash and made drinks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_station_stays_paused_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let client = crate::helpers::admin_client(30);
    let server = Process::crema(&data, &[]);
    let base = server.base.clone();
    for station in ["bar-1", "bar-2"] {
        let paused = client.post(format!("{base}/stations/{station}/pause")).send().await.unwrap();
        assert_eq!(paused.status(), 200);
    }
    let resumed = client.post(format!("{base}/stations/bar-2/resume")).send().await.unwrap();
    assert_eq!(resumed.status(), 200);
    server.kill_9();

    let server = Process::crema(&data, &[]);
    let base = server.base.clone();
    wait_ready(&client, &base).await;
    let stations: Value = client.get(format!("{base}/stations")).send().await.unwrap().json().await.unwrap();
    let state = |id: &str| stations.as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["state"].clone();
    assert_eq!(state("bar-1"), "paused", "{stations}");
    assert_eq!(state("bar-2"), "idle", "resumed before the crash: {stations}");
    // And it makes nothing: an order waits for bar-2, never on bar-1.
    let placed = client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .body(r#"{"customer":"lee","items":[{"menu_id":"espresso","qty":1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id = placed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let made = wait_until(Duration::from_secs(30), || async {
        let order: Value = client.get(format!("{base}/orders/{id}")).send().await.unwrap().json().await.unwrap();
        (order["status"] == "ready").then_some(order)
    })
    .await
    .expect("made by the station that works");
    assert_eq!(made["station"], "bar-2", "{made}");
    server.kill_9();
}

/// A two-store chain killed with SIGKILL while a two-ticket order is half
/// made: after the restart the done ticket stays done, the one being made is
/// queued again at its own store, and the other store's state is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_made_two_ticket_order_at_one_of_two_stores_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("crema.toml");
    std::fs::write(
        &config,
        "[barista]\nmode = \"manual\"\n\
         [[stores]]\nid = \"gangnam\"\nname = \"Gangnam\"\n\
         [[stores.stations]]\nid = \"bar-1\"\nserves = [\"bar\"]\n[[stores.stations]]\nid = \"oven\"\nserves = [\"kitchen\"]\n\
         [[stores]]\nid = \"hongdae\"\nname = \"Hongdae\"\n[[stores.stations]]\nid = \"bar-1\"\n"
            .to_owned()
            + &crate::helpers::admin_toml(),
    )
    .unwrap();
    let start = || Process::start(&["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()], &[]);
    let client = crate::helpers::admin_client(30);
    let server = start();
    let base = server.base.clone();
    let post = |path: String, body: Option<&'static str>| {
        let request = client.post(format!("{base}{path}"));
        let request = match body {
            Some(body) => request.header("content-type", "application/json").body(body),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let placed = post("/orders".into(), Some(r#"{"store":"gangnam","items":[{"menu_id":"latte","qty":1},{"menu_id":"croissant","qty":1}]}"#)).await;
    assert_eq!(placed.status(), 201);
    let id = placed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let other = post("/orders".into(), Some(r#"{"store":"hongdae","items":[{"menu_id":"espresso","qty":1}]}"#)).await;
    assert_eq!(other.json::<Value>().await.unwrap()["number"], 1);
    for step in ["/stores/gangnam/stations/oven/next", "/stores/gangnam/stations/oven/done", "/stores/gangnam/stations/bar-1/next"] {
        assert_eq!(post(step.into(), None).await.status(), 200, "{step}");
    }
    let tickets = |order: &Value| -> Vec<String> {
        order["tickets"].as_array().unwrap().iter().map(|t| format!("{}:{}", t["kind"].as_str().unwrap(), t["status"].as_str().unwrap())).collect()
    };
    wait_until(Duration::from_secs(10), || async {
        let order: Value = client.get(format!("{base}/orders/{id}")).send().await.unwrap().json().await.unwrap();
        (tickets(&order) == ["bar:brewing", "kitchen:done"]).then_some(())
    })
    .await
    .expect("half made");
    server.kill_9();

    let server = start();
    let base = server.base.clone();
    wait_ready(&client, &base).await;
    let order: Value = client.get(format!("{base}/orders/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(tickets(&order), ["bar:queued", "kitchen:done"], "{order}");
    assert_eq!(order["status"], "brewing");
    let queue: Value = client.get(format!("{base}/stores/gangnam/queue")).send().await.unwrap().json().await.unwrap();
    assert_eq!((queue["depth"].as_u64(), queue["tickets"][0]["kind"].as_str()), (Some(1), Some("bar")));
    let hongdae: Value = client.get(format!("{base}/stores/hongdae/queue")).send().await.unwrap().json().await.unwrap();
    assert_eq!(hongdae["depth"], 1, "hongdae's espresso waits at hongdae");
    let next = client.post(format!("{base}/orders")).header("content-type", "application/json")
        .body(r#"{"store":"hongdae","items":[{"menu_id":"espresso","qty":1}]}"#).send().await.unwrap();
    assert_eq!(next.json::<Value>().await.unwrap()["number"], 2, "hongdae's numbers go on");
    server.kill_9();
}
