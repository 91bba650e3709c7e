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

pub struct EventLog {
    inner: Mutex<Retained>,
    sender: broadcast::Sender<OrderChanged>,
}

struct Retained {
    last_seq: u64,
    recent: VecDeque<OrderChanged>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            inner: Mutex::new(Retained { last_seq: 0, recent: VecDeque::with_capacity(RETAINED) }),
            sender: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl EventLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Retained> {
        self.inner.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Numbers, retains and broadcasts a durable change.
    pub fn publish(&self, order: &Arc<Order>, previous: Option<OrderStatus>) {
        let mut inner = self.lock();
        inner.last_seq += 1;
        let change = OrderChanged { seq: inner.last_seq, order: order.clone(), previous };
        if inner.recent.len() == RETAINED {
            inner.recent.pop_front();
        }
        inner.recent.push_back(change.clone());
        // No reader is not an error.
        let _ = self.sender.send(change);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<OrderChanged> {
        self.sender.subscribe()
    }

    /// Retained events after `after`, and a receiver for everything after
    /// them — taken together, so nothing falls in between.
    pub fn subscribe_after(&self, after: u64) -> (Vec<OrderChanged>, broadcast::Receiver<OrderChanged>) {
        let inner = self.lock();
        let receiver = self.sender.subscribe();
        let replay = inner.recent.iter().filter(|change| change.seq > after).cloned().collect();
        (replay, receiver)
    }
}
