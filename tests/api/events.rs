//! The read side: server-sent events, ETAs and Prometheus metrics.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::helpers::{manual_stations, spawn_app_with, TestApp};

/// Reads server-sent events from `response` until `count` have arrived (or the stream ends).
pub async fn read_events(response: &mut Option<reqwest::Response>, count: usize) -> Vec<(String, String, Value)> {
    let response = response.take().unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(chunk)) => chunk.unwrap(),
            Ok(None) => break,
            Err(_) => panic!("no event within 10 s; got {events:?}"),
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            if !name.is_empty() {
                events.push((name, id, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    events
}

async fn manual_app() -> TestApp {
    spawn_app_with(|settings| manual_stations(settings, 1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_stream_starts_with_the_current_state_and_ends_when_settled() {
    let app = manual_app().await;
    let order = app.place_ok(&[("latte", 1)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let response = app.get(&format!("/orders/{id}/events")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = Some(response);
    let reader = tokio::spawn(async move { read_events(&mut response, 10).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.station("bar-1", "next").await.status(), 200);
    assert_eq!(app.station("bar-1", "done").await.status(), 200);
    app.wait_for(&id, "ready", Duration::from_secs(5)).await;
    assert_eq!(app.pickup(&id).await.status(), 200);
    let events = reader.await.unwrap();
    let statuses: Vec<&str> = events.iter().map(|(_, _, order)| order["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["queued", "brewing", "ready", "picked_up"], "{events:?}");
    let ids: Vec<u64> = events.iter().map(|(_, id, _)| id.parse().unwrap()).collect();
    assert_eq!(ids, [2, 3, 4, 5], "the SSE id is the order's version");
    assert!(events.iter().all(|(name, _, _)| name == "status"));
    assert_eq!(app.get("/orders/nope/events").await.status(), 404);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_stream_replays_what_a_reconnecting_client_missed() {
    let app = manual_app().await;
    let first = app.place_ok(&[("latte", 1)]).await;
    let mut response = Some(app.get("/events").await);
    let reader = tokio::spawn(async move { read_events(&mut response, 1).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = app.place_ok(&[("espresso", 1)]).await;
    let seen = reader.await.unwrap();
    assert_eq!(seen[0].2["id"], second["id"]);
    let last_id = seen[0].1.clone();
    // Disconnected: two more changes happen.
    app.station("bar-1", "next").await;
    app.cancel(second["id"].as_str().unwrap()).await;
    let response = app.client.get(app.url("/events")).header("last-event-id", &last_id).send().await.unwrap();
    let missed = read_events(&mut Some(response), 3).await;
    let changes: Vec<(String, String)> = missed
        .iter()
        .map(|(_, _, order)| (order["id"].as_str().unwrap().to_owned(), order["status"].as_str().unwrap().to_owned()))
        .collect();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(changes[0], (first_id, "brewing".to_owned()));
    assert_eq!(changes[1], (second_id.clone(), "cancelled".to_owned()));
    assert_eq!(changes[2].0, second_id, "then its refund");
    let seqs: Vec<u64> = missed.iter().map(|(_, id, _)| id.parse().unwrap()).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]) && seqs[0] > last_id.parse().unwrap());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_not_yet_ready_carry_an_eta_that_follows_the_queue() {
    // One auto station; an americano takes 3000 ms × 0.5 = 1.5 s.
    let app = spawn_app_with(|settings| {
        settings.barista.stations = 1;
        settings.barista.brew_scale = 0.5;
    })
    .await;
    let first = app.place_ok(&[("americano", 1)]).await;
    let second = app.place_ok(&[("americano", 1)]).await;
    let eta = |order: &Value| chrono::DateTime::parse_from_rfc3339(order["eta"].as_str().expect("an eta")).unwrap();
    let gap = eta(&second) - eta(&first);
    assert!((1_300..=1_700).contains(&gap.num_milliseconds()), "the second waits one brew longer: {gap}");
    app.pause_all().await;
    let paused = app.order(second["id"].as_str().unwrap()).await;
    assert!(paused["eta"].is_null(), "no working station, no estimate: {paused}");
    app.resume_all().await;
    let ready = app.wait_for(first["id"].as_str().unwrap(), "ready", Duration::from_secs(10)).await;
    assert!(ready["eta"].is_null(), "a ready order needs no estimate");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_orders_by_outcome_and_time_requests() {
    let app = spawn_app_with(|_| {}).await;
    app.place_ok(&[("latte", 1)]).await;
    app.place_ok(&[("latte", 1)]).await;
    assert_eq!(app.place(&[("mocha", 1)]).await.status(), 400);
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    for expected in [
        "crema_orders_total{code=\"201\"} 2",
        "crema_orders_total{code=\"400\"} 1",
        "crema_http_request_duration_seconds_count{route=\"place_order\"} 3",
        "crema_payment_breaker_state{state=\"closed\"} 1",
        "crema_payment_captured_total 2",
        "crema_store_group_size_count",
        "crema_store_write_duration_seconds_bucket",
        "crema_queue_depth",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_covers_every_route() {
    let app = spawn_app_with(|settings| settings.barista.mode = crema::config::StationMode::Manual).await;
    let order = app.place_ok(&[("latte", 1)]).await;
    let id = order["id"].as_str().unwrap();
    let doc = app.json("/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("get", "/menu", "/menu".to_owned()),
        ("post", "/orders", "/orders".to_owned()),
        ("get", "/orders", "/orders".to_owned()),
        ("get", "/orders/{id}", format!("/orders/{id}")),
        ("post", "/orders/{id}/pickup", format!("/orders/{id}/pickup")),
        ("post", "/orders/{id}/cancel", format!("/orders/{id}/cancel")),
        ("get", "/stations", "/stations".to_owned()),
        ("post", "/stations/{id}/pause", "/stations/bar-1/pause".to_owned()),
        ("post", "/stations/{id}/resume", "/stations/bar-1/resume".to_owned()),
        ("post", "/stations/{id}/next", "/stations/bar-1/next".to_owned()),
        ("post", "/stations/{id}/done", "/stations/bar-1/done".to_owned()),
        ("get", "/queue", "/queue".to_owned()),
        ("get", "/stores", "/stores".to_owned()),
        ("get", "/stores/{store}/sold-out", "/stores/main/sold-out".to_owned()),
        ("get", "/stores/{store}/ready", "/stores/main/ready".to_owned()),
        ("get", "/stores/{store}/menu", "/stores/main/menu".to_owned()),
        ("get", "/stores/{store}/queue", "/stores/main/queue".to_owned()),
        ("get", "/stores/{store}/stations", "/stores/main/stations".to_owned()),
        ("post", "/stores/{store}/stations/{id}/{action}", "/stores/main/stations/bar-1/resume".to_owned()),
        ("put", "/stores/{store}/sold-out/{ref}", "/stores/main/sold-out/espresso".to_owned()),
        ("delete", "/stores/{store}/sold-out/{ref}", "/stores/main/sold-out/espresso".to_owned()),
        ("post", "/stores/{store}/ordering/pause", "/stores/main/ordering/pause".to_owned()),
        ("post", "/stores/{store}/ordering/resume", "/stores/main/ordering/resume".to_owned()),
        ("get", "/stats", "/stats".to_owned()),
        ("get", "/metrics", "/metrics".to_owned()),
        ("get", "/healthz", "/healthz".to_owned()),
        ("get", "/readyz", "/readyz".to_owned()),
        ("get", "/openapi.json", "/openapi.json".to_owned()),
        ("get", "/", "/".to_owned()),
        ("get", "/barista", "/barista".to_owned()),
        ("get", "/dashboard", "/dashboard".to_owned()),
        ("get", "/session", "/session".to_owned()),
        ("delete", "/session", "/session".to_owned()),
        ("post", "/session", "/session".to_owned()),
        ("post", "/admin/backup", "/admin/backup".to_owned()),
    ];
    for (method, template, concrete) in &routes {
        assert!(doc["paths"][template][method].is_object(), "{method} {template} is not documented");
        let request = match *method {
            "get" => app.client.get(app.url(concrete)),
            "put" => app.client.put(app.url(concrete)),
            "delete" => app.client.delete(app.url(concrete)),
            _ => app.client.post(app.url(concrete)).header("content-type", "application/json").body("{}"),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(!body.contains("\"code\":\"not_found\""), "{method} {concrete} is documented but not routed");
        assert_ne!(status, 405, "{method} {concrete} is documented but answers 405");
    }
    for template in ["/orders/{id}/events", "/events", "/stores/{store}/events"] {
        assert!(doc["paths"][template]["get"].is_object(), "{template} is not documented");
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|item| item.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len() + 3, "a documented operation has no route in this test");
    // The request schema carries the contract's bounds.
    let schemas = &doc["components"]["schemas"];
    let line = &schemas["LineRequest"]["properties"]["qty"];
    assert_eq!((line["minimum"].as_u64(), line["maximum"].as_u64()), (Some(1), Some(20)), "{line}");
    let request = &schemas["OrderRequest"]["properties"];
    assert_eq!((request["items"]["minItems"].as_u64(), request["items"]["maxItems"].as_u64()), (Some(1), Some(20)));
    assert_eq!(request["customer"]["maxLength"].as_u64(), Some(64), "{request}");
    // Staff routes say how to present a key, and that they answer 401 and 403.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    for (path, method) in [("/stats", "get"), ("/stores/{store}/ordering/pause", "post"), ("/metrics", "get")] {
        let operation = &doc["paths"][path][method];
        assert!(operation["security"].is_array() && operation["responses"]["403"].is_object(), "{method} {path}: {operation}");
    }
    assert!(doc["paths"]["/orders/{id}"]["get"]["security"].is_null(), "a customer's order needs no key");
    // Errors are documented as they are served.
    for (path, method, status) in [("/orders", "post", "400"), ("/orders", "post", "429"), ("/orders/{id}", "get", "404")] {
        let content = &doc["paths"][path][method]["responses"][status]["content"];
        assert!(content["application/problem+json"].is_object(), "{method} {path} {status}: {content}");
    }
    assert!(doc["paths"]["/orders"]["post"]["responses"]["201"]["headers"]["Location"].is_object());
    let order_schema = &doc["components"]["schemas"]["OrderView"]["properties"];
    for field in ["id", "status", "items", "total", "payment", "eta", "version", "history"] {
        assert!(order_schema[field].is_object(), "OrderView lacks {field}: {order_schema}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_in_a_long_queue_the_eta_still_counts_every_order_ahead() {
    // Two manual stations (working, never finishing): each americano adds
    // 3000 ms × 0.1 = 300 ms of work, shared by the two stations. Order 0 is
    // taken by a station; the rest queue. Beyond the first 256 tickets ahead
    // the estimate extrapolates: it must still grow by ~150 ms per order.
    let app = spawn_app_with(|settings| {
        settings.barista.stations = 2;
        settings.barista.mode = crema::config::StationMode::Manual;
        settings.barista.brew_scale = 0.1;
    })
    .await;
    let mut orders = Vec::new();
    for _ in 0..400 {
        orders.push(app.place_ok(&[("americano", 1)]).await["id"].as_str().unwrap().to_owned());
    }
    let eta = |order: &Value| chrono::DateTime::parse_from_rfc3339(order["eta"].as_str().expect("an eta")).unwrap();
    let near = eta(&app.order(&orders[10]).await);
    let mid = eta(&app.order(&orders[200]).await);
    let deep = eta(&app.order(&orders[399]).await);
    let per_order = |from: chrono::DateTime<chrono::FixedOffset>, to: chrono::DateTime<chrono::FixedOffset>, n: i64| {
        (to - from).num_milliseconds() as f64 / n as f64
    };
    let exact = per_order(near, mid, 190);
    let extrapolated = per_order(mid, deep, 199);
    assert!((140.0..=160.0).contains(&exact), "{exact} ms per order ahead");
    assert!((140.0..=160.0).contains(&extrapolated), "{extrapolated} ms per order ahead, beyond the exact part");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_stream_resends_the_eta_when_the_queue_moves() {
    // One auto station at full brew times: an americano takes 3 s.
    let app = spawn_app_with(|settings| {
        settings.barista.stations = 1;
        settings.barista.brew_scale = 1.0;
    })
    .await;
    app.place_ok(&[("americano", 1)]).await;
    let ahead = app.place_ok(&[("americano", 1)]).await;
    let order = app.place_ok(&[("latte", 1)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let mut response = Some(app.get(&format!("/orders/{id}/events")).await);
    let reader = tokio::spawn(async move { read_events(&mut response, 2).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The queued order ahead leaves: this one's estimate comes 3 s closer, with no change of its own.
    assert_eq!(app.cancel(ahead["id"].as_str().unwrap()).await.status(), 200);
    let events = reader.await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].1, events[1].1, "same version: only the estimate moved");
    let eta = |order: &Value| chrono::DateTime::parse_from_rfc3339(order["eta"].as_str().unwrap()).unwrap();
    let closer = eta(&events[0].2) - eta(&events[1].2);
    assert!(closer.num_milliseconds() >= 2_000, "the estimate moved {closer}");
    app.shutdown().await;
}
