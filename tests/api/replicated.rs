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

/// `crema serve` as node `node` of `nats`, its data in `dir/<data>`.
fn node(dir: &Path, nats: &NatsCluster, node: &str, data: &str) -> Process {
    node_with(dir, nats, node, data, &[])
}

fn node_with(dir: &Path, nats: &NatsCluster, node: &str, data: &str, envs: &[(&str, &str)]) -> Process {
    let config = dir.join(format!("{node}.toml"));
    std::fs::write(&config, format!("{}{}", admin_toml(), nats.crema_toml(node))).unwrap();
    let data = dir.join(data);
    let mut all = vec![("CREMA_BARISTA__BREW_SCALE", "0.01"), ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "200")];
    all.extend_from_slice(envs);
    Process::start(&["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()], &all)
}

/// Places `count` orders on `base`, each answered 201; their ids.
async fn place_ids(client: &reqwest::Client, base: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let response = place(client, base).await;
        assert_eq!(response.status(), 201);
        ids.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// The value of an unlabelled (or exactly labelled) sample of `/metrics`.
async fn metric(client: &reqwest::Client, base: &str, sample: &str) -> Option<f64> {
    let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
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

/// Waits until `base`'s `GET /cluster` names `node` the owner of `store` and
/// `node` takes an order there; how long that took.
async fn wait_owner(client: &reqwest::Client, base: &str, store: &str, node: &str) -> Duration {
    let started = std::time::Instant::now();
    wait_until(Duration::from_secs(30), || async {
        let view: Value = client.get(format!("{base}/cluster")).send().await.ok()?.json().await.ok()?;
        let owner = view["stores"].as_array()?.iter().find(|entry| entry["id"] == store)?["owner"].as_str()?.to_owned();
        (owner == node).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("{node} did not take {store} within 30 s"));
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_paused_past_its_lease_loses_its_store_and_acknowledges_nothing_after() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(15);
    let first = node(dir.path(), &nats, "a", "a-data");
    wait_ready(&client, &first.base).await;
    let mut acknowledged = place_ids(&client, &first.base, 3).await;
    let second = node(dir.path(), &nats, "b", "b-data");
    wait_ready(&client, &second.base).await;

    // SIGSTOP the owner for three leases: the other node takes the store over
    // (its takeover record fences the paused one) and serves it.
    first.signal(libc::SIGSTOP);
    let paused = std::time::Instant::now();
    let took = wait_owner(&client, &second.base, "main", "b").await;
    eprintln!("replicated: b took the paused owner's store after {took:?}");
    acknowledged.extend(place_ids(&client, &second.base, 1).await);
    if let Some(rest) = (Duration::from_secs(15)).checked_sub(paused.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    // Woken up: whatever it is asked is answered by the new owner or refused, never acknowledged by itself.
    first.signal(libc::SIGCONT);
    // A fresh client: the woken server closes the connections that idled through the pause.
    let client = admin_client(15);
    let late = place(&client, &first.base).await;
    let answered_by = late.headers().get("crema-node").map(|node| node.to_str().unwrap().to_owned());
    match late.status().as_u16() {
        201 => {
            assert_eq!(answered_by.as_deref(), Some("b"), "an order placed on the woken node was acknowledged by the new owner");
            acknowledged.push(late.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
        }
        503 => assert_eq!(late.json::<Value>().await.unwrap()["code"], "store_unavailable"),
        other => panic!("an order on the woken node: {other}"),
    }
    let ready = wait_until(Duration::from_secs(10), || async {
        let ready = client.get(format!("{}/readyz", first.base)).send().await.ok()?;
        let body: Value = ready.json().await.ok()?;
        (body["status"] == "fenced").then_some(body)
    })
    .await
    .expect("the woken node says it lost the store");
    assert_eq!(ready["fenced"], serde_json::json!(["main"]));
    // From now on its answers about the store are the owner's.
    let via_first = place(&client, &first.base).await;
    assert_eq!(via_first.status(), 201);
    assert_eq!(via_first.headers()["crema-node"], "b");
    acknowledged.push(via_first.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    let cancel = client.post(format!("{}/orders/{}/cancel", first.base, acknowledged[0])).send().await.unwrap();
    assert_eq!(cancel.headers()["crema-node"], "b", "a command through the woken node is the owner's");

    // Both stop; a third node on an empty data directory has every acknowledged order, each pickup number once.
    assert!(second.terminate().success());
    first.kill_9();
    let third = node(dir.path(), &nats, "c", "c-data");
    wait_ready(&client, &third.base).await;
    wait_owner(&client, &third.base, "main", "c").await;
    let mut numbers = std::collections::BTreeSet::new();
    for id in &acknowledged {
        let order = client.get(format!("{}/orders/{id}", third.base)).send().await.unwrap();
        assert_eq!(order.status(), 200, "acknowledged order {id} is back from JetStream alone");
        let order: Value = order.json().await.unwrap();
        assert!(numbers.insert(order["number"].as_u64().unwrap()), "pickup number of {id} given twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_feed_carries_every_acknowledged_version_of_every_order_in_order() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(10);
    let server = node(dir.path(), &nats, "a", "a-data");
    wait_ready(&client, &server.base).await;
    let ids = place_ids(&client, &server.base, 5).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_empty_loads_a_checkpoint_and_a_short_tail_and_finds_settled_orders_on_the_feed() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(10);
    let first = node_with(dir.path(), &nats, "a", "a-data", &[("CREMA_CLUSTER__CHECKPOINT_INTERVAL_S", "1")]);
    wait_ready(&client, &first.base).await;
    // History: orders made and picked up (settled: in no checkpoint).
    let settled = place_ids(&client, &first.base, 40).await;
    for id in &settled {
        let picked = wait_until(Duration::from_secs(20), || async {
            let response = client.post(format!("{}/orders/{id}/pickup", first.base)).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        assert!(picked.is_some(), "order {id} is made and picked up");
    }
    let journal_messages = metric(&client, &first.base, "crema_journal_groups_total").await.unwrap();
    // A checkpoint of the history…
    let first_checkpoint = wait_until(Duration::from_secs(20), || async {
        let written = metric(&client, &first.base, "crema_checkpoints_total").await?;
        let seq = metric(&client, &first.base, "crema_checkpoint_seq{store=\"main\"}").await?;
        (seq >= journal_messages).then_some(written)
    })
    .await
    .expect("a checkpoint is written every second while the journal moves");
    // …then stations paused, and a second checkpoint, which trims the journal below the first.
    for station in ["bar-1", "bar-2", "bar-3"] {
        let paused = client.post(format!("{}/stations/{station}/pause", first.base)).send().await.unwrap();
        assert_eq!(paused.status(), 200);
    }
    let second_checkpoint = wait_until(Duration::from_secs(20), || async {
        let written = metric(&client, &first.base, "crema_checkpoints_total").await?;
        (written > first_checkpoint).then_some(())
    })
    .await;
    assert!(second_checkpoint.is_some(), "the pauses moved the journal: another checkpoint");
    // Live orders after the last checkpoint: stations paused, so they wait in the queue.
    let mut live = Vec::new();
    for _ in 0..5 {
        let response = place(&client, &first.base).await;
        assert_eq!(response.status(), 201);
        live.push(response.json::<Value>().await.unwrap());
    }
    first.kill_9();

    let second = node(dir.path(), &nats, "b", "b-data");
    wait_ready(&client, &second.base).await;
    wait_owner(&client, &second.base, "main", "b").await;
    let replayed = metric(&client, &second.base, "crema_journal_replayed_total").await.unwrap();
    assert!(
        replayed < journal_messages / 2.0,
        "loading read the checkpoint and a short tail ({replayed} journal messages), not the history ({journal_messages})"
    );
    for order in &live {
        let id = order["id"].as_str().unwrap();
        let now: Value = client.get(format!("{}/orders/{id}", second.base)).send().await.unwrap().json().await.unwrap();
        assert_eq!(now["status"], "queued", "live order {id} is back, still waiting (stations paused)");
    }
    for id in &settled {
        let response = client.get(format!("{}/orders/{id}", second.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "settled order {id} is answered from the event feed");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "picked_up");
    }
    let unknown = client.get(format!("{}/orders/0190aaaa-0000-7000-8000-000000000000", second.base)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    // Pickup numbers go on from the newest order, and the pauses held.
    let next = place(&client, &second.base).await;
    assert_eq!(next.status(), 201);
    let next: Value = next.json().await.unwrap();
    let last_number = live.last().unwrap()["number"].as_u64().unwrap();
    assert_eq!(next["number"].as_u64().unwrap(), last_number % 999 + 1, "numbering goes on across the load");
    let stations: Value = client.get(format!("{}/stations", second.base)).send().await.unwrap().json().await.unwrap();
    assert!(stations.to_string().matches("\"paused\"").count() >= 3, "the pauses came back: {stations}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_jetstream_quorum_a_node_is_not_ready_and_takes_no_order_then_recovers() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(10);
    let server = node(dir.path(), &nats, "a", "a-data");
    wait_ready(&client, &server.base).await;
    let before = place_ids(&client, &server.base, 2).await;
    // Two of three servers paused: no leader can be elected, nothing can be stored.
    nats.pause(1, true);
    nats.pause(2, true);
    let not_ready = wait_until(Duration::from_secs(20), || async {
        let response = client.get(format!("{}/readyz", server.base)).send().await.ok()?;
        let body: Value = response.json().await.ok()?;
        // Connected to a paused server, the node may find its connection dead first.
        (body["status"] == "journal_no_quorum" || body["status"] == "journal_unreachable").then_some(())
    })
    .await;
    assert!(not_ready.is_some(), "/readyz says journal_no_quorum (or journal_unreachable) within 20 s");
    let refused = place(&client, &server.base).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], "store_unavailable", "refused before any charge");
    nats.pause(1, false);
    nats.pause(2, false);
    wait_ready(&client, &server.base).await;
    let after = place_ids(&client, &server.base, 1).await;
    for id in before.iter().chain(&after) {
        assert_eq!(client.get(format!("{}/orders/{id}", server.base)).send().await.unwrap().status(), 200);
    }
    let quorum = metric(&client, &server.base, "crema_journal_quorum").await;
    assert_eq!(quorum, Some(1.0));
}

/// Writes `history` settled orders of store `long`, then `live` unsettled
/// orders of each of `long` and `short`, into the (new) cache in `data`, as
/// a node that has served them holds them; the live orders' ids.
async fn seed_cache(data: &Path, history: usize, live: usize) -> Vec<String> {
    use crema::domain::{LineRequest, Menu, Order, OrderEvent, OrderRequest, OrderStatus};
    use crema::persistence::{Batch, Store, StoreWriter};

    let store = Store::open(data).unwrap();
    let writer = StoreWriter::start(store, crema::config::Durability::Async, 64, 64, Duration::ZERO);
    let menu = Menu::builtin();
    let order = |store: &str, n: usize| {
        let request = OrderRequest {
            store: Some(store.to_owned()),
            customer: (n % 3 == 0).then(|| format!("guest-{}", n % 100)),
            items: vec![LineRequest::new("americano", 1)],
        };
        let mut order = Order::paid(uuid::Uuid::now_v7().to_string(), request.validate(&menu).unwrap(), format!("k-{n}"), format!("p-{n}"), 1);
        order.number = Some((n % 999 + 1) as u16);
        order
    };
    // Ids are UUIDv7: the history is older than every live order.
    let started = std::time::Instant::now();
    for chunk in 0..history.div_ceil(10_000) {
        let mut batch = Batch::new();
        for n in chunk * 10_000..((chunk + 1) * 10_000).min(history) {
            let mut settled = order("long", n);
            settled.status = OrderStatus::PickedUp;
            batch.put_order(&settled).put_customer_index(&settled);
        }
        writer.commit(batch).await.unwrap();
        if chunk % 20 == 19 {
            eprintln!("seeded {} of {history} historic orders", (chunk + 1) * 10_000);
        }
    }
    let mut ids = Vec::new();
    for store in ["long", "short"] {
        for n in 0..live {
            let mut live = order(store, n);
            let queue_seq = ids.len() as u64 + 1;
            live.apply(OrderEvent::Queued { queue_seq }, 2).unwrap();
            ids.push(live.id.clone());
            let mut batch = Batch::new();
            batch.put_order(&live).put_customer_index(&live).put_ticket(queue_seq, &live.id);
            writer.commit(batch).await.unwrap();
        }
    }
    writer.close().await;
    eprintln!("seeded {history} historic and {} live orders in {:.1} s", ids.len(), started.elapsed().as_secs_f64());
    ids
}

/// A store with a long history (`CREMA_HISTORY` settled orders, 100,000 by
/// default; `make history-bench` takes 1,000,000) and 1,000 live orders,
/// beside a store with the same live orders and no history, loaded by a node
/// started on an empty data directory: each store costs its checkpoint (its
/// live orders) and a short tail, so the two load alike. Prints both load
/// times and the time to ready (BENCHMARKS.md); fails if the history made the
/// checkpoint grow or the load replay the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_node_loads_a_store_with_a_long_history_from_a_checkpoint_of_its_live_orders() {
    let history: usize = std::env::var("CREMA_HISTORY").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    const LIVE: usize = 1_000;
    const TAIL: usize = 50;
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(30);
    let live = seed_cache(&dir.path().join("a-data"), history, LIVE).await;
    let stores = "\n[[stores]]\nid = \"long\"\nname = \"Long\"\n[[stores.stations]]\nid = \"bar-1\"\nserves = [\"bar\", \"kitchen\"]\n\n[[stores]]\nid = \"short\"\nname = \"Short\"\n[[stores.stations]]\nid = \"bar-1\"\nserves = [\"bar\", \"kitchen\"]\n";
    let start = |node: &str, data: &str| {
        let config = dir.path().join(format!("{node}.toml"));
        std::fs::write(&config, format!("{}{stores}{}", admin_toml(), nats.crema_toml(node))).unwrap();
        let data = dir.path().join(data);
        let args = ["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()];
        // Manual stations: the live orders stay queued.
        Process::start(&args, &[("CREMA_BARISTA__MODE", "manual"), ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "200")])
    };

    // The node that served them: its checkpoints of both stores, then it stops.
    let first = start("a", "a-data");
    wait_ready(&client, &first.base).await;
    for store in ["long", "short"] {
        let sample = format!("crema_checkpoint_seq{{store=\"{store}\"}}");
        let written = wait_until(Duration::from_secs(60), || async { metric(&client, &first.base, &sample).await.filter(|seq| *seq > 0.0) }).await;
        assert!(written.is_some(), "a checkpoint of {store} within 60 s");
    }
    // One more round, after the live orders were queued at start.
    let rounds = metric(&client, &first.base, "crema_checkpoints_total").await.unwrap();
    wait_until(Duration::from_secs(30), || async { metric(&client, &first.base, "crema_checkpoints_total").await.filter(|n| *n >= rounds + 2.0) }).await;
    // A tail after the checkpoints: orders the next node replays from the journal.
    let mut live = live;
    for n in 0..TAIL {
        let body = serde_json::json!({ "store": if n % 2 == 0 { "long" } else { "short" }, "items": [{ "menu_id": "latte", "qty": 1 }] });
        let response = client.post(format!("{}/orders", first.base)).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201);
        live.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    assert!(first.terminate().success());

    // A new node on an empty data directory.
    let started = std::time::Instant::now();
    let second = start("b", "b-data");
    wait_ready(&client, &second.base).await;
    let ready_s = started.elapsed().as_secs_f64();
    let sample = |name: &str, store: &str| format!("{name}{{store=\"{store}\"}}");
    let mut seen = HashMap::new();
    for store in ["long", "short"] {
        for name in ["crema_store_load_seconds", "crema_checkpoint_bytes"] {
            seen.insert((name, store), metric(&client, &second.base, &sample(name, store)).await.unwrap_or_else(|| panic!("{name} of {store}")));
        }
    }
    let replayed = metric(&client, &second.base, "crema_journal_replayed_total").await.unwrap();
    let (long_bytes, short_bytes) = (seen[&("crema_checkpoint_bytes", "long")], seen[&("crema_checkpoint_bytes", "short")]);
    let (long_s, short_s) = (seen[&("crema_store_load_seconds", "long")], seen[&("crema_store_load_seconds", "short")]);
    eprintln!(
        "history {history}, live {LIVE} per store: ready in {ready_s:.2} s from spawn; load long {long_s:.3} s vs short {short_s:.3} s (ratio {:.2}); checkpoint long {long_bytes} B vs short {short_bytes} B; {replayed} journal messages replayed",
        long_s / short_s.max(0.001)
    );
    assert!(long_bytes < short_bytes * 1.2, "the checkpoint holds the live orders, not the history ({long_bytes} B vs {short_bytes} B)");
    // Two journal messages per order placed one at a time (its payment intent, then the order).
    assert!(replayed > 0.0 && replayed <= 3.0 * TAIL as f64, "the load replays the short tail, not the history ({replayed} messages)");
    for id in &live {
        let response = client.get(format!("{}/orders/{id}", second.base)).send().await.unwrap();
        assert_eq!(response.status(), 200, "live order {id}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "queued", "live order {id} still waits");
    }
}
