//! Keys and roles (API.md "Access (contract v2)"): every route class against
//! every kind of caller, store scoping, the staff screens' sign-in, the first
//! start's admin key, `auth.enabled = false`, and backups.

use crema::auth::Role;
use crema::config::Settings;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::stores::{place_at, two_stores};

const HONGDAE_BAR: &str = "crema_hongdae-bar-key";
const GANGNAM_BAR: &str = "crema_gangnam-bar-key";
const GANGNAM_LEAD: &str = "crema_gangnam-lead-key";

/// Two stores (gangnam first, so the default), and a key of each kind besides the admin's.
fn chain_with_staff(settings: &mut Settings) {
    two_stores(settings);
    settings.auth.keys.extend([
        key_config("hongdae-bar", Role::Barista, &["hongdae"], HONGDAE_BAR),
        key_config("gangnam-bar", Role::Barista, &["gangnam"], GANGNAM_BAR),
        key_config("gangnam-lead", Role::Manager, &["gangnam"], GANGNAM_LEAD),
    ]);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Public,
    Barista,
    Manager,
    Admin,
}

/// A request, its class, and the store it is about (`None`: no one store).
struct Route {
    method: &'static str,
    path: String,
    class: Class,
    store: Option<&'static str>,
}

fn route(method: &'static str, path: impl Into<String>, class: Class, store: Option<&'static str>) -> Route {
    Route { method, path: path.into(), class, store }
}

/// Callers: (name, key, role and stores) — `None` key: anonymous.
fn callers() -> Vec<(&'static str, Option<&'static str>, Option<(Role, &'static [&'static str])>)> {
    vec![
        ("anonymous", None, None),
        ("unknown key", Some("crema_not-a-key"), None),
        ("hongdae barista", Some(HONGDAE_BAR), Some((Role::Barista, &["hongdae"]))),
        ("gangnam barista", Some(GANGNAM_BAR), Some((Role::Barista, &["gangnam"]))),
        ("gangnam manager", Some(GANGNAM_LEAD), Some((Role::Manager, &["gangnam"]))),
        ("admin", Some(ADMIN_KEY), Some((Role::Admin, &[]))),
    ]
}

