//! The route table of API.md, as warp filters. Everything answers a
//! `Response`: handler errors are rendered here, not turned into rejections,
//! and the few rejections left (no such path, wrong method) become problem
//! documents in [`recover`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::filters::BoxedFilter;
use warp::http::HeaderMap;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply as _};

use super::error::ApiError;
use super::handlers::{self, Command, Reply, StationAction};
use super::idempotency::InFlightKeys;
use super::server::Gate;
use super::{pages, sse};
use crate::actors::engine::Engine;
use crate::auth::{self, Caller, Gatekeeper, RouteClass};

/// The current caller, if it may call a route of `class` about `store`; a
/// 401 or 403 problem otherwise.
fn allow(class: RouteClass, store: Option<&str>) -> Result<Caller, ApiError> {
    auth::authorize(class, store).map_err(ApiError::from)
}

/// `allow` for a route of the default store (the v1 staff routes).
fn allow_default(engine: &Engine, class: RouteClass) -> Result<Caller, ApiError> {
    allow(class, Some(engine.stores.default_store().id.as_str()))
}

fn render(result: Reply) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// Reads a body of at most `limit` bytes, whatever its transfer encoding.
async fn read_limited<S, B>(stream: S, declared: Option<u64>, limit: usize) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut stream = std::pin::pin!(stream);
    if declared.is_some_and(|length| length > limit as u64) {
        drain(&mut stream, declared).await;
        return Err(ApiError::BodyTooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|err| ApiError::InvalidOrder(format!("body: {err}")))?;
        if body.len() + chunk.remaining() > limit {
            drain(&mut stream, declared).await;
            return Err(ApiError::BodyTooLarge(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            body.extend_from_slice(part);
            let read = part.len();
            chunk.advance(read);
        }
    }
    Ok(body.freeze())
}

/// Most of a refused body read and thrown away, and for how long.
const DRAIN_BYTES: u64 = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and discards the rest of a refused body (up to [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`]) so that a client still sending it can read the 413 instead
/// of failing on a reset connection. A body declared bigger is cut off at
/// once; a chunked one, once it passes the bound or the time.
async fn drain<S, B>(stream: &mut std::pin::Pin<&mut S>, declared: Option<u64>)
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if declared.is_some_and(|length| length > DRAIN_BYTES) {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen: u64 = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.remaining() as u64;
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// The whole API.
pub fn routes(engine: Arc<Engine>, gatekeeper: Arc<Gatekeeper>, cluster: Option<Arc<crate::cluster::forward::Forwarder>>) -> BoxedFilter<(Response,)> {
    let keys = Arc::new(InFlightKeys::default());
    let body_limit = engine.settings.server.body_limit_bytes;
    let with_engine = {
        let engine = engine.clone();
        warp::any().map(move || engine.clone())
    };

    let menu = warp::path!("menu").and(warp::get()).and(with_engine.clone()).then(|engine| handlers::menu(engine, None));

    let body_timeout_ms = engine.settings.server.body_read_timeout_ms;
    let order_metrics = engine.http_metrics.clone();
    let place = warp::path!("orders")
        .and(warp::post())
        .and(with_engine.clone())
        .and(warp::any().map(move || keys.clone()))
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(move |engine: Arc<Engine>, keys, headers: HeaderMap, length, body| async move {
            // A slow upload holds nothing of the engine's: the body is read
            // (within its own time bound) before a placing permit is taken.
            let read = tokio::time::timeout(
                std::time::Duration::from_millis(body_timeout_ms),
                read_limited(body, length, body_limit),
            );
            let body = match read.await {
                Ok(Ok(body)) => body,
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(ApiError::BodyTimeout(body_timeout_ms)),
            };
            let max = engine.settings.orders.max_placing;
            let Some(permit) = engine.placing.try_acquire(max) else { return Err(placing_full(max)) };
            handlers::place_order(engine, keys, headers, body, permit).await
        });
    let list = warp::path!("orders")
        .and(warp::get())
        .and(with_engine.clone())
        .and(warp::query::<HashMap<String, String>>())
        .then(|engine, query| async move {
            let caller = allow(RouteClass::Manager, None)?;
            handlers::list_orders(engine, query, caller).await
        });
    let get = warp::path!("orders" / String).and(warp::get()).and(with_engine.clone()).then(
        |id, engine| handlers::get_order(engine, id),
    );
    let cancel = warp::path!("orders" / String / "cancel")
        .and(warp::post())
        .and(with_engine.clone())
        .then(|id, engine| handlers::command(engine, id, Command::Cancel));
    let pickup = warp::path!("orders" / String / "pickup")
        .and(warp::post())
        .and(with_engine.clone())
        .then(|id, engine| handlers::command(engine, id, Command::Pickup));

    let stations = warp::path!("stations").and(warp::get()).and(with_engine.clone()).then(|engine: Arc<Engine>| async move {
        allow_default(&engine, RouteClass::Barista)?;
        handlers::stations(engine, None).await
    });
    let station_action = |action: &'static str, kind: StationAction| {
        warp::path!("stations" / String / String)
            .and(warp::post())
            .and_then(move |id: String, verb: String| async move {
                if verb == action {
                    Ok(id)
                } else {
                    Err(warp::reject::not_found())
                }
            })
            .and(with_engine.clone())
            .then(move |id, engine: Arc<Engine>| async move {
                allow_default(&engine, RouteClass::Barista)?;
                handlers::station_action(engine, None, id, kind).await
            })
    };
    let queue = warp::path!("queue").and(warp::get()).and(with_engine.clone()).then(|engine: Arc<Engine>| async move {
        allow_default(&engine, RouteClass::Barista)?;
        handlers::queue(engine, None).await
    });
    let stores = warp::path!("stores").and(warp::get()).and(with_engine.clone()).then(handlers::stores);
    // The store-scoped routes (API.md contract v2); the unscoped ones above are the default store's.
    let scoped_menu = warp::path!("stores" / String / "menu")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|store, engine| handlers::menu(engine, Some(store)));
    let scoped_queue = warp::path!("stores" / String / "queue")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|store: String, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::queue(engine, Some(store)).await
        });
    let scoped_stations = warp::path!("stores" / String / "stations")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|store: String, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::stations(engine, Some(store)).await
        });
    let scoped_station_action = warp::path!("stores" / String / "stations" / String / String)
        .and(warp::post())
        .and_then(|store: String, id: String, verb: String| async move {
            let action = match verb.as_str() {
                "pause" => StationAction::Pause,
                "resume" => StationAction::Resume,
                "next" => StationAction::Next,
                "done" => StationAction::Done,
                _ => return Err(warp::reject::not_found()),
            };
            Ok((store, id, action))
        })
        .untuple_one()
        .and(with_engine.clone())
        .then(|store: String, id, action, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::station_action(engine, Some(store), id, action).await
        });
    let shelf = warp::path!("stores" / String / "ready")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|store: String, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::shelf(engine, store).await
        });
    let sold_out_list = warp::path!("stores" / String / "sold-out")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|store: String, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::sold_out(engine, store, None).await
        });
    let sold_out_change = warp::path!("stores" / String / "sold-out" / String)
        .and(warp::put().map(|| true).or(warp::delete().map(|| false)).unify())
        .and(with_engine.clone())
        .then(|store: String, item, sold_out, engine| async move {
            allow(RouteClass::Barista, Some(&store))?;
            handlers::sold_out(engine, store, Some((item, sold_out))).await
        });
    let ordering = warp::path!("stores" / String / "ordering" / String)
        .and(warp::post())
        .and_then(|store: String, verb: String| async move {
            match verb.as_str() {
                "pause" => Ok((store, true)),
                "resume" => Ok((store, false)),
                _ => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(with_engine.clone())
        .then(|store: String, pause, engine| async move {
            allow(RouteClass::Manager, Some(&store))?;
            handlers::ordering(engine, store, pause).await
        });
    let stats = warp::path!("stats").and(warp::get()).and(with_engine.clone()).then(|engine| async move {
        let caller = allow(RouteClass::Manager, None)?;
        handlers::stats(engine, caller).await
    });
    let metrics_class = if gatekeeper.public_metrics { RouteClass::Public } else { RouteClass::Admin };
    let metrics_cluster = cluster.clone();
    let metrics = warp::path!("metrics").and(warp::get()).and(with_engine.clone()).then(move |engine| {
        let cluster = metrics_cluster.clone();
        async move {
            allow(metrics_class, None)?;
            handlers::metrics(engine, cluster).await
        }
    });
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut response = Response::new(super::openapi::document().into());
        response
            .headers_mut()
            .insert(warp::http::header::CONTENT_TYPE, warp::http::HeaderValue::from_static("application/json"));
        response
    });
    let order_events = warp::path!("orders" / String / "events")
        .and(warp::get())
        .and(with_engine.clone())
        .then(|id, engine| sse::order_events(engine, id));
    let all_events = warp::path!("events")
        .and(warp::get())
        .and(with_engine.clone())
        .and(warp::header::optional::<u64>("last-event-id"))
        .then(|engine, last_event_id| async move {
            let caller = allow(RouteClass::Manager, None)?;
            sse::all_events(engine, last_event_id, move |store| caller.sees(store)).await
        });
    let store_events = warp::path!("stores" / String / "events")
        .and(warp::get())
        .and(with_engine.clone())
        .and(warp::header::optional::<u64>("last-event-id"))
        .then(|store: String, engine: Arc<Engine>, last_event_id| async move {
            allow(RouteClass::Barista, Some(&store))?;
            if engine.stores.get(&store).is_none() {
                return Err(ApiError::StoreNotFound);
            }
            sse::all_events(engine, last_event_id, move |of| of == store).await
        });
    let session = session_routes(engine.clone(), gatekeeper.clone());
    let backup = warp::path!("admin" / "backup")
        .and(warp::post())
        .and(with_engine.clone())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(|engine, length, body| async move {
            allow(RouteClass::Admin, None)?;
            handlers::backup(engine, read_limited(body, length, SMALL_BODY).await?).await
        });
    let cluster_view = warp::path!("cluster").and(warp::get()).and(with_engine.clone()).then(move |engine| {
        let cluster = cluster.clone();
        async move {
            let caller = allow(RouteClass::Manager, None)?;
            handlers::cluster(engine, cluster, caller).await
        }
    });
    let healthz = warp::path!("healthz").and(warp::get()).then(handlers::healthz);
    let readyz = warp::path!("readyz").and(warp::get()).and(with_engine.clone()).then(handlers::readyz);

    let place = place.map(render).map(move |response: Response| {
        order_metrics.order_outcome(response.status().as_u16());
        response
    });
    // Grouped and boxed: one long `or` chain makes warp's types (and the
    // compiler's work) grow with every route.
    let orders = place
        .or(list.map(render))
        .unify()
        .or(get.map(render))
        .unify()
        .or(cancel.map(render))
        .unify()
        .or(pickup.map(render))
        .unify()
        .or(order_events.map(render))
        .unify()
        .boxed();
    let baristas = stations
        .map(render)
        .or(station_action("pause", StationAction::Pause).map(render))
        .unify()
        .or(station_action("resume", StationAction::Resume).map(render))
        .unify()
        .or(station_action("next", StationAction::Next).map(render))
        .unify()
        .or(station_action("done", StationAction::Done).map(render))
        .unify()
        .or(queue.map(render))
        .unify()
        .or(stores.map(render))
        .unify()
        .or(ordering.map(render))
        .unify()
        .or(sold_out_list.map(render))
        .unify()
        .or(shelf.map(render))
        .unify()
        .or(scoped_menu.map(render))
        .unify()
        .or(scoped_queue.map(render))
        .unify()
        .or(scoped_stations.map(render))
        .unify()
        .or(scoped_station_action.map(render))
        .unify()
        .or(sold_out_change.map(render))
        .unify()
        .boxed();
    let operations = menu
        .map(render)
        .or(all_events.map(render))
        .unify()
        .or(store_events.map(render))
        .unify()
        .or(session)
        .unify()
        .or(backup.map(render))
        .unify()
        .or(stats.map(render))
        .unify()
        .or(metrics.map(render))
        .unify()
        .or(openapi)
        .unify()
        .or(healthz.map(render))
        .unify()
        .or(cluster_view.map(render))
        .unify()
        .or(readyz.map(render))
        .unify()
        .boxed();
    orders
        .or(baristas)
        .unify()
        .or(operations)
        .unify()
        .or(pages::routes())
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}

/// Most bytes of a sign-in or backup request's body.
const SMALL_BODY: usize = 4096;

/// `POST /session` (sign in with a key: a session cookie), `GET /session`
/// (who is signed in), `DELETE /session` (sign out), for the staff screens:
/// an `EventSource` cannot send an `Authorization` header, and a key kept in
/// the page's storage could be read by any script that ever runs on it. The
/// cookie is `HttpOnly` (no script reads it) and `SameSite=Strict` (no other
/// site's page can make the browser send it, so no cross-site request acts
/// with it); it holds a random session token, never the key, and the server
/// keeps only the token's hash.
fn session_routes(engine: Arc<Engine>, gatekeeper: Arc<Gatekeeper>) -> BoxedFilter<(Response,)> {
    let with = warp::any().map(move || (engine.clone(), gatekeeper.clone())).untuple_one();
    let sign_in = warp::path!("session")
        .and(warp::post())
        .and(with.clone())
        .and(warp::header::headers_cloned())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(|engine, gatekeeper, headers, length, body| async move {
            let body = read_limited(body, length, SMALL_BODY).await?;
            handlers::sign_in(engine, gatekeeper, &headers, body)
        });
    let whoami = warp::path!("session")
        .and(warp::get())
        .and(with.clone())
        .then(|engine, _gatekeeper| async move { handlers::session(engine) });
    let sign_out = warp::path!("session")
        .and(warp::delete())
        .and(with)
        .and(warp::header::headers_cloned())
        .then(|_engine, gatekeeper: Arc<Gatekeeper>, headers: HeaderMap| async move {
            gatekeeper.sign_out(&headers);
            Ok(handlers::session_cookie(warp::http::StatusCode::NO_CONTENT, "", 0, &headers))
        });
    sign_in.map(render).or(whoami.map(render)).unify().or(sign_out.map(render)).unify().boxed()
}

/// The server's [`Gate`] for crema: while `orders.max_placing` orders are
/// being placed, a further `POST /orders` is answered 429 before warp parses
/// anything else (shedding costs a header parse). The gate only looks: the
/// permit itself is taken once the body is in (see `routes`), so a client
/// that uploads slowly holds no place.
pub fn placing_gate(engine: Arc<Engine>) -> Gate {
    let place = crate::metrics::route_index("place_order");
    Gate(Arc::new(move |route| {
        let max = engine.settings.orders.max_placing;
        if route != place || engine.placing.in_progress() < max {
            return Ok(());
        }
        engine.http_metrics.order_outcome(429);
        Err(placing_full(max).into_response())
    }))
}

/// 429 `overloaded`: `max` orders are being placed already.
fn placing_full(max: usize) -> ApiError {
    ApiError::TooManyRequests(format!("{max} orders are being placed"))
}

/// The methods a path answers, for the `Allow` header of a 405 (RFC 9110
/// §15.5.6); `None` for a path that is no route at all.
pub fn allowed_methods(path: &str) -> Option<&'static str> {
    const READ: &str = "GET, HEAD";
    let (segments, len) = crate::metrics::path_segments(path);
    match &segments[..len] {
        ["orders"] => Some("GET, HEAD, POST"),
        ["orders", _] | ["orders", _, "events"] => Some(READ),
        ["orders", _, "cancel" | "pickup"] => Some("POST"),
        ["stations", _, "pause" | "resume" | "next" | "done"] | ["stores", _, "ordering", "pause" | "resume"] => {
            Some("POST")
        }
        ["stores"] | ["stores", _, "sold-out" | "ready" | "menu" | "queue" | "stations"] => Some(READ),
        ["stores", _, "stations", _, "pause" | "resume" | "next" | "done"] => Some("POST"),
        ["stores", _, "sold-out", _] => Some("PUT, DELETE"),
        ["menu" | "stations" | "queue" | "stats" | "metrics" | "events" | "healthz" | "readyz" | "openapi.json"] => {
            Some(READ)
        }
        ["stores", _, "events"] => Some(READ),
        ["session"] => Some("GET, HEAD, POST, DELETE"),
        ["cluster"] => Some(READ),
        ["admin", "backup"] => Some("POST"),
        [""] | ["barista"] | ["dashboard"] | ["static", ..] => Some(READ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::allowed_methods;

    #[test]
    fn allow_lists_what_each_path_answers() {
        assert_eq!(allowed_methods("/orders"), Some("GET, HEAD, POST"));
        assert_eq!(allowed_methods("/orders/abc"), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/orders/abc/cancel"), Some("POST"));
        assert_eq!(allowed_methods("/stations/bar-1/pause"), Some("POST"));
        assert_eq!(allowed_methods("/stores"), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/stores/main/ordering/pause"), Some("POST"));
        assert_eq!(allowed_methods("/stores/main/stations/bar-1/next"), Some("POST"));
        assert_eq!(allowed_methods("/stores/main/stations/bar-1"), None);
        assert_eq!(allowed_methods("/stores/main/queue"), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/healthz"), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/nope"), None);
        assert_eq!(allowed_methods("/orders/a/b/c"), None);
    }
}

/// Turns what no route took into a problem document.
async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if let Some(err) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::InvalidQuery(err.to_string())
    } else if let Some(err) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::InvalidOrder(err.to_string())
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::NotFound
    };
    Ok(error.into_response().into_response())
}
