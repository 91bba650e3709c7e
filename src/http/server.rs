//! The HTTP server loop, hardened where warp 0.4 is not: warp's filters are
//! served through hyper directly, so that here we can
//! - cap open connections (`max_connections`; one more has its request read,
//!   is answered 503 and closed),
//! - bound the time to read a request head (`header_read_timeout`),
//! - bound the time to a response head (`request_timeout`: 503 `overloaded`),
//!   except for the routes that bound their own time (`self_timed`:
//!   `POST /orders`, whose answer must never be a "try again" for an order
//!   that may still be placed),
//! - close connections that stop reading their responses (`write_timeout`)
//!   or move no bytes either way (`idle_timeout`) — see [`TimedIo`],
//! - shed a request before it reaches warp's filters (a [`Gate`], for
//!   `POST /orders` beyond `orders.max_placing`: 429 at the cost of a header parse),
//! - answer `HEAD` on every `GET` route and give 405s their `Allow` header,
//! - and shut down gracefully: stop accepting, let requests in flight finish
//!   (up to `shutdown_grace`), then close what is left.
//!
//! Bodies are bounded in size and time by the routes (see `routes`).

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
use crate::cluster::forward::{scope_of, Forwarder, Scope, Target, FORWARDED_HEADER, HOLD, MAX_HOPS, NODE_HEADER};
use crate::cluster::membership::InFlight;
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use crate::config::ServerSettings;
use crate::metrics::{route_of, HttpMetrics};

#[derive(Debug, Clone)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Routes ([`crate::metrics::ROUTES`] indexes) exempt from `request_timeout`.
    pub self_timed: Arc<[usize]>,
    /// The `Allow` header of a 405 on a path.
    pub allow: Option<fn(&str) -> Option<&'static str>>,
    /// Where request latencies go, if anywhere.
    pub metrics: Option<Arc<HttpMetrics>>,
    /// Admission before routing, if any.
    pub gate: Option<Gate>,
    /// Where accepted connections are served, if not on the accepting runtime
    /// (see [`Spawner`]).
    pub spawner: Option<Spawner>,
    /// Who each request's caller is (from its key or session cookie), kept
    /// for the routes to check; without it every caller is anonymous.
    pub authenticate: Option<Arc<crate::auth::Gatekeeper>>,
    /// In a cluster: requests about a store served elsewhere go to its owner
    /// (see `crate::cluster::forward`); `body_limit` bounds a body read to
    /// find its store.
    pub forward: Option<Arc<Forwarder>>,
    pub body_limit: usize,
}

/// Runs a connection's future somewhere else than the accepting runtime: crema
/// serves each connection on one of the actix order arbiters, so that the
/// order actors its requests start are local to it. The future registers its
/// socket with the runtime that first polls it.
#[derive(Clone)]
pub struct Spawner(pub Arc<dyn Fn(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>);

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

/// Admission by route (a [`crate::metrics::ROUTES`] index), before the request
/// reaches the filters: `Ok` to go on, or `Err` with the response to send at once.
#[derive(Clone)]
pub struct Gate(pub Arc<dyn Fn(usize) -> Result<(), Response> + Send + Sync>);

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
            write_timeout: Duration::from_millis(settings.write_timeout_ms),
            idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
            self_timed: Arc::from([]),
            allow: None,
            metrics: None,
            gate: None,
            spawner: None,
            authenticate: None,
            forward: None,
            body_limit: settings.body_limit_bytes,
        }
    }
}

/// What an over-limit connection is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: 126\r\n\r\n{\"type\":\"/problems/overloaded\",\"title\":\"Service Unavailable\",\"status\":503,\"code\":\"overloaded\",\"detail\":\"too many connections\"}";

/// Connections being refused at once (read, answered 503, closed); beyond
/// this many a refused connection is closed without an answer.
const MAX_REFUSING: usize = 256;
/// Most of a refused connection's request that is read before the 503.
const REFUSED_READ_BYTES: usize = 16 * 1024;

/// Reads (and drops) what a refused client sends, up to [`REFUSED_READ_BYTES`]
/// or the end of its request head, so that it reads the 503 instead of a reset.
async fn read_refused_request(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; REFUSED_READ_BYTES];
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(read) => filled += read,
        }
        if buffer[..filled].windows(4).any(|window| window == b"\r\n\r\n") {
            return;
        }
    }
}

