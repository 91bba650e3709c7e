//! `crema payment-sim`: a stand-in for an external payment service (API.md,
//! "The payment service"), so crema's HTTP gateway, circuit breaker and
//! reconciliation can be tested against a real process that can be slowed,
//! broken, stopped and restarted.
//!
//! - Payments are idempotent by key: the same key always returns the same
//!   payment, and a key is charged at most once.
//! - The ledger is kept on disk (`ledger.jsonl` in `--data`: one JSON line per
//!   change, fsynced before the answer), so a restarted payment-sim still knows
//!   every charge and refund.
//! - Fault knobs: latency (+ uniform jitter) before each answer, a failure rate
//!   (500, nothing charged), a decline rate (402), and `down` (503 to every
//!   payment call). Set by flags at start and at runtime by `POST /admin/faults`.
//!
//! A charge is recorded before the latency is served, as a real gateway would:
//! a caller that times out does not know whether it was charged, and must look
//! the key up.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::http::handlers::json;

/// The fault knobs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    pub latency_ms: u64,
    pub jitter_ms: u64,
    pub fail_rate: f64,
    pub decline_rate: f64,
    pub down: bool,
}

/// A partial update of the knobs (`POST /admin/faults`): absent fields stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsUpdate {
    latency_ms: Option<u64>,
    jitter_ms: Option<u64>,
    fail_rate: Option<f64>,
    decline_rate: Option<f64>,
    down: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Captured,
    Declined,
    Refunded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub id: String,
    pub idempotency_key: String,
    pub order_id: String,
    pub amount: u64,
    pub status: PaymentStatus,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    idempotency_key: String,
    order_id: String,
    amount: u64,
}

/// Payments by key, mirrored to an append-only file.
struct Ledger {
    by_key: HashMap<String, Payment>,
    key_by_id: HashMap<String, String>,
    file: File,
    next_id: u64,
}

impl Ledger {
    fn open(dir: &Path) -> std::io::Result<Ledger> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("ledger.jsonl");
        let mut ledger = Ledger { by_key: HashMap::new(), key_by_id: HashMap::new(), file: OpenOptions::new().create(true).append(true).open(&path)?, next_id: 0 };
        for (number, line) in BufReader::new(File::open(&path)?).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let payment: Payment = serde_json::from_str(&line).map_err(|err| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}:{}: {err}", path.display(), number + 1))
            })?;
            ledger.remember(payment);
        }
        Ok(ledger)
    }

    fn remember(&mut self, payment: Payment) {
        if let Some(number) = payment.id.strip_prefix("pay_").and_then(|n| n.parse::<u64>().ok()) {
            self.next_id = self.next_id.max(number);
        }
        self.key_by_id.insert(payment.id.clone(), payment.idempotency_key.clone());
        self.by_key.insert(payment.idempotency_key.clone(), payment);
    }

    /// Appends and syncs `payment`, then remembers it.
    fn record(&mut self, payment: Payment) -> std::io::Result<Payment> {
        let mut line = serde_json::to_vec(&payment).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.remember(payment.clone());
        Ok(payment)
    }
}

#[derive(Clone)]
pub struct PaymentSim {
    ledger: Arc<Mutex<Ledger>>,
    faults: Arc<Mutex<Faults>>,
}

fn message(status: StatusCode, text: &str) -> Response {
    json(status, &serde_json::json!({"error": text}))
}

impl PaymentSim {
    pub fn open(dir: &Path, faults: Faults) -> std::io::Result<PaymentSim> {
        Ok(PaymentSim { ledger: Arc::new(Mutex::new(Ledger::open(dir)?)), faults: Arc::new(Mutex::new(faults)) })
    }

