//! Staff keys and roles (API.md "Access (contract v2)"): which key a request
//! presents, and whether its role and stores cover a route. Keys are bearer
//! tokens; only their SHA-256 is kept (in configuration), and a presented key
//! is compared with every configured hash in constant time.
//!
//! [`Gatekeeper`] holds the keys and the staff screens' sign-in sessions; the
//! server asks it who each request's [`Caller`] is (once, from the headers)
//! and keeps the answer in a task-local that the routes check with
//! [`authorize`] — with the store warp parsed from the path, so the check and
//! the route can never disagree about which store a request is about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a key may do, each role including the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Barista,
    Manager,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Barista => "barista",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}

/// One `[[auth.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    pub role: Role,
    /// The stores it covers; ignored for `admin`, who has every store.
    #[serde(default)]
    pub stores: Vec<String>,
    /// Hex of the SHA-256 of the key.
    pub sha256: String,
}

/// Who may call a route: nobody needs a key for `Public`; the others need a
/// key of at least that role, covering the route's store if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Public,
    Barista,
    Manager,
    Admin,
}

/// The configured keys, with their hashes decoded.
#[derive(Debug, Default)]
pub struct Keys {
    keys: Vec<(Arc<KeyConfig>, [u8; 32])>,
}

impl Keys {
    /// Checks the entries: hex SHA-256s, unique names and hashes, and a store
    /// for every key that is not an admin's.
    pub fn new(configs: Vec<KeyConfig>) -> Result<Keys, String> {
        let mut keys: Vec<(Arc<KeyConfig>, [u8; 32])> = Vec::with_capacity(configs.len());
        for config in configs {
            let at = format!("auth.keys: key {:?}", config.name);
            let hash = decode_hex(&config.sha256).ok_or_else(|| format!("{at}: sha256 must be 64 hex digits"))?;
            if config.name.is_empty() || keys.iter().any(|(other, _)| other.name == config.name) {
                return Err(format!("{at}: names must be non-empty and unique"));
            }
            if keys.iter().any(|(_, other)| *other == hash) {
                return Err(format!("{at}: the same key is configured twice"));
            }
            if config.role != Role::Admin && config.stores.is_empty() {
                return Err(format!("{at}: a {} key needs its stores", config.role.as_str()));
            }
            keys.push((Arc::new(config), hash));
        }
        Ok(Keys { keys })
    }

    /// The key `presented` is, if any. Every configured hash is compared, in
    /// constant time each, whichever matches: the time taken says nothing
    /// about which key (or how much of one) was right.
    pub fn find(&self, presented: &str) -> Option<&Arc<KeyConfig>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (config, hash) in &self.keys {
            if constant_time_eq(&digest, hash) {
                found = Some(config);
            }
        }
        found
    }
}

/// Who is calling, as far as access is concerned.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Access checks are off (`auth.enabled = false`).
    Open,
    /// No key presented.
    Anonymous,
    /// A key (or session) crema does not know.
    Unknown,
    Key(Arc<KeyConfig>),
}

impl Caller {
    /// The key's name for the access log; empty for no key.
    pub fn name(&self) -> &str {
        match self {
            Caller::Key(key) => &key.name,
            Caller::Open | Caller::Anonymous | Caller::Unknown => "",
        }
    }

    /// Whether this caller sees `store`'s orders, events and figures on the
    /// routes that span stores (`GET /orders`, `/events`, `/stats`).
    pub fn sees(&self, store: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key(key) => covers(key, store),
            Caller::Anonymous | Caller::Unknown => false,
        }
    }

    /// Whether this caller sees every store (admin, or checks off).
    pub fn sees_all(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key(key) => key.role == Role::Admin,
            Caller::Anonymous | Caller::Unknown => false,
        }
    }
}

tokio::task_local! {
    /// The caller of the request this task answers (set by the server).
    static CALLER: Caller;
}

