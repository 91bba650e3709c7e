//! The `crema` binary: parses the command line and runs it.

use clap::Parser;

fn main() -> std::process::ExitCode {
    crema::telemetry::init();
    match crema::cli::run(crema::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("crema: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
