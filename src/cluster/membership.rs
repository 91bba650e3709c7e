//! The nodes of a cluster and their stores' leases, in the JetStream KV
//! bucket [`CLUSTER_BUCKET`] (`cluster.replicas` replicas, `max_age =
//! cluster.lease_ms`: an entry not written again within a lease is gone).
//!
//! - `node.<name>` → [`NodeRecord`]: written by each live node every
//!   [`LeaseTiming::renew_every`]; the live nodes are those with an entry.
//! - `store.<id>` → [`LeaseRecord`]: the store's lease. Taken by a *create*
//!   (refused while another node's entry lives), renewed by an *update* that
//!   names the revision this node wrote last (refused if anyone wrote since),
//!   given back by a delete. JetStream does not tell watchers that an entry
//!   expired, so every node reads the bucket each round instead.
//!
//! Each round a node renews its node entry and its leases, reads the bucket,
//! computes [`assign`] over the live nodes, and takes the leases of the
//! stores assigned to it that nobody holds (or that a previous run of this
//! same node held). A store nobody took for two leases (its assignee cannot)
//! is taken by any node. Taking a lease is not yet owning the store: the
//! [`Hooks::take`] hook loads it and writes the journal's takeover record,
//! which fences every older writer (a lease gives liveness, the fence
//! safety). The node stops acknowledging a store at its lease's deadline
//! ([`Lease`]), checked by the journal on every write, and gives it up
//! ([`Hooks::lose`]) when a renewal is refused.
//!
//! A store this process served and then lost is not taken again by this
//! process (its order actors and queue may be stale): another node takes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::assignment::assign_barred;
use super::lease::{Lease, LeaseTiming};
use crate::config::ClusterSettings;
use crate::domain::time::now_ms;

/// A request about a store being answered here; see [`Membership::enter`].
pub struct InFlight {
    membership: Arc<Membership>,
    store: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(count) = self.membership.in_flight.get(&self.store) {
            count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How long a handover waits for the requests about the store in flight here.
const HANDOVER_DRAIN: Duration = Duration::from_secs(5);

/// How long a stopping node follows the bucket for its stores' new owners.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// Rounds in a row a store must be assigned elsewhere before its owner hands it over.
const REBALANCE_ROUNDS: u32 = 3;

/// The KV bucket of the nodes and the stores' leases.
pub const CLUSTER_BUCKET: &str = "crema_cluster";

/// A live node, as its `node.<name>` entry says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub advertise: String,
    pub started_ms: u64,
    /// Stores this run of the node served and gave up: it does not take
    /// them again (their order actors and queue here may be stale), so the
    /// assignment gives them to another node.
    #[serde(default)]
    pub gave_up: Vec<String>,
}

/// A store's lease, as its `store.<id>` entry says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    pub node: String,
    /// When this node took the store (ms since the epoch).
    pub since_ms: u64,
}

/// What the bucket said at the last round.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Each store's lease holder, with the entry's revision.
    pub leases: BTreeMap<String, (LeaseRecord, u64)>,
    /// Where each store belongs over the live nodes.
    pub assignment: BTreeMap<String, String>,
}

impl ClusterView {
    /// The node serving `store` and its HTTP address, if a live node holds it.
    pub fn owner(&self, store: &str) -> Option<(&str, &str)> {
        let (lease, _) = self.leases.get(store)?;
        let node = self.nodes.get(&lease.node)?;
        Some((lease.node.as_str(), node.advertise.as_str()))
    }
}

