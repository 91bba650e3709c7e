//! The RocksDB database: opening it with its column families, checking the
//! schema version, building write batches, and the read paths.
//!
//! Reads go straight to RocksDB from any thread (it is thread-safe and reads are
//! point lookups or short scans). Writes never happen here: a [`Batch`] is
//! built here and handed to the [`super::StoreWriter`], which owns durability.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, DB};

use super::codec::{self, CodecError, IdempotencyRecord, OrphanRefund, PaymentIntent};
use crate::domain::Order;

/// The schema this build writes and reads. Bump it with a migration.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cf {
    Orders,
    Intents,
    Refunds,
    Tickets,
    Customers,
    Idempotency,
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 7] =
        [Cf::Orders, Cf::Intents, Cf::Refunds, Cf::Tickets, Cf::Customers, Cf::Idempotency, Cf::Meta];

    /// The column family's number in journal records ([`super::codec::JournalOp`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Cf> {
        Cf::ALL.get(usize::from(code)).copied()
    }

    /// Whether a store's journal carries this family's changes. `meta` is the
    /// node's own (probe, backups, the first-start key) except for the keys of
    /// store settings, which [`Batch`] marks with their store.
    pub fn is_journaled(self) -> bool {
        !matches!(self, Cf::Meta)
    }

    pub fn name(self) -> &'static str {
        match self {
            Cf::Orders => "orders",
            Cf::Intents => "intents",
            Cf::Refunds => "refunds",
            Cf::Tickets => "tickets",
            Cf::Customers => "customers",
            Cf::Idempotency => "idempotency",
            Cf::Meta => "meta",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("{cf} record {key:?} does not decode: {source}")]
    Corrupt { cf: &'static str, key: String, source: CodecError },
    #[error("data directory has schema version {found}, this build reads {SCHEMA_VERSION}")]
    Schema { found: u32 },
    #[error("the store writer has stopped")]
    Closed,
    /// A write failed on purpose ([`super::StoreWriter::inject_failures`], tests only).
    #[error("injected write failure")]
    Injected,
    /// Another node wrote the store's journal since this one last did: this
    /// node no longer owns the store and must not acknowledge its changes.
    #[error("store {0} is written by another node now (fenced)")]
    Fenced(String),
    /// The replicated journal did not take the write (JetStream unreachable,
    /// no quorum); the change was not acknowledged.
    #[error("the replicated journal is unavailable: {0}")]
    JournalUnavailable(String),
    /// A batch of store records that names no store (a bug: the replicated
    /// journal must know whose subject carries it).
    #[error("a batch of store records names no store")]
    Unscoped,
}

