//! The payment actor: the only way to charge, refund or look up a payment.
//! There is one per order arbiter, so that an order actor's charge is a
//! message on its own thread; they share one breaker and one bulkhead, so
//! together they behave as one payment actor towards the gateway.
//!
//! It owns the gateway (a [`PaymentGateway`]), the circuit [`Breaker`] and the
//! bulkhead. Before a call: a bulkhead slot (at most
//! `payment.breaker.max_concurrent` calls in flight; the excess is refused at
//! once), then a breaker permit (refused at once while open, with the time
//! until it tries again). The call itself runs as a future of its own, so many
//! are in flight while the actor takes the next message; when it ends, its
//! outcome and duration go back into the breaker. Every call has a timeout; a
//! charge that timed out has an unknown outcome, which the caller reconciles by
//! key, never guesses.
//!
//! The breaker's state is mirrored into [`PaymentStats`] (atomics), so HTTP
//! handlers can refuse an order while the breaker is open without writing
//! anything or asking this actor, and `/stats` can show it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::breaker::{Breaker, BreakerState, CallOutcome};
use crate::config::BreakerSettings;
use crate::domain::time::now_ms;
use crate::gateway::{BoxFuture, GatewayError, GatewayPayment, PaymentGateway};

/// Why a payment call did not succeed, grouped by what the caller must do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("the payment was declined")]
    Declined,
    /// Nothing was charged; try again after `retry_after_s`.
    #[error("payment is unavailable: {reason}")]
    Unavailable { reason: String, retry_after_s: u64 },
    /// The outcome is unknown (timeout): reconcile by key before concluding.
    #[error("the payment outcome is unknown: {0}")]
    Unknown(String),
}

/// Counters and the breaker's mirrored state, read without asking the actor.
#[derive(Debug, Default)]
pub struct PaymentStats {
    pub in_flight: AtomicU64,
    /// Calls refused by the bulkhead or the breaker.
    pub rejected: AtomicU64,
    pub captured: AtomicU64,
    pub declined: AtomicU64,
    pub failed: AtomicU64,
    pub refunded: AtomicU64,
    pub breaker_transitions: AtomicU64,
    /// `BreakerState` as 0 closed, 1 open, 2 half-open.
    breaker_state: AtomicU8,
    /// While open: wall-clock ms at which the breaker will let a probe through.
    open_until_ms: AtomicU64,
}

