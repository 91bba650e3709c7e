//! Request handlers: parse and check the request, ask the actor that owns the
//! answer, render it. They stay thin: rules live in `crate::domain`, state in
//! the actors. Every ask has a timeout, so a stuck actor cannot hold a
//! connection forever.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::error::ApiError;
use super::idempotency::{self, Begin, InFlightKeys};
use super::views::OrderView;
use crate::actors::barista::{self, EtaOf, EtaOfNew, RenderBrews, TicketView, ListQueue, ListStations, PoolError, StationState, StationView};
use crate::actors::engine::Engine;
use crate::actors::shared::PlacingPermit;
use crate::actors::order::{Cancel, GetOrder, Pickup, Place};
use crate::actors::projection::GetStats;
use crate::domain::{Draft, MenuItem, Order, OrderRequest, OrderStatus};
use crate::actors::projection::{GetShelf, RenderMetrics};
use crate::actors::stores::StoreState;
use crate::auth::{Caller, Gatekeeper, KeyConfig, Role};
use crate::persistence::{Batch, IdempotentOutcome};

pub type Reply = Result<Response, ApiError>;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn order_response(status: StatusCode, order: &Order) -> Response {
    json(status, &OrderView::from(order))
}

/// The order as an answer, with a fresh `eta` (see [`eta_of`]).
async fn order_response_now(engine: &Engine, status: StatusCode, order: &Order) -> Response {
    let mut view = OrderView::from(order);
    view.eta = eta_of(engine, order).await.map(crate::domain::time::rfc3339);
    json(status, &view)
}

