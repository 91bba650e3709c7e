//! crema's pure modules, compiled from crema's own sources for the fuzzers.

#[path = "../../src/domain/mod.rs"]
pub mod domain;

pub mod persistence {
    #[path = "../../../src/persistence/codec.rs"]
    pub mod codec;
}
