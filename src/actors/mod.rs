//! The actors of the engine and the messages between them.
//!
//! | actor        | owns                                         | runs on                 |
//! |--------------|----------------------------------------------|-------------------------|
//! | `order`      | one order's state machine and saga           | the order arbiter that served its `POST` |
//! | `payment`    | a gateway client; one per order arbiter, sharing one breaker and bulkhead | each order arbiter |
//! | `barista`    | one store's ticket queue and stations (one pool per store, see [`stores`]) | the core arbiter |
//! | `projection` | counts by status, throughput                 | the core arbiter        |
//! | store writer | RocksDB writes (`crate::persistence::writer`) | its own thread          |
//!
//! [`shared`] holds what every actor shares; [`engine`] adds the [`directory`]
//! of live order actors, through which an order's actor is found or revived.
//! The modules form no import cycle (see [`engine`]). `docs/runtime.md` gives
//! every bound and the shutdown order.

pub mod barista;
pub mod breaker;
pub mod directory;
pub mod engine;
pub mod event_log;
pub mod order;
pub mod payment;
pub mod projection;
pub mod shared;
pub mod stores;

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

/// [`deliver`] to a [`Recipient`]: the same bound, the same order.
pub fn deliver_to<M>(to: &Recipient<M>, msg: M) -> bool
where
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use actix::prelude::*;

    /// Records what it is told, after a first message that keeps it busy.
    struct Slow {
        seen: std::sync::Arc<std::sync::Mutex<Vec<u32>>>,
    }

    impl Actor for Slow {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Self::Context) {
            ctx.set_mailbox_capacity(2);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Note(u32);

    impl Handler<Note> for Slow {
        type Result = ();

        fn handle(&mut self, Note(n): Note, ctx: &mut Self::Context) {
            self.seen.lock().unwrap().push(n);
            if n == 0 {
                // Busy for a while: the mailbox fills up behind this message.
                ctx.wait(actix::fut::wrap_future(tokio::time::sleep(Duration::from_millis(100))));
            }
        }
    }

    #[actix::test]
    async fn deliver_goes_past_a_full_mailbox_in_order_and_drops_nothing() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let actor = Slow { seen: seen.clone() }.start();
        for n in 0..20 {
            assert!(super::deliver(&actor, Note(n)));
        }
        assert!(actor.try_send(Note(99)).is_err(), "the mailbox is full: deliver went past its bound");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[actix::test]
    async fn deliver_to_a_stopped_actor_says_so() {
        let arbiter = Arbiter::new();
        let actor = Slow::start_in_arbiter(&arbiter.handle(), |_| Slow { seen: Default::default() });
        arbiter.stop();
        let _ = tokio::task::spawn_blocking(move || arbiter.join()).await;
        assert!(!super::deliver(&actor, Note(1)));
    }
}
