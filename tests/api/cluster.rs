//! Several crema nodes sharing a chain's stores (issue 19), through the real
//! binary: three JetStream servers, `crema payment-sim` (one gateway every
//! node charges through, so a new owner can settle a dead owner's charges)
//! and three `crema serve` nodes on six stores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{admin_client, admin_toml, wait_ready, wait_until, Process};
use crate::nats::NatsCluster;

const STORES: [&str; 6] = ["s1", "s2", "s3", "s4", "s5", "s6"];

fn chain_toml(payment_port: u16) -> String {
    let mut toml = format!("\n[payment]\ngateway = \"http\"\nurl = \"http://127.0.0.1:{payment_port}\"\n");
    for store in STORES {
        toml.push_str(&format!("\n[[stores]]\nid = \"{store}\"\nname = \"{store}\"\n[[stores.stations]]\nid = \"bar\"\n"));
    }
    toml
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Node `name` of the cluster, its data in `dir/<name>`.
fn node(dir: &Path, nats: &NatsCluster, payment_port: u16, name: &str) -> Process {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("{}{}{}", admin_toml(), chain_toml(payment_port), nats.crema_toml(name))).unwrap();
    let data = dir.join(name);
    let envs = [("CREMA_BARISTA__BREW_SCALE", "0.01"), ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "200")];
    Process::start(&["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()], &envs)
}

/// payment-sim and nodes a, b, c, each ready; payment-sim's port.
async fn three_nodes<'a>(dir: &Path, nats: &NatsCluster, client: &reqwest::Client) -> (Process, u16, BTreeMap<&'a str, Process>) {
    let payment_port = free_port();
    let payment = Process::payment_sim(payment_port, &dir.join("ledger"), &[]);
    let mut nodes = BTreeMap::new();
    for name in ["a", "b", "c"] {
        nodes.insert(name, node(dir, nats, payment_port, name));
    }
    for process in nodes.values() {
        wait_ready(client, &process.base).await;
    }
    (payment, payment_port, nodes)
}

