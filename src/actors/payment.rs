//! The payment actor: the only way to charge or refund.
//!
//! It owns the gateway (a [`PaymentGateway`] trait object: the in-process
//! [`SimulatedGateway`] by default) and the bulkhead: at most
//! `payment.breaker.max_concurrent` gateway calls in flight, the excess refused
//! at once with `Unavailable` so no caller waits behind a slow gateway. Calls
//! are not serialised: each runs as its own future while the actor takes the
//! next message. Every call has a timeout; a charge that timed out has an
//! unknown outcome, which the caller must reconcile by key, never guess.
//!
//! Deliberately left out here (issue 3): the circuit breaker's sliding window
//! and the HTTP gateway. The seams for them are this actor and the trait.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use rand::Rng;

use crate::config::SimulatedSettings;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a gateway knows of one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayPayment {
    Captured { id: String },
    Declined,
    Refunded { id: String },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The gateway said it failed: nothing was charged.
    #[error("the payment gateway failed: {0}")]
    Failed(String),
    /// No answer in time: the charge may or may not have happened.
    #[error("the payment gateway did not answer in time")]
    Timeout,
}

/// An external payment service, addressed by idempotency key: charging the
/// same key twice returns the first payment and never charges again.
pub trait PaymentGateway: Send + Sync + 'static {
    fn charge(&self, key: String, order_id: String, amount: u64) -> BoxFuture<Result<GatewayPayment, GatewayError>>;
    fn lookup(&self, key: String) -> BoxFuture<Result<Option<GatewayPayment>, GatewayError>>;
    fn refund(&self, payment_id: String) -> BoxFuture<Result<(), GatewayError>>;
}

/// The in-process stand-in for a payment service, with fault knobs.
///
/// Its ledger lives in memory and holds the last `LEDGER_CAPACITY` payments (a
/// bound, so a long benchmark cannot grow it forever); after a restart it
/// knows nothing, as if the simulated money had never moved.
pub struct SimulatedGateway {
    knobs: SimulatedSettings,
    ledger: Mutex<Ledger>,
}

/// Most payments the simulated ledger remembers.
pub const LEDGER_CAPACITY: usize = 200_000;

#[derive(Default)]
struct Ledger {
    by_key: HashMap<String, GatewayPayment>,
    keys_by_id: HashMap<String, String>,
    order: VecDeque<String>,
    next_id: u64,
}

impl SimulatedGateway {
    pub fn new(knobs: SimulatedSettings) -> Self {
        SimulatedGateway { knobs, ledger: Mutex::new(Ledger::default()) }
    }

    fn decide(&self, key: &str) -> Result<GatewayPayment, GatewayError> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(existing) = ledger.by_key.get(key) {
            return Ok(existing.clone());
        }
        let mut rng = rand::rng();
        if rng.random_bool(self.knobs.fail_rate) {
            return Err(GatewayError::Failed("simulated failure".into()));
        }
        let payment = if rng.random_bool(self.knobs.decline_rate) {
            GatewayPayment::Declined
        } else {
            ledger.next_id += 1;
            GatewayPayment::Captured { id: format!("sim_{}", ledger.next_id) }
        };
        if ledger.order.len() == LEDGER_CAPACITY {
            if let Some(oldest) = ledger.order.pop_front() {
                if let Some(GatewayPayment::Captured { id } | GatewayPayment::Refunded { id }) = ledger.by_key.remove(&oldest) {
                    ledger.keys_by_id.remove(&id);
                }
            }
        }
        if let GatewayPayment::Captured { id } = &payment {
            ledger.keys_by_id.insert(id.clone(), key.to_owned());
        }
        ledger.by_key.insert(key.to_owned(), payment.clone());
        ledger.order.push_back(key.to_owned());
        Ok(payment)
    }
}

impl PaymentGateway for SimulatedGateway {
    fn charge(&self, key: String, _order_id: String, _amount: u64) -> BoxFuture<Result<GatewayPayment, GatewayError>> {
        let latency = Duration::from_millis(self.knobs.latency_ms);
        let decision = self.decide(&key);
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            decision
        })
    }

    fn lookup(&self, key: String) -> BoxFuture<Result<Option<GatewayPayment>, GatewayError>> {
        let ledger = self.ledger.lock().unwrap_or_else(|poison| poison.into_inner());
        let found = ledger.by_key.get(&key).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn refund(&self, payment_id: String) -> BoxFuture<Result<(), GatewayError>> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(key) = ledger.keys_by_id.get(&payment_id).cloned() {
            ledger.by_key.insert(key, GatewayPayment::Refunded { id: payment_id });
        }
        Box::pin(async move { Ok(()) })
    }
}

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

/// Counters read by `/stats` without asking the actor.
#[derive(Debug, Default)]
pub struct PaymentStats {
    pub in_flight: AtomicU64,
    pub rejected: AtomicU64,
    pub captured: AtomicU64,
    pub declined: AtomicU64,
    pub failed: AtomicU64,
    pub refunded: AtomicU64,
}

pub struct PaymentActor {
    gateway: Arc<dyn PaymentGateway>,
    timeout: Duration,
    max_concurrent: u64,
    stats: Arc<PaymentStats>,
}

impl PaymentActor {
    pub fn new(gateway: Arc<dyn PaymentGateway>, timeout: Duration, max_concurrent: usize, stats: Arc<PaymentStats>) -> Self {
        PaymentActor { gateway, timeout, max_concurrent: max_concurrent as u64, stats }
    }

