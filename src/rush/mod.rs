//! `crema rush`: an open-loop café peak-load generator.
//!
//! A scheduler turns the [`profile::Profile`] into order arrivals due at fixed
//! times and puts each on a bounded backlog; `connections` workers, each with
//! one keep-alive connection, take requests off the backlog and send them.
//! Nothing waits for an answer before the next order is due, so a slow server
//! shows up as latency (measured from when each request was due, see
//! [`report`]) and not as a quietly lower offered rate. A full backlog drops the
//! request and counts it as `dropped`: the generator's memory stays bounded too.
//!
//! After a 201 a customer may cancel, or follow the order by polling it until
//! it is ready and then pick it up ([`mix::Behaviour`]); those requests are due
//! at their own times and go through the same backlog.

pub mod client;
pub mod html;
pub mod mix;
pub mod profile;
pub mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use self::client::{CallError, Connection, Target};
use self::mix::{Behaviour, FollowUp, Mix, MixItem};
use self::profile::Profile;
use self::report::{Endpoint, Memory, Outcome, Recorder, Report};
use crate::app::App;
use crate::config::Settings;

/// Why a rush could not run (a rush that ran reports its failures instead).
#[derive(Debug, thiserror::Error)]
pub enum RushError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Target(String),
    #[error("the embedded engine: {0}")]
    Engine(#[from] crate::app::AppError),
    #[error("the embedded engine's configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

fn ensure(condition: bool, message: &str) -> Result<(), RushError> {
    if condition {
        Ok(())
    } else {
        Err(RushError::Invalid(message.to_owned()))
    }
}

/// Everything `crema rush` was asked to do.
#[derive(Debug, Clone)]
pub struct RushOptions {
    pub target: Option<String>,
    /// Engine settings for `--embedded` (its bind address and data directory are replaced).
    pub embedded: Option<Settings>,
    pub profile: Profile,
    pub behaviour: Behaviour,
    pub warmup: Duration,
    pub connections: usize,
    pub backlog: usize,
    pub customers: u32,
    pub poll_every: Duration,
    pub timeout: Duration,
    pub seed: u64,
    /// Process whose RSS is sampled (the embedded engine is this process).
    pub pid: Option<u32>,
    /// Pass/fail limits that set the exit code.
    pub thresholds: Thresholds,
    /// A customer whose order is refused for now (429, 503), or whose outcome
    /// is unknown (202, 409 `request_in_flight`, a timeout, a dropped
    /// connection), tries again up to this many times, after `Retry-After`
    /// (1 s if none), with the same `Idempotency-Key`. 0: nobody retries.
    pub retries: u32,
    pub progress: bool,
    /// A staff key sent as `Authorization: Bearer` with every request.
    pub key: Option<String>,
}

/// A poll gives up on an order after this many tries.
const MAX_POLLS: u32 = 600;

enum Work {
    /// `key` and `attempt` are set when customers retry (`--retries`): every
    /// attempt of one order carries the same `Idempotency-Key`.
    Place { body: Bytes, follow: FollowUp, key: Option<Arc<str>>, attempt: u32 },
    Poll { id: String, pickup: bool, polls: u32 },
    Cancel { id: String },
    Pickup { id: String },
}

struct Job {
    due: Instant,
    work: Work,
}

impl Job {
    fn endpoint(&self) -> Endpoint {
        match self.work {
            Work::Place { .. } => Endpoint::PlaceOrder,
            Work::Poll { .. } => Endpoint::GetOrder,
            Work::Cancel { .. } => Endpoint::Cancel,
            Work::Pickup { .. } => Endpoint::Pickup,
        }
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    in_flight: AtomicU64,
    accepted: AtomicU64,
    offered: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Attempts after the first, and orders whose customer gave up.
    retries: AtomicU64,
    gave_up: AtomicU64,
}

struct Shared {
    recorder: Recorder,
    counters: Counters,
    jobs: mpsc::Sender<Job>,
    measure_from: Instant,
    measure_until: Instant,
    /// Set when the schedule is over: follow-ups are no longer started.
    closing: AtomicBool,
    poll_every: Duration,
    timeout: Duration,
    /// Attempts a customer makes after the first (`--retries`).
    retries: u32,
}

impl Shared {
    fn counts(&self, due: Instant) -> bool {
        due >= self.measure_from
    }

    /// Puts a job on the backlog, or counts it dropped if the backlog is full.
    fn enqueue(&self, job: Job) {
        let endpoint = job.endpoint();
        let due = job.due;
        if let Err(mpsc::error::TrySendError::Full(_)) = self.jobs.try_send(job) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if self.counts(due) {
                self.recorder.record(endpoint, Outcome::Dropped, Duration::ZERO, None, true);
            }
        }
    }

    /// A follow-up due at `due`, unless the rush is closing.
    fn later(self: &Arc<Self>, due: Instant, work: Work) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            if !shared.closing.load(Ordering::Relaxed) {
                shared.enqueue(Job { due, work });
            }
        });
    }
}

