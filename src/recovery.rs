//! Start-up recovery and periodic reconciliation.
//!
//! [`recover`] runs once before `/readyz` turns 200:
//! 1. Reads every order snapshot (one that does not decode stops start-up).
//! 2. Orders that were `brewing` lost their station with the process: they are
//!    persisted back to `queued` (keeping their queue number, so they return
//!    to the head of the queue).
//! 3. Revives an actor for every order that still has work: `paid`, `queued`,
//!    `brewing`, and `cancelled` with a refund owed (which retries the refund).
//!    `ready` and settled orders stay on disk and are revived on demand.
//! 4. Hands their tickets to the pool in queue order and moves the queue
//!    sequence past the largest one seen.
//! 5. Reconciles payment intents and orphan refunds ([`reconcile`]).
//!
//! [`reconcile`] also runs periodically. An intent whose order exists is done.
//! Otherwise the gateway is asked about its key: a capture found there belongs
//! to an order that was never acknowledged (the 201 never left), so it is
//! refunded — crema never establishes an order the customer was not told about.
//! A declined or unknown key is simply forgotten; a gateway that does not
//! answer leaves the intent for the next round.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::persistence::{Batch, OrphanRefund, StoreError};
use crate::actors::barista::{tickets_for, Enqueue, Pause};
use crate::actors::engine::Engine;
use crate::actors::payment::{Lookup, Refund};
use crate::gateway::GatewayPayment;
use crate::actors::projection::{ReadScan, Seed};
use crate::domain::time::now_ms;
use crate::domain::{Order, OrderEvent, OrderStatus, PaymentStatus, TicketStatus};

/// While running, intents younger than this are left to their placement.
const INTENT_GRACE_MS: u64 = 60_000;

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub orders: usize,
    pub revived: usize,
    pub requeued: usize,
    /// Queued orders without a ticket in the index, or tickets without one:
    /// 0 unless the index and the snapshots disagree (the snapshots win).
    pub ticket_index_disagreements: usize,
    /// Stations paused again as they were before the restart.
    pub stations_paused: usize,
    pub reconciled: ReconcileReport,
    pub took_ms: u128,
}

#[derive(Debug, Default, Clone)]
pub struct ReconcileReport {
    pub intents_done: usize,
    pub intents_refunded: usize,
    pub intents_open: usize,
    pub refunds_done: usize,
    pub refunds_open: usize,
    pub idempotency_expired: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("order {0} is {1} but has no queue number")]
    NoQueueSeq(String, &'static str),
    #[error("the actor system stopped during recovery")]
    Stopped,
}

/// Brings the engine back to the state on disk; see the module docs.
pub async fn recover(engine: &Arc<Engine>) -> Result<RecoveryReport, RecoveryError> {
    let started = Instant::now();
    let mut report = revive(engine, None).await?;
    report.reconciled = reconcile(engine).await?;
    engine.ready.store(true, Ordering::Release);
    report.took_ms = started.elapsed().as_millis();
    Ok(report)
}

/// Brings one store taken over at run time (its journal caught up into the
/// cache) into the engine: steps 1 to 4 for its orders only; its intents and
/// refunds are settled by the next [`reconcile`].
pub async fn load_store(engine: &Arc<Engine>, store: &str) -> Result<RecoveryReport, RecoveryError> {
    let started = Instant::now();
    let mut report = revive(engine, Some(store)).await?;
    report.took_ms = started.elapsed().as_millis();
    Ok(report)
}