/// Refuses an over-limit connection politely: reads its request head (for a
/// moment), answers 503, and closes after reading what is still in flight.
async fn refuse(mut stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(Duration::from_millis(500), read_refused_request(&mut stream)).await;
    if tokio::time::timeout(Duration::from_secs(1), stream.write_all(TOO_MANY_CONNECTIONS)).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Closing with unread bytes would reset the connection and could destroy the answer.
    let _ = tokio::time::timeout(Duration::from_millis(500), read_refused_request(&mut stream)).await;
}

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
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
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
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let request_timeout = limits.request_timeout;
        let metrics = limits.metrics.clone();
        let gate = limits.gate.clone();
        let self_timed = limits.self_timed.clone();
        let allow = limits.allow;
        let gatekeeper = limits.authenticate.clone();
        let forwarder = limits.forward.clone();
        let body_limit = limits.body_limit;
        let handler = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let forwarder = forwarder.clone();
            let mut service = service.clone();
            let metrics = metrics.clone();
            // HEAD is GET without the body (RFC 9110 §9.3.2); hyper leaves the body out.
            if request.method() == http::Method::HEAD {
                *request.method_mut() = http::Method::GET;
            }
            let route = route_of(request.method(), request.uri().path());
            // Kept (a reference count) for a 405's `Allow`, worked out only then.
            let uri = allow.map(|_| request.uri().clone());
            let request_id = request_id_of(request.headers());
            // The access line's fields, taken only when it will be written.
            let access = tracing::enabled!(target: "crema::access", tracing::Level::INFO)
                .then(|| (request.method().clone(), order_in_path(request.uri().path())));
            let timed = !self_timed.contains(&route);
            let started = Instant::now();
            let gate = gate.clone();
            let caller = gatekeeper.as_ref().map_or(crate::auth::Caller::Anonymous, |gatekeeper| gatekeeper.caller(request.headers()));
            let key_name = access.is_some().then(|| caller.name().to_owned());
            let answer = REQUEST_ID.scope(request_id.clone(), async move {
                let request = request.map(Either::Left);
                // Counts the request as in flight at its store until answered (a handover waits for it).
                let mut in_flight = None;
                let admitted = match &forwarder {
                    Some(forwarder) => through_owner(forwarder, request, body_limit).await.map(|(request, counted)| {
                        in_flight = counted;
                        request
                    }),
                    None => Ok(request),
                }
                .and_then(|request| gate.as_ref().map_or(Ok(()), |gate| (gate.0)(route)).map(|()| request));
                let mut response = match admitted {
                    Err(refused) => refused,
                    Ok(request) if timed => match tokio::time::timeout(request_timeout, service.call(request)).await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => ApiError::Timeout.into_response(),
                    },
                    Ok(request) => match service.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                };
                drop(in_flight);
                if response.status() == http::StatusCode::METHOD_NOT_ALLOWED {
                    if let Some(allowed) = allow.zip(uri).and_then(|(allow, uri)| allow(uri.path())) {
                        response.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static(allowed));
                    }
                }
                let took = started.elapsed();
                if let Some(metrics) = metrics {
                    metrics.latency[route].observe(took.as_micros() as u64);
                }
                if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID_HEADER, value);
                }
                if let Some(forwarder) = &forwarder {
                    if !response.headers().contains_key(NODE_HEADER) {
                        if let Ok(value) = http::HeaderValue::from_str(forwarder.node()) {
                            response.headers_mut().insert(NODE_HEADER, value);
                        }
                    }
                }
                if let Some((method, order)) = access {
                    // A new order's id is in its Location; a path names the order it is about.
                    let order = order.or_else(|| {
                        let location = response.headers().get(http::header::LOCATION)?.to_str().ok()?;
                        location.strip_prefix("/orders/").map(str::to_owned)
                    });
                    tracing::info!(
                        target: "crema::access",
                        method = %method,
                        route = crate::metrics::ROUTES[route],
                        status = response.status().as_u16(),
                        latency_ms = took.as_secs_f64() * 1e3,
                        request_id = %request_id,
                        order = order.as_deref().unwrap_or(""),
                        key = key_name.as_deref().unwrap_or(""),
                        "request"
                    );
                }
                Ok::<Response, Infallible>(response)
            });
            crate::auth::as_caller(caller, answer)
        });
        let (write_timeout, idle_timeout) = (limits.write_timeout, limits.idle_timeout);
        let header_read_timeout = limits.header_read_timeout;
        let watcher = graceful.watcher();
        let serve_connection = move |stream: tokio::net::TcpStream| {
            let io = TimedIo::new(stream, write_timeout, idle_timeout);
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(io), handler);
            async move {
                if let Err(err) = watcher.watch(connection).await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                drop(permit);
            }
        };
        match &limits.spawner {
            None => {
                tokio::spawn(serve_connection(stream));
            }
            // Handed over as a std socket: the runtime that serves it must own its registration.
            Some(spawner) => match stream.into_std() {
                Ok(stream) => (spawner.0)(Box::pin(async move {
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => serve_connection(stream).await,
                        Err(err) => tracing::warn!(error = %err, "a connection could not be handed to its arbiter"),
                    }
                })),
                Err(err) => tracing::warn!(error = %err, "a connection could not be handed to its arbiter"),
            },
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("shutdown grace period over; closing the remaining connections"),
    }
}