/// What the node does when it takes or loses a store.
pub struct Hooks {
    /// Loads the store and takes its journal over; serving it from then on.
    /// Handed the lease's deadline.
    pub take: Box<dyn Fn(String, Instant) -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
    /// The store's lease was lost: stop acknowledging it at once.
    pub lose: Box<dyn Fn(&str) + Send + Sync>,
    /// Whether the store is still this node's (taken, not fenced).
    pub owns: Box<dyn Fn(&str) -> bool + Send + Sync>,
    /// The store's lease was renewed: serve it until this deadline.
    pub renewed: Box<dyn Fn(&str, Instant) + Send + Sync>,
    /// Serves a store this process lost again if nobody wrote it since
    /// (its state here is then current); `false` if somebody did.
    pub resume: Box<dyn Fn(String, Instant) -> BoxFuture<'static, bool> + Send + Sync>,
    /// Stops serving the store (requests about it are held for its next
    /// owner); changes under way are still written.
    pub drain: Box<dyn Fn(&str) + Send + Sync>,
    /// Gives the store back before its lease is deleted, once no request
    /// about it is in flight here: the changes under way finish, its
    /// journal writes are drained.
    pub release: Box<dyn Fn(String) -> BoxFuture<'static, ()> + Send + Sync>,
}

/// A lease this node holds.
struct Held {
    lease: Lease,
    revision: u64,
    since_ms: u64,
    /// Loaded and served (not still loading).
    loaded: bool,
}

pub struct Membership {
    node: String,
    advertise: String,
    stores: Vec<String>,
    timing: LeaseTiming,
    kv: kv::Store,
    started_ms: u64,
    view: RwLock<ClusterView>,
    held: Mutex<BTreeMap<String, Held>>,
    /// Stores this process served and lost: not taken again by it.
    lost: Mutex<BTreeSet<String>>,
    /// Since when (this node saw) each store had no lease.
    unowned_since: Mutex<BTreeMap<String, Instant>>,
    /// Rounds in a row each held store was assigned to another node.
    elsewhere: Mutex<BTreeMap<String, u32>>,
    /// Stores taken (leases acquired) and handed over by this run.
    pub takeovers: std::sync::atomic::AtomicU64,
    pub handovers: std::sync::atomic::AtomicU64,
    /// Requests about each store being answered here (see [`Membership::enter`]).
    in_flight: BTreeMap<String, std::sync::atomic::AtomicUsize>,
    /// Handing over: take nothing more.
    stopping: AtomicBool,
    /// The first round ended: every store this node could take is taken.
    settled: AtomicBool,
    hooks: Hooks,
}

#[derive(Debug, thiserror::Error)]
#[error("the cluster bucket: {0}")]
pub struct MembershipError(String);