#[derive(serde::Deserialize)]
struct OrderView {
    id: String,
    status: String,
}

/// Runs a whole rush and returns its report. With `embedded` settings an
/// engine is started first on a temporary directory and stopped afterwards.
pub async fn run(mut options: RushOptions) -> Result<Report, RushError> {
    options.behaviour.validate().map_err(RushError::Invalid)?;
    ensure(options.connections >= 1, "--connections must be at least 1")?;
    ensure(options.profile.peak_rate > 0.0, "--rate must be above 0")?;
    ensure(options.warmup < options.profile.duration, "--warmup must be shorter than --duration")?;

    let mut engine = None;
    let mut _data_dir = None;
    if let Some(mut settings) = options.embedded.take() {
        let dir = tempfile::Builder::new().prefix("crema-rush-").tempdir()?;
        settings.store.data_dir = dir.path().to_path_buf();
        settings.server.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let app = App::start(settings).await?;
        options.target = Some(format!("http://{}", app.local_addr()));
        options.pid = Some(std::process::id());
        engine = Some(app);
        _data_dir = Some(dir);
    }
    let url = options.target.clone().ok_or_else(|| RushError::Invalid("give --target URL or --embedded".into()))?;
    let outcome = drive(&url, engine.is_some(), &options).await;
    if let Some(app) = engine {
        app.shutdown().await;
    }
    outcome
}

async fn drive(url: &str, embedded: bool, options: &RushOptions) -> Result<Report, RushError> {
    let mut target = Target::resolve(url).await.map_err(RushError::Target)?;
    if let Some(key) = &options.key {
        let mut value = http::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| RushError::Invalid("--key: not a valid header value".into()))?;
        value.set_sensitive(true);
        target.authorization = Some(value);
    }
    let (items, stores) = menu_and_stores(&target, options.timeout).await?;
    let mix = Mix::new(items, stores, None, options.customers).map_err(RushError::Target)?;

    let (jobs, backlog) = mpsc::channel::<Job>(options.backlog.max(1));
    let start = Instant::now() + Duration::from_millis(50);
    let shared = Arc::new(Shared {
        recorder: Recorder::default(),
        counters: Counters::default(),
        jobs,
        measure_from: start + options.warmup,
        measure_until: start + options.profile.duration,
        closing: AtomicBool::new(false),
        poll_every: options.poll_every,
        timeout: options.timeout,
        retries: options.retries,
    });
    let backlog = Arc::new(Mutex::new(backlog));
    let workers: Vec<_> = (0..options.connections)
        .map(|_| tokio::spawn(worker(shared.clone(), backlog.clone(), Connection::new(target.clone()))))
        .collect();

    let memory = options.pid.map(|pid| {
        let rss = rss_mib(pid).unwrap_or(0.0);
        Memory { pid, start_mib: rss, peak_mib: rss, end_mib: rss, samples_mib: Vec::new() }
    });
    let memory = Arc::new(std::sync::Mutex::new(memory));
    let series: Arc<std::sync::Mutex<Vec<report::Second>>> = Arc::default();
    let progress = tokio::spawn(progress(shared.clone(), options.clone(), start, memory.clone(), series.clone()));

    schedule(&shared, &mix, options, start).await;

    // The schedule is over: no new follow-ups; wait for what is queued or in flight.
    shared.closing.store(true, Ordering::Relaxed);
    let drain_until = Instant::now() + options.timeout + Duration::from_secs(1);
    while Instant::now() < drain_until
        && (shared.counters.in_flight.load(Ordering::Relaxed) > 0 || shared.jobs.capacity() < shared.jobs.max_capacity())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    progress.abort();
    for worker in workers {
        worker.abort();
    }

    let measured = options.profile.duration - options.warmup;
    let endpoints = shared.recorder.summary(measured);
    let orders = endpoints.iter().find(|e| e.endpoint == Endpoint::PlaceOrder.name());
    let accepted = orders.and_then(|e| e.statuses.get("201").copied()).unwrap_or(0);
    let accepted_per_s = orders.map_or(0.0, |e| e.ok_per_s);
    let per_second = std::mem::take(&mut *series.lock().unwrap_or_else(|e| e.into_inner()));
    let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(memory) = memory.as_mut() {
        memory.end_mib = rss_mib(memory.pid).unwrap_or(memory.end_mib);
        memory.peak_mib = memory.peak_mib.max(memory.end_mib);
    }
    Ok(Report {
        target: url.to_owned(),
        embedded,
        profile: options.profile,
        behaviour: options.behaviour,
        connections: options.connections,
        warmup_s: options.warmup.as_secs_f64(),
        measured_s: measured.as_secs_f64(),
        orders_offered: shared.counters.offered.load(Ordering::Relaxed),
        orders_accepted: accepted,
        retries_sent: shared.counters.retries.load(Ordering::Relaxed),
        orders_given_up: shared.counters.gave_up.load(Ordering::Relaxed),
        accepted_per_s,
        thresholds: options.thresholds.check(orders),
        per_second,
        endpoints,
        memory,
    })
}