/// Each store's owner, as `base`'s `GET /cluster` says.
async fn owners(client: &reqwest::Client, base: &str) -> BTreeMap<String, Option<String>> {
    let view: Value = client.get(format!("{base}/cluster")).send().await.unwrap().json().await.unwrap();
    view["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|store| (store["id"].as_str().unwrap().to_owned(), store["owner"].as_str().map(str::to_owned)))
        .collect()
}

/// Waits until every store has an owner among `nodes`, spread evenly.
async fn spread(client: &reqwest::Client, base: &str, nodes: &[&str]) -> BTreeMap<String, String> {
    wait_until(Duration::from_secs(40), || async {
        let owners = owners(client, base).await;
        let all: Option<BTreeMap<String, String>> = owners.into_iter().map(|(store, owner)| owner.map(|owner| (store, owner))).collect();
        let all = all?;
        let used: BTreeSet<&String> = all.values().collect();
        // Even: every node owns ⌊S/N⌋ or ⌈S/N⌉ stores (rebalancing over).
        let even = nodes.iter().all(|node| {
            let owned = all.values().filter(|owner| owner.as_str() == *node).count();
            owned >= STORES.len() / nodes.len() && owned <= STORES.len().div_ceil(nodes.len())
        });
        (even && used.iter().all(|node| nodes.contains(&node.as_str()))).then_some(all)
    })
    .await
    .unwrap_or_else(|| panic!("the stores were not spread over {nodes:?} within 40 s"))
}

async fn place(client: &reqwest::Client, base: &str, store: &str) -> reqwest::Response {
    client
        .post(format!("{base}/orders"))
        .json(&json!({"store": store, "customer": "kim", "items": [{"menu_id": "americano", "qty": 1}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_stores_answer_for_each_other_and_take_over_a_killed_nodes_stores() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(15);
    let (_payment, _, mut nodes) = three_nodes(dir.path(), &nats, &client).await;
    let bases: Vec<String> = nodes.values().map(|process| process.base.clone()).collect();
    let owner_of = spread(&client, &bases[0], &["a", "b", "c"]).await;
    eprintln!("cluster: owners {owner_of:?}");

    // Any node takes any store's order; the answer is the owner's.
    let mut placed: Vec<(String, String)> = Vec::new();
    for (round, store) in STORES.iter().cycle().take(18).enumerate() {
        let base = &bases[round % bases.len()];
        let response = place(&client, base, store).await;
        assert_eq!(response.status(), 201, "{store} through {base}");
        let node = response.headers()["crema-node"].to_str().unwrap().to_owned();
        assert_eq!(node, owner_of[*store], "the owner of {store} answered");
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["store"], *store);
        placed.push((order["id"].as_str().unwrap().to_owned(), (*store).to_owned()));
    }
    // Every node answers every order alike, with the owner's answer.
    for (id, store) in &placed {
        let mut seen = BTreeSet::new();
        for base in &bases {
            let response = client.get(format!("{base}/orders/{id}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "order {id} through {base}");
            assert_eq!(response.headers()["crema-node"].to_str().unwrap(), owner_of[store]);
            let order: Value = response.json().await.unwrap();
            seen.insert((order["id"].to_string(), order["store"].to_string()));
        }
        assert_eq!(seen.len(), 1, "the nodes disagree about order {id}: {seen:?}");
    }

    // The cluster's families (the alert CremaStoreWithoutOwner queries one of them).
    let metrics = client.get(format!("{}/metrics", bases[0])).send().await.unwrap().text().await.unwrap();
    for family in ["crema_cluster_store_has_owner{store=\"s1\"} 1", "crema_journal_connected 1", "crema_journal_quorum 1", "crema_cluster_nodes_alive 3"] {
        assert!(metrics.contains(family), "/metrics of a cluster node has {family}");
    }
    let forwarded: f64 = metrics.lines().find_map(|line| line.strip_prefix("crema_forwarded_requests_total ")).unwrap().parse().unwrap();
    assert!(forwarded > 0.0, "requests were forwarded through node a");

    // SIGKILL the owner of s1: its stores are served by the others again within 10 s.
    let victim = owner_of["s1"].clone();
    let moved: Vec<&str> = STORES.iter().copied().filter(|store| owner_of[*store] == victim).collect();
    let survivors: Vec<String> = nodes.iter().filter(|(name, _)| **name != victim).map(|(_, process)| process.base.clone()).collect();
    nodes.remove(victim.as_str()).unwrap().kill_9();
    let killed = Instant::now();
    let mut gaps = Vec::new();
    for store in &moved {
        let served = wait_until(Duration::from_secs(20), || async {
            let response = place(&client, &survivors[0], store).await;
            (response.status() == 201).then(|| killed.elapsed())
        })
        .await
        .unwrap_or_else(|| panic!("{store} was not served again within 20 s of its owner's death"));
        gaps.push(served);
    }
    eprintln!("cluster: the killed node's stores {moved:?} took orders again after {gaps:?}");
    let longest = gaps.iter().max().unwrap();
    assert!(*longest <= Duration::from_secs(10), "a dead owner's store served again within 10 s (took {longest:?})");

    // Nothing acknowledged is lost: every order is found, through every survivor.
    for (id, _) in &placed {
        for base in &survivors {
            let response = client.get(format!("{base}/orders/{id}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "acknowledged order {id} after the failover, through {base}");
        }
    }
}

/// What the rolling restart's customers saw.
#[derive(Default)]
struct Load {
    acknowledged: Vec<String>,
    /// Answers other than 201 (after retries of requests that never arrived).
    failed: Vec<String>,
    /// Requests sent again (same `Idempotency-Key`) to another node after a transport error.
    resent: usize,
}

/// Customers placing orders through a random live node of `bases` until
/// `stop`; a request that fails in transport (the node just stopped) is
/// sent again to another node with the same `Idempotency-Key`.
async fn customers(client: reqwest::Client, bases: std::sync::Arc<std::sync::Mutex<Vec<String>>>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Load {
    let mut load = Load::default();
    let mut n = 0_usize;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        n += 1;
        let store = STORES[n % STORES.len()];
        let key = format!("rolling-{n}");
        let mut outcome = None;
        for attempt in 0..5 {
            let base = {
                let bases = bases.lock().unwrap();
                bases[(n + attempt) % bases.len()].clone()
            };
            let sent = client
                .post(format!("{base}/orders"))
                .header("idempotency-key", &key)
                .json(&json!({"store": store, "customer": "kim", "items": [{"menu_id": "americano", "qty": 1}]}))
                .send()
                .await;
            match sent {
                Ok(response) => {
                    outcome = Some(response);
                    break;
                }
                Err(_) => load.resent += 1,
            }
        }
        match outcome {
            Some(response) if response.status() == 201 => {
                load.acknowledged.push(response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
            }
            Some(response) => {
                let status = response.status();
                load.failed.push(format!("{store}: {status} {}", response.text().await.unwrap_or_default()));
            }
            None => load.failed.push(format!("{store}: no node answered")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_load_fails_no_request_and_loses_no_order() {
    let nats = NatsCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = admin_client(20);
    let (_payment, payment_port, mut nodes) = three_nodes(dir.path(), &nats, &client).await;
    let first_base = nodes["a"].base.clone();
    spread(&client, &first_base, &["a", "b", "c"]).await;

    let bases = std::sync::Arc::new(std::sync::Mutex::new(nodes.values().map(|process| process.base.clone()).collect::<Vec<_>>()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(customers(client.clone(), bases.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rolling = Instant::now();
    for name in ["a", "b", "c"] {
        // The load balancer stops sending to the node (its /readyz turns 503), then it gets SIGTERM.
        let process = nodes.remove(name).unwrap();
        bases.lock().unwrap().retain(|base| *base != process.base);
        let stopped = Instant::now();
        assert!(process.terminate().success(), "node {name} stops cleanly");
        eprintln!("cluster: node {name} handed its stores over and stopped in {:?}", stopped.elapsed());
        let again = node(dir.path(), &nats, payment_port, name);
        wait_ready(&client, &again.base).await;
        bases.lock().unwrap().push(again.base.clone());
        nodes.insert(name, again);
        let any = bases.lock().unwrap()[0].clone();
        spread(&client, &any, &["a", "b", "c"]).await;
    }
    let took = rolling.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let load = load.await.unwrap();
    eprintln!(
        "cluster: rolling restart of 3 nodes took {took:?}; {} orders acknowledged, {} failed, {} requests resent after a transport error",
        load.acknowledged.len(),
        load.failed.len(),
        load.resent
    );
    assert!(load.failed.is_empty(), "no request fails during a rolling restart: {:?}", load.failed);
    assert!(load.acknowledged.len() > 50, "the customers kept ordering ({} orders)", load.acknowledged.len());
    let any = bases.lock().unwrap()[0].clone();
    for id in &load.acknowledged {
        let response = client.get(format!("{any}/orders/{id}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "acknowledged order {id} after the rolling restart");
    }
}
