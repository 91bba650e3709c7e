//! Errors as the HTTP caller sees them: RFC 9457 problem documents with a
//! stable `code`. This is the only place that decides status codes.

use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::actors::barista::PoolError;
use crate::actors::order::OrderError;
use crate::domain::TransitionError;
use crate::persistence::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidOrder(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("the request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the payment was declined; no order was created")]
    PaymentDeclined,
    #[error("payment is unavailable ({reason}); please pay again in {retry_after_s} s")]
    PaymentUnavailable { reason: String, retry_after_s: u64 },
    #[error("{reason}; try again in {retry_after_s} s")]
    Overloaded { reason: String, retry_after_s: u64 },
    /// 429 `overloaded`: more requests of this kind in progress than crema
    /// lets in at once; shed before any work is done.
    #[error("{0}; try again in 1 s")]
    TooManyRequests(String),
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    RequestInFlight,
    #[error("no order with this id")]
    OrderNotFound,
    #[error("{0}")]
    TooLateToCancel(String),
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no station with this id")]
    StationNotFound,
    #[error("no store with this id")]
    StoreNotFound,
    #[error("no menu item with this id")]
    MenuItemNotFound,
    /// 409 `item_unavailable`: sold out; nothing was charged.
    #[error("{0} is sold out; nothing was charged")]
    ItemUnavailable(String),
    /// 503 `store_paused`: the store's ordering is paused; nothing was charged.
    #[error("this store is not taking orders right now; nothing was charged")]
    StorePaused,
    /// 503 `store_busy`: the order would be ready later than the store's
    /// `max_wait_s`; nothing was charged. `eta_ms`: when it would be ready
    /// (`None`: no station is making what it needs).
    #[error("{detail}; nothing was charged")]
    StoreBusy { detail: String, eta_ms: Option<u64>, retry_after_s: u64 },
    #[error("{0}")]
    StationConflict(String),
    #[error("no such resource")]
    NotFound,
    /// 401 `unauthorized` (with `WWW-Authenticate: Bearer`): no key, or one crema does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the key's role or stores do not cover this request.
    #[error("{0}")]
    Forbidden(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request took too long")]
    Timeout,
    /// 408: the body did not arrive within `server.body_read_timeout_ms`.
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// 202 `placement_pending`: the order `order_id` is being placed and its
    /// outcome is not known yet. Never "not placed": the client learns the
    /// outcome by repeating the request with the same `Idempotency-Key`, or
    /// from `GET /orders/{order_id}`.
    #[error(
        "the order is still being placed and may yet be charged and accepted; repeat the request with the same \
         Idempotency-Key, or GET /orders/{order_id}, to learn the outcome"
    )]
    PlacementPending { order_id: String },
    /// 503 `storage_unavailable`: crema cannot write its store (a full disk,
    /// an I/O error); `detail` says what happened to the request, never where
    /// the data lives.
    #[error("{0}")]
    StorageUnavailable(String),
    /// 503 `store_unavailable` (contract v3): this node does not write the
    /// store now (another node took it over, or its journal does not answer);
    /// the request had no effect.
    #[error("{0}")]
    StoreUnavailable(String),
    /// 500. The detail stays in the log; the client gets a generic one.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How long a client is asked to wait when the store cannot write.
