//! The replicated journal: each store's changes on NATS JetStream.
//!
//! Stream `CREMA_JOURNAL` (file storage, `cluster.replicas` replicas, no age
//! limit) holds one subject per store, `crema.journal.<store>`. Each message
//! is a [`JournalEntry`]: a group of changes (every batch of one group commit
//! of that store, in order) or a takeover record.
//!
//! **Fencing, not timing.** Every message is a conditional publish: it names
//! the sequence of the store subject's last message this node knows
//! (`Nats-Expected-Last-Subject-Sequence`). JetStream refuses it (10071) when
//! any other message reached the subject since — another node's takeover or
//! write. A node starting on a store catches up with its journal and writes a
//! takeover record; from then on an older writer's next write is refused, and
//! that node stops acknowledging the store's changes ([`StoreError::Fenced`],
//! 503 `store_unavailable`). A fenced subject takes one write in flight, so
//! each store has one committer task that groups whatever waits (up to
//! `store.max_batch` batches or [`GROUP_BYTES_MAX`]) into one message.
//!
//! **Unknown outcomes.** A publish whose ack does not come (timeout, a lost
//! connection, no quorum) is retried with the same `Nats-Msg-Id`: JetStream
//! answers a duplicate inside its 2-minute window with the first answer, and
//! after it the expected-sequence check refuses the copy, whereupon the
//! subject's last message is read: if it carries our message id, the group
//! was stored. Meanwhile the store is not writable (new orders are refused
//! before any charge) and the group's callers wait.
//!
//! **The cache.** A group is applied to RocksDB (not synced: the journal is
//! the durable copy) after JetStream acknowledged it, in the same RocksDB
//! batch as `meta/journal-seq/<store>`, the last journal sequence applied. At
//! start a node replays each store's journal from that sequence: a node with
//! an empty data directory rebuilds every store from JetStream alone.
//!
//! **Checkpoints.** Now and then ([`Replicated::checkpoint`], every
//! `cluster.checkpoint_interval_s`) a store's records that loading needs
//! (live orders, settings, intents, idempotency records, its newest order)
//! are written, as of a journal sequence, to the object store
//! `crema_checkpoints`; the journal is then trimmed below the previous
//! checkpoint (one generation kept) and below what the event feed published.
//! Loading a store into an empty cache = its checkpoint, then the journal
//! after it. Every journal message names the previous one of its subject
//! (`Crema-Prev-Seq`), and loading checks that chain: a gap is an error.
//! Settled orders are not in a checkpoint: `GET /orders/{id}` finds them in
//! the event feed (kept `cluster.retention_days`).
//!
//! **Which stores.** A node writes the stores it took ([`Replicated::take`]:
//! catch up, takeover record, committer) and gives them up when their lease
//! ends ([`Replicated::lose`]) or it hands them over ([`Replicated::drain`],
//! then [`Replicated::release`]); `crate::cluster::membership` decides when.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, message::PublishMessage as Publish, object_store, stream};
use tokio::io::AsyncReadExt;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, CodecError, JournalEntry};
use super::store::{Batch, Store, StoreError};
use super::writer::StoreWriter;
use crate::config::ClusterSettings;
use crate::domain::time::now_ms;
use crate::metrics::{Histogram, GROUP_SIZES, LATENCY_US};

/// The stream of every store's journal.
pub const JOURNAL_STREAM: &str = "CREMA_JOURNAL";
/// The stream of order versions for downstream consumers (API.md "Event feed").
pub const EVENTS_STREAM: &str = "CREMA_EVENTS";
/// The header naming the node that wrote a journal message.
pub const NODE_HEADER: &str = "Crema-Node";
/// The header naming the previous message of the same store's journal (the
/// sequence the conditional publish expected): loading checks the chain, so a
/// gap (a checkpoint older than the journal's trimmed start) is an error, not
/// a silent loss.
pub const PREV_HEADER: &str = "Crema-Prev-Seq";
/// The object store bucket of the stores' checkpoints (object name: the store id).
pub const CHECKPOINT_BUCKET: &str = "crema_checkpoints";
/// The header of an event naming the journal message it came from (see `crate::feed`).
pub const JOURNAL_SEQ_HEADER: &str = "Crema-Journal-Seq";
/// A group's message stays well under JetStream's default 1 MiB `max_payload`.
pub const GROUP_BYTES_MAX: usize = 512 << 10;
/// How long start-up waits for JetStream (servers starting, a meta leader elected).
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// The journal subject of `store`.
pub fn journal_subject(store: &str) -> String {
    format!("crema.journal.{store}")
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot reach JetStream at {servers}: {reason}")]
    Connect { servers: String, reason: String },
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("the cache: {0}")]
    Cache(#[from] StoreError),
    #[error("store {store}: this data directory applied its journal up to {cached}, but the journal ends at {journal}: it belongs to another journal (start with an empty data directory)")]
    CacheAhead { store: String, cached: u64, journal: u64 },
    #[error("store {store}: journal message {seq} does not decode: {source}")]
    Corrupt { store: String, seq: u64, source: CodecError },
    #[error("store {store}: journal message {seq} follows message {found}, but {expected} was the last one applied: the journal has a gap (a checkpoint older than the trimmed journal?)")]
    Gap { store: String, seq: u64, expected: u64, found: u64 },
}