/// Runs `future` as a request of `caller`.
pub async fn as_caller<F: std::future::Future>(caller: Caller, future: F) -> F::Output {
    CALLER.scope(caller, future).await
}

/// The caller of the request this task answers; outside a request, nobody.
pub fn current_caller() -> Caller {
    CALLER.try_with(Caller::clone).unwrap_or(Caller::Anonymous)
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No key, or an unknown one: 401.
    Unauthorized(String),
    /// A key whose role or stores do not cover the request: 403.
    Forbidden(String),
}

/// Whether the current request may call a route of `class` about `store`.
pub fn authorize(class: RouteClass, store: Option<&str>) -> Result<Caller, Denied> {
    let caller = current_caller();
    check(&caller, class, store)?;
    Ok(caller)
}

/// [`authorize`] for a given caller.
fn check(caller: &Caller, class: RouteClass, store: Option<&str>) -> Result<(), Denied> {
    if class == RouteClass::Public {
        return Ok(());
    }
    match caller {
        Caller::Open => Ok(()),
        Caller::Anonymous => Err(Denied::Unauthorized("this needs a staff key: Authorization: Bearer <key>".into())),
        Caller::Unknown => Err(Denied::Unauthorized("this key (or sign-in) is not known; sign in again".into())),
        Caller::Key(key) if may(key, class, store) => Ok(()),
        Caller::Key(key) => Err(Denied::Forbidden(match store {
            Some(store) if key.role >= class.role().unwrap_or(Role::Admin) => {
                format!("key {:?} does not cover store {store:?}", key.name)
            }
            _ => format!("key {:?} is a {} key; this needs {}", key.name, key.role.as_str(), class.describe()),
        })),
    }
}

impl RouteClass {
    fn role(self) -> Option<Role> {
        match self {
            RouteClass::Public => None,
            RouteClass::Barista => Some(Role::Barista),
            RouteClass::Manager => Some(Role::Manager),
            RouteClass::Admin => Some(Role::Admin),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RouteClass::Public => "no key",
            RouteClass::Barista => "a barista, manager or admin key",
            RouteClass::Manager => "a manager or admin key",
            RouteClass::Admin => "an admin key",
        }
    }
}

/// The name of the staff screens' session cookie.
pub const SESSION_COOKIE: &str = "crema_session";
/// Most sign-ins kept at once; past it the one closest to expiring goes.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    key: Arc<KeyConfig>,
    expires: Instant,
}

/// The keys, the sign-in sessions, and whether checks are on.
pub struct Gatekeeper {
    enabled: bool,
    pub public_metrics: bool,
    /// Swapped whole by [`Gatekeeper::reload`] (`SIGHUP`).
    keys: std::sync::RwLock<Keys>,
    session_ttl: Duration,
    /// By the SHA-256 of the session token: the map never holds a usable token.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Gatekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gatekeeper").field("enabled", &self.enabled).field("keys", &self.keys().keys.len()).finish()
    }
}

