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

/// Opens `n` connections that send a `POST /orders` head announcing a body,
/// then trickle it one byte at a time, slower than any customer would.
async fn slow_uploaders(addr: &str, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let mut uploads = Vec::new();
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        uploads.push(tokio::spawn(async move {
            let head = "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..200 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if stream.write_all(b" ").await.is_err() {
                    return;
                }
            }
        }));
    }
    uploads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_hold_no_placing_permit_and_are_cut_off() {
    let app = spawn_app_with(|settings| {
        settings.orders.max_placing = 4;
        settings.server.body_read_timeout_ms = 1_500;
    })
    .await;
    // Four times max_placing slow uploads: once they held every permit and
    // everyone else got 429.
    let uploads = slow_uploaders(&app.addr(), 16).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut placed = Vec::new();
    for n in 0..10 {
        let response = app.place(&[("americano", 1)]).await;
        assert_eq!(response.status(), 201, "normal order {n} during slow uploads");
        placed.push(response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    for id in &placed {
        assert_eq!(app.get(&format!("/orders/{id}")).await.status(), 200, "an acknowledged order is there");
    }
    // And the slow ones are answered 408 and closed once their time is up.
    let mut stream = TcpStream::connect(app.addr()).await.unwrap();
    stream
        .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a slow body is cut off");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    for upload in uploads {
        upload.abort();
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_are_reaped() {
    let app = spawn_app_with(|settings| {
        settings.server.max_connections = 8;
        settings.server.write_timeout_ms = 500;
    })
    .await;
    // Eight connections pipeline requests for big answers and never read.
    let mut hogs = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(app.addr()).await.unwrap();
        let requests = "GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
        hogs.push(tokio::spawn(async move {
            let _ = stream.write_all(requests.as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let served = crate::helpers::wait_until(Duration::from_secs(10), || async {
        let response = app.client.get(app.url("/healthz")).send().await.ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(served.is_some(), "the hogs' places are freed and /healthz answers again");
    for hog in hogs {
        hog.abort();
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|settings| settings.server.idle_timeout_ms = 300).await;
    let mut stream = TcpStream::connect(app.addr()).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a keep-alive connection left idle is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_leaves_room_for_customers_once_it_ends() {
    let app = spawn_app_with(|settings| {
        settings.server.max_connections = 32;
        settings.server.header_read_timeout_ms = 500;
    })
    .await;
    // 200 connections that send nothing: the first 32 hold places until the
    // header-read timeout, the rest are refused at once.
    let mut flood = Vec::new();
    for _ in 0..200 {
        if let Ok(stream) = TcpStream::connect(app.addr()).await {
            flood.push(stream);
        }
    }
    let served = crate::helpers::wait_until(Duration::from_secs(10), || async {
        let response = app.client.post(app.url("/orders")).header("content-type", "application/json")
            .body(crate::helpers::order_body(&[("americano", 1)]).to_string()).send().await.ok()?;
        (response.status() == 201).then_some(())
    })
    .await;
    assert!(served.is_some(), "a customer gets through while the flood's connections are still open");
    drop(flood);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_reads_the_request_and_gets_the_503_not_a_reset() {
    let app = spawn_app_with(|settings| settings.server.max_connections = 1).await;
    let _holder = TcpStream::connect(app.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for attempt in 0..5 {
        let mut refused = TcpStream::connect(app.addr()).await.unwrap();
        // The head first, the body a moment later and in two parts, as a
        // client on a real network sends it. A server that answered and
        // closed at once has reset the connection by the second part, and a
        // client whose send fails (curl, most HTTP libraries) never reads
        // the answer.
        let body = "x".repeat(8 * 1024);
        let head = format!("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        refused.write_all(head.as_bytes()).await.unwrap();
        for part in [&body[..1024], &body[1024..]] {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let sent = refused.write_all(part.as_bytes()).await;
            assert!(sent.is_ok(), "attempt {attempt}: sending the request failed: {sent:?}");
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut answer)).await.unwrap();
        assert!(read.is_ok(), "attempt {attempt}: the 503 was lost to a reset: {read:?}");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 503"), "attempt {attempt}");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_gets_405_with_allow_and_head_works_on_get_routes() {
    let app = crate::helpers::spawn_app().await;
    let response = app.client.delete(app.url("/orders")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    let response = app.client.get(app.url("/orders/x/cancel")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    for path in ["/healthz", "/menu", "/openapi.json", "/"] {
        let response = app.client.head(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "HEAD {path}");
        assert!(response.bytes().await.unwrap().is_empty(), "HEAD {path} has no body");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_crema_variables_do_not_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    // What Kubernetes injects for a Service named `crema`, and a stray CREMA_HOME.
    let server = crate::helpers::Process::crema(
        &dir.path().join("data"),
        &[
            ("CREMA_HOME", "/opt/crema"),
            ("CREMA_PORT", "tcp://10.0.0.1:8080"),
            ("CREMA_PORT_8080_TCP_ADDR", "10.0.0.1"),
            ("CREMA_SERVICE_HOST", "10.0.0.1"),
            ("CREMA_SERVICE_PORT", "8080"),
        ],
    );
    let response = reqwest::get(format!("{}/healthz", server.base)).await.unwrap();
    assert_eq!(response.status(), 200);
    server.terminate();
}

#[test]
fn a_configuration_error_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env("CREMA_SERVER__REQUEST_TIMEOUT_MS", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A crema that accepts the value serves forever: give it ten seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("crema started with request_timeout_ms = 0");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().find(|line| line.starts_with("crema: ")).expect("an error line");
    assert_eq!(line.matches("request_timeout_ms").count(), 1, "{line}");
}
