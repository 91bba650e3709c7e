//! The projection: the read side that dashboards and `/stats` ask.
//!
//! It follows the order events broadcast by the order actors (it never sits on
//! the write path: a slow projection only lags, it cannot slow an order) and
//! keeps counts by status and the rate of new orders. Lists of orders are read
//! from the `customers` index in RocksDB, which survives restarts.
//!
//! It also keeps the pickup shelf: the orders ready and not yet picked up,
//! longest-ready first, at most [`SHELF_MAX`] of them (the count of ready
//! orders stays exact; a shelf beyond that size is a benchmark, not a café).
//!
//! And per store: orders and revenue (seeded by recovery from every order on
//! disk), and the lead times (paid → ready) of its last [`LEAD_TIMES`] ready
//! orders, for the dashboard's p50/p90.
//!
//! If it falls so far behind that the broadcast drops events, it rebuilds its
//! counts, the shelf and the store figures from the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use actix::prelude::*;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::domain::time::now_ms;
use crate::domain::{Order, OrderStatus};
use crate::persistence::Store;

/// One order's change of state, published after it is durable.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct OrderChanged {
    /// Position in the event log (`GET /events` uses it as the SSE id).
    pub seq: u64,
    pub order: Arc<Order>,
    /// The status before, `None` for a newly established order.
    pub previous: Option<OrderStatus>,
}

/// Width of the throughput window, in seconds.
const RATE_WINDOW_S: u64 = 10;

/// Most orders the pickup shelf holds.
pub const SHELF_MAX: usize = 10_000;

/// The ready orders not yet picked up, by (ready time, id).
#[derive(Default)]
struct Shelf {
    by_age: BTreeMap<(u64, String), Arc<Order>>,
    ready_at: HashMap<String, u64>,
}

impl Shelf {
    fn put(&mut self, order: Arc<Order>) {
        if self.by_age.len() >= SHELF_MAX || self.ready_at.contains_key(&order.id) {
            return;
        }
        self.ready_at.insert(order.id.clone(), order.updated_ms);
        self.by_age.insert((order.updated_ms, order.id.clone()), order);
    }

    fn take(&mut self, id: &str) {
        if let Some(at) = self.ready_at.remove(id) {
            self.by_age.remove(&(at, id.to_owned()));
        }
    }

    /// Keeps the longest-ready of `orders` (all ready), up to the bound.
    fn refill(&mut self, mut orders: Vec<Order>) {
        *self = Shelf::default();
        orders.sort_by_key(|order| order.updated_ms);
        for order in orders.into_iter().take(SHELF_MAX) {
            self.put(Arc::new(order));
        }
    }
}

/// Lead times kept per store for the percentiles.
pub const LEAD_TIMES: usize = 1_000;

/// One store's figures for the dashboard.
#[derive(Debug, Clone, Default)]
pub struct StoreFigures {
    /// Orders established.
    pub orders: u64,
    /// Cancelled orders whose refund is not done yet.
    pub refunds_pending: u64,
    /// Their totals, less those cancelled (refunded or owed), in the minor unit.
    pub revenue: u64,
    /// Paid → ready, ms, of the last [`LEAD_TIMES`] orders made, oldest first.
    pub lead_ms: VecDeque<u64>,
}

impl StoreFigures {
    fn lead_time(&mut self, order: &Order) {
        let at = |status| order.history.iter().find(|entry| entry.status == status).map(|entry| entry.at_ms);
        if let (Some(paid), Some(ready)) = (at(OrderStatus::Paid), at(OrderStatus::Ready)) {
            if self.lead_ms.len() == LEAD_TIMES {
                self.lead_ms.pop_front();
            }
            self.lead_ms.push_back(ready.saturating_sub(paid));
        }
    }

    /// An order read from disk, in id (time) order.
    fn scan(&mut self, order: &Order) {
        self.orders += 1;
        if order.payment.status == crate::domain::PaymentStatus::RefundPending {
            self.refunds_pending += 1;
        }
        if order.status != OrderStatus::Cancelled {
            self.revenue += order.total;
        }
        self.lead_time(order);
    }
}

/// The `q`-quantile (0–1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: impl Iterator<Item = u64>, q: f64) -> Option<u64> {
    let mut sorted: Vec<u64> = values.collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// What a scan of every order gives the read side: the [`SHELF_MAX`]
/// longest-ready orders and each store's figures. A ready order is copied
/// only while it is among the longest-ready seen so far: a scan in id (time)
/// order of a million ready orders copies about `SHELF_MAX` of them, not all.
#[derive(Default)]
pub struct ReadScan {
    /// The longest-ready orders so far, the most recently ready on top.
    shelf: std::collections::BinaryHeap<ByReadyTime>,
    figures: HashMap<String, StoreFigures>,
}

