//! crema's integration tests: one binary, each test driving the real server
//! (on port 0, with a temporary data directory) over HTTP.

mod access;
mod cluster;
mod disk;
mod events;
mod faults;
mod hardening;
mod helpers;
mod idempotency;
mod logs;
mod nats;
mod options;
mod orders;
mod payment;
mod recovery;
mod replicated;
mod routing;
mod rush;
mod soak;
mod stores;
mod validation;
