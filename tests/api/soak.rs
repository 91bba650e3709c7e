//! The kill soak: `crema serve` and `crema payment-sim` (the http gateway)
//! under load from many clients with idempotency keys, cancels and pickups,
//! while crema is killed with SIGKILL every few seconds (and payment-sim now
//! and then) and restarted. Clients retry every unknown outcome with the same
//! key, as the API asks. At the end, Jepsen-style counts:
//!
//! - `lost`: an order answered 201 that is not there, or an acknowledged
//!   cancel or pickup that did not stick;
//! - `duplicated`: one client key with two orders, or one order charged twice;
//! - `unexpected`: an order whose client was finally told it was not placed;
//! - `orphan_charges`: a capture with no order, or of a cancelled order, that
//!   is not refunded once crema has settled;
//! - `stuck`: an order not ready, picked up or cancelled-and-refunded by then;
//! - `status_regressions`: an order seen at a lower version than before.
//!
//! `make test` runs a short soak (`SOAK_CYCLES`, default 8); `make soak` a long one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};

use crate::helpers::{free_port, wait_until, Process};
use crate::nats::NatsCluster;

/// What a client was finally told about one key.
#[derive(Debug, Clone)]
enum Outcome {
    Placed(String),
    NotPlaced(#[allow(dead_code)] u16), // read through Debug, in the report
}

#[derive(Default)]
struct Ledger {
    outcomes: HashMap<String, Outcome>,
    /// Per order: the highest version seen, and the status at it.
    seen: HashMap<String, (u64, String)>,
    /// Acknowledged commands: order → status it must end in (or past).
    acknowledged: HashMap<String, &'static str>,
    regressions: Vec<String>,
}

impl Ledger {
    fn observe(&mut self, order: &Value) {
        let (Some(id), Some(version), Some(status)) = (order["id"].as_str(), order["version"].as_u64(), order["status"].as_str())
        else {
            return;
        };
        let entry = self.seen.entry(id.to_owned()).or_insert((0, String::new()));
        if version < entry.0 {
            self.regressions.push(format!("{id}: version {version} ({status}) after {} ({})", entry.0, entry.1));
        } else {
            *entry = (version, status.to_owned());
        }
    }
}

struct Cluster {
    dir: PathBuf,
    crema_port: u16,
    sim_port: u16,
    crema: Option<Process>,
    sim: Option<Process>,
}

/// Where the soak's crema keeps its orders.
pub enum Durability<'a> {
    /// RocksDB alone (`sync`, the default).
    Local,
    /// `replicated` on these JetStream servers; `wipe`: every other kill also
    /// deletes crema's data directory (the disk dies with the machine); every
    /// other cycle kills, and every fourth pauses, one JetStream server too.
    Replicated { nats: &'a mut NatsCluster, wipe: bool },
}

impl Cluster {
    fn start(dir: &Path, replicated: Option<&NatsCluster>) -> Cluster {
        let cluster_toml = replicated.map(|nats| nats.crema_toml("a")).unwrap_or_default();
        std::fs::write(dir.join("crema.toml"), format!("{STORES}{}{cluster_toml}", crate::helpers::admin_toml())).unwrap();
        let mut cluster = Cluster { dir: dir.to_owned(), crema_port: free_port(), sim_port: free_port(), crema: None, sim: None };
        cluster.start_sim();
        cluster.start_crema();
        cluster
    }

    fn start_sim(&mut self) {
        let data = self.dir.join("payment-data");
        self.sim = Some(Process::payment_sim(self.sim_port, &data, &["--latency-ms", "5", "--jitter-ms", "30"]));
    }

    fn start_crema(&mut self) {
        let bind = format!("127.0.0.1:{}", self.crema_port);
        let data = self.dir.join("data");
        let url = format!("http://127.0.0.1:{}", self.sim_port);
        let envs = [
            ("CREMA_PAYMENT__GATEWAY", "http"),
            ("CREMA_PAYMENT__URL", url.as_str()),
            ("CREMA_PAYMENT__TIMEOUT_MS", "1000"),
            ("CREMA_PAYMENT__BREAKER__OPEN_MS", "500"),
            ("CREMA_BARISTA__BREW_SCALE", "0.02"),
            ("CREMA_BARISTA__STATIONS", "3"),
            ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "300"),
        ];
        let config = self.dir.join("crema.toml");
        let args = ["serve", "--bind", &bind, "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()];
        self.crema = Some(Process::start(&args, &envs));
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.crema_port)
    }