async fn created(engine: &Engine, order: &Order) -> Response {
    let mut response = order_response_now(engine, StatusCode::CREATED, order).await;
    if let Ok(location) = HeaderValue::from_str(&format!("/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// When an order not yet ready should be, from its store pool's view of the queue.
async fn eta_of(engine: &Engine, order: &Order) -> Option<u64> {
    if !order.status.holds_ticket() {
        return None;
    }
    let pool = &engine.stores.of(&order.store).pool;
    let ask = pool.send(EtaOf { order_id: order.id.clone(), queue_seq: order.queue_seq }).timeout(Duration::from_secs(1));
    ask.await.ok().flatten()
}

/// The order with `eta` filled in (for the event streams, which keep it).
pub async fn with_eta(engine: &Engine, order: Arc<Order>) -> Order {
    let eta_ms = eta_of(engine, &order).await;
    let mut order = Arc::unwrap_or_clone(order);
    order.eta_ms = eta_ms;
    order
}

fn ask_timeout(engine: &Engine) -> Duration {
    Duration::from_millis(engine.settings.orders.ask_timeout_ms)
}

/// Commands wait for recovery: until then the state they act on is not back.
/// In a cluster, a store's requests reach its handlers only once the store is
/// loaded (see `crate::cluster::forward`), even while the node's first round
/// still loads others.
fn ensure_ready(engine: &Engine) -> Result<(), ApiError> {
    if engine.is_ready() || engine.journal.replication().is_some() {
        Ok(())
    } else {
        Err(ApiError::overloaded("crema is recovering its orders"))
    }
}

/// A menu item as served: the configured item and whether it can be ordered now.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MenuItemJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// In the currency's minor unit (the store's price where it overrides the menu's).
    pub price: u64,
    /// One unit's brew time, before `barista.brew_scale`.
    pub brew_ms: u64,
    /// The kind of station that makes it.
    pub station: &'a str,
    /// `false` while the store has it sold out.
    pub available: bool,
    pub options: Vec<OptionGroupJson<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OptionGroupJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub min: u32,
    pub max: u32,
    /// The choice a required group takes when a line omits it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<&'a str>,
    pub choices: Vec<OptionChoiceJson<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OptionChoiceJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Surcharge per unit.
    pub price: u64,
    /// Extra brew time per unit.
    pub brew_ms: u64,
    /// `false` while the store has `group.choice` sold out.
    pub available: bool,
}

impl<'a> MenuItemJson<'a> {
    fn new(item: &'a MenuItem, store: &StoreState, sold_out: &std::collections::BTreeSet<String>) -> Self {
        let options = item
            .options
            .iter()
            .map(|group| OptionGroupJson {
                id: &group.id,
                name: &group.name,
                min: group.min,
                max: group.max,
                default: group.default.as_deref(),
                choices: group
                    .choices
                    .iter()
                    .map(|choice| OptionChoiceJson {
                        id: &choice.id,
                        name: &choice.name,
                        price: choice.price,
                        brew_ms: choice.brew_ms,
                        available: !sold_out.contains(&format!("{}.{}", group.id, choice.id)),
                    })
                    .collect(),
            })
            .collect();
        MenuItemJson {
            id: &item.id,
            name: &item.name,
            price: store.price(&item.id).unwrap_or(item.price),
            brew_ms: item.brew_ms,
            station: &item.station,
            available: !sold_out.contains(&item.id),
            options,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MenuJson<'a> {
    pub currency: &'a str,
    pub items: Vec<MenuItemJson<'a>>,
}

/// `GET /menu` (the default store's) and `GET /stores/{store}/menu`: the
/// chain's menu at that store's prices, with its sold-out marks.
pub async fn menu(engine: Arc<Engine>, store: Option<String>) -> Reply {
    let store = store_of(&engine, store.as_deref())?;
    let sold_out = store.sold_out();
    let items = engine.menu.items.iter().map(|item| MenuItemJson::new(item, &store, &sold_out)).collect();
    Ok(json(StatusCode::OK, &MenuJson { currency: &engine.menu.currency, items }))
}

/// The store named in a route (`None`: the default store), or 404 `store_not_found`.
pub fn store_of(engine: &Engine, id: Option<&str>) -> Result<Arc<StoreState>, ApiError> {
    match id {
        None => Ok(engine.stores.default_store().clone()),
        Some(id) => engine.stores.get(id).cloned().ok_or(ApiError::StoreNotFound),
    }
}

/// Orders listed on the pickup shelf at most.
const SHELF_LIST_LIMIT: usize = 200;

/// The pickup shelf as `GET /stores/{store}/ready` answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ShelfJson<'a> {
    /// Ready and not picked up, the longest-ready first (at most 200).
    pub orders: Vec<OrderView<'a>>,
    /// How many orders are ready in all (more than listed when the shelf is long).
    pub ready: u64,
}

/// `GET /stores/{store}/ready`: the pickup shelf.
pub async fn shelf(engine: Arc<Engine>, store: String) -> Reply {
    let store = store_of(&engine, Some(&store))?;
    let ask = GetShelf { store: store.id.clone(), limit: SHELF_LIST_LIMIT };
    let (orders, ready) = engine.projection.send(ask).timeout(ask_timeout(&engine)).await?;
    Ok(json(StatusCode::OK, &ShelfJson { orders: orders.iter().map(|order| OrderView::from(&**order)).collect(), ready }))
}

/// `GET /stores/{store}/sold-out`, and `PUT`/`DELETE /stores/{store}/sold-out/{ref}`
/// (`Some((ref, sold_out))`): idempotent, answered with the list once on disk.
pub async fn sold_out(engine: Arc<Engine>, store: String, change: Option<(String, bool)>) -> Reply {
    #[derive(Serialize)]
    struct SoldOut {
        sold_out: Vec<String>,
    }
    let store = store_of(&engine, Some(&store))?;
    if let Some((item, sold_out)) = change {
        let known = match item.split_once('.') {
            Some((group, choice)) => engine.menu.has_choice(group, choice),
            None => engine.menu.item(&item).is_some(),
        };
        if !known {
            return Err(ApiError::MenuItemNotFound);
        }
        let _one_at_a_time = engine.admin_changes.lock().await;
        let mut batch = Batch::new();
        if sold_out {
            batch.put_sold_out(&store.id, &item);
        } else {
            batch.delete_sold_out(&store.id, &item);
        }
        engine.journal.commit(batch).await?;
        let mut set = store.sold_out.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sold_out {
            set.insert(item);
        } else {
            set.remove(&item);
        }
    }
    let sold_out = store.sold_out().iter().cloned().collect();
    Ok(json(StatusCode::OK, &SoldOut { sold_out }))
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: application/json, got {:?}",
            content_type
        )))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    if !idempotency::valid_key(value.as_bytes()) {
        return Err(ApiError::InvalidOrder(
            "Idempotency-Key: must be 1-255 visible ASCII characters".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(value.as_bytes()).into_owned()))
}

/// The first outcome again: the original body, with a fresh `eta`.
async fn replay(engine: &Engine, outcome: IdempotentOutcome) -> Response {
    let mut response = match outcome {
        IdempotentOutcome::Created(order) => created(engine, &order).await,
        IdempotentOutcome::Declined => ApiError::PaymentDeclined.into_response(),
    };
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Pacing (`max_wait_s`): refuses with 503 `store_busy` an order that would
/// be ready further away than that (or never, with no station working for a
/// kind it needs). `Retry-After` is how much too long the wait is: by then
/// the queue ahead has moved on by about that much.
async fn check_wait(engine: &Engine, store: &StoreState, draft: &Draft, max_wait_s: u64) -> Result<(), ApiError> {
    let eta_ms = store.pool.send(EtaOfNew(draft.ticket_brews())).timeout(ask_timeout(engine)).await?;
    let now = crate::domain::time::now_ms();
    let wait_ms = eta_ms.map(|eta| eta.saturating_sub(now));
    match wait_ms {
        Some(wait_ms) if wait_ms <= max_wait_s * 1000 => Ok(()),
        Some(wait_ms) => Err(ApiError::StoreBusy {
            detail: format!("{} is busy: this order would be ready in about {} s, over its {max_wait_s} s limit", store.name, wait_ms.div_ceil(1000)),
            eta_ms,
            retry_after_s: (wait_ms - max_wait_s * 1000).div_ceil(1000),
        }),
        None => Err(ApiError::StoreBusy {
            detail: format!("{} has no station working on part of this order", store.name),
            eta_ms: None,
            retry_after_s: 60,
        }),
    }
}

/// What of the draft is sold out, named for the customer: an item, or a choice on a line.
fn sold_out_in(store: &StoreState, draft: &Draft) -> Option<String> {
    let sold_out = store.sold_out();
    if sold_out.is_empty() {
        return None;
    }
    draft.lines.iter().enumerate().find_map(|(index, line)| {
        if sold_out.contains(&line.menu_id) {
            return Some(format!("items[{index}]: {} ({})", line.name, line.menu_id));
        }
        let option = line.options.iter().find(|option| sold_out.contains(&format!("{}.{}", option.group, option.choice)))?;
        Some(format!("items[{index}].options.{}: {} ({}.{})", option.group, option.name, option.group, option.choice))
    })
}

/// `POST /orders`: validate, check the key, reserve a queue place, then let a
/// new order actor charge and establish the order.
///
/// `permit` is this request's `orders.max_placing` place, taken only once the
/// body is in. It and the key go with the placement and are released when it
/// has an outcome. The wait for that outcome is bounded by
/// `orders.place_timeout_ms`, after which the answer is 202
/// `placement_pending`, never a "not placed" for an order that may still be.
pub async fn place_order(
    engine: Arc<Engine>,
    keys: Arc<InFlightKeys>,
    headers: HeaderMap,
    body: Bytes,
    permit: PlacingPermit,
) -> Reply {
    require_json(&headers)?;
    let request: OrderRequest =
        serde_json::from_slice(&body).map_err(|err| ApiError::InvalidOrder(format!("body: {err}")))?;
    let store = match request.store.as_deref() {
        None => engine.stores.default_store().clone(),
        Some(id) => engine.stores.get(id).cloned().ok_or_else(|| ApiError::InvalidOrder(format!("store: unknown store {id:?}")))?,
    };
    let draft = request
        .validate_priced(&engine.menu, &store.id, &|item| store.price(item))
        .map_err(|err| ApiError::InvalidOrder(err.to_string()))?;
    let key = idempotency_key(&headers)?;
    ensure_ready(&engine)?;
    if !engine.journal.is_writable(Some(&store.id)) {
        if engine.journal.is_fenced(&store.id) {
            return Err(ApiError::StoreUnavailable(format!("store {} is served by another node now; nothing was charged", store.id)));
        }
        if engine.journal.replication().is_some() && engine.journal.writer().is_writable() {
            return Err(ApiError::StoreUnavailable("the store's journal does not take changes right now; nothing was charged".into()));
        }
        return Err(ApiError::StorageUnavailable("crema cannot save orders right now; nothing was charged".into()));
    }
    // Only a keyed request is ever compared with another.
    let hash = if key.is_some() { idempotency::body_hash(&body) } else { [0; 32] };
    let guard = match &key {
        None => None,
        Some(key) => match keys.begin(&engine.store, key, hash)? {
            Begin::Proceed(guard) => Some(guard),
            Begin::Replay(record) => return Ok(replay(&engine, record.outcome).await),
            Begin::Reused => return Err(ApiError::IdempotencyKeyReused),
            Begin::InFlight => return Err(ApiError::RequestInFlight),
        },
    };
    // A paused store takes no new orders, nor a sold-out item (a replay above still answers).
    if store.is_paused() {
        return Err(ApiError::StorePaused);
    }
    if let Some(detail) = sold_out_in(&store, &draft) {
        return Err(ApiError::ItemUnavailable(detail));
    }
    // An open breaker refuses before anything is written or charged.
    if let Some(retry_after_s) = engine.payment_stats.open_retry_after_s() {
        engine.payment_stats.rejected.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::PaymentUnavailable { reason: "the payment circuit is open".into(), retry_after_s });
    }
    if engine.directory.len() >= engine.settings.orders.max_live {
        return Err(ApiError::overloaded("too many orders in progress"));
    }
    if let Some(max_wait_s) = store.max_wait_s {
        check_wait(&engine, &store, &draft, max_wait_s).await?;
    }
    let tickets = draft.ticket_count();
    if !store.admission.try_reserve_n(tickets) {
        return Err(ApiError::overloaded("the barista queue is full"));
    }
    let id = crate::cluster::order_id::new(&store.id);
    let place = Place {
        draft,
        payment_key: format!("crema-{id}"),
        idempotency: key.map(|key| (key, hash)),
        held: Box::new((permit, guard)),
    };
    let actor = engine.start_placing(id.clone());
    let place_timeout = Duration::from_millis(engine.settings.orders.place_timeout_ms);
    // The actor gives the queue place back if placing fails; only a message
    // that never reached it leaves that to us.
    match actor.send(place).timeout(place_timeout).await {
        Ok(Ok(order)) => Ok(created(&engine, &order).await),
        Ok(Err(err)) => Err(err.into()),
        // Only at shutdown: the actor stopped before it answered, maybe in the
        // middle of the saga (the shutdown grace ran out), so the outcome is
        // unknown here too; a retry with the same key after the restart tells.
        Err(actix::MailboxError::Closed) => {
            store.admission.release_n(tickets);
            Err(ApiError::PlacementPending { order_id: id })
        }
        // The saga goes on without us: its outcome is unknown, not negative.
        Err(actix::MailboxError::Timeout) => {
            engine.pending.mark(&id);
            Err(ApiError::PlacementPending { order_id: id })
        }
    }
}

/// The order as its actor holds it, else as its snapshot says; `None` if
/// there is none. An order still being placed is neither: 202 `placement_pending`.
pub async fn current_order(engine: &Engine, id: &str) -> Result<Option<Arc<Order>>, ApiError> {
    if engine.pending.contains(id) {
        // Answered 202 before: placed (a snapshot), still placing (a live
        // actor without one), or ended without an order (neither).
        match read_snapshot(engine, id).await? {
            Some(_) => engine.pending.clear(id),
            None if engine.directory.get(id).is_some() => {
                return Err(ApiError::PlacementPending { order_id: id.to_owned() })
            }
            None => {
                engine.pending.clear(id);
                return Ok(None);
            }
        }
    }
    if let Some(actor) = engine.directory.get(id) {
        match actor.send(GetOrder).timeout(ask_timeout(engine)).await {
            Ok(Some(order)) => return Ok(Some(order)),
            // Still being placed: not an order yet, but it may become one.
            Ok(None) => return Err(ApiError::PlacementPending { order_id: id.to_owned() }),
            // Passivating or busy: the snapshot is what it last persisted.
            Err(_) => {}
        }
    }
    read_snapshot(engine, id).await
}

async fn read_snapshot(engine: &Engine, id: &str) -> Result<Option<Arc<Order>>, ApiError> {
    let store = engine.store.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || store.get_order(&id))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(ApiError::from)
        .map(|order| order.map(Arc::new))
}

