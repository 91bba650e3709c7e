//! What customers order and what they do afterwards.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;

use crate::domain::{Chosen, LineRequest, MenuItem, OrderRequest};

/// Shares of customers doing each follow-up, all in 0..=1.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Behaviour {
    /// Cancel shortly after ordering.
    pub cancel: f64,
    /// Follow the order by polling `GET /orders/{id}` until it is ready.
    pub poll: f64,
    /// Of those who follow their order, pick it up once it is ready.
    pub pickup: f64,
}

impl Behaviour {
    pub const ORDERS_ONLY: Behaviour = Behaviour { cancel: 0.0, poll: 0.0, pickup: 0.0 };

    pub fn validate(&self) -> Result<(), String> {
        for (name, share) in [("--cancel", self.cancel), ("--poll", self.poll), ("--pickup", self.pickup)] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} must be between 0 and 1, got {share}"));
            }
        }
        Ok(())
    }

    pub fn decide(&self, rng: &mut impl Rng) -> FollowUp {
        if rng.random_bool(self.cancel) {
            FollowUp::Cancel
        } else if rng.random_bool(self.poll) {
            FollowUp::Poll { pickup: rng.random_bool(self.pickup) }
        } else {
            FollowUp::None
        }
    }
}

/// What one customer does after a 201.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    None,
    Cancel,
    Poll { pickup: bool },
}