fn expected(route: &Route, who: Option<(Role, &[&str])>) -> Result<(), u16> {
    let needed = match route.class {
        Class::Public => return Ok(()),
        Class::Barista => Role::Barista,
        Class::Manager => Role::Manager,
        Class::Admin => Role::Admin,
    };
    let Some((role, stores)) = who else { return Err(401) };
    let covers = role == Role::Admin || route.store.is_none_or(|store| stores.contains(&store));
    if role >= needed && covers {
        Ok(())
    } else {
        Err(403)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_class_answers_every_kind_of_caller_as_the_contract_says() {
    let app = spawn_app_with(chain_with_staff).await;
    let order = place_at(&app, "gangnam", &[("latte", 1)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    use Class::*;
    let routes = [
        route("GET", "/menu", Public, None),
        route("GET", "/stores", Public, None),
        route("GET", "/stores/hongdae/menu", Public, None),
        route("GET", format!("/orders/{id}"), Public, None),
        route("POST", format!("/orders/{id}/pickup"), Public, None),
        route("GET", "/healthz", Public, None),
        route("GET", "/readyz", Public, None),
        route("GET", "/openapi.json", Public, None),
        route("GET", "/", Public, None),
        route("GET", "/barista", Public, None),
        route("GET", "/dashboard", Public, None),
        // The v1 staff routes are the default store's (gangnam).
        route("GET", "/stations", Barista, Some("gangnam")),
        route("GET", "/queue", Barista, Some("gangnam")),
        route("POST", "/stations/bar-2/resume", Barista, Some("gangnam")),
        route("GET", "/stores/gangnam/queue", Barista, Some("gangnam")),
        route("GET", "/stores/hongdae/queue", Barista, Some("hongdae")),
        route("GET", "/stores/gangnam/stations", Barista, Some("gangnam")),
        route("POST", "/stores/hongdae/stations/bar-1/resume", Barista, Some("hongdae")),
        route("GET", "/stores/gangnam/ready", Barista, Some("gangnam")),
        route("GET", "/stores/hongdae/sold-out", Barista, Some("hongdae")),
        route("DELETE", "/stores/gangnam/sold-out/mocha", Barista, Some("gangnam")),
        route("POST", "/stores/gangnam/ordering/resume", Manager, Some("gangnam")),
        route("POST", "/stores/hongdae/ordering/resume", Manager, Some("hongdae")),
        route("GET", "/orders", Manager, None),
        route("GET", "/stats", Manager, None),
        route("GET", "/metrics", Admin, None),
        route("POST", "/admin/backup", Admin, None),
    ];
    let mut checked = 0;
    for (name, key, who) in callers() {
        let client = match key {
            Some(key) => client_with_key(key, 20),
            None => reqwest::Client::new(),
        };
        for route in &routes {
            let mut request = client.request(route.method.parse().unwrap(), app.url(&route.path));
            if route.method == "POST" {
                request = request.header("content-type", "application/json").body("{}");
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let challenge = response.headers().get("www-authenticate").map(|value| value.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            match expected(route, who) {
                Ok(()) => assert!(
                    !matches!(status, 401 | 403),
                    "{name}: {} {} answered {status}: {body}",
                    route.method,
                    route.path
                ),
                Err(want) => {
                    assert_eq!(status, want, "{name}: {} {}: {body}", route.method, route.path);
                    let problem: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(problem["code"], if want == 401 { "unauthorized" } else { "forbidden" });
                    assert!(problem["request_id"].is_string());
                    assert_eq!(challenge.is_some_and(|value| value.starts_with("Bearer")), want == 401, "{name}: {}", route.path);
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * routes.len());
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_acts_only_on_its_own_stores() {
    let app = spawn_app_with(chain_with_staff).await;
    let hongdae_bar = client_with_key(HONGDAE_BAR, 20);
    // A hongdae barista cannot pause a gangnam station, and can pause their own.
    let refused = hongdae_bar.post(app.url("/stores/gangnam/stations/bar-1/pause")).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("does not cover store \\\"gangnam\\\""));
    let gangnam = app.json("/stores/gangnam/stations").await;
    assert!(gangnam.as_array().unwrap().iter().all(|station| station["state"] != "paused"), "nothing was paused: {gangnam}");
    assert_eq!(hongdae_bar.post(app.url("/stores/hongdae/stations/bar-1/pause")).send().await.unwrap().status(), 200);
    // Nor pause ordering, even at hongdae: that is a manager's.
    assert_eq!(hongdae_bar.post(app.url("/stores/hongdae/ordering/pause")).send().await.unwrap().status(), 403);

    // A gangnam manager's order list, stats and event stream hold gangnam's orders only.
    let mine = place_at(&app, "gangnam", &[("latte", 1)]).await;
    let _ = place_at(&app, "hongdae", &[("espresso", 1)]).await;
    let lead = client_with_key(GANGNAM_LEAD, 20);
    let listed: Value = lead.get(app.url("/orders")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = listed["orders"].as_array().unwrap().iter().map(|order| order["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [mine["id"].as_str().unwrap()], "only gangnam's order: {listed}");
    let everything = app.json("/orders").await;
    assert_eq!(everything["orders"].as_array().unwrap().len(), 2, "the admin sees both");
    let stats: Value = lead.get(app.url("/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["stores"].as_object().unwrap().keys().collect::<Vec<_>>(), ["gangnam"], "{stats}");
    assert_eq!(stats["scope"], json!(["gangnam"]));
    assert_eq!(stats["revenue"], mine["total"], "the totals are gangnam's: {stats}");
    assert_eq!(stats["orders"], json!({}), "chain-wide counts are not a manager's: {stats}");
    assert_eq!(app.stats().await["scope"], "all");

    // Streams carry what happens after they open: one order at each store, hongdae's first.
    let managers = lead.get(app.url("/events")).send().await.unwrap();
    assert_eq!(managers.status(), 200);
    let baristas = hongdae_bar.get(app.url("/stores/hongdae/events")).send().await.unwrap();
    let theirs = place_at(&app, "hongdae", &[("espresso", 1)]).await;
    let mine = place_at(&app, "gangnam", &[("latte", 1)]).await;
    let events = crate::events::read_events(&mut Some(managers), 1).await;
    assert_eq!(events[0].2["id"], mine["id"], "the manager's stream skips hongdae's order: {events:?}");
    // A barista's screen follows their store's stream; another store's is refused.
    let events = crate::events::read_events(&mut Some(baristas), 1).await;
    assert_eq!(events[0].2["id"], theirs["id"]);
    assert_eq!(hongdae_bar.get(app.url("/stores/gangnam/events")).send().await.unwrap().status(), 403);
    assert_eq!(hongdae_bar.get(app.url("/events")).send().await.unwrap().status(), 403);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staff_screens_sign_in_with_a_session_cookie() {
    let app = spawn_app_with(chain_with_staff).await;
    let browser = reqwest::Client::new();
    let sign_in = |key: &str| browser.post(app.url("/session")).header("content-type", "application/json").body(json!({"key": key}).to_string());
    assert_eq!(sign_in("crema_wrong").send().await.unwrap().status(), 401);
    assert_eq!(browser.post(app.url("/session")).body("not json").send().await.unwrap().status(), 400);

    let signed = sign_in(HONGDAE_BAR).send().await.unwrap();
    assert_eq!(signed.status(), 200);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["crema_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains(HONGDAE_BAR), "the cookie holds a session token, not the key");
    let who: Value = signed.json().await.unwrap();
    assert_eq!((who["name"].as_str(), who["role"].as_str()), (Some("hongdae-bar"), Some("barista")));
    assert_eq!(who["stores"], json!(["hongdae"]));

    let session = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = |method: reqwest::Method, path: &str| browser.request(method, app.url(path)).header("cookie", &session);
    assert_eq!(with_cookie(reqwest::Method::GET, "/session").send().await.unwrap().json::<Value>().await.unwrap()["name"], "hongdae-bar");
    assert_eq!(with_cookie(reqwest::Method::GET, "/stores/hongdae/queue").send().await.unwrap().status(), 200);
    assert_eq!(with_cookie(reqwest::Method::GET, "/stores/gangnam/queue").send().await.unwrap().status(), 403);
    let events = with_cookie(reqwest::Method::GET, "/stores/hongdae/events").send().await.unwrap();
    assert_eq!(events.status(), 200, "EventSource sends the cookie");
    drop(events);

    let out = with_cookie(reqwest::Method::DELETE, "/session").send().await.unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(reqwest::Method::GET, "/stores/hongdae/queue").send().await.unwrap().status(), 401, "signed out");
    assert_eq!(browser.get(app.url("/session")).send().await.unwrap().status(), 401);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_makes_an_admin_key_and_keeps_only_its_hash() {
    let app = spawn_app_with(|settings| settings.auth.keys.clear()).await;
    let key = app.first_admin_key().expect("a key made at the first start");
    assert!(key.starts_with("crema_") && key.len() == 70, "{key}");
    assert_eq!(reqwest::Client::new().get(app.url("/stats")).send().await.unwrap().status(), 401);
    assert_eq!(client_with_key(&key, 20).get(app.url("/stats")).send().await.unwrap().status(), 200);
    let dir = app.shutdown().await;
    let data = std::fs::read_dir(dir.path().join("data")).unwrap();
    for file in data {
        let bytes = std::fs::read(file.unwrap().path()).unwrap_or_default();
        assert!(!bytes.windows(key.len()).any(|window| window == key.as_bytes()), "the key itself is kept nowhere");
    }

    // Restarted: no new key, the first one still works.
    let app = TestApp::restart_in(dir, |settings| settings.auth.keys.clear()).await;
    assert!(app.first_admin_key().is_none(), "a key is made once");
    assert_eq!(client_with_key(&key, 20).get(app.url("/stats")).send().await.unwrap().status(), 200);
    // Once keys are configured, the first start's key is no longer accepted.
    let app = app.restart_with(|_| {}).await;
    assert_eq!(client_with_key(&key, 20).get(app.url("/stats")).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/stats").await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_can_be_turned_off_and_metrics_made_public() {
    let app = spawn_app_with(|settings| {
        settings.auth.enabled = false;
        settings.auth.keys.clear();
    })
    .await;
    let anyone = reqwest::Client::new();
    assert_eq!(anyone.get(app.url("/stats")).send().await.unwrap().status(), 200);
    assert_eq!(anyone.post(app.url("/stations/bar-1/pause")).send().await.unwrap().status(), 200);
    let who: Value = anyone.get(app.url("/session")).send().await.unwrap().json().await.unwrap();
    assert_eq!(who["access"], "off");
    assert!(app.first_admin_key().is_none(), "no key is made while checks are off");
    app.shutdown().await;

    let app = spawn_app_with(|settings| settings.auth.public_metrics = true).await;
    assert_eq!(anyone.get(app.url("/metrics")).send().await.unwrap().status(), 200);
    assert_eq!(anyone.get(app.url("/stats")).send().await.unwrap().status(), 401, "only the metrics are public");
    app.shutdown().await;

    // What the benchmark scripts do: the environment turns checks off.
    let dir = tempfile::tempdir().unwrap();
    let server = Process::crema(&dir.path().join("data"), &[("CREMA_AUTH__ENABLED", "false")]);
    wait_ready(&anyone, &server.base).await;
    assert_eq!(anyone.get(format!("{}/stats", server.base)).send().await.unwrap().status(), 200);
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crema_backup_copies_a_serving_engine_and_the_copy_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Process::crema(&data, &[]);
    let client = admin_client(20);
    wait_ready(&client, &server.base).await;
    let placed: Value = client
        .post(format!("{}/orders", server.base))
        .header("content-type", "application/json")
        .body(order_body(&[("latte", 1)]).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last_backup = |base: String| {
        let client = client.clone();
        async move {
            let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            let line = text.lines().find(|line| line.starts_with("crema_last_backup_timestamp_seconds ")).expect("the metric");
            line.rsplit(' ').next().unwrap().parse::<f64>().unwrap()
        }
    };
    assert_eq!(last_backup(server.base.clone()).await, 0.0, "never backed up");
    let copy = dir.path().join("backup");
    let backup = |key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crema"))
            .args(["backup", copy.to_str().unwrap(), "--target", &server.base])
            .env("CREMA_KEY", key)
            .output()
            .unwrap()
    };
    let refused = backup("crema_not-a-key");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{}", String::from_utf8_lossy(&refused.stderr));
    let done = backup(ADMIN_KEY);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(String::from_utf8_lossy(&done.stdout).contains("backup written"));
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let recorded = last_backup(server.base.clone()).await;
    assert!((now_s - recorded).abs() < 60.0, "the backup's time is recorded: {recorded} vs now {now_s}");
    let again = backup(ADMIN_KEY);
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"), "a backup never overwrites");
    server.terminate();

    // Restore: start on the copy.
    let restored = Process::crema(&copy, &[]);
    let order: Value = client.get(format!("{}/orders/{}", restored.base, placed["id"].as_str().unwrap())).send().await.unwrap().json().await.unwrap();
    assert_eq!(order["id"], placed["id"]);
    assert_eq!(order["total"], placed["total"]);
    assert_eq!(last_backup(restored.base.clone()).await, 0.0, "a copy does not hold its own backup's record");
    drop(restored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_keys_and_a_removed_key_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("crema.toml");
    let data = dir.path().join("data");
    let barista = |name: &str, key: &str| {
        format!("[[auth.keys]]\nname = \"{name}\"\nrole = \"barista\"\nstores = [\"main\"]\nsha256 = \"{}\"\n", crema::auth::sha256_hex(key))
    };
    std::fs::write(&config, admin_toml() + &barista("old-bar", GANGNAM_BAR)).unwrap();
    let server = Process::start(
        &["serve", "--bind", "127.0.0.1:0", "--data", data.to_str().unwrap(), "--config", config.to_str().unwrap()],
        &[],
    );
    let base = server.base.clone();
    let (old, new) = (client_with_key(GANGNAM_BAR, 20), client_with_key(HONGDAE_BAR, 20));
    wait_ready(&old, &base).await;
    let status = |client: &reqwest::Client| {
        let request = client.get(format!("{base}/queue"));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!((status(&old).await, status(&new).await), (200, 401));
    let signed: reqwest::Response = reqwest::Client::new()
        .post(format!("{base}/session"))
        .body(json!({"key": GANGNAM_BAR}).to_string())
        .send()
        .await
        .unwrap();
    let session = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let with_session = reqwest::Client::new().get(format!("{base}/queue")).header("cookie", &session);

    // A configuration that does not load leaves the keys in use.
    std::fs::write(&config, "[auth\n").unwrap();
    server.signal(libc::SIGHUP);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(status(&old).await, 200, "a broken configuration changes nothing");

    std::fs::write(&config, admin_toml() + &barista("new-bar", HONGDAE_BAR)).unwrap();
    server.signal(libc::SIGHUP);
    wait_until(std::time::Duration::from_secs(10), || async { (status(&new).await == 200).then_some(()) })
        .await
        .expect("the new key works after SIGHUP");
    assert_eq!(status(&old).await, 401, "the removed key stopped");
    assert_eq!(with_session.send().await.unwrap().status(), 401, "and its sign-in with it");
    server.terminate();
}