/// `GET /orders/{id}`: from the live actor's own state, else from its snapshot.
pub async fn get_order(engine: Arc<Engine>, id: String) -> Reply {
    match current_order(&engine, &id).await? {
        Some(order) => Ok(order_response_now(&engine, StatusCode::OK, &order).await),
        None => archived_order(&engine, &id).await,
    }
}

/// Replicated: an order this node's cache does not hold (a settled order is
/// in no checkpoint, so a node started empty has not seen it) is answered
/// from the event feed, whose newest version of it is what `GET` returned
/// when it was written (kept `cluster.retention_days`).
async fn archived_order(engine: &Engine, id: &str) -> Reply {
    let Some(replicated) = engine.journal.replication() else { return Err(ApiError::OrderNotFound) };
    let found = replicated.archived_order(id).await.map_err(|err| {
        tracing::warn!(order = %id, error = %err, "looking the order up in the event feed failed");
        ApiError::StoreUnavailable("the order is not on this node and the event feed did not answer; try again".into())
    })?;
    let order: serde_json::Value = found
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(ApiError::OrderNotFound)?;
    Ok(json(StatusCode::OK, &order))
}

#[derive(Clone, Copy)]
pub enum Command {
    Cancel,
    Pickup,
}

/// `POST /orders/{id}/cancel` and `/pickup`, sent to the order's actor
/// (revived from its snapshot if it had passivated).
pub async fn command(engine: Arc<Engine>, id: String, command: Command) -> Reply {
    ensure_ready(&engine)?;
    // One retry: the actor may stop (passivate) between lookup and delivery.
    for _ in 0..2 {
        let actor = {
            let engine = engine.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || engine.activate(&id))
                .await
                .map_err(|err| ApiError::Internal(err.to_string()))??
        };
        let Some(actor) = actor else { return Err(ApiError::OrderNotFound) };
        let answer = match command {
            Command::Cancel => actor.send(Cancel).timeout(ask_timeout(&engine)).await,
            Command::Pickup => actor.send(Pickup).timeout(ask_timeout(&engine)).await,
        };
        match answer {
            Ok(result) => return Ok(order_response(StatusCode::OK, &*result?)),
            Err(actix::MailboxError::Closed) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::overloaded("the order is busy"))
}