/// An order ordered by when it became ready (then by id).
struct ByReadyTime(Order);

impl ByReadyTime {
    fn key(&self) -> (u64, &str) {
        (self.0.updated_ms, &self.0.id)
    }
}

impl PartialEq for ByReadyTime {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ByReadyTime {}

impl PartialOrd for ByReadyTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByReadyTime {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl ReadScan {
    pub fn offer(&mut self, order: &Order) {
        match self.figures.get_mut(order.store.as_str()) {
            Some(figures) => figures.scan(order),
            None => self.figures.entry(order.store.clone()).or_default().scan(order),
        }
        if order.status != OrderStatus::Ready {
            return;
        }
        if self.shelf.len() < SHELF_MAX {
            self.shelf.push(ByReadyTime(order.clone()));
        } else if self.shelf.peek().is_some_and(|newest| (order.updated_ms, order.id.as_str()) < newest.key()) {
            self.shelf.pop();
            self.shelf.push(ByReadyTime(order.clone()));
        }
    }

    /// The longest-ready orders found, in no particular order.
    fn into_shelf(shelf: std::collections::BinaryHeap<ByReadyTime>) -> Vec<Order> {
        shelf.into_iter().map(|ready| ready.0).collect()
    }
}

/// Per store: lead time (paid → ready) and queue wait (queued → a station
/// started it) histograms, in ms, since this process started.
#[derive(Default)]
struct StoreHistograms(HashMap<String, (crate::metrics::Histogram, crate::metrics::Histogram)>);

impl StoreHistograms {
    fn of(&mut self, store: &str) -> &(crate::metrics::Histogram, crate::metrics::Histogram) {
        if !self.0.contains_key(store) {
            let new = || crate::metrics::Histogram::new(crate::metrics::CAFE_MS);
            self.0.insert(store.to_owned(), (new(), new()));
        }
        &self.0[store]
    }
}

pub struct Projection {
    counts: HashMap<OrderStatus, u64>,
    shelf: Shelf,
    figures: HashMap<String, StoreFigures>,
    histograms: StoreHistograms,
    /// (second, orders established in it), newest last.
    placed: VecDeque<(u64, u64)>,
    store: Store,
    events: Option<tokio::sync::broadcast::Receiver<OrderChanged>>,
}

impl Projection {
    /// `stores`: the configured store ids, so that each has figures and
    /// histograms (at zero) before its first order.
    pub fn new(store: Store, events: tokio::sync::broadcast::Receiver<OrderChanged>, stores: Vec<String>) -> Self {
        let mut histograms = StoreHistograms::default();
        for id in &stores {
            histograms.of(id);
        }
        Projection {
            counts: HashMap::new(),
            shelf: Shelf::default(),
            figures: stores.into_iter().map(|id| (id, StoreFigures::default())).collect(),
            histograms,
            placed: VecDeque::new(),
            store,
            events: Some(events),
        }
    }

    fn record(&mut self, change: &OrderChanged) {
        if let Some(previous) = change.previous {
            if let Some(count) = self.counts.get_mut(&previous) {
                *count = count.saturating_sub(1);
            }
        } else {
            let second = now_ms() / 1000;
            match self.placed.back_mut() {
                Some((at, count)) if *at == second => *count += 1,
                _ => self.placed.push_back((second, 1)),
            }
            while self.placed.front().is_some_and(|(at, _)| *at + RATE_WINDOW_S < second) {
                self.placed.pop_front();
            }
        }
        *self.counts.entry(change.order.status).or_default() += 1;
        let order = &change.order;
        // Looked up by &str: no new key string per event.
        if !self.figures.contains_key(&order.store) {
            self.figures.insert(order.store.clone(), StoreFigures::default());
        }
        let Some(figures) = self.figures.get_mut(&order.store) else { return };
        match (change.previous, order.status) {
            (None, _) => {
                figures.orders += 1;
                figures.revenue += order.total;
            }
            (Some(before), OrderStatus::Cancelled) if before != OrderStatus::Cancelled => {
                figures.revenue = figures.revenue.saturating_sub(order.total);
                figures.refunds_pending += 1;
            }
            (Some(OrderStatus::Cancelled), OrderStatus::Cancelled) => {
                // The refund went through.
                figures.refunds_pending = figures.refunds_pending.saturating_sub(1);
            }
            (Some(before), OrderStatus::Ready) if before != OrderStatus::Ready => {
                figures.lead_time(order);
                if let Some(lead) = figures.lead_ms.back() {
                    self.histograms.of(&order.store).0.observe(*lead);
                }
            }
            (Some(OrderStatus::Queued), OrderStatus::Brewing) => {
                // Queue wait: from the order's last `queued` to this start.
                let queued = order.history.iter().rev().find(|entry| entry.status == OrderStatus::Queued);
                if let Some(queued) = queued {
                    self.histograms.of(&order.store).1.observe(order.updated_ms.saturating_sub(queued.at_ms));
                }
            }
            _ => {}
        }
        if order.status == OrderStatus::Ready {
            self.shelf.put(order.clone());
        } else if change.previous == Some(OrderStatus::Ready) {
            self.shelf.take(&order.id);
        }
    }

