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
    #[error("{0}")]
    StationConflict(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request took too long")]
    Timeout,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidOrder(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            ApiError::PaymentUnavailable { .. } | ApiError::Overloaded { .. } | ApiError::Timeout => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RequestInFlight
            | ApiError::TooLateToCancel(_)
            | ApiError::NotReady(_)
            | ApiError::Conflict(_)
            | ApiError::StationConflict(_) => StatusCode::CONFLICT,
            ApiError::OrderNotFound | ApiError::StationNotFound | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
            ApiError::StationConflict(_) => "station_conflict",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::PaymentUnavailable { retry_after_s, .. } | ApiError::Overloaded { retry_after_s, .. } => {
                Some((*retry_after_s).max(1))
            }
            ApiError::Timeout | ApiError::TooManyRequests(_) => Some(1),
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
        }
        let status = self.status();
        let retry_after_s = self.retry_after_s();
        if status.is_server_error() && !matches!(self, ApiError::PaymentUnavailable { .. } | ApiError::Overloaded { .. }) {
            tracing::error!(error = %self, "request failed");
        }
        let problem = Problem {
            kind: format!("/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            retry_after_s,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
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
            OrderError::Store(err) => ApiError::Internal(err.to_string()),
            OrderError::ShuttingDown => ApiError::overloaded("the engine is shutting down"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
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
