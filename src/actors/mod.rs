//! The actors of the engine and the messages between them.
//!
//! | actor        | owns                                         | runs on                 |
//! |--------------|----------------------------------------------|-------------------------|
//! | `order`      | one order's state machine and saga           | one of the order arbiters |
//! | `payment`    | the gateway, the bulkhead, payment counters  | the core arbiter        |
//! | `barista`    | the ticket queue and the stations            | the core arbiter        |
//! | `projection` | counts by status, throughput                 | the core arbiter        |
//! | store writer | RocksDB writes (`crate::persistence::writer`) | its own thread          |
//!
//! [`directory`] finds (or revives) the actor of an order; [`engine`] holds what
//! every actor shares. `docs/runtime.md` gives every bound and the shutdown order.

pub mod barista;
pub mod breaker;
pub mod directory;
pub mod engine;
pub mod event_log;
pub mod order;
pub mod payment;
pub mod projection;