/// One atomic unit of writes: everything one state change implies. A batch
/// of one store's records carries that store's id (set by the calls that
/// know it, or by [`Batch::for_store`]): in replicated mode it is written on
/// that store's journal. A batch without a store is the node's own.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub(crate) ops: Vec<Op>,
    pub(crate) store: Option<String>,
    /// Housekeeping of this node's cache only (expired idempotency records:
    /// every node expires them by the same rule), never journaled.
    pub(crate) cache_only: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// An empty batch of `store`'s records.
    pub fn for_store(store: &str) -> Self {
        Batch { ops: Vec::new(), store: Some(store.to_owned()), cache_only: false }
    }

    /// An empty batch of this node's cache housekeeping (see `cache_only`).
    pub fn cache_only() -> Self {
        Batch { cache_only: true, ..Batch::default() }
    }

    /// The store whose records this batch holds, if it names one.
    pub fn store(&self) -> Option<&str> {
        self.store.as_deref()
    }

    fn of_store(&mut self, store: &str) -> &mut Self {
        if self.store.is_none() {
            self.store = Some(store.to_owned());
        }
        debug_assert_eq!(self.store.as_deref(), Some(store), "one batch, one store");
        self
    }

    /// Whether this batch holds records a store's journal must carry.
    pub fn has_store_records(&self) -> bool {
        !self.cache_only && self.ops.iter().any(|op| match op {
            Op::Put(cf, key, _) | Op::Delete(cf, key) => cf.is_journaled() || is_store_meta(key),
        })
    }

    /// This cache has applied `store`'s journal up to `seq` (written in the
    /// batch that applies that group, so the two cannot disagree).
    pub fn put_journal_seq(&mut self, store: &str, seq: u64) -> &mut Self {
        self.ops.push(Op::Put(Cf::Meta, journal_seq_key(store), seq.to_be_bytes().to_vec()));
        self
    }

    /// The ops as a journal group carries them.
    /// The live-order index is not journaled: every cache derives it from
    /// the orders it applies ([`Batch::from_journal_ops`],
    /// [`Batch::index_live_orders`]).
    pub fn journal_ops(&self) -> Vec<super::codec::JournalOp> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put(cf, key, value) => super::codec::JournalOp { cf: cf.code(), key: key.clone(), value: Some(value.clone()) },
                Op::Delete(cf, key) => super::codec::JournalOp { cf: cf.code(), key: key.clone(), value: None },
            })
            .collect()
    }

    /// A group read back from `store`'s journal, as a batch for this cache,
    /// with the live-order index entries of the orders it writes; an op
    /// naming a column family this build does not know, or an order that
    /// does not decode, is an error.
    pub fn from_journal_ops(store: &str, ops: Vec<super::codec::JournalOp>) -> Result<Batch, CodecError> {
        let mut batch = Batch::for_store(store);
        for op in ops {
            let cf = Cf::from_code(op.cf).ok_or(CodecError::Kind { expected: super::codec::Kind::Journal, found: op.cf })?;
            batch.ops.push(match op.value {
                Some(value) => Op::Put(cf, op.key, value),
                None => Op::Delete(cf, op.key),
            });
        }
        batch.index_live_orders()?;
        Ok(batch)
    }

    /// The bytes of its keys and values (a journal group's size bound).
    pub fn ops_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put(_, key, value) => key.len() + value.len(),
                Op::Delete(_, key) => key.len(),
            })
            .sum()
    }

    /// Adds every op of `other` after this batch's own (group commit).
    pub(crate) fn extend_ops(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The order's snapshot.
    pub fn put_order(&mut self, order: &Order) -> &mut Self {
        self.of_store(&order.store);
        self.ops.push(Op::Put(Cf::Orders, order.id.as_bytes().to_vec(), codec::encode_order(order)));
        self
    }

    /// Adds the live-order index entries of the orders this batch writes (a
    /// replicated store's cache keeps the index; a local store does not pay
    /// for it). An order that does not decode is an error.
    pub(crate) fn index_live_orders(&mut self) -> Result<(), CodecError> {
        let mut index = Vec::new();
        for op in &self.ops {
            if let Op::Put(Cf::Orders, _, value) = op {
                index.push(live_index_op(&codec::decode_order(value)?));
            }
        }
        self.ops.extend(index);
        Ok(())
    }

    /// The customer index entry of a new order (none for anonymous orders).
    pub fn put_customer_index(&mut self, order: &Order) -> &mut Self {
        if let Some(customer) = &order.customer {
            self.ops.push(Op::Put(Cf::Customers, codec::customer_key(customer, &order.id), Vec::new()));
        }
        self
    }

    pub fn put_ticket(&mut self, queue_seq: u64, order_id: &str) -> &mut Self {
        self.ops.push(Op::Put(Cf::Tickets, codec::ticket_key(queue_seq).to_vec(), order_id.as_bytes().to_vec()));
        self
    }

    pub fn delete_ticket(&mut self, queue_seq: u64) -> &mut Self {
        self.ops.push(Op::Delete(Cf::Tickets, codec::ticket_key(queue_seq).to_vec()));
        self
    }

    pub fn put_intent(&mut self, intent: &PaymentIntent) -> &mut Self {
        self.of_store(&intent.store);
        self.ops.push(Op::Put(Cf::Intents, intent.key.as_bytes().to_vec(), codec::encode_intent(intent)));
        self
    }

    /// The writer's health probe: the time of the last probe, in `meta`.
    pub fn put_probe(&mut self, at_ms: u64) -> &mut Self {
        self.ops.push(Op::Put(Cf::Meta, b"probe".to_vec(), at_ms.to_be_bytes().to_vec()));
        self
    }

    /// When the last backup (`POST /admin/backup`) was written, in `meta`.
    pub fn put_last_backup(&mut self, at_ms: u64) -> &mut Self {
        self.ops.push(Op::Put(Cf::Meta, LAST_BACKUP.to_vec(), at_ms.to_be_bytes().to_vec()));
        self
    }

    /// A station's pause, kept across restarts (`meta/station-paused/{store}/{id}`).
    pub fn put_station_paused(&mut self, store: &str, station: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Put(Cf::Meta, station_paused_key(store, station), Vec::new()));
        self
    }

    /// An item sold out at a store ("86"), kept across restarts (`meta/sold-out/{store}/{ref}`).
    pub fn put_sold_out(&mut self, store: &str, item: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Put(Cf::Meta, sold_out_key(store, item), Vec::new()));
        self
    }

    pub fn delete_sold_out(&mut self, store: &str, item: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Delete(Cf::Meta, sold_out_key(store, item)));
        self
    }

    /// A store's ordering pause, kept across restarts (`meta/ordering-paused/{store}`).
    pub fn put_ordering_paused(&mut self, store: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Put(Cf::Meta, [ORDERING_PAUSED, store.as_bytes()].concat(), Vec::new()));
        self
    }

    pub fn delete_ordering_paused(&mut self, store: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Delete(Cf::Meta, [ORDERING_PAUSED, store.as_bytes()].concat()));
        self
    }

    pub fn delete_station_paused(&mut self, store: &str, station: &str) -> &mut Self {
        self.of_store(store);
        self.ops.push(Op::Delete(Cf::Meta, station_paused_key(store, station)));
        // The key of a build before stores (`station-paused/{id}`, the default store's).
        if store == crate::domain::order::DEFAULT_STORE {
            self.ops.push(Op::Delete(Cf::Meta, [STATION_PAUSED, station.as_bytes()].concat()));
        }
        self
    }

    pub fn delete_intent(&mut self, key: &str) -> &mut Self {
        self.ops.push(Op::Delete(Cf::Intents, key.as_bytes().to_vec()));
        self
    }

    pub fn put_orphan_refund(&mut self, refund: &OrphanRefund) -> &mut Self {
        self.of_store(&refund.store);
        self.ops.push(Op::Put(Cf::Refunds, refund.key.as_bytes().to_vec(), codec::encode_orphan_refund(refund)));
        self
    }

    pub fn delete_orphan_refund(&mut self, key: &str) -> &mut Self {
        self.ops.push(Op::Delete(Cf::Refunds, key.as_bytes().to_vec()));
        self
    }

    pub fn put_idempotency(&mut self, key: &str, record: &IdempotencyRecord) -> &mut Self {
        self.ops.push(Op::Put(Cf::Idempotency, key.as_bytes().to_vec(), codec::encode_idempotency(record)));
        self
    }

    pub fn delete_idempotency(&mut self, key: &[u8]) -> &mut Self {
        self.ops.push(Op::Delete(Cf::Idempotency, key.to_vec()));
        self
    }
}