    fn sim_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.sim_port)
    }
}

const MENU: [&str; 4] = ["americano", "latte", "espresso", "cold_brew"];

/// Two stores: gangnam routes espresso drinks to its bars and pastries to
/// its oven (so an order with both makes two tickets); hongdae has one
/// station for everything.
const STORES: &str = r#"
[[stores]]
id = "gangnam"
name = "Gangnam"
[[stores.stations]]
id = "bar-1"
serves = ["bar"]
[[stores.stations]]
id = "bar-2"
serves = ["bar"]
[[stores.stations]]
id = "oven"
serves = ["kitchen"]
[[stores]]
id = "hongdae"
name = "Hongdae"
[[stores.stations]]
id = "bar-1"
"#;

/// The `n`th order of `worker`: at either store, a drink with options, and
/// every third order a croissant too (two tickets at gangnam).
fn order_body(worker: usize, n: usize, key: &str) -> Value {
    let store = if (worker + n) % 2 == 0 { "gangnam" } else { "hongdae" };
    let mut items = vec![json!({"menu_id": MENU[(worker + n) % MENU.len()], "qty": 1 + n % 2})];
    if MENU[(worker + n) % MENU.len()] == "latte" {
        items[0]["options"] = json!({"size": "grande", "milk": "oat", "extras": ["extra_shot"]});
        items[0]["note"] = json!("soak");
    }
    if n % 3 == 0 {
        items.push(json!({"menu_id": "croissant", "qty": 1, "options": {"warming": "warmed"}}));
    }
    json!({"store": store, "customer": key, "items": items})
}

