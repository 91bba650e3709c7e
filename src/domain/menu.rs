//! The menu: what can be ordered, at what price, and how long it takes to make.

use serde::{Deserialize, Serialize};

/// One thing a customer can order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    /// Stable identifier used in orders (`americano`).
    pub id: String,
    /// Display name (`Americano`).
    pub name: String,
    /// Price in the currency's minor unit (KRW has none: 4500 is ₩4,500).
    pub price: u64,
    /// How long one unit takes a barista, before `barista.brew_scale` is applied.
    pub brew_ms: u64,
}

/// The menu a café serves, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Menu {
    pub currency: String,
    pub items: Vec<MenuItem>,
}

impl Menu {
    /// The menu served when the configuration names none.
    pub fn builtin() -> Self {
        let item = |id: &str, name: &str, price, brew_ms| MenuItem {
            id: id.to_owned(),
            name: name.to_owned(),
            price,
            brew_ms,
        };
        Menu {
            currency: "KRW".to_owned(),
            items: vec![
                item("americano", "Americano", 4500, 3000),
                item("latte", "Caffè Latte", 5000, 4000),
                item("cappuccino", "Cappuccino", 5000, 4000),
                item("flat_white", "Flat White", 5500, 4500),
                item("espresso", "Espresso", 3500, 2000),
                item("cold_brew", "Cold Brew", 5500, 1000),
            ],
        }
    }

    pub fn item(&self, id: &str) -> Option<&MenuItem> {
        self.items.iter().find(|item| item.id == id)
    }

    /// Checks what the rest of the engine assumes of a menu: at least one item,
    /// unique non-empty ids, and prices that cannot overflow an order's total
    /// (20 lines × 20 units).
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("the menu has no items".into());
        }
        let mut ids = std::collections::HashSet::new();
        for item in &self.items {
            if item.id.is_empty() || item.id.len() > 64 {
                return Err(format!("menu item id {:?} must be 1-64 characters", item.id));
            }
            if !ids.insert(item.id.as_str()) {
                return Err(format!("menu item id {:?} appears twice", item.id));
            }
            if item.price > u64::MAX / 400 / 2 {
                return Err(format!("menu item {:?} has an absurd price", item.id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_menu_is_valid() {
        Menu::builtin().validate().unwrap();
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let mut menu = Menu::builtin();
        menu.items.push(menu.items[0].clone());
        assert!(menu.validate().unwrap_err().contains("twice"));
    }

    #[test]
    fn empty_menu_is_rejected() {
        let menu = Menu { currency: "KRW".into(), items: vec![] };
        assert!(menu.validate().is_err());
    }
}