/// Steps 1 to 4 for every order, or only those of store `only`.
async fn revive(engine: &Arc<Engine>, only: Option<&str>) -> Result<RecoveryReport, RecoveryError> {
    let store = engine.store.clone();
    let scope = only.map(str::to_owned);
    let (counts, mut live, total, last_number, shelf) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let mut counts: HashMap<OrderStatus, u64> = HashMap::new();
        let mut live = Vec::new();
        // The pickup number of each store's newest order: numbering goes on from it.
        let mut last_number: HashMap<String, (u64, u16)> = HashMap::new();
        let mut shelf = ReadScan::default();
        let total = store.for_each_order(|order| {
            if scope.as_ref().is_some_and(|only| *only != order.store) {
                return;
            }
            *counts.entry(order.status).or_default() += 1;
            shelf.offer(&order);
            if let Some(number) = order.number {
                let newest = last_number.entry(order.store.clone()).or_insert((order.created_ms, number));
                if order.created_ms >= newest.0 {
                    *newest = (order.created_ms, number);
                }
            }
            if order.status.holds_ticket() || order.payment.status == PaymentStatus::RefundPending {
                live.push(order);
            }
        })?;
        Ok((counts, live, total, last_number, shelf))
    })
    .await
    .map_err(|_| RecoveryError::Stopped)??;
    for (store, (_, number)) in last_number {
        if let Some(store) = engine.stores.get(&store) {
            store.numbers.continue_after(number);
        }
    }
    let mut report = RecoveryReport { orders: total, ..RecoveryReport::default() };

    let mut persisted_tickets = engine.store.tickets()?;
    let mut max_seq = persisted_tickets.iter().map(|(seq, _)| *seq).max().unwrap_or(0);
    if only.is_some() {
        // Other stores' tickets are not this store's to count.
        let ids: std::collections::HashSet<&str> = live.iter().map(|order| order.id.as_str()).collect();
        persisted_tickets.retain(|(_, id)| ids.contains(id.as_str()));
    }
    let mut counts = counts;
    let mut tickets = Vec::new();
    live.sort_by_key(|order| order.queue_seq);
    // The index holds the orders with a ticket waiting in the queue (a ticket
    // being made left it when it started, and is put back below).
    let waiting = |order: &Order| order.tickets.iter().any(|ticket| ticket.status == TicketStatus::Queued);
    let expected_tickets = live.iter().filter(|order| order.status.holds_ticket() && waiting(order)).count();
    report.ticket_index_disagreements = expected_tickets.abs_diff(persisted_tickets.len());
    if expected_tickets != persisted_tickets.len() {
        tracing::warn!(
            expected = expected_tickets,
            found = persisted_tickets.len(),
            "ticket index and snapshots disagree; snapshots win"
        );
    }
    for order in live.iter_mut() {
        if order.status.holds_ticket() {
            let seq = order
                .queue_seq
                .ok_or_else(|| RecoveryError::NoQueueSeq(order.id.clone(), order.status.as_str()))?;
            max_seq = max_seq.max(seq);
            // Every ticket a station was making when crema stopped goes back to the queue.
            let brewing: Vec<String> = order
                .tickets
                .iter()
                .filter(|ticket| ticket.status == TicketStatus::Brewing)
                .map(|ticket| ticket.kind.clone())
                .collect();
            if !brewing.is_empty() {
                let before = order.status;
                for kind in brewing {
                    order.apply(OrderEvent::Requeued { kind }, now_ms()).expect("a ticket being made can go back");
                }
                let mut batch = Batch::new();
                batch.put_order(order).put_ticket(seq, &order.id);
                engine.journal.commit(batch).await?;
                if order.status != before {
                    *counts.entry(before).or_default() -= 1;
                    *counts.entry(order.status).or_default() += 1;
                }
                report.requeued += 1;
            }
        }
    }
    for order in live {
        let holds_ticket = order.status.holds_ticket();
        let addr = engine.revive(order.clone());
        engine.directory.insert(order.id.clone(), addr.clone());
        if holds_ticket {
            if engine.stores.get(&order.store).is_none() {
                tracing::warn!(order = %order.id, store = %order.store, "the order's store is no longer configured; the default store makes it");
            }
            for ticket in tickets_for(&order, addr.clone().recipient()) {
                engine.stores.of(&order.store).admission.force_reserve();
                tickets.push((order.store.clone(), ticket));
            }
        }
        report.revived += 1;
    }
    engine.queue_seq_after(max_seq);
    // Seed the counts before any ticket moves, so no event is counted twice.
    engine.projection.send(Seed(counts, shelf)).await.map_err(|_| RecoveryError::Stopped)?;
    for store in engine.stores.iter().filter(|store| only.is_none_or(|only| only == store.id)) {
        let sold_out = engine.store.sold_out(&store.id)?;
        *store.sold_out.write().unwrap_or_else(std::sync::PoisonError::into_inner) = sold_out.into_iter().collect();
        if engine.store.ordering_paused(&store.id)? {
            store.ordering_paused.store(true, Ordering::Release);
            tracing::warn!(store = %store.id, "ordering is paused, as it was before the restart");
        }
    }
    // Paused stations stay paused: before any ticket reaches a pool.
    for (store, station) in engine.store.paused_stations()? {
        if only.is_some_and(|only| only != store) {
            continue;
        }
        let Some(at) = engine.stores.get(&store) else {
            tracing::warn!(%store, %station, "a station paused before the restart belongs to a store no longer configured");
            continue;
        };
        match at.pool.send(Pause { station: station.clone() }).await.map_err(|_| RecoveryError::Stopped)? {
            Ok(_) => report.stations_paused += 1,
            Err(err) => tracing::warn!(%store, %station, %err, "a station paused before the restart is no longer configured"),
        }
    }
    for (store, ticket) in tickets {
        engine.stores.of(&store).pool.send(Enqueue(ticket)).await.map_err(|_| RecoveryError::Stopped)?;
    }
    Ok(report)
}

