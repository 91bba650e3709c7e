//! The `crema` command line. Subcommands: `serve` (the order engine),
//! `payment-sim` (a stand-in external payment service) and `rush` (a café
//! peak-load generator).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Overrides, Settings};
use crate::http::ServerLimits;
use crate::payment_sim::{Faults, PaymentSim};
use crate::rush::mix::Behaviour;
use crate::rush::profile::{Profile, Shape};
use crate::rush::RushOptions;

#[derive(Debug, Parser)]
#[command(name = "crema", version, about = "An actor-based, durable order engine for cafés")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the order engine: HTTP API, actors, RocksDB.
    Serve {
        /// TOML configuration file (see API.md); CREMA_* variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Data directory for RocksDB [default: ./data].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run the stand-in payment service (API.md, "The payment service").
    PaymentSim {
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: std::net::SocketAddr,
        /// Where the ledger is kept.
        #[arg(long, default_value = "./payment-data")]
        data: PathBuf,
        /// Added to every answer.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// A uniform extra of 0..=N ms on top of the latency.
        #[arg(long, default_value_t = 0)]
        jitter_ms: u64,
        /// Share of charges that fail with 500 (nothing charged), 0-1.
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// Share of charges declined with 402, 0-1.
        #[arg(long, default_value_t = 0.0)]
        decline_rate: f64,
        /// Start down: every payment call answers 503.
        #[arg(long)]
        down: bool,
    },
    /// Load a crema server with a café rush, open-loop, and report per endpoint.
    Rush(RushArgs),
    /// Staff access keys (API.md "Access").
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy a serving crema's data into DIR (a RocksDB checkpoint taken by the
    /// server; DIR is on the server's machine and must not exist). Restore:
    /// `crema serve --data DIR`.
    Backup {
        /// Where the copy goes (made absolute from here).
        dir: PathBuf,
        /// The serving crema.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        /// An admin key (or set CREMA_KEY, which `ps` does not show).
        #[arg(long, env = "CREMA_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct RushArgs {
    /// The server to load, e.g. http://127.0.0.1:8080.
    #[arg(long, conflicts_with = "embedded", required_unless_present = "embedded")]
    target: Option<String>,
    /// Start an engine in this process on a temporary directory and load it.
    #[arg(long)]
    embedded: bool,
    /// Engine configuration for --embedded (TOML, as for `crema serve`).
    #[arg(long, requires = "embedded")]
    config: Option<PathBuf>,
    /// Override `store.durability` of the embedded engine.
    #[arg(long, requires = "embedded")]
    durability: Option<crate::config::Durability>,
    /// Override `barista.brew_scale` of the embedded engine (0 = instant brews).
    #[arg(long, requires = "embedded")]
    brew_scale: Option<f64>,
    /// Shape of the offered load.
    #[arg(long, value_enum, default_value = "cafe")]
    profile: Shape,
    /// Orders per second at the peak.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Orders per second at the start and end of a café rush [default: a tenth of --rate].
    #[arg(long)]
    base_rate: Option<f64>,
    /// Length of the rush: `30s`, `2m`, `500ms`, or plain seconds.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Share of the duration spent on each ramp of a café rush.
    #[arg(long, default_value_t = 0.25)]
    ramp: f64,
    /// Time at the start whose requests are sent but not counted (`5s`, or plain seconds).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections (one request in flight on each).
    #[arg(long, default_value_t = 256)]
    connections: usize,
    /// Requests due but not yet sent that the generator holds; beyond it they are dropped and counted.
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Distinct customer names.
    #[arg(long, default_value_t = 5_000)]
    customers: u32,
    /// Share of customers who cancel shortly after ordering.
    #[arg(long, default_value_t = 0.05)]
    cancel: f64,
    /// Share of customers who poll their order until it is ready.
    #[arg(long, default_value_t = 0.5)]
    poll: f64,
    /// Share of the polling customers who pick their order up once ready.
    #[arg(long, default_value_t = 0.9)]
    pickup: f64,
    /// Only place orders: no cancels, polls or pickups.
    #[arg(long)]
    orders_only: bool,
    /// Time between a customer's polls (`1s`, `250ms`, or plain seconds).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    poll_every: Duration,
    /// Time before an unanswered request counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Customers retry an order refused for now (429/503) or of unknown outcome (202, 409, timeout,
    /// connection error) up to this many times, after Retry-After, with the same Idempotency-Key.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Threshold: fail (exit code 99) if the p99 of `POST /orders`, from due time, is above this (`5ms`).
    #[arg(long, value_parser = parse_duration)]
    max_p99: Option<Duration>,
    /// Threshold: fail (exit code 99) if under this share of the orders sent get a 201 (e.g. 0.99).
    #[arg(long)]
    min_success: Option<f64>,
    /// Seed of the menu mix and customer choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sample this process's RSS once a second (the embedded engine is sampled anyway).
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as JSON on stdout (or to --out).
    #[arg(long)]
    json: bool,
    /// Write the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write a self-contained HTML report (summary, throughput and latency charts) to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// A staff key, sent as `Authorization: Bearer` with every request (or set CREMA_KEY, which `ps` does not show).
    #[arg(long, env = "CREMA_KEY", hide_env_values = true)]
    key: Option<String>,
}

/// A duration as people write it on a command line: a number with a unit
/// (`500ms`, `30s`, `2m`, `1h`, fractions allowed: `1.5s`), or plain seconds
/// (`30`). Written here rather than with `humantime`, which takes neither
/// plain seconds (what `--duration 30` meant before) nor fractions.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 2m, 500ms)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m or h)")),
    };
    let seconds = value * scale;
    if !seconds.is_finite() || seconds > 366.0 * 24.0 * 3600.0 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl RushArgs {
    fn options(self) -> anyhow::Result<RushOptions> {
        anyhow::ensure!(self.rate.is_finite() && self.rate > 0.0, "--rate must be above 0");
        anyhow::ensure!((0.0..=0.5).contains(&self.ramp), "--ramp must be between 0 and 0.5");
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be above 0");
        if let Some(min) = self.min_success {
            anyhow::ensure!((0.0..=1.0).contains(&min), "--min-success must be between 0 and 1");
        }
        let embedded = match self.embedded {
            true => Some(crate::rush::embedded_settings(self.config.as_deref(), self.durability, self.brew_scale)?),
            false => None,
        };
        let behaviour = match self.orders_only {
            true => Behaviour::ORDERS_ONLY,
            false => Behaviour { cancel: self.cancel, poll: self.poll, pickup: self.pickup },
        };
        Ok(RushOptions {
            target: self.target,
            embedded,
            profile: Profile {
                shape: self.profile,
                peak_rate: self.rate,
                base_rate: self.base_rate.unwrap_or(self.rate / 10.0),
                duration: self.duration,
                ramp: self.ramp,
            },
            behaviour,
            warmup: self.warmup,
            connections: self.connections,
            backlog: self.backlog,
            customers: self.customers,
            poll_every: self.poll_every,
            timeout: self.timeout,
            thresholds: crate::rush::Thresholds { max_p99: self.max_p99, min_success: self.min_success },
            retries: self.retries,
            seed: self.seed,
            pid: self.pid,
            progress: !self.quiet,
            key: self.key,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key (alone on the first line) and the `[[auth.keys]]` lines to add.
    New {
        /// What it may do.
        #[arg(long, value_enum)]
        role: crate::auth::Role,
        /// A store it covers (repeat for several; none for an admin).
        #[arg(long = "store")]
        stores: Vec<String>,
        /// Its name in logs and configuration [default: ROLE-STORE].
        #[arg(long)]
        name: Option<String>,
    },
}

/// Exit code of a rush that ran but failed one of its thresholds (as k6).
pub const THRESHOLDS_FAILED: u8 = 99;

/// Runs the parsed command; the process exit code follows its result.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve { config, bind, data } => {
            let overrides = Overrides { bind, data_dir: data };
            let settings = Settings::load(config.as_deref(), &overrides)?;
            crate::telemetry::init_as(settings.log.format, "warn,crema=info");
            // Connections are served on the order arbiters; this runtime only
            // accepts (and refuses), recovers, reconciles and probes the store.
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if settings.server.connections_on_arbiters {
                builder.worker_threads(1);
            }
            let runtime = builder.enable_all().thread_name("crema-accept").build()?;
            runtime.block_on(serve(settings, config, overrides))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::New { role, stores, name }) => {
            anyhow::ensure!(
                role == crate::auth::Role::Admin || !stores.is_empty(),
                "a {} key needs at least one --store",
                role.as_str()
            );
            let name = name.unwrap_or_else(|| [role.as_str().to_owned()].into_iter().chain(stores.iter().cloned()).collect::<Vec<_>>().join("-"));
            print!("{}", crate::auth::new_key_text(&name, role, &stores));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Backup { dir, target, key } => {
            let dir = std::path::absolute(&dir).map_err(|err| anyhow::anyhow!("{}: {err}", dir.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let answer = runtime.block_on(backup(&target, key.as_deref(), &dir))?;
            println!("{answer}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::PaymentSim { bind, data, latency_ms, jitter_ms, fail_rate, decline_rate, down } => {
            for (name, rate) in [("--fail-rate", fail_rate), ("--decline-rate", decline_rate)] {
                anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} must be between 0 and 1");
            }
            let faults = Faults { latency_ms, jitter_ms, fail_rate, decline_rate, down };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("payment-sim").build()?;
            runtime.block_on(payment_sim(bind, data, faults))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Rush(args) => {
            let (json, out, html) = (args.json, args.out.clone(), args.html.clone());
            let options = args.options()?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("crema-rush").build()?;
            let report = runtime.block_on(crate::rush::run(options))?;
            if json || out.is_some() {
                crate::rush::write_json(&report, out.as_ref())?;
            }
            if let Some(path) = &html {
                std::fs::write(path, crate::rush::html::render(&report))
                    .map_err(|err| anyhow::anyhow!("writing {}: {err}", path.display()))?;
            }
            if !json || out.is_some() {
                print!("{}", report.render());
            }
            Ok(if report.thresholds_passed() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(THRESHOLDS_FAILED)
            })
        }
    }
}

async fn payment_sim(bind: std::net::SocketAddr, data: PathBuf, faults: Faults) -> anyhow::Result<()> {
    let sim = PaymentSim::open(&data, faults)
        .map_err(|err| anyhow::anyhow!("opening the ledger in {}: {err}", data.display()))?;
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|err| anyhow::anyhow!("cannot bind {bind}: {err}"))?;
    println!("payment-sim listening on http://{}", listener.local_addr()?);
    let limits = ServerLimits::from(&crate::config::ServerSettings::default());
    crate::http::serve(listener, sim.routes(), limits, shutdown_signal()).await;
    Ok(())
}

async fn serve(settings: Settings, config: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    tracing::info!(
        bind = %settings.server.bind,
        data = %settings.store.data_dir.display(),
        durability = ?settings.store.durability,
        stations = settings.barista.stations,
        "starting crema"
    );
    let access_on = settings.auth.enabled;
    // Before the address is printed: a SIGHUP sent once it is seen must not
    // meet the default action (which ends the process).
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    #[cfg(not(unix))]
    let hangup = None::<()>;
    let app = App::start(settings).await?;
    println!("crema listening on http://{}", app.local_addr());
    // On stdout, with the address: the log (stderr) stays one format, and never holds the key.
    if !access_on {
        println!(
            "\n  !!! ACCESS CHECKS ARE OFF (auth.enabled = false): anyone who can reach http://{} may list and\n  \
             !!! cancel orders, pause stations and read metrics. Use it for benchmarks and experiments only.\n",
            app.local_addr()
        );
    }
    if let Some(key) = &app.first_admin_key {
        // Shown this once: only its hash is kept.
        println!(
            "\n  No access key is configured, so this first start made an admin key. It is shown once;\n  \
             only its hash is kept (in the data directory). Keep it somewhere safe:\n\n      {key}\n\n  \
             Sign in to the staff screens: http://{addr}/barista#key={key}\n  \
             Make keys for your staff with `crema keys new --role barista --store main` and add them to\n  \
             the configuration's [[auth.keys]] (then this key is no longer accepted).\n",
            addr = app.local_addr()
        );
    }
    until_stopped(&app, hangup, config.as_deref(), &overrides).await;
    tracing::info!("shutdown requested; draining");
    app.shutdown().await;
    Ok(())
}

/// Asks the server at `target` for a checkpoint into `dir`; its answer on success.
async fn backup(target: &str, key: Option<&str>, dir: &std::path::Path) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;
    let mut request = client
        .post(format!("{}/admin/backup", target.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(serde_json::json!({"dir": dir}).to_string());
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|err| anyhow::anyhow!("{target}: {err}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if status.as_u16() != 201 {
        let detail = body["detail"].as_str().unwrap_or("no detail");
        anyhow::bail!("backup refused ({status}): {detail}");
    }
    Ok(format!("backup written to {} in {} ms", body["dir"].as_str().unwrap_or_default(), body["took_ms"]))
}

/// Serves until SIGINT or SIGTERM; on SIGHUP (`hangup`, installed before
/// the server said where it listens) reads the configuration again and
/// takes its `[[auth.keys]]` (an error keeps the keys in use, logged).
#[cfg(unix)]
async fn until_stopped(app: &App, hangup: Option<tokio::signal::unix::Signal>, config: Option<&std::path::Path>, overrides: &Overrides) {
    let Some(mut hangup) = hangup else {
        shutdown_signal().await;
        return;
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = hangup.recv() => {
                let reloaded = Settings::load(config, overrides).map_err(|err| err.to_string()).and_then(|settings| app.reload_keys(&settings));
                match reloaded {
                    Ok(keys) => tracing::info!(keys, "keys reloaded (SIGHUP)"),
                    Err(err) => tracing::error!(error = %err, "keys not reloaded (SIGHUP); the keys in use stay"),
                }
            }
        }
    }
}

#[cfg(not(unix))]
async fn until_stopped(_: &App, _: Option<()>, _: Option<&std::path::Path>, _: &Overrides) {
    shutdown_signal().await;
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// An error and its causes on one line, each cause once: an error type that
/// prints its source inside its own message (`"configuration: {0}"`) is not
/// followed by that source again, as `{:#}` would.
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_fractions_and_plain_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e9h").is_err());
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("configuration: {0}")]
        struct Outer(#[source] std::io::Error);
        let err = anyhow::Error::new(Outer(std::io::Error::other("bad key")));
        assert_eq!(error_chain(&err), "configuration: bad key");
        let err = anyhow::Error::new(std::io::Error::other("disk")).context("opening the store");
        assert_eq!(error_chain(&err), "opening the store: disk");
    }
}