/// The opened database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl Store {
    /// Opens (or creates) the database in `dir` and checks its schema version.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, true)
    }

    /// [`Store::open`], saying whether RocksDB may preallocate WAL space
    /// (`store.wal_preallocate`). With it (the default), appends go into
    /// space already reserved, so a disk that fills up is noticed only once
    /// that space is used; without it, at the first write that does not fit.
    pub fn open_with(dir: &Path, wal_preallocate: bool) -> Result<Store, StoreError> {
        let mut options = Options::default();
        if !wal_preallocate {
            options = options.get_options_from_string("allow_fallocate=false")?;
        }
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Bound what RocksDB keeps in memory: 4 write buffers of 32 MiB across all cfs.
        options.set_db_write_buffer_size(128 << 20);
        options.set_write_buffer_size(32 << 20);
        options.increase_parallelism(2);
        let cfs = Cf::ALL.iter().map(|cf| ColumnFamilyDescriptor::new(cf.name(), options.clone()));
        let db = DB::open_cf_descriptors(&options, dir, cfs)?;
        let store = Store { db: Arc::new(db) };
        store.check_schema()?;
        Ok(store)
    }

    /// Makes the live-order index complete, for a replicated node (whose
    /// writes keep it from then on): a data dir that a local node wrote last
    /// (whose writes do not keep it) is indexed afresh, by one scan of its
    /// orders; a new data dir or one a replicated node wrote last costs a
    /// lookup. Only at start, before the engine writes.
    pub fn ensure_live_index(&self) -> Result<(), StoreError> {
        let meta = self.cf(Cf::Meta);
        if self.db.get_cf(meta, LIVE_INDEX_BUILT)?.is_some() {
            return Ok(());
        }
        let mut batch = rocksdb::WriteBatch::default();
        for item in self.db.iterator_cf(meta, IteratorMode::From(LIVE, Direction::Forward)) {
            let (key, _) = item?;
            if !key.starts_with(LIVE) {
                break;
            }
            batch.delete_cf(meta, &key);
        }
        let mut indexed = 0_usize;
        self.for_each_order(|order| {
            if is_live(&order) {
                batch.put_cf(meta, live_key(&order.store, &order.id), []);
                indexed += 1;
            }
        })?;
        batch.put_cf(meta, LIVE_INDEX_BUILT, []);
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        if indexed > 0 {
            tracing::info!(indexed, "live-order index built");
        }
        Ok(())
    }

    /// A local node's writes do not keep the live-order index: it says so,
    /// so that a later replicated start rebuilds it.
    pub fn forget_live_index(&self) -> Result<(), StoreError> {
        let meta = self.cf(Cf::Meta);
        if self.db.get_cf(meta, LIVE_INDEX_BUILT)?.is_some() {
            self.db.delete_cf(meta, LIVE_INDEX_BUILT)?;
        }
        Ok(())
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let meta = self.cf(Cf::Meta);
        match self.db.get_cf(meta, b"schema_version")? {
            None => {
                let mut options = rocksdb::WriteOptions::default();
                options.set_sync(true);
                let mut batch = rocksdb::WriteBatch::default();
                batch.put_cf(meta, b"schema_version", SCHEMA_VERSION.to_be_bytes());
                self.db.write_opt(batch, &options)?;
                Ok(())
            }
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_slice()).map(u32::from_be_bytes).unwrap_or(0);
                if found == SCHEMA_VERSION {
                    Ok(())
                } else {
                    Err(StoreError::Schema { found })
                }
            }
        }
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        // Every cf in Cf::ALL is created at open, so a missing handle is a bug.
        self.db.cf_handle(cf.name()).expect("column family created at open")
    }

    pub fn get_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        match self.db.get_pinned_cf(self.cf(Cf::Orders), id.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode_order(&bytes)
                .map(Some)
                .map_err(|source| corrupt(Cf::Orders, id.as_bytes(), source)),
        }
    }

    pub fn get_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        match self.db.get_pinned_cf(self.cf(Cf::Idempotency), key.as_bytes())? {
            None => Ok(None),
            Some(bytes) => codec::decode_idempotency(&bytes)
                .map(Some)
                .map_err(|source| corrupt(Cf::Idempotency, key.as_bytes(), source)),
        }
    }

    /// Orders newest first, optionally one customer's, starting after the order id
    /// `after`. Scans at most `scan_limit` entries so a rare filter cannot make one
    /// request read the whole database; returns the orders and whether the scan
    /// stopped early (so there may be more), with the last id scanned.
    pub fn list_orders(
        &self,
        customer: Option<&str>,
        after: Option<&str>,
        mut keep: impl FnMut(&Order) -> bool,
        limit: usize,
        scan_limit: usize,
    ) -> Result<(Vec<Order>, Option<String>), StoreError> {
        let mut orders = Vec::new();
        let mut scanned = 0;
        let mut last_id: Option<String> = None;
        let mut more = false;
        match customer {
            Some(customer) => {
                let prefix = codec::customer_prefix(customer);
                let start = match after {
                    Some(after) => codec::customer_key(customer, after),
                    None => {
                        let mut end = prefix.clone();
                        *end.last_mut().expect("prefix ends in 0") = 1;
                        end
                    }
                };
                let iter = self.db.iterator_cf(self.cf(Cf::Customers), IteratorMode::From(&start, Direction::Reverse));
                for item in iter {
                    let (key, _) = item?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    let id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                    if after == Some(id.as_str()) {
                        continue;
                    }
                    if orders.len() == limit || scanned == scan_limit {
                        more = true;
                        break;
                    }
                    scanned += 1;
                    if let Some(order) = self.get_order(&id)? {
                        if keep(&order) {
                            orders.push(order);
                        }
                    }
                    last_id = Some(id);
                }
            }
            None => {
                let mode = match after {
                    Some(after) => IteratorMode::From(after.as_bytes(), Direction::Reverse),
                    None => IteratorMode::End,
                };
                for item in self.db.iterator_cf(self.cf(Cf::Orders), mode) {
                    let (key, value) = item?;
                    if after.map(str::as_bytes) == Some(&key[..]) {
                        continue;
                    }
                    if orders.len() == limit || scanned == scan_limit {
                        more = true;
                        break;
                    }
                    scanned += 1;
                    let order = codec::decode_order(&value).map_err(|source| corrupt(Cf::Orders, &key, source))?;
                    last_id = Some(order.id.clone());
                    if keep(&order) {
                        orders.push(order);
                    }
                }
            }
        }
        Ok((orders, if more { last_id } else { None }))
    }

    /// Every order snapshot, in id order; a snapshot that does not decode is an error.
    pub fn for_each_order(&self, mut each: impl FnMut(Order)) -> Result<usize, StoreError> {
        let mut count = 0;
        for item in self.db.iterator_cf(self.cf(Cf::Orders), IteratorMode::Start) {
            let (key, value) = item?;
            each(codec::decode_order(&value).map_err(|source| corrupt(Cf::Orders, &key, source))?);
            count += 1;
        }
        Ok(count)
    }

    /// What `store` had sold out when last written.
    pub fn sold_out(&self, store: &str) -> Result<Vec<String>, StoreError> {
        let prefix = sold_out_key(store, "");
        let mut refs = Vec::new();
        let iter = self.db.iterator_cf(self.cf(Cf::Meta), IteratorMode::From(&prefix, rocksdb::Direction::Forward));
        for item in iter {
            let (key, _) = item?;
            let Some(item) = key.strip_prefix(prefix.as_slice()) else { break };
            refs.push(String::from_utf8_lossy(item).into_owned());
        }
        Ok(refs)
    }

    /// The SHA-256 (hex) of the admin key the first start made, if it made one.
    pub fn first_admin_key(&self) -> Result<Option<String>, StoreError> {
        Ok(self.db.get_cf(self.cf(Cf::Meta), FIRST_ADMIN_KEY)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Keeps the first start's admin key hash, durably, before the key is shown.
    pub fn put_first_admin_key(&self, sha256: &str) -> Result<(), StoreError> {
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        let mut batch = rocksdb::WriteBatch::default();
        batch.put_cf(self.cf(Cf::Meta), FIRST_ADMIN_KEY, sha256.as_bytes());
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// The last sequence of `store`'s journal this cache has applied (0: none).
    pub fn journal_seq(&self, store: &str) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_cf(self.cf(Cf::Meta), journal_seq_key(store))?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// When the last backup was written (ms since the epoch), if one was.
    pub fn last_backup_ms(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.db.get_cf(self.cf(Cf::Meta), LAST_BACKUP)?.and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok()).map(u64::from_be_bytes))
    }

    /// Whether `store`'s ordering was paused when last written.
    pub fn ordering_paused(&self, store: &str) -> Result<bool, StoreError> {
        Ok(self.db.get_cf(self.cf(Cf::Meta), [ORDERING_PAUSED, store.as_bytes()].concat())?.is_some())
    }

    /// The stations paused when the store was last written, as (store, station).
    /// A key written before stores existed (no store in it) is the default store's.
    pub fn paused_stations(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut paused = Vec::new();
        let iter = self.db.iterator_cf(self.cf(Cf::Meta), IteratorMode::From(STATION_PAUSED, rocksdb::Direction::Forward));
        for item in iter {
            let (key, _) = item?;
            let Some(rest) = key.strip_prefix(STATION_PAUSED) else { break };
            let rest = String::from_utf8_lossy(rest);
            paused.push(match rest.split_once('/') {
                Some((store, station)) => (store.to_owned(), station.to_owned()),
                None => (crate::domain::order::DEFAULT_STORE.to_owned(), rest.into_owned()),
            });
        }
        paused.sort();
        paused.dedup();
        Ok(paused)
    }

    /// The ticket queue as persisted: (queue seq, order id) in queue order.
    pub fn tickets(&self) -> Result<Vec<(u64, String)>, StoreError> {
        let mut tickets = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::Tickets), IteratorMode::Start) {
            let (key, value) = item?;
            let seq = codec::decode_ticket_key(&key).map_err(|source| corrupt(Cf::Tickets, &key, source))?;
            tickets.push((seq, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(tickets)
    }

    pub fn intents(&self) -> Result<Vec<PaymentIntent>, StoreError> {
        self.db
            .iterator_cf(self.cf(Cf::Intents), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item?;
                codec::decode_intent(&value).map_err(|source| corrupt(Cf::Intents, &key, source))
            })
            .collect()
    }

    pub fn orphan_refunds(&self) -> Result<Vec<OrphanRefund>, StoreError> {
        self.db
            .iterator_cf(self.cf(Cf::Refunds), IteratorMode::Start)
            .map(|item| {
                let (key, value) = item?;
                codec::decode_orphan_refund(&value).map_err(|source| corrupt(Cf::Refunds, &key, source))
            })
            .collect()
    }

    /// Idempotency keys recorded before `cutoff_ms`, at most `limit` of them.
    pub fn expired_idempotency_keys(&self, cutoff_ms: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut expired = Vec::new();
        for item in self.db.iterator_cf(self.cf(Cf::Idempotency), IteratorMode::Start) {
            let (key, value) = item?;
            let record = codec::decode_idempotency(&value).map_err(|source| corrupt(Cf::Idempotency, &key, source))?;
            if record.created_ms < cutoff_ms {
                expired.push(key.to_vec());
                if expired.len() == limit {
                    break;
                }
            }
        }
        Ok(expired)
    }
}