/// Settles payment intents and orphan refunds, and forgets expired
/// idempotency keys; see the module docs. Safe to run at any time.
pub async fn reconcile(engine: &Arc<Engine>) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    let now = now_ms();
    for intent in engine.store.intents()? {
        // Another node's store: its owner settles it.
        if !engine.journal.owns(&intent.store) {
            continue;
        }
        // An intent whose order actor is alive belongs to a placement in progress.
        let young = now.saturating_sub(intent.created_ms) < INTENT_GRACE_MS;
        if engine.is_ready() && (young || engine.directory.get(&intent.order_id).is_some()) {
            report.intents_open += 1;
            continue;
        }
        let mut batch = Batch::for_store(&intent.store);
        if engine.store.get_order(&intent.order_id)?.is_some() {
            batch.delete_intent(&intent.key);
            report.intents_done += 1;
        } else {
            match engine.payment().send(Lookup { key: intent.key.clone() }).await {
                Ok(Ok(Some(GatewayPayment::Captured { id }))) => {
                    let refund = OrphanRefund {
                        key: intent.key.clone(),
                        payment_id: id,
                        amount: intent.amount,
                        created_ms: now,
                        store: intent.store.clone(),
                    };
                    batch.put_orphan_refund(&refund).delete_intent(&intent.key);
                    report.intents_refunded += 1;
                }
                Ok(Ok(_)) => {
                    batch.delete_intent(&intent.key);
                    report.intents_done += 1;
                }
                _ => {
                    report.intents_open += 1;
                    continue;
                }
            }
        }
        engine.journal.commit(batch).await?;
    }
    for refund in engine.store.orphan_refunds()? {
        if !engine.journal.owns(&refund.store) {
            continue;
        }
        match engine.payment().send(Refund { payment_id: refund.payment_id.clone() }).await {
            Ok(Ok(())) => {
                engine.journal.commit(std::mem::take(Batch::for_store(&refund.store).delete_orphan_refund(&refund.key))).await?;
                // The order it was for, not the payment key: no payment keys or ids in logs.
                let order = refund.key.strip_prefix("crema-").unwrap_or("unknown");
                tracing::info!(%order, amount = refund.amount, "orphan charge refunded");
                report.refunds_done += 1;
            }
            _ => report.refunds_open += 1,
        }
    }
    let cutoff = now.saturating_sub(engine.settings.orders.idempotency_ttl_s * 1000);
    let expired = engine.store.expired_idempotency_keys(cutoff, 10_000)?;
    if !expired.is_empty() {
        // Each node's cache expires its own copies by the same rule: not journaled.
        let mut batch = Batch::cache_only();
        for key in &expired {
            batch.delete_idempotency(key);
        }
        engine.journal.commit(batch).await?;
        report.idempotency_expired = expired.len();
    }
    Ok(report)
}