/// The body a request is served with: as it came, or read already (to find its store).
type RequestBody = Either<Incoming, Full<Bytes>>;

/// `request`, to be answered here; or the answer of its store's owner (or
/// 503 when the store has none). See `crate::cluster::forward`.
async fn through_owner(
    forwarder: &Forwarder,
    request: http::Request<RequestBody>,
    body_limit: usize,
) -> Result<(http::Request<RequestBody>, Option<InFlight>), Response> {
    let passed: Vec<String> = request
        .headers()
        .get(FORWARDED_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(|path| path.split(',').map(|node| node.trim().to_owned()).collect())
        .unwrap_or_default();
    if passed.len() >= MAX_HOPS {
        return Ok((request, None));
    }
    let scope = scope_of(request.method(), request.uri().path());
    if scope == Scope::Local {
        return Ok((request, None));
    }
    let (store, request) = match scope {
        Scope::Body => (None, request),
        scope => match forwarder.store_of(scope).await {
            Some(store) => (Some(forwarder.resolve(&store)), request),
            None => return Ok((request, None)),
        },
    };
    if let Some(store) = &store {
        // The common case, answered without reading the body here.
        if let Some(in_flight) = forwarder.enter_if_served(store) {
            return Ok((request, in_flight));
        }
    }
    let (parts, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(ApiError::BodyTooLarge(body_limit).into_response()),
    };
    let store = store.unwrap_or_else(|| forwarder.resolve(&forwarder.store_in_body(&body)));
    let here = |parts, body, in_flight| Ok((http::Request::from_parts(parts, Either::Right(Full::new(body))), in_flight));
    let held = Instant::now();
    loop {
        if let Some(in_flight) = forwarder.enter_if_served(&store) {
            return here(parts, body, in_flight);
        }
        match forwarder.target_of_store(&store).await {
            // Served here now: counted as in flight at the top of the loop.
            Target::Here => continue,
            Target::There { node, base } => match forwarder.forward(&node, &base, &parts, body.clone()).await {
                Ok(answer) => return Err(answer),
                // A dead owner whose lease has not run out yet: wait for the next one.
                Err(_) if held.elapsed() < HOLD => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => {
                    return Err(ApiError::StoreUnavailable(format!("store {store}'s owner ({node}) cannot be reached (failing over); try again")).into_response())
                }
            },
            Target::Nobody(store) => {
                return Err(ApiError::StoreUnavailable(format!("store {store} has no live owner yet (failing over); try again")).into_response())
            }
        }
    }
}

/// The header a request id comes in and goes out in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being answered, for problem documents.
    static REQUEST_ID: Arc<str>;
}

/// The id of the request this task is answering, if it is one.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// The client's `X-Request-Id` when it is 1–128 visible ASCII characters
/// (no quotes or backslashes, so it is safe in JSON and log lines); else a
/// new one (a UUIDv7: time-ordered).
fn request_id_of(headers: &http::HeaderMap) -> Arc<str> {
    let given = headers.get(REQUEST_ID_HEADER).map(http::HeaderValue::as_bytes).filter(|id| {
        (1..=128).contains(&id.len()) && id.iter().all(|byte| matches!(byte, 0x21..=0x7e) && *byte != b'"' && *byte != b'\\')
    });
    match given {
        Some(id) => Arc::from(String::from_utf8_lossy(id).as_ref()),
        None => Arc::from(uuid::Uuid::now_v7().to_string()),
    }
}

