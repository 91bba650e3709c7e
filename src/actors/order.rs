//! The order actor: one per live order. It owns the order's state machine and
//! drives its saga:
//!
//! 1. `Place`: persist the payment intent → charge through the payment actor →
//!    persist the paid, queued order with its ticket and index entries (one
//!    batch, which also deletes the intent) → hand the ticket to the pool →
//!    answer. A charge that did not happen deletes the intent; a charge whose
//!    outcome is unknown leaves it for reconciliation. A charge whose order
//!    cannot be stored is refunded at once (and the intent stays, so that
//!    reconciliation finishes the job if the refund fails too). What the
//!    placement holds (its `orders.max_placing` permit, its `Idempotency-Key`)
//!    is released only when it has an outcome, even if the HTTP caller
//!    stopped waiting: a retry with the same key cannot start a second charge.
//! 2. Ticket moves from the pool ([`TicketMoved`]: started, given back,
//!    finished) are persisted in the order they arrive.
//! 3. `Cancel`: withdraw the ticket (or abort its brewing) → persist
//!    `cancelled` with the refund owed → refund; a failed refund is retried with
//!    backoff until it succeeds (a restart revives the actor, which retries).
//! 4. `Pickup`.
//!
//! Every change is applied to a copy, committed through the store writer, and
//! only then becomes the actor's state and is published: what the actor
//! answers is always what is on disk. Saga steps run as `AtomicResponse`s, so
//! the actor handles one step at a time and messages wait in its bounded mailbox.
//!
//! The actor stops itself (passivates) `orders.passivate_after_ms` after it is
//! ready or settled; `Engine::activate` revives it from its snapshot on demand.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::barista::{tickets_for, Enqueue, TicketMoved, Withdraw, Withdrawal};
use super::directory::Directory;
use super::shared::Shared;
use super::payment::{Charge, PaymentError, Refund};
use crate::domain::time::now_ms;
use crate::domain::{Draft, Order, OrderEvent, OrderStatus, PaymentStatus, TicketStatus, TransitionError};
use crate::persistence::{Batch, IdempotencyRecord, IdempotentOutcome, PaymentIntent, StoreError};

/// Why an order command failed, grouped by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the payment was declined")]
    Declined,
    #[error("payment is unavailable: {reason}")]
    PaymentUnavailable { reason: String, retry_after_s: u64 },
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// The charge succeeded but the order could not be stored: not placed.
    /// `fenced`: because another node writes the store now.
    #[error("the order could not be stored (charge refunded: {refunded})")]
    NotStored { refunded: bool, fenced: bool },
    #[error("the engine is shutting down")]
    ShuttingDown,
}

type Step<T> = Pin<Box<dyn ActorFuture<OrderActor, Output = T>>>;

/// How long a ticket move the store refused waits before it is tried again.
const TICKET_MOVE_RETRY: Duration = Duration::from_secs(1);
use std::pin::Pin;

pub struct OrderActor {
    id: String,
    shared: Arc<Shared>,
    /// Where the live order actors are: this one enters when it starts and
    /// leaves when it stops.
    directory: Arc<Directory<OrderActor>>,
    /// `None` only while the first `Place` is in progress. Shared (not
    /// copied) with the event log, its subscribers and the caller's answer.
    order: Option<Arc<Order>>,
    refund_backoff_ms: u64,
    passivation: Option<SpawnHandle>,
}

impl OrderActor {
    /// Starts the actor of a new order: on the current thread when that is an
    /// order arbiter (the HTTP connection is served there, so `Place` and its
    /// answer never cross threads), else on the next order arbiter.
    pub fn start_placing(id: String, shared: Arc<Shared>, directory: Arc<Directory<OrderActor>>) -> Addr<OrderActor> {
        if super::shared::on_order_arbiter() {
            return OrderActor::new(id, shared, directory, None).start();
        }
        let arbiter = shared.order_arbiter();
        OrderActor::start_in_arbiter(&arbiter, move |_| OrderActor::new(id, shared, directory, None))
    }

