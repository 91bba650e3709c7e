//! `GET /openapi.json`: the OpenAPI 3 document of the API, generated with
//! utoipa. Schemas are derived from the very types the handlers serialise
//! (`views`, `domain`, `actors::barista`); each operation below is declared
//! beside the route table it documents, and a test checks that every route
//! in `routes` appears here.

#![allow(dead_code)] // the functions exist only to carry `#[utoipa::path]`

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::handlers::{MenuJson, ShelfJson, StoreJson};
use super::views::OrderView;
use crate::actors::barista::TicketView;
use crate::actors::barista::StationView;
use crate::domain::OrderRequest;

/// An RFC 9457 problem document, as every error is answered.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: String,
    /// Stable, snake_case: `invalid_order`, `payment_unavailable`, `overloaded`, ...
    code: String,
    /// With 202, 429 and 503: the seconds to wait, as in `Retry-After`.
    retry_after_s: Option<u64>,
    /// With 202 `placement_pending`: the order being placed.
    order_id: Option<String>,
}

/// A page of `GET /orders`, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderPage<'a> {
    orders: Vec<OrderView<'a>>,
    /// Pass as `after` for the next page; `null` at the end.
    next: Option<String>,
}

/// `GET /queue`.
#[derive(Serialize, ToSchema)]
pub struct Queue {
    /// In the order they will be made (at most 500 listed).
    tickets: Vec<TicketView>,
    depth: usize,
}

/// The menu; `available` is false for what the store has sold out.
#[utoipa::path(get, path = "/menu", responses((status = 200, body = MenuJson)))]
fn menu() {}

/// The pickup shelf: orders ready and not picked up, the longest-ready first.
#[utoipa::path(get, path = "/stores/{store}/ready", params(("store" = String, Path)),
    responses((status = 200, body = ShelfJson), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn pickup_shelf() {}

/// What a store has sold out ("86"): item ids.
#[utoipa::path(get, path = "/stores/{store}/sold-out", params(("store" = String, Path)),
    responses((status = 200, body = SoldOutList), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn sold_out() {}

/// Mark an item sold out at a store (idempotent; kept across restarts).
#[utoipa::path(put, path = "/stores/{store}/sold-out/{ref}", params(("store" = String, Path), ("ref" = String, Path, description = "a menu item id")),
    responses((status = 200, body = SoldOutList),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found or menu_item_not_found"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not marked")))]
fn mark_sold_out() {}

/// Clear an item's sold-out mark at a store (idempotent; kept across restarts).
#[utoipa::path(delete, path = "/stores/{store}/sold-out/{ref}", params(("store" = String, Path), ("ref" = String, Path, description = "a menu item id")),
    responses((status = 200, body = SoldOutList),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found or menu_item_not_found"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not cleared")))]
fn clear_sold_out() {}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SoldOutList {
    sold_out: Vec<String>,
}

/// Place an order: charged and durable before the 201.
#[utoipa::path(post, path = "/orders", request_body = OrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1-255 visible ASCII; replays the first outcome")),
    responses(
        (status = 201, body = OrderView, description = "Paid and accepted",
            headers(("Location" = String, description = "/orders/{id}"),
                    ("Idempotent-Replayed" = Option<String>, description = "`true` on a replay"))),
        (status = 202, body = Problem, content_type = "application/problem+json",
            description = "placement_pending: the outcome is not known yet; repeat with the same Idempotency-Key or GET the Location",
            headers(("Location" = String, description = "/orders/{order_id}"), ("Retry-After" = u64))),
        (status = 408, body = Problem, content_type = "application/problem+json", description = "body_timeout: the body did not arrive in time"),
        (status = 429, body = Problem, content_type = "application/problem+json", description = "overloaded: too many orders being placed",
            headers(("Retry-After" = u64))),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "invalid_order"),
        (status = 402, body = Problem, content_type = "application/problem+json", description = "payment_declined"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "request_in_flight, or item_unavailable (sold out; nothing charged)"),
        (status = 413, body = Problem, content_type = "application/problem+json", description = "body_too_large"),
        (status = 415, body = Problem, content_type = "application/problem+json", description = "unsupported_media_type"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "idempotency_key_reused"),
        (status = 503, body = Problem, content_type = "application/problem+json",
            description = "payment_unavailable, overloaded, storage_unavailable or store_paused: not placed, nothing charged",
            headers(("Retry-After" = u64))),
    ))]
fn place_order() {}

/// Orders, newest first, from the read side.
#[utoipa::path(get, path = "/orders",
    params(("customer" = Option<String>, Query), ("status" = Option<String>, Query),
           ("limit" = Option<u32>, Query, description = "1-200, default 50"), ("after" = Option<String>, Query)),
    responses((status = 200, body = OrderPage), (status = 400, body = Problem, content_type = "application/problem+json", description = "invalid_query")))]
fn list_orders() {}

