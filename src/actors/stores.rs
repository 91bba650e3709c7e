//! The chain's stores at run time: each store's barista pool (its queue and
//! stations), its queue admission, pickup numbers, ordering pause, sold-out
//! marks, price overrides and `max_wait_s`. A store is the unit that could
//! later move to another machine, so all of its state is here, together, and
//! its keys on disk (`meta/…/{store}/…`) carry its id.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use actix::prelude::*;

use super::barista::{Admission, BaristaPool, StationFaults, StationSetup};
use crate::config::{Settings, StoreConfig};

/// A store's pickup numbers: 1, 2, … 999, then 1 again (API.md contract v2).
/// Given to an order when it is charged, so a declined order takes none.
/// Not persisted on their own: recovery goes on from the store's newest order's.
#[derive(Debug, Default)]
pub struct PickupNumbers {
    last: AtomicU16,
}

impl PickupNumbers {
    pub const MAX: u16 = 999;

    pub fn next(&self) -> u16 {
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| Some(last % Self::MAX + 1))
            .unwrap_or_default();
        previous % Self::MAX + 1
    }

    /// The next number is the one after `number` (recovery).
    pub fn continue_after(&self, number: u16) {
        self.last.store(number.min(Self::MAX), Ordering::Release);
    }
}

/// One store's state.
pub struct StoreState {
    pub id: String,
    pub name: String,
    pub max_wait_s: Option<u64>,
    prices: BTreeMap<String, u64>,
    pub pool: Addr<BaristaPool>,
    /// Reserved places in this store's queue (`barista.max_queue` each).
    pub admission: Arc<Admission>,
    pub numbers: PickupNumbers,
    /// Ordering is paused: `POST /orders` is refused with 503 `store_paused`
    /// before any charge. Kept on disk.
    pub ordering_paused: AtomicBool,
    /// Item ids and `group.choice` refs sold out here ("86"): shown as
    /// unavailable and refused with 409 `item_unavailable` before any charge.
    pub sold_out: RwLock<BTreeSet<String>>,
}

impl StoreState {
    /// This store's price of `item`, where it overrides the menu's.
    pub fn price(&self, item: &str) -> Option<u64> {
        self.prices.get(item).copied()
    }

    /// The sold-out refs, as they are now.
    pub fn sold_out(&self) -> RwLockReadGuard<'_, BTreeSet<String>> {
        self.sold_out.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn is_paused(&self) -> bool {
        self.ordering_paused.load(Ordering::Acquire)
    }
}

/// Every store, the default (first) one first.
pub struct Stores {
    all: Vec<Arc<StoreState>>,
}

impl Stores {
    /// Starts each store's pool on `arbiter`.
    pub fn start(settings: &Settings, arbiter: &ArbiterHandle) -> Stores {
        let faults = Arc::new(StationFaults { panics_left: std::sync::atomic::AtomicUsize::new(settings.barista.inject_panics) });
        let all = settings.stores().into_iter().map(|config| Arc::new(Self::start_one(settings, config, faults.clone(), arbiter))).collect();
        Stores { all }
    }

    fn start_one(settings: &Settings, config: StoreConfig, faults: Arc<StationFaults>, arbiter: &ArbiterHandle) -> StoreState {
        let admission = Arc::new(Admission::new(settings.barista.max_queue));
        let stations: Vec<StationSetup> = config
            .stations
            .iter()
            .map(|station| StationSetup {
                id: station.id.clone(),
                mode: station.mode.unwrap_or(settings.barista.mode),
                serves: station.serves.clone(),
            })
            .collect();
        let pool = {
            let (admission, scale) = (admission.clone(), settings.barista.brew_scale);
            BaristaPool::start_in_arbiter(arbiter, move |_| BaristaPool::new(stations, scale, admission, faults))
        };
        StoreState {
            id: config.id,
            name: config.name,
            max_wait_s: config.max_wait_s,
            prices: config.prices,
            pool,
            admission,
            numbers: PickupNumbers::default(),
            ordering_paused: AtomicBool::new(false),
            sold_out: RwLock::default(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<StoreState>> {
        self.all.iter().find(|store| store.id == id)
    }

    /// The default store: the first configured (`main` when none is).
    pub fn default_store(&self) -> &Arc<StoreState> {
        &self.all[0]
    }

    /// The store an order belongs to; the default store for a store no longer
    /// configured (recovery warns about those).
    pub fn of(&self, id: &str) -> &Arc<StoreState> {
        self.get(id).unwrap_or_else(|| self.default_store())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<StoreState>> {
        self.all.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::PickupNumbers;

    #[test]
    fn pickup_numbers_count_1_to_999_then_wrap_and_go_on_after_a_restart() {
        let numbers = PickupNumbers::default();
        assert_eq!((numbers.next(), numbers.next()), (1, 2));
        let all: Vec<u16> = (0..999).map(|_| numbers.next()).collect();
        assert_eq!(all[..3], [3, 4, 5]);
        assert_eq!(all[996], 999);
        assert_eq!(all[997..], [1, 2], "after 999 comes 1");
        let restarted = PickupNumbers::default();
        restarted.continue_after(998);
        assert_eq!((restarted.next(), restarted.next(), restarted.next()), (999, 1, 2));
    }
}