/// Counters for `/stats` and `/metrics`.
#[derive(Debug)]
pub struct JournalStats {
    /// Journal messages written (groups).
    pub groups: AtomicU64,
    /// Batches those groups carried.
    pub requests: AtomicU64,
    /// Batches per group.
    pub group_sizes: Histogram,
    /// From a group's publish to JetStream's ack (retries included), µs.
    pub ack_us: Histogram,
    /// Writes JetStream refused because another node wrote the store since.
    pub fenced_writes: AtomicU64,
    /// Publishes tried again after no answer (timeout, connection lost).
    pub retries: AtomicU64,
    /// Journal messages replayed into the cache at start.
    pub replayed: AtomicU64,
    /// Checkpoints written by this node.
    pub checkpoints: AtomicU64,
}

impl Default for JournalStats {
    fn default() -> Self {
        JournalStats {
            groups: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            group_sizes: Histogram::new(GROUP_SIZES),
            ack_us: Histogram::new(LATENCY_US),
            fenced_writes: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
        }
    }
}

/// What one store's journal is doing, shared by its committer and the handles.
#[derive(Debug, Default)]
struct StoreJournalState {
    /// Another node wrote the store's journal: this node writes it no more.
    fenced: AtomicBool,
    /// A group is waiting for JetStream (no answer yet): new changes would wait too.
    stalled: AtomicBool,
    /// The sequence of the last message of the store's subject this node knows.
    last_seq: AtomicU64,
    /// The store's newest checkpoint this node knows: its journal sequence,
    /// when it was written (ms) and its size.
    checkpoint_seq: AtomicU64,
    checkpoint_at_ms: AtomicU64,
    checkpoint_bytes: AtomicU64,
    /// How long loading the store took at start (checkpoint, journal tail, takeover), ms.
    load_ms: AtomicU64,
    /// Being handed over: requests about the store go to its next owner
    /// (see `crate::cluster::forward`); changes already under way are still written.
    draining: AtomicBool,
    /// Taken, its orders not yet back in the engine: requests about it wait
    /// (see [`Replicated::serve`]).
    loading: AtomicBool,
    /// Until when this node may acknowledge the store's changes (its lease's
    /// deadline, as ms after [`epoch`]); 0: no lease limits it.
    serve_until_ms: AtomicU64,
}

impl StoreJournalState {
    /// Whether the store's lease (if one limits it) still lets this node acknowledge.
    fn in_lease(&self) -> bool {
        let until = self.serve_until_ms.load(Ordering::Acquire);
        until == 0 || since_epoch_ms(Instant::now()) < until
    }
}

/// The process's reference instant for deadlines kept in atomics.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch_ms(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

/// A store's checkpoint as `/metrics` shows it.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointInfo {
    pub seq: u64,
    pub at_ms: u64,
    pub bytes: u64,
}