    fn orders_per_s(&self) -> f64 {
        let now = now_ms() / 1000;
        // Whole seconds only: the current one is still filling.
        let done: u64 = self
            .placed
            .iter()
            .filter(|(at, _)| *at < now && *at + RATE_WINDOW_S >= now)
            .map(|(_, count)| count)
            .sum();
        done as f64 / RATE_WINDOW_S as f64
    }
}

impl Actor for Projection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(events) = self.events.take() {
            ctx.add_stream(BroadcastStream::new(events));
        }
    }
}

impl StreamHandler<Result<OrderChanged, BroadcastStreamRecvError>> for Projection {
    fn handle(&mut self, item: Result<OrderChanged, BroadcastStreamRecvError>, _: &mut Self::Context) {
        match item {
            Ok(change) => self.record(&change),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                tracing::warn!(missed, "projection fell behind; recounting from the store");
                let mut counts = HashMap::new();
                let mut scan = ReadScan::default();
                let scanned = self.store.for_each_order(|order| {
                    *counts.entry(order.status).or_default() += 1;
                    scan.offer(&order);
                });
                match scanned {
                    Ok(_) => {
                        self.counts = counts;
                        self.shelf.refill(ReadScan::into_shelf(scan.shelf));
                        self.figures.extend(scan.figures);
                    }
                    Err(err) => tracing::error!(error = %err, "recounting orders failed"),
                }
            }
        }
    }
}

/// Sets the counts, the pickup shelf and the store figures found by recovery.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Seed(pub HashMap<OrderStatus, u64>, pub ReadScan);

impl Handler<Seed> for Projection {
    type Result = ();

    fn handle(&mut self, msg: Seed, _: &mut Self::Context) {
        for (status, count) in msg.0 {
            *self.counts.entry(status).or_default() += count;
        }
        self.shelf.refill(ReadScan::into_shelf(msg.1.shelf));
        self.figures.extend(msg.1.figures);
    }
}

/// The pickup shelf: up to `limit` orders ready and not picked up,
/// longest-ready first, and how many are ready in all.
#[derive(Message)]
#[rtype(result = "(Vec<Arc<Order>>, u64)")]
pub struct GetShelf {
    pub store: String,
    pub limit: usize,
}

impl Handler<GetShelf> for Projection {
    type Result = MessageResult<GetShelf>;

    fn handle(&mut self, msg: GetShelf, _: &mut Self::Context) -> Self::Result {
        let here = || self.shelf.by_age.values().filter(|order| order.store == msg.store);
        let orders = here().take(msg.limit).cloned().collect();
        MessageResult((orders, here().count() as u64))
    }
}

/// The projection's part of `GET /metrics`, rendered.
#[derive(Message)]
#[rtype(result = "String")]
pub struct RenderMetrics;

impl Handler<RenderMetrics> for Projection {
    type Result = String;