/// One order, from its own actor's state.
#[utoipa::path(get, path = "/orders/{id}", params(("id" = String, Path)),
    responses((status = 200, body = OrderView),
              (status = 202, body = Problem, content_type = "application/problem+json", description = "placement_pending: still being placed"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "order_not_found")))]
fn get_order() {}

/// Cancel: withdraw or abort the ticket and refund.
#[utoipa::path(post, path = "/orders/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json", description = "too_late_to_cancel")))]
fn cancel_order() {}

/// Pick up a ready order; repeated on a picked-up order it answers the order as it is.
#[utoipa::path(post, path = "/orders/{id}/pickup", params(("id" = String, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json", description = "not_ready")))]
fn pickup_order() {}

/// Server-sent events of one order: its current state, then each change (`event: status`, `id` = version).
#[utoipa::path(get, path = "/orders/{id}/events", params(("id" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = OrderView), (status = 404, body = Problem, content_type = "application/problem+json")))]
fn order_events() {}

/// Server-sent events of one store's orders (barista screens; as `/events`).
#[utoipa::path(get, path = "/stores/{store}/events",
    params(("store" = String, Path), ("Last-Event-ID" = Option<u64>, Header)),
    responses((status = 200, content_type = "text/event-stream", body = OrderView),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn store_events() {}

/// Sign in with a staff key: sets the `crema_session` cookie (HttpOnly, SameSite=Strict) for the staff screens.
#[utoipa::path(post, path = "/session", request_body = SignIn,
    responses((status = 200, body = SessionView, headers(("Set-Cookie" = String))),
              (status = 400, body = Problem, content_type = "application/problem+json", description = "invalid_order: not `{\"key\": \"...\"}`"),
              (status = 401, body = Problem, content_type = "application/problem+json", description = "unauthorized: an unknown key")))]
fn sign_in() {}

/// Who the request's key or session cookie is.
#[utoipa::path(get, path = "/session",
    responses((status = 200, body = SessionView), (status = 401, body = Problem, content_type = "application/problem+json", description = "unauthorized: not signed in")))]
fn session() {}

/// Sign out: ends the session and clears its cookie.
#[utoipa::path(delete, path = "/session", responses((status = 204, description = "signed out")))]
fn sign_out() {}

/// A RocksDB checkpoint of the data into `dir` (on the server; it must not exist), taken while serving.
#[utoipa::path(post, path = "/admin/backup", request_body = BackupRequest,
    responses((status = 201, body = Object, description = "`{\"dir\", \"took_ms\"}`"),
              (status = 400, body = Problem, content_type = "application/problem+json", description = "invalid_order: not an absolute path"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "conflict: dir exists")))]
fn backup() {}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SignIn {
    key: String,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct BackupRequest {
    /// An absolute path on the server's machine.
    dir: String,
}

/// Who is signed in: `access` is `off` when checks are off (`auth.enabled = false`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct SessionView {
    access: String,
    name: String,
    role: String,
    /// The stores the key covers (every store for an admin).
    stores: Vec<String>,
}

/// Server-sent events of every order (`id` = event-log sequence; `Last-Event-ID` replays).
#[utoipa::path(get, path = "/events",
    params(("Last-Event-ID" = Option<u64>, Header)),
    responses((status = 200, content_type = "text/event-stream", body = OrderView)))]
fn all_events() {}

/// The barista stations.
#[utoipa::path(get, path = "/stations", responses((status = 200, body = Vec<StationView>)))]
fn stations() {}

/// Pause a station; its current ticket goes back to the head of the queue. Kept across restarts.
#[utoipa::path(post, path = "/stations/{id}/pause", params(("id" = String, Path)),
    responses((status = 200, body = StationView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not paused")))]
fn pause_station() {}

/// Resume a station. Kept across restarts.
#[utoipa::path(post, path = "/stations/{id}/resume", params(("id" = String, Path)),
    responses((status = 200, body = StationView), (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not resumed")))]
fn resume_station() {}

/// Manual station: take the next ticket.
#[utoipa::path(post, path = "/stations/{id}/next", params(("id" = String, Path)),
    responses((status = 200, body = TicketView), (status = 204, description = "The queue is empty"),
              (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json", description = "station_conflict")))]
fn next_ticket() {}

/// Manual station: the current ticket is made.
#[utoipa::path(post, path = "/stations/{id}/done", params(("id" = String, Path)),
    responses((status = 200, body = StationView), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
fn done_ticket() {}

/// A store's menu (the default store's is also `GET /menu`).
#[utoipa::path(get, path = "/stores/{store}/menu", params(("store" = String, Path)),
    responses((status = 200, body = MenuJson), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn store_menu() {}

/// A store's ticket queue (the default store's is also `GET /queue`).
#[utoipa::path(get, path = "/stores/{store}/queue", params(("store" = String, Path)),
    responses((status = 200, body = Queue), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn store_queue() {}

/// A store's stations (the default store's are also `GET /stations`).
#[utoipa::path(get, path = "/stores/{store}/stations", params(("store" = String, Path)),
    responses((status = 200, body = Vec<StationView>), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found")))]
fn store_stations() {}

/// A station of a store: `pause`, `resume`, `next` or `done`, as the unscoped `/stations/{id}/{action}`.
#[utoipa::path(post, path = "/stores/{store}/stations/{id}/{action}",
    params(("store" = String, Path), ("id" = String, Path), ("action" = String, Path, description = "pause, resume, next or done")),
    responses((status = 200, description = "The station (pause, resume, done) or the ticket taken (next)"),
              (status = 204, description = "next: the queue is empty"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found, station_not_found or not_found (an unknown action)"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "station_conflict"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable (pause, resume)")))]
fn store_station_action() {}

/// The ticket queue.
#[utoipa::path(get, path = "/queue", responses((status = 200, body = Queue)))]
fn queue() {}

/// Counts by status, queue depth, stations, payment and breaker, orders per second.
#[utoipa::path(get, path = "/stats", responses((status = 200, body = Object)))]
fn stats() {}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "text/plain", body = String)))]
fn metrics() {}

/// 200 while the process runs.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Object)))]
fn healthz() {}

/// 200 while crema can take orders: recovery has finished and the store can write; else 503.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Object),
    (status = 503, body = Object, description = "`{\"status\": \"recovering\"|\"storage_unavailable\"}`", headers(("Retry-After" = u64)))))]
fn readyz() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, body = Object)))]
fn openapi() {}