    /// Takes a bulkhead slot, or refuses at once.
    fn admit(&self) -> Result<InFlight, PaymentError> {
        let stats = self.stats.clone();
        let taken = stats.in_flight.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_concurrent {
            stats.in_flight.fetch_sub(1, Ordering::AcqRel);
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(PaymentError::Unavailable { reason: "too many payments in flight".into(), retry_after_s: 1 });
        }
        Ok(InFlight(stats))
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
    type Result = ResponseFuture<Result<String, PaymentError>>;

    fn handle(&mut self, msg: Charge, _: &mut Self::Context) -> Self::Result {
        let slot = match self.admit() {
            Ok(slot) => slot,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let call = self.gateway.charge(msg.key, msg.order_id, msg.amount);
        let timeout = self.timeout;
        let stats = self.stats.clone();
        Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, call).await;
            drop(slot);
            match outcome {
                Ok(Ok(GatewayPayment::Captured { id })) => {
                    stats.captured.fetch_add(1, Ordering::Relaxed);
                    Ok(id)
                }
                Ok(Ok(GatewayPayment::Declined)) => {
                    stats.declined.fetch_add(1, Ordering::Relaxed);
                    Err(PaymentError::Declined)
                }
                // A key already refunded must not be charged again under a new order.
                Ok(Ok(GatewayPayment::Refunded { .. })) => Err(PaymentError::Declined),
                Ok(Err(GatewayError::Failed(reason))) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    Err(PaymentError::Unavailable { reason, retry_after_s: 1 })
                }
                Ok(Err(GatewayError::Timeout)) | Err(_) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    Err(PaymentError::Unknown("the gateway did not answer in time".into()))
                }
            }
        })
    }
}

/// Refund the payment `payment_id`; idempotent at the gateway.
#[derive(Message)]
#[rtype(result = "Result<(), PaymentError>")]
pub struct Refund {
    pub payment_id: String,
}

impl Handler<Refund> for PaymentActor {
    type Result = ResponseFuture<Result<(), PaymentError>>;

    fn handle(&mut self, msg: Refund, _: &mut Self::Context) -> Self::Result {
        let slot = match self.admit() {
            Ok(slot) => slot,
            Err(err) => return Box::pin(async move { Err(err) }),
        };
        let call = self.gateway.refund(msg.payment_id);
        let timeout = self.timeout;
        let stats = self.stats.clone();
        Box::pin(async move {
            let outcome = tokio::time::timeout(timeout, call).await;
            drop(slot);
            match outcome {
                Ok(Ok(())) => {
                    stats.refunded.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err(err)) => Err(PaymentError::Unavailable { reason: err.to_string(), retry_after_s: 1 }),
                Err(_) => Err(PaymentError::Unknown("refund timed out".into())),
            }
        })
    }
}

/// What the gateway knows of `key` (used by recovery to reconcile intents).
#[derive(Message)]
#[rtype(result = "Result<Option<GatewayPayment>, PaymentError>")]
pub struct Lookup {
    pub key: String,
}

impl Handler<Lookup> for PaymentActor {
    type Result = ResponseFuture<Result<Option<GatewayPayment>, PaymentError>>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        let call = self.gateway.lookup(msg.key);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(found)) => Ok(found),
                Ok(Err(err)) => Err(PaymentError::Unavailable { reason: err.to_string(), retry_after_s: 1 }),
                Err(_) => Err(PaymentError::Unknown("lookup timed out".into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(decline_rate: f64, fail_rate: f64) -> SimulatedGateway {
        SimulatedGateway::new(SimulatedSettings { latency_ms: 0, decline_rate, fail_rate })
    }

    #[tokio::test]
    async fn same_key_returns_the_same_payment() {
        let gateway = gateway(0.0, 0.0);
        let first = gateway.charge("k".into(), "o".into(), 10).await.unwrap();
        let second = gateway.charge("k".into(), "o".into(), 10).await.unwrap();
        assert_eq!(first, second);
        let other = gateway.charge("k2".into(), "o2".into(), 10).await.unwrap();
        assert_ne!(first, other);
        assert_eq!(gateway.lookup("k".into()).await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn knobs_decline_and_fail() {
        assert_eq!(gateway(1.0, 0.0).charge("k".into(), "o".into(), 1).await.unwrap(), GatewayPayment::Declined);
        assert!(gateway(0.0, 1.0).charge("k".into(), "o".into(), 1).await.is_err());
    }

    #[tokio::test]
    async fn refund_is_recorded_and_idempotent() {
        let gateway = gateway(0.0, 0.0);
        let GatewayPayment::Captured { id } = gateway.charge("k".into(), "o".into(), 1).await.unwrap() else {
            panic!("expected a capture");
        };
        gateway.refund(id.clone()).await.unwrap();
        gateway.refund(id.clone()).await.unwrap();
        assert_eq!(gateway.lookup("k".into()).await.unwrap(), Some(GatewayPayment::Refunded { id }));
    }

    #[actix::test]
    async fn bulkhead_refuses_excess_at_once() {
        let stats = Arc::new(PaymentStats::default());
        let slow = SimulatedGateway::new(SimulatedSettings { latency_ms: 300, decline_rate: 0.0, fail_rate: 0.0 });
        let actor = PaymentActor::new(Arc::new(slow), Duration::from_secs(2), 2, stats.clone()).start();
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
        let actor = PaymentActor::new(Arc::new(slow), Duration::from_millis(50), 8, stats).start();
        let result = actor.send(Charge { key: "k".into(), order_id: "o".into(), amount: 1 }).await.unwrap();
        assert!(matches!(result, Err(PaymentError::Unknown(_))), "{result:?}");
    }
}
