//! The HTTP edge: routes (`routes`), handlers (`handlers`), the JSON shapes
//! (`views`), the one place errors become status codes (`error`), the
//! `Idempotency-Key` bookkeeping (`idempotency`) and the hardened server loop
//! (`server`).

pub mod error;
pub mod handlers;
pub mod idempotency;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod server;
pub mod sse;
pub mod views;

pub use error::ApiError;
pub use server::{serve, ServerLimits, Spawner};
