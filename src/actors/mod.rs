//! The actors of the engine and the messages between them.
//!
//! | actor        | owns                                         | runs on                 |
//! |--------------|----------------------------------------------|-------------------------|
//! | `order`      | one order's state machine and saga           | the order arbiter that served its `POST` |
//! | `payment`    | a gateway client; one per order arbiter, sharing one breaker and bulkhead | each order arbiter |
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

use actix::prelude::*;

/// Delivers a message whose sender does not wait for its handling (a ticket
/// joining the queue, a ticket move): into the mailbox at once if it has room,
/// else beyond its bound, in order either way. Only for messages whose number
/// is bounded by design (see `docs/runtime.md`): a ticket holds a reserved
/// queue place before its `Enqueue` is sent, and a ticket has at most a few
/// moves in flight. `false` if the actor has stopped.
pub fn deliver<A, M>(to: &Addr<A>, msg: M) -> bool
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match to.try_send(msg) {
        Ok(()) => true,
        Err(SendError::Full(msg)) => {
            to.do_send(msg);
            to.connected()
        }
        Err(SendError::Closed(_)) => false,
    }
}
