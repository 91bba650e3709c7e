//! `spawn_app()` and a client with one method per endpoint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crema::app::App;
use crema::auth::{KeyConfig, Role};
use crema::config::Settings;
use serde_json::{json, Value};

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    app: Option<App>,
    pub dir: tempfile::TempDir,
}

/// The admin key every test app is configured with; [`TestApp::client`] and
/// [`admin_client`] send it.
pub const ADMIN_KEY: &str = "crema_test-admin-key-not-secret";

/// A `[[auth.keys]]` entry for `key`.
pub fn key_config(name: &str, role: Role, stores: &[&str], key: &str) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        role,
        stores: stores.iter().map(|store| (*store).to_owned()).collect(),
        sha256: crema::auth::sha256_hex(key),
    }
}

/// [`ADMIN_KEY`] as configuration lines, for tests that write a config file.
pub fn admin_toml() -> String {
    format!("\n[[auth.keys]]\nname = \"test-admin\"\nrole = \"admin\"\nsha256 = \"{}\"\n", crema::auth::sha256_hex(ADMIN_KEY))
}

/// A client that presents `key` on every request.
pub fn client_with_key(key: &str, timeout_s: u64) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().timeout(Duration::from_secs(timeout_s)).default_headers(headers).build().unwrap()
}

/// A client that presents [`ADMIN_KEY`] on every request.
pub fn admin_client(timeout_s: u64) -> reqwest::Client {
    client_with_key(ADMIN_KEY, timeout_s)
}

/// Settings for tests: port 0, a fresh data dir, fast simulated baristas, [`ADMIN_KEY`].
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.auth.keys = vec![key_config("test-admin", Role::Admin, &[], ADMIN_KEY)];
    settings.server.bind = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = dir.join("data");
    settings.barista.brew_scale = 0.01;
    settings.orders.passivate_after_ms = 200;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(tempfile::tempdir().unwrap(), configure).await
}

/// `stations` stations driven by hand (`next`/`done`): tickets wait until told.
pub fn manual_stations(settings: &mut Settings, stations: usize) {
    settings.barista.mode = crema::config::StationMode::Manual;
    settings.barista.stations = stations;
}

/// An app over `dir` (a restart when it holds the data of an app before).
async fn spawn_app_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
    crema::telemetry::init_for_tests();
    let mut settings = test_settings(dir.path());
    configure(&mut settings);
    let app = App::start(settings).await.expect("the app starts");
    TestApp {
        base: format!("http://{}", app.local_addr()),
        client: admin_client(20),
        app: Some(app),
        dir,
    }
}

/// The statuses in an order's `history`, oldest first.
pub fn history(order: &Value) -> Vec<&str> {
    order["history"].as_array().unwrap().iter().map(|entry| entry["status"].as_str().unwrap()).collect()
}

pub fn order_body(items: &[(&str, u32)]) -> Value {
    json!({
        "customer": "kim",
        "items": items.iter().map(|(id, qty)| json!({"menu_id": id, "qty": qty})).collect::<Vec<_>>(),
    })
}

impl TestApp {
    /// Orders recovery put back from `brewing` to `queued` at start-up.
    pub fn recovery_requeued(&self) -> usize {
        self.app.as_ref().map_or(0, |app| app.recovery.requeued)
    }

    /// Disagreements recovery found between the ticket index and the snapshots.
    pub fn recovery_disagreements(&self) -> usize {
        self.app.as_ref().map_or(0, |app| app.recovery.ticket_index_disagreements)
    }

