//! The end-to-end suite behind BENCHMARKS.md: every figure in one run, side
//! by side, each load applied by `crema rush` (the same tool for every server).
//!
//! `make rush-bench` (= `cargo bench --bench ceiling --no-run && cargo bench --bench rush`).
//! Reports go to `target/rush-bench/` (one JSON per rush, and `summary.md`).
//!
//! Sections 1–3 run crema with `examples/chain.toml` (three stores, bar and
//! kitchen stations), so `crema rush` orders with options at every store and
//! some orders need two stations: a café's real work.
//!
//! 1. Saturation: `POST /orders` only, 256 connections, open-loop at rates
//!    rising by half until the server falls behind, against the ceiling (`benches/ceiling.rs`), crema `sync` and
//!    crema `async` (simulated payment with zero latency, `brew_scale = 0`).
//! 2. p99 at half of each saturation rate, open-loop.
//! 3. Overload: twice the sync saturation rate with 1,024 connections.
//! 4. Memory per live order actor: RSS with N orders queued (stations in
//!    manual mode, so every order stays live) against RSS with the same N
//!    orders completed and passivated.
//! 5. RSS after 1,000,000 completed orders, then start-up recovery of those
//!    orders plus 10,000 live ones.
//!
//! With `taskset` and at least two cores, every server is pinned to the last
//! core and `crema rush` to the others, so that the generator's own work
//! (which doubles with the offered rate) does not eat the server's CPU: the
//! figures are per server core. `RUSH_PIN=0` turns that off.
//!
//! `RUSH_SCALE=0.1` shrinks every count and duration (a quick look; the
//! figures in BENCHMARKS.md are from the default scale 1).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const CREMA: &str = env!("CARGO_BIN_EXE_crema");
/// The chain the saturation and overload rushes run against.
const CHAIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chain.toml");

/// `(server cpus, generator cpus)` for `taskset -c`, if pinning.
fn pinning() -> Option<(String, String)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = std::env::var("RUSH_PIN").map_or(true, |v| v != "0");
    let taskset = Command::new("taskset").arg("-V").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    (wanted && taskset && cores >= 2).then(|| ((cores - 1).to_string(), format!("0-{}", cores - 2)))
}

/// `program` under `taskset -c cpus` when pinning (taskset execs it: same pid).
fn pinned(program: &str, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.args(["-c", cpus, program]);
            command
        }
        None => Command::new(program),
    }
}

fn generator() -> Command {
    pinned(CREMA, pinning().as_ref().map(|(_, generator)| generator.as_str()))
}

fn server_command(program: &str) -> Command {
    pinned(program, pinning().as_ref().map(|(server, _)| server.as_str()))
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        // `cargo bench -- --list` and test discovery: nothing to list.
        return;
    }
    let scale: f64 = std::env::var("RUSH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/rush-bench");
    std::fs::create_dir_all(&out).expect("an output directory");
    let suite = Suite { out, scale, port: 7300 };
    let summary = suite.run();
    println!("\n{summary}");
    std::fs::write(suite.out.join("summary.md"), &summary).expect("summary written");
    println!("(written to {})", suite.out.join("summary.md").display());
}

struct Suite {
    out: PathBuf,
    scale: f64,
    port: u16,
}

/// The environment every crema server of the suite gets: the issue's
/// "simulated payment with zero latency and fast stations", and access
/// checks off (the suite reads `/stats` without a key).
const FAST: &[(&str, &str)] = &[
    ("CREMA_PAYMENT__SIMULATED__LATENCY_MS", "0"),
    ("CREMA_BARISTA__BREW_SCALE", "0"),
    ("CREMA_AUTH__ENABLED", "false"),
];

impl Suite {
    fn secs(&self, seconds: f64) -> f64 {
        (seconds * self.scale).max(3.0)
    }

    fn count(&self, n: u64) -> u64 {
        ((n as f64 * self.scale) as u64).max(1_000)
    }

