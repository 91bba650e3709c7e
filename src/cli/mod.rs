//! The `crema` command line. Subcommands: `serve` (the order engine) and
//! `payment-sim` (a stand-in external payment service).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Overrides, Settings};
use crate::http::ServerLimits;
use crate::payment_sim::{Faults, PaymentSim};

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
}

/// Runs the parsed command; the process exit code follows its result.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, bind, data } => {
            let settings = Settings::load(config.as_deref(), &Overrides { bind, data_dir: data })?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("crema-http").build()?;
            runtime.block_on(serve(settings))
        }
        Command::PaymentSim { bind, data, latency_ms, jitter_ms, fail_rate, decline_rate, down } => {
            for (name, rate) in [("--fail-rate", fail_rate), ("--decline-rate", decline_rate)] {
                anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} must be between 0 and 1");
            }
            let faults = Faults { latency_ms, jitter_ms, fail_rate, decline_rate, down };
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("payment-sim").build()?;
            runtime.block_on(payment_sim(bind, data, faults))
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

async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(
        bind = %settings.server.bind,
        data = %settings.store.data_dir.display(),
        durability = ?settings.store.durability,
        stations = settings.barista.stations,
        "starting crema"
    );
    let app = App::start(settings).await?;
    println!("crema listening on http://{}", app.local_addr());
    shutdown_signal().await;
    tracing::info!("shutdown requested; draining");
    app.shutdown().await;
    Ok(())
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