/// Pass/fail limits on `POST /orders`, k6-style: `--max-p99` (latency from
/// due time) and `--min-success` (the share of orders sent after the warm-up
/// that were answered 201, dropped ones counted as sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    pub max_p99: Option<Duration>,
    pub min_success: Option<f64>,
}

impl Thresholds {
    /// Checks the limits against `orders`, the report of `POST /orders` (if any was sent).
    pub fn check(&self, orders: Option<&report::EndpointReport>) -> Vec<report::ThresholdResult> {
        let mut results = Vec::new();
        if let Some(max) = self.max_p99 {
            let value = orders.map_or(f64::INFINITY, |orders| orders.latency_ms.p99);
            let limit = max.as_secs_f64() * 1000.0;
            results.push(report::ThresholdResult { name: "p99_ms", limit, value, passed: value <= limit });
        }
        if let Some(min) = self.min_success {
            let value = orders.map_or(0.0, |orders| {
                orders.statuses.get("201").copied().unwrap_or(0) as f64 / orders.requests.max(1) as f64
            });
            results.push(report::ThresholdResult { name: "success", limit: min, value, passed: value >= min });
        }
        results
    }
}

/// The menu's items with their options (`GET /menu`) and the store ids
/// (`GET /stores`; none from a target without stores, whose orders then name
/// no store).
async fn menu_and_stores(target: &Target, timeout: Duration) -> Result<(Vec<MixItem>, Vec<String>), RushError> {
    #[derive(serde::Deserialize)]
    struct MenuView {
        items: Vec<MixItem>,
    }
    #[derive(serde::Deserialize)]
    struct StoresView {
        stores: Vec<StoreView>,
    }
    #[derive(serde::Deserialize)]
    struct StoreView {
        id: String,
    }
    let mut connection = Connection::new(target.clone());
    let mut get = async |path: &str| {
        let (status, body) = connection
            .call(Method::GET, path, None, timeout)
            .await
            .map_err(|err| RushError::Target(format!("GET {path} on {}: {err}", target.authority)))?;
        Ok::<_, RushError>((status, body))
    };
    let (status, body) = get("/menu").await?;
    if !status.is_success() {
        return Err(RushError::Target(format!("GET /menu on {} answered {status}", target.authority)));
    }
    let menu: MenuView = serde_json::from_slice(&body)?;
    let (status, body) = get("/stores").await?;
    let stores = if status.is_success() {
        serde_json::from_slice::<StoresView>(&body)?.stores.into_iter().map(|store| store.id).collect()
    } else {
        Vec::new()
    };
    Ok((menu.items, stores))
}

/// Puts every arrival of the profile on the backlog when it is due.
async fn schedule(shared: &Arc<Shared>, mix: &Mix, options: &RushOptions, start: Instant) {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut arrivals = options.profile.arrivals().peekable();
    while let Some(&offset) = arrivals.peek() {
        let now = Instant::now();
        if start + offset > now {
            tokio::time::sleep_until(start + offset).await;
            continue;
        }
        // Everything due by now goes out at once: the timer's granularity
        // must not lower the offered rate.
        while let Some(offset) = arrivals.next_if(|offset| start + *offset <= now) {
            let due = start + offset;
            let body = Bytes::from(serde_json::to_vec(&mix.order(&mut rng)).expect("an order serializes"));
            let follow = options.behaviour.decide(&mut rng);
            if shared.counts(due) {
                shared.counters.offered.fetch_add(1, Ordering::Relaxed);
            }
            let key = (options.retries > 0).then(|| Arc::from(format!("rush-{}-{}", options.seed, rng.random::<u64>())));
            shared.enqueue(Job { due, work: Work::Place { body, follow, key, attempt: 0 } });
        }
    }
}

