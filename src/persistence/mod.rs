//! Everything that touches RocksDB.
//!
//! - [`codec`]: the one place records are encoded and decoded (versioned bincode envelope).
//! - [`store`]: the database, its column families and the read paths.
//! - [`writer`]: the store writer, the single place that writes RocksDB, with group commit.
//! - [`journal`]: the seam every durable change goes through: RocksDB alone
//!   (`sync`/`async`), or a store's replicated JetStream journal first ([`jetstream`]).
//!
//! Recovery (what start-up reads back to revive live orders) drives actors, so
//! it lives above this module, in `crate::recovery`: nothing here imports actors.
//!
//! On-disk layout (column families; keys are bytes, values are codec envelopes):
//!
//! | cf            | key                                   | value                     |
//! |---------------|---------------------------------------|---------------------------|
//! | `orders`      | order id (UUIDv7 text: sorts by time)  | `Order` snapshot          |
//! | `intents`     | payment key                           | `PaymentIntent`           |
//! | `refunds`     | payment key                           | `OrphanRefund`            |
//! | `tickets`     | queue seq, u64 big-endian             | order id (raw UTF-8)      |
//! | `customers`   | customer `\0` order id                | empty                     |
//! | `idempotency` | `Idempotency-Key`                     | `IdempotencyRecord`       |
//! | `meta`        | `schema_version`                      | u32 big-endian            |
//!
//! A snapshot and every index entry it implies are written in one atomic batch.

pub mod codec;
pub mod jetstream;
pub mod journal;
pub mod store;
pub mod writer;

pub use codec::{IdempotencyRecord, IdempotentOutcome, OrphanRefund, PaymentIntent};
pub use journal::Journal;
pub use store::{Batch, Cf, Store, StoreError};
pub use writer::{StoreWriter, WriterStats};
