//! The `crema` binary: parses the command line and runs it.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = crema::cli::Cli::parse();
    match cli.command {
        crema::cli::Command::Rush(_) => crema::telemetry::init_with_default("warn"),
        // `serve` starts logging once its configuration (`log.format`) is read.
        crema::cli::Command::Serve { .. } => {}
        _ => crema::telemetry::init(),
    }
    match crema::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("crema: {}", crema::cli::error_chain(&err));
            std::process::ExitCode::FAILURE
        }
    }
}
