//! The order-event log the read side follows: every durable change of an
//! order, numbered in publication order, fanned out through a broadcast and
//! retained for a while so that a reconnecting stream (`Last-Event-ID`) can
//! replay what it missed.
//!
//! Publishing never blocks on readers: the broadcast has a fixed capacity and a
//! reader that falls further behind gets `Lagged` (and is told and dropped by
//! the SSE handler; the projection recounts from the store).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use super::projection::OrderChanged;
use crate::domain::{Order, OrderStatus};

/// Capacity of the broadcast: how far a reader may fall behind.
pub const EVENT_BUFFER: usize = 16_384;
/// Events kept for `Last-Event-ID` replays.
pub const RETAINED: usize = 4_096;

/// Cheap to clone: clones share one log.
#[derive(Clone)]
pub struct EventLog {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Mutex<Retained>,
    sender: broadcast::Sender<OrderChanged>,
}

thread_local! {
    /// Set on the order arbiters' threads: what is published there during one
    /// turn of the event loop is numbered and sent together, under one lock.
    static TURN_BATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// This turn's changes not yet published, by log.
    static OUTBOX: std::cell::RefCell<Vec<(usize, Vec<(Arc<Order>, Option<OrderStatus>)>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Lets changes published on the current thread go out once per event-loop
/// turn. Call only on a thread that runs a tokio `LocalSet` (an actix arbiter).
pub fn publish_per_turn() {
    TURN_BATCHING.with(|on| on.set(true));
}

struct Retained {
    last_seq: u64,
    recent: VecDeque<OrderChanged>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            shared: Arc::new(Shared {
                inner: Mutex::new(Retained { last_seq: 0, recent: VecDeque::with_capacity(RETAINED) }),
                sender: broadcast::channel(EVENT_BUFFER).0,
            }),
        }
    }
}

impl EventLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Retained> {
        self.shared.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Numbers, retains and broadcasts a durable change. On an order arbiter
    /// (see [`publish_per_turn`]) the change waits for the end of the current
    /// turn of the event loop and goes out with the others of that turn, in
    /// order, under one lock.
    pub fn publish(&self, order: &Arc<Order>, previous: Option<OrderStatus>) {
        if !TURN_BATCHING.with(std::cell::Cell::get) {
            self.publish_all(std::iter::once((order.clone(), previous)));
            return;
        }
        let me = Arc::as_ptr(&self.shared) as usize;
        let first = OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            match outbox.iter_mut().find(|(log, _)| *log == me) {
                Some((_, held)) => {
                    held.push((order.clone(), previous));
                    held.len() == 1
                }
                None => {
                    outbox.push((me, vec![(order.clone(), previous)]));
                    true
                }
            }
        });
        if first {
            let log = self.clone();
            tokio::task::spawn_local(async move {
                let held = OUTBOX.with(|outbox| {
                    let mut outbox = outbox.borrow_mut();
                    outbox.iter_mut().find(|(log, _)| *log == me).map(|(_, held)| std::mem::take(held))
                });
                log.publish_all(held.unwrap_or_default());
            });
        }
    }

    fn publish_all(&self, changes: impl IntoIterator<Item = (Arc<Order>, Option<OrderStatus>)>) {
        let mut inner = self.lock();
        for (order, previous) in changes {
            inner.last_seq += 1;
            let change = OrderChanged { seq: inner.last_seq, order, previous };
            if inner.recent.len() == RETAINED {
                inner.recent.pop_front();
            }
            inner.recent.push_back(change.clone());
            // No reader is not an error.
            let _ = self.shared.sender.send(change);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<OrderChanged> {
        self.shared.sender.subscribe()
    }

    /// Retained events after `after`, and a receiver for everything after
    /// them — taken together, so nothing falls in between.
    pub fn subscribe_after(&self, after: u64) -> (Vec<OrderChanged>, broadcast::Receiver<OrderChanged>) {
        let inner = self.lock();
        let receiver = self.shared.sender.subscribe();
        let replay = inner.recent.iter().filter(|change| change.seq > after).cloned().collect();
        (replay, receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LineRequest, Menu, OrderRequest};

    fn order(id: &str) -> Arc<Order> {
        let request = OrderRequest { customer: None, items: vec![LineRequest { menu_id: "americano".into(), qty: 1 }] };
        Arc::new(Order::paid(id.into(), request.validate(&Menu::builtin()).unwrap(), format!("k-{id}"), "p".into(), 1))
    }

    #[tokio::test]
    async fn changes_of_one_turn_go_out_together_in_order() {
        let log = EventLog::default();
        let mut receiver = log.subscribe();
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                publish_per_turn();
                let publisher = log.clone();
                tokio::task::spawn_local(async move {
                    for id in ["a", "b", "c"] {
                        publisher.publish(&order(id), None);
                    }
                    assert!(publisher.subscribe_after(0).0.is_empty(), "held until the turn ends");
                })
                .await
                .unwrap();
                tokio::task::yield_now().await;
            })
            .await;
        TURN_BATCHING.with(|on| on.set(false));
        let got: Vec<(u64, String)> =
            (0..3).map(|_| receiver.try_recv().map(|change| (change.seq, change.order.id.clone())).unwrap()).collect();
        assert_eq!(got, vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]);
        assert_eq!(log.subscribe_after(1).0.len(), 2, "retained for replays too");
    }

    #[test]
    fn without_turn_batching_a_change_goes_out_at_once() {
        let log = EventLog::default();
        let mut receiver = log.subscribe();
        log.publish(&order("a"), None);
        assert_eq!(receiver.try_recv().unwrap().seq, 1);
    }
}
