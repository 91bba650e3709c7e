//! Order ids that name their store, so that any node finds an order's owner
//! from its id alone, before the order reaches the event feed.
//!
//! An id is a UUIDv7 (time-ordered, as the stores' scans need) whose last
//! four bytes (random in a plain v7) are a 32-bit hash of the store id: still
//! a valid v7 (version and variant bits untouched), with 12 + 30 random bits
//! per millisecond left. The hash is FNV-1a, fixed here so that every build
//! agrees. Ids made before this (a plain v7) name no store: they are found
//! through the cache or the feed.

/// A new order id of `store`.
pub fn new(store: &str) -> String {
    let mut bytes = *uuid::Uuid::now_v7().as_bytes();
    bytes[12..16].copy_from_slice(&tag(store).to_be_bytes());
    uuid::Uuid::from_bytes(bytes).to_string()
}

/// The store of `id` among `stores`: the one whose tag it carries, if
/// exactly one does.
pub fn store_of<'a>(id: &str, stores: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let uuid = uuid::Uuid::parse_str(id).ok()?;
    let carried = u32::from_be_bytes(uuid.as_bytes()[12..16].try_into().ok()?);
    let mut matching = stores.into_iter().filter(|store| tag(store) == carried);
    let first = matching.next()?;
    matching.next().is_none().then_some(first)
}

fn tag(store: &str) -> u32 {
    store.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_store_and_stays_a_time_ordered_uuid_v7() {
        let stores = ["main", "gangnam", "hongdae"];
        let first = new("gangnam");
        let second = new("hongdae");
        assert_eq!(store_of(&first, stores), Some("gangnam"));
        assert_eq!(store_of(&second, stores), Some("hongdae"));
        let parsed = uuid::Uuid::parse_str(&first).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert!(first[..13] <= second[..13], "the time prefix orders ids");
        assert_ne!(new("main"), new("main"));
    }

    #[test]
    fn a_plain_v7_or_a_foreign_string_names_no_store() {
        let stores = ["main", "gangnam"];
        assert_eq!(store_of(&uuid::Uuid::now_v7().to_string(), stores), None);
        assert_eq!(store_of("not-an-id", stores), None);
        // Pinned: ids written by one build are read by the next.
        assert_eq!(tag("gangnam"), 0xea3b_2696);
    }
}