/// `GET /orders?customer=&status=&limit=&after=`: newest first, from the store.
/// `GET /orders`: a manager sees their stores' orders only (an admin, all).
pub async fn list_orders(engine: Arc<Engine>, query: HashMap<String, String>, caller: Caller) -> Reply {
    for name in query.keys() {
        if !matches!(name.as_str(), "customer" | "status" | "limit" | "after") {
            return Err(ApiError::InvalidQuery(format!("unknown parameter {name:?}")));
        }
    }
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => match text.parse::<usize>() {
            Ok(limit @ 1..=200) => limit,
            _ => return Err(ApiError::InvalidQuery("limit: must be 1-200".into())),
        },
    };
    let status = match query.get("status") {
        None => None,
        Some(text) => Some(
            OrderStatus::parse(text).ok_or_else(|| ApiError::InvalidQuery(format!("status: unknown status {text:?}")))?,
        ),
    };
    let customer = query.get("customer").cloned();
    let after = query.get("after").cloned();
    let store = engine.store.clone();
    let (orders, next) = tokio::task::spawn_blocking(move || {
        store.list_orders(
            customer.as_deref(),
            after.as_deref(),
            |order| status.is_none_or(|status| order.status == status) && caller.sees(&order.store),
            limit,
            limit * 50,
        )
    })
    .await
    .map_err(|err| ApiError::Internal(err.to_string()))??;
    #[derive(Serialize)]
    struct Page<'a> {
        orders: Vec<OrderView<'a>>,
        next: Option<String>,
    }
    Ok(json(StatusCode::OK, &Page { orders: orders.iter().map(OrderView::from).collect(), next }))
}

pub async fn stations(engine: Arc<Engine>, store: Option<String>) -> Reply {
    let store = store_of(&engine, store.as_deref())?;
    let stations: Vec<StationView> = store.pool.send(ListStations).timeout(ask_timeout(&engine)).await?;
    Ok(json(StatusCode::OK, &stations))
}

/// A store as `GET /stores` lists it (API.md contract v2).
#[derive(Serialize, utoipa::ToSchema)]
pub struct StoreJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `open` or `paused`.
    pub ordering: &'static str,
    pub currency: &'a str,
    /// The longest estimated wait it accepts an order with (`null`: no limit).
    pub max_wait_s: Option<u64>,
}

fn store_json<'a>(engine: &'a Engine, store: &'a StoreState) -> StoreJson<'a> {
    StoreJson {
        id: &store.id,
        name: &store.name,
        ordering: if store.is_paused() { "paused" } else { "open" },
        currency: &engine.menu.currency,
        max_wait_s: store.max_wait_s,
    }
}

/// `GET /stores`: every store, the default store first.
pub async fn stores(engine: Arc<Engine>) -> Reply {
    #[derive(Serialize)]
    struct Stores<'a> {
        stores: Vec<StoreJson<'a>>,
    }
    Ok(json(StatusCode::OK, &Stores { stores: engine.stores.iter().map(|store| store_json(&engine, store)).collect() }))
}

/// `POST /stores/{store}/ordering/pause|resume`: the store stops (or starts
/// again) taking orders; orders already placed go on being made. Answered
/// once the change is on disk, so it holds across a restart.
pub async fn ordering(engine: Arc<Engine>, store: String, pause: bool) -> Reply {
    let store = store_of(&engine, Some(&store))?;
    let _one_at_a_time = engine.admin_changes.lock().await;
    let mut batch = Batch::new();
    if pause {
        batch.put_ordering_paused(&store.id);
    } else {
        batch.delete_ordering_paused(&store.id);
    }
    engine.journal.commit(batch).await?;
    store.ordering_paused.store(pause, Ordering::Release);
    Ok(json(StatusCode::OK, &store_json(&engine, &store)))
}

#[derive(Clone, Copy)]
pub enum StationAction {
    Pause,
    Resume,
    Next,
    Done,
}

pub async fn station_action(engine: Arc<Engine>, store: Option<String>, id: String, action: StationAction) -> Reply {
    let store = store_of(&engine, store.as_deref())?;
    let timeout = ask_timeout(&engine);
    let pool = &store.pool;
    match action {
        StationAction::Pause => set_station_paused(&engine, &store, id, true).await,
        StationAction::Resume => set_station_paused(&engine, &store, id, false).await,
        StationAction::Done => Ok(json(StatusCode::OK, &pool.send(barista::Done { station: id }).timeout(timeout).await??)),
        StationAction::Next => match pool.send(barista::Next { station: id }).timeout(timeout).await?? {
            Some(ticket) => Ok(json(StatusCode::OK, &ticket)),
            None => {
                let mut response = Response::new(Vec::new().into());
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok(response)
            }
        },
    }
}

/// Pauses or resumes a station. A pause is kept across restarts, so it is
/// answered once it is on disk; one admin change at a time, so that the disk
/// and the pool agree.
async fn set_station_paused(engine: &Engine, store: &StoreState, id: String, paused: bool) -> Reply {
    let _one_at_a_time = engine.admin_changes.lock().await;
    let view = tell_pool_paused(engine, store, &id, paused).await??;
    let mut batch = Batch::new();
    if paused {
        batch.put_station_paused(&store.id, &id);
    } else {
        batch.delete_station_paused(&store.id, &id);
    }
    if let Err(err) = engine.journal.commit(batch).await {
        // Not kept, so not done: the station goes back to what a restart would find.
        let _ = tell_pool_paused(engine, store, &id, !paused).await;
        return Err(err.into());
    }
    Ok(json(StatusCode::OK, &view))
}

