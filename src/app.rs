//! The application: one engine, its HTTP server, recovery and the periodic
//! reconciler, started and stopped as a unit. Tests start it on port 0 with a
//! temporary data directory; `crema serve` starts it on the configured address.
//!
//! Shutdown order (see `docs/runtime.md`): not ready → in a cluster, hand
//! every store over (requests about them go to the new owners) → stop
//! accepting and drain requests in flight → stop the reconciler and the store prober → the store
//! writer commits what it was given and flushes → the actor system stops.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::actors::engine::Engine;
use crate::actors::shared::ActorSystem;
use crate::auth::{Gatekeeper, KeyConfig, Keys, Role};
use crate::config::{Durability, Settings};
use crate::http::{self, ServerLimits};
use crate::recovery::{self, RecoveryError, RecoveryReport};
use crate::cluster::forward::Forwarder;
use crate::cluster::membership::{Hooks, Membership};
use crate::persistence::jetstream::Replicated;
use crate::persistence::{Journal, Store, StoreError, StoreWriter};

/// How often intents and orphan refunds are reconciled while running.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// How often an unwritable store is probed with a small write.
const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("cannot open the store in {0}: {1}")]
    Store(String, StoreError),
    #[error("recovery failed: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("{0}")]
    Startup(String),
    #[error("the replicated journal: {0}")]
    Journal(#[from] crate::persistence::jetstream::JournalError),
}

