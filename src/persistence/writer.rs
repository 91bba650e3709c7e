//! The store writer: the only code that writes to RocksDB.
//!
//! It is an actor on a thread of its own (RocksDB writes block), with a bounded
//! mailbox. Group commit: it takes the first waiting request, then every other
//! request already waiting (up to `max_batch`), writes them all as one RocksDB
//! write batch with one WAL sync, and only then answers each of them. While a
//! sync is in progress new requests queue up and form the next group, so the
//! number of syncs per second stays bounded while throughput grows with load.
//!
//! Each request is still atomic on its own: a group is one RocksDB batch, so it
//! is all-or-nothing as a whole, and a failure is reported to every member.
//!
//! Shutdown: [`StoreWriter::close`] queues a stop behind everything already
//! sent; the thread commits those, flushes the WAL and memtables, and exits.
//!
//! Health: a failed write (a full disk, an I/O error) marks the store
//! unwritable ([`StoreWriter::is_writable`]: `/readyz` answers 503 and new
//! orders are refused before they are charged) until a write succeeds again.
//! RocksDB stops accepting writes after such an error and resumes by itself
//! once its SstFileManager sees free space; [`StoreWriter::probe`] (called
//! periodically by the app while unwritable) is the write that notices.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::store::{Batch, Op, Store, StoreError};
use crate::config::Durability;
use crate::metrics::{Histogram, GROUP_SIZES, LATENCY_US};

enum Request {
    Commit { batch: Batch, reply: oneshot::Sender<Result<(), StoreError>> },
    Stop,
}

/// Counters for `/stats` and `/metrics`.
#[derive(Debug)]
pub struct WriterStats {
    pub groups: AtomicU64,
    pub requests: AtomicU64,
    pub largest_group: AtomicU64,
    /// Requests per group.
    pub group_sizes: Histogram,
    /// Time of one group's RocksDB write (with its WAL sync), µs.
    pub write_us: Histogram,
}

impl Default for WriterStats {
    fn default() -> Self {
        WriterStats {
            groups: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            largest_group: AtomicU64::new(0),
            group_sizes: Histogram::new(GROUP_SIZES),
            write_us: Histogram::new(LATENCY_US),
        }
    }
}

/// A handle to the store writer; cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::Sender<Request>,
    stats: Arc<WriterStats>,
    /// False from a failed write until the next successful one.
    writable: Arc<AtomicBool>,
    /// Group writes still to fail on purpose (fault injection for tests).
    failures_to_inject: Arc<AtomicU64>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl StoreWriter {
    /// Starts the writer thread. `mailbox` bounds requests waiting; `max_batch`
    /// bounds one group; `linger` is how long a small group waits for more
    /// under load (`store.group_linger_us`).
    pub fn start(store: Store, durability: Durability, max_batch: usize, mailbox: usize, linger: Duration) -> StoreWriter {
        let (tx, rx) = mpsc::channel(mailbox);
        let stats = Arc::new(WriterStats::default());
        let writable = Arc::new(AtomicBool::new(true));
        let failures_to_inject = Arc::new(AtomicU64::new(0));
        let health = Health { writable: writable.clone(), failures_to_inject: failures_to_inject.clone() };
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(store, rx, durability, max_batch, linger, &thread_stats, &health))
            .expect("spawning the store writer thread");
        StoreWriter { tx, stats, writable, failures_to_inject, thread: Arc::new(std::sync::Mutex::new(Some(thread))) }
    }

    /// Makes the next `count` group writes fail as a full disk would, without
    /// touching RocksDB: fault injection for tests of what failed writes do.
    pub fn inject_failures(&self, count: u64) {
        self.failures_to_inject.fetch_add(count, Ordering::AcqRel);
    }

    /// Whether the last write succeeded. Only a write can tell: see [`Self::probe`].
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::Acquire)
    }

    /// Writes a small marker (`meta/probe`, the time); a success marks the
    /// store writable again.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put_probe(crate::domain::time::now_ms());
        self.commit(batch).await
    }

    /// Commits `batch` atomically; resolves once it is durable (per the
    /// durability setting). Waits for mailbox space when the writer is behind.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Request::Commit { batch, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Commits everything already queued, flushes, and stops the thread.
    pub async fn close(&self) {
        if self.tx.send(Request::Stop).await.is_ok() {
            let thread = self.thread.lock().map(|mut slot| slot.take()).unwrap_or(None);
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }
}

/// What the writer thread shares with its handles about its health.
struct Health {
    writable: Arc<AtomicBool>,
    failures_to_inject: Arc<AtomicU64>,
}

/// Takes the requests already waiting into `group` (up to `max_batch`);
/// `true` if a stop request came.
fn take_waiting(rx: &mut mpsc::Receiver<Request>, group: &mut Vec<Group>, max_batch: usize) -> bool {
    while group.len() < max_batch {
        match rx.try_recv() {
            Ok(Request::Commit { batch, reply }) => group.push((batch, reply)),
            Ok(Request::Stop) => return true,
            Err(_) => break,
        }
    }
    false
}