impl PaymentStats {
    /// The breaker's state as of now.
    pub fn breaker(&self) -> BreakerState {
        match self.breaker_state.load(Ordering::Acquire) {
            1 if now_ms() >= self.open_until_ms.load(Ordering::Acquire) => BreakerState::HalfOpen,
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// While the breaker is open: the seconds until it tries again (at least 1).
    pub fn open_retry_after_s(&self) -> Option<u64> {
        if self.breaker_state.load(Ordering::Acquire) != 1 {
            return None;
        }
        let left_ms = self.open_until_ms.load(Ordering::Acquire).saturating_sub(now_ms());
        (left_ms > 0).then(|| left_ms.div_ceil(1000).max(1))
    }
}

pub struct PaymentActor {
    gateway: Arc<dyn PaymentGateway>,
    timeout: Duration,
    max_concurrent: u64,
    /// Shared by every payment actor (one per order arbiter): one breaker
    /// and one bulkhead (`stats.in_flight`) for the one gateway.
    breaker: SharedBreaker,
    stats: Arc<PaymentStats>,
}

/// The one breaker the payment actors share. Held only for the few
/// instructions of a check or a record, never across an await.
pub type SharedBreaker = Arc<std::sync::Mutex<Breaker>>;

impl PaymentActor {
    pub fn new(gateway: Arc<dyn PaymentGateway>, timeout: Duration, breaker: BreakerSettings, stats: Arc<PaymentStats>) -> Self {
        PaymentActor::sharing(gateway, timeout, Arc::new(std::sync::Mutex::new(Breaker::new(breaker))), stats)
    }

    /// A payment actor that shares `breaker` (and, through `stats`, the bulkhead) with others.
    pub fn sharing(gateway: Arc<dyn PaymentGateway>, timeout: Duration, breaker: SharedBreaker, stats: Arc<PaymentStats>) -> Self {
        let max_concurrent = lock(&breaker).max_concurrent() as u64;
        PaymentActor { gateway, timeout, max_concurrent, breaker, stats }
    }

    /// Takes a bulkhead slot, or refuses at once.
    fn admit(&self) -> Result<InFlight, PaymentError> {
        let taken = self.stats.in_flight.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_concurrent {
            self.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(PaymentError::Unavailable { reason: "too many payments in flight".into(), retry_after_s: 1 });
        }
        Ok(InFlight(self.stats.clone()))
    }

    /// Runs one gateway call through the bulkhead, the breaker and the timeout.
    fn call<T: 'static>(
        &mut self,
        start: impl FnOnce(&dyn PaymentGateway) -> BoxFuture<Result<T, GatewayError>>,
    ) -> ResponseActFuture<Self, Result<T, GatewayError>> {
        let slot = match self.admit() {
            Ok(slot) => slot,
            Err(err) => return Box::pin(fut::ready(Err(refused(err)))),
        };
        let acquired = {
            let mut breaker = lock(&self.breaker);
            let acquired = breaker.try_acquire(Instant::now());
            mirror(&breaker, &self.stats);
            acquired
        };
        let permit = match acquired {
            Ok(permit) => permit,
            Err(wait) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let retry_after_s = wait.as_millis().div_ceil(1000).max(1) as u64;
                return Box::pin(fut::ready(Err(refused(PaymentError::Unavailable {
                    reason: "the payment circuit is open".into(),
                    retry_after_s,
                }))));
            }
        };
        let call = start(self.gateway.as_ref());
        let timeout = self.timeout;
        let started = Instant::now();
        Box::pin(
            async move {
                let result = match tokio::time::timeout(timeout, call).await {
                    Ok(result) => result,
                    Err(_) => Err(GatewayError::Timeout),
                };
                drop(slot);
                result
            }
            .into_actor(self)
            .map(move |result, act, _| {
                let outcome = if result.is_ok() { CallOutcome::Success } else { CallOutcome::Failure };
                let mut breaker = lock(&act.breaker);
                breaker.record(permit, outcome, started.elapsed(), Instant::now());
                mirror(&breaker, &act.stats);
                drop(breaker);
                if result.is_err() {
                    act.stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                result
            }),
        )
    }
}

fn lock(breaker: &SharedBreaker) -> std::sync::MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Mirrors the breaker's state into the stats, for readers that do not ask an actor.
fn mirror(breaker: &Breaker, stats: &PaymentStats) {
    let now = Instant::now();
    let state = match breaker.state(now) {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    };
    let until = now_ms() + breaker.retry_after(now).as_millis() as u64;
    stats.open_until_ms.store(until, Ordering::Release);
    stats.breaker_state.store(state, Ordering::Release);
    stats.breaker_transitions.store(breaker.transitions, Ordering::Relaxed);
}

/// A refusal before any call, carried through the gateway error type so that
/// `call` has one result type; [`unrefuse`] turns it back.
fn refused(err: PaymentError) -> GatewayError {
    match err {
        PaymentError::Unavailable { reason, retry_after_s } => GatewayError::Refused { reason, retry_after_s },
        other => GatewayError::Failed(other.to_string()),
    }
}

fn unrefuse(err: GatewayError) -> PaymentError {
    match err {
        GatewayError::Refused { reason, retry_after_s } => PaymentError::Unavailable { reason, retry_after_s },
        GatewayError::Failed(reason) => PaymentError::Unavailable { reason, retry_after_s: 1 },
        GatewayError::Timeout => PaymentError::Unknown("the payment service did not answer in time".into()),
    }
}

/// A bulkhead slot, given back when dropped.
struct InFlight(Arc<PaymentStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4_096);
    }
}

/// Charge `amount` under `key`; answers the gateway's payment id.
#[derive(Message)]
#[rtype(result = "Result<String, PaymentError>")]
pub struct Charge {
    pub key: String,
    pub order_id: String,
    pub amount: u64,
}

impl Handler<Charge> for PaymentActor {
    type Result = ResponseActFuture<Self, Result<String, PaymentError>>;

    fn handle(&mut self, msg: Charge, _: &mut Self::Context) -> Self::Result {
        let call = self.call(move |gateway| gateway.charge(msg.key, msg.order_id, msg.amount));
        Box::pin(call.map(|result, act, _| match result {
            Ok(GatewayPayment::Captured { id }) => {
                act.stats.captured.fetch_add(1, Ordering::Relaxed);
                Ok(id)
            }
            Ok(GatewayPayment::Declined) => {
                act.stats.declined.fetch_add(1, Ordering::Relaxed);
                Err(PaymentError::Declined)
            }
            // A key already refunded must not be charged again under a new order.
            Ok(GatewayPayment::Refunded { .. }) => Err(PaymentError::Declined),
            Err(err) => Err(unrefuse(err)),
        }))
    }
}

/// Refund the payment `payment_id`; idempotent at the gateway.
#[derive(Message)]
#[rtype(result = "Result<(), PaymentError>")]
pub struct Refund {
    pub payment_id: String,
}

impl Handler<Refund> for PaymentActor {
    type Result = ResponseActFuture<Self, Result<(), PaymentError>>;

    fn handle(&mut self, msg: Refund, _: &mut Self::Context) -> Self::Result {
        let call = self.call(move |gateway| gateway.refund(msg.payment_id));
        Box::pin(call.map(|result, act, _| {
            if result.is_ok() {
                act.stats.refunded.fetch_add(1, Ordering::Relaxed);
            }
            result.map_err(unrefuse)
        }))
    }
}

/// What the gateway knows of `key` (reconciliation).
#[derive(Message)]
#[rtype(result = "Result<Option<GatewayPayment>, PaymentError>")]
pub struct Lookup {
    pub key: String,
}

