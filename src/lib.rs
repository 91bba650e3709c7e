//! crema: an actor-based, in-memory, durable order engine for cafés.
//!
//! - [`domain`]: the menu, the order and its state machine — pure, no I/O.
//! - [`actors`]: order, payment, barista pool, projection; the engine they share.
//! - [`persistence`]: RocksDB, the codec, the store writer, the journal seam
//!   (local, or each store's replicated JetStream journal).
//! - [`recovery`]: start-up recovery and reconciliation (drives the actors over
//!   what persistence reads back).
//! - [`feed`]: the event feed on JetStream (replicated mode).
//! - [`http`]: the API of `API.md`, on a hardened hyper loop.
//! - [`app`]: starts and stops all of it as one unit.
//! - [`cli`]: the `crema` command line.
//! - [`rush`]: `crema rush`, the open-loop café peak-load generator.

pub mod actors;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod cli;
pub mod config;
pub mod domain;
pub mod feed;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod payment_sim;
pub mod persistence;
pub mod recovery;
pub mod rush;
pub mod telemetry;