async fn worker(shared: Arc<Shared>, backlog: Arc<Mutex<mpsc::Receiver<Job>>>, mut connection: Connection) {
    let mut rng = StdRng::from_rng(&mut rand::rng());
    loop {
        let Some(job) = backlog.lock().await.recv().await else {
            return;
        };
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        shared.counters.sent.fetch_add(1, Ordering::Relaxed);
        let endpoint = job.endpoint();
        let key = match &job.work {
            Work::Place { key, .. } => key.clone(),
            _ => None,
        };
        let (method, path, body) = match &job.work {
            Work::Place { body, .. } => (Method::POST, "/orders".to_owned(), Some(body.clone())),
            Work::Poll { id, .. } => (Method::GET, format!("/orders/{id}"), None),
            Work::Cancel { id } => (Method::POST, format!("/orders/{id}/cancel"), None),
            Work::Pickup { id } => (Method::POST, format!("/orders/{id}/pickup"), None),
        };
        let sent = Instant::now();
        let answer = connection.call_with(method, &path, body, key.as_deref(), shared.timeout).await;
        let done = Instant::now();
        let outcome = match &answer {
            Ok(answer) => Outcome::Status(answer.status.as_u16()),
            Err(CallError::Timeout) => Outcome::Timeout,
            Err(CallError::Io(_)) => Outcome::Error,
        };
        if shared.counts(job.due) {
            let in_window = done <= shared.measure_until;
            shared.recorder.record(endpoint, outcome, done - job.due, Some(done - sent), in_window);
            let body = answer.as_ref().map_or(&[][..], |answer| &answer.body[..]);
            if let Some(label) = report::failure_label(outcome, body) {
                shared.recorder.record_failure(endpoint, label);
            }
            match outcome {
                Outcome::Status(201) if endpoint == Endpoint::PlaceOrder => {
                    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                outcome if outcome.is_shed() => {
                    shared.counters.shed.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Timeout | Outcome::Error => {
                    shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        let retry_after_s = answer.as_ref().ok().and_then(|answer| answer.retry_after_s);
        let work = match retry(&shared, job.work, outcome, retry_after_s, done) {
            Some(work) => work,
            None => {
                shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
        };
        if let Ok(answer) = answer {
            follow_up(&shared, work, answer.status.as_u16(), &answer.body, done, &mut rng);
        }
        shared.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retrying customer's next attempt: `None` if `work` was an order placed
/// again later (the same key, after `Retry-After`), else `work` back for its
/// follow-ups. An order is retried while its outcome is unknown or refused
/// for now; a customer out of attempts gives up.
fn retry(shared: &Arc<Shared>, work: Work, outcome: Outcome, retry_after_s: Option<u64>, now: Instant) -> Option<Work> {
    let Work::Place { body, follow, key: Some(key), attempt } = work else { return Some(work) };
    let again = matches!(outcome, Outcome::Status(202 | 409 | 429 | 503) | Outcome::Timeout | Outcome::Error);
    if !again {
        return Some(Work::Place { body, follow, key: Some(key), attempt });
    }
    if attempt >= shared.retries || shared.closing.load(Ordering::Relaxed) {
        shared.counters.gave_up.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    shared.counters.retries.fetch_add(1, Ordering::Relaxed);
    let wait = Duration::from_secs(retry_after_s.unwrap_or(1).clamp(1, 60));
    shared.later(now + wait, Work::Place { body, follow, key: Some(key), attempt: attempt + 1 });
    None
}

/// What the customer does next, given the answer to `work`.
fn follow_up(shared: &Arc<Shared>, work: Work, status: u16, body: &[u8], now: Instant, rng: &mut StdRng) {
    let view = || serde_json::from_slice::<OrderView>(body).ok();
    match work {
        Work::Place { follow, .. } if status == 201 => {
            let Some(order) = view() else { return };
            match follow {
                FollowUp::None => {}
                FollowUp::Cancel => {
                    let wait = shared.poll_every.mul_f64(rng.random_range(0.0..2.0));
                    shared.later(now + wait, Work::Cancel { id: order.id });
                }
                FollowUp::Poll { pickup } => {
                    shared.later(now + shared.poll_every, Work::Poll { id: order.id, pickup, polls: 1 });
                }
            }
        }
        Work::Poll { id, pickup, polls } if status == 200 => match view().map(|order| order.status) {
            Some(status) if status == "ready" => {
                if pickup {
                    shared.later(now, Work::Pickup { id });
                }
            }
            Some(status) if status == "picked_up" || status == "cancelled" => {}
            _ if polls < MAX_POLLS => {
                shared.later(now + shared.poll_every, Work::Poll { id, pickup, polls: polls + 1 });
            }
            _ => {}
        },
        Work::Pickup { id } if status == 409 => {
            shared.later(now + shared.poll_every, Work::Poll { id, pickup: true, polls: 1 });
        }
        _ => {}
    }
}

/// A line a second on stderr while the rush runs, and the same second in
/// `series` for the report (one entry a second: bounded by the duration).
async fn progress(
    shared: Arc<Shared>,
    options: RushOptions,
    start: Instant,
    memory: Arc<std::sync::Mutex<Option<Memory>>>,
    series: Arc<std::sync::Mutex<Vec<report::Second>>>,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_accepted = 0;
    let (mut last_shed, mut last_failed, mut last_dropped, mut last_sent) = (0, 0, 0, 0);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let c = &shared.counters;
        let accepted = c.accepted.load(Ordering::Relaxed);
        let rss = {
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            memory.as_mut().and_then(|memory| {
                let rss = rss_mib(memory.pid)?;
                memory.peak_mib = memory.peak_mib.max(rss);
                memory.end_mib = rss;
                memory.samples_mib.push((rss * 10.0).round() / 10.0);
                Some(rss)
            })
        };
        let p99 = shared.recorder.take_interval_p99_ms();
        if options.progress {
            let phase = if elapsed < options.warmup { " warm-up" } else { "" };
            eprintln!(
                "[{:>4.0}s/{:.0}s{phase}] offered {:>7.0}/s  accepted {:>7}/s  sent {}  201 {}  shed {}  failed {}  dropped {}  in flight {}  p99 {}{}",
                elapsed.as_secs_f64(),
                options.profile.duration.as_secs_f64(),
                options.profile.rate_at(elapsed),
                accepted - last_accepted,
                c.sent.load(Ordering::Relaxed),
                accepted,
                c.shed.load(Ordering::Relaxed),
                c.failed.load(Ordering::Relaxed),
                c.dropped.load(Ordering::Relaxed),
                c.in_flight.load(Ordering::Relaxed),
                p99.map_or("-".into(), |ms| format!("{ms:.1} ms")),
                rss.map_or(String::new(), |mib| format!("  rss {mib:.0} MiB")),
            );
        }
        let (sent, shed, failed, dropped) = (
            c.sent.load(Ordering::Relaxed),
            c.shed.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed),
        );
        series.lock().unwrap_or_else(|e| e.into_inner()).push(report::Second {
            t_s: elapsed.as_secs_f64().round(),
            offered_rate: options.profile.rate_at(elapsed),
            sent: sent - last_sent,
            accepted: accepted - last_accepted,
            shed: shed - last_shed,
            failed: failed - last_failed,
            dropped: dropped - last_dropped,
            orders_p99_ms: p99,
            rss_mib: rss.map(|mib| (mib * 10.0).round() / 10.0),
        });
        (last_accepted, last_sent, last_shed, last_failed, last_dropped) = (accepted, sent, shed, failed, dropped);
    }
}

/// Resident set size of a process, from `/proc` (Linux).
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// The embedded engine's settings: a configuration file if given, else the
/// defaults, with the overrides of the command line.
pub fn embedded_settings(config: Option<&std::path::Path>, durability: Option<crate::config::Durability>, brew_scale: Option<f64>) -> Result<Settings, RushError> {
    let mut settings = Settings::load(config, &crate::config::Overrides::default())?;
    if let Some(durability) = durability {
        settings.store.durability = durability;
    }
    if let Some(scale) = brew_scale {
        ensure(scale >= 0.0, "--brew-scale must not be negative")?;
        settings.barista.brew_scale = scale;
    }
    Ok(settings)
}

/// Where `--json` output goes.
pub fn write_json(report: &Report, to: Option<&PathBuf>) -> Result<(), RushError> {
    let json = serde_json::to_string_pretty(report)?;
    match to {
        Some(path) => std::fs::write(path, json + "\n")?,
        None => println!("{json}"),
    }
    Ok(())
}