const STORAGE_RETRY_AFTER_S: u64 = 5;
/// How long a client is asked to wait while this node cannot write a store.
const STORE_UNAVAILABLE_RETRY_AFTER_S: u64 = 2;
/// How long a client is asked to wait while a store's ordering is paused (a
/// pause is a person's decision: there is no better estimate).
const STORE_PAUSED_RETRY_AFTER_S: u64 = 60;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidOrder(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            ApiError::PaymentUnavailable { .. }
            | ApiError::Overloaded { .. }
            | ApiError::Timeout
            | ApiError::StorageUnavailable(_)
            | ApiError::StoreUnavailable(_)
            | ApiError::StorePaused
            | ApiError::StoreBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PlacementPending { .. } => StatusCode::ACCEPTED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestInFlight
            | ApiError::TooLateToCancel(_)
            | ApiError::NotReady(_)
            | ApiError::Conflict(_)
            | ApiError::StationConflict(_)
            | ApiError::ItemUnavailable(_) => StatusCode::CONFLICT,
            ApiError::OrderNotFound
            | ApiError::StationNotFound
            | ApiError::StoreNotFound
            | ApiError::MenuItemNotFound
            | ApiError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidOrder(_) => "invalid_order",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PaymentDeclined => "payment_declined",
            ApiError::PaymentUnavailable { .. } => "payment_unavailable",
            ApiError::Overloaded { .. } | ApiError::TooManyRequests(_) | ApiError::Timeout => "overloaded",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RequestInFlight => "request_in_flight",
            ApiError::OrderNotFound => "order_not_found",
            ApiError::TooLateToCancel(_) => "too_late_to_cancel",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Conflict(_) => "conflict",
            ApiError::StationNotFound => "station_not_found",
            ApiError::StoreNotFound => "store_not_found",
            ApiError::MenuItemNotFound => "menu_item_not_found",
            ApiError::ItemUnavailable(_) => "item_unavailable",
            ApiError::StorePaused => "store_paused",
            ApiError::StoreBusy { .. } => "store_busy",
            ApiError::StationConflict(_) => "station_conflict",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::PlacementPending { .. } => "placement_pending",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::StoreUnavailable(_) => "store_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::PaymentUnavailable { retry_after_s, .. } | ApiError::Overloaded { retry_after_s, .. } => {
                Some((*retry_after_s).max(1))
            }
            ApiError::Timeout | ApiError::TooManyRequests(_) | ApiError::PlacementPending { .. } => Some(1),
            ApiError::StorageUnavailable(_) => Some(STORAGE_RETRY_AFTER_S),
            ApiError::StoreUnavailable(_) => Some(STORE_UNAVAILABLE_RETRY_AFTER_S),
            ApiError::StorePaused => Some(STORE_PAUSED_RETRY_AFTER_S),
            ApiError::StoreBusy { retry_after_s, .. } => Some((*retry_after_s).max(1)),
            _ => None,
        }
    }

    pub fn overloaded(reason: impl Into<String>) -> Self {
        ApiError::Overloaded { reason: reason.into(), retry_after_s: 1 }
    }

    /// The problem document as a response.
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            kind: String,
            title: &'a str,
            status: u16,
            detail: String,
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            retry_after_s: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            order_id: Option<&'a str>,
            /// `store_busy`: when the order would have been ready (`null`: not known).
            #[serde(skip_serializing_if = "Option::is_none")]
            eta: Option<Option<String>>,
            /// The request's id (`X-Request-Id`), to find its log line.
            #[serde(skip_serializing_if = "Option::is_none")]
            request_id: Option<&'a str>,
        }
        let status = self.status();
        let retry_after_s = self.retry_after_s();
        let request_id = super::server::current_request_id();
        let detail = match &self {
            // What went wrong inside (an error text may name files) is for the log only.
            ApiError::Internal(inner) => {
                tracing::error!(error = %inner, "request failed");
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        };
        let order_id = match &self {
            ApiError::PlacementPending { order_id } => Some(order_id.as_str()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code: self.code(),
            retry_after_s,
            order_id,
            eta: match &self {
                ApiError::StoreBusy { eta_ms, .. } => Some(eta_ms.map(crate::domain::time::rfc3339)),
                _ => None,
            },
            request_id: request_id.as_deref(),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(location) = order_id.and_then(|id| HeaderValue::from_str(&format!("/orders/{id}")).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"crema\""));
        }
        if matches!(self, ApiError::BodyTimeout(_)) {
            // The rest of the body may still be on its way: this connection is done.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<crate::auth::Denied> for ApiError {
    fn from(denied: crate::auth::Denied) -> Self {
        match denied {
            crate::auth::Denied::Unauthorized(detail) => ApiError::Unauthorized(detail),
            crate::auth::Denied::Forbidden(detail) => ApiError::Forbidden(detail),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::NotFound => ApiError::OrderNotFound,
            OrderError::Transition(err @ TransitionError::TooLateToCancel(_)) => ApiError::TooLateToCancel(err.to_string()),
            OrderError::Transition(err @ TransitionError::NotReady(_)) => ApiError::NotReady(err.to_string()),
            OrderError::Transition(err) => ApiError::Conflict(err.to_string()),
            OrderError::Declined => ApiError::PaymentDeclined,
            OrderError::PaymentUnavailable { reason, retry_after_s } => ApiError::PaymentUnavailable { reason, retry_after_s },
            OrderError::Store(err) => ApiError::from(err),
            OrderError::NotStored { refunded, fenced: true } => ApiError::StoreUnavailable(format!(
                "this store is served by another node now, so the order was not placed; {}. Please order again",
                if refunded { "the charge was refunded" } else { "the charge will be refunded automatically" }
            )),
            OrderError::NotStored { refunded, fenced: false } => {
                let charge = if refunded {
                    "the charge was refunded"
                } else {
                    "the charge will be refunded automatically"
                };
                ApiError::StorageUnavailable(format!(
                    "crema could not save the order, so it was not placed; {charge}. Please order again shortly"
                ))
            }
            OrderError::ShuttingDown => ApiError::overloaded("the engine is shutting down"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Rocks(_) | StoreError::Injected => {
                // The text names the data directory: log it, do not send it.
                tracing::warn!(error = %err, "a request failed on the store");
                ApiError::StorageUnavailable("crema cannot write its store right now; nothing was changed".into())
            }
            StoreError::Closed => ApiError::overloaded("the engine is shutting down"),
            StoreError::Fenced(store) => {
                ApiError::StoreUnavailable(format!("store {store} is served by another node now; nothing was changed"))
            }
            StoreError::JournalUnavailable(reason) => {
                tracing::warn!(%reason, "a request failed on the replicated journal");
                ApiError::StoreUnavailable("the store's journal did not answer; the change was not acknowledged".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::UnknownStation => ApiError::StationNotFound,
            other => ApiError::StationConflict(other.to_string()),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(err: actix::MailboxError) -> Self {
        match err {
            actix::MailboxError::Timeout => ApiError::Timeout,
            actix::MailboxError::Closed => ApiError::overloaded("the engine is shutting down"),
        }
    }
}