/// The order a path is about (`/orders/{id}…`), if any.
fn order_in_path(path: &str) -> Option<String> {
    let mut segments = path.trim_start_matches('/').split('/');
    (segments.next() == Some("orders")).then(|| segments.next()).flatten().filter(|id| !id.is_empty()).map(str::to_owned)
}

/// A connection's bytes with two deadlines hyper does not keep: a write that
/// makes no progress for `write_timeout` (the client stopped reading, e.g.
/// pipelining requests and never reading the answers) and a connection on
/// which no byte moves either way for `idle_timeout` both end in a
/// `TimedOut` error, which closes the connection and frees its place.
///
/// One timer per connection, re-armed lazily: it only moves when it fires
/// early (progress happened meanwhile) or a write stall brings the deadline
/// forward, so a busy connection does not touch the timer wheel per read.
pub struct TimedIo<T> {
    inner: T,
    write_timeout: Duration,
    idle_timeout: Duration,
    /// The last time a byte moved either way.
    last_progress: tokio::time::Instant,
    /// Since when a write has been pending, if one is.
    write_stalled_since: Option<tokio::time::Instant>,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl<T> TimedIo<T> {
    pub fn new(inner: T, write_timeout: Duration, idle_timeout: Duration) -> Self {
        let now = tokio::time::Instant::now();
        TimedIo {
            inner,
            write_timeout,
            idle_timeout,
            last_progress: now,
            write_stalled_since: None,
            timer: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    fn deadline(&self) -> tokio::time::Instant {
        let idle = self.last_progress + self.idle_timeout;
        match self.write_stalled_since {
            Some(since) => idle.min(since + self.write_timeout),
            None => idle,
        }
    }

    /// Called when the inner I/O is pending: an error once the deadline has
    /// passed, else `Pending` with the timer armed to wake this task.
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        use std::task::Poll;
        let deadline = self.deadline();
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.deadline();
            if tokio::time::Instant::now() >= deadline {
                let what = if self.write_stalled_since.is_some() { "the client stopped reading" } else { "idle connection" };
                return Poll::Ready(std::io::Error::new(std::io::ErrorKind::TimedOut, what));
            }
            // Fired early: bytes moved since it was armed.
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TimedIo<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_progress = tokio::time::Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.expired(cx).map(Err),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TimedIo<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.inner).poll_flush(cx);
        this.after_write(cx, polled)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> TimedIo<T> {
    fn after_write<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        match polled {
            Poll::Ready(result) => {
                self.write_stalled_since = None;
                self.last_progress = tokio::time::Instant::now();
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.write_stalled_since.get_or_insert_with(tokio::time::Instant::now);
                self.expired(cx).map(Err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn an_idle_connection_times_out() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, 100 * MS, 300 * MS);
        let mut buffer = [0u8; 8];
        let began = Instant::now();
        let err = io.read(&mut buffer).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(began.elapsed() >= 300 * MS && began.elapsed() < 2_000 * MS, "{:?}", began.elapsed());
    }

    #[tokio::test]
    async fn a_write_nobody_reads_times_out_after_the_write_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, 100 * MS, 5_000 * MS);
        io.write_all(&[1u8; 64]).await.unwrap();
        let began = Instant::now();
        let err = io.write_all(&[2u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(began.elapsed() >= 100 * MS && began.elapsed() < 2_000 * MS, "{:?}", began.elapsed());
    }

    #[tokio::test]
    async fn bytes_moving_keep_a_connection_open() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut io = TimedIo::new(ours, 100 * MS, 200 * MS);
        let reader = tokio::spawn(async move {
            let mut buffer = [0u8; 8];
            io.read_exact(&mut buffer).await.map(|_| buffer)
        });
        for byte in 0..8u8 {
            tokio::time::sleep(100 * MS).await;
            theirs.write_all(&[byte]).await.unwrap();
        }
        assert_eq!(reader.await.unwrap().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7], "800 ms in all, never 200 ms without a byte");
    }
}
