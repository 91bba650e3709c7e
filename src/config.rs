//! Configuration: built-in defaults, then a TOML file, then `CREMA_*`
//! environment variables, then command-line flags — each layer overriding the
//! one before. Key names are part of the HTTP contract (API.md, "Command line
//! and configuration"); the `config` crate does the layering so that nothing
//! here parses environment variables by hand.
//!
//! Only `CREMA_<SECTION>__<KEY>` variables (a double underscore between the
//! parts) are configuration. Others that merely start with `CREMA_` belong to
//! someone else — `CREMA_HOME`, or the service links Kubernetes injects for a
//! Service named `crema` (`CREMA_PORT=tcp://…`, `CREMA_SERVICE_HOST=…`) — and
//! are ignored: reading them as keys made crema refuse to start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::domain::{Menu, MenuItem};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub payment: PaymentSettings,
    pub barista: BaristaSettings,
    pub orders: OrderSettings,
    pub menu: MenuSettings,
    /// The chain's stores (API.md contract v2); none configured is one store `main`.
    pub stores: Vec<StoreConfig>,
    pub log: LogSettings,
    /// Staff keys and roles (API.md "Access (contract v2)").
    pub auth: AuthSettings,
    /// The JetStream cluster and this node, for `store.durability = "replicated"`
    /// (API.md "Replicated stores (contract v3)").
    pub cluster: ClusterSettings,
}

/// `[cluster]`: this node and the JetStream servers its stores' journals live on.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's name, unique in the chain: `[a-z0-9-]{1,32}`.
    pub node: String,
    /// Where the other nodes reach this node's HTTP.
    pub advertise: String,
    /// The JetStream servers (any of them will do to connect; the client learns the rest).
    pub nats: Vec<String>,
    /// JetStream replicas of the journal and the event feed (1, 3 or 5).
    pub replicas: usize,
    /// An owner silent this long loses its stores.
    pub lease_ms: u64,
    /// How long the event feed keeps an order's versions.
    pub retention_days: u64,
    /// How long a JetStream request (a publish's ack among them) may take
    /// before it is retried; the same message id makes the retry safe.
    pub request_timeout_ms: u64,
    /// How often each store's checkpoint is written (when its journal moved):
    /// loading a store reads its checkpoint and the journal after it.
    pub checkpoint_interval_s: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node: String::new(),
            advertise: String::new(),
            nats: Vec::new(),
            replicas: 3,
            lease_ms: 5_000,
            retention_days: 30,
            request_timeout_ms: 2_000,
            checkpoint_interval_s: 60,
        }
    }
}

