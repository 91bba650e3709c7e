//! Logging through `tracing`. `RUST_LOG` chooses what is shown (default:
//! `info` for crema, `warn` for everything else); logs go to stderr.

use tracing_subscriber::EnvFilter;

pub fn init() {
    init_with_default("warn,crema=info");
}

/// As [`init`], with another default filter (`crema rush` keeps the embedded
/// engine quiet so that its progress line stays readable).
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// For tests: output goes through the test harness, which shows it only for
/// failing tests.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,crema=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}
