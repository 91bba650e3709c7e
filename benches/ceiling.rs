//! The ceiling crema is measured against: a trivial warp server that does
//! what every order request costs before any engine work — accept the
//! connection, parse the same order JSON, check it against the same menu —
//! and answers 201 with a small order body. No actors, no payment, no disk.
//!
//! `cargo bench --bench ceiling -- 127.0.0.1:7070` (or run the built binary
//! `target/release/deps/ceiling-*`); `crema rush --target http://127.0.0.1:7070`
//! loads it. The `rush` bench starts it itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use crema::domain::{Menu, OrderRequest};
use warp::http::StatusCode;
use warp::{Filter, Reply};

// The same allocator as crema, so that the ratio compares engines, not allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo bench` passes `--bench`; anything that parses as an address is the bind address.
    let bind: SocketAddr =
        std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or_else(|| ([127, 0, 0, 1], 7070).into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(serve(bind));
}

async fn serve(bind: SocketAddr) {
    let menu = Arc::new(Menu::builtin());
    let next_id = Arc::new(AtomicU64::new(1));
    let menu_json = serde_json::to_string(&*menu).expect("the menu serializes");
    let get_menu = warp::path!("menu").and(warp::get()).map(move || {
        warp::reply::with_header(menu_json.clone(), "content-type", "application/json")
    });
    let place = warp::path!("orders")
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(move |body: Bytes| {
            let parsed = serde_json::from_slice::<OrderRequest>(&body)
                .map_err(|err| err.to_string())
                .and_then(|request| request.validate(&menu).map_err(|err| err.to_string()));
            match parsed {
                Ok(draft) => {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let body = serde_json::json!({ "id": id.to_string(), "status": "queued", "total": draft.total });
                    let reply = warp::reply::with_status(warp::reply::json(&body), StatusCode::CREATED);
                    warp::reply::with_header(reply, "location", format!("/orders/{id}")).into_response()
                }
                Err(detail) => warp::reply::with_status(detail, StatusCode::BAD_REQUEST).into_response(),
            }
        });
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap_or_else(|err| panic!("cannot bind {bind}: {err}"));
    println!("ceiling listening on http://{}", listener.local_addr().expect("a bound address"));
    warp::serve(get_menu.or(place)).incoming(listener).run().await;
}