impl Gatekeeper {
    pub fn new(enabled: bool, public_metrics: bool, keys: Keys, session_ttl: Duration) -> Gatekeeper {
        Gatekeeper { enabled, public_metrics, keys: std::sync::RwLock::new(keys), session_ttl, sessions: Mutex::new(HashMap::new()) }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes `keys` in place of the configured ones (a configuration re-read
    /// on `SIGHUP`): a removed key stops working at once, its sign-in
    /// sessions with it; a key whose role or stores changed keeps its
    /// sessions, with the new role and stores. Returns how many keys there are.
    pub fn reload(&self, keys: Keys) -> usize {
        let count = keys.keys.len();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, session| {
            match keys.keys.iter().find(|(key, _)| key.name == session.key.name && key.sha256 == session.key.sha256) {
                Some((key, _)) => {
                    session.key = key.clone();
                    true
                }
                None => false,
            }
        });
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
        count
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn session_ttl(&self) -> Duration {
        self.session_ttl
    }

    /// Who presents these headers: `Authorization: Bearer <key>` first, else
    /// the session cookie. Hashing happens only when one of them is there.
    pub fn caller(&self, headers: &http::HeaderMap) -> Caller {
        if !self.enabled {
            return Caller::Open;
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let key = value.to_str().ok().and_then(|text| {
                let (scheme, key) = text.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            });
            return match key.and_then(|key| self.keys().find(key).cloned()) {
                Some(key) => Caller::Key(key),
                None => Caller::Unknown,
            };
        }
        match session_token(headers) {
            Some(token) => self.session(token).map_or(Caller::Unknown, Caller::Key),
            None => Caller::Anonymous,
        }
    }

    /// The key of a live session.
    fn session(&self, token: &str) -> Option<Arc<KeyConfig>> {
        let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sessions.get(&id) {
            Some(session) if session.expires > Instant::now() => Some(session.key.clone()),
            Some(_) => {
                sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Signs in with `key`: a new session token (to go into the cookie) and the key it stands for.
    pub fn sign_in(&self, key: &str) -> Option<(String, Arc<KeyConfig>)> {
        let key = self.keys().find(key)?.clone();
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        let token = encode_hex(&bytes);
        let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, session| session.expires > now);
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, session)| session.expires).map(|(id, _)| *id) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id, Session { key: key.clone(), expires: now + self.session_ttl });
        Some((token, key))
    }

    /// Ends the session these headers carry, if any.
    pub fn sign_out(&self, headers: &http::HeaderMap) {
        if let Some(token) = session_token(headers) {
            let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
        }
    }
}

/// The session token in a `Cookie` header, if any.
fn session_token(headers: &http::HeaderMap) -> Option<&str> {
    headers.get_all(http::header::COOKIE).iter().filter_map(|value| value.to_str().ok()).find_map(|cookies| {
        cookies.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE && !value.is_empty()).then_some(value)
        })
    })
}

/// Whether `key` may call a route of `class` about `store` (`None`: a route
/// of no one store, such as `GET /orders`, whose answers are then filtered
/// to the key's stores by the caller).
pub fn may(key: &KeyConfig, class: RouteClass, store: Option<&str>) -> bool {
    let Some(needed) = class.role() else { return true };
    key.role >= needed && store.is_none_or(|store| covers(key, store))
}

/// Whether `key` covers `store`: an admin's covers every store.
fn covers(key: &KeyConfig, store: &str) -> bool {
    key.role == Role::Admin || key.stores.iter().any(|own| own == store)
}

/// The hex of `key`'s SHA-256, as `[[auth.keys]]` names it.
pub fn sha256_hex(key: &str) -> String {
    encode_hex(&Sha256::digest(key.as_bytes()))
}

/// A new random key (`crema_` and 64 hex digits: 256 bits) and the hex of its SHA-256.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let key = format!("crema_{}", encode_hex(&bytes));
    let hash = sha256_hex(&key);
    (key, hash)
}