async fn tell_pool_paused(
    engine: &Engine,
    store: &StoreState,
    id: &str,
    paused: bool,
) -> Result<Result<StationView, PoolError>, actix::MailboxError> {
    let (station, timeout) = (id.to_owned(), ask_timeout(engine));
    if paused {
        store.pool.send(barista::Pause { station }).timeout(timeout).await
    } else {
        store.pool.send(barista::Resume { station }).timeout(timeout).await
    }
}

/// Most tickets `GET /queue` lists; `depth` always gives the full length.
const QUEUE_LIST_LIMIT: usize = 500;

pub async fn queue(engine: Arc<Engine>, store: Option<String>) -> Reply {
    let store = store_of(&engine, store.as_deref())?;
    let (tickets, depth) = store.pool.send(ListQueue { limit: QUEUE_LIST_LIMIT }).timeout(ask_timeout(&engine)).await?;
    #[derive(Serialize)]
    struct Queue {
        tickets: Vec<TicketView>,
        depth: usize,
    }
    Ok(json(StatusCode::OK, &Queue { tickets, depth }))
}

/// `GET /stats`: a manager gets their stores' figures, and the chain's totals
/// over those stores only; figures that only exist for the whole chain
/// (orders by status, orders per second, live actors) are left empty for them.
pub async fn stats(engine: Arc<Engine>, caller: Caller) -> Reply {
    let timeout = ask_timeout(&engine);
    let projection = engine.projection.send(GetStats).timeout(timeout).await?;
    // Every store's stations, queue and figures, and the chain's totals.
    let now = crate::domain::time::now_ms();
    let mut stations = Vec::new();
    let mut queue_depth = 0;
    let mut per_store = serde_json::Map::new();
    let mut revenue = 0;
    let mut leads: Vec<u64> = Vec::new();
    for store in engine.stores.iter().filter(|store| caller.sees(&store.id)) {
        let here: Vec<StationView> = store.pool.send(ListStations).timeout(timeout).await?;
        let (_, depth) = store.pool.send(ListQueue { limit: 0 }).timeout(timeout).await?;
        let count = |state| here.iter().filter(|station| station.state == state).count();
        let (figures, ready, oldest_ready_ms) = projection.stores.get(&store.id).cloned().unwrap_or_default();
        revenue += figures.revenue;
        leads.extend(figures.lead_ms.iter().copied());
        per_store.insert(store.id.clone(), serde_json::json!({
            "name": store.name,
            "orders": figures.orders,
            "revenue": figures.revenue,
            "lead_time_ms": lead_times(figures.lead_ms.iter().copied()),
            "queue_depth": depth,
            "ready": ready,
            "oldest_ready_s": oldest_ready_ms.map(|at| now.saturating_sub(at) / 1000),
            "ordering": if store.is_paused() { "paused" } else { "open" },
            "stations": {"total": here.len(), "idle": count(StationState::Idle), "brewing": count(StationState::Brewing), "paused": count(StationState::Paused)},
        }));
        queue_depth += depth;
        stations.extend(here);
    }
    let count = |state| stations.iter().filter(|station| station.state == state).count();
    let payment = &engine.payment_stats;
    let writer = engine.journal.stats();
    let whole = caller.sees_all();
    let body = serde_json::json!({
        "scope": if whole { serde_json::json!("all") } else { serde_json::json!(per_store.keys().collect::<Vec<_>>()) },
        "orders": if whole { projection.counts.iter().map(|(status, n)| (status.as_str(), *n)).collect::<HashMap<_, _>>() } else { HashMap::new() },
        "queue_depth": queue_depth,
        "stations": {
            "total": stations.len(),
            "idle": count(StationState::Idle),
            "brewing": count(StationState::Brewing),
            "paused": count(StationState::Paused),
        },
        "payment": {
            "breaker": payment.breaker().as_str(),
            "breaker_transitions": payment.breaker_transitions.load(Ordering::Relaxed),
            "in_flight": payment.in_flight.load(Ordering::Relaxed),
            "rejected": payment.rejected.load(Ordering::Relaxed),
            "captured": payment.captured.load(Ordering::Relaxed),
            "declined": payment.declined.load(Ordering::Relaxed),
            "failed": payment.failed.load(Ordering::Relaxed),
            "refunded": payment.refunded.load(Ordering::Relaxed),
        },
        "orders_per_s": whole.then_some(projection.orders_per_s),
        "live_actors": whole.then(|| engine.directory.len()),
        "revenue": revenue,
        "currency": engine.menu.currency,
        "lead_time_ms": lead_times(leads.iter().copied()),
        "stores": per_store,
        "store": {
            "groups": writer.groups.load(Ordering::Relaxed),
            "requests": writer.requests.load(Ordering::Relaxed),
            "largest_group": writer.largest_group.load(Ordering::Relaxed),
        },
    });
    Ok(json(StatusCode::OK, &body))
}