/// Writes each store's checkpoint every `cluster.checkpoint_interval_s`
/// (when its journal moved); see `persistence::jetstream`.
async fn checkpointer(engine: Arc<Engine>, replicated: Arc<Replicated>, stores: Vec<String>) {
    let mut tick = tokio::time::interval(Duration::from_secs(engine.settings.cluster.checkpoint_interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let ttl_ms = engine.settings.orders.idempotency_ttl_s * 1000;
    loop {
        tick.tick().await;
        for store in &stores {
            if let Err(err) = replicated.checkpoint(store, &engine.store, ttl_ms).await {
                tracing::warn!(%store, error = %err, "writing the store's checkpoint failed; trying again at the next one");
            }
        }
    }
}

/// The store writer over `store`, and in front of it, with `replicated`
/// durability, this node's stores' JetStream journals (caught up and taken
/// over before this returns).
async fn open_journal(settings: &Settings, store: &Store) -> Result<Journal, AppError> {
    let config = &settings.store;
    let writer = StoreWriter::start(
        store.clone(),
        config.durability,
        config.max_batch,
        config.mailbox,
        Duration::from_micros(config.group_linger_us),
    );
    if config.durability != Durability::Replicated {
        // A failed write here is the disk's, and the writer's first write will say so.
        if let Err(err) = store.forget_live_index() {
            tracing::warn!(error = %err, "marking the live-order index stale failed");
        }
        return Ok(Journal::local(writer));
    }
    let stores: Vec<String> = settings.stores().into_iter().map(|store| store.id).collect();
    match Replicated::open(&settings.cluster, &stores, store, &writer, config.max_batch, config.mailbox).await {
        Ok(replicated) => Ok(Journal::replicated(writer, replicated)),
        Err(err) => {
            writer.close().await;
            Err(err.into())
        }
    }
}

/// Recovery, and in replicated mode this node's first cluster round: the
/// stores it takes are loaded one by one ([`recovery::load_store`]), then
/// intents and refunds are reconciled and the engine is ready. The rounds go
/// on in a task the app starts.
async fn start_engine(engine: &Arc<Engine>, membership: Option<Arc<Membership>>) -> Result<(RecoveryReport, Option<(Arc<Membership>, JoinHandle<()>)>), RecoveryError> {
    let Some(membership) = membership else {
        return Ok((recovery::recover(engine).await?, None));
    };
    let started = std::time::Instant::now();
    // The first round takes this node's share; the rounds then go on in the app's task.
    let rounds = tokio::spawn(membership.clone().run());
    while !membership.is_settled() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut report = RecoveryReport { reconciled: recovery::reconcile(engine).await?, ..RecoveryReport::default() };
    engine.ready.store(true, Ordering::Release);
    report.took_ms = started.elapsed().as_millis();
    let serving: Vec<String> = membership.serving().into_keys().collect();
    tracing::info!(node = %membership.node(), stores = %serving.join(","), "this node's first cluster round is over");
    Ok((report, Some((membership, rounds))))
}

/// This node's place in its cluster (replicated mode): the cluster bucket
/// opened, with what taking and losing a store does to this engine.
async fn join_cluster(engine: &Arc<Engine>, addr: SocketAddr) -> Result<Option<Arc<Membership>>, AppError> {
    let Some(replicated) = engine.journal.replication().cloned() else { return Ok(None) };
    let stores: Vec<String> = engine.stores.iter().map(|store| store.id.clone()).collect();
    let hooks = Hooks {
        take: {
            let (engine, replicated) = (engine.clone(), replicated.clone());
            Box::new(move |store, deadline| {
                let (engine, replicated) = (engine.clone(), replicated.clone());
                Box::pin(async move {
                    replicated.take(&store, Some(deadline)).await.map_err(|err| err.to_string())?;
                    let report = recovery::load_store(&engine, &store).await.map_err(|err| err.to_string())?;
                    replicated.serve(&store);
                    tracing::info!(%store, orders = report.orders, revived = report.revived, requeued = report.requeued, took_ms = report.took_ms as u64, "store loaded; serving it");
                    Ok(())
                })
            })
        },
        lose: {
            let replicated = replicated.clone();
            Box::new(move |store| replicated.lose(store))
        },
        owns: {
            let replicated = replicated.clone();
            Box::new(move |store| replicated.owns(store))
        },
        renewed: {
            let replicated = replicated.clone();
            Box::new(move |store, deadline| replicated.serve_until(store, deadline))
        },
        resume: {
            let replicated = replicated.clone();
            Box::new(move |store, deadline| {
                let replicated = replicated.clone();
                Box::pin(async move { replicated.resume(&store, deadline).await })
            })
        },
        drain: {
            let replicated = replicated.clone();
            Box::new(move |store| replicated.drain(store))
        },
        release: {
            let replicated = replicated.clone();
            Box::new(move |store| {
                let replicated = replicated.clone();
                Box::pin(async move { replicated.release(&store).await })
            })
        },
    };
    // Port 0 (tests, a single machine): where this node really listens.
    let mut cluster = engine.settings.cluster.clone();
    if cluster.advertise.is_empty() || cluster.advertise.ends_with(":0") {
        cluster.advertise = format!("http://{addr}");
    }
    let membership = Membership::open(replicated.context(), &cluster, stores, hooks)
        .await
        .map_err(|err| AppError::Startup(err.to_string()))?;
    Ok(Some(membership))
}

pub struct App {
    addr: SocketAddr,
    engine: Arc<Engine>,
    system: Option<ActorSystem>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    reconciler: JoinHandle<()>,
    prober: JoinHandle<()>,
    /// The event feed's tasks, the checkpointer and the cluster's rounds (replicated mode only).
    feed: Vec<JoinHandle<()>>,
    /// This node in its cluster (replicated mode only).
    membership: Option<Arc<Membership>>,
    pub recovery: RecoveryReport,
    /// The admin key this first start made (no key configured, none made
    /// before): shown once by `crema serve`, kept nowhere but as its hash.
    pub first_admin_key: Option<String>,
    gatekeeper: Arc<Gatekeeper>,
}

/// The keys requests are checked against: the configured ones; with none
/// configured, the admin key of the first start, made now if this is it and
/// `may_make` (its hash is written, durably, before the key is shown).
fn keys(settings: &Settings, store: &Store, may_make: bool) -> Result<(Keys, Option<String>), String> {
    let auth = &settings.auth;
    let mut configs = auth.keys.clone();
    let mut made = None;
    let stored = store.first_admin_key().map_err(|err| format!("reading the first start's key: {err}"))?;
    if auth.enabled && configs.is_empty() {
        let sha256 = match stored {
            Some(sha256) => sha256,
            None if may_make => {
                let (key, sha256) = crate::auth::new_key();
                store.put_first_admin_key(&sha256).map_err(|err| format!("keeping the first start's key: {err}"))?;
                made = Some(key);
                sha256
            }
            None => return Err("no key is configured, and this data directory has no first-start admin key".into()),
        };
        configs.push(KeyConfig { name: "admin".into(), role: Role::Admin, stores: Vec::new(), sha256 });
    } else if auth.enabled && stored.is_some() {
        tracing::info!("keys are configured: the admin key made at the first start is not accepted");
    }
    Ok((Keys::new(configs)?, made))
}

fn gatekeeper(settings: &Settings, store: &Store) -> Result<(Gatekeeper, Option<String>), AppError> {
    let auth = &settings.auth;
    if !auth.enabled {
        tracing::warn!(
            "ACCESS CHECKS ARE OFF (auth.enabled = false): anyone who can reach this server may list orders, \
             cancel them, pause stations and read metrics. For benchmarks and local experiments only."
        );
    }
    let (keys, made) = keys(settings, store, true).map_err(AppError::Startup)?;
    let session_ttl = Duration::from_secs(auth.session_hours * 3600);
    Ok((Gatekeeper::new(auth.enabled, auth.public_metrics, keys, session_ttl), made))
}

impl App {
    /// Opens the store, starts the actors and the server, and runs recovery;
    /// returns once the engine is ready. The server answers (`/readyz` 503)
    /// while recovery runs.
    pub async fn start(settings: Settings) -> Result<App, AppError> {
        let listener =
            TcpListener::bind(settings.server.bind).await.map_err(|err| AppError::Bind(settings.server.bind, err))?;
        App::start_on(settings, listener).await
    }

    pub async fn start_on(settings: Settings, listener: TcpListener) -> Result<App, AppError> {
        let addr = listener.local_addr().map_err(|err| AppError::Bind(settings.server.bind, err))?;
        let data_dir = settings.store.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|err| AppError::DataDir(data_dir.display().to_string(), err))?;
        let wal_preallocate = settings.store.wal_preallocate;
        let store = tokio::task::spawn_blocking(move || Store::open_with(&data_dir, wal_preallocate))
        .await
        .map_err(|err| AppError::Startup(err.to_string()))?
        .map_err(|err| AppError::Store(settings.store.data_dir.display().to_string(), err))?;
        let (gatekeeper, first_admin_key) = gatekeeper(&settings, &store)?;
        let gatekeeper = Arc::new(gatekeeper);
        let keys_in_use = gatekeeper.clone();
        let journal = open_journal(&settings, &store).await?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let system = ActorSystem::start(cores);
        let engine = match Engine::start(settings, store, journal.clone(), &system) {
            Ok(engine) => engine,
            Err(err) => {
                journal.close().await;
                system.stop();
                return Err(AppError::Startup(err));
            }
        };

        let membership = match join_cluster(&engine, addr).await {
            Ok(membership) => membership,
            Err(err) => {
                engine.journal.close().await;
                system.stop();
                return Err(err);
            }
        };
        let (stop_server, stopped) = oneshot::channel::<()>();
        let mut limits = ServerLimits::from(&engine.settings.server);
        limits.metrics = Some(engine.http_metrics.clone());
        limits.gate = Some(http::routes::placing_gate(engine.clone()));
        limits.self_timed = Arc::from([crate::metrics::route_index("place_order")]);
        limits.allow = Some(http::routes::allowed_methods);
        limits.authenticate = Some(gatekeeper.clone());
        let forwarder = membership.as_ref().map(|membership| {
            let timeout = std::time::Duration::from_millis(engine.settings.server.request_timeout_ms);
            Arc::new(Forwarder::new(engine.clone(), membership.clone(), timeout))
        });
        limits.forward = forwarder.clone();
        if engine.settings.server.connections_on_arbiters {
            limits.spawner = Some(engine.connection_spawner());
        }
        let routes = http::routes::routes(engine.clone(), gatekeeper, forwarder);
        let server = tokio::spawn(http::serve(listener, routes, limits, async {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, "listening; recovering orders");

        let (recovery, membership) = match start_engine(&engine, membership).await {
            Ok(started) => started,
            Err(err) => {
                let _ = stop_server.send(());
                let _ = server.await;
                engine.journal.close().await;
                system.stop();
                return Err(err.into());
            }
        };
        let reconciled = &recovery.reconciled;
        tracing::info!(
            orders = recovery.orders,
            revived = recovery.revived,
            requeued = recovery.requeued,
            stations_paused = recovery.stations_paused,
            ticket_index_disagreements = recovery.ticket_index_disagreements,
            intents_done = reconciled.intents_done,
            intents_refunded = reconciled.intents_refunded,
            intents_open = reconciled.intents_open,
            refunds_done = reconciled.refunds_done,
            refunds_open = reconciled.refunds_open,
            idempotency_expired = reconciled.idempotency_expired,
            took_ms = recovery.took_ms as u64,
            "recovery finished; ready"
        );
        let reconciler = {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RECONCILE_EVERY);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match recovery::reconcile(&engine).await {
                        Ok(report) => tracing::debug!(?report, "reconciled"),
                        Err(err) => tracing::error!(error = %err, "reconciliation failed"),
                    }
                }
            })
        };
        // Only a write can tell that a store which failed can write again.
        let prober = {
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROBE_EVERY);
                loop {
                    tick.tick().await;
                    if !engine.journal.writer().is_writable() {
                        if let Err(err) = engine.journal.writer().probe().await {
                            tracing::debug!(error = %err, "the store still cannot write");
                        }
                    }
                }
            })
        };
        let mut feed = match engine.journal.replication() {
            Some(replicated) => {
                let stores: Vec<String> = engine.stores.iter().map(|store| store.id.clone()).collect();
                let mut tasks = crate::feed::start(replicated.clone(), stores.clone());
                tasks.push(tokio::spawn(checkpointer(engine.clone(), replicated.clone(), stores)));
                tasks
            }
            None => Vec::new(),
        };
        let membership = membership.map(|(membership, rounds)| {
            feed.push(rounds);
            membership
        });
        Ok(App {
            membership,
            feed,
            addr,
            engine,
            system: Some(system),
            stop_server: Some(stop_server),
            server: Some(server),
            reconciler,
            prober,
            recovery,
            first_admin_key,
            gatekeeper: keys_in_use,
        })
    }

    /// Takes the keys of `settings` (the configuration read again, on
    /// `SIGHUP`) in place of those in use; see [`Gatekeeper::reload`]. Only
    /// `[[auth.keys]]` is re-read: `auth.enabled`, `public_metrics` and
    /// `session_hours` need a restart. On an error the keys in use stay.
    pub fn reload_keys(&self, settings: &Settings) -> Result<usize, String> {
        if !self.gatekeeper.enabled() {
            return Err("access checks are off (auth.enabled = false): there are no keys to reload".into());
        }
        if !settings.auth.enabled {
            return Err("auth.enabled = false takes a restart".into());
        }
        let (keys, _) = keys(settings, &self.engine.store, false)?;
        Ok(self.gatekeeper.reload(keys))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// This node in its cluster (replicated mode).
    pub fn membership(&self) -> Option<&Arc<Membership>> {
        self.membership.as_ref()
    }

    /// Stops in the documented order; see the module docs.
    pub async fn shutdown(mut self) {
        self.engine.ready.store(false, Ordering::Release);
        // In a cluster, the stores go to other nodes first, while this one
        // still answers: what it is asked meanwhile is held for, then sent
        // to, the new owners.
        if let Some(membership) = &self.membership {
            if let Some(rounds) = self.feed.pop() {
                rounds.abort();
            }
            membership.hand_over().await;
        }
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.reconciler.abort();
        self.prober.abort();
        for task in &self.feed {
            task.abort();
        }
        self.engine.journal.close().await;
        if let Some(system) = self.system.take() {
            let _ = tokio::task::spawn_blocking(move || system.stop()).await;
        }
        tracing::info!("stopped");
    }
}