    fn handle(&mut self, _: RenderMetrics, _: &mut Self::Context) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let now = now_ms();
        let mut oldest: HashMap<&str, (u64, u64)> = HashMap::new();
        for ((ready_ms, _), order) in &self.shelf.by_age {
            let entry = oldest.entry(order.store.as_str()).or_insert((0, *ready_ms));
            entry.0 += 1;
            entry.1 = entry.1.min(*ready_ms);
        }
        let mut stores: Vec<&String> = self.figures.keys().collect();
        stores.sort();
        let families: [(&str, &str, &str, &dyn Fn(&str, &StoreFigures) -> f64); 5] = [
            ("crema_store_orders_total", "counter", "Orders established at the store.", &|_, f| f.orders as f64),
            ("crema_store_revenue", "gauge", "Totals of the store's orders less those cancelled, in the currency's minor unit.", &|_, f| f.revenue as f64),
            ("crema_store_refunds_pending", "gauge", "Cancelled orders whose refund is not done yet.", &|_, f| f.refunds_pending as f64),
            ("crema_store_ready_orders", "gauge", "Orders ready and not picked up (on the shelf).", &|store, _| oldest.get(store).map_or(0.0, |(n, _)| *n as f64)),
            ("crema_store_oldest_ready_seconds", "gauge", "How long the longest-waiting ready order has waited (0 with none).", &|store, _| oldest.get(store).map_or(0.0, |(_, at)| now.saturating_sub(*at) as f64 / 1e3)),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for store in &stores {
                let _ = writeln!(out, "{name}{{store=\"{store}\"}} {}", value(store, &self.figures[*store]));
            }
        }
        let mut histograms: Vec<(&String, &(crate::metrics::Histogram, crate::metrics::Histogram))> = self.histograms.0.iter().collect();
        histograms.sort_by_key(|(store, _)| *store);
        out.push_str("# HELP crema_order_lead_time_seconds Paid to ready, per store.\n# TYPE crema_order_lead_time_seconds histogram\n");
        for (store, (lead, _)) in &histograms {
            lead.render(&mut out, "crema_order_lead_time_seconds", &format!("store=\"{store}\""), 1e3);
        }
        out.push_str("# HELP crema_queue_wait_seconds Queued to a station starting the order, per store.\n# TYPE crema_queue_wait_seconds histogram\n");
        for (store, (_, wait)) in &histograms {
            wait.render(&mut out, "crema_queue_wait_seconds", &format!("store=\"{store}\""), 1e3);
        }
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct ProjectionStats {
    pub counts: Vec<(OrderStatus, u64)>,
    pub orders_per_s: f64,
    /// Per store: its figures, how many orders are on its shelf and since
    /// when the oldest has waited (ms since the epoch).
    pub stores: HashMap<String, (StoreFigures, u64, Option<u64>)>,
}

#[derive(Message)]
#[rtype(result = "ProjectionStats")]
pub struct GetStats;

impl Handler<GetStats> for Projection {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let counts = OrderStatus::ALL
            .iter()
            .map(|status| (*status, self.counts.get(status).copied().unwrap_or(0)))
            .collect();
        let mut stores: HashMap<String, (StoreFigures, u64, Option<u64>)> =
            self.figures.iter().map(|(store, figures)| (store.clone(), (figures.clone(), 0, None))).collect();
        for ((ready_ms, _), order) in &self.shelf.by_age {
            let entry = stores.entry(order.store.clone()).or_default();
            entry.1 += 1;
            entry.2 = Some(entry.2.map_or(*ready_ms, |oldest: u64| oldest.min(*ready_ms)));
        }
        MessageResult(ProjectionStats { counts, orders_per_s: self.orders_per_s(), stores })
    }
}

#[cfg(test)]
mod tests {
    use super::{quantile, OrderStatus, ReadScan, SHELF_MAX};
    use crate::domain::{LineRequest, Menu, Order, OrderRequest};

    fn ready(id: usize, ready_ms: u64) -> Order {
        let request = OrderRequest { store: None, customer: None, items: vec![LineRequest::new("americano", 1)] };
        let mut order = Order::paid(format!("{id:08}"), request.validate(&Menu::builtin()).unwrap(), format!("k-{id}"), "p".into(), 1);
        order.status = OrderStatus::Ready;
        order.updated_ms = ready_ms;
        order
    }

    #[test]
    fn a_scan_keeps_the_longest_ready_orders_and_each_stores_count() {
        let mut scan = ReadScan::default();
        for n in 0..SHELF_MAX + 500 {
            scan.offer(&ready(n, 1_000 + n as u64));
        }
        scan.offer(&ready(999_999, 5)); // read last, ready first
        assert_eq!(scan.figures["main"].orders, SHELF_MAX as u64 + 501);
        let mut kept: Vec<u64> = ReadScan::into_shelf(scan.shelf).iter().map(|order| order.updated_ms).collect();
        kept.sort_unstable();
        assert_eq!(kept.len(), SHELF_MAX);
        assert_eq!(kept[0], 5, "the longest-ready order, read last, is kept");
        assert_eq!(*kept.last().unwrap(), 1_000 + SHELF_MAX as u64 - 2, "the most recently ready ones made room");
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values = || (1..=10u64).map(|n| n * 100);
        assert_eq!(quantile(values(), 0.5), Some(500));
        assert_eq!(quantile(values(), 0.9), Some(900));
        assert_eq!(quantile(values(), 1.0), Some(1000));
        assert_eq!(quantile(std::iter::once(7), 0.9), Some(7));
        assert_eq!(quantile(std::iter::empty(), 0.5), None);
    }
}
