//! The journal: the one seam every durable change goes through.
//!
//! The engine, the actors and the saga call [`Journal::commit`] with a
//! [`Batch`] and do not know which journal they have:
//!
//! - **local** (`store.durability = "sync"` / `"async"`, the single-node
//!   default): the batch goes to the [`StoreWriter`], RocksDB with group
//!   commit; `sync` answers once the WAL is synced.
//! - **replicated** (`"replicated"`): a batch of a store's records goes to that
//!   store's JetStream journal first ([`super::jetstream`]: a conditional
//!   publish per group, fenced, replicated on `cluster.replicas` servers) and
//!   only then to RocksDB, which is this node's cache of the journals. A batch
//!   that names no store (a health probe, the last backup's time) is the
//!   node's own and stays local.
//!
//! Either way a commit resolves `Ok` only once the change is durable in the
//! journal's sense, and what the caller acknowledges is what a restart (or,
//! replicated, another node) finds.

use std::sync::Arc;

use super::jetstream::Replicated;
use super::store::{Batch, StoreError};
use super::writer::{StoreWriter, WriterStats};

/// Cheap to clone; every clone writes to the same journal.
#[derive(Clone)]
pub struct Journal {
    writer: StoreWriter,
    replicated: Option<Arc<Replicated>>,
}

impl Journal {
    /// The single-node journal: RocksDB itself.
    pub fn local(writer: StoreWriter) -> Journal {
        Journal { writer, replicated: None }
    }

    /// The replicated journal in front of this node's RocksDB cache.
    pub fn replicated(writer: StoreWriter, replicated: Arc<Replicated>) -> Journal {
        Journal { writer, replicated: Some(replicated) }
    }

    /// Commits `batch` atomically; resolves once it is durable (see the module docs).
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        match &self.replicated {
            Some(replicated) if batch.has_store_records() => {
                let store = batch.store().ok_or(StoreError::Unscoped)?.to_owned();
                replicated.commit(&store, batch).await
            }
            _ => self.writer.commit(batch).await,
        }
    }

    /// Whether a change of `store` (or, with `None`, of the node) can be made
    /// now: the local store writes, and, replicated, this node still owns
    /// `store`'s journal and JetStream takes its writes.
    pub fn is_writable(&self, store: Option<&str>) -> bool {
        self.writer.is_writable()
            && match (&self.replicated, store) {
                (Some(replicated), Some(store)) => replicated.is_writable(store),
                (Some(replicated), None) => replicated.is_healthy(),
                (None, _) => true,
            }
    }

    /// Why `store` cannot take changes, when it is fenced (another node writes
    /// it): such a store answers 503 `store_unavailable`.
    pub fn is_fenced(&self, store: &str) -> bool {
        self.replicated.as_ref().is_some_and(|replicated| replicated.is_fenced(store))
    }

    /// Whether this node writes `store` (always, single-node).
    pub fn owns(&self, store: &str) -> bool {
        self.replicated.as_ref().is_none_or(|replicated| replicated.owns(store))
    }

    /// The replicated journal, in replicated mode.
    pub fn replication(&self) -> Option<&Arc<Replicated>> {
        self.replicated.as_ref()
    }

    /// The RocksDB writer (local journal, or the cache's writer).
    pub fn writer(&self) -> &StoreWriter {
        &self.writer
    }

    pub fn stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Stops taking changes: the replicated journal answers what it holds,
    /// then the writer commits what it was given and flushes.
    pub async fn close(&self) {
        if let Some(replicated) = &self.replicated {
            replicated.close().await;
        }
        self.writer.close().await;
    }
}
