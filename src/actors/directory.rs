//! Where the live order actors are: order id → address, sharded so that HTTP
//! handlers on different threads rarely wait for one another.
//!
//! An actor inserts itself when it is created and removes itself when it stops
//! (passivation). `Engine::activate` revives a passivated order from its
//! snapshot under the shard's lock, so two requests can never revive the same
//! order twice.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use actix::Addr;

use super::order::OrderActor;

const SHARDS: usize = 64;

pub struct Directory {
    shards: Vec<Mutex<HashMap<String, Addr<OrderActor>>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl Directory {
    pub(crate) fn shard(&self, id: &str) -> MutexGuard<'_, HashMap<String, Addr<OrderActor>>> {
        // FNV-1a: cheap, and ids are random enough that any spread will do.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        shard.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The live actor of `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<Addr<OrderActor>> {
        self.shard(id).get(id).filter(|addr| addr.connected()).cloned()
    }

    pub fn insert(&self, id: String, addr: Addr<OrderActor>) {
        self.shard(&id).insert(id, addr);
    }

    /// Removes `id` only if it still points at `addr` (a newer actor may have replaced it).
    pub fn remove(&self, id: &str, addr: &Addr<OrderActor>) {
        let mut shard = self.shard(id);
        if shard.get(id) == Some(addr) {
            shard.remove(id);
        }
    }

    /// Live actors now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().map_or(0, |map| map.len())).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