/// The customer page.
#[utoipa::path(get, path = "/", responses((status = 200, content_type = "text/html", body = String)))]
fn customer_page() {}

/// The stores (one, `main`, until `[[stores]]` exists).
#[utoipa::path(get, path = "/stores", responses((status = 200, body = StoreList)))]
fn stores() {}

/// Stop taking orders at a store (orders already placed go on being made). Kept across restarts.
#[utoipa::path(post, path = "/stores/{store}/ordering/pause", params(("store" = String, Path)),
    responses((status = 200, body = StoreJson), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not paused")))]
fn pause_ordering() {}

/// Take orders again at a store. Kept across restarts.
#[utoipa::path(post, path = "/stores/{store}/ordering/resume", params(("store" = String, Path)),
    responses((status = 200, body = StoreJson), (status = 404, body = Problem, content_type = "application/problem+json", description = "store_not_found"),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "storage_unavailable: not kept, not resumed")))]
fn resume_ordering() {}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StoreList {
    stores: Vec<StoreJson<'static>>,
}

/// The barista screen.
#[utoipa::path(get, path = "/barista", responses((status = 200, content_type = "text/html", body = String)))]
fn barista_page() {}

/// The dashboard.
#[utoipa::path(get, path = "/dashboard", responses((status = 200, content_type = "text/html", body = String)))]
fn dashboard_page() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "crema", description = "An actor-based, durable order engine for cafés. See API.md."),
    paths(menu, place_order, list_orders, get_order, cancel_order, pickup_order, order_events, all_events,
          stations, pause_station, resume_station, next_ticket, done_ticket, queue, stores, pause_ordering,
          resume_ordering, sold_out, mark_sold_out, clear_sold_out, pickup_shelf, store_menu, store_queue,
          store_stations, store_station_action, stats, metrics, store_events, sign_in, session, sign_out, backup,
          healthz, readyz, openapi, customer_page, barista_page, dashboard_page),
    components(schemas(Problem)),
    modifiers(&StaffAccess)
)]
pub struct ApiDoc;

/// Who may call what (API.md "Access"): the two ways to present a staff key,
/// and on every operation that needs one, its security and its 401 and 403.
struct StaffAccess;

/// The operations anyone may call: method and path template.
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/menu"), ("get", "/stores"), ("get", "/stores/{store}/menu"), ("post", "/orders"),
    ("get", "/orders/{id}"), ("get", "/orders/{id}/events"), ("post", "/orders/{id}/cancel"),
    ("post", "/orders/{id}/pickup"), ("get", "/healthz"), ("get", "/readyz"), ("get", "/openapi.json"),
    ("get", "/"), ("get", "/barista"), ("get", "/dashboard"), ("post", "/session"), ("get", "/session"),
    ("delete", "/session"),
];

impl utoipa::Modify for StaffAccess {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("a staff key: `crema keys new`")).build()),
            );
            components.add_security_scheme(
                "session",
                SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(crate::auth::SESSION_COOKIE, "from POST /session (the staff screens)"))),
            );
        }
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/problem+json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [("get", &mut item.get), ("post", &mut item.post), ("put", &mut item.put), ("delete", &mut item.delete)] {
                let Some(operation) = operation.as_mut() else { continue };
                if PUBLIC.contains(&(method, path.as_str())) {
                    continue;
                }
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("session", Vec::<String>::new()),
                ]);
                let responses = &mut operation.responses.responses;
                responses.insert("401".into(), problem("unauthorized: no key, or an unknown one (`WWW-Authenticate: Bearer`)").into());
                responses.insert("403".into(), problem("forbidden: the key's role or stores do not cover this request").into());
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}
