//! `store.durability = "replicated"` through the real binary, on three real
//! JetStream servers ([`NatsCluster`]): fencing between two nodes on the same
//! stores, a node started with an empty data directory, and the event feed.
//! The kill soak's replicated form (data directory deleted at every kill,
//! journal leader killed, a server paused) is in `soak.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{admin_client, admin_toml, order_body, wait_ready, wait_until, Process};
use crate::nats::NatsCluster;

/// `crema serve` as node `node` of `nats`, its data in `dir/<node>-data`.
fn node(dir: &Path, nats: &NatsCluster, node: &str, data: &str) -> Process {
    let config = dir.join(format!("{node}.toml"));
    std::fs::write(&config, format!("{}{}", admin_toml(), nats.crema_toml(node))).unwrap();
    let data = dir.join(data);
    Process::start(
        &["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()],
        &[("CREMA_BARISTA__BREW_SCALE", "0.01"), ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "200")],
    )
}

async fn place(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .body(order_body(&[("americano", 1)]).to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_stores_fences_the_first_which_then_acknowledges_nothing() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(10);
    let first = node(dir.path(), &nats, "a", "a-data");
    wait_ready(&client, &first.base).await;
    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let response = place(&client, &first.base).await;
        assert_eq!(response.status(), 201);
        acknowledged.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }

    // Started by mistake on the same stores, with an empty data directory:
    // it replays the journal, then its takeover record fences the first.
    let second = node(dir.path(), &nats, "b", "b-data");
    wait_ready(&client, &second.base).await;
    for id in &acknowledged {
        let order = client.get(format!("{}/orders/{id}", second.base)).send().await.unwrap();
        assert_eq!(order.status(), 200, "order {id}, acknowledged by the first node, is on the second");
    }

    // The first node's next write is refused by JetStream: 503 store_unavailable, nothing placed.
    let refused = place(&client, &first.base).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable", "{problem}");
    let ready = client.get(format!("{}/readyz", first.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "fenced");
    assert_eq!(ready["fenced"], serde_json::json!(["main"]));
    // From now on it refuses before any write, and acknowledges no command either.
    assert_eq!(place(&client, &first.base).await.status(), 503);
    let cancel = client.post(format!("{}/orders/{}/cancel", first.base, acknowledged[0])).send().await.unwrap();
    assert_eq!(cancel.status(), 503, "a fenced node acknowledges no change of the store");

    // The second node writes.
    let placed = place(&client, &second.base).await;
    assert_eq!(placed.status(), 201);
    acknowledged.push(placed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    let metrics = client.get(format!("{}/metrics", first.base)).send().await.unwrap().text().await.unwrap();
    let fenced_writes: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("crema_journal_fenced_writes_total "))
        .and_then(|value| value.parse().ok())
        .expect("crema_journal_fenced_writes_total on the fenced node");
    assert!(fenced_writes >= 1.0, "the refused write is counted");

    // Both stop; a third node on an empty data directory has every acknowledged order.
    assert!(second.terminate().success());
    first.kill_9();
    let third = node(dir.path(), &nats, "c", "c-data");
    wait_ready(&client, &third.base).await;
    for id in &acknowledged {
        let order = client.get(format!("{}/orders/{id}", third.base)).send().await.unwrap();
        assert_eq!(order.status(), 200, "acknowledged order {id} is back from JetStream alone");
    }
    let cancelled = client.get(format!("{}/orders/{}", third.base, acknowledged[0])).send().await.unwrap();
    assert_ne!(cancelled.json::<Value>().await.unwrap()["status"], "cancelled", "the refused cancel did not happen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_feed_carries_every_acknowledged_version_of_every_order_in_order() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(10);
    let server = node(dir.path(), &nats, "a", "a-data");
    wait_ready(&client, &server.base).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let response = place(&client, &server.base).await;
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    let cancel = client.post(format!("{}/orders/{}/cancel", server.base, ids[0])).send().await.unwrap();
    assert!(cancel.status() == 200 || cancel.status() == 409, "cancel: {}", cancel.status());
    // Every order settles (made and ready, or cancelled and refunded).
    let finals: HashMap<String, Value> = wait_until(Duration::from_secs(20), || async {
        let mut finals = HashMap::new();
        for id in &ids {
            let order: Value = client.get(format!("{}/orders/{id}", server.base)).send().await.ok()?.json().await.ok()?;
            let settled = order["status"] == "ready" || order["payment"]["status"] == "refunded";
            if !settled {
                return None;
            }
            finals.insert(id.clone(), order);
        }
        Some(finals)
    })
    .await
    .expect("every order settles");

    let nats_client = async_nats::connect(nats.urls().as_slice()).await.unwrap();
    let context = async_nats::jetstream::new(nats_client);
    let stream = context.get_stream("CREMA_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: "crema.events.main.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut versions: HashMap<String, Vec<u64>> = HashMap::new();
    let done = |versions: &HashMap<String, Vec<u64>>| {
        finals.iter().all(|(id, order)| versions.get(id).and_then(|seen| seen.last()) == order["version"].as_u64().as_ref())
    };
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while !done(&versions) {
            let message = messages.next().await.expect("the feed goes on").unwrap();
            let order: Value = serde_json::from_slice(&message.payload).unwrap();
            let id = order["id"].as_str().unwrap().to_owned();
            let version = order["version"].as_u64().unwrap();
            assert_eq!(message.subject.as_str(), format!("crema.events.main.{id}"));
            let msg_id = message.headers.as_ref().and_then(|headers| headers.get("Nats-Msg-Id")).map(|value| value.as_str().to_owned());
            assert_eq!(msg_id, Some(format!("{id}:{version}")));
            if let Some(order) = finals.get(&id).filter(|order| order["version"].as_u64() == Some(version)) {
                assert_eq!(order["status"], serde_json::from_slice::<Value>(&message.payload).unwrap()["status"]);
            }
            versions.entry(id).or_default().push(version);
        }
    })
    .await;
    assert!(read.is_ok(), "the feed did not reach every order's last version: {versions:?}");
    for (id, seen) in &versions {
        assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "order {id}: versions out of order or repeated: {seen:?}");
        assert!(seen.len() >= 3, "order {id}: placed, made and settled are at least three versions: {seen:?}");
    }
}