struct Request {
    batch: Batch,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

struct StoreJournal {
    tx: mpsc::Sender<Request>,
    state: Arc<StoreJournalState>,
}

/// The replicated journals of this node's stores.
pub struct Replicated {
    node: String,
    client: async_nats::Client,
    context: jetstream::Context,
    journal: stream::Stream,
    checkpoints: object_store::ObjectStore,
    /// The stores this node writes now (taken, not released or lost).
    stores: std::sync::RwLock<HashMap<String, Arc<StoreJournal>>>,
    cache: Store,
    writer: StoreWriter,
    max_batch: usize,
    mailbox: usize,
    stats: Arc<JournalStats>,
    /// Set by [`Replicated::close`]: a group without an answer stops being retried.
    closing: Arc<AtomicBool>,
    /// The journal stream answered its last health probe (its leader is
    /// elected: a quorum of the replicas is up); see [`probe_quorum`].
    quorum: Arc<AtomicBool>,
    committers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Replicated {
    /// Connects to JetStream, makes sure the streams and the checkpoint
    /// bucket exist, and clears the cache if it is older than any of
    /// `stores`' checkpoints. Takes no store: see [`Replicated::take`].
    pub async fn open(
        cluster: &ClusterSettings,
        stores: &[String],
        cache: &Store,
        writer: &StoreWriter,
        max_batch: usize,
        mailbox: usize,
    ) -> Result<Arc<Replicated>, JournalError> {
        let servers = cluster.nats.join(",");
        let started = Instant::now();
        let client = loop {
            let options = async_nats::ConnectOptions::new()
                .name(format!("crema-{}", cluster.node))
                .connection_timeout(Duration::from_secs(2))
                .max_reconnects(None);
            match options.connect(cluster.nats.as_slice()).await {
                Ok(client) => break client,
                Err(err) if started.elapsed() < STARTUP_PATIENCE => {
                    tracing::warn!(servers = %servers, error = %err, "JetStream not reachable yet; trying again");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(err) => return Err(JournalError::Connect { servers, reason: err.to_string() }),
            }
        };
        let mut context = jetstream::new(client.clone());
        context.set_timeout(Duration::from_millis(cluster.request_timeout_ms));
        let journal = ensure_stream(&context, journal_config(cluster), started).await?;
        ensure_stream(&context, events_config(cluster), started).await?;

        let checkpoints = ensure_checkpoint_bucket(&context, cluster, started).await?;

        // A cache behind a store's checkpoint may miss journal messages that
        // were trimmed since: it is cleared, and every store loads afresh.
        let mut behind = Vec::new();
        for store in stores {
            let cached = cache.journal_seq(store)?;
            let checkpoint = patiently(|| checkpoint_seq(&checkpoints, store)).await?;
            if cached > 0 && cached < checkpoint {
                behind.push(format!("{store} (cache at {cached}, checkpoint at {checkpoint})"));
            }
        }
        tokio::task::block_in_place(|| cache.ensure_live_index())?;
        if !behind.is_empty() {
            let cleared = tokio::task::block_in_place(|| cache.clear_store_records())?;
            tracing::warn!(stores = %behind.join(", "), cleared, "the cache is older than the stores' checkpoints; cleared, loading from the checkpoints");
        }
        let quorum = Arc::new(AtomicBool::new(true));
        let probe_every = Duration::from_millis((cluster.lease_ms / 5).clamp(200, 2_000));
        let prober = tokio::spawn(probe_quorum(journal.clone(), quorum.clone(), probe_every));
        tracing::info!(node = %cluster.node, servers = %servers, took_ms = started.elapsed().as_millis() as u64, "connected to JetStream");
        Ok(Arc::new(Replicated {
            node: cluster.node.clone(),
            client,
            context,
            journal,
            checkpoints,
            stores: std::sync::RwLock::new(HashMap::new()),
            cache: cache.clone(),
            writer: writer.clone(),
            max_batch,
            mailbox,
            stats: Arc::new(JournalStats::default()),
            closing: Arc::new(AtomicBool::new(false)),
            quorum,
            committers: std::sync::Mutex::new(vec![prober]),
        }))
    }

    /// Takes `store` over: brings the cache up to date with its journal
    /// (from its checkpoint when the cache has nothing of it, or only what
    /// is older than the checkpoint), writes the takeover record (from then
    /// on every older writer is fenced) and starts its committer. Waits out
    /// a JetStream electing a leader, up to a minute. `deadline`: the lease's
    /// (see [`Replicated::serve_until`]).
    pub async fn take(&self, store: &str, deadline: Option<Instant>) -> Result<(), JournalError> {
        if self.owns(store) {
            return Ok(());
        }
        let (cache, writer, stats) = (&self.cache, &self.writer, &self.stats);
        let loading = Instant::now();
        let cached = cache.journal_seq(store)?;
        let checkpoint = patiently(|| checkpoint_seq(&self.checkpoints, store)).await?;
        if cached > 0 && cached < checkpoint {
            let owned = (cache.clone(), store.to_owned());
            let cleared = tokio::task::spawn_blocking(move || owned.0.clear_live_records_of(&owned.1))
                .await
                .map_err(|err| JournalError::JetStream(format!("clearing {store}: {err}")))??;
            tracing::warn!(store, cached, checkpoint, cleared, "the cache of the store is older than its checkpoint; cleared its live records, loading from the checkpoint");
        }
        // Loading a checkpoint, catching up and taking over are each safe to
        // repeat: a JetStream electing a leader is waited for.
        let state = patiently(|| async {
            let state = Arc::new(StoreJournalState::default());
            if cache.journal_seq(store)? == 0 {
                if let Some(info) = load_checkpoint(&self.checkpoints, store, writer).await? {
                    state.checkpoint_seq.store(info.seq, Ordering::Release);
                    state.checkpoint_at_ms.store(info.at_ms, Ordering::Release);
                    state.checkpoint_bytes.store(info.bytes, Ordering::Release);
                }
            }
            state.last_seq.store(catch_up(&self.journal, store, cache, writer, stats).await?, Ordering::Release);
            take_over(&self.context, &self.journal, store, &self.node, cache, writer, &state, stats).await?;
            Ok(state)
        })
        .await?;
        state.load_ms.store(loading.elapsed().as_millis() as u64, Ordering::Release);
        if let Some(deadline) = deadline {
            state.serve_until_ms.store(since_epoch_ms(deadline), Ordering::Release);
            // Taken for the cluster: served once its orders are back (`serve`).
            state.loading.store(true, Ordering::Release);
        }
        let (tx, rx) = mpsc::channel(self.mailbox);
        let committer = Committer {
            store: store.to_owned(),
            node: self.node.clone(),
            boot: uuid::Uuid::now_v7().simple().to_string(),
            context: self.context.clone(),
            journal: self.journal.clone(),
            writer: writer.clone(),
            state: state.clone(),
            stats: stats.clone(),
            closing: self.closing.clone(),
            max_batch: self.max_batch,
        };
        let task = tokio::spawn(committer.run(rx));
        self.committers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(task);
        self.write_stores().insert(store.to_owned(), Arc::new(StoreJournal { tx, state }));
        tracing::info!(store, node = %self.node, took_ms = loading.elapsed().as_millis() as u64, "this node writes the store");
        Ok(())
    }

    /// Stops writing `store`: changes handed over before are answered
    /// (written, or refused if fenced), later ones are refused (fenced).
    /// Its lease is the caller's.
    pub async fn release(&self, store: &str) {
        let Some(journal) = self.write_stores().remove(store) else { return };
        journal.state.fenced.store(true, Ordering::Release);
        let (reply, answer) = oneshot::channel();
        if journal.tx.send(Request { batch: Batch::default(), reply }).await.is_ok() {
            let _ = answer.await;
        }
        tracing::info!(store, node = %self.node, "this node no longer writes the store");
    }

    /// Marks `store` lost (its lease ran out or another node wrote it):
    /// nothing more is acknowledged for it, and the journal's fence stops a
    /// write already on its way. It stays listed as fenced (`/readyz` says
    /// so): this process's state of it may be stale, and only a restart
    /// lets this node serve it again.
    pub fn lose(&self, store: &str) {
        if let Some(journal) = self.read_stores().get(store) {
            if !journal.state.fenced.swap(true, Ordering::AcqRel) {
                tracing::error!(store, node = %self.node, "this node lost the store: it acknowledges nothing more of it");
            }
        }
    }

    /// Whether this node serves `store` now (taken, not fenced, in its
    /// lease, not being handed over).
    pub fn owns(&self, store: &str) -> bool {
        self.read_stores().get(store).is_some_and(|journal| {
            !journal.state.fenced.load(Ordering::Acquire)
                && !journal.state.draining.load(Ordering::Acquire)
                && !journal.state.loading.load(Ordering::Acquire)
                && journal.state.in_lease()
        })
    }

    /// Serves a store this node lost (its lease ran out, JetStream did not
    /// answer) again, if nobody wrote its journal since this node's last
    /// write: then this node's state of it is current. `false`: another
    /// node wrote it (a takeover at least), so this node's state is stale.
    pub async fn resume(&self, store: &str, deadline: Instant) -> bool {
        let Some(journal) = self.journal_of(store) else { return false };
        if !journal.state.fenced.load(Ordering::Acquire) || journal.state.draining.load(Ordering::Acquire) {
            return false;
        }
        let last = match last_on_subject(&self.journal, &journal_subject(store)).await {
            Ok(last) => last.map_or(0, |message| message.sequence),
            Err(_) => return false,
        };
        if last != journal.state.last_seq.load(Ordering::Acquire) {
            return false;
        }
        journal.state.serve_until_ms.store(since_epoch_ms(deadline), Ordering::Release);
        journal.state.fenced.store(false, Ordering::Release);
        tracing::warn!(store, node = %self.node, seq = last, "nobody wrote the store while this node had lost it: serving it again");
        true
    }

    /// `store`'s orders are back in the engine: requests about it are served here.
    pub fn serve(&self, store: &str) {
        if let Some(journal) = self.read_stores().get(store) {
            journal.state.loading.store(false, Ordering::Release);
        }
    }

    /// Starts handing `store` over: new requests about it go elsewhere, the
    /// changes under way are still written (see [`Replicated::release`]).
    pub fn drain(&self, store: &str) {
        if let Some(journal) = self.read_stores().get(store) {
            journal.state.draining.store(true, Ordering::Release);
        }
    }

    /// `store`'s lease lets this node acknowledge its changes until `deadline`.
    pub fn serve_until(&self, store: &str, deadline: Instant) {
        if let Some(journal) = self.read_stores().get(store) {
            journal.state.serve_until_ms.fetch_max(since_epoch_ms(deadline), Ordering::AcqRel);
        }
    }

    /// The stores this node writes now, sorted.
    pub fn owned_stores(&self) -> Vec<String> {
        let mut owned: Vec<String> = self.read_stores().iter().filter(|(_, journal)| !journal.state.fenced.load(Ordering::Acquire)).map(|(store, _)| store.clone()).collect();
        owned.sort();
        owned
    }

    fn read_stores(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<StoreJournal>>> {
        self.stores.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_stores(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<StoreJournal>>> {
        self.stores.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn journal_of(&self, store: &str) -> Option<Arc<StoreJournal>> {
        self.read_stores().get(store).cloned()
    }

    /// Writes `batch` on `store`'s journal, then into the cache.
    pub async fn commit(&self, store: &str, batch: Batch) -> Result<(), StoreError> {
        let journal = self.journal_of(store).ok_or_else(|| StoreError::Fenced(store.to_owned()))?;
        if journal.state.fenced.load(Ordering::Acquire) || !journal.state.in_lease() {
            return Err(StoreError::Fenced(store.to_owned()));
        }
        let (reply, answer) = oneshot::channel();
        journal.tx.send(Request { batch, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether `store`'s changes can be written now (owned, not fenced, JetStream answering).
    pub fn is_writable(&self, store: &str) -> bool {
        self.read_stores().get(store).is_some_and(|journal| {
            !journal.state.fenced.load(Ordering::Acquire) && !journal.state.stalled.load(Ordering::Acquire) && journal.state.in_lease()
        }) && self.is_connected()
            && self.has_quorum()
    }

    /// Whether the journal stream answered its last probe (a leader is
    /// elected: a quorum of its replicas is up). Without one, no write can be
    /// acknowledged: new orders are refused before any charge.
    pub fn has_quorum(&self) -> bool {
        self.quorum.load(Ordering::Acquire)
    }

    pub fn is_fenced(&self, store: &str) -> bool {
        self.read_stores().get(store).is_none_or(|journal| journal.state.fenced.load(Ordering::Acquire))
    }

    /// Every store writable: what `/readyz` asks.
    pub fn is_healthy(&self) -> bool {
        self.read_stores().keys().all(|store| self.is_writable(store))
    }

    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stores this node has lost to another writer.
    pub fn fenced_stores(&self) -> Vec<String> {
        let mut fenced: Vec<String> = self.read_stores().iter().filter(|(_, journal)| journal.state.fenced.load(Ordering::Acquire)).map(|(store, _)| store.clone()).collect();
        fenced.sort();
        fenced
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    /// The JetStream context (the event feed publishes through it).
    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }

    /// The newest version of order `id` on the event feed, as published (the
    /// order's JSON); `None` if the feed has none (or `id` is no order id).
    pub async fn archived_order(&self, id: &str) -> Result<Option<bytes::Bytes>, JournalError> {
        // An order id is a UUID: nothing in it may act as a subject wildcard or separator.
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-') {
            return Ok(None);
        }
        let events = self.context.get_stream_no_info(EVENTS_STREAM).await.map_err(|err| JournalError::JetStream(err.to_string()))?;
        match events.get_last_raw_message_by_subject(&format!("crema.events.*.{id}")).await {
            Ok(message) => Ok(Some(message.payload)),
            Err(err) if matches!(err.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(err) => Err(JournalError::JetStream(format!("order {id} on the feed: {err}"))),
        }
    }

    /// How long loading `store` took when this node started (ms).
    pub fn load_ms(&self, store: &str) -> Option<u64> {
        self.read_stores().get(store).map(|journal| journal.state.load_ms.load(Ordering::Acquire))
    }

    /// The newest checkpoint of `store` this node knows (none: 0s).
    pub fn checkpoint_info(&self, store: &str) -> Option<CheckpointInfo> {
        self.read_stores().get(store).map(|journal| CheckpointInfo {
            seq: journal.state.checkpoint_seq.load(Ordering::Acquire),
            at_ms: journal.state.checkpoint_at_ms.load(Ordering::Acquire),
            bytes: journal.state.checkpoint_bytes.load(Ordering::Acquire),
        })
    }

    /// Writes a checkpoint of `store` (what the cache holds of it at its
    /// journal sequence now) if the journal moved since the last one, then
    /// trims the journal below the *previous* checkpoint (one generation
    /// kept) and below what the event feed has published. `None`: nothing
    /// written (nothing new, or the store is not this node's any more).
    pub async fn checkpoint(&self, store: &str, cache: &Store, idempotency_ttl_ms: u64) -> Result<Option<CheckpointInfo>, JournalError> {
        let Some(journal) = self.journal_of(store) else { return Ok(None) };
        if journal.state.fenced.load(Ordering::Acquire) {
            return Ok(None);
        }
        let subject = journal_subject(store);
        // Still ours: nobody wrote the store since this node's last write.
        let last = last_on_subject(&self.journal, &subject).await?.map_or(0, |message| message.sequence);
        if last != journal.state.last_seq.load(Ordering::Acquire) {
            return Ok(None);
        }
        let previous = checkpoint_seq(&self.checkpoints, store).await?;
        // Nothing written since the last checkpoint: no scan of the cache.
        if last <= previous {
            return Ok(None);
        }
        let since_ms = now_ms().saturating_sub(idempotency_ttl_ms);
        let started = Instant::now();
        let (owned_cache, owned_store) = (cache.clone(), store.to_owned());
        let (seq, ops) = tokio::task::spawn_blocking(move || owned_cache.store_records(&owned_store, since_ms))
            .await
            .map_err(|err| JournalError::JetStream(format!("checkpoint of {store}: {err}")))??;
        if seq <= previous {
            return Ok(None);
        }
        let at_ms = now_ms();
        let bytes = codec::encode_checkpoint(&codec::Checkpoint { store: store.to_owned(), seq, at_ms, ops });
        let meta = object_store::ObjectMetadata {
            name: store.to_owned(),
            metadata: HashMap::from([("seq".to_owned(), seq.to_string())]),
            ..Default::default()
        };
        self.checkpoints
            .put(meta, &mut bytes.as_slice())
            .await
            .map_err(|err| JournalError::JetStream(format!("writing the checkpoint of {store}: {err}")))?;
        let info = CheckpointInfo { seq, at_ms, bytes: bytes.len() as u64 };
        journal.state.checkpoint_seq.store(seq, Ordering::Release);
        journal.state.checkpoint_at_ms.store(at_ms, Ordering::Release);
        journal.state.checkpoint_bytes.store(info.bytes, Ordering::Release);
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        let published = feed_position(&self.context, store).await?;
        let below = previous.min(published);
        if below > 1 {
            self.journal
                .purge()
                .filter(subject)
                .sequence(below)
                .await
                .map_err(|err| JournalError::JetStream(format!("trimming the journal of {store}: {err}")))?;
        }
        tracing::info!(store, seq, bytes = info.bytes, trimmed_below = below, took_ms = started.elapsed().as_millis() as u64, "checkpoint written");
        Ok(Some(info))
    }

    /// Answers every change already handed over, then stops the committers.
    pub async fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let committers = std::mem::take(&mut *self.committers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        // The committers end when their channels close: every handle of the
        // journal is dropped with the engine, so stop them here instead, once
        // what they hold is answered (they notice `closing` between groups).
        let journals: Vec<Arc<StoreJournal>> = self.read_stores().values().cloned().collect();
        for journal in journals {
            let (reply, answer) = oneshot::channel();
            if journal.tx.send(Request { batch: Batch::default(), reply }).await.is_ok() {
                let _ = answer.await;
            }
        }
        for committer in committers {
            committer.abort();
        }
        let _ = self.client.flush().await;
    }
}

fn journal_config(cluster: &ClusterSettings) -> stream::Config {
    stream::Config {
        name: JOURNAL_STREAM.to_owned(),
        description: Some("crema: each store's durable changes, one subject per store".to_owned()),
        subjects: vec!["crema.journal.>".to_owned()],
        storage: stream::StorageType::File,
        num_replicas: cluster.replicas,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

fn events_config(cluster: &ClusterSettings) -> stream::Config {
    stream::Config {
        name: EVENTS_STREAM.to_owned(),
        description: Some("crema: every acknowledged version of every order, as its JSON".to_owned()),
        subjects: vec!["crema.events.>".to_owned()],
        max_age: Duration::from_secs(cluster.retention_days * 86_400),
        ..journal_config(cluster)
    }
}

/// The stream of `config`, made if it does not exist; retried while the
/// cluster is still electing its leaders.
async fn ensure_stream(context: &jetstream::Context, config: stream::Config, started: Instant) -> Result<stream::Stream, JournalError> {
    loop {
        match context.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(err) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(stream = %config.name, error = %err, "JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(JournalError::JetStream(format!("stream {}: {err}", config.name))),
        }
    }
}

/// Asks for the journal stream's info every `every` (answered only by its
/// elected leader) and keeps the answer in `quorum`.
async fn probe_quorum(mut journal: stream::Stream, quorum: Arc<AtomicBool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let answered = journal.info().await.is_ok();
        if quorum.swap(answered, Ordering::AcqRel) != answered {
            if answered {
                tracing::warn!("the journal stream answers again (quorum)");
            } else {
                tracing::error!("the journal stream does not answer (no leader, no quorum): no change can be acknowledged");
            }
        }
    }
}

/// `attempt` again while JetStream times out (a leader election after a
/// server died or paused), for up to [`STARTUP_PATIENCE`]; start-up only.
async fn patiently<T, F, Fut>(mut attempt: F) -> Result<T, JournalError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, JournalError>>,
{
    let started = Instant::now();
    loop {
        match attempt().await {
            Err(JournalError::JetStream(reason)) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(%reason, "JetStream did not answer; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// The checkpoints' object store, made if it does not exist.
async fn ensure_checkpoint_bucket(
    context: &jetstream::Context,
    cluster: &ClusterSettings,
    started: Instant,
) -> Result<object_store::ObjectStore, JournalError> {
    loop {
        let made = match context.get_object_store(CHECKPOINT_BUCKET).await {
            Ok(bucket) => Ok(bucket),
            Err(_) => context
                .create_object_store(object_store::Config {
                    bucket: CHECKPOINT_BUCKET.to_owned(),
                    description: Some("crema: each store's newest checkpoint".to_owned()),
                    storage: stream::StorageType::File,
                    num_replicas: cluster.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|err| err.to_string()),
        };
        match made {
            Ok(bucket) => return Ok(bucket),
            Err(err) if started.elapsed() < STARTUP_PATIENCE => {
                tracing::warn!(bucket = CHECKPOINT_BUCKET, error = %err, "JetStream not ready yet; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(JournalError::JetStream(format!("bucket {CHECKPOINT_BUCKET}: {err}"))),
        }
    }
}

/// The journal sequence of `store`'s checkpoint (0: none).
async fn checkpoint_seq(checkpoints: &object_store::ObjectStore, store: &str) -> Result<u64, JournalError> {
    match checkpoints.info(store).await {
        Ok(info) => Ok(info.metadata.get("seq").and_then(|seq| seq.parse().ok()).unwrap_or(0)),
        Err(err) if matches!(err.kind(), object_store::InfoErrorKind::NotFound) => Ok(0),
        Err(err) => Err(JournalError::JetStream(format!("checkpoint of {store}: {err}"))),
    }
}

/// Applies `store`'s checkpoint to the (empty) cache, if it has one.
async fn load_checkpoint(checkpoints: &object_store::ObjectStore, store: &str, writer: &StoreWriter) -> Result<Option<CheckpointInfo>, JournalError> {
    let started = Instant::now();
    let mut object = match checkpoints.get(store).await {
        Ok(object) => object,
        Err(err) if matches!(err.kind(), object_store::GetErrorKind::NotFound) => return Ok(None),
        Err(err) => return Err(JournalError::JetStream(format!("checkpoint of {store}: {err}"))),
    };
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.map_err(|err| JournalError::JetStream(format!("reading the checkpoint of {store}: {err}")))?;
    let checkpoint = codec::decode_checkpoint(&bytes).map_err(|source| JournalError::Corrupt { store: store.to_owned(), seq: 0, source })?;
    let records = checkpoint.ops.len();
    let mut batch = Batch::from_journal_ops(store, checkpoint.ops)
        .map_err(|source| JournalError::Corrupt { store: store.to_owned(), seq: checkpoint.seq, source })?;
    batch.put_journal_seq(store, checkpoint.seq);
    writer.commit(batch).await?;
    tracing::info!(store, seq = checkpoint.seq, records, bytes = bytes.len(), took_ms = started.elapsed().as_millis() as u64, "checkpoint loaded");
    Ok(Some(CheckpointInfo { seq: checkpoint.seq, at_ms: checkpoint.at_ms, bytes: bytes.len() as u64 }))
}

/// The journal sequence the event feed of `store` has published up to: that
/// of the newest event (whose journal message the feed reads again at start),
/// 1 with none.
pub async fn feed_position(context: &jetstream::Context, store: &str) -> Result<u64, JournalError> {
    let events = context.get_stream_no_info(EVENTS_STREAM).await.map_err(|err| JournalError::JetStream(err.to_string()))?;
    match events.get_last_raw_message_by_subject(&format!("crema.events.{store}.*")).await {
        Ok(last) => Ok(header(&last.headers, JOURNAL_SEQ_HEADER).and_then(|seq| seq.parse().ok()).unwrap_or(1)),
        Err(err) if matches!(err.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(1),
        Err(err) => Err(JournalError::JetStream(format!("the feed's position for {store}: {err}"))),
    }
}

/// The sequence of the last message on `subject` (0: none yet).
async fn last_on_subject(journal: &stream::Stream, subject: &str) -> Result<Option<jetstream::message::StreamMessage>, JournalError> {
    match journal.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(Some(message)),
        Err(err) if matches!(err.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(err) => Err(JournalError::JetStream(format!("last message of {subject}: {err}"))),
    }
}

/// Applies `store`'s journal after the cache's last sequence to the cache;
/// returns the journal's last sequence.
async fn catch_up(journal: &stream::Stream, store: &str, cache: &Store, writer: &StoreWriter, stats: &JournalStats) -> Result<u64, JournalError> {
    let subject = journal_subject(store);
    let cached = cache.journal_seq(store)?;
    let last = last_on_subject(journal, &subject).await?.map_or(0, |message| message.sequence);
    if cached > last {
        return Err(JournalError::CacheAhead { store: store.to_owned(), cached, journal: last });
    }
    if cached == last {
        return Ok(last);
    }
    let started = Instant::now();
    let consumer = journal
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: cached + 1 },
            ..Default::default()
        })
        .await
        .map_err(|err| JournalError::JetStream(format!("reading {subject}: {err}")))?;
    let mut messages = consumer.messages().await.map_err(|err| JournalError::JetStream(format!("reading {subject}: {err}")))?;
    // Many messages per cache write: replay is bounded by decoding, not syncs.
    let mut pending = Batch::new();
    let mut replayed = 0_u64;
    let mut previous = cached;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|err| JournalError::JetStream(format!("reading {subject}: {err}")))?;
        let seq = message.info().map_err(|err| JournalError::JetStream(err.to_string()))?.stream_sequence;
        let prev = message.headers.as_ref().and_then(|headers| header(headers, PREV_HEADER)).and_then(|prev| prev.parse().ok());
        if prev != Some(previous) {
            return Err(JournalError::Gap { store: store.to_owned(), seq, expected: previous, found: prev.unwrap_or(0) });
        }
        previous = seq;
        let entry = codec::decode_journal(&message.payload)
            .map_err(|source| JournalError::Corrupt { store: store.to_owned(), seq, source })?;
        if let JournalEntry::Changes { ops, .. } = entry {
            let batch = Batch::from_journal_ops(store, ops).map_err(|source| JournalError::Corrupt { store: store.to_owned(), seq, source })?;
            pending.extend_ops(batch);
        }
        pending.put_journal_seq(store, seq);
        replayed += 1;
        if pending.len() >= 4_096 || seq >= last {
            writer.commit(std::mem::take(&mut pending)).await?;
        }
        if seq >= last {
            break;
        }
    }
    stats.replayed.fetch_add(replayed, Ordering::Relaxed);
    tracing::info!(store, from = cached + 1, to = last, messages = replayed, took_ms = started.elapsed().as_millis() as u64, "journal replayed into the cache");
    Ok(last)
}

/// Writes the takeover record on `store`'s subject, conditional on the last
/// message caught up with; another write in between means catching up again.
#[allow(clippy::too_many_arguments)]
async fn take_over(
    context: &jetstream::Context,
    journal: &stream::Stream,
    store: &str,
    node: &str,
    cache: &Store,
    writer: &StoreWriter,
    state: &StoreJournalState,
    stats: &JournalStats,
) -> Result<(), JournalError> {
    let subject = journal_subject(store);
    for _ in 0..5 {
        let last = state.last_seq.load(Ordering::Acquire);
        let record = codec::encode_journal(&JournalEntry::Takeover { node: node.to_owned(), at_ms: now_ms() });
        let publish = Publish::build()
            .payload(record.into())
            .header(NODE_HEADER, node)
            .header(PREV_HEADER, last.to_string().as_str())
            .expected_last_subject_sequence(last);
        let answer = match context.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match answer {
            Ok(ack) => {
                state.last_seq.store(ack.sequence, Ordering::Release);
                writer.commit(std::mem::take(Batch::new().put_journal_seq(store, ack.sequence))).await?;
                tracing::info!(store, seq = ack.sequence, "took the store's journal over");
                return Ok(());
            }
            Err(err) if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                tracing::warn!(store, "another node wrote the journal while this one caught up; catching up again");
                let last = catch_up(journal, store, cache, writer, stats).await?;
                state.last_seq.store(last, Ordering::Release);
            }
            Err(err) => return Err(JournalError::JetStream(format!("takeover of {store}: {err}"))),
        }
    }
    Err(JournalError::JetStream(format!("takeover of {store}: the journal kept moving; another node writes it")))
}

/// One store's group commit: the only task that publishes on its subject.
struct Committer {
    store: String,
    node: String,
    /// Distinguishes this process's message ids from an earlier run's.
    boot: String,
    context: jetstream::Context,
    journal: stream::Stream,
    writer: StoreWriter,
    state: Arc<StoreJournalState>,
    stats: Arc<JournalStats>,
    closing: Arc<AtomicBool>,
    max_batch: usize,
}

/// How a group's publish ended.
enum Outcome {
    Stored(u64),
    Fenced,
    GaveUp(String),
}

impl Committer {
    async fn run(self, mut rx: mpsc::Receiver<Request>) {
        let subject = journal_subject(&self.store);
        let mut group: Vec<Request> = Vec::with_capacity(self.max_batch);
        let mut number = 0_u64;
        while let Some(first) = rx.recv().await {
            let mut bytes = first.batch.ops_bytes();
            group.push(first);
            while group.len() < self.max_batch && bytes < GROUP_BYTES_MAX {
                match rx.try_recv() {
                    Ok(request) => {
                        bytes += request.batch.ops_bytes();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            let ops: Vec<codec::JournalOp> = group.iter().flat_map(|request| request.batch.journal_ops()).collect();
            if ops.is_empty() {
                // Nothing to write (the close marker): answer and go on.
                for request in group.drain(..) {
                    let _ = request.reply.send(Ok(()));
                }
                continue;
            }
            if self.state.fenced.load(Ordering::Acquire) || !self.state.in_lease() {
                self.stats.fenced_writes.fetch_add(1, Ordering::Relaxed);
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(StoreError::Fenced(self.store.clone())));
                }
                continue;
            }
            number += 1;
            let message_id = format!("{}.{}.{}.{number}", self.node, self.boot, self.store);
            let payload: bytes::Bytes = codec::encode_journal(&JournalEntry::Changes { node: self.node.clone(), ops }).into();
            let started = Instant::now();
            let outcome = self.publish(&subject, &message_id, payload).await;
            self.stats.ack_us.observe(started.elapsed().as_micros() as u64);
            let result = match outcome {
                Outcome::Stored(seq) => {
                    self.state.last_seq.store(seq, Ordering::Release);
                    self.stats.groups.fetch_add(1, Ordering::Relaxed);
                    self.stats.requests.fetch_add(group.len() as u64, Ordering::Relaxed);
                    self.stats.group_sizes.observe(group.len() as u64);
                    let mut cache = Batch::new();
                    for request in &mut group {
                        cache.extend_ops(std::mem::take(&mut request.batch));
                    }
                    if let Err(err) = cache.index_live_orders() {
                        // Our own encoding: not expected. The order is stored; only a checkpoint could miss it.
                        tracing::error!(store = %self.store, %err, "an order of a journal group does not decode; the live-order index misses it");
                    }
                    cache.put_journal_seq(&self.store, seq);
                    self.apply_to_cache(cache).await;
                    Ok(())
                }
                Outcome::Fenced => {
                    self.stats.fenced_writes.fetch_add(1, Ordering::Relaxed);
                    if !self.state.fenced.swap(true, Ordering::AcqRel) {
                        tracing::error!(
                            store = %self.store,
                            "FENCED: another node wrote this store's journal; this node no longer writes or acknowledges its changes"
                        );
                    }
                    Err(StoreError::Fenced(self.store.clone()))
                }
                Outcome::GaveUp(reason) => Err(StoreError::JournalUnavailable(reason)),
            };
            for request in group.drain(..) {
                let _ = request.reply.send(match &result {
                    Ok(()) => Ok(()),
                    Err(StoreError::Fenced(store)) => Err(StoreError::Fenced(store.clone())),
                    Err(err) => Err(StoreError::JournalUnavailable(err.to_string())),
                });
            }
        }
    }

    /// Publishes one group, conditional on the last sequence; retries an
    /// unanswered publish (same message id) until it has an outcome.
    async fn publish(&self, subject: &str, message_id: &str, payload: bytes::Bytes) -> Outcome {
        let mut backoff = Duration::from_millis(50);
        loop {
            let expected = self.state.last_seq.load(Ordering::Acquire);
            let publish = Publish::build()
                .payload(payload.clone())
                .message_id(message_id)
                .header(NODE_HEADER, self.node.as_str())
                .header(PREV_HEADER, expected.to_string().as_str())
                .expected_last_subject_sequence(expected);
            let answer = match self.context.send_publish(subject.to_owned(), publish).await {
                Ok(ack) => ack.await,
                Err(err) => Err(err),
            };
            let err = match answer {
                Ok(ack) => {
                    self.state.stalled.store(false, Ordering::Release);
                    return Outcome::Stored(ack.sequence);
                }
                Err(err) => err,
            };
            if err.kind() == jetstream::context::PublishErrorKind::WrongLastSequence {
                // Ours after all (stored, its ack lost, the dedupe window past)?
                match last_on_subject(&self.journal, subject).await {
                    Ok(Some(last)) if header(&last.headers, "Nats-Msg-Id") == Some(message_id) => {
                        self.state.stalled.store(false, Ordering::Release);
                        return Outcome::Stored(last.sequence);
                    }
                    Ok(_) => return Outcome::Fenced,
                    Err(read) => tracing::warn!(store = %self.store, error = %read, "reading the journal after a refused write failed; trying again"),
                }
            }
            if !self.state.stalled.swap(true, Ordering::AcqRel) {
                tracing::warn!(store = %self.store, error = %err, "the journal did not take a write; retrying (the store takes no new orders meanwhile)");
            }
            if self.closing.load(Ordering::Acquire) {
                return Outcome::GaveUp(err.to_string());
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The journal has the group; the cache must too. A cache that cannot
    /// write is retried: the change is acknowledged (it is durable), and a
    /// restart would replay it from the journal anyway.
    async fn apply_to_cache(&self, cache: Batch) {
        for attempt in 0..5 {
            match self.writer.commit(cache.clone()).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::error!(store = %self.store, %err, attempt, "the cache did not take a journal group; trying again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        tracing::error!(store = %self.store, "the cache lags the journal; a restart replays it");
    }
}

fn header<'a>(headers: &'a async_nats::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(async_nats::HeaderValue::as_str)
}
