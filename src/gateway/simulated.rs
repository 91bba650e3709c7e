//! The in-process simulated payment gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use super::{BoxFuture, GatewayError, GatewayPayment, PaymentGateway};
use crate::config::SimulatedSettings;

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
}