    fn faults(&self) -> Faults {
        self.faults.lock().unwrap_or_else(|poison| poison.into_inner()).clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    async fn delay(faults: &Faults) {
        let jitter = if faults.jitter_ms > 0 { rand::rng().random_range(0..=faults.jitter_ms) } else { 0 };
        let wait = faults.latency_ms + jitter;
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    async fn charge(self, request: ChargeRequest) -> Response {
        let faults = self.faults();
        if faults.down {
            return message(StatusCode::SERVICE_UNAVAILABLE, "payment service is down");
        }
        if request.idempotency_key.is_empty() || request.idempotency_key.len() > 255 {
            return message(StatusCode::BAD_REQUEST, "idempotency_key must be 1-255 bytes");
        }
        let (fail, decline) = {
            let mut rng = rand::rng();
            (rng.random_bool(faults.fail_rate.clamp(0.0, 1.0)), rng.random_bool(faults.decline_rate.clamp(0.0, 1.0)))
        };
        let sim = self.clone();
        let recorded = tokio::task::spawn_blocking(move || -> std::io::Result<Option<(Payment, bool)>> {
            let mut ledger = sim.ledger();
            if let Some(existing) = ledger.by_key.get(&request.idempotency_key) {
                return Ok(Some((existing.clone(), false)));
            }
            if fail {
                return Ok(None);
            }
            ledger.next_id += 1;
            let payment = Payment {
                id: format!("pay_{}", ledger.next_id),
                idempotency_key: request.idempotency_key,
                order_id: request.order_id,
                amount: request.amount,
                status: if decline { PaymentStatus::Declined } else { PaymentStatus::Captured },
            };
            Ok(Some((ledger.record(payment)?, true)))
        })
        .await;
        Self::delay(&faults).await;
        match recorded {
            Ok(Ok(Some((payment, new)))) => {
                let status = match (payment.status, new) {
                    (PaymentStatus::Declined, _) => StatusCode::PAYMENT_REQUIRED,
                    (_, true) => StatusCode::CREATED,
                    (_, false) => StatusCode::OK,
                };
                json(status, &payment)
            }
            Ok(Ok(None)) => message(StatusCode::INTERNAL_SERVER_ERROR, "simulated failure; nothing was charged"),
            Ok(Err(err)) => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("ledger: {err}")),
            Err(err) => message(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        }
    }

    async fn lookup(self, key: String) -> Response {
        let faults = self.faults();
        if faults.down {
            return message(StatusCode::SERVICE_UNAVAILABLE, "payment service is down");
        }
        let found = self.ledger().by_key.get(&key).cloned();
        Self::delay(&faults).await;
        match found {
            Some(payment) => json(StatusCode::OK, &payment),
            None => message(StatusCode::NOT_FOUND, "no payment with this key"),
        }
    }

    async fn refund(self, id: String) -> Response {
        let faults = self.faults();
        if faults.down {
            return message(StatusCode::SERVICE_UNAVAILABLE, "payment service is down");
        }
        let sim = self.clone();
        let refunded = tokio::task::spawn_blocking(move || -> std::io::Result<Result<Payment, (StatusCode, &'static str)>> {
            let mut ledger = sim.ledger();
            let Some(key) = ledger.key_by_id.get(&id).cloned() else {
                return Ok(Err((StatusCode::NOT_FOUND, "no payment with this id")));
            };
            let payment = ledger.by_key[&key].clone();
            match payment.status {
                PaymentStatus::Refunded => Ok(Ok(payment)),
                PaymentStatus::Declined => Ok(Err((StatusCode::CONFLICT, "a declined payment has nothing to refund"))),
                PaymentStatus::Captured => {
                    ledger.record(Payment { status: PaymentStatus::Refunded, ..payment }).map(Ok)
                }
            }
        })
        .await;
        Self::delay(&faults).await;
        match refunded {
            Ok(Ok(Ok(payment))) => json(StatusCode::OK, &payment),
            Ok(Ok(Err((status, text)))) => message(status, text),
            Ok(Err(err)) => message(StatusCode::INTERNAL_SERVER_ERROR, &format!("ledger: {err}")),
            Err(err) => message(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        }
    }

    fn list(&self, status: Option<&str>) -> Response {
        let wanted = match status {
            None => None,
            Some("captured") => Some(PaymentStatus::Captured),
            Some("refunded") => Some(PaymentStatus::Refunded),
            Some("declined") => Some(PaymentStatus::Declined),
            Some(_) => return message(StatusCode::BAD_REQUEST, "status must be captured, refunded or declined"),
        };
        let mut payments: Vec<Payment> =
            self.ledger().by_key.values().filter(|p| wanted.is_none_or(|s| p.status == s)).cloned().collect();
        payments.sort_by(|a, b| a.id.cmp(&b.id));
        json(StatusCode::OK, &serde_json::json!({ "payments": payments }))
    }

    fn set_faults(&self, update: FaultsUpdate) -> Response {
        let mut faults = self.faults.lock().unwrap_or_else(|poison| poison.into_inner());
        for rate in [update.fail_rate, update.decline_rate].into_iter().flatten() {
            if !(0.0..=1.0).contains(&rate) {
                return message(StatusCode::BAD_REQUEST, "rates must be between 0 and 1");
            }
        }
        faults.latency_ms = update.latency_ms.unwrap_or(faults.latency_ms);
        faults.jitter_ms = update.jitter_ms.unwrap_or(faults.jitter_ms);
        faults.fail_rate = update.fail_rate.unwrap_or(faults.fail_rate);
        faults.decline_rate = update.decline_rate.unwrap_or(faults.decline_rate);
        faults.down = update.down.unwrap_or(faults.down);
        tracing::info!(?faults, "faults set");
        json(StatusCode::OK, &*faults)
    }

    /// The routes of API.md's payment service.
    pub fn routes(&self) -> BoxedFilter<(Response,)> {
        let sim = self.clone();
        let with_sim = warp::any().map(move || sim.clone());
        let charge = warp::path!("payments")
            .and(warp::post())
            .and(with_sim.clone())
            .and(json_body::<ChargeRequest>(16 * 1024))
            .then(|sim: PaymentSim, request: ChargeRequest| sim.charge(request));
        let lookup = warp::path!("payments" / String)
            .and(warp::get())
            .and(with_sim.clone())
            .then(|key: String, sim: PaymentSim| sim.lookup(key));
        let refund = warp::path!("payments" / String / "refund")
            .and(warp::post())
            .and(with_sim.clone())
            .then(|id: String, sim: PaymentSim| sim.refund(id));
        let list = warp::path!("payments")
            .and(warp::get())
            .and(with_sim.clone())
            .and(warp::query::<HashMap<String, String>>())
            .map(|sim: PaymentSim, query: HashMap<String, String>| sim.list(query.get("status").map(String::as_str)));
        let faults = warp::path!("admin" / "faults")
            .and(warp::post())
            .and(with_sim.clone())
            .and(json_body::<FaultsUpdate>(4 * 1024))
            .map(|sim: PaymentSim, update: FaultsUpdate| sim.set_faults(update));
        let get_faults = warp::path!("admin" / "faults")
            .and(warp::get())
            .and(with_sim)
            .map(|sim: PaymentSim| json(StatusCode::OK, &sim.faults()));
        let health = warp::path!("healthz").map(|| json(StatusCode::OK, &serde_json::json!({"status": "ok"})));
        charge
            .or(lookup)
            .unify()
            .or(refund)
            .unify()
            .or(list)
            .unify()
            .or(faults)
            .unify()
            .or(get_faults)
            .unify()
            .or(health)
            .unify()
            .recover(|rejection: warp::Rejection| async move {
                let response = if rejection.is_not_found() {
                    message(StatusCode::NOT_FOUND, "no such resource")
                } else {
                    message(StatusCode::BAD_REQUEST, &format!("{rejection:?}"))
                };
                Ok::<_, std::convert::Infallible>(response)
            })
            .unify()
            .boxed()
    }
}

/// A JSON body of at most `limit` bytes.
fn json_body<T: serde::de::DeserializeOwned + Send>(
    limit: u64,
) -> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(limit).and(warp::body::json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut ledger = Ledger::open(dir.path()).unwrap();
            let payment = Payment {
                id: "pay_7".into(),
                idempotency_key: "k".into(),
                order_id: "o".into(),
                amount: 10,
                status: PaymentStatus::Captured,
            };
            ledger.record(payment.clone()).unwrap();
            ledger.record(Payment { status: PaymentStatus::Refunded, ..payment }).unwrap();
        }
        let ledger = Ledger::open(dir.path()).unwrap();
        assert_eq!(ledger.by_key["k"].status, PaymentStatus::Refunded);
        assert_eq!(ledger.next_id, 7, "ids keep counting after a restart");
    }

    #[test]
    fn a_corrupt_ledger_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.jsonl"), "{not json}\n").unwrap();
        let err = Ledger::open(dir.path()).err().expect("an error");
        assert!(err.to_string().contains("ledger.jsonl:1"));
    }
}
