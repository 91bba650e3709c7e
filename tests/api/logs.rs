//! Issue 12: request ids on every answer and in every problem document; one
//! access line per request; JSON logs; no colour codes when not a terminal.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_problems_name_it() {
    let app = spawn_app().await;
    let given = app.client.get(app.url("/menu")).header("x-request-id", "till-7:abc-123").send().await.unwrap();
    assert_eq!(given.headers()["x-request-id"], "till-7:abc-123", "a client's id is kept");
    let made = app.get("/menu").await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID when the client sent none: {id}");
    for bad in ["has space", "quote\"d", &"x".repeat(129)] {
        let response = app.client.get(app.url("/menu")).header("x-request-id", bad).send().await.unwrap();
        assert_ne!(response.headers()["x-request-id"], bad, "an unsafe id is replaced");
    }
    let missing = app.client.get(app.url("/orders/nope")).header("x-request-id", "req-42").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-request-id"], "req-42");
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["request_id"], "req-42", "{problem}");
    let bad_body = app
        .client
        .post(app.url("/orders"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-43")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_body.json::<Value>().await.unwrap()["request_id"], "req-43");
    let unrouted = app.client.get(app.url("/nowhere")).header("x-request-id", "req-44").send().await.unwrap();
    assert_eq!(unrouted.json::<Value>().await.unwrap()["request_id"], "req-44", "a rejection too");
    app.shutdown().await;
}

/// Runs `crema serve` with `envs`, makes a 201 and a 404, stops it, and
/// returns what it wrote to stderr.
async fn serve_and_log(envs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_crema"));
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data", dir.path().join("data").to_str().unwrap()])
        .env("RUST_LOG", "info")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    let base = first.trim().rsplit(' ').next().unwrap().to_owned();
    // No key is configured: the first start shows its admin key on stdout, right after the address.
    let mut said = String::new();
    let key = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "no first-start key: {said}");
        said.push_str(&line);
        if let Some(key) = line.split_whitespace().find(|word| word.starts_with("crema_") && word.len() == 70) {
            break key.to_owned();
        }
    };
    let client = crate::helpers::client_with_key(&key, 30);
    wait_ready(&client, &base).await;
    let placed = client
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-place")
        .body(r#"{"customer":"kim","items":[{"menu_id":"espresso","qty":1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id = placed.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    client.get(format!("{base}/orders/{id}")).header("x-request-id", "req-get").send().await.unwrap();
    client.get(format!("{base}/orders/missing")).header("x-request-id", "req-404").send().await.unwrap();
    let stats = client.get(format!("{base}/stats")).header("x-request-id", "req-staff").send().await.unwrap();
    assert_eq!(stats.status(), 200);
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    stdout.read_to_string(&mut said).unwrap();
    child.wait().unwrap();
    assert!(said.contains(&format!("/barista#key={key}")), "a sign-in link: {said}");
    assert_eq!(said.matches(key.as_str()).count(), 2, "shown once (the key and its link): {said}");
    assert!(!log.contains(&key), "the admin key is not logged");
    log.replace("{id}", &id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_have_one_access_line_per_request_and_no_secrets() {
    let log = serve_and_log(&[("CREMA_LOG__FORMAT", "json")]).await;
    let lines: Vec<Value> = log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect();
    let access = |id: &str| lines.iter().find(|line| line["request_id"] == id).unwrap_or_else(|| panic!("no access line for {id}: {log}")).clone();
    let placed = access("req-place");
    assert_eq!((placed["method"].as_str(), placed["route"].as_str(), placed["status"].as_u64()), (Some("POST"), Some("place_order"), Some(201)));
    assert_eq!(placed["target"], "crema::access");
    assert!(placed["latency_ms"].is_f64(), "{placed}");
    let order = placed["order"].as_str().unwrap().to_owned();
    assert_eq!(order.len(), 36, "the new order's id, from its Location: {placed}");
    assert_eq!(access("req-get")["order"], order.as_str());
    assert_eq!(access("req-404")["status"], 404);
    let staff = access("req-staff");
    assert_eq!((staff["status"].as_u64(), staff["key"].as_str()), (Some(200), Some("admin")), "the key's name, not the key: {staff}");
    // Three order requests, and the operations routes (/readyz polls and /stats).
    assert_eq!(lines.iter().filter(|line| line["target"] == "crema::access").count(), 3 + lines.iter().filter(|l| l["route"] == "operations").count());
    let recovery = lines.iter().find(|line| line["message"] == "recovery finished; ready").expect("the recovery line");
    assert!(recovery["orders"].is_u64(), "recovery as fields, not a debug dump: {recovery}");
    assert!(!log.contains("crema-"), "no payment keys in the log");
    assert!(!log.contains("sim_"), "no payment ids in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    let log = serve_and_log(&[]).await;
    assert!(log.contains("request_id=req-place"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a piped log: {log}");
}

#[test]
fn crema_answers_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_crema")).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("crema {}", env!("CARGO_PKG_VERSION")));
}