impl Store {
    /// What a checkpoint of `store` holds ([`super::codec::Checkpoint`]), read
    /// from one RocksDB snapshot, with the journal sequence the cache had
    /// applied for `store` in that same snapshot (so the two agree). Reads
    /// the live orders through their index, the newest order, and the
    /// bounded families (tickets, intents, refunds, idempotency records
    /// inside their TTL): its cost follows what is live, not the history.
    /// Run it on a blocking thread.
    pub fn store_records(&self, store: &str, idempotency_since_ms: u64) -> Result<(u64, Vec<super::codec::JournalOp>), StoreError> {
        use super::codec::{IdempotentOutcome, JournalOp};
        let snapshot = self.db.snapshot();
        let seq = snapshot
            .get_cf(self.cf(Cf::Meta), journal_seq_key(store))?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let put = |cf: Cf, key: &[u8], value: &[u8]| JournalOp { cf: cf.code(), key: key.to_vec(), value: Some(value.to_vec()) };
        let mut ops = Vec::new();
        // The store's live orders, by the index: settled history is not read.
        let mut live = std::collections::HashSet::new();
        let prefix = live_key(store, "");
        for item in snapshot.iterator_cf(self.cf(Cf::Meta), IteratorMode::From(&prefix, Direction::Forward)) {
            let (key, _) = item?;
            let Some(id) = key.strip_prefix(prefix.as_slice()) else { break };
            let Some(value) = snapshot.get_cf(self.cf(Cf::Orders), id)? else { continue };
            let order = codec::decode_order(&value).map_err(|source| corrupt(Cf::Orders, id, source))?;
            ops.push(put(Cf::Orders, id, &value));
            if let Some(customer) = &order.customer {
                ops.push(put(Cf::Customers, &codec::customer_key(customer, &order.id), &[]));
            }
            live.insert(order.id);
        }
        // The newest order goes in even when settled: pickup numbers go on
        // from it. Ids are UUIDv7 (time-ordered): walk back from the newest
        // id to the first of this store's, which is never older than its
        // newest live order.
        for item in snapshot.iterator_cf(self.cf(Cf::Orders), IteratorMode::End) {
            let (key, value) = item?;
            let order = codec::decode_order(&value).map_err(|source| corrupt(Cf::Orders, &key, source))?;
            if order.store == store {
                if !live.contains(&order.id) {
                    ops.push(put(Cf::Orders, &key, &value));
                }
                break;
            }
        }
        for item in snapshot.iterator_cf(self.cf(Cf::Tickets), IteratorMode::Start) {
            let (key, value) = item?;
            if live.contains(String::from_utf8_lossy(&value).as_ref()) {
                ops.push(put(Cf::Tickets, &key, &value));
            }
        }
        for item in snapshot.iterator_cf(self.cf(Cf::Intents), IteratorMode::Start) {
            let (key, value) = item?;
            if codec::decode_intent(&value).map_err(|source| corrupt(Cf::Intents, &key, source))?.store == store {
                ops.push(put(Cf::Intents, &key, &value));
            }
        }
        for item in snapshot.iterator_cf(self.cf(Cf::Refunds), IteratorMode::Start) {
            let (key, value) = item?;
            if codec::decode_orphan_refund(&value).map_err(|source| corrupt(Cf::Refunds, &key, source))?.store == store {
                ops.push(put(Cf::Refunds, &key, &value));
            }
        }
        for item in snapshot.iterator_cf(self.cf(Cf::Idempotency), IteratorMode::Start) {
            let (key, value) = item?;
            let record = codec::decode_idempotency(&value).map_err(|source| corrupt(Cf::Idempotency, &key, source))?;
            // A declined record names no store: every store's checkpoint keeps it.
            let ours = match &record.outcome {
                IdempotentOutcome::Created(order) => order.store == store,
                IdempotentOutcome::Declined => true,
            };
            if ours && record.created_ms >= idempotency_since_ms {
                ops.push(put(Cf::Idempotency, &key, &value));
            }
        }
        for prefix in [[STATION_PAUSED, store.as_bytes(), b"/"].concat(), [SOLD_OUT, store.as_bytes(), b"/"].concat(), [ORDERING_PAUSED, store.as_bytes()].concat()] {
            for item in snapshot.iterator_cf(self.cf(Cf::Meta), IteratorMode::From(&prefix, Direction::Forward)) {
                let (key, value) = item?;
                if !key.starts_with(&prefix) {
                    break;
                }
                ops.push(put(Cf::Meta, &key, &value));
            }
        }
        Ok((seq, ops))
    }