/// One customer after another: order with a key until a final answer, then
/// maybe cancel, maybe follow it to ready and pick it up.
async fn customer(worker: usize, base: String, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let client = crate::helpers::admin_client(5);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("soak-{worker}-{n}");
        let body = order_body(worker, n, &key);
        let Some(outcome) = place(&client, &base, &key, &body).await else { continue };
        let id = match &outcome {
            Outcome::Placed(id) => id.clone(),
            Outcome::NotPlaced(_) => {
                ledger.lock().unwrap().outcomes.insert(key, outcome);
                continue;
            }
        };
        ledger.lock().unwrap().outcomes.insert(key, outcome);
        let roll: f64 = rand::rng().random();
        if roll < 0.15 {
            let path = format!("{base}/orders/{id}/cancel");
            if let Some((200, order)) = command(&client, &path, &ledger).await {
                if order["status"] == "cancelled" {
                    ledger.lock().unwrap().acknowledged.insert(id, "cancelled");
                }
            }
        } else if roll < 0.6 {
            for _ in 0..100 {
                let Ok(response) = client.get(format!("{base}/orders/{id}")).send().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok(order) = response.json::<Value>().await else { continue };
                ledger.lock().unwrap().observe(&order);
                if order["status"] == "ready" {
                    let path = format!("{base}/orders/{id}/pickup");
                    if let Some((200, _)) = command(&client, &path, &ledger).await {
                        ledger.lock().unwrap().acknowledged.insert(id.clone(), "picked_up");
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// `POST /orders` with `key` until a final answer; `None` if stopped first
/// with the outcome still unknown (the final phase finishes those).
async fn place(client: &reqwest::Client, base: &str, key: &str, body: &Value) -> Option<Outcome> {
    let mut negative_answers = 0;
    for _ in 0..600 {
        let sent = client
            .post(format!("{base}/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            // Killed mid-request, or restarting: unknown, retry with the key.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let Ok(answer) = response.json::<Value>().await else { continue };
        match status {
            201 => return Some(Outcome::Placed(answer["id"].as_str().unwrap().to_owned())),
            402 => return Some(Outcome::NotPlaced(402)),
            // Pending, or the first attempt with this key is still running.
            202 | 409 => tokio::time::sleep(Duration::from_millis(100)).await,
            // "Not placed, try again": a real client tries a few times, then gives up.
            429 | 503 => {
                negative_answers += 1;
                if negative_answers >= 20 {
                    return Some(Outcome::NotPlaced(status));
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            other => panic!("POST /orders answered {other}: {answer}"),
        }
    }
    panic!("no final answer for key {key} after 600 attempts");
}

/// A cancel or pickup, repeated while the outcome is unknown.
async fn command(client: &reqwest::Client, path: &str, ledger: &Mutex<Ledger>) -> Option<(u16, Value)> {
    for _ in 0..100 {
        let Ok(response) = client.post(path).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let status = response.status().as_u16();
        let Ok(answer) = response.json::<Value>().await else { continue };
        if status == 200 {
            ledger.lock().unwrap().observe(&answer);
        }
        if status >= 500 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return Some((status, answer));
    }
    None
}

/// Every order crema holds, by id.
async fn all_orders(client: &reqwest::Client, base: &str) -> HashMap<String, Value> {
    let mut orders = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            None => format!("{base}/orders?limit=200"),
            Some(cursor) => format!("{base}/orders?limit=200&after={cursor}"),
        };
        let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for order in page["orders"].as_array().unwrap() {
            orders.insert(order["id"].as_str().unwrap().to_owned(), order.clone());
        }
        match page["next"].as_str() {
            Some(cursor) => after = Some(cursor.to_owned()),
            None => return orders,
        }
    }
}

pub async fn soak(cycles: usize, mut durability: Durability<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), match &durability {
        Durability::Local => None,
        Durability::Replicated { nats, .. } => Some(&**nats),
    });
    let mut nemeses = Vec::new();
    let ledger: Arc<Mutex<Ledger>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..12)
        .map(|worker| tokio::spawn(customer(worker, cluster.base(), ledger.clone(), stop.clone())))
        .collect();
    let began = Instant::now();
    for cycle in 1..=cycles {
        let wait_ms = rand::rng().random_range(1_000..3_000);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        cluster.crema.take().unwrap().kill_9();
        let sim_too = cycle % 3 == 0;
        if sim_too {
            cluster.sim.take().unwrap().kill_9();
            cluster.start_sim();
        }
        if let Durability::Replicated { nats, wipe } = &mut durability {
            // Every other kill the disk goes too; the others restart on a
            // cache that may be behind the stores' checkpoints by then.
            if *wipe && cycle % 2 == 1 {
                std::fs::remove_dir_all(cluster.dir.join("data")).unwrap();
            }
            nemeses.push(jetstream_nemesis(nats, cycle).await);
        }
        cluster.start_crema();
        let placed = ledger.lock().unwrap().outcomes.len();
        eprintln!("soak: cycle {cycle}/{cycles}: killed crema{} at {:?}; {placed} orders answered so far", if sim_too { " and payment-sim" } else { "" }, began.elapsed());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    if !nemeses.is_empty() {
        eprintln!("soak: JetStream nemeses: {}", nemeses.join("; "));
    }
    // A clean restart: recovery settles every intent left by the last kill.
    assert!(cluster.crema.take().unwrap().terminate().success());
    cluster.start_crema();

    let client = crate::helpers::admin_client(10);
    let base = cluster.base();
    let ledger = Arc::try_unwrap(ledger).ok().unwrap().into_inner().unwrap();
    let placed: HashMap<&str, &str> = ledger
        .outcomes
        .iter()
        .filter_map(|(key, outcome)| match outcome {
            Outcome::Placed(id) => Some((id.as_str(), key.as_str())),
            Outcome::NotPlaced(_) => None,
        })
        .collect();

    // Wait for crema to settle: every order made, every refund done.
    let settled = wait_until(Duration::from_secs(30), || async {
        let orders = all_orders(&client, &base).await;
        let busy = orders.values().filter(|order| {
            let status = order["status"].as_str().unwrap_or("");
            matches!(status, "paid" | "queued" | "brewing") || order["payment"]["status"] == "refund_pending"
        });
        (busy.count() == 0).then_some(orders)
    })
    .await;
    let orders = match settled {
        Some(orders) => orders,
        None => all_orders(&client, &base).await,
    };
    let payments: Value = client.get(format!("{}/payments", cluster.sim_base())).send().await.unwrap().json().await.unwrap();
    let payments = payments["payments"].as_array().unwrap().clone();
    // A node that loaded its stores from checkpoints lists only what they
    // hold: every other order it answers one by one (a settled one from the
    // event feed), and each is looked up so.
    let mut orders = orders;
    let wanted: HashSet<String> = placed
        .keys()
        .map(|id| (*id).to_owned())
        .chain(payments.iter().filter_map(|payment| payment["order_id"].as_str().map(str::to_owned)))
        .collect();
    let mut looked_up = 0;
    for id in wanted {
        if !orders.contains_key(&id) {
            let response = client.get(format!("{base}/orders/{id}")).send().await.unwrap();
            if response.status() == 200 {
                orders.insert(id, response.json().await.unwrap());
                looked_up += 1;
            }
        }
    }
    if looked_up > 0 {
        eprintln!("soak: {looked_up} orders not in the node's list were answered by GET /orders/{{id}} (the event feed)");
    }

    let mut lost = Vec::new();
    for (id, key) in &placed {
        match orders.get(*id) {
            None => lost.push(format!("{key}: order {id} answered 201 is gone")),
            Some(order) => {
                if let Some(status) = ledger.acknowledged.get(*id) {
                    if order["status"] != *status {
                        lost.push(format!("{id}: acknowledged {status}, now {}", order["status"]));
                    }
                }
            }
        }
    }
    let mut by_customer: HashMap<&str, usize> = HashMap::new();
    for order in orders.values() {
        *by_customer.entry(order["customer"].as_str().unwrap_or("")).or_default() += 1;
    }
    let mut charges: HashMap<&str, usize> = HashMap::new();
    for payment in &payments {
        if payment["status"] != "declined" {
            *charges.entry(payment["order_id"].as_str().unwrap()).or_default() += 1;
        }
    }
    let duplicated: Vec<String> = by_customer
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(customer, count)| format!("{customer}: {count} orders"))
        .chain(charges.iter().filter(|(_, count)| **count > 1).map(|(id, count)| format!("order {id}: {count} charges")))
        .collect();
    let unexpected: Vec<String> = orders
        .values()
        .filter(|order| !placed.contains_key(order["id"].as_str().unwrap()))
        .map(|order| {
            let customer = order["customer"].as_str().unwrap_or("");
            format!("{} ({customer}): client was told {:?}", order["id"], ledger.outcomes.get(customer))
        })
        .collect();
    let orphan_charges: Vec<String> = payments
        .iter()
        .filter(|payment| payment["status"] == "captured")
        .filter(|payment| match orders.get(payment["order_id"].as_str().unwrap()) {
            None => true,
            Some(order) => order["status"] == "cancelled",
        })
        .map(|payment| payment.to_string())
        .collect();
    // Settled: ready or picked up with every ticket done, or cancelled and refunded.
    let stuck: Vec<String> = orders
        .values()
        .filter(|order| {
            let status = order["status"].as_str().unwrap_or("");
            let made = order["tickets"].as_array().is_some_and(|tickets| tickets.iter().all(|ticket| ticket["status"] == "done"));
            let settled = (matches!(status, "ready" | "picked_up") && made)
                || (status == "cancelled" && order["payment"]["status"] == "refunded");
            !settled
        })
        .map(|order| format!("{} {} payment {}", order["id"], order["status"], order["payment"]["status"]))
        .collect();
    let mut regressions = ledger.regressions.clone();
    for (id, (version, status)) in &ledger.seen {
        if let Some(order) = orders.get(id) {
            if order["version"].as_u64().unwrap_or(0) < *version {
                regressions.push(format!("{id}: now version {} ({}), seen {version} ({status})", order["version"], order["status"]));
            }
        }
    }
    let unique: HashSet<&str> = placed.keys().copied().collect();
    let two_tickets = orders.values().filter(|order| order["tickets"].as_array().is_some_and(|t| t.len() == 2)).count();
    let at = |store: &str| orders.values().filter(|order| order["store"] == store).count();
    eprintln!(
        "soak: {} orders at gangnam, {} at hongdae, {two_tickets} with two tickets",
        at("gangnam"),
        at("hongdae")
    );
    eprintln!(
        "soak: {cycles} kill cycles in {:?}: {} keys answered, {} placed, {} not placed, {} orders, {} payments",
        began.elapsed(),
        ledger.outcomes.len(),
        unique.len(),
        ledger.outcomes.len() - unique.len(),
        orders.len(),
        payments.len(),
    );
    eprintln!(
        "soak: lost={} duplicated={} unexpected={} orphan_charges={} stuck={} status_regressions={}",
        lost.len(),
        duplicated.len(),
        unexpected.len(),
        orphan_charges.len(),
        stuck.len(),
        regressions.len()
    );
    for (name, list) in [
        ("lost", &lost),
        ("duplicated", &duplicated),
        ("unexpected", &unexpected),
        ("orphan_charges", &orphan_charges),
        ("stuck", &stuck),
        ("status_regressions", &regressions),
    ] {
        assert!(list.is_empty(), "{name}: {list:#?}");
    }
    assert!(unique.len() >= 20 * cycles.min(5), "the soak placed too few orders to mean much: {}", unique.len());
    assert!(two_tickets > 0 && at("gangnam") > 0 && at("hongdae") > 0, "the soak covers both stores and two-ticket orders");
    let crema = cluster.crema.take().unwrap();
    assert!(crema.terminate().success());
}

/// What one cycle of a replicated soak does to JetStream while crema is
/// down and coming back: odd cycles SIGKILL the journal stream's leader and
/// start it again once crema serves; every fourth pauses one server (SIGSTOP)
/// for 10 s, in the background, while crema starts and takes orders. A
/// majority stays, so nothing acknowledged may be lost.
async fn jetstream_nemesis(nats: &mut NatsCluster, cycle: usize) -> String {
    if cycle % 2 == 1 {
        let leader = nats.stream_leader("CREMA_JOURNAL").await.unwrap_or(0);
        nats.kill(leader);
        tokio::time::sleep(Duration::from_millis(500)).await;
        nats.restart(leader);
        format!("cycle {cycle}: SIGKILL journal leader n{leader}, restarted")
    } else if cycle % 4 == 0 {
        let paused = cycle % 3;
        nats.pause(paused, true);
        let pid = nats.pid(paused);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if pid > 0 {
                // SAFETY: kill(2) on the test's own child's pid has no memory effects.
                unsafe { libc::kill(pid, libc::SIGCONT) };
            }
        });
        format!("cycle {cycle}: SIGSTOP n{paused} for 10 s")
    } else {
        format!("cycle {cycle}: none")
    }
}

/// The short soak of `make test`: a few kill cycles, well under 2 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_soak_loses_duplicates_and_strands_nothing() {
    let cycles = std::env::var("SOAK_CYCLES").ok().and_then(|text| text.parse().ok()).unwrap_or(8);
    soak(cycles, Durability::Local).await;
}

/// Replicated: every other SIGKILL of crema also deletes its data directory, and
/// JetStream's journal leader is killed or a server paused on the way; every
/// acknowledged order must come back from JetStream alone, with the soak's
/// counts all zero. `CHAOS_CYCLES` for a long run (`make chaos`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_soak_loses_nothing_with_the_disk_and_a_jetstream_server() {
    let cycles = std::env::var("CHAOS_CYCLES").ok().and_then(|text| text.parse().ok()).unwrap_or(4);
    let mut nats = NatsCluster::start().await;
    soak(cycles, Durability::Replicated { nats: &mut nats, wipe: true }).await;
}
