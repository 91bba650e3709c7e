//! Logging through `tracing`. `RUST_LOG` chooses what is shown (default:
//! `info` for crema, `warn` for everything else); logs go to stderr, as plain
//! text (colours only when stderr is a terminal) or one JSON object per line
//! (`log.format = "json"`, for log shippers).
//!
//! Every HTTP answer is one line at `info` on target `crema::access` (method,
//! route, status, latency, request id, order id where there is one); benchmark
//! scripts set `RUST_LOG=warn`, which turns them off at the call site.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init() {
    init_as(LogFormat::Text, "warn,crema=info");
}

/// As [`init`], with another default filter (`crema rush` keeps the embedded
/// engine quiet so that its progress line stays readable).
pub fn init_with_default(default: &str) {
    init_as(LogFormat::Text, default);
}

/// Logging in `format` with `default` as the filter when `RUST_LOG` is unset.
/// Only the first call in a process takes effect.
pub fn init_as(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).flatten_event(true).try_init(),
    };
}

/// For tests: output goes through the test harness, which shows it only for
/// failing tests.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,crema=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
}
