//! Which live node owns which store: every node computes the same answer
//! from the same two lists, without talking to the others.
//!
//! Rendezvous hashing with bounded loads: each store ranks every node by a
//! hash of (store, node) and goes to the best-ranked node that still has
//! room: every node takes ⌊stores / nodes⌋, and the first ones to fill up
//! that far take one more, as many as the remainder. So the spread is even
//! (two nodes' counts differ by one at most), and when a node leaves or
//! joins most stores keep their owner: those of a dead node move, and a few
//! others at most when the room per node changes. The hash is FNV-1a with a final mix,
//! fixed here, so that two builds of crema (a rolling upgrade) agree.

use std::collections::BTreeMap;

/// `store → node` for every store, over the live `nodes` (none: empty).
/// The order of either list does not matter, nor do repeated names.
pub fn assign(stores: &[String], nodes: &[String]) -> BTreeMap<String, String> {
    let mut nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    stores.sort_unstable();
    stores.dedup();
    let mut owners = BTreeMap::new();
    if nodes.is_empty() {
        return owners;
    }
    // Each node takes `base` stores, and `extra` of them one more.
    let (base, mut extra) = (stores.len() / nodes.len(), stores.len() % nodes.len());
    let mut load = vec![0_usize; nodes.len()];
    // Stores with the strongest preference first, so that the room left
    // for the later ones does not depend on the names' order alone.
    let mut ranked: Vec<(u64, &str, Vec<usize>)> = stores
        .iter()
        .map(|store| {
            let mut order: Vec<usize> = (0..nodes.len()).collect();
            order.sort_by_key(|&at| std::cmp::Reverse(score(store, nodes[at])));
            (score(store, nodes[order[0]]), *store, order)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    for (_, store, order) in ranked {
        let at = order.into_iter().find(|&at| load[at] < base || (load[at] == base && extra > 0)).expect("room for every store");
        if load[at] == base {
            extra -= 1;
        }
        load[at] += 1;
        owners.insert(store.to_owned(), nodes[at].to_owned());
    }
    owners
}

/// [`assign`], then each store whose node may not take it (`barred`: the
/// stores a node served and gave up in its current run) goes to the
/// best-ranked live node that may; a store no live node may take keeps none.
pub fn assign_barred(stores: &[String], nodes: &[String], barred: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, String> {
    let mut owners = assign(stores, nodes);
    let bars = |node: &str, store: &str| barred.get(node).is_some_and(|stores| stores.iter().any(|barred| barred == store));
    owners.retain(|store, node| {
        if !bars(node, store) {
            return true;
        }
        let best = nodes.iter().filter(|other| !bars(other, store)).max_by_key(|other| (score(store, other), std::cmp::Reverse(other.as_str())));
        match best {
            Some(other) => {
                *node = other.clone();
                true
            }
            None => false,
        }
    });
    owners
}

/// The rank of `node` for `store`: FNV-1a 64 of `store \0 node`, mixed.
fn score(store: &str, node: &str) -> u64 {
    let fnv = store.bytes().chain([0]).chain(node.bytes()).fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    });
    // splitmix64's finaliser: FNV alone leaves the last bytes' bits clustered.
    let mut z = fnv.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|at| format!("{prefix}{at}")).collect()
    }

    fn loads(owners: &BTreeMap<String, String>, nodes: &[String]) -> Vec<usize> {
        nodes.iter().map(|node| owners.values().filter(|owner| *owner == node).count()).collect()
    }

    #[test]
    fn a_store_a_node_gave_up_goes_to_the_best_other_node_and_to_none_if_all_did() {
        let stores: Vec<String> = (0..12).map(|i| format!("store-{i}")).collect();
        let nodes = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let plain = assign(&stores, &nodes);
        let (store, node) = plain.iter().next().unwrap();
        let barred = BTreeMap::from([(node.clone(), vec![store.clone()])]);
        let patched = assign_barred(&stores, &nodes, &barred);
        assert_ne!(&patched[store], node);
        assert_eq!(patched.len(), stores.len());
        for other in stores.iter().filter(|other| *other != store) {
            assert_eq!(patched[other], plain[other], "only the barred store moves");
        }
        let all = nodes.iter().map(|node| (node.clone(), vec![store.clone()])).collect();
        assert!(!assign_barred(&stores, &nodes, &all).contains_key(store));
    }

    #[test]
    fn every_store_has_one_owner_and_the_spread_is_even() {
        for (stores, nodes) in [(1, 3), (3, 3), (10, 3), (100, 7), (5, 1), (2, 5)] {
            let (stores, nodes) = (names("store-", stores), names("n", nodes));
            let owners = assign(&stores, &nodes);
            assert_eq!(owners.len(), stores.len());
            let loads = loads(&owners, &nodes);
            let (max, min) = (loads.iter().max().unwrap(), loads.iter().min().unwrap());
            assert!(max - min <= 1, "{} stores over {} nodes: {loads:?}", stores.len(), nodes.len());
        }
    }

    #[test]
    fn every_node_computes_the_same_answer_whatever_the_order_of_its_lists() {
        let (stores, nodes) = (names("s", 20), names("node-", 4));
        let mut shuffled_stores = stores.clone();
        shuffled_stores.reverse();
        let shuffled_nodes = vec![nodes[2].clone(), nodes[0].clone(), nodes[3].clone(), nodes[1].clone(), nodes[0].clone()];
        assert_eq!(assign(&stores, &nodes), assign(&shuffled_stores, &shuffled_nodes));
    }

    #[test]
    fn when_a_node_dies_its_stores_move_and_few_others_do() {
        let stores = names("store-", 30);
        let nodes = names("n", 3);
        let before = assign(&stores, &nodes);
        let survivors = vec![nodes[0].clone(), nodes[2].clone()];
        let after = assign(&stores, &survivors);
        let dead: Vec<&String> = before.iter().filter(|(_, owner)| **owner == nodes[1]).map(|(store, _)| store).collect();
        let moved: Vec<&String> = stores.iter().filter(|store| before[*store] != after[*store]).collect();
        for store in &dead {
            assert!(moved.contains(store), "{store} of the dead node moved");
        }
        assert!(moved.len() <= dead.len() + stores.len() / nodes.len() / 2, "{} moved for {} of the dead node's", moved.len(), dead.len());
        // And back: the node returns, its share with it.
        assert_eq!(assign(&stores, &nodes), before);
    }

    #[test]
    fn no_live_node_owns_nothing() {
        assert!(assign(&names("s", 3), &[]).is_empty());
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // A rolling upgrade mixes builds: they must rank alike.
        assert_eq!(score("gangnam", "a"), score("gangnam", "a"));
        assert_ne!(score("gangnam", "a"), score("gangnam", "b"));
        assert_ne!(score("gangnam", "a"), score("gangnama", ""));
        assert_eq!(score("gangnam", "a"), 0xab6c_253e_8edb_ff4e, "the ranking of a released build");
    }
}