/// Lead times (paid → ready) as `{"p50": ms, "p90": ms, "of": n}`; `null`s with none yet.
fn lead_times(values: impl Iterator<Item = u64> + Clone) -> serde_json::Value {
    use crate::actors::projection::quantile;
    serde_json::json!({
        "p50": quantile(values.clone(), 0.5),
        "p90": quantile(values.clone(), 0.9),
        "of": values.count(),
    })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(engine: Arc<Engine>, cluster: Option<Arc<crate::cluster::forward::Forwarder>>) -> Reply {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(16 * 1024);
    engine.http_metrics.render(&mut out);
    let payment = &engine.payment_stats;
    let breaker = payment.breaker();
    out.push_str("# HELP crema_payment_breaker_state 1 for the breaker's current state.\n# TYPE crema_payment_breaker_state gauge\n");
    for state in ["closed", "open", "half_open"] {
        let _ = writeln!(out, "crema_payment_breaker_state{{state=\"{state}\"}} {}", u8::from(breaker.as_str() == state));
    }
    let counters = [
        ("crema_payment_breaker_transitions_total", "Breaker state changes.", &payment.breaker_transitions),
        ("crema_payment_rejected_total", "Gateway calls refused by the bulkhead or the breaker.", &payment.rejected),
        ("crema_payment_captured_total", "Charges captured.", &payment.captured),
        ("crema_payment_declined_total", "Charges declined.", &payment.declined),
        ("crema_payment_failed_total", "Gateway calls that failed or timed out.", &payment.failed),
        ("crema_payment_refunded_total", "Refunds made.", &payment.refunded),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
    }
    out.push_str("# HELP crema_queue_depth Tickets waiting for a station, including places reserved.\n# TYPE crema_queue_depth gauge\n");
    for store in engine.stores.iter() {
        let _ = writeln!(out, "crema_queue_depth{{store=\"{}\"}} {}", store.id, store.admission.used());
    }
    let gauges = [
        ("crema_payment_in_flight", "Gateway calls in flight.", payment.in_flight.load(Ordering::Relaxed) as usize),
        ("crema_live_order_actors", "Order actors alive.", engine.directory.len()),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    crate::metrics::render_process(&mut out);
    let _ = writeln!(
        out,
        "# HELP crema_storage_writable 1 while the store can write (orders are taken), 0 while it cannot.\n# TYPE crema_storage_writable gauge\ncrema_storage_writable {}",
        u8::from(engine.journal.writer().is_writable())
    );
    let store = engine.store.clone();
    let last_backup_ms = tokio::task::spawn_blocking(move || store.last_backup_ms()).await.ok().and_then(Result::ok).flatten();
    let _ = writeln!(
        out,
        "# HELP crema_last_backup_timestamp_seconds When the last backup (crema backup) was written; 0: never.\n# TYPE crema_last_backup_timestamp_seconds gauge\ncrema_last_backup_timestamp_seconds {}",
        last_backup_ms.map_or(0.0, |ms| ms as f64 / 1000.0)
    );
    out.push_str("# HELP crema_store_max_wait_seconds The store's max_wait_s (stores without one are not listed).\n# TYPE crema_store_max_wait_seconds gauge\n");
    for store in engine.stores.iter() {
        if let Some(max_wait_s) = store.max_wait_s {
            let _ = writeln!(out, "crema_store_max_wait_seconds{{store=\"{}\"}} {max_wait_s}", store.id);
        }
    }
    out.push_str(&engine.projection.send(RenderMetrics).timeout(ask_timeout(&engine)).await?);
    // Each store's stations, and the brew time per station kind.
    let mut families = [
        ("crema_station_state", "gauge", "1 for each station's current state.", String::new()),
        ("crema_station_made_total", "counter", "Tickets the station finished.", String::new()),
        ("crema_station_restarts_total", "counter", "Times the station's actor crashed and was restarted.", String::new()),
    ];
    let mut brews = String::new();
    for store in engine.stores.iter() {
        let views: Vec<StationView> = store.pool.send(ListStations).timeout(ask_timeout(&engine)).await?;
        for view in &views {
            let labels = format!("store=\"{}\",station=\"{}\"", store.id, view.id);
            for (state, name) in [(StationState::Idle, "idle"), (StationState::Brewing, "brewing"), (StationState::Paused, "paused")] {
                let _ = writeln!(families[0].3, "crema_station_state{{{labels},state=\"{name}\"}} {}", u8::from(view.state == state));
            }
            let _ = writeln!(families[1].3, "crema_station_made_total{{{labels}}} {}", view.made);
            let _ = writeln!(families[2].3, "crema_station_restarts_total{{{labels}}} {}", view.restarts);
        }
        brews.push_str(&store.pool.send(RenderBrews { store: store.id.clone() }).timeout(ask_timeout(&engine)).await?);
    }
    for (name, kind, help, samples) in &families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        out.push_str(samples);
    }
    out.push_str("# HELP crema_brew_seconds A ticket's time at its station, per station kind.\n# TYPE crema_brew_seconds histogram\n");
    out.push_str(&brews);
    let writer = engine.journal.stats();
    out.push_str("# HELP crema_store_group_size Requests committed per RocksDB write (group commit).\n# TYPE crema_store_group_size histogram\n");
    writer.group_sizes.render(&mut out, "crema_store_group_size", "", 1.0);
    out.push_str("# HELP crema_store_write_duration_seconds One group's write, WAL sync included.\n# TYPE crema_store_write_duration_seconds histogram\n");
    writer.write_us.render(&mut out, "crema_store_write_duration_seconds", "", 1e6);
    if let Some(replicated) = engine.journal.replication() {
        render_journal(&mut out, replicated, engine.stores.iter().map(|store| store.id.as_str()));
    }
    if let Some(cluster) = &cluster {
        render_cluster(&mut out, cluster, engine.stores.iter().map(|store| store.id.as_str()));
    }
    let mut response = Response::new(out.into());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    Ok(response)
}

/// The cluster's families: this node's stores, the owners it sees, takeovers,
/// handovers and forwarded requests.
fn render_cluster<'a>(out: &mut String, cluster: &crate::cluster::forward::Forwarder, stores: impl Iterator<Item = &'a str>) {
    use std::fmt::Write as _;
    let membership = cluster.membership();
    let view = membership.view();
    let _ = writeln!(
        out,
        "# HELP crema_cluster_stores_owned Stores this node serves now.\n# TYPE crema_cluster_stores_owned gauge\ncrema_cluster_stores_owned {}",
        membership.serving().len()
    );
    let _ = writeln!(
        out,
        "# HELP crema_cluster_nodes_alive Live nodes this node saw at its last round.\n# TYPE crema_cluster_nodes_alive gauge\ncrema_cluster_nodes_alive {}",
        view.nodes.len()
    );
    out.push_str("# HELP crema_cluster_store_has_owner 1 while a live node holds the store's lease, as this node saw at its last round.\n# TYPE crema_cluster_store_has_owner gauge\n");
    for store in stores {
        let _ = writeln!(out, "crema_cluster_store_has_owner{{store=\"{store}\"}} {}", u8::from(view.owner(store).is_some()));
    }
    let counters = [
        ("crema_cluster_takeovers_total", "Stores this node took (lease, fence, load).", membership.takeovers.load(Ordering::Relaxed)),
        ("crema_cluster_handovers_total", "Stores this node handed over (rebalance, stop).", membership.handovers.load(Ordering::Relaxed)),
        ("crema_forwarded_requests_total", "Requests answered by another node (the store's owner) through this one.", cluster.stats.forwarded.load(Ordering::Relaxed)),
        ("crema_forward_failures_total", "Forwarded requests the owner did not answer.", cluster.stats.failed.load(Ordering::Relaxed)),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    out.push_str("# HELP crema_forward_duration_seconds From forwarding a request to its owner to the answer's head.\n# TYPE crema_forward_duration_seconds histogram\n");
    cluster.stats.latency_us.render(out, "crema_forward_duration_seconds", "", 1e6);
}

/// The replicated journal's families (`store.durability = "replicated"` only).
fn render_journal<'a>(out: &mut String, replicated: &crate::persistence::jetstream::Replicated, stores: impl Iterator<Item = &'a str>) {
    use std::fmt::Write as _;
    let stats = replicated.stats();
    let counters = [
        ("crema_journal_groups_total", "Journal messages (group commits) JetStream acknowledged.", &stats.groups),
        ("crema_journal_requests_total", "Write batches those journal messages carried.", &stats.requests),
        ("crema_journal_fenced_writes_total", "Writes refused because another node wrote the store since (fenced).", &stats.fenced_writes),
        ("crema_journal_retries_total", "Journal publishes tried again after no answer (timeout, connection lost, no quorum).", &stats.retries),
        ("crema_journal_replayed_total", "Journal messages replayed into this node's cache at start.", &stats.replayed),
        ("crema_checkpoints_total", "Store checkpoints this node wrote.", &stats.checkpoints),
    ];
    for (name, help, counter) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.load(Ordering::Relaxed));
    }
    out.push_str("# HELP crema_journal_ack_duration_seconds From a journal group's publish to JetStream's acknowledgement, retries included.\n# TYPE crema_journal_ack_duration_seconds histogram\n");
    stats.ack_us.render(out, "crema_journal_ack_duration_seconds", "", 1e6);
    out.push_str("# HELP crema_journal_group_size Write batches per journal message.\n# TYPE crema_journal_group_size histogram\n");
    stats.group_sizes.render(out, "crema_journal_group_size", "", 1.0);
    let now_ms = crate::domain::time::now_ms();
    out.push_str("# HELP crema_checkpoint_age_seconds Since the store's newest checkpoint was written (absent: none yet).\n# TYPE crema_checkpoint_age_seconds gauge\n");
    let stores: Vec<&str> = stores.collect();
    let checkpoints: Vec<(&str, crate::persistence::jetstream::CheckpointInfo)> =
        stores.iter().filter_map(|store| replicated.checkpoint_info(store).filter(|info| info.seq > 0).map(|info| (*store, info))).collect();
    for (store, info) in &checkpoints {
        let _ = writeln!(out, "crema_checkpoint_age_seconds{{store=\"{store}\"}} {}", now_ms.saturating_sub(info.at_ms) as f64 / 1000.0);
    }
    out.push_str("# HELP crema_checkpoint_bytes The size of the store's newest checkpoint.\n# TYPE crema_checkpoint_bytes gauge\n");
    for (store, info) in &checkpoints {
        let _ = writeln!(out, "crema_checkpoint_bytes{{store=\"{store}\"}} {}", info.bytes);
    }
    out.push_str("# HELP crema_checkpoint_seq The journal sequence the store's newest checkpoint was taken at.\n# TYPE crema_checkpoint_seq gauge\n");
    for (store, info) in &checkpoints {
        let _ = writeln!(out, "crema_checkpoint_seq{{store=\"{store}\"}} {}", info.seq);
    }
    out.push_str("# HELP crema_store_load_seconds How long loading the store (its checkpoint, the journal after it, the takeover) took when this node started.\n# TYPE crema_store_load_seconds gauge\n");
    for store in &stores {
        if let Some(load_ms) = replicated.load_ms(store) {
            let _ = writeln!(out, "crema_store_load_seconds{{store=\"{store}\"}} {}", load_ms as f64 / 1000.0);
        }
    }
    let _ = writeln!(
        out,
        "# HELP crema_journal_connected 1 while this node is connected to JetStream.\n# TYPE crema_journal_connected gauge\ncrema_journal_connected {}",
        u8::from(replicated.is_connected())
    );
    let _ = writeln!(
        out,
        "# HELP crema_journal_quorum 1 while the journal stream answers (its leader elected, a quorum of replicas up).\n# TYPE crema_journal_quorum gauge\ncrema_journal_quorum {}",
        u8::from(replicated.has_quorum())
    );
    out.push_str("# HELP crema_store_writable 1 while this node writes the store's journal (owned, not fenced, JetStream answering).\n# TYPE crema_store_writable gauge\n");
    for store in stores {
        let _ = writeln!(out, "crema_store_writable{{store=\"{store}\"}} {}", u8::from(replicated.is_writable(store)));
    }
}