impl Membership {
    /// The cluster bucket, made if it does not exist.
    pub async fn open(
        context: &jetstream::Context,
        cluster: &ClusterSettings,
        stores: Vec<String>,
        hooks: Hooks,
    ) -> Result<Arc<Membership>, MembershipError> {
        let timing = LeaseTiming::new(Duration::from_millis(cluster.lease_ms));
        let started = Instant::now();
        let kv = loop {
            let made = match context.get_key_value(CLUSTER_BUCKET).await {
                Ok(kv) => Ok(kv),
                Err(_) => context
                    .create_key_value(kv::Config {
                        bucket: CLUSTER_BUCKET.to_owned(),
                        description: "crema: the live nodes and the stores' leases".to_owned(),
                        history: 1,
                        max_age: timing.lease,
                        storage: jetstream::stream::StorageType::File,
                        num_replicas: cluster.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|err| err.to_string()),
            };
            match made {
                Ok(kv) => break kv,
                Err(err) if started.elapsed() < Duration::from_secs(60) => {
                    tracing::warn!(bucket = CLUSTER_BUCKET, error = %err, "JetStream not ready yet; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => return Err(MembershipError(err)),
            }
        };
        let in_flight = stores.iter().map(|store| (store.clone(), std::sync::atomic::AtomicUsize::new(0))).collect();
        Ok(Arc::new(Membership {
            node: cluster.node.clone(),
            advertise: cluster.advertise.clone(),
            stores,
            timing,
            kv,
            started_ms: now_ms(),
            view: RwLock::new(ClusterView::default()),
            held: Mutex::new(BTreeMap::new()),
            lost: Mutex::new(BTreeSet::new()),
            unowned_since: Mutex::new(BTreeMap::new()),
            elsewhere: Mutex::new(BTreeMap::new()),
            in_flight,
            takeovers: std::sync::atomic::AtomicU64::new(0),
            handovers: std::sync::atomic::AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            settled: AtomicBool::new(false),
            hooks,
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Counts a request about `store` as in flight here until the guard drops.
    pub fn enter(self: &Arc<Self>, store: &str) -> Option<InFlight> {
        let count = self.in_flight.get(store)?;
        count.fetch_add(1, Ordering::SeqCst);
        Some(InFlight { membership: self.clone(), store: store.to_owned() })
    }

    /// What the bucket said at the last round.
    pub fn view(&self) -> ClusterView {
        self.view.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The stores this node holds the lease of and serves, with since when.
    pub fn serving(&self) -> BTreeMap<String, u64> {
        let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.iter().filter(|(store, held)| held.loaded && (self.hooks.owns)(store)).map(|(store, held)| (store.clone(), held.since_ms)).collect()
    }

    /// Whether the first round is over (the stores this node could take are served).
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Rounds until [`Membership::hand_over`]; the first one takes this
    /// node's share before it returns (`settled`).
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.timing.renew_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Each deadline is enforced by the journal on every write; this only
        // says so in the logs and gives the store up early.
        while !self.stopping.load(Ordering::Acquire) {
            tick.tick().await;
            if let Err(err) = self.round().await {
                tracing::warn!(error = %err, "a cluster round failed; trying again");
            }
            self.settled.store(true, Ordering::Release);
        }
    }

    async fn round(&self) -> Result<(), MembershipError> {
        if self.stopping.load(Ordering::Acquire) {
            return Ok(());
        }
        let record = self.record();
        let payload = serde_json::to_vec(&record).map_err(|err| MembershipError(err.to_string()))?;
        self.kv.put(format!("node.{}", self.node), payload.into()).await.map_err(|err| MembershipError(err.to_string()))?;
        self.renew().await;
        let view = self.read().await?;
        *self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner) = view.clone();
        self.rebalance(&view).await;
        self.take_share(&view).await;
        Ok(())
    }

    /// Renews every lease held; gives up those refused or past their deadline.
    async fn renew(&self) {
        let held: Vec<(String, u64, u64, bool)> = {
            let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            held.iter().map(|(store, held)| (store.clone(), held.revision, held.since_ms, held.loaded)).collect()
        };
        for (store, revision, since_ms, loaded) in held {
            if loaded && !(self.hooks.owns)(&store) {
                // Fenced by a newer writer, or past the deadline already.
                self.give_up(&store, "the store's journal was fenced or its lease ran out");
                continue;
            }
            let record = LeaseRecord { node: self.node.clone(), since_ms };
            let payload = serde_json::to_vec(&record).unwrap_or_default();
            let sent = Instant::now();
            match self.kv.update(format!("store.{store}"), payload.into(), revision).await {
                Ok(revision) => {
                    let mut all = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(held) = all.get_mut(&store) {
                        held.lease.renewed(sent);
                        held.revision = revision;
                        (self.hooks.renewed)(&store, held.lease.deadline());
                    }
                }
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    self.give_up(&store, "another node wrote the store's lease");
                }
                Err(err) => {
                    let past = {
                        let all = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        all.get(&store).is_none_or(|held| !held.lease.holds(Instant::now()))
                    };
                    tracing::warn!(%store, error = %err, past_deadline = past, "renewing the store's lease failed");
                    if past {
                        self.give_up(&store, "its lease could not be renewed before its deadline");
                    }
                }
            }
        }
    }

    fn give_up(&self, store: &str, why: &str) {
        let was = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(store);
        if let Some(held) = was {
            (self.hooks.lose)(store);
            if held.loaded {
                self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(store.to_owned());
            }
            tracing::error!(%store, node = %self.node, reason = why, "this node gave the store up");
        }
    }

    fn record(&self) -> NodeRecord {
        let gave_up = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
        NodeRecord { advertise: self.advertise.clone(), started_ms: self.started_ms, gave_up }
    }

    /// Hands over the stores this node serves that the assignment gives to
    /// another live node three rounds in a row (a node joined): drained,
    /// lease deleted; the assignee takes it at its next round.
    async fn rebalance(&self, view: &ClusterView) {
        let mut moving = Vec::new();
        {
            let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut elsewhere = self.elsewhere.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            elsewhere.retain(|store, _| held.contains_key(store));
            for (store, held) in held.iter() {
                let assignee = view.assignment.get(store);
                let away = held.loaded && assignee.is_some_and(|node| *node != self.node);
                if !away {
                    elsewhere.remove(store);
                    continue;
                }
                let rounds = elsewhere.entry(store.clone()).or_insert(0);
                *rounds += 1;
                if *rounds >= REBALANCE_ROUNDS {
                    moving.push((store.clone(), assignee.cloned().unwrap_or_default()));
                }
            }
        }
        // One store per round: the others keep being served meanwhile.
        if let Some((store, to)) = moving.into_iter().next() {
            tracing::info!(%store, from = %self.node, %to, "handing the store over to the node the assignment gives it to");
            self.hand_over_store(&store).await;
            self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(store);
        }
    }

    async fn hand_over_store(&self, store: &str) {
        (self.hooks.drain)(store);
        // Requests that saw the store served were counted before it stopped: they finish here.
        let started = Instant::now();
        while self.in_flight.get(store).is_some_and(|count| count.load(Ordering::SeqCst) > 0) && started.elapsed() < HANDOVER_DRAIN {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (self.hooks.release)(store.to_owned()).await;
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(store);
        if let Err(err) = self.kv.delete(format!("store.{store}")).await {
            tracing::warn!(%store, error = %err, "deleting the store's lease failed: it expires on its own");
        }
        self.handovers.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%store, node = %self.node, "handed the store over");
    }

    /// The bucket's live entries.
    async fn read(&self) -> Result<ClusterView, MembershipError> {
        let mut view = ClusterView::default();
        let mut keys = self.kv.keys().await.map_err(|err| MembershipError(err.to_string()))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|err| MembershipError(err.to_string()))?);
        }
        for key in names {
            let Some(entry) = self.kv.entry(key.clone()).await.map_err(|err| MembershipError(err.to_string()))? else { continue };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            if let Some(node) = key.strip_prefix("node.") {
                if let Ok(record) = serde_json::from_slice::<NodeRecord>(&entry.value) {
                    view.nodes.insert(node.to_owned(), record);
                }
            } else if let Some(store) = key.strip_prefix("store.") {
                if let Ok(record) = serde_json::from_slice::<LeaseRecord>(&entry.value) {
                    view.leases.insert(store.to_owned(), (record, entry.revision));
                }
            }
        }
        if !self.stopping.load(Ordering::Acquire) {
            view.nodes.insert(self.node.clone(), self.record());
        }
        let live: Vec<String> = view.nodes.keys().cloned().collect();
        let barred = view.nodes.iter().map(|(node, record)| (node.clone(), record.gave_up.clone())).collect();
        view.assignment = assign_barred(&self.stores, &live, &barred);
        Ok(view)
    }

    /// Takes the leases of the stores this node should serve and loads them.
    async fn take_share(&self, view: &ClusterView) {
        let now = Instant::now();
        let mut wanted = Vec::new();
        {
            let held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let lost = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut unowned = self.unowned_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for store in &self.stores {
                if held.contains_key(store) {
                    continue;
                }
                let lease = view.leases.get(store);
                let orphaned = match lease {
                    Some(_) => {
                        unowned.remove(store);
                        false
                    }
                    None => now.duration_since(*unowned.entry(store.clone()).or_insert(now)) >= self.timing.lease * 2,
                };
                let mine = view.assignment.get(store) == Some(&self.node);
                // A store this process lost is only tried again when nobody
                // else took it (JetStream was away): see `Hooks::resume`.
                if lost.contains(store) {
                    if lease.is_none() && orphaned {
                        wanted.push((store.clone(), None));
                    }
                    continue;
                }
                match lease {
                    // A previous run of this node held it: nobody else can have it since.
                    Some((record, revision)) if record.node == self.node => wanted.push((store.clone(), Some(*revision))),
                    Some(_) => {}
                    None if mine || orphaned => wanted.push((store.clone(), None)),
                    None => {}
                }
            }
        }
        for (store, revision) in wanted {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let since_ms = now_ms();
            let record = LeaseRecord { node: self.node.clone(), since_ms };
            let payload: bytes::Bytes = serde_json::to_vec(&record).unwrap_or_default().into();
            let key = format!("store.{store}");
            let sent = Instant::now();
            let taken = match revision {
                Some(revision) => self.kv.update(&key, payload, revision).await.map_err(|err| err.to_string()),
                None => self.kv.create(&key, payload).await.map_err(|err| err.to_string()),
            };
            let revision = match taken {
                Ok(revision) => revision,
                Err(err) => {
                    tracing::debug!(%store, error = %err, "the store's lease was taken by another node first");
                    continue;
                }
            };
            let lease = Lease::acquired(self.timing, sent);
            let deadline = lease.deadline();
            self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(
                store.clone(),
                Held { lease, revision, since_ms, loaded: false },
            );
            let was_lost = self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&store);
            if was_lost {
                if (self.hooks.resume)(store.clone(), deadline).await {
                    self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&store);
                    if let Some(held) = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&store) {
                        held.loaded = true;
                    }
                } else {
                    self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&store);
                    let _ = self.kv.delete(&key).await;
                }
                continue;
            }
            tracing::info!(%store, node = %self.node, "took the store's lease; loading it");
            // Loading may outlast a renewal: the renewals go on meanwhile.
            match self.load(&store, deadline).await {
                Ok(()) => {
                    self.takeovers.fetch_add(1, Ordering::Relaxed);
                    if let Some(held) = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&store) {
                        held.loaded = true;
                        (self.hooks.renewed)(&store, held.lease.deadline());
                    }
                }
                Err(err) => {
                    tracing::error!(%store, error = %err, "loading the store failed; giving its lease back");
                    self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&store);
                    (self.hooks.lose)(&store);
                    let _ = self.kv.delete(&key).await;
                }
            }
        }
    }

    /// Runs the take hook while renewing the leases held every renewal period.
    async fn load(&self, store: &str, deadline: Instant) -> Result<(), String> {
        let take = (self.hooks.take)(store.to_owned(), deadline);
        tokio::pin!(take);
        let mut tick = tokio::time::interval(self.timing.renew_every());
        tick.tick().await;
        loop {
            tokio::select! {
                done = &mut take => return done,
                _ = tick.tick() => self.renew().await,
            }
        }
    }

    /// Gives every store back (drained, then its lease deleted) and leaves
    /// the cluster: the other nodes take the stores at their next round.
    /// Then follows the bucket until each store has a new owner (or
    /// [`HANDOVER_WAIT`] passed), so that requests this node still holds go
    /// to them.
    pub async fn hand_over(&self) {
        self.stopping.store(true, Ordering::Release);
        let _ = self.kv.delete(format!("node.{}", self.node)).await;
        let held: Vec<String> = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner).keys().cloned().collect();
        for store in &held {
            self.hand_over_store(store).await;
        }
        let started = Instant::now();
        while !held.is_empty() && started.elapsed() < HANDOVER_WAIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Ok(view) = self.read().await else { continue };
            let taken = held.iter().all(|store| view.owner(store).is_some_and(|(node, _)| node != self.node));
            *self.view.write().unwrap_or_else(std::sync::PoisonError::into_inner) = view;
            if taken {
                tracing::info!(stores = held.len(), took_ms = started.elapsed().as_millis() as u64, "every store this node handed over has a new owner");
                return;
            }
        }
        if !held.is_empty() {
            tracing::warn!("not every store this node handed over has a new owner yet; they are taken at the other nodes' next round");
        }
    }
}
