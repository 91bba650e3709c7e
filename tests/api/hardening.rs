//! The limits warp does not set by itself: header-read timeout, connection cap.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = spawn_app_with(|settings| settings.server.header_read_timeout_ms = 300).await;
    let mut stream = TcpStream::connect(app.base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the server must close a slow-header connection");
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_answered_503() {
    let app = spawn_app_with(|settings| settings.server.max_connections = 2).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let _first = TcpStream::connect(&addr).await.unwrap();
    let _second = TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buffer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buffer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buffer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"));
    drop(_first);
    drop(_second);
    let healthy = crate::helpers::wait_until(Duration::from_secs(5), || async {
        let response = app.client.get(app.url("/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(healthy.is_some(), "closing connections frees their places");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_beyond_max_placing_are_shed_with_429_at_once() {
    let app = spawn_app_with(|settings| {
        settings.orders.max_placing = 2;
        settings.payment.simulated.latency_ms = 600;
    })
    .await;
    let app = std::sync::Arc::new(app);
    let placing: Vec<_> = (0..6)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let began = std::time::Instant::now();
                let response = app.place(&[("americano", 1)]).await;
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let body: serde_json::Value = response.json().await.unwrap();
                (status, retry_after, body, began.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in placing {
        answers.push(task.await.unwrap());
    }
    let created = answers.iter().filter(|(status, ..)| *status == 201).count();
    let shed: Vec<_> = answers.iter().filter(|(status, ..)| *status == 429).collect();
    assert_eq!(created, 2, "exactly max_placing orders go through: {answers:?}");
    assert_eq!(shed.len(), 4, "{answers:?}");
    for (_, retry_after, body, took) in shed {
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(body["code"], "overloaded");
        assert!(*took < Duration::from_millis(300), "shed at once, not after the slow payment: {took:?}");
    }
    // The permits come back: the next order goes through.
    assert_eq!(app.place(&[("americano", 1)]).await.status(), 201);
    let stats = app.stats().await;
    assert_eq!(stats["payment"]["captured"], 3, "shed orders were never charged");
}
