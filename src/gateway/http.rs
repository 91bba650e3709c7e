//! The gateway to an external payment service over HTTP (the payment service
//! section of API.md; `crema payment-sim` implements it), like the origin's
//! FeignClient to `api.payment.url`.
//!
//! One pooled client (keep-alive connections reused across calls), a timeout
//! per call. How answers map to outcomes:
//! - 201/200 `captured` → captured; 402 → declined; a `refunded` payment → refunded.
//! - The connection refused, or a 5xx answer → `Failed`: nothing was charged.
//! - No answer in time, or the connection lost after the request went out →
//!   `Timeout`: the outcome is unknown and must be looked up by key.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::{BoxFuture, GatewayError, GatewayPayment, PaymentGateway};

pub struct HttpGateway {
    client: reqwest::Client,
    base: String,
}

#[derive(Debug, Deserialize)]
struct PaymentBody {
    #[serde(default)]
    id: Option<String>,
    status: String,
}

impl HttpGateway {
    pub fn new(base_url: &str, timeout: Duration) -> Result<HttpGateway, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|err| format!("building the payment HTTP client: {err}"))?;
        Ok(HttpGateway { client, base: base_url.trim_end_matches('/').to_owned() })
    }
}

fn transport(err: reqwest::Error) -> GatewayError {
    if err.is_connect() {
        GatewayError::Failed(format!("cannot reach the payment service: {err}"))
    } else {
        GatewayError::Timeout
    }
}

fn payment(body: PaymentBody) -> Result<GatewayPayment, GatewayError> {
    match (body.status.as_str(), body.id) {
        ("captured", Some(id)) => Ok(GatewayPayment::Captured { id }),
        ("refunded", Some(id)) => Ok(GatewayPayment::Refunded { id }),
        ("declined", _) => Ok(GatewayPayment::Declined),
        (status, _) => Err(GatewayError::Failed(format!("unexpected payment status {status:?}"))),
    }
}

async fn read(response: reqwest::Response) -> Result<GatewayPayment, GatewayError> {
    let status = response.status();
    if status.is_server_error() {
        return Err(GatewayError::Failed(format!("the payment service answered {status}")));
    }
    if status == reqwest::StatusCode::PAYMENT_REQUIRED {
        return Ok(GatewayPayment::Declined);
    }
    if !status.is_success() {
        return Err(GatewayError::Failed(format!("the payment service answered {status}")));
    }
    payment(response.json::<PaymentBody>().await.map_err(transport)?)
}

impl PaymentGateway for HttpGateway {
    fn charge(&self, key: String, order_id: String, amount: u64) -> BoxFuture<Result<GatewayPayment, GatewayError>> {
        let request = self
            .client
            .post(format!("{}/payments", self.base))
            .json(&json!({"idempotency_key": key, "order_id": order_id, "amount": amount}));
        Box::pin(async move { read(request.send().await.map_err(transport)?).await })
    }

    fn lookup(&self, key: String) -> BoxFuture<Result<Option<GatewayPayment>, GatewayError>> {
        let request = self.client.get(format!("{}/payments/{}", self.base, urlencode(&key)));
        Box::pin(async move {
            let response = request.send().await.map_err(transport)?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(None);
            }
            read(response).await.map(Some)
        })
    }

    fn refund(&self, payment_id: String) -> BoxFuture<Result<(), GatewayError>> {
        let request = self.client.post(format!("{}/payments/{}/refund", self.base, urlencode(&payment_id)));
        Box::pin(async move {
            let response = request.send().await.map_err(transport)?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(GatewayError::Failed(format!("refund answered {}", response.status())))
            }
        })
    }
}

/// Percent-encodes a path segment (keys are visible ASCII, but may hold `/` or `?`).
fn urlencode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(urlencode("crema-01a2"), "crema-01a2");
        assert_eq!(urlencode("a/b?c"), "a%2Fb%3Fc");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_a_failure_not_an_unknown() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let gateway = HttpGateway::new("http://127.0.0.1:9", Duration::from_millis(500)).unwrap();
        let result = gateway.charge("k".into(), "o".into(), 1).await;
        assert!(matches!(result, Err(GatewayError::Failed(_))), "{result:?}");
    }
}
