//! Where the live order actors are: order id → address, sharded so that HTTP
//! handlers on different threads rarely wait for one another.
//!
//! An actor inserts itself when it is created and removes itself when it stops
//! (passivation). `Engine::activate` revives a passivated order from its
//! snapshot under the shard's lock, so two requests can never revive the same
//! order twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use actix::{Actor, Addr};

const SHARDS: usize = 64;

pub struct Directory<A: Actor> {
    shards: Vec<Mutex<HashMap<String, Addr<A>>>>,
    /// Entries across all shards, kept beside them so `len` takes no lock.
    live: AtomicUsize,
}

impl<A: Actor> Default for Directory<A> {
    fn default() -> Self {
        Directory { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), live: AtomicUsize::new(0) }
    }
}

impl<A: Actor> Directory<A> {
    fn shard(&self, id: &str) -> MutexGuard<'_, HashMap<String, Addr<A>>> {
        // FNV-1a: cheap, and ids are random enough that any spread will do.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
        });
        let shard = &self.shards[(hash % SHARDS as u64) as usize];
        shard.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// The live actor of `id`, if there is one.
    pub fn get(&self, id: &str) -> Option<Addr<A>> {
        self.shard(id).get(id).filter(|addr| addr.connected()).cloned()
    }

    pub fn insert(&self, id: String, addr: Addr<A>) {
        let mut shard = self.shard(&id);
        self.insert_locked(&mut shard, id, addr);
    }

    fn insert_locked(&self, shard: &mut HashMap<String, Addr<A>>, id: String, addr: Addr<A>) {
        if shard.insert(id, addr).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Removes `id` only if it still points at `addr` (a newer actor may have replaced it).
    pub fn remove(&self, id: &str, addr: &Addr<A>) {
        let mut shard = self.shard(id);
        if shard.get(id) == Some(addr) {
            shard.remove(id);
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The live actor of `id`, or the one `start` makes, under the shard's
    /// lock so that no other caller can start a second actor for `id`.
    /// `start` returning `Ok(None)` (no such order) inserts nothing.
    pub fn get_or_start<E>(
        &self,
        id: &str,
        start: impl FnOnce() -> Result<Option<Addr<A>>, E>,
    ) -> Result<Option<Addr<A>>, E> {
        let mut shard = self.shard(id);
        if let Some(addr) = shard.get(id).filter(|addr| addr.connected()) {
            return Ok(Some(addr.clone()));
        }
        let started = start()?;
        if let Some(addr) = &started {
            self.insert_locked(&mut shard, id.to_owned(), addr.clone());
        }
        Ok(started)
    }

    /// Live actors now.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