    /// Starts the actor of an order read back from its snapshot.
    pub fn start_revived(order: Order, shared: Arc<Shared>, directory: Arc<Directory<OrderActor>>) -> Addr<OrderActor> {
        let arbiter = shared.order_arbiter();
        OrderActor::start_in_arbiter(&arbiter, move |_| OrderActor::new(order.id.clone(), shared, directory, Some(Arc::new(order))))
    }

    fn new(id: String, shared: Arc<Shared>, directory: Arc<Directory<OrderActor>>, order: Option<Arc<Order>>) -> Self {
        let refund_backoff_ms = shared.settings.orders.refund_retry_ms.max(1);
        OrderActor { id, shared, directory, order, refund_backoff_ms, passivation: None }
    }

    /// A command of a store this node no longer writes (replicated, fenced)
    /// is not answered from this node's stale state, not even a repeat.
    fn ensure_writer(&self) -> Result<(), OrderError> {
        match &self.order {
            Some(order) if self.shared.journal.is_fenced(&order.store) => Err(OrderError::Store(StoreError::Fenced(order.store.clone()))),
            _ => Ok(()),
        }
    }

    /// Applies `event` to a copy, commits it with whatever `extra` adds to the
    /// batch, and only then adopts and publishes it.
    fn persist(&mut self, event: OrderEvent, extra: impl FnOnce(&Order, &mut Batch)) -> Step<Result<Arc<Order>, OrderError>> {
        let Some(current) = self.order.as_ref() else {
            return Box::pin(fut::ready(Err(OrderError::NotFound)));
        };
        let previous = current.status;
        let mut next = Order::clone(current);
        if let Err(err) = next.apply(event, now_ms()) {
            return Box::pin(fut::ready(Err(err.into())));
        }
        let mut batch = Batch::new();
        batch.put_order(&next);
        extra(&next, &mut batch);
        let writer = self.shared.journal.clone();
        Box::pin(async move { writer.commit(batch).await.map(|()| next) }.into_actor(self).map(
            move |committed, act, _| {
                let next = Arc::new(committed?);
                act.shared.publish(&next, Some(previous));
                act.order = Some(next.clone());
                Ok(next)
            },
        ))
    }

    /// Persists a move reported by the pool; a move that no longer applies
    /// (the order was cancelled meanwhile) is dropped. A move the store could
    /// not take (a full disk) is retried until it can, before any later
    /// message: the coffee was made, so the order must not stay `brewing`.
    fn follow_ticket(&mut self, event: OrderEvent, ctx: &mut Context<Self>) {
        let name = event.name();
        let retry = event.clone();
        // The ticket index holds the orders with a ticket waiting in the queue.
        let step = self.persist(event, |order, batch| {
            let Some(seq) = order.queue_seq else { return };
            if order.tickets.iter().any(|ticket| ticket.status == TicketStatus::Queued) {
                batch.put_ticket(seq, &order.id);
            } else {
                batch.delete_ticket(seq);
            }
        });
        ctx.wait(step.map(move |result, act, ctx| match result {
            Ok(order) if order.status == OrderStatus::Ready => act.passivate_later(ctx),
            Ok(_) => {}
            Err(OrderError::Transition(err)) => tracing::debug!(order = %act.id, event = name, %err, "ticket move ignored"),
            // Another node writes the store now (replicated): the move is its
            // to make (it requeues what was being made here); retrying would
            // only be refused again, every second, forever.
            Err(OrderError::Store(StoreError::Fenced(store))) => {
                tracing::debug!(order = %act.id, event = name, %store, "ticket move not kept: the store is fenced");
            }
            Err(err) => {
                tracing::warn!(order = %act.id, event = name, %err, "persisting a ticket move failed; retrying in 1 s");
                ctx.wait(fut::wrap_future::<_, Self>(tokio::time::sleep(TICKET_MOVE_RETRY)).map(move |(), act, ctx| {
                    act.follow_ticket(retry, ctx);
                }));
            }
        }));
    }

