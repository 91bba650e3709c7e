//! What every actor and HTTP handler shares ([`Shared`]: settings, the
//! store and its journal, the payment actors, the stores' pools, the read
//! side, the counters of work in progress), and the actix system the actors
//! run on. The live order actors are not here but in [`super::engine`],
//! which is built on this module: an order actor uses what is shared and
//! nothing above it.
//!
//! Threads: the actix system thread; one "core" arbiter for the pool and the
//! projection; `order_arbiters` arbiters (default: one per core), each with
//! its own payment actor, that serve the HTTP connections handed to them
//! ([`Engine::connection_spawner`]) and run the order actors those requests
//! start; the store writer's own thread. The caller's tokio runtime only
//! accepts connections. See `docs/runtime.md`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::stores::Stores;
use super::breaker::Breaker;
use super::payment::{PaymentActor, PaymentStats, SharedBreaker};
use super::event_log::EventLog;
use super::projection::Projection;
use crate::config::{GatewayKind, Settings};
use crate::gateway::{HttpGateway, PaymentGateway, SimulatedGateway};
use crate::metrics::HttpMetrics;
use crate::domain::{Menu, Order, OrderStatus};
use crate::persistence::{Journal, Store};

thread_local! {
    /// Set on the order arbiters' threads: an order actor started from code
    /// running there (an HTTP connection served there) stays there.
    static ON_ORDER_ARBITER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Which order arbiter the current thread is, if it is one.
pub fn order_arbiter_index() -> Option<usize> {
    ON_ORDER_ARBITER.with(std::cell::Cell::get)
}

/// Whether the current thread is one of the order arbiters.
pub fn on_order_arbiter() -> bool {
    order_arbiter_index().is_some()
}

/// The actix system on its own thread, with the arbiters the engine uses.
pub struct ActorSystem {
    system: System,
    core: ArbiterHandle,
    orders: Vec<ArbiterHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ActorSystem {
    /// Starts the system thread and `order_arbiters` arbiters for order actors.
    pub fn start(order_arbiters: usize) -> ActorSystem {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("actix-system".into())
            .spawn(move || {
                let system = System::new();
                let arbiters: Vec<Arbiter> = (0..=order_arbiters.max(1)).map(|_| Arbiter::new()).collect();
                let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
                let _ = tx.send((System::current(), handles));
                let _ = system.run();
                for arbiter in arbiters {
                    arbiter.stop();
                    let _ = arbiter.join();
                }
            })
            .expect("spawning the actix system thread");
        let (system, mut handles) = rx.recv().expect("the actix system thread starts");
        let core = handles.remove(0);
        for (index, arbiter) in handles.iter().enumerate() {
            arbiter.spawn_fn(move || ON_ORDER_ARBITER.with(|on| on.set(Some(index))));
        }
        ActorSystem { system, core, orders: handles, thread: Some(thread) }
    }

    pub fn core(&self) -> &ArbiterHandle {
        &self.core
    }

    /// Stops every arbiter and waits for the system thread.
    pub fn stop(mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub struct Shared {
    pub settings: Settings,
    pub menu: Menu,
    pub store: Store,
    /// Where every durable change goes: RocksDB, or each store's replicated
    /// journal and then RocksDB (`crate::persistence::journal`).
    pub journal: Journal,
    /// One payment actor per order arbiter, sharing one breaker and bulkhead:
    /// a charge is a message to the actor on the order actor's own thread.
    payments: Vec<Addr<PaymentActor>>,
    pub payment_stats: Arc<PaymentStats>,
    /// The chain's stores, each with its own pool, queue, numbers, pause and sold-out marks.
    pub stores: Stores,
    pub projection: Addr<Projection>,
    pub events: EventLog,
    /// The next ticket's place in the queue; recovery starts it past the largest on disk.
    queue_seq: AtomicU64,
    order_arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    /// Recovery has finished: `/readyz` is 200 and commands are accepted.
    pub ready: AtomicBool,
    /// `POST /orders` in progress (see `orders.max_placing`).
    pub placing: Placing,
    /// Orders answered 202 `placement_pending` whose placement may still run.
    pub pending: PendingPlacements,
    pub http_metrics: Arc<HttpMetrics>,
    /// Admin changes kept on disk (station pauses, the ordering pause,
    /// sold-out marks), one at a time, so that disk and memory agree.
    pub admin_changes: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Starts the shared actors on `system` over an opened store and its journal.
    pub fn start(settings: Settings, store: Store, journal: Journal, system: &ActorSystem) -> Result<Arc<Shared>, String> {
        let gateway: Arc<dyn PaymentGateway> = match settings.payment.gateway {
            GatewayKind::Simulated => Arc::new(SimulatedGateway::new(settings.payment.simulated.clone())),
            GatewayKind::Http => Arc::new(HttpGateway::new(
                &settings.payment.url,
                Duration::from_millis(settings.payment.timeout_ms),
            )?),
        };
        let payment_stats = Arc::new(PaymentStats::default());
        let payments = {
            let timeout = Duration::from_millis(settings.payment.timeout_ms);
            let breaker: SharedBreaker = Arc::new(std::sync::Mutex::new(Breaker::new(settings.payment.breaker.clone())));
            system
                .orders
                .iter()
                .map(|arbiter| {
                    let (gateway, breaker, stats) = (gateway.clone(), breaker.clone(), payment_stats.clone());
                    PaymentActor::start_in_arbiter(arbiter, move |_| PaymentActor::sharing(gateway, timeout, breaker, stats))
                })
                .collect()
        };
        let stores = Stores::start(&settings, system.core());
        let events = EventLog::default();
        let projection = {
            let store = store.clone();
            let receiver = events.subscribe();
            let ids = settings.stores().into_iter().map(|store| store.id).collect();
            Projection::start_in_arbiter(system.core(), move |_| Projection::new(store, receiver, ids))
        };
        Ok(Arc::new(Shared {
            menu: settings.menu(),
            settings,
            store,
            journal,
            payments,
            payment_stats,
            stores,
            projection,
            events,
            queue_seq: AtomicU64::new(1),
            order_arbiters: system.orders.clone(),
            next_arbiter: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            placing: Placing::default(),
            pending: PendingPlacements::default(),
            http_metrics: Arc::default(),
            admin_changes: tokio::sync::Mutex::new(()),
        }))
    }

    /// The payment actor on this thread's order arbiter (the first one elsewhere).
    pub fn payment(&self) -> &Addr<PaymentActor> {
        &self.payments[order_arbiter_index().unwrap_or(0) % self.payments.len()]
    }

    /// The arbiter for the next order actor (round-robin).
    pub fn order_arbiter(&self) -> ArbiterHandle {
        let next = self.next_arbiter.fetch_add(1, Ordering::Relaxed);
        self.order_arbiters[next % self.order_arbiters.len()].clone()
    }

    /// Serves HTTP connections on the order arbiters, round-robin: a request's
    /// handler, the order actor it starts and the actor's replies then share
    /// one thread (see `docs/runtime.md`).
    pub fn connection_spawner(&self) -> crate::http::Spawner {
        let arbiters = self.order_arbiters.clone();
        let next = AtomicUsize::new(0);
        crate::http::Spawner(Arc::new(move |connection| {
            let at = next.fetch_add(1, Ordering::Relaxed) % arbiters.len();
            if !arbiters[at].spawn(connection) {
                tracing::debug!("a connection arrived while the actor system stops; dropped");
            }
        }))
    }

    pub fn next_queue_seq(&self) -> u64 {
        self.queue_seq.fetch_add(1, Ordering::AcqRel)
    }

    /// Makes the next queue seq larger than `seen` (recovery).
    pub fn queue_seq_after(&self, seen: u64) {
        self.queue_seq.fetch_max(seen + 1, Ordering::AcqRel);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Tells the read side about a durable change. Never blocks: with no
    /// reader the event is simply dropped.
    pub fn publish(&self, order: &Arc<Order>, previous: Option<OrderStatus>) {
        self.events.publish(order, previous);
    }
}

/// The ids of orders whose client was answered 202 `placement_pending`, so
/// that `GET /orders/{id}` can say "still being placed" without asking the
/// actor (whose mailbox waits behind the placement). Only the rare 202 path
/// inserts; an entry leaves when its placement ends, or when a `GET` finds
/// the outcome settled. Bounded: beyond [`PendingPlacements::MAX`] ids a 202
/// is not remembered, and such a `GET` waits for the actor instead.
#[derive(Debug, Default)]
pub struct PendingPlacements {
    ids: std::sync::Mutex<std::collections::HashSet<String>>,
    len: AtomicUsize,
}

impl PendingPlacements {
    pub const MAX: usize = 10_000;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.ids.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn mark(&self, id: &str) {
        let mut ids = self.lock();
        if ids.len() < Self::MAX && ids.insert(id.to_owned()) {
            self.len.store(ids.len(), Ordering::Release);
        }
    }

    /// Forgets `id`; costs one atomic load when nothing is pending.
    pub fn clear(&self, id: &str) {
        if self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut ids = self.lock();
        if ids.remove(id) {
            self.len.store(ids.len(), Ordering::Release);
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.len.load(Ordering::Acquire) > 0 && self.lock().contains(id)
    }
}

/// Counts `POST /orders` in progress; a [`PlacingPermit`] gives its place back when dropped.
#[derive(Debug, Default)]
pub struct Placing {
    in_progress: Arc<AtomicUsize>,
}

impl Placing {
    /// A permit if fewer than `max` are in progress.
    pub fn try_acquire(&self, max: usize) -> Option<PlacingPermit> {
        self.in_progress
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| PlacingPermit { in_progress: self.in_progress.clone() })
    }

    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }
}

pub struct PlacingPermit {
    in_progress: Arc<AtomicUsize>,
}

impl Drop for PlacingPermit {
    fn drop(&mut self) {
        self.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod placing_tests {
    use super::Placing;

    #[test]
    fn permits_are_capped_and_given_back_on_drop() {
        let placing = Placing::default();
        let first = placing.try_acquire(2).expect("first");
        let _second = placing.try_acquire(2).expect("second");
        assert!(placing.try_acquire(2).is_none(), "a third is refused");
        drop(first);
        assert!(placing.try_acquire(2).is_some(), "a dropped permit frees its place");
        assert_eq!(placing.in_progress(), 1);
    }
}