    /// Deletes every store record (every journaled family, the stores'
    /// settings and journal sequences), keeping the node's own `meta`: a
    /// cache that fell behind its stores' checkpoints is loaded afresh. Only
    /// at start, before the engine writes.
    pub fn clear_store_records(&self) -> Result<usize, StoreError> {
        let mut deleted = 0;
        let mut batch = rocksdb::WriteBatch::default();
        for cf in Cf::ALL {
            for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                let (key, _) = item?;
                if cf.is_journaled() || is_store_meta(&key) || key.starts_with(JOURNAL_SEQ) || key.starts_with(LIVE) {
                    batch.delete_cf(self.cf(cf), &key);
                    deleted += 1;
                }
            }
        }
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(deleted)
    }

    /// Deletes what a cache holds of `store` that could be stale and act: its
    /// live orders (by the index) and their tickets, its intents and orphan
    /// refunds, its settings and its journal sequence. Settled orders stay
    /// (settled is final). For a store taken over at run time whose cache
    /// fell behind its checkpoint: the checkpoint then brings what is live.
    pub fn clear_live_records_of(&self, store: &str) -> Result<usize, StoreError> {
        let meta = self.cf(Cf::Meta);
        let mut batch = rocksdb::WriteBatch::default();
        let mut deleted = 0;
        let mut live = std::collections::HashSet::new();
        let prefix = live_key(store, "");
        for item in self.db.iterator_cf(meta, IteratorMode::From(&prefix, Direction::Forward)) {
            let (key, _) = item?;
            let Some(id) = key.strip_prefix(prefix.as_slice()) else { break };
            batch.delete_cf(self.cf(Cf::Orders), id);
            batch.delete_cf(meta, &key);
            live.insert(id.to_vec());
            deleted += 1;
        }
        for item in self.db.iterator_cf(self.cf(Cf::Tickets), IteratorMode::Start) {
            let (key, value) = item?;
            if live.contains(value.as_ref()) {
                batch.delete_cf(self.cf(Cf::Tickets), &key);
                deleted += 1;
            }
        }
        for item in self.db.iterator_cf(self.cf(Cf::Intents), IteratorMode::Start) {
            let (key, value) = item?;
            if codec::decode_intent(&value).map_err(|source| corrupt(Cf::Intents, &key, source))?.store == store {
                batch.delete_cf(self.cf(Cf::Intents), &key);
                deleted += 1;
            }
        }
        for item in self.db.iterator_cf(self.cf(Cf::Refunds), IteratorMode::Start) {
            let (key, value) = item?;
            if codec::decode_orphan_refund(&value).map_err(|source| corrupt(Cf::Refunds, &key, source))?.store == store {
                batch.delete_cf(self.cf(Cf::Refunds), &key);
                deleted += 1;
            }
        }
        for prefix in [[STATION_PAUSED, store.as_bytes(), b"/"].concat(), [SOLD_OUT, store.as_bytes(), b"/"].concat(), [ORDERING_PAUSED, store.as_bytes()].concat()] {
            for item in self.db.iterator_cf(meta, IteratorMode::From(&prefix, Direction::Forward)) {
                let (key, _) = item?;
                if !key.starts_with(&prefix) {
                    break;
                }
                batch.delete_cf(meta, &key);
                deleted += 1;
            }
        }
        batch.delete_cf(meta, journal_seq_key(store));
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        Ok(deleted)
    }

    /// A consistent copy of the database in `dir` (which must not exist yet),
    /// taken while it serves: RocksDB's checkpoint hard-links the SST files
    /// when `dir` is on the same file system and copies them otherwise.
    /// Starting crema on `dir` is the restore.
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }
}

