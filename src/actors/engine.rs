//! The engine: what the actors share ([`Shared`], reached through `Deref`)
//! and the directory of live order actors, which HTTP handlers and recovery
//! go through to start, find or revive an order's actor.
//!
//! Modules below it never name it: an order actor holds the [`Shared`] part
//! and the directory, and the barista pool tells an order actor about its
//! tickets through a `Recipient`, so `actors/` imports form no cycle
//! (shared → stores → barista; order → shared, directory, barista, payment;
//! engine → order).

use std::ops::Deref;
use std::sync::Arc;

use actix::Addr;

use super::directory::Directory;
use super::order::OrderActor;
use super::shared::{ActorSystem, Shared};
use crate::config::Settings;
use crate::domain::Order;
use crate::persistence::{Journal, Store, StoreError};

pub struct Engine {
    shared: Arc<Shared>,
    /// Where the live order actors are (each enters when it starts).
    pub directory: Arc<Directory<OrderActor>>,
}

impl Deref for Engine {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Engine {
    /// Starts the actors on `system` over an opened store and its journal.
    pub fn start(settings: Settings, store: Store, journal: Journal, system: &ActorSystem) -> Result<Arc<Engine>, String> {
        Ok(Arc::new(Engine { shared: Shared::start(settings, store, journal, system)?, directory: Arc::default() }))
    }

    /// The actor of a new order `id`, which the caller sends `Place` first
    /// (see [`OrderActor::start_placing`] for where it runs).
    pub fn start_placing(&self, id: String) -> Addr<OrderActor> {
        OrderActor::start_placing(id, self.shared.clone(), self.directory.clone())
    }

    /// The actor of an order read back from its snapshot (recovery).
    pub fn revive(&self, order: Order) -> Addr<OrderActor> {
        OrderActor::start_revived(order, self.shared.clone(), self.directory.clone())
    }

    /// The actor of order `id`, reviving it from its snapshot if it was
    /// passivated; `None` if there is no such order.
    pub fn activate(&self, id: &str) -> Result<Option<Addr<OrderActor>>, StoreError> {
        self.directory.get_or_start(id, || Ok(self.store.get_order(id)?.map(|order| self.revive(order))))
    }
}