/// What `crema keys new` prints: the key alone on the first line, then the
/// `[[auth.keys]]` lines to add to the configuration.
pub fn new_key_text(name: &str, role: Role, stores: &[String]) -> String {
    let (key, hash) = new_key();
    let stores = stores.iter().map(|store| format!("{store:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "{key}\n# Add to the configuration (the key above is shown once and kept nowhere):\n[[auth.keys]]\nname = {name:?}\nrole = \"{}\"\nstores = [{stores}]\nsha256 = \"{hash}\"\n",
        role.as_str()
    )
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, pair) in text.as_bytes().chunks(2).enumerate() {
        out[index] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, role: Role, stores: &[&str]) -> (String, KeyConfig) {
        let (secret, sha256) = new_key();
        (secret, KeyConfig { name: name.into(), role, stores: stores.iter().map(|s| (*s).to_owned()).collect(), sha256 })
    }

    #[test]
    fn a_presented_key_is_found_by_its_hash_and_nothing_else() {
        let (bar, bar_config) = key("hongdae-bar", Role::Barista, &["hongdae"]);
        let (boss, boss_config) = key("root", Role::Admin, &[]);
        let keys = Keys::new(vec![bar_config, boss_config]).unwrap();
        assert_eq!(keys.find(&bar).unwrap().name, "hongdae-bar");
        assert_eq!(keys.find(&boss).unwrap().name, "root");
        assert!(keys.find("crema_guess").is_none());
        assert!(keys.find(&bar[..bar.len() - 1]).is_none(), "a prefix is not the key");
        assert!(keys.find(&keys.keys[0].0.sha256).is_none(), "the hash is not the key");
    }

    #[test]
    fn roles_and_stores_cover_routes() {
        let (_, bar) = key("hongdae-bar", Role::Barista, &["hongdae"]);
        let (_, manager) = key("gangnam-lead", Role::Manager, &["gangnam", "seongsu"]);
        let (_, admin) = key("root", Role::Admin, &[]);
        use RouteClass as C;
        // A hongdae barista cannot pause a gangnam station, nor pause ordering at hongdae.
        assert!(may(&bar, C::Barista, Some("hongdae")));
        assert!(!may(&bar, C::Barista, Some("gangnam")));
        assert!(!may(&bar, C::Manager, Some("hongdae")));
        assert!(may(&manager, C::Barista, Some("seongsu")), "a manager may do what a barista may");
        assert!(may(&manager, C::Manager, Some("gangnam")));
        assert!(!may(&manager, C::Manager, Some("hongdae")));
        assert!(may(&manager, C::Manager, None), "store-less routes are filtered by the caller");
        assert!(!may(&manager, C::Admin, None));
        assert!(may(&admin, C::Admin, None) && may(&admin, C::Barista, Some("anywhere")));
        assert!(may(&bar, C::Public, Some("gangnam")));
    }

    #[test]
    fn bad_key_entries_are_refused() {
        let (_, good) = key("a", Role::Barista, &["gangnam"]);
        let mut short = good.clone();
        short.sha256.pop();
        assert!(Keys::new(vec![short]).unwrap_err().contains("64 hex"));
        let mut twice = good.clone();
        twice.name = "b".into();
        assert!(Keys::new(vec![good.clone(), twice]).unwrap_err().contains("twice"));
        assert!(Keys::new(vec![good.clone(), good.clone()]).unwrap_err().contains("unique"));
        let mut storeless = good;
        storeless.stores.clear();
        assert!(Keys::new(vec![storeless]).unwrap_err().contains("needs its stores"));
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap())).collect()
    }

    #[test]
    fn callers_come_from_a_bearer_key_or_a_session_cookie() {
        let (bar, bar_config) = key("hongdae-bar", Role::Barista, &["hongdae"]);
        let gatekeeper = Gatekeeper::new(true, false, Keys::new(vec![bar_config]).unwrap(), Duration::from_secs(60));
        let name = |pairs: &[(&str, &str)]| match gatekeeper.caller(&headers(pairs)) {
            Caller::Key(key) => key.name.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(name(&[]), "Anonymous");
        assert_eq!(name(&[("authorization", &format!("Bearer {bar}"))]), "hongdae-bar");
        assert_eq!(name(&[("authorization", &format!("bearer  {bar} "))]), "hongdae-bar", "the scheme is case-insensitive");
        assert_eq!(name(&[("authorization", &format!("Basic {bar}"))]), "Unknown", "only Bearer");
        assert_eq!(name(&[("authorization", "Bearer crema_guess")]), "Unknown");
        let (token, _) = gatekeeper.sign_in(&bar).unwrap();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={token}");
        assert_eq!(name(&[("cookie", &cookie)]), "hongdae-bar");
        assert_eq!(name(&[("cookie", &format!("{SESSION_COOKIE}=nope"))]), "Unknown");
        // A key sent with a cookie is the one that counts.
        assert_eq!(name(&[("cookie", &cookie), ("authorization", "Bearer crema_guess")]), "Unknown");
        gatekeeper.sign_out(&headers(&[("cookie", &cookie)]));
        assert_eq!(name(&[("cookie", &cookie)]), "Unknown", "signed out");
        assert!(gatekeeper.sign_in("crema_guess").is_none());

        let off = Gatekeeper::new(false, false, Keys::default(), Duration::from_secs(60));
        assert!(matches!(off.caller(&headers(&[("authorization", "Bearer crema_guess")])), Caller::Open));
    }

    #[test]
    fn a_reload_drops_removed_keys_and_their_sessions() {
        let (bar, bar_config) = key("bar", Role::Barista, &["main"]);
        let (lead, lead_config) = key("lead", Role::Manager, &["main"]);
        let gatekeeper =
            Gatekeeper::new(true, false, Keys::new(vec![bar_config.clone(), lead_config]).unwrap(), Duration::from_secs(60));
        let (bar_token, _) = gatekeeper.sign_in(&bar).unwrap();
        let (lead_token, _) = gatekeeper.sign_in(&lead).unwrap();
        let cookie = |token: &str| headers(&[("cookie", &format!("{SESSION_COOKIE}={token}"))]);
        let mut promoted = bar_config;
        promoted.role = Role::Manager;
        assert_eq!(gatekeeper.reload(Keys::new(vec![promoted]).unwrap()), 1);
        assert!(matches!(gatekeeper.caller(&headers(&[("authorization", &format!("Bearer {lead}"))])), Caller::Unknown));
        assert!(matches!(gatekeeper.caller(&cookie(&lead_token)), Caller::Unknown), "a removed key's sessions end");
        match gatekeeper.caller(&cookie(&bar_token)) {
            Caller::Key(key) => assert_eq!(key.role, Role::Manager, "a kept key's sessions take its new role"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let (bar, bar_config) = key("bar", Role::Barista, &["main"]);
        let expired = Gatekeeper::new(true, false, Keys::new(vec![bar_config.clone()]).unwrap(), Duration::ZERO);
        let (token, _) = expired.sign_in(&bar).unwrap();
        assert!(matches!(expired.caller(&headers(&[("cookie", &format!("{SESSION_COOKIE}={token}"))])), Caller::Unknown));

        let gatekeeper = Gatekeeper::new(true, false, Keys::new(vec![bar_config]).unwrap(), Duration::from_secs(60));
        let (first, _) = gatekeeper.sign_in(&bar).unwrap();
        for _ in 0..MAX_SESSIONS {
            gatekeeper.sign_in(&bar).unwrap();
        }
        assert_eq!(gatekeeper.sessions.lock().unwrap().len(), MAX_SESSIONS);
        assert!(
            matches!(gatekeeper.caller(&headers(&[("cookie", &format!("{SESSION_COOKIE}={first}"))])), Caller::Unknown),
            "the oldest sign-in made room"
        );
    }

    #[test]
    fn new_keys_print_the_key_first_then_the_toml_to_add() {
        let text = new_key_text("gangnam-bar", Role::Barista, &["gangnam".into()]);
        let mut lines = text.lines();
        let secret = lines.next().unwrap();
        assert!(secret.starts_with("crema_") && secret.len() == 70, "{secret}");
        let toml_text: String = lines.filter(|line| !line.starts_with('#')).collect::<Vec<_>>().join("\n");
        #[derive(Deserialize)]
        struct File {
            auth: Auth,
        }
        #[derive(Deserialize)]
        struct Auth {
            keys: Vec<KeyConfig>,
        }
        let file: File = config::Config::builder()
            .add_source(config::File::from_str(&toml_text, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        let keys = Keys::new(file.auth.keys).unwrap();
        assert_eq!(keys.find(secret).unwrap().role, Role::Barista, "the printed hash is the printed key's");
        assert_ne!(new_key().0, new_key().0);
    }
}