const FIRST_ADMIN_KEY: &[u8] = b"first-admin-key-sha256";
const LAST_BACKUP: &[u8] = b"last-backup-ms";

/// Whether a `meta` key is one of a store's settings (its journal carries those).
fn is_store_meta(key: &[u8]) -> bool {
    [STATION_PAUSED, SOLD_OUT, ORDERING_PAUSED].iter().any(|prefix| key.starts_with(prefix))
}

/// The key of a store's last journal sequence applied to this cache (`meta`).
pub(crate) fn journal_seq_key(store: &str) -> Vec<u8> {
    [JOURNAL_SEQ, store.as_bytes()].concat()
}

const JOURNAL_SEQ: &[u8] = b"journal-seq/";

/// Prefix of the live-order index in `meta`: `live/{store}/{order id}` for
/// every order not yet settled (or with a refund pending), kept by a
/// replicated node's cache (see [`Store::ensure_live_index`]). A checkpoint
/// reads the live orders through it.
const LIVE: &[u8] = b"live/";
/// Marks a data dir whose live-order index is complete (removed by a local start).
const LIVE_INDEX_BUILT: &[u8] = b"live-index-built";

fn live_key(store: &str, id: &str) -> Vec<u8> {
    [LIVE, store.as_bytes(), b"/", id.as_bytes()].concat()
}

