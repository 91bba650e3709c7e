//! Payment gateways: the [`PaymentGateway`] trait the payment actor calls,
//! the in-process [`SimulatedGateway`] (the embedded default) and the
//! [`HttpGateway`] for an external payment service such as `crema payment-sim`.
//!
//! Every gateway is addressed by idempotency key: charging a key twice returns
//! the first payment and never charges again, which is what makes retries and
//! reconciliation safe.

use std::future::Future;
use std::pin::Pin;

mod http;
mod simulated;

pub use http::HttpGateway;
pub use simulated::{SimulatedGateway, LEDGER_CAPACITY};

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
    /// Not attempted: the bulkhead or the circuit breaker refused the call.
    #[error("{reason}")]
    Refused { reason: String, retry_after_s: u64 },
}

/// An external payment service, addressed by idempotency key: charging the
/// same key twice returns the first payment and never charges again.
pub trait PaymentGateway: Send + Sync + 'static {
    fn charge(&self, key: String, order_id: String, amount: u64) -> BoxFuture<Result<GatewayPayment, GatewayError>>;
    fn lookup(&self, key: String) -> BoxFuture<Result<Option<GatewayPayment>, GatewayError>>;
    fn refund(&self, payment_id: String) -> BoxFuture<Result<(), GatewayError>>;
}