impl Handler<Lookup> for PaymentActor {
    type Result = ResponseActFuture<Self, Result<Option<GatewayPayment>, PaymentError>>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.call(move |gateway| gateway.lookup(msg.key)).map(|result, _, _| result.map_err(unrefuse)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimulatedSettings;
    use crate::gateway::SimulatedGateway;

    fn breaker(max_concurrent: usize) -> BreakerSettings {
        BreakerSettings { max_concurrent, ..BreakerSettings::default() }
    }

    #[actix::test]
    async fn bulkhead_refuses_excess_at_once() {
        let stats = Arc::new(PaymentStats::default());
        let slow = SimulatedGateway::new(SimulatedSettings { latency_ms: 300, decline_rate: 0.0, fail_rate: 0.0 });
        let actor = PaymentActor::new(Arc::new(slow), Duration::from_secs(2), breaker(2), stats.clone()).start();
        let calls: Vec<_> = (0..4)
            .map(|n| actor.send(Charge { key: format!("k{n}"), order_id: "o".into(), amount: 1 }))
            .collect();
        let results = futures_util::future::join_all(calls).await;
        let ok = results.iter().filter(|result| matches!(result, Ok(Ok(_)))).count();
        let refused = results
            .iter()
            .filter(|result| matches!(result, Ok(Err(PaymentError::Unavailable { .. }))))
            .count();
        assert_eq!((ok, refused), (2, 2), "{results:?}");
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 2);
        assert_eq!(stats.in_flight.load(Ordering::Relaxed), 0);
    }

    #[actix::test]
    async fn a_slow_gateway_is_an_unknown_outcome() {
        let stats = Arc::new(PaymentStats::default());
        let slow = SimulatedGateway::new(SimulatedSettings { latency_ms: 500, decline_rate: 0.0, fail_rate: 0.0 });
        let actor = PaymentActor::new(Arc::new(slow), Duration::from_millis(50), breaker(8), stats).start();
        let result = actor.send(Charge { key: "k".into(), order_id: "o".into(), amount: 1 }).await.unwrap();
        assert!(matches!(result, Err(PaymentError::Unknown(_))), "{result:?}");
    }

    #[actix::test]
    async fn an_open_breaker_refuses_at_once_with_retry_after() {
        let stats = Arc::new(PaymentStats::default());
        let failing = SimulatedGateway::new(SimulatedSettings { latency_ms: 0, decline_rate: 0.0, fail_rate: 1.0 });
        let settings = BreakerSettings { window: 4, min_calls: 4, open_ms: 3_000, ..BreakerSettings::default() };
        let actor = PaymentActor::new(Arc::new(failing), Duration::from_secs(1), settings, stats.clone()).start();
        for n in 0..4 {
            let result = actor.send(Charge { key: format!("k{n}"), order_id: "o".into(), amount: 1 }).await.unwrap();
            assert!(matches!(result, Err(PaymentError::Unavailable { .. })));
        }
        assert_eq!(stats.breaker(), BreakerState::Open);
        let started = Instant::now();
        let result = actor.send(Charge { key: "k9".into(), order_id: "o".into(), amount: 1 }).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(50));
        match result {
            Err(PaymentError::Unavailable { retry_after_s, reason }) => {
                assert_eq!(retry_after_s, 3);
                assert!(reason.contains("circuit"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(stats.open_retry_after_s(), Some(3));
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 1);
    }

    #[actix::test]
    async fn payment_actors_sharing_a_breaker_open_and_refuse_together() {
        let stats = Arc::new(PaymentStats::default());
        let failing = Arc::new(SimulatedGateway::new(SimulatedSettings { latency_ms: 0, decline_rate: 0.0, fail_rate: 1.0 }));
        let settings = BreakerSettings { window: 4, min_calls: 4, open_ms: 3_000, ..BreakerSettings::default() };
        let shared: SharedBreaker = Arc::new(std::sync::Mutex::new(Breaker::new(settings)));
        let timeout = Duration::from_secs(1);
        let first = PaymentActor::sharing(failing.clone(), timeout, shared.clone(), stats.clone()).start();
        let second = PaymentActor::sharing(failing, timeout, shared, stats.clone()).start();
        // Failures through both actors count in the one window.
        for n in 0..4 {
            let actor = if n % 2 == 0 { &first } else { &second };
            let result = actor.send(Charge { key: format!("k{n}"), order_id: "o".into(), amount: 1 }).await.unwrap();
            assert!(matches!(result, Err(PaymentError::Unavailable { .. })), "{result:?}");
        }
        assert_eq!(stats.breaker(), BreakerState::Open);
        for actor in [&first, &second] {
            let result = actor.send(Charge { key: "k9".into(), order_id: "o".into(), amount: 1 }).await.unwrap();
            assert!(
                matches!(&result, Err(PaymentError::Unavailable { reason, .. }) if reason.contains("circuit")),
                "both actors refuse while the shared breaker is open: {result:?}"
            );
        }
        assert_eq!(stats.rejected.load(Ordering::Relaxed), 2);
    }
}
