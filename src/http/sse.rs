//! Server-sent events: `GET /orders/{id}/events` (one order, from its current
//! state to its end, re-sent with the same id when its ETA moves as the queue
//! does) and `GET /events` (every order's changes, resumable with
//! `Last-Event-ID` while the events are retained).
//!
//! Each subscriber reads the event log's broadcast at its own pace; one that
//! falls further behind than the broadcast holds gets an `event: lagged` and
//! its stream ends, so a slow browser can never slow the engine. A client that
//! reconnects to `/orders/{id}/events` starts again from the current state,
//! which carries the whole history, so it misses nothing either.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::broadcast::{error::RecvError, Receiver};
use warp::reply::Response;
use warp::sse::Event;
use warp::Reply as _;

use super::error::ApiError;
use super::handlers::{current_order, with_eta, Reply};
use super::views::OrderView;
use crate::actors::engine::Engine;
use crate::actors::projection::OrderChanged;
use crate::domain::Order;

fn status_event(order: &Order, id: u64) -> Event {
    Event::default()
        .event("status")
        .id(id.to_string())
        .data(serde_json::to_string(&OrderView::from(order)).unwrap_or_default())
}

fn lagged_event() -> Event {
    Event::default().event("lagged").data("{\"detail\":\"this stream fell behind and was closed; reconnect\"}")
}

/// Events a subscriber's connection may have waiting; past this its reader
/// stops following the log, and the log's `Lagged` ends the stream.
const SUBSCRIBER_BUFFER: usize = 64;

/// The response: a task follows `events` into a bounded channel that the
/// connection drains (warp needs a `Sync` body; the channel also bounds what
/// one slow subscriber can hold).
fn sse(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel(SUBSCRIBER_BUFFER);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if sender.send(event).await.is_err() {
                break; // the client went away
            }
        }
    });
    let events = tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok::<Event, Infallible>);
    warp::sse::reply(warp::sse::keep_alive().interval(Duration::from_secs(15)).stream(events)).into_response()
}

/// How often a customer's stream re-checks its order's estimate.
const ETA_REFRESH: Duration = Duration::from_secs(2);
/// An estimate that moved by at least this much is sent again.
const ETA_MOVED_MS: u64 = 1_000;

/// The stream has nothing more to say about an order that is settled.
fn ends(order: &Order) -> bool {
    order.is_settled()
}

/// `GET /orders/{id}/events`: the current state, then every change, ending
/// after the order is settled (picked up, or cancelled and refunded).
pub async fn order_events(engine: Arc<Engine>, id: String) -> Reply {
    // Subscribe first, then read the state: a change in between is in both,
    // and the version filter below drops the duplicate.
    let receiver = engine.events.subscribe();
    let order = current_order(&engine, &id).await?.ok_or(ApiError::OrderNotFound)?;
    let order = with_eta(&engine, order).await;
    let first = status_event(&order, order.version);
    if ends(&order) {
        return Ok(sse(stream::once(async move { first })));
    }
    struct State {
        receiver: Receiver<OrderChanged>,
        engine: Arc<Engine>,
        /// The order as last sent.
        order: Order,
        done: bool,
    }
    let state = State { receiver, engine, order, done: false };
    let changes = stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let mut tick = tokio::time::interval(ETA_REFRESH);
        tick.tick().await;
        loop {
            tokio::select! {
                received = state.receiver.recv() => match received {
                    Ok(change) if change.order.id == state.order.id && change.order.version > state.order.version => {
                        state.order = with_eta(&state.engine, change.order.clone()).await;
                        state.done = ends(&state.order);
                        return Some((status_event(&state.order, state.order.version), state));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        state.done = true;
                        return Some((lagged_event(), state));
                    }
                    Err(RecvError::Closed) => return None,
                },
                // The queue moves without this order changing: resend it when its estimate moved.
                _ = tick.tick() => {
                    let refreshed = with_eta(&state.engine, Arc::new(state.order.clone())).await;
                    let moved = match (refreshed.eta_ms, state.order.eta_ms) {
                        (Some(new), Some(old)) => new.abs_diff(old) >= ETA_MOVED_MS,
                        (new, old) => new.is_some() != old.is_some(),
                    };
                    if moved {
                        state.order = refreshed;
                        return Some((status_event(&state.order, state.order.version), state));
                    }
                }
            }
        }
    });
    Ok(sse(stream::once(async move { first }).chain(changes)))
}

/// `GET /events`: every order's changes, with the event-log sequence as the
/// SSE id. `Last-Event-ID: N` replays the retained events after N first.
/// `GET /events` and `GET /stores/{store}/events`: the changes of the orders
/// whose store `shows` accepts (a manager's stores, or the one store).
pub async fn all_events(
    engine: Arc<Engine>,
    last_event_id: Option<u64>,
    shows: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> Reply {
    let (replay, receiver) = engine.events.subscribe_after(last_event_id.unwrap_or(u64::MAX));
    let last_replayed = replay.last().map(|change| change.seq).or(last_event_id).unwrap_or(0);
    let replayed = stream::iter(
        replay
            .into_iter()
            .filter(|change| shows(&change.order.store))
            .map(|change| status_event(&change.order, change.seq))
            .collect::<Vec<_>>(),
    );
    let live = stream::unfold((receiver, last_replayed, false, shows), |(mut receiver, last, done, shows)| async move {
        if done {
            return None;
        }
        loop {
            match receiver.recv().await {
                Ok(change) if change.seq > last && shows(&change.order.store) => {
                    return Some((status_event(&change.order, change.seq), (receiver, change.seq, false, shows)))
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => return Some((lagged_event(), (receiver, last, true, shows))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse(replayed.chain(live)))
}