    /// Asks the gateway for the refund; on success persists `refunded`, on
    /// failure schedules another try. Resolves to the order as it then is.
    fn refund(&mut self) -> Step<Option<Arc<Order>>> {
        let Some(order) = &self.order else { return Box::pin(fut::ready(None)) };
        if order.payment.status != PaymentStatus::RefundPending {
            return Box::pin(fut::ready(Some(order.clone())));
        }
        let call = self.shared.payment().send(Refund { payment_id: order.payment.payment_id.clone() });
        Box::pin(call.into_actor(self).then(|answer, act, ctx| -> Step<Option<Arc<Order>>> {
            if matches!(answer, Ok(Ok(()))) {
                act.refund_backoff_ms = act.shared.settings.orders.refund_retry_ms.max(1);
                return Box::pin(act.persist(OrderEvent::Refunded, |_, _| {}).map(|result, act, ctx| {
                    if let Err(err) = &result {
                        // The gateway refunds a payment once: asking again later is safe.
                        tracing::warn!(order = %act.id, %err, "persisting the refund failed; will ask again");
                        act.retry_refund_later(ctx);
                    } else {
                        act.passivate_later(ctx);
                    }
                    act.order.clone()
                }));
            }
            tracing::warn!(order = %act.id, ?answer, retry_in_ms = act.refund_backoff_ms, "refund failed; will retry");
            act.retry_refund_later(ctx);
            Box::pin(fut::ready(act.order.clone()))
        }))
    }

    /// Tries the refund again after the current backoff, which then doubles (up to a minute).
    fn retry_refund_later(&mut self, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis(self.refund_backoff_ms);
        self.refund_backoff_ms = (self.refund_backoff_ms * 2).min(60_000);
        ctx.run_later(wait, |act, ctx| {
            let retry = act.refund();
            ctx.wait(retry.map(|_, _, _| ()));
        });
    }

    /// Stops the actor after a while; its snapshot answers from then on.
    fn passivate_later(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.passivation.take() {
            ctx.cancel_future(handle);
        }
        let after = Duration::from_millis(self.shared.settings.orders.passivate_after_ms);
        self.passivation = Some(ctx.run_later(after, |act, ctx| {
            let idle = act.order.as_ref().is_some_and(|order| order.is_settled() || order.status == OrderStatus::Ready);
            if idle {
                ctx.stop();
            }
        }));
    }
}

impl Actor for OrderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.shared.settings.orders.mailbox);
        self.directory.insert(self.id.clone(), ctx.address());
        let Some(order) = &self.order else { return };
        if order.payment.status == PaymentStatus::RefundPending {
            let retry = self.refund();
            ctx.wait(retry.map(|_, _, _| ()));
        } else if order.is_settled() || order.status == OrderStatus::Ready {
            self.passivate_later(ctx);
        }
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.directory.remove(&self.id, &ctx.address());
    }
}

/// Place the order: charge it and establish it. Sent once, right after start.
#[derive(Message)]
#[rtype(result = "Result<Arc<Order>, OrderError>")]
pub struct Place {
    pub draft: Draft,
    /// The payment idempotency key, used for every call about this charge.
    pub payment_key: String,
    /// The client's `Idempotency-Key` and body hash, recorded with the outcome.
    pub idempotency: Option<(String, [u8; 32])>,
    /// Released when the placement has an outcome (not when the HTTP caller
    /// stops waiting): the `orders.max_placing` permit and the in-flight
    /// `Idempotency-Key`.
    pub held: Box<dyn Send>,
}

impl Handler<Place> for OrderActor {
    type Result = AtomicResponse<Self, Result<Arc<Order>, OrderError>>;