/// The linger applies only after a group of at least this many writes (load)…
const LINGER_AFTER: usize = 8;
/// …and only to a group smaller than this.
const LINGER_BELOW: usize = 64;

type Group = (Batch, oneshot::Sender<Result<(), StoreError>>);

fn run(
    store: Store,
    mut rx: mpsc::Receiver<Request>,
    durability: Durability,
    max_batch: usize,
    linger: Duration,
    stats: &WriterStats,
    health: &Health,
) {
    let writable = &health.writable;
    let mut options = rocksdb::WriteOptions::default();
    options.set_sync(durability == Durability::Sync);
    let mut group: Vec<Group> = Vec::with_capacity(max_batch);
    let mut stopping = false;
    let mut last_group = 0;
    while !stopping {
        match rx.blocking_recv() {
            Some(Request::Commit { batch, reply }) => group.push((batch, reply)),
            Some(Request::Stop) | None => break,
        }
        stopping = take_waiting(&mut rx, &mut group, max_batch);
        // Under load a short wait fills the group: one sync for more writes.
        if !stopping && !linger.is_zero() && last_group >= LINGER_AFTER && group.len() < LINGER_BELOW.min(max_batch) {
            std::thread::sleep(linger);
            stopping = take_waiting(&mut rx, &mut group, max_batch);
        }
        last_group = group.len();
        let started = Instant::now();
        let mut write_batch = rocksdb::WriteBatch::default();
        for (batch, _) in &group {
            for op in &batch.ops {
                match op {
                    Op::Put(cf, key, value) => write_batch.put_cf(store.cf(*cf), key, value),
                    Op::Delete(cf, key) => write_batch.delete_cf(store.cf(*cf), key),
                }
            }
        }
        let inject = health
            .failures_to_inject
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(1))
            .is_ok();
        let result = if inject { Err(None) } else { store.db().write_opt(write_batch, &options).map_err(Some) };
        match &result {
            Err(err) => {
                let err = err.as_ref().map_or_else(|| "injected failure".to_owned(), ToString::to_string);
                if writable.swap(false, Ordering::AcqRel) {
                    tracing::error!(error = %err, requests = group.len(), "store write failed; the store is unwritable until a write succeeds");
                } else {
                    tracing::debug!(error = %err, requests = group.len(), "store write failed again");
                }
            }
            Ok(()) => {
                if !writable.swap(true, Ordering::AcqRel) {
                    tracing::warn!("the store accepts writes again");
                }
            }
        }
        let size = group.len() as u64;
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(size, Ordering::Relaxed);
        stats.write_us.observe(started.elapsed().as_micros() as u64);
        stats.group_sizes.observe(size);
        stats.largest_group.fetch_max(size, Ordering::Relaxed);
        for (_, reply) in group.drain(..) {
            // A requester that gave up waiting is not an error of the writer.
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(Some(err)) => Err(StoreError::Rocks(err.clone())),
                Err(None) => Err(StoreError::Injected),
            });
        }
    }
    if let Err(err) = store.db().flush_wal(true).and_then(|()| store.db().flush()) {
        tracing::error!(error = %err, "flushing the store at shutdown failed");
    }
    tracing::info!("store writer stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LineRequest, Menu, Order, OrderRequest};

    fn order(id: &str) -> Order {
        let request = OrderRequest {
            store: None,
            customer: Some("lee".into()),
            items: vec![LineRequest::new("americano", 1)],
        };
        Order::paid(id.into(), request.validate(&Menu::builtin()).unwrap(), format!("k-{id}"), "p".into(), 1)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_are_grouped_and_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let writer = StoreWriter::start(store.clone(), Durability::Sync, 64, 1024, Duration::from_micros(300));
        let mut tasks = Vec::new();
        for n in 0..200 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut batch = Batch::new();
                let order = order(&format!("o{n:03}"));
                batch.put_order(&order).put_customer_index(&order);
                writer.commit(batch).await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        writer.close().await;
        assert_eq!(writer.stats().requests.load(Ordering::Relaxed), 200);
        assert!(writer.stats().groups.load(Ordering::Relaxed) <= 200);
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
        assert_eq!(reopened.for_each_order(|_| {}).unwrap(), 200);
        let (kim, _) = reopened.list_orders(Some("lee"), None, |_| true, 500, 1000).unwrap();
        assert_eq!(kim.len(), 200);
        assert_eq!(kim[0].id, "o199", "newest first");
    }

    #[tokio::test]
    async fn commit_after_close_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StoreWriter::start(Store::open(dir.path()).unwrap(), Durability::Async, 8, 8, Duration::ZERO);
        writer.close().await;
        assert!(matches!(writer.commit(Batch::new()).await, Err(StoreError::Closed)));
    }
}