pub async fn healthz() -> Reply {
    Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
}

/// `GET /readyz`: 200 only while crema can take orders: recovery has finished
/// and the store can write.
pub async fn readyz(engine: Arc<Engine>) -> Reply {
    let status = if !engine.is_ready() {
        "recovering"
    } else if !engine.journal.writer().is_writable() {
        "storage_unavailable"
    } else if let Some(replicated) = engine.journal.replication().filter(|replicated| !replicated.is_healthy()) {
        // Replicated: every store of this node must be written by this node,
        // with JetStream answering.
        let fenced = replicated.fenced_stores();
        let status = if !replicated.is_connected() {
            "journal_unreachable"
        } else if !replicated.has_quorum() {
            "journal_no_quorum"
        } else if !fenced.is_empty() {
            "fenced"
        } else {
            "journal_stalled"
        };
        let mut response = json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": status, "fenced": fenced}));
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        return Ok(response);
    } else {
        return Ok(json(StatusCode::OK, &serde_json::json!({"status": "ready"})));
    };
    let mut response = json(StatusCode::SERVICE_UNAVAILABLE, &serde_json::json!({"status": status}));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
    Ok(response)
}

/// What `GET /session` and `POST /session` answer: who is signed in, and the
/// stores they cover (every store for an admin, or with access off).
fn session_view(engine: &Engine, key: Option<&KeyConfig>) -> Response {
    let all = || engine.stores.iter().map(|store| store.id.clone()).collect::<Vec<_>>();
    let body = match key {
        None => serde_json::json!({"access": "off", "name": "", "role": "admin", "stores": all()}),
        Some(key) => serde_json::json!({
            "access": "on",
            "name": key.name,
            "role": key.role.as_str(),
            "stores": if key.role == Role::Admin { all() } else { key.stores.clone() },
        }),
    };
    json(StatusCode::OK, &body)
}

