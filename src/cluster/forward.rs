//! Any node answers any request: one about a store this node does not serve
//! is forwarded over HTTP to the store's owner (its `cluster.advertise`),
//! whose answer goes back as it came, with `Crema-Node` naming the owner.
//!
//! Which store a request is about: the path's (`/stores/{store}/…`), the
//! order's (`/orders/{id}…`: from the id's store tag, see
//! [`super::order_id`], else the cache, else the event feed), the body's
//! (`POST /orders`), or the default store's (`/menu`, `/stations…`,
//! `/queue`). Other routes (lists, stats, metrics, health, sessions, the
//! cluster) are answered by the node asked.
//!
//! No loops: a forwarded request carries [`FORWARDED_HEADER`], the nodes it
//! passed through, and passes through [`MAX_HOPS`] nodes at most (the last
//! answers it, 503 `store_unavailable` if the store is not its own). A
//! second hop happens when the owner asked had just handed the store over,
//! possibly back to the node that asked (which answers it then). A store with no live
//! owner (failing over) is waited for up to [`HOLD`], then answered 503
//! `store_unavailable` with `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use warp::reply::{Reply, Response};

use super::membership::{InFlight, Membership};
use super::order_id;
use crate::actors::engine::Engine;
use crate::http::error::ApiError;
use crate::metrics::{Histogram, LATENCY_US};

/// Names the node a forwarded request came from; such a request is not forwarded again.
pub const FORWARDED_HEADER: &str = "crema-forwarded-by";
/// Names the node whose answer this is.
pub const NODE_HEADER: &str = "crema-node";
/// How long a request for a store with no live owner waits for one.
pub const HOLD: Duration = Duration::from_secs(5);
/// Most nodes a request passes through before one answers it.
pub const MAX_HOPS: usize = 2;

/// What a request is about, as far as its owner goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Answered by the node asked.
    Local,
    Store(String),
    Order(String),
    /// `POST /orders`: the body names the store.
    Body,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Here,
    There { node: String, base: String },
    /// No live node serves the store (yet).
    Nobody(String),
}

/// The owner could not be reached: the request was not sent.
#[derive(Debug)]
pub struct Unreachable;

/// Forwarding's counters for `/metrics`.
pub struct ForwardStats {
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
    /// From sending to the owner to its answer's head, µs.
    pub latency_us: Histogram,
}

pub struct Forwarder {
    engine: Arc<Engine>,
    membership: Arc<Membership>,
    client: reqwest::Client,
    pub stats: ForwardStats,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("node", &self.node()).finish()
    }
}

/// The scope of `method path` (see the module docs).
pub fn scope_of(method: &http::Method, path: &str) -> Scope {
    let (segments, len) = crate::metrics::path_segments(path);
    match &segments[..len] {
        ["orders"] if method == http::Method::POST => Scope::Body,
        ["orders", id] | ["orders", id, _] => Scope::Order((*id).to_owned()),
        ["stores", store, _, ..] => Scope::Store((*store).to_owned()),
        ["menu" | "stations" | "queue"] | ["stations", ..] => Scope::Store(String::new()),
        _ => Scope::Local,
    }
}

impl Forwarder {
    pub fn new(engine: Arc<Engine>, membership: Arc<Membership>, timeout: Duration) -> Forwarder {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .read_timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_default();
        Forwarder {
            engine,
            membership,
            client,
            stats: ForwardStats { forwarded: AtomicU64::new(0), failed: AtomicU64::new(0), latency_us: Histogram::new(LATENCY_US) },
        }
    }

