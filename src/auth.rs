//! Staff keys and roles (API.md "Access (contract v2)"), the part that does
//! not depend on HTTP: which key a request presents, and whether its role and
//! stores cover a route. Keys are bearer tokens; only their SHA-256 is kept
//! (in configuration), and a presented key is compared with every configured
//! hash in constant time.
//!
//! Not wired into the routes yet (issue 12): `[[auth.keys]]` is not a
//! configuration section so far, so a file that has one is refused at start
//! rather than silently left open.

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
    keys: Vec<(KeyConfig, [u8; 32])>,
}

impl Keys {
    /// Checks the entries: hex SHA-256s, unique names and hashes, and a store
    /// for every key that is not an admin's.
    pub fn new(configs: Vec<KeyConfig>) -> Result<Keys, String> {
        let mut keys: Vec<(KeyConfig, [u8; 32])> = Vec::with_capacity(configs.len());
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
            keys.push((config, hash));
        }
        Ok(Keys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key `presented` is, if any. Every configured hash is compared, in
    /// constant time each, whichever matches: the time taken says nothing
    /// about which key (or how much of one) was right.
    pub fn find(&self, presented: &str) -> Option<&KeyConfig> {
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

/// Whether `key` may call a route of `class` about `store` (`None`: a route
/// of no one store, such as `GET /orders`, whose answers are then filtered
/// to the key's stores by the caller).
pub fn may(key: &KeyConfig, class: RouteClass, store: Option<&str>) -> bool {
    let needed = match class {
        RouteClass::Public => return true,
        RouteClass::Barista => Role::Barista,
        RouteClass::Manager => Role::Manager,
        RouteClass::Admin => Role::Admin,
    };
    key.role >= needed && (key.role == Role::Admin || store.is_none_or(|store| key.stores.iter().any(|own| own == store)))
}

/// A new random key (`crema_` and 64 hex digits: 256 bits) and the hex of its SHA-256.
pub fn new_key() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let key = format!("crema_{}", encode_hex(&bytes));
    let hash = encode_hex(&Sha256::digest(key.as_bytes()));
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

fn encode_hex(bytes: &[u8]) -> String {
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