/// `GET /session`: who the current request's key or session is.
pub fn session(engine: Arc<Engine>) -> Reply {
    match crate::auth::current_caller() {
        Caller::Key(key) => Ok(session_view(&engine, Some(&key))),
        // Checks are off.
        Caller::Open => Ok(session_view(&engine, None)),
        Caller::Anonymous | Caller::Unknown => Err(ApiError::Unauthorized("not signed in".into())),
    }
}

/// A small JSON request body (sign-in, backup), or 400 `invalid_order` saying
/// what shape it must have.
fn small_json<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::InvalidOrder(format!("{shape}: {err}")))
}

/// `POST /session` `{"key": "..."}`: a session cookie for the staff screens.
pub fn sign_in(engine: Arc<Engine>, gatekeeper: Arc<Gatekeeper>, headers: &HeaderMap, body: Bytes) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SignIn {
        key: String,
    }
    let request: SignIn = small_json(&body, "sign-in body must be {\"key\": \"...\"}")?;
    if !gatekeeper.enabled() {
        return Ok(session_view(&engine, None));
    }
    let Some((token, key)) = gatekeeper.sign_in(request.key.trim()) else {
        return Err(ApiError::Unauthorized("this key is not known".into()));
    };
    tracing::info!(key = %key.name, role = key.role.as_str(), "signed in");
    let mut response = session_view(&engine, Some(&key));
    set_session_cookie(&mut response, &token, gatekeeper.session_ttl().as_secs(), headers);
    Ok(response)
}

/// A `status` answer that sets the session cookie to `token` for `max_age_s`
/// (an empty token and 0: removes it).
pub fn session_cookie(status: StatusCode, token: &str, max_age_s: u64, headers: &HeaderMap) -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = status;
    set_session_cookie(&mut response, token, max_age_s, headers);
    response
}

fn set_session_cookie(response: &mut Response, token: &str, max_age_s: u64, headers: &HeaderMap) {
    // Behind a TLS-terminating proxy the browser talks https: then the cookie
    // must never travel over plain http.
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        crate::auth::SESSION_COOKIE,
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `POST /admin/backup` `{"dir": "/abs/path"}`: a RocksDB checkpoint of the
/// data in `dir` (on the server's machine; it must not exist yet), taken while
/// serving. 201 `{"dir", "took_ms"}`.
/// `GET /cluster` (contract v3): the live nodes and each store's owner, as
/// this node saw them at its last round; a manager sees their stores only.
/// A single node (not replicated) answers as node `local`, owning every store.
pub async fn cluster(engine: Arc<Engine>, cluster: Option<Arc<crate::cluster::forward::Forwarder>>, caller: Caller) -> Reply {
    use serde_json::json;
    let stores: Vec<&str> = engine.stores.iter().map(|store| store.id.as_str()).filter(|store| caller.sees(store)).collect();
    let Some(cluster) = cluster else {
        return Ok(self::json(StatusCode::OK, &json!({
            "node": "local",
            "nodes": [{"node": "local", "advertise": "", "alive": true, "stores": stores}],
            "stores": stores.iter().map(|id| json!({"id": id, "owner": "local", "since": null})).collect::<Vec<_>>(),
        })));
    };
    let view = cluster.membership().view();
    let owner = |store: &str| view.leases.get(store).map(|(lease, _)| lease);
    let nodes: Vec<serde_json::Value> = view
        .nodes
        .iter()
        .map(|(node, record)| {
            let owned: Vec<&str> = stores.iter().copied().filter(|store| owner(store).is_some_and(|lease| &lease.node == node)).collect();
            json!({"node": node, "advertise": record.advertise, "alive": true, "stores": owned})
        })
        .collect();
    let stores: Vec<serde_json::Value> = stores
        .iter()
        .map(|id| match owner(id) {
            Some(lease) => json!({"id": id, "owner": lease.node, "since": crate::domain::time::rfc3339(lease.since_ms)}),
            None => json!({"id": id, "owner": null, "since": null}),
        })
        .collect();
    Ok(self::json(StatusCode::OK, &json!({"node": cluster.node(), "nodes": nodes, "stores": stores})))
}

pub async fn backup(engine: Arc<Engine>, body: Bytes) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Backup {
        dir: String,
    }
    let request: Backup = small_json(&body, "backup body must be {\"dir\": \"/absolute/path\"}")?;
    let dir = std::path::PathBuf::from(&request.dir);
    if !dir.is_absolute() {
        return Err(ApiError::InvalidOrder("dir must be an absolute path on the server".into()));
    }
    if dir.exists() {
        return Err(ApiError::Conflict(format!("{} exists already; a backup goes into a new directory", dir.display())));
    }
    let store = engine.store.clone();
    let started = std::time::Instant::now();
    let target = dir.clone();
    tokio::task::spawn_blocking(move || store.checkpoint(&target))
        .await
        .map_err(|err| ApiError::Internal(err.to_string()))?
        .map_err(|err| ApiError::Internal(format!("checkpoint into {}: {err}", dir.display())))?;
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(dir = %dir.display(), took_ms, "backup written");
    // Recorded after the copy (which therefore names the backup before it), for `crema_last_backup_timestamp_seconds`.
    let mut batch = Batch::new();
    batch.put_last_backup(crate::domain::time::now_ms());
    if let Err(err) = engine.journal.commit(batch).await {
        tracing::warn!(error = %err, "the backup was written but its time could not be recorded");
    }
    Ok(json(StatusCode::CREATED, &serde_json::json!({"dir": dir.display().to_string(), "took_ms": took_ms})))
}