/// A menu item as the mix sees it (from `GET /menu`): its id and the choices
/// it can be ordered with.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct MixItem {
    pub id: String,
    #[serde(default)]
    pub options: Vec<MixGroup>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct MixGroup {
    pub id: String,
    pub min: u32,
    pub max: u32,
    #[serde(default)]
    pub default: Option<String>,
    pub choices: Vec<MixChoice>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct MixChoice {
    pub id: String,
    #[serde(default = "available")]
    pub available: bool,
}

fn available() -> bool {
    true
}

impl From<&MenuItem> for MixItem {
    fn from(item: &MenuItem) -> Self {
        MixItem {
            id: item.id.clone(),
            options: item
                .options
                .iter()
                .map(|group| MixGroup {
                    id: group.id.clone(),
                    min: group.min,
                    max: group.max,
                    default: group.default.clone(),
                    choices: group.choices.iter().map(|choice| MixChoice { id: choice.id.clone(), available: true }).collect(),
                })
                .collect(),
        }
    }
}

/// The menu with a popularity per item: the first items are ordered most
/// (weights 1/rank, a Zipf-like mix), unless weights are given. Orders go to
/// the stores in turn at random (each equally), with options as café
/// customers choose them: a required group keeps its default half the time,
/// an optional one is chosen a third of the time, a multi-choice group gets
/// up to two; one line in ten carries a note.
pub struct Mix {
    items: Vec<MixItem>,
    stores: Vec<String>,
    weights: WeightedIndex<f64>,
    customers: u32,
}

impl Mix {
    /// `stores` empty: orders name no store (the default store's).
    pub fn new(items: Vec<MixItem>, stores: Vec<String>, weights: Option<Vec<f64>>, customers: u32) -> Result<Mix, String> {
        if items.is_empty() {
            return Err("the menu has no items".into());
        }
        let weights = weights.unwrap_or_else(|| (1..=items.len()).map(|rank| 1.0 / rank as f64).collect());
        if weights.len() != items.len() {
            return Err(format!("{} weights for {} menu items", weights.len(), items.len()));
        }
        let weights = WeightedIndex::new(weights).map_err(|err| format!("menu weights: {err}"))?;
        Ok(Mix { items, stores, weights, customers: customers.max(1) })
    }

    /// One order: a customer from the crowd at one of the stores, 1–3 lines
    /// of 1–2 cups each, with options.
    pub fn order(&self, rng: &mut impl Rng) -> OrderRequest {
        let lines = match rng.random_range(0..10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let mut items: Vec<LineRequest> = Vec::with_capacity(lines);
        for _ in 0..lines {
            let item = &self.items[self.weights.sample(rng)];
            let mut line = LineRequest::new(item.id.clone(), if rng.random_bool(0.8) { 1 } else { 2 });
            for group in &item.options {
                if let Some(chosen) = choose(group, rng) {
                    line.options.insert(group.id.clone(), chosen);
                }
            }
            if rng.random_bool(0.1) {
                line.note = Some("extra hot, please".to_owned());
            }
            items.push(line);
        }
        let customer = format!("guest-{:05}", rng.random_range(0..self.customers));
        let store = (!self.stores.is_empty()).then(|| self.stores[rng.random_range(0..self.stores.len())].clone());
        OrderRequest { store, customer: Some(customer), items }
    }
}

/// A customer's pick in one group (`None`: leave it to its default, or none).
fn choose(group: &MixGroup, rng: &mut impl Rng) -> Option<Chosen> {
    let open: Vec<&str> = group.choices.iter().filter(|choice| choice.available).map(|choice| choice.id.as_str()).collect();
    if open.is_empty() {
        return None;
    }
    let pick = |rng: &mut _| open[Rng::random_range(rng, 0..open.len())].to_owned();
    if group.max == 1 {
        let default_open = group.default.as_deref().is_some_and(|default| open.contains(&default));
        let wanted = if group.min >= 1 { !default_open || rng.random_bool(0.5) } else { rng.random_bool(1.0 / 3.0) };
        return wanted.then(|| Chosen::One(pick(rng)));
    }
    let least = group.min as usize;
    if least > open.len() {
        return None; // too few left to choose from: the server will say so
    }
    let most = (group.max as usize).min(2).min(open.len()).max(least);
    let count = rng.random_range(least..=most);
    let mut ids: Vec<String> = Vec::with_capacity(count);
    while ids.len() < count {
        let id = pick(rng);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    (!ids.is_empty()).then_some(Chosen::Many(ids))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::domain::Menu;

    fn mix() -> Mix {
        let menu = Menu::builtin();
        Mix::new(menu.items.iter().map(MixItem::from).collect(), Vec::new(), None, 100).unwrap()
    }

    #[test]
    fn orders_carry_options_notes_and_stores() {
        let menu = Menu::builtin();
        let stores = vec!["gangnam".to_owned(), "hongdae".to_owned()];
        let mix = Mix::new(menu.items.iter().map(MixItem::from).collect(), stores, None, 100).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let (mut with_options, mut noted, mut at_hongdae, mut two_kinds) = (0, 0, 0, 0);
        for _ in 0..2_000 {
            let order = mix.order(&mut rng);
            let draft = order.validate(&menu).expect("a generated order is valid");
            with_options += order.items.iter().filter(|line| !line.options.is_empty()).count();
            noted += order.items.iter().filter(|line| line.note.is_some()).count();
            at_hongdae += usize::from(order.store.as_deref() == Some("hongdae"));
            two_kinds += usize::from(draft.ticket_count() == 2);
        }
        assert!(with_options > 1_000, "{with_options}");
        assert!(noted > 100, "{noted}");
        assert!((800..1_200).contains(&at_hongdae), "{at_hongdae}");
        assert!(two_kinds > 50, "some orders need two kinds of station: {two_kinds}");
    }

    #[test]
    fn orders_are_valid_against_the_menu_and_favour_the_first_items() {
        let menu = Menu::builtin();
        let mix = mix();
        let mut rng = StdRng::seed_from_u64(7);
        let mut first = 0;
        let mut last = 0;
        for _ in 0..2_000 {
            let order = mix.order(&mut rng);
            order.validate(&menu).expect("a generated order is valid");
            for line in &order.items {
                if line.menu_id == menu.items[0].id {
                    first += 1;
                }
                if line.menu_id == menu.items.last().unwrap().id {
                    last += 1;
                }
            }
        }
        assert!(first > 2 * last, "first item {first} times, last {last}");
    }

    #[test]
    fn behaviour_shares_are_respected() {
        let behaviour = Behaviour { cancel: 0.1, poll: 0.5, pickup: 1.0 };
        let mut rng = StdRng::seed_from_u64(1);
        let decisions: Vec<_> = (0..10_000).map(|_| behaviour.decide(&mut rng)).collect();
        let cancels = decisions.iter().filter(|d| **d == FollowUp::Cancel).count();
        let polls = decisions.iter().filter(|d| **d == FollowUp::Poll { pickup: true }).count();
        assert!((800..1_200).contains(&cancels), "{cancels}");
        assert!((4_200..4_800).contains(&polls), "{polls}");
        assert!(Behaviour { cancel: 1.5, ..behaviour }.validate().is_err());
        assert_eq!(Behaviour::ORDERS_ONLY.decide(&mut rng), FollowUp::None);
    }
}