/// `[auth]`: who may call the staff routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `false` turns every check off (said loudly at start): benchmarks and local experiments only.
    pub enabled: bool,
    /// Let `/metrics` be scraped without a key.
    pub public_metrics: bool,
    /// `[[auth.keys]]`; none configured, the first start makes an admin key (its hash kept in the data dir).
    pub keys: Vec<crate::auth::KeyConfig>,
    /// How long a staff screen's sign-in lasts.
    pub session_hours: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { enabled: true, public_metrics: false, keys: Vec::new(), session_hours: 12 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (colours only on a terminal) or `json` (one object per line).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One store of the chain: `[[stores]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// 1–32 of `[a-z0-9-]`; used in URLs and keys.
    pub id: String,
    pub name: String,
    /// Refuse an order (503 `store_busy`) whose estimated ready time is further away than this.
    #[serde(default)]
    pub max_wait_s: Option<u64>,
    /// Prices of this store that differ from the menu's: item id → price.
    #[serde(default)]
    pub prices: std::collections::BTreeMap<String, u64>,
    pub stations: Vec<StationConfig>,
}

/// One station of a store: `[[stores.stations]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    pub id: String,
    /// The station kinds it makes; omitted, every kind.
    #[serde(default)]
    pub serves: Option<Vec<String>>,
    /// `auto` or `manual`; omitted, `barista.mode`.
    #[serde(default)]
    pub mode: Option<StationMode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Largest request body accepted; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A client must send its whole request head within this time.
    pub header_read_timeout_ms: u64,
    /// A request that has no response head by then gets 503. `POST /orders`
    /// is exempt: it is bounded by `orders.place_timeout_ms` instead, and
    /// never answers "not placed" for an order that may still be placed.
    pub request_timeout_ms: u64,
    /// A request body must arrive within this time of its head; a slower one
    /// gets 408 and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// A response write that makes no progress for this long (the client does
    /// not read) closes the connection.
    pub write_timeout_ms: u64,
    /// A connection with no bytes moving either way for this long is closed
    /// (idle keep-alive; live event streams send a comment every 15 s).
    pub idle_timeout_ms: u64,
    /// Serve each connection on an order arbiter (thread per core: the order
    /// actor a request starts runs on the same thread). `false` serves them
    /// on the accepting runtime instead (the layout before). Measured in
    /// BENCHMARKS.md: less CPU per order on two cores, not on one.
    pub connections_on_arbiters: bool,
    /// Open connections beyond this are answered 503 and closed at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight before closing them.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The WAL is synced before any acknowledgement: survives a power cut.
    Sync,
    /// The WAL is written but not synced: survives a process crash only.
    Async,
    /// Every store's changes go to a JetStream journal replicated on
    /// `cluster.replicas` servers before they are acknowledged; RocksDB is
    /// this node's cache (written, not synced: the journal is the copy that
    /// survives). Needs `[cluster]`.
    Replicated,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Most write requests the store writer folds into one batch (one WAL sync).
    pub max_batch: usize,
    /// Capacity of the store writer's mailbox.
    pub mailbox: usize,
    /// Under load (the last group held at least 8 writes), how long the store
    /// writer waits for more writes before it writes and syncs a group that
    /// is still small: fewer, larger groups, fewer WAL syncs. 0 turns it off.
    pub group_linger_us: u64,
    /// Let RocksDB preallocate WAL space (fewer metadata updates per sync).
    /// With it, a filling disk is noticed only once that space is used up.
    pub wal_preallocate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayKind {
    Simulated,
    Http,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    pub gateway: GatewayKind,
    pub url: String,
    pub timeout_ms: u64,
    pub simulated: SimulatedSettings,
    pub breaker: BreakerSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedSettings {
    pub latency_ms: u64,
    pub decline_rate: f64,
    pub fail_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    pub window: usize,
    pub min_calls: usize,
    pub failure_rate: f64,
    pub slow_call_ms: u64,
    pub slow_call_rate: f64,
    pub open_ms: u64,
    pub half_open_probes: usize,
    /// The bulkhead: gateway calls in flight at once; excess is refused at once.
    pub max_concurrent: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StationMode {
    Auto,
    Manual,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaristaSettings {
    pub stations: usize,
    pub mode: StationMode,
    /// Brew time = item brew_ms × qty × brew_scale; 0 makes it instant.
    pub brew_scale: f64,
    /// Most tickets waiting in the queue; beyond it `POST /orders` answers 503
    /// `overloaded` before anything is charged.
    pub max_queue: usize,
    /// Fault injection: the first N brews make their station actor panic.
    pub inject_panics: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderSettings {
    /// An order actor stops this long after it has nothing left to do; its
    /// status is then answered from its snapshot.
    pub passivate_after_ms: u64,
    /// Most order actors alive at once; beyond it new orders get 503 `overloaded`.
    pub max_live: usize,
    /// Most `POST /orders` being placed at once (charged and made durable);
    /// beyond it new ones get 429 `overloaded` at once, before the body is
    /// read. Bounds the latency of accepted orders under overload (Little's
    /// law: at most this many ahead of any order) while leaving enough in
    /// flight for group commit to fill its batches. At most the payment
    /// bulkhead (`payment.breaker.max_concurrent`), so that overload is shed
    /// here with 429 and not as 503 `payment_unavailable`.
    pub max_placing: usize,
    /// Capacity of each order actor's mailbox.
    pub mailbox: usize,
    /// First wait before a failed refund is retried; doubles up to a minute.
    pub refund_retry_ms: u64,
    /// How long a completed `Idempotency-Key` is remembered.
    pub idempotency_ttl_s: u64,
    /// How long an HTTP handler waits for an order actor's answer.
    pub ask_timeout_ms: u64,
    /// How long `POST /orders` waits for its placement (intent, charge,
    /// establishing write) before answering 202 `placement_pending`: the
    /// outcome is then unknown to the client, who learns it by repeating the
    /// request with the same `Idempotency-Key` (or `GET` on the `Location`).
    pub place_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MenuSettings {
    pub currency: String,
    pub items: Vec<MenuItem>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server: ServerSettings::default(),
            store: StoreSettings::default(),
            payment: PaymentSettings::default(),
            barista: BaristaSettings::default(),
            orders: OrderSettings::default(),
            menu: MenuSettings::default(),
            stores: Vec::new(),
            log: LogSettings::default(),
            auth: AuthSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 64 * 1024,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            body_read_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            connections_on_arbiters: true,
            max_connections: 4_096,
            shutdown_grace_ms: 10_000,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            data_dir: PathBuf::from("./data"),
            durability: Durability::Sync,
            max_batch: 1_024,
            mailbox: 8_192,
            group_linger_us: 300,
            wal_preallocate: true,
        }
    }
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            gateway: GatewayKind::Simulated,
            url: "http://127.0.0.1:9090".into(),
            timeout_ms: 1_000,
            simulated: SimulatedSettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

impl Default for SimulatedSettings {
    fn default() -> Self {
        SimulatedSettings { latency_ms: 0, decline_rate: 0.0, fail_rate: 0.0 }
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            slow_call_ms: 1_000,
            slow_call_rate: 0.5,
            open_ms: 5_000,
            half_open_probes: 3,
            max_concurrent: 64,
        }
    }
}

impl Default for BaristaSettings {
    fn default() -> Self {
        BaristaSettings { stations: 3, mode: StationMode::Auto, brew_scale: 1.0, max_queue: 10_000, inject_panics: 0 }
    }
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            passivate_after_ms: 1_000,
            max_live: 50_000,
            max_placing: 64,
            mailbox: 64,
            refund_retry_ms: 500,
            idempotency_ttl_s: 24 * 3600,
            ask_timeout_ms: 5_000,
            place_timeout_ms: 10_000,
        }
    }
}

impl Default for MenuSettings {
    fn default() -> Self {
        MenuSettings { currency: "KRW".into(), items: Vec::new() }
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

// Not `#[from]`: that would make the inner error the `source` as well, and
// `crema: {err:#}` would print its text twice.
impl From<config::ConfigError> for ConfigError {
    fn from(err: config::ConfigError) -> Self {
        ConfigError::Load(err)
    }
}

/// The sections of [`Settings`], the only `CREMA_<SECTION>__…` prefixes read.
const SECTIONS: [&str; 10] = ["server", "store", "payment", "barista", "orders", "menu", "stores", "log", "auth", "cluster"];

/// The `CREMA_*` variables that are crema configuration: those of the shape
/// `CREMA_<SECTION>__<KEY>`. A variable of that shape whose section is not one
/// of [`SECTIONS`] is an error (a typo should not pass silently); one without
/// `__` is not ours and is left alone.
fn config_variables(vars: impl Iterator<Item = (String, String)>) -> Result<config::Map<String, String>, ConfigError> {
    let mut map = config::Map::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix("CREMA_") else { continue };
        let Some((section, _)) = rest.split_once("__") else { continue };
        if !SECTIONS.iter().any(|known| section.eq_ignore_ascii_case(known)) {
            return Err(ConfigError::Invalid(format!(
                "{name}: unknown section {section:?} (CREMA_<SECTION>__<KEY>, sections: {})",
                SECTIONS.join(", ")
            )));
        }
        map.insert(name, value);
    }
    Ok(map)
}

impl Settings {
    /// Loads defaults ← `file` ← `CREMA_*` environment ← `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file).format(config::FileFormat::Toml).required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CREMA")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(config_variables(std::env::vars())?)),
        );
        if let Some(bind) = overrides.bind {
            builder = builder.set_override("server.bind", bind.to_string())?;
        }
        if let Some(dir) = &overrides.data_dir {
            builder = builder.set_override("store.data_dir", dir.to_string_lossy().into_owned())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// The menu to serve: the configured one, or the built-in items (in the
    /// configured currency: its prices are then read in that currency's minor unit).
    pub fn menu(&self) -> Menu {
        if self.menu.items.is_empty() {
            Menu { currency: self.menu.currency.clone(), ..Menu::builtin() }
        } else {
            Menu { currency: self.menu.currency.clone(), items: self.menu.items.clone() }
        }
    }

    /// The stores to run: the configured ones, or one store `main` with
    /// `barista.stations` stations (`bar-1`, …) serving every kind. The first
    /// is the default store, which the unscoped routes are.
    pub fn stores(&self) -> Vec<StoreConfig> {
        if !self.stores.is_empty() {
            return self.stores.clone();
        }
        vec![StoreConfig {
            id: crate::domain::order::DEFAULT_STORE.to_owned(),
            name: "Main".to_owned(),
            max_wait_s: None,
            prices: Default::default(),
            stations: (1..=self.barista.stations)
                .map(|n| StationConfig { id: format!("bar-{n}"), serves: None, mode: None })
                .collect(),
        }]
    }

    /// Checks `[[stores]]` against the menu: unique slug ids, 1–256 stations
    /// each with a unique id, prices of known items, and every station kind
    /// of the menu served by some station of every store (else its orders
    /// could be paid for and never made).
    fn validate_stores(&self, menu: &Menu) -> Result<(), String> {
        let slug = |id: &str| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let mut ids = std::collections::HashSet::new();
        for store in &self.stores() {
            let at = format!("stores: store {:?}", store.id);
            if !slug(&store.id) {
                return Err(format!("{at}: the id must be 1-32 of [a-z0-9-]"));
            }
            if !ids.insert(store.id.clone()) {
                return Err(format!("{at} appears twice"));
            }
            if store.name.trim().is_empty() || store.name.chars().count() > 64 {
                return Err(format!("{at}: name must be 1-64 characters"));
            }
            if store.stations.is_empty() || store.stations.len() > 256 {
                return Err(format!("{at} must have 1-256 stations"));
            }
            if store.max_wait_s == Some(0) {
                return Err(format!("{at}: max_wait_s must be at least 1 (0 would refuse everything)"));
            }
            let mut stations = std::collections::HashSet::new();
            for station in &store.stations {
                if !slug(&station.id) || !stations.insert(station.id.as_str()) {
                    return Err(format!("{at}: station id {:?} must be unique and 1-32 of [a-z0-9-]", station.id));
                }
                for kind in station.serves.iter().flatten() {
                    if !menu.station_kinds().contains(&kind.as_str()) {
                        return Err(format!(
                            "{at}: station {:?} serves {kind:?}, which no menu item names (kinds: {})",
                            station.id,
                            menu.station_kinds().join(", ")
                        ));
                    }
                }
            }
            for kind in menu.station_kinds() {
                let served = store.stations.iter().any(|station| station.serves.as_ref().is_none_or(|kinds| kinds.iter().any(|k| k == kind)));
                if !served {
                    return Err(format!("{at}: no station serves {kind:?}, so its items could be paid for and never made"));
                }
            }
            for (item, price) in &store.prices {
                let Some(menu_item) = menu.item(item) else {
                    return Err(format!("{at}: prices names {item:?}, which is not on the menu"));
                };
                let surcharges: u64 = menu_item.options.iter().flat_map(|group| &group.choices).map(|choice| choice.price).sum();
                if price.saturating_add(surcharges) > u64::MAX / 800 {
                    return Err(format!("{at}: the price of {item:?} is absurd"));
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.barista.stations == 0 || self.barista.stations > 256 {
            return invalid("barista.stations must be 1-256");
        }
        if !(self.barista.brew_scale >= 0.0 && self.barista.brew_scale.is_finite()) {
            return invalid("barista.brew_scale must be a finite number >= 0");
        }
        if self.barista.max_queue == 0 {
            return invalid("barista.max_queue must be at least 1");
        }
        for (name, rate) in [
            ("payment.simulated.decline_rate", self.payment.simulated.decline_rate),
            ("payment.simulated.fail_rate", self.payment.simulated.fail_rate),
            ("payment.breaker.failure_rate", self.payment.breaker.failure_rate),
            ("payment.breaker.slow_call_rate", self.payment.breaker.slow_call_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::Invalid(format!("{name} must be between 0 and 1")));
            }
        }
        if self.payment.breaker.max_concurrent == 0 {
            return invalid("payment.breaker.max_concurrent must be at least 1");
        }
        if self.store.max_batch == 0 || self.store.mailbox == 0 {
            return invalid("store.max_batch and store.mailbox must be at least 1");
        }
        if self.store.group_linger_us > 10_000 {
            return invalid("store.group_linger_us must be at most 10000 (10 ms): it is added to a write's latency");
        }
        if self.server.max_connections == 0 || self.server.body_limit_bytes == 0 {
            return invalid("server.max_connections and server.body_limit_bytes must be at least 1");
        }
        if self.orders.max_live == 0 || self.orders.mailbox < 8 || self.orders.max_placing == 0 {
            return invalid("orders.max_live and orders.max_placing must be at least 1, orders.mailbox at least 8");
        }
        for (name, value) in [
            ("server.header_read_timeout_ms", self.server.header_read_timeout_ms),
            ("server.request_timeout_ms", self.server.request_timeout_ms),
            ("server.body_read_timeout_ms", self.server.body_read_timeout_ms),
            ("server.write_timeout_ms", self.server.write_timeout_ms),
            ("server.idle_timeout_ms", self.server.idle_timeout_ms),
            ("payment.timeout_ms", self.payment.timeout_ms),
            ("orders.ask_timeout_ms", self.orders.ask_timeout_ms),
            ("orders.place_timeout_ms", self.orders.place_timeout_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be at least 1 (0 would refuse everything)")));
            }
        }
        if self.payment.gateway == GatewayKind::Http {
            match reqwest::Url::parse(&self.payment.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                Ok(_) => return invalid("payment.url must be an http:// or https:// URL with a host"),
                Err(err) => return Err(ConfigError::Invalid(format!("payment.url {:?} is not a URL: {err}", self.payment.url))),
            }
        }
        let currency = &self.menu.currency;
        if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return Err(ConfigError::Invalid(format!(
                "menu.currency {currency:?} must be an ISO 4217 code: three capital letters, e.g. KRW or EUR"
            )));
        }
        let menu = self.menu();
        menu.validate().map_err(ConfigError::Invalid)?;
        self.validate_stores(&menu).map_err(ConfigError::Invalid)?;
        self.validate_cluster().map_err(ConfigError::Invalid)?;
        self.validate_auth().map_err(ConfigError::Invalid)
    }

    /// `replicated` needs a node name, JetStream servers and a sane replica
    /// count; `[cluster]` alone (without `replicated`) is allowed and unused.
    fn validate_cluster(&self) -> Result<(), String> {
        if self.store.durability != Durability::Replicated {
            return Ok(());
        }
        let cluster = &self.cluster;
        let slug = |id: &str| (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug(&cluster.node) {
            return Err(format!("cluster.node {:?} must be 1-32 of a-z, 0-9 and - (store.durability = \"replicated\" needs it)", cluster.node));
        }
        if cluster.nats.is_empty() {
            return Err("cluster.nats must name at least one JetStream server (store.durability = \"replicated\")".into());
        }
        if !matches!(cluster.replicas, 1 | 3 | 5) {
            return Err("cluster.replicas must be 1, 3 or 5".into());
        }
        if cluster.lease_ms < 500 || cluster.retention_days == 0 || cluster.request_timeout_ms == 0 || cluster.checkpoint_interval_s == 0 {
            return Err(
                "cluster.lease_ms must be at least 500; cluster.retention_days, request_timeout_ms and checkpoint_interval_s at least 1".into(),
            );
        }
        Ok(())
    }

    /// The keys parse, and each names only stores that exist (a typo would
    /// otherwise leave a barista locked out with a 403 and no clue why).
    fn validate_auth(&self) -> Result<(), String> {
        if !(1..=720).contains(&self.auth.session_hours) {
            return Err("auth.session_hours must be 1-720".into());
        }
        crate::auth::Keys::new(self.auth.keys.clone())?;
        let stores = self.stores();
        for key in &self.auth.keys {
            if let Some(unknown) = key.stores.iter().find(|id| !stores.iter().any(|store| &&store.id == id)) {
                return Err(format!("auth.keys: key {:?} names store {unknown:?}, which is not configured", key.name));
            }
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.server.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let settings = Settings::default();
        assert_eq!(settings.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.store.data_dir, PathBuf::from("./data"));
        assert_eq!(settings.store.durability, Durability::Sync);
        assert_eq!(settings.barista.stations, 3);
        assert_eq!(settings.barista.mode, StationMode::Auto);
        assert_eq!(settings.menu(), Menu::builtin());
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crema.toml");
        std::fs::write(
            &path,
            r#"
[store]
durability = "async"
[barista]
stations = 5
brew_scale = 0.5
[menu]
currency = "EUR"
[[menu.items]]
id = "tea"
name = "Tea"
price = 300
brew_ms = 100
"#,
        )
        .unwrap();
        let overrides = Overrides {
            bind: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(dir.path().join("data")),
        };
        let settings = Settings::load(Some(&path), &overrides).unwrap();
        assert_eq!(settings.store.durability, Durability::Async);
        assert_eq!(settings.barista.stations, 5);
        assert_eq!(settings.barista.brew_scale, 0.5);
        assert_eq!(settings.server.bind.port(), 0);
        assert_eq!(settings.store.data_dir, dir.path().join("data"));
        assert_eq!(settings.menu().currency, "EUR");
        assert_eq!(settings.menu().items.len(), 1);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crema.toml");
        std::fs::write(&path, "[barista]\nstaions = 5\n").unwrap();
        assert!(Settings::load(Some(&path), &Overrides::default()).is_err());
        std::fs::write(&path, "[barista]\nstations = 0\n").unwrap();
        assert!(Settings::load(Some(&path), &Overrides::default()).is_err());
    }

    fn load_text(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crema.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load(Some(&path), &Overrides::default())
    }

    #[test]
    fn menu_options_in_the_file_mirror_the_json() {
        let settings = load_text(
            r#"
[[menu.items]]
id = "latte"
name = "Latte"
price = 5000
brew_ms = 4000
station = "espresso"
[[menu.items.options]]
id = "size"
name = "Size"
min = 1
max = 1
default = "tall"
[[menu.items.options.choices]]
id = "tall"
name = "Tall"
price = 0
[[menu.items.options.choices]]
id = "grande"
name = "Grande"
price = 500
brew_ms = 500
"#,
        )
        .unwrap();
        let menu = settings.menu();
        let size = menu.items[0].group("size").unwrap();
        assert_eq!(menu.items[0].station, "espresso");
        assert_eq!((size.min, size.max, size.default.as_deref()), (1, 1, Some("tall")));
        assert_eq!(size.choice("grande").unwrap().brew_ms, 500);
        assert_eq!(size.choice("tall").unwrap().brew_ms, 0, "brew_ms defaults to 0");
        // A default that is not a choice is refused when the file is loaded.
        let err = load_text(
            "[[menu.items]]\nid = \"x\"\nname = \"X\"\nprice = 1\nbrew_ms = 1\n[[menu.items.options]]\nid = \"size\"\nname = \"Size\"\nmin = 1\nmax = 1\ndefault = \"huge\"\n[[menu.items.options.choices]]\nid = \"tall\"\nname = \"Tall\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn stores_default_to_main_and_are_checked_against_the_menu() {
        let settings = Settings::default();
        let stores = settings.stores();
        assert_eq!(stores.len(), 1);
        assert_eq!((stores[0].id.as_str(), stores[0].stations.len()), ("main", 3));
        assert_eq!(stores[0].stations[2].id, "bar-3");

        let chain = r#"
[[stores]]
id = "gangnam"
name = "Gangnam"
max_wait_s = 600
prices = { latte = 5200 }
[[stores.stations]]
id = "bar-1"
serves = ["bar"]
[[stores.stations]]
id = "oven"
serves = ["kitchen"]
mode = "manual"
[[stores]]
id = "hongdae"
name = "Hongdae"
[[stores.stations]]
id = "bar-1"
"#;
        let settings = load_text(chain).unwrap();
        let stores = settings.stores();
        assert_eq!(stores.iter().map(|store| store.id.as_str()).collect::<Vec<_>>(), ["gangnam", "hongdae"]);
        assert_eq!(stores[0].prices["latte"], 5200);
        assert_eq!(stores[0].max_wait_s, Some(600));
        assert_eq!(stores[0].stations[1].mode, Some(StationMode::Manual));
        assert_eq!(stores[1].stations[0].serves, None);

        for (broken, says) in [
            (chain.replace("\"hongdae\"", "\"gangnam\""), "twice"),
            (chain.replace("id = \"hongdae\"", "id = \"Hong Dae\""), "[a-z0-9-]"),
            (chain.replace("serves = [\"kitchen\"]", "serves = [\"bar\"]"), "no station serves \"kitchen\""),
            (chain.replace("serves = [\"kitchen\"]", "serves = [\"oven\"]"), "no menu item names"),
            (chain.replace("latte = 5200", "mocha = 5200"), "not on the menu"),
            (chain.replace("id = \"oven\"", "id = \"bar-1\""), "unique"),
            (chain.replace("max_wait_s = 600", "max_wait_s = 0"), "max_wait_s"),
        ] {
            let err = load_text(&broken).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn access_keys_are_read_and_checked() {
        let text = crate::auth::new_key_text("main-bar", crate::auth::Role::Barista, &["main".into()]);
        let toml_lines: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        let settings = load_text(&toml_lines).unwrap();
        assert!(settings.auth.enabled, "access is on by default");
        assert_eq!(settings.auth.keys[0].name, "main-bar");
        let err = load_text(&toml_lines.replace("\"main\"", "\"gangnam\"")).unwrap_err().to_string();
        assert!(err.contains("not configured"), "{err}");
        let err = load_text(&format!("{toml_lines}\n{}", toml_lines.replace("main-bar", "other"))).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
        assert!(load_text("[auth]\nsession_hours = 0\n").is_err());
    }

    #[test]
    fn the_example_chain_loads() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/chain.toml"));
        let settings = Settings::load(Some(path), &Overrides::default()).unwrap();
        let ids: Vec<String> = settings.stores().into_iter().map(|store| store.id).collect();
        assert_eq!(ids, ["gangnam", "hongdae", "seongsu"]);
    }

    #[test]
    fn values_that_would_refuse_everything_are_errors() {
        for text in [
            "[server]\nrequest_timeout_ms = 0\n",
            "[payment]\ntimeout_ms = 0\n",
            "[payment]\ngateway = \"http\"\nurl = \"not a url\"\n",
            "[payment]\ngateway = \"http\"\nurl = \"ftp://pay.example\"\n",
            "[menu]\ncurrency = \"EURO\"\n",
            "[menu]\ncurrency = \"eur\"\n",
            "[store]\ngroup_linger_us = 10001\n",
        ] {
            let err = load_text(text).expect_err(text).to_string();
            assert!(err.starts_with("configuration: "), "{err}");
        }
        assert!(load_text("[payment]\ngateway = \"http\"\nurl = \"http://10.0.0.7:9090\"\n").is_ok());
        assert!(load_text("[store]\ngroup_linger_us = 0\n").is_ok(), "0 turns the linger off");
    }

    #[test]
    fn the_configured_currency_applies_to_the_built_in_menu_too() {
        let settings = load_text("[menu]\ncurrency = \"EUR\"\n").unwrap();
        let menu = settings.menu();
        assert_eq!(menu.currency, "EUR", "was silently KRW");
        assert_eq!(menu.items, Menu::builtin().items);
        assert_eq!(Settings::default().menu().currency, "KRW");
    }

    #[test]
    fn only_section_shaped_crema_variables_are_configuration() {
        let vars = [
            ("CREMA_HOME", "/x"),
            ("CREMA_PORT", "tcp://10.0.0.1:8080"),
            ("CREMA_PORT_8080_TCP_ADDR", "10.0.0.1"),
            ("CREMA_SERVICE_HOST", "10.0.0.1"),
            ("PATH", "/bin"),
            ("CREMA_BARISTA__STATIONS", "5"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()));
        let map = config_variables(vars.into_iter()).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map["CREMA_BARISTA__STATIONS"], "5");
        let typo = [("CREMA_BARISTER__STATIONS".to_owned(), "5".to_owned())];
        let err = config_variables(typo.into_iter()).unwrap_err().to_string();
        assert!(err.contains("CREMA_BARISTER__STATIONS"), "{err}");
    }
}