    fn run(&self) -> String {
        let mut md = String::new();
        let machine = machine();
        let pin = match pinning() {
            Some((server, generator)) => format!("servers pinned to CPU {server}, `crema rush` to CPU {generator}"),
            None => "servers and `crema rush` share every core".to_owned(),
        };
        md += &format!("Machine: {machine}; {pin}. Scale {}. Each rush: `crema rush --profile constant --orders-only`.\n\n", self.scale);

        // 1 + 2: ceiling, sync, async.
        let ceiling = Server::ceiling(self.port);
        let ceiling_rate = self.saturation("ceiling", &ceiling);
        drop(ceiling);

        let mut rows = vec![("ceiling (trivial warp)".to_owned(), ceiling_rate, None::<Value>)];
        let mut saturation = Vec::new();
        for durability in ["sync", "async"] {
            let server = Server::chain(self.port + 1, &self.data(durability), &[("CREMA_STORE__DURABILITY", durability)]);
            let rate = self.saturation(durability, &server);
            let half = self.rush(&format!("{durability}-half"), &server, (rate / 2.0).max(1.0), 256, 10.0);
            rows.push((format!("crema, durability = \"{durability}\""), rate, Some(half)));
            saturation.push((durability, rate));
            drop(server);
        }
        md += "### Saturation and latency at half of it\n\n";
        md += "| server | accepted orders/s at saturation | × ceiling | POST /orders p50 / p99 / p99.9 at half that rate (ms) |\n|---|---|---|---|\n";
        for (name, rate, half) in &rows {
            let latency = half.as_ref().map_or("–".to_owned(), |half| {
                let l = &endpoint(half, "POST /orders")["latency_ms"];
                format!("{:.2} / {:.2} / {:.2}", l["p50"].as_f64().unwrap_or(0.0), l["p99"].as_f64().unwrap_or(0.0), l["p999"].as_f64().unwrap_or(0.0))
            });
            md += &format!("| {name} | {rate:.0} | {:.3} | {latency} |\n", rate / ceiling_rate);
        }

        // 3: overload at twice the sync saturation.
        let sync_rate = saturation[0].1;
        let server = Server::chain(self.port + 2, &self.data("overload"), &[("CREMA_STORE__DURABILITY", "sync")]);
        let over = self.rush("sync-overload", &server, 2.0 * sync_rate, 1_024, 20.0);
        drop(server);
        let orders = endpoint(&over, "POST /orders");
        let shed = &orders["shed_latency_ms"];
        let statuses = &orders["statuses"];
        let count = |code: &str| statuses[code].as_u64().unwrap_or(0);
        md += &format!(
            "\n### Overload: {:.0} orders/s offered (2 × sync saturation), 1,024 connections, {:.0} s\n\n\
             | goodput (201/s) | × saturation | 201 | 429 | 503 | errors/timeouts/dropped | shed p50 / p99 / max (ms) | RSS start / peak / end (MiB) |\n|---|---|---|---|---|---|---|---|\n\
             | {:.0} | {:.3} | {} | {} | {} | {} | {:.2} / {:.2} / {:.2} | {:.0} / {:.0} / {:.0} |\n",
            2.0 * sync_rate,
            self.secs(20.0),
            accepted(&over),
            accepted(&over) / sync_rate,
            count("201"),
            count("429"),
            count("503"),
            count("error") + count("timeout") + count("dropped"),
            shed["p50"].as_f64().unwrap_or(0.0),
            shed["p99"].as_f64().unwrap_or(0.0),
            shed["max"].as_f64().unwrap_or(0.0),
            over["memory"]["start_mib"].as_f64().unwrap_or(0.0),
            over["memory"]["peak_mib"].as_f64().unwrap_or(0.0),
            over["memory"]["end_mib"].as_f64().unwrap_or(0.0),
        );

        // 4: memory per live order actor.
        md += &self.memory_per_actor();
        // 5: a million completed orders, then recovery.
        md += &self.million(sync_rate);
        md
    }

