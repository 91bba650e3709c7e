//! What customers order and what they do afterwards.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::Rng;

use crate::domain::{LineRequest, OrderRequest};

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

/// The menu with a popularity per item: the first items are ordered most
/// (weights 1/rank, a Zipf-like mix), unless weights are given.
pub struct Mix {
    items: Vec<String>,
    weights: WeightedIndex<f64>,
    customers: u32,
}

impl Mix {
    pub fn new(items: Vec<String>, weights: Option<Vec<f64>>, customers: u32) -> Result<Mix, String> {
        if items.is_empty() {
            return Err("the menu has no items".into());
        }
        let weights = weights.unwrap_or_else(|| (1..=items.len()).map(|rank| 1.0 / rank as f64).collect());
        if weights.len() != items.len() {
            return Err(format!("{} weights for {} menu items", weights.len(), items.len()));
        }
        let weights = WeightedIndex::new(weights).map_err(|err| format!("menu weights: {err}"))?;
        Ok(Mix { items, weights, customers: customers.max(1) })
    }

    /// One order: a customer from the crowd, 1–3 lines of 1–2 cups each.
    pub fn order(&self, rng: &mut impl Rng) -> OrderRequest {
        let lines = match rng.random_range(0..10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let mut items: Vec<LineRequest> = Vec::with_capacity(lines);
        for _ in 0..lines {
            let menu_id = &self.items[self.weights.sample(rng)];
            let qty = if rng.random_bool(0.8) { 1 } else { 2 };
            match items.iter_mut().find(|line| &line.menu_id == menu_id) {
                Some(line) => line.qty += qty,
                None => items.push(LineRequest::new(menu_id.clone(), qty)),
            }
        }
        let customer = format!("guest-{:05}", rng.random_range(0..self.customers));
        OrderRequest { store: None, customer: Some(customer), items }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::domain::Menu;

    fn mix() -> Mix {
        let menu = Menu::builtin();
        Mix::new(menu.items.iter().map(|item| item.id.clone()).collect(), None, 100).unwrap()
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