/// Whether a checkpoint must carry the order (it is not settled yet).
fn is_live(order: &Order) -> bool {
    !order.is_settled() || order.payment.status == crate::domain::PaymentStatus::RefundPending
}

/// The index entry that follows a write of `order`.
fn live_index_op(order: &Order) -> Op {
    let key = live_key(&order.store, &order.id);
    if is_live(order) {
        Op::Put(Cf::Meta, key, Vec::new())
    } else {
        Op::Delete(Cf::Meta, key)
    }
}

fn corrupt(cf: Cf, key: &[u8], source: CodecError) -> StoreError {
    StoreError::Corrupt { cf: cf.name(), key: String::from_utf8_lossy(key).into_owned(), source }
}

const SOLD_OUT: &[u8] = b"sold-out/";

fn sold_out_key(store: &str, item: &str) -> Vec<u8> {
    [SOLD_OUT, store.as_bytes(), b"/", item.as_bytes()].concat()
}

/// Prefix of the meta keys that mark a store whose ordering is paused.
const ORDERING_PAUSED: &[u8] = b"ordering-paused/";

/// Prefix of the meta keys that mark a paused station.
const STATION_PAUSED: &[u8] = b"station-paused/";

fn station_paused_key(store: &str, station: &str) -> Vec<u8> {
    [STATION_PAUSED, store.as_bytes(), b"/", station.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LineRequest, Menu, OrderRequest, OrderStatus, PaymentStatus};

    fn order(id: &str, store: &str) -> Order {
        let request = OrderRequest { store: Some(store.into()), customer: Some("lee".into()), items: vec![LineRequest::new("americano", 1)] };
        let mut draft = request.validate(&Menu::builtin()).unwrap();
        draft.store = store.to_owned();
        Order::paid(id.into(), draft, format!("k-{id}"), "p".into(), 1)
    }

    fn picked_up(id: &str, store: &str) -> Order {
        let mut order = order(id, store);
        order.status = OrderStatus::PickedUp;
        order
    }

    /// Writes `batch` as a replicated node's cache does (with the index).
    fn write(store: &Store, batch: &Batch) {
        let mut batch = batch.clone();
        batch.index_live_orders().unwrap();
        let mut write = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(cf, key, value) => write.put_cf(store.cf(*cf), key, value),
                Op::Delete(cf, key) => write.delete_cf(store.cf(*cf), key),
            }
        }
        store.db.write(write).unwrap();
    }

    fn checkpointed_orders(store: &Store, of: &str) -> Vec<String> {
        let (_, ops) = store.store_records(of, 0).unwrap();
        let mut ids: Vec<String> =
            ops.iter().filter(|op| op.cf == Cf::Orders.code()).map(|op| String::from_utf8(op.key.clone()).unwrap()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_checkpoint_holds_the_live_orders_and_the_newest_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Ids sort by time, as UUIDv7 do: h* are history, l* live, z* newest.
        for n in 0..50 {
            write(&store, Batch::new().put_order(&picked_up(&format!("h{n:03}"), "a")));
        }
        write(&store, Batch::new().put_order(&order("l001", "a")));
        let mut pending = picked_up("l002", "a");
        pending.status = OrderStatus::Cancelled;
        pending.payment.status = PaymentStatus::RefundPending;
        write(&store, Batch::new().put_order(&pending));
        write(&store, Batch::new().put_order(&order("l003", "b")));
        write(&store, Batch::new().put_order(&picked_up("z001", "a")));
        write(&store, Batch::new().put_order(&picked_up("z002", "b")));
        assert_eq!(checkpointed_orders(&store, "a"), ["l001", "l002", "z001"]);
        assert_eq!(checkpointed_orders(&store, "b"), ["l003", "z002"]);

        // Settled: out of the index, and so out of the next checkpoint.
        write(&store, Batch::new().put_order(&picked_up("l001", "a")));
        assert_eq!(checkpointed_orders(&store, "a"), ["l002", "z001"]);
        let (_, ops) = store.store_records("a", 0).unwrap();
        let customers = ops.iter().filter(|op| op.cf == Cf::Customers.code()).count();
        assert_eq!(customers, 1, "the customer index entry of each live order");
    }

    #[test]
    fn the_index_is_not_journaled_but_derived_from_the_journal() {
        let mut batch = Batch::new();
        batch.put_order(&order("l001", "a"));
        assert_eq!(batch.ops.len(), 1, "a local write pays nothing for the index");
        let ops = batch.journal_ops();
        assert_eq!(ops.len(), 1, "only the order travels");
        let replayed = Batch::from_journal_ops("a", ops).unwrap();
        assert_eq!(replayed.ops.len(), 2, "the order and its index entry");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        write(&store, &replayed);
        assert_eq!(checkpointed_orders(&store, "a"), ["l001"]);
        // A settled order read back deletes its entry.
        write(&store, &Batch::from_journal_ops("a", Batch::new().put_order(&picked_up("l001", "a")).journal_ops()).unwrap());
        assert_eq!(checkpointed_orders(&store, "a"), ["l001"], "still the newest");
        write(&store, Batch::new().put_order(&picked_up("z001", "a")));
        assert_eq!(checkpointed_orders(&store, "a"), ["z001"]);
    }

    #[test]
    fn a_data_dir_from_before_the_index_gets_it_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for id in ["l001", "l002"] {
                store.db.put_cf(store.cf(Cf::Orders), id, codec::encode_order(&order(id, "a"))).unwrap();
            }
            store.db.delete_cf(store.cf(Cf::Meta), LIVE_INDEX_BUILT).unwrap();
            assert!(checkpointed_orders(&store, "a").len() <= 1, "no index yet");
        }
        let store = Store::open(dir.path()).unwrap();
        store.ensure_live_index().unwrap();
        assert_eq!(checkpointed_orders(&store, "a"), ["l001", "l002"]);
        // A local start forgets it; settled meanwhile, l001 leaves it at the next replicated start.
        store.forget_live_index().unwrap();
        store.db.put_cf(store.cf(Cf::Orders), "l001", codec::encode_order(&picked_up("l001", "a"))).unwrap();
        store.db.put_cf(store.cf(Cf::Orders), "l000", codec::encode_order(&picked_up("l000", "a"))).unwrap();
        store.ensure_live_index().unwrap();
        assert_eq!(checkpointed_orders(&store, "a"), ["l002"]);
    }
}