    fn data(&self, name: &str) -> PathBuf {
        let dir = self.out.join(format!("data-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The most orders per second a server accepts: open-loop rushes at rates
    /// rising by half each step, until one is not kept up with (under 95 % of
    /// the offered rate accepted); the best accepted rate of all steps.
    fn saturation(&self, name: &str, server: &Server) -> f64 {
        let mut rate = 2_000.0;
        let mut best: f64 = 0.0;
        for step in 0..14 {
            let report = self.rush(&format!("{name}-saturation-{step}"), server, rate, 256, 5.0);
            let got = accepted(&report);
            println!("   offered {rate:.0}/s, accepted {got:.0}/s");
            best = best.max(got);
            if got < 0.95 * rate {
                break;
            }
            rate *= 1.5;
        }
        println!("   {name} saturation: {best:.0} orders/s");
        best
    }

    /// One constant-rate, orders-only rush of `seconds` (scaled) after a 2 s warm-up.
    fn rush(&self, name: &str, server: &Server, rate: f64, connections: usize, seconds: f64) -> Value {
        let duration = self.secs(seconds) + 2.0;
        println!("== {name}: {rate:.0}/s, {connections} connections, {duration:.0} s against {}", server.url());
        self.run_rush(name, server, rate, connections, duration, 2.0)
    }

    /// `crema rush --profile constant --orders-only` against `server`; its JSON report.
    fn run_rush(&self, name: &str, server: &Server, rate: f64, connections: usize, duration: f64, warmup: f64) -> Value {
        let path = self.out.join(format!("{name}.json"));
        let status = generator()
            .args(["rush", "--target", &server.url(), "--profile", "constant", "--orders-only", "--quiet"])
            .args(["--rate", &format!("{rate:.0}"), "--duration", &format!("{duration}"), "--warmup", &format!("{warmup}")])
            .args(["--connections", &connections.to_string(), "--timeout", "10"])
            .args(["--pid", &server.child.id().to_string(), "--out"])
            .arg(&path)
            .status()
            .expect("crema rush runs");
        assert!(status.success(), "crema rush failed for {name}");
        serde_json::from_slice(&std::fs::read(&path).expect("a report")).expect("a JSON report")
    }

    fn memory_per_actor(&self) -> String {
        let n = self.count(50_000);
        let rate = 5_000.0;
        let seconds = n as f64 / rate;
        let roomy = [("CREMA_ORDERS__MAX_LIVE", "200000"), ("CREMA_BARISTA__MAX_QUEUE", "200000")];
        let mut rss = Vec::new();
        for (name, extra) in [("live", ("CREMA_BARISTA__MODE", "manual")), ("passivated", ("CREMA_ORDERS__PASSIVATE_AFTER_MS", "200"))] {
            let mut env = roomy.to_vec();
            env.push(extra);
            let server = Server::crema(self.port + 3, &self.data(&format!("actors-{name}")), &env);
            let before = rss_mib(server.child.id());
            self.place(&server, n, rate, seconds, &format!("actors-{name}"));
            std::thread::sleep(Duration::from_secs(2));
            let stats = get_json(server.addr, "/stats");
            rss.push((name, before, rss_mib(server.child.id()), stats["live_actors"].as_u64().unwrap_or(0)));
        }
        let (live, passivated) = (&rss[0], &rss[1]);
        let per_actor_kib = (live.2 - passivated.2) * 1024.0 / (live.3.saturating_sub(passivated.3)).max(1) as f64;
        format!(
            "\n### Memory per live order actor\n\n{n} orders placed at {rate:.0}/s into each of two fresh servers.\n\n\
             | server | live order actors | RSS before / after (MiB) |\n|---|---|---|\n\
             | stations manual: every order stays queued and live | {} | {:.1} / {:.1} |\n\
             | instant stations, passivate after 200 ms | {} | {:.1} / {:.1} |\n\n\
             Difference per live order (actor, mailbox, directory entry, queue ticket): **{per_actor_kib:.2} KiB**.\n",
            live.3, live.1, live.2, passivated.3, passivated.1, passivated.2
        )
    }

    /// Places `n` orders at `rate` (open-loop, 256 connections) and checks they were all accepted.
    fn place(&self, server: &Server, n: u64, rate: f64, seconds: f64, name: &str) -> Value {
        let report = self.run_rush(name, server, rate, 256, seconds, 0.0);
        let placed = report["orders_accepted"].as_u64().unwrap_or(0);
        println!("   {name}: {placed} of {n} accepted");
        report
    }

    fn million(&self, sync_rate: f64) -> String {
        let n = self.count(1_000_000);
        let live = self.count(10_000);
        let data = self.data("million");
        // Below saturation so that nothing is shed.
        let rate = (sync_rate * 0.7).max(1_000.0);
        let server = Server::crema(self.port + 4, &data, &[("CREMA_STORE__DURABILITY", "sync")]);
        let start_rss = rss_mib(server.child.id());
        let report = self.place(&server, n, rate, n as f64 / rate, "million");
        let mut placed = report["orders_accepted"].as_u64().unwrap_or(0);
        let peak = report["memory"]["peak_mib"].as_f64().unwrap_or(0.0);
        // Whatever was shed (429 in a burst) is placed again, slower.
        for round in 0..5 {
            if placed >= n {
                break;
            }
            let missing = n - placed;
            let slower = (rate / 4.0).min(missing as f64);
            let again = self.place(&server, missing, slower, missing as f64 / slower, &format!("million-again-{round}"));
            placed += again["orders_accepted"].as_u64().unwrap_or(0);
        }
        std::thread::sleep(Duration::from_secs(3));
        let settled = rss_mib(server.child.id());
        let settled_live = get_json(server.addr, "/stats")["live_actors"].as_u64().unwrap_or(0);
        server.stop();

        // The same data, stations manual: `live` more orders stay queued.
        let server = Server::crema(self.port + 4, &data, &[("CREMA_BARISTA__MODE", "manual")]);
        self.place(&server, live, 2_000.0, live as f64 / 2_000.0, "million-live");
        let queued = get_json(server.addr, "/stats")["orders"]["queued"].as_u64().unwrap_or(0);
        server.stop();

        let began = Instant::now();
        let server = Server::crema(self.port + 4, &data, &[("CREMA_BARISTA__MODE", "manual")]);
        let ready = began.elapsed();
        let on_disk = get_json(server.addr, "/stats")["orders"].as_object().map_or(0, |o| o.values().filter_map(Value::as_u64).sum::<u64>());
        let recovered_rss = rss_mib(server.child.id());
        let took_ms = recovery_ms(&server.log);
        server.stop();
        format!(
            "\n### A million orders: memory, then recovery\n\n\
             {placed} orders placed at {rate:.0}/s (what a burst shed was placed again at a quarter of that; sync, instant stations, never picked up: they end `ready` and passivate after 1 s).\n\n\
             | RSS at start | peak during the rush | 3 s after the last order | live actors then |\n|---|---|---|---|\n\
             | {start_rss:.1} MiB | {peak:.1} MiB | {settled:.1} MiB | {settled_live} |\n\n\
             Then {queued} more orders left queued (manual stations) and the server stopped. Restart on those {on_disk} orders:\n\n\
             | process start → `/readyz` 200 | recovery itself (log `took_ms`) | RSS after recovery |\n|---|---|---|\n\
             | {:.2} s | {} ms | {recovered_rss:.1} MiB |\n",
            ready.as_secs_f64(),
            took_ms.map_or("?".into(), |ms| ms.to_string()),
        )
    }
}

fn accepted(report: &Value) -> f64 {
    report["accepted_per_s"].as_f64().unwrap_or(0.0)
}

fn endpoint<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["endpoints"]
        .as_array()
        .and_then(|endpoints| endpoints.iter().find(|e| e["endpoint"] == name))
        .unwrap_or(&Value::Null)
}

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn crema(port: u16, data: &Path, env: &[(&str, &str)]) -> Server {
        Server::crema_with(port, data, env, None)
    }

    /// crema serving the chain of `examples/chain.toml`: three stores, bar
    /// and kitchen stations; `crema rush` then orders with options at every store.
    fn chain(port: u16, data: &Path, env: &[(&str, &str)]) -> Server {
        Server::crema_with(port, data, env, Some(Path::new(CHAIN)))
    }

    fn crema_with(port: u16, data: &Path, env: &[(&str, &str)], config: Option<&Path>) -> Server {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = data.with_extension("log");
        let mut command = server_command(CREMA);
        command.args(["serve", "--bind", &addr.to_string(), "--data"]).arg(data);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        command.envs(FAST.iter().copied()).envs(env.iter().copied());
        Server::spawn(command, addr, log)
    }

    fn ceiling(port: u16) -> Server {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = server_command(ceiling_binary().to_str().expect("a UTF-8 path"));
        command.arg(addr.to_string());
        Server::spawn(command, addr, std::env::temp_dir().join("crema-ceiling.log"))
    }

    fn spawn(mut command: Command, addr: SocketAddr, log: PathBuf) -> Server {
        let file = std::fs::File::create(&log).expect("a log file");
        let child = command.stdout(Stdio::null()).stderr(file).spawn().expect("the server starts");
        let server = Server { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(300);
        while get(addr, "/menu").is_none() || get(addr, "/readyz").is_some_and(|(status, _)| status == 503) {
            assert!(Instant::now() < deadline, "{addr} never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM and wait: crema drains and flushes.
    fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// The ceiling server built by `cargo bench --bench ceiling --no-run`, beside this binary.
fn ceiling_binary() -> PathBuf {
    let deps = std::env::current_exe().expect("own path").parent().expect("deps dir").to_path_buf();
    std::fs::read_dir(&deps)
        .expect("deps dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("ceiling-") && path.extension().is_none()
        })
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok())
        .expect("build the ceiling first: cargo bench --bench ceiling --no-run")
}

/// A minimal HTTP/1.0 GET: status and body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Some((status, body))
}

fn get_json(addr: SocketAddr, path: &str) -> Value {
    get(addr, path).and_then(|(_, body)| serde_json::from_str(&body).ok()).unwrap_or(Value::Null)
}

fn rss_mib(pid: u32) -> f64 {
    crema::rush::rss_mib(pid).unwrap_or(0.0)
}

/// `took_ms` of the "recovery finished" log line.
fn recovery_ms(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().rev().find(|line| line.contains("recovery finished"))?;
    // `took_ms=N` (the summary as fields, since issue 12) or `took_ms: N` (a debug dump, before).
    let after = line.split("took_ms=").nth(1).or_else(|| line.split("took_ms: ").nth(1))?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB")
}