    fn handle(&mut self, msg: Place, ctx: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        let id = self.id.clone();
        let me = ctx.address().recipient::<TicketMoved>();
        let Place { draft, payment_key, idempotency, held } = msg;
        let store = draft.store.clone();
        let tickets = draft.ticket_count();
        let draft_store = draft.store.clone();
        let saga = async move {
            let intent = PaymentIntent {
                key: payment_key.clone(),
                order_id: id.clone(),
                amount: draft.total,
                created_ms: now_ms(),
                store: draft.store.clone(),
            };
            shared.journal.commit(std::mem::take(Batch::new().put_intent(&intent))).await?;
            let charge = Charge { key: payment_key.clone(), order_id: id.clone(), amount: draft.total };
            let charged = shared.payment().send(charge).await.unwrap_or_else(|err| {
                Err(PaymentError::Unavailable { reason: err.to_string(), retry_after_s: 1 })
            });
            let record = |outcome| IdempotencyRecord {
                body_sha256: idempotency.as_ref().map_or([0; 32], |(_, hash)| *hash),
                outcome,
                created_ms: now_ms(),
            };
            match charged {
                Ok(payment_id) => {
                    let mut order = Order::paid(id.clone(), draft, payment_key.clone(), payment_id, now_ms());
                    let store = shared.stores.of(&order.store);
                    order.number = Some(store.numbers.next());
                    let queue_seq = shared.next_queue_seq();
                    order.apply(OrderEvent::Queued { queue_seq }, now_ms())?;
                    let mut batch = Batch::new();
                    batch.put_order(&order).put_customer_index(&order).put_ticket(queue_seq, &id).delete_intent(&payment_key);
                    if let Some((key, _)) = &idempotency {
                        batch.put_idempotency(key, &record(IdempotentOutcome::Created(order.clone())));
                    }
                    if let Err(err) = shared.journal.commit(batch).await {
                        if matches!(err, StoreError::JournalUnavailable(_)) {
                            // No answer from the replicated journal (only while
                            // crema stops): the order may yet be in it, so no
                            // refund here; the intent, journaled, settles it.
                            return Err(OrderError::Store(err));
                        }
                        // Charged but not stored (refused): not placed. Refund now
                        // rather than at the next reconciliation; the intent stays
                        // until the store can write, so a failed refund is retried there.
                        tracing::error!(order = %id, %err, "the paid order could not be stored; refunding its charge");
                        let payment_id = order.payment.payment_id.clone();
                        let refunded = matches!(shared.payment().send(Refund { payment_id }).await, Ok(Ok(())));
                        if refunded {
                            let _ = shared.journal.commit(std::mem::take(Batch::for_store(&order.store).delete_intent(&payment_key))).await;
                        }
                        return Err(OrderError::NotStored { refunded, fenced: matches!(err, StoreError::Fenced(_)) });
                    }
                    for ticket in tickets_for(&order, me) {
                        if !super::deliver(&store.pool, Enqueue(ticket)) {
                            tracing::error!(order = %id, "the barista pool is gone; the ticket waits on disk for a restart");
                        }
                    }
                    Ok(Arc::new(order))
                }
                Err(PaymentError::Declined) => {
                    let mut batch = Batch::for_store(&draft_store);
                    batch.delete_intent(&payment_key);
                    if let Some((key, _)) = &idempotency {
                        batch.put_idempotency(key, &record(IdempotentOutcome::Declined));
                    }
                    shared.journal.commit(batch).await?;
                    Err(OrderError::Declined)
                }
                Err(PaymentError::Unavailable { reason, retry_after_s }) => {
                    // Nothing was charged: the intent has nothing left to reconcile.
                    shared.journal.commit(std::mem::take(Batch::for_store(&draft_store).delete_intent(&payment_key))).await?;
                    Err(OrderError::PaymentUnavailable { reason, retry_after_s })
                }
                Err(PaymentError::Unknown(reason)) => {
                    // The intent stays: recovery looks the key up and refunds a charge it finds.
                    Err(OrderError::PaymentUnavailable { reason, retry_after_s: 1 })
                }
            }
        };
        AtomicResponse::new(Box::pin(saga.into_actor(self).map(move |placed, act, ctx| {
            // The outcome is durable (or known not to exist): release the permit and the key.
            drop(held);
            act.shared.pending.clear(&act.id);
            match &placed {
                Ok(order) => {
                    act.shared.publish(order, None);
                    act.order = Some(order.clone());
                }
                Err(_) => {
                    // No ticket joined the queue: give back the places reserved for them.
                    act.shared.stores.of(&store).admission.release_n(tickets);
                    ctx.stop();
                }
            }
            placed
        })))
    }
}