    pub fn node(&self) -> &str {
        self.membership.node()
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// The store `POST /orders`' body orders at (the default store when it names none).
    pub fn store_in_body(&self, body: &[u8]) -> String {
        #[derive(serde::Deserialize)]
        struct Named {
            store: Option<String>,
        }
        serde_json::from_slice::<Named>(body).ok().and_then(|named| named.store).unwrap_or_default()
    }

    /// The store a request of `scope` is about ("": the default store);
    /// `None`: answered here (not about a store, or an order nobody knows).
    pub async fn store_of(&self, scope: Scope) -> Option<String> {
        match scope {
            Scope::Local | Scope::Body => None,
            Scope::Store(store) => Some(store),
            Scope::Order(id) => self.store_of_order(&id).await,
        }
    }

    /// `store`, or the default store's id for "".
    pub fn resolve(&self, store: &str) -> String {
        if store.is_empty() { self.engine.stores.default_store().id.clone() } else { store.to_owned() }
    }

    /// If this node serves `store` now (or it is no store of the chain: the
    /// handlers say so), `Some`, with the request counted as in flight at
    /// the store until the guard drops. Counted *before* the check, so that
    /// a handover (which stops serving, then waits for the count) never
    /// misses a request that saw the store served.
    pub fn enter_if_served(&self, store: &str) -> Option<Option<InFlight>> {
        if self.engine.stores.get(store).is_none() {
            return Some(None);
        }
        let in_flight = self.membership.enter(store);
        self.engine.journal.owns(store).then_some(in_flight)
    }

    /// Where a request about `store` goes ("": the default store); waits up
    /// to [`HOLD`] for a store that has no live owner.
    pub async fn target_of_store(&self, store: &str) -> Target {
        let store = if store.is_empty() { self.engine.stores.default_store().id.clone() } else { store.to_owned() };
        // Not one of the chain's stores: the handlers say so.
        if self.engine.stores.get(&store).is_none() || self.engine.journal.owns(&store) {
            return Target::Here;
        }
        let held = Instant::now();
        loop {
            let view = self.membership.view();
            match view.owner(&store) {
                // This node's lease as last seen, but not served (loading, or
                // just handed over): wait for the next round's view.
                Some((node, base)) if node != self.node() => return Target::There { node: node.to_owned(), base: base.to_owned() },
                _ if held.elapsed() >= HOLD => return Target::Nobody(store),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if self.engine.journal.owns(&store) {
                return Target::Here;
            }
        }
    }

    /// The store of order `id`, if any node can know it.
    async fn store_of_order(&self, id: &str) -> Option<String> {
        let stores = self.engine.stores.iter().map(|store| store.id.as_str());
        if let Some(store) = order_id::store_of(id, stores) {
            return Some(store.to_owned());
        }
        if let Ok(Some(order)) = self.engine.store.get_order(id) {
            return Some(order.store);
        }
        let replicated = self.engine.journal.replication()?;
        let archived = replicated.archived_order(id).await.ok()??;
        let value: serde_json::Value = serde_json::from_slice(&archived).ok()?;
        value["store"].as_str().map(str::to_owned)
    }

    /// Sends the request to `base` (the owner `node`) and its answer back;
    /// `Err` if the owner could not be reached (nothing was sent: the caller
    /// may try the store's next owner).
    pub async fn forward(&self, node: &str, base: &str, parts: &http::request::Parts, body: Bytes) -> Result<Response, Unreachable> {
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let mut request = self.client.request(parts.method.clone(), &url).body(body);
        for (name, value) in &parts.headers {
            if !matches!(name.as_str(), "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade") {
                request = request.header(name, value);
            }
        }
        let mut path = parts.headers.get(FORWARDED_HEADER).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned();
        if !path.is_empty() {
            path.push(',');
        }
        path.push_str(self.node());
        request = request.header(FORWARDED_HEADER, path);
        let started = Instant::now();
        let answer = request.send().await;
        self.stats.latency_us.observe(started.elapsed().as_micros() as u64);
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) if err.is_connect() => {
                tracing::debug!(%node, %url, error = %err, "the store's owner cannot be reached");
                return Err(Unreachable);
            }
            Err(err) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%node, %url, error = %err, "forwarding to the store's owner failed");
                return Ok(ApiError::StoreUnavailable(format!("the store's owner ({node}) did not answer; try again")).into_response());
            }
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let status = answer.status();
        let headers = answer.headers().clone();
        let streaming = headers.get(http::header::CONTENT_TYPE).is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
        let mut response = if streaming {
            // Relayed chunk by chunk (an event stream does not end).
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
            tokio::spawn(async move {
                let mut chunks = answer.bytes_stream();
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(std::io::Error::other);
                    let failed = chunk.is_err();
                    if tx.send(chunk).await.is_err() || failed {
                        break;
                    }
                }
            });
            warp::reply::stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
        } else {
            match answer.bytes().await {
                Ok(bytes) => Response::new(bytes.into()),
                Err(err) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    return Ok(ApiError::StoreUnavailable(format!("the store's owner ({node}) did not finish its answer: {err}")).into_response());
                }
            }
        };
        *response.status_mut() = status;
        for (name, value) in &headers {
            if !matches!(name.as_str(), "connection" | "content-length" | "transfer-encoding" | "keep-alive") {
                response.headers_mut().append(name, value.clone());
            }
        }
        if let Ok(value) = http::HeaderValue::from_str(node) {
            response.headers_mut().insert(NODE_HEADER, value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_about_the_store_its_path_its_order_or_its_body_names() {
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert_eq!(scope_of(&post, "/orders"), Scope::Body);
        assert_eq!(scope_of(&get, "/orders"), Scope::Local);
        assert_eq!(scope_of(&get, "/orders/abc"), Scope::Order("abc".into()));
        assert_eq!(scope_of(&post, "/orders/abc/cancel"), Scope::Order("abc".into()));
        assert_eq!(scope_of(&get, "/orders/abc/events"), Scope::Order("abc".into()));
        assert_eq!(scope_of(&get, "/stores/gangnam/queue"), Scope::Store("gangnam".into()));
        assert_eq!(scope_of(&post, "/stores/gangnam/stations/bar-1/pause"), Scope::Store("gangnam".into()));
        assert_eq!(scope_of(&get, "/stores"), Scope::Local);
        assert_eq!(scope_of(&get, "/menu"), Scope::Store(String::new()));
        assert_eq!(scope_of(&post, "/stations/bar-1/done"), Scope::Store(String::new()));
        for local in ["/stats", "/metrics", "/events", "/readyz", "/healthz", "/session", "/cluster", "/dashboard"] {
            assert_eq!(scope_of(&get, local), Scope::Local, "{local}");
        }
    }
}