    /// The engine inside, for fault injection.
    pub fn engine(&self) -> &std::sync::Arc<crema::actors::engine::Engine> {
        self.app.as_ref().expect("the app is running").engine()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str) -> reqwest::Response {
        self.client.post(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn place(&self, items: &[(&str, u32)]) -> reqwest::Response {
        self.post_json("/orders", &order_body(items)).await
    }

    /// `POST /orders` with an `Idempotency-Key`.
    pub async fn place_with_key(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// The host:port the server listens on, for raw TCP clients.
    pub fn addr(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// Places an order that must succeed; returns its JSON.
    pub async fn place_ok(&self, items: &[(&str, u32)]) -> Value {
        let response = self.place(items).await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    pub async fn order(&self, id: &str) -> Value {
        let response = self.get(&format!("/orders/{id}")).await;
        assert_eq!(response.status(), 200, "GET /orders/{id}");
        response.json().await.unwrap()
    }

    pub async fn cancel(&self, id: &str) -> reqwest::Response {
        self.post(&format!("/orders/{id}/cancel")).await
    }

    pub async fn pickup(&self, id: &str) -> reqwest::Response {
        self.post(&format!("/orders/{id}/pickup")).await
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn station(&self, id: &str, action: &str) -> reqwest::Response {
        self.post(&format!("/stations/{id}/{action}")).await
    }

    pub async fn pause_all(&self) {
        for station in self.json("/stations").await.as_array().unwrap() {
            let id = station["id"].as_str().unwrap();
            assert_eq!(self.station(id, "pause").await.status(), 200);
        }
    }

    pub async fn resume_all(&self) {
        for station in self.json("/stations").await.as_array().unwrap() {
            let id = station["id"].as_str().unwrap();
            assert_eq!(self.station(id, "resume").await.status(), 200);
        }
    }

    /// Polls the order until it has `status`, or fails after `within`.
    pub async fn wait_for(&self, id: &str, status: &str, within: Duration) -> Value {
        wait_until(within, || async {
            let order = self.order(id).await;
            (order["status"] == status).then_some(order)
        })
        .await
        .unwrap_or_else(|| panic!("order {id} did not become {status} within {within:?}"))
    }

    pub async fn stats(&self) -> Value {
        self.json("/stats").await
    }

    /// Shuts down cleanly and starts again on the same data, configured by
    /// `configure` (on top of the test settings).
    /// The admin key this app's first start made, if it made one.
    pub fn first_admin_key(&self) -> Option<String> {
        self.app.as_ref().and_then(|app| app.first_admin_key.clone())
    }

    /// An app over the data `dir` of an app before.
    pub async fn restart_in(dir: tempfile::TempDir, configure: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_app_in(dir, configure).await
    }

    pub async fn restart_with(self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        spawn_app_in(self.shutdown().await, configure).await
    }

    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.dir
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or `within` passes.
pub async fn wait_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real `crema` process (`serve` or `payment-sim`), killed when dropped.
/// Waits (up to 30 s) until the crema at `base` answers `/readyz` with 200:
/// recovery has finished. Panics if it does not.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    wait_until(Duration::from_secs(30), || async {
        client.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await
    .unwrap_or_else(|| panic!("{base} was not ready within 30 s"));
}

pub struct Process {
    child: Child,
    pub base: String,
}

impl Process {
    /// Runs `crema ARGS` with `envs` and waits for its "listening on" line.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crema"));
        command.args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("crema starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(120)).expect("crema prints its address");
        let base = line.rsplit(' ').next().unwrap_or_default().trim().to_owned();
        assert!(base.starts_with("http://127.0.0.1:"), "unexpected first line {line:?}");
        Process { child, base }
    }

    /// `crema serve` on port 0 over `data`, with fast baristas, [`ADMIN_KEY`]
    /// (in a config file beside `data`) and `envs` on top.
    pub fn crema(data: &Path, envs: &[(&str, &str)]) -> Process {
        let mut all = vec![("CREMA_BARISTA__BREW_SCALE", "0.05"), ("CREMA_BARISTA__STATIONS", "2")];
        all.extend_from_slice(envs);
        let config = data.with_extension("keys.toml");
        std::fs::write(&config, admin_toml()).unwrap();
        Process::start(
            &["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()],
            &all,
        )
    }

    /// `crema payment-sim` on `port` over `data`, with extra flags.
    pub fn payment_sim(port: u16, data: &Path, flags: &[&str]) -> Process {
        let bind = format!("127.0.0.1:{port}");
        let mut args = vec!["payment-sim", "--bind", &bind, "--data", data.to_str().unwrap()];
        args.extend_from_slice(flags);
        Process::start(&args, &[])
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Places orders from `workers` concurrent clients against `base` until at
/// least `count` are acknowledged, then kills `server` with SIGKILL mid-stream.
/// Returns every order that got a 201 before the kill.
pub async fn orders_until_killed(server: Process, workers: usize, count: usize) -> Vec<Value> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let client = crate::helpers::admin_client(10);
    let acknowledged: Arc<Mutex<Vec<Value>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let menu = ["americano", "latte", "espresso", "cold_brew"];
    let mut clients = Vec::new();
    for worker in 0..workers {
        let (client, base, acknowledged, stop) = (client.clone(), server.base.clone(), acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = order_body(&[(menu[(worker + n) % menu.len()], 1 + (n % 3) as u32)]);
                let sent = client
                    .post(format!("{base}/orders"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 201 => {
                        if let Ok(order) = response.json::<Value>().await {
                            acknowledged.lock().unwrap().push(order);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    let enough = wait_until(Duration::from_secs(60), || async { (acknowledged.lock().unwrap().len() >= count).then_some(()) }).await;
    assert!(enough.is_some(), "{count} orders should be acknowledged within a minute");
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    for task in clients {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    acknowledged
}