/// The order as the actor holds it (`None` while it is still being placed).
#[derive(Message)]
#[rtype(result = "Option<Arc<Order>>")]
pub struct GetOrder;

impl Handler<GetOrder> for OrderActor {
    type Result = MessageResult<GetOrder>;

    fn handle(&mut self, _: GetOrder, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.order.clone())
    }
}

#[derive(Message)]
#[rtype(result = "Result<Arc<Order>, OrderError>")]
pub struct Cancel;

impl Handler<Cancel> for OrderActor {
    type Result = AtomicResponse<Self, Result<Arc<Order>, OrderError>>;

    fn handle(&mut self, _: Cancel, _: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.ensure_writer() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        let order = match &self.order {
            None => return AtomicResponse::new(Box::pin(fut::ready(Err(OrderError::NotFound)))),
            Some(order) if order.status == OrderStatus::Cancelled => {
                return AtomicResponse::new(Box::pin(fut::ready(Ok(order.clone()))))
            }
            Some(order) => order,
        };
        if let Err(err) = order.check(&OrderEvent::Cancelled) {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err.into()))));
        }
        let status = order.status;
        let withdraw = self.shared.stores.of(&order.store).pool.send(Withdraw { order_id: self.id.clone() });
        AtomicResponse::new(Box::pin(withdraw.into_actor(self).then(move |answer, act, _| -> Step<Result<Arc<Order>, OrderError>> {
            match answer {
                Err(_) => Box::pin(fut::ready(Err(OrderError::ShuttingDown))),
                // The station finished it a moment ago; its `TicketFinished` is on the way.
                Ok(Withdrawal::NotHeld) if status != OrderStatus::Paid => {
                    Box::pin(fut::ready(Err(TransitionError::TooLateToCancel("ready").into())))
                }
                Ok(withdrawal) => {
                    let cancelled = act.persist(OrderEvent::Cancelled, |order, batch| {
                        if let Some(seq) = order.queue_seq {
                            batch.delete_ticket(seq);
                        }
                    });
                    Box::pin(cancelled.then(move |result, act, ctx| -> Step<Result<Arc<Order>, OrderError>> {
                        match result {
                            Ok(cancelled) => Box::pin(act.refund().map(move |now, _, _| Ok(now.unwrap_or(cancelled)))),
                            Err(err) => {
                                // Not cancelled after all (the store refused): the ticket
                                // the pool gave up goes back, in its old place.
                                if !matches!(withdrawal, Withdrawal::NotHeld) {
                                    if let Some(order) = &act.order {
                                        let store = act.shared.stores.of(&order.store);
                                        for ticket in tickets_for(order, ctx.address().recipient()) {
                                            store.admission.force_reserve();
                                            if !super::deliver(&store.pool, Enqueue(ticket)) {
                                                tracing::error!(order = %act.id, "the barista pool is gone; the ticket waits on disk for a restart");
                                            }
                                        }
                                    }
                                }
                                Box::pin(fut::ready(Err(err)))
                            }
                        }
                    }))
                }
            }
        })))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Arc<Order>, OrderError>")]
pub struct Pickup;

impl Handler<Pickup> for OrderActor {
    type Result = AtomicResponse<Self, Result<Arc<Order>, OrderError>>;

    fn handle(&mut self, _: Pickup, _: &mut Self::Context) -> Self::Result {
        if let Err(err) = self.ensure_writer() {
            return AtomicResponse::new(Box::pin(fut::ready(Err(err))));
        }
        // A repeated pickup answers the order as it is, like a repeated cancel.
        if let Some(order) = self.order.as_ref().filter(|order| order.status == OrderStatus::PickedUp) {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(order.clone()))));
        }
        AtomicResponse::new(Box::pin(self.persist(OrderEvent::PickedUp, |_, _| {}).map(|result, act, ctx| {
            if result.is_ok() {
                act.passivate_later(ctx);
            }
            result
        })))
    }
}

impl Handler<TicketMoved> for OrderActor {
    type Result = ();

    fn handle(&mut self, TicketMoved(event): TicketMoved, ctx: &mut Self::Context) {
        self.follow_ticket(event, ctx);
    }
}
