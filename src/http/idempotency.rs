//! `Idempotency-Key` semantics (API.md, "Orders"):
//! a completed key replays its first outcome, a key reused with another body is
//! refused (422), a key whose first request is still running is refused (409).
//!
//! Completed outcomes live in the store (written by the order actor in the same
//! batch that establishes the order, so a crash cannot separate them); keys in
//! flight live here, in memory, bounded by the requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::persistence::{IdempotencyRecord, Store, StoreError};

pub use crate::domain::key::{valid_idempotency_key as valid_key, MAX_KEY_LEN};

#[derive(Default)]
pub struct InFlightKeys {
    keys: Mutex<HashMap<String, [u8; 32]>>,
}

pub enum Begin {
    /// First use: go on; the key is released when the guard drops.
    Proceed(KeyGuard),
    /// Seen before with the same body: answer this.
    Replay(IdempotencyRecord),
    /// Seen before with another body.
    Reused,
    /// The first request with this key has not finished.
    InFlight,
}

/// Holds a key as in flight until dropped.
pub struct KeyGuard {
    keys: Arc<InFlightKeys>,
    key: String,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        self.keys.lock().remove(&self.key);
    }
}

impl InFlightKeys {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        self.keys.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn begin(self: &Arc<Self>, store: &Store, key: &str, body_sha256: [u8; 32]) -> Result<Begin, StoreError> {
        let mut keys = self.lock();
        if keys.contains_key(key) {
            return Ok(Begin::InFlight);
        }
        // Checked under the lock: a record for this key can only be written by
        // a request holding it in flight, so none can appear meanwhile.
        if let Some(record) = store.get_idempotency(key)? {
            return Ok(if record.body_sha256 == body_sha256 { Begin::Replay(record) } else { Begin::Reused });
        }
        keys.insert(key.to_owned(), body_sha256);
        Ok(Begin::Proceed(KeyGuard { keys: self.clone(), key: key.to_owned() }))
    }
}

pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_begin_while_in_flight_is_refused_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = Arc::new(InFlightKeys::default());
        let first = keys.begin(&store, "k", [1; 32]).unwrap();
        assert!(matches!(first, Begin::Proceed(_)));
        assert!(matches!(keys.begin(&store, "k", [1; 32]).unwrap(), Begin::InFlight));
        drop(first);
        assert!(matches!(keys.begin(&store, "k", [1; 32]).unwrap(), Begin::Proceed(_)));
    }
}
