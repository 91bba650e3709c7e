//! crema's pure modules, compiled from crema's own sources for the fuzzers.

#[path = "../../src/domain/mod.rs"]
pub mod domain;

#[path = "../../src/persistence/codec.rs"]
#[doc(hidden)]
pub mod codec;

/// As in crema: `persistence::codec`.
pub mod persistence {
    pub use super::codec;
}
