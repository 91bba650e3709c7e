//! The `crema` command line. Subcommands: `serve` (the order engine).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Overrides, Settings};

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
}

/// Runs the parsed command; the process exit code follows its result.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, bind, data } => {
            let settings = Settings::load(config.as_deref(), &Overrides { bind, data_dir: data })?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("crema-http").build()?;
            runtime.block_on(serve(settings))
        }
    }
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
