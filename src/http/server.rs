//! The HTTP server loop, hardened where warp 0.4 is not: warp's filters are
//! served through hyper directly, so that here we can
//! - cap open connections (`max_connections`; one more is answered 503 and closed),
//! - bound the time to read a request head (`header_read_timeout`),
//! - bound the time to a response head (`request_timeout`: 503 `overloaded`),
//! - shed a request before it reaches warp's filters (a [`Gate`], for
//!   `POST /orders` beyond `orders.max_placing`: 429 at the cost of a header parse),
//! - and shut down gracefully: stop accepting, let requests in flight finish
//!   (up to `shutdown_grace`), then close what is left.
//!
//! Bodies are bounded by the routes (64 KiB by default, see `routes`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::error::ApiError;
use crate::config::ServerSettings;
use crate::metrics::{route_of, HttpMetrics};

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Where request latencies go, if anywhere.
    pub metrics: Option<Arc<HttpMetrics>>,
    /// Admission before routing, if any.
    pub gate: Option<Gate>,
}

/// Admission by route (a [`crate::metrics::ROUTES`] index), before the request
/// reaches the filters: `Ok` with a guard held until the response is ready, or
/// `Err` with the response to send at once.
#[derive(Clone)]
pub struct Gate(pub Arc<dyn Fn(usize) -> Result<Option<Box<dyn Send>>, Response> + Send + Sync>);

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl From<&ServerSettings> for ServerLimits {
    fn from(settings: &ServerSettings) -> Self {
        ServerLimits {
            max_connections: settings.max_connections,
            header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
            shutdown_grace: Duration::from_millis(settings.shutdown_grace_ms),
            metrics: None,
            gate: None,
        }
    }
}

/// What an over-limit connection is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: 126\r\n\r\n{\"type\":\"/problems/overloaded\",\"title\":\"Service Unavailable\",\"status\":503,\"code\":\"overloaded\",\"detail\":\"too many connections\"}";

/// Serves `routes` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    routes: BoxedFilter<(Response,)>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let service = warp::service(routes);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(TOO_MANY_CONNECTIONS)).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let request_timeout = limits.request_timeout;
        let metrics = limits.metrics.clone();
        let gate = limits.gate.clone();
        let handler = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut service = service.clone();
            let metrics = metrics.clone();
            let route = route_of(request.method(), request.uri().path());
            let admitted = gate.as_ref().map_or(Ok(None), |gate| (gate.0)(route));
            let started = Instant::now();
            async move {
                let response = match admitted {
                    Err(refused) => refused,
                    Ok(_guard) => match tokio::time::timeout(request_timeout, service.call(request)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => ApiError::Timeout.into_response(),
                    },
                };
                if let Some(metrics) = metrics {
                    metrics.latency[route].observe(started.elapsed().as_micros() as u64);
                }
                Ok::<Response, Infallible>(response)
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), handler);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("shutdown grace period over; closing the remaining connections"),
    }
}
