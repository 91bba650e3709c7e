//! The menu: what can be ordered, with which options, at what price, how long
//! it takes to make, and which kind of station makes it.

use serde::{Deserialize, Serialize};

/// The station kind an item goes to when it names none (API.md contract v2).
pub const DEFAULT_STATION_KIND: &str = "bar";

/// Most groups one item may have, and choices one group may have.
pub const MAX_GROUPS: usize = 8;
pub const MAX_CHOICES: usize = 16;

fn default_station_kind() -> String {
    DEFAULT_STATION_KIND.to_owned()
}

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
    /// The kind of station that makes it (`bar` when not named).
    #[serde(default = "default_station_kind")]
    pub station: String,
    /// Its modifier groups (size, milk, extras), in display order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<OptionGroup>,
}

/// A modifier group: the customer picks `min`..=`max` distinct choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionGroup {
    /// The same id means the same group on every item (`milk`).
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub min: u32,
    pub max: u32,
    /// The choice a required group takes when the line omits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    pub choices: Vec<OptionChoice>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionChoice {
    pub id: String,
    pub name: String,
    /// Surcharge per unit, in the currency's minor unit.
    #[serde(default)]
    pub price: u64,
    /// Extra brew time per unit.
    #[serde(default)]
    pub brew_ms: u64,
}

impl OptionGroup {
    pub fn choice(&self, id: &str) -> Option<&OptionChoice> {
        self.choices.iter().find(|choice| choice.id == id)
    }
}

impl MenuItem {
    pub fn group(&self, id: &str) -> Option<&OptionGroup> {
        self.options.iter().find(|group| group.id == id)
    }
}

/// The menu a café serves, in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Menu {
    pub currency: String,
    pub items: Vec<MenuItem>,
}

/// The built-in option groups: shared by id across the items that have them.
mod builtin {
    use super::{OptionChoice, OptionGroup};

    fn choice(id: &str, name: &str, price: u64, brew_ms: u64) -> OptionChoice {
        OptionChoice { id: id.to_owned(), name: name.to_owned(), price, brew_ms }
    }

    fn group(id: &str, name: &str, min: u32, max: u32, default: Option<&str>, choices: Vec<OptionChoice>) -> OptionGroup {
        OptionGroup { id: id.to_owned(), name: name.to_owned(), min, max, default: default.map(str::to_owned), choices }
    }

    pub fn size() -> OptionGroup {
        group("size", "Size", 1, 1, Some("tall"), vec![
            choice("tall", "Tall", 0, 0),
            choice("grande", "Grande", 500, 500),
            choice("venti", "Venti", 1000, 1000),
        ])
    }

    pub fn milk() -> OptionGroup {
        group("milk", "Milk", 0, 1, None, vec![
            choice("oat", "Oat milk", 600, 0),
            choice("soy", "Soy milk", 600, 0),
            choice("lactose_free", "Lactose-free milk", 300, 0),
        ])
    }

    pub fn extras() -> OptionGroup {
        group("extras", "Extras", 0, 3, None, vec![
            choice("extra_shot", "Extra shot", 500, 1000),
            choice("vanilla", "Vanilla syrup", 500, 300),
            choice("caramel", "Caramel drizzle", 500, 300),
            choice("decaf", "Decaf", 0, 0),
        ])
    }

    pub fn temperature() -> OptionGroup {
        group("temperature", "Temperature", 1, 1, Some("hot"), vec![
            choice("hot", "Hot", 0, 0),
            choice("iced", "Iced", 0, 500),
        ])
    }

    pub fn warming() -> OptionGroup {
        group("warming", "Warmed", 0, 1, None, vec![choice("warmed", "Warmed", 0, 2000)])
    }
}

/// The most a unit may cost (item and every choice): 20 lines × 20 units of
/// it still fit an order's total.
const MAX_UNIT_PRICE: u64 = u64::MAX / 800;

/// `[a-z0-9_-]`, 1–32 characters: ids that appear in sold-out refs and URLs.
fn is_slug(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Menu {
    /// The menu served when the configuration names none: espresso drinks with
    /// a size, milk and extras, a cold brew, and a pastry made in the kitchen.
    pub fn builtin() -> Self {
        use builtin::{extras, milk, size, temperature, warming};
        let item = |id: &str, name: &str, price, brew_ms, station: &str, options: Vec<OptionGroup>| MenuItem {
            id: id.to_owned(),
            name: name.to_owned(),
            price,
            brew_ms,
            station: station.to_owned(),
            options,
        };
        Menu {
            currency: "KRW".to_owned(),
            items: vec![
                item("americano", "Americano", 4500, 3000, "bar", vec![size(), temperature(), extras()]),
                item("latte", "Caffè Latte", 5000, 4000, "bar", vec![size(), temperature(), milk(), extras()]),
                item("cappuccino", "Cappuccino", 5000, 4000, "bar", vec![size(), milk(), extras()]),
                item("flat_white", "Flat White", 5500, 4500, "bar", vec![milk(), extras()]),
                item("espresso", "Espresso", 3500, 2000, "bar", vec![extras()]),
                item("cold_brew", "Cold Brew", 5500, 1000, "bar", vec![size(), milk()]),
                item("croissant", "Butter Croissant", 3800, 1500, "kitchen", vec![warming()]),
            ],
        }
    }

    pub fn item(&self, id: &str) -> Option<&MenuItem> {
        self.items.iter().find(|item| item.id == id)
    }

    /// Whether `group.choice` names a choice of some item (a sold-out ref).
    pub fn has_choice(&self, group: &str, choice: &str) -> bool {
        self.items.iter().filter_map(|item| item.group(group)).any(|group| group.choice(choice).is_some())
    }

    /// The station kinds the menu's items name, sorted.
    pub fn station_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.items.iter().map(|item| item.station.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// Checks what the rest of the engine assumes of a menu: at least one item,
    /// unique slug ids, well-formed option groups (a group id meaning the same
    /// group, with the same choice names, on every item), and prices that
    /// cannot overflow an order's total (20 lines × 20 units).
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("the menu has no items".into());
        }
        let mut ids = std::collections::HashSet::new();
        // (group, choice) → name, and group → name, across items.
        let mut names = std::collections::HashMap::new();
        for item in &self.items {
            if item.id.is_empty() || item.id.len() > 64 || item.id.contains('.') || item.id.contains('/') {
                return Err(format!("menu item id {:?} must be 1-64 characters without '.' or '/'", item.id));
            }
            if !ids.insert(item.id.as_str()) {
                return Err(format!("menu item id {:?} appears twice", item.id));
            }
            if !is_slug(&item.station) {
                return Err(format!("menu item {:?}: station {:?} must be 1-32 of [a-z0-9_-]", item.id, item.station));
            }
            if item.options.len() > MAX_GROUPS {
                return Err(format!("menu item {:?} has more than {MAX_GROUPS} option groups", item.id));
            }
            let mut unit_max = item.price;
            let mut groups = std::collections::HashSet::new();
            for group in &item.options {
                let at = format!("menu item {:?}, option group {:?}", item.id, group.id);
                if !is_slug(&group.id) {
                    return Err(format!("{at}: the id must be 1-32 of [a-z0-9_-]"));
                }
                if !groups.insert(group.id.as_str()) {
                    return Err(format!("{at} appears twice"));
                }
                if group.choices.is_empty() || group.choices.len() > MAX_CHOICES {
                    return Err(format!("{at} must have 1-{MAX_CHOICES} choices"));
                }
                if group.max == 0 || group.min > group.max || group.max as usize > group.choices.len() {
                    return Err(format!("{at}: need 0 <= min <= max, 1 <= max <= number of choices"));
                }
                if let Some(default) = &group.default {
                    if group.choice(default).is_none() {
                        return Err(format!("{at}: default {default:?} is not one of its choices"));
                    }
                }
                if names.insert((group.id.as_str(), ""), group.name.as_str()).is_some_and(|name| name != group.name) {
                    return Err(format!("{at}: the group is named differently on another item"));
                }
                let mut choices = std::collections::HashSet::new();
                for choice in &group.choices {
                    if !is_slug(&choice.id) {
                        return Err(format!("{at}: choice id {:?} must be 1-32 of [a-z0-9_-]", choice.id));
                    }
                    if !choices.insert(choice.id.as_str()) {
                        return Err(format!("{at}: choice {:?} appears twice", choice.id));
                    }
                    let key = (group.id.as_str(), choice.id.as_str());
                    if names.insert(key, choice.name.as_str()).is_some_and(|name| name != choice.name) {
                        return Err(format!("{at}: choice {:?} is named differently on another item", choice.id));
                    }
                    unit_max = unit_max.saturating_add(choice.price);
                }
            }
            if unit_max > MAX_UNIT_PRICE {
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
    fn builtin_menu_is_valid_and_shows_options_off() {
        let menu = Menu::builtin();
        menu.validate().unwrap();
        let latte = menu.item("latte").unwrap();
        let size = latte.group("size").unwrap();
        assert_eq!((size.min, size.max, size.default.as_deref()), (1, 1, Some("tall")));
        assert_eq!(latte.group("milk").unwrap().min, 0);
        assert!(latte.group("extras").unwrap().max > 1);
        assert_eq!(menu.station_kinds(), vec!["bar", "kitchen"]);
        assert!(menu.has_choice("milk", "oat"));
        assert!(!menu.has_choice("milk", "latte"));
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

    #[test]
    fn malformed_option_groups_are_rejected() {
        let broken = |change: &dyn Fn(&mut OptionGroup)| {
            let mut menu = Menu::builtin();
            change(&mut menu.items[1].options[0]);
            menu.validate().unwrap_err()
        };
        assert!(broken(&|group| group.min = 2).contains("min <= max"));
        assert!(broken(&|group| group.max = 0).contains("min <= max"));
        assert!(broken(&|group| group.max = 9).contains("number of choices"));
        assert!(broken(&|group| group.default = Some("huge".into())).contains("default"));
        assert!(broken(&|group| group.choices.push(group.choices[0].clone())).contains("twice"));
        assert!(broken(&|group| group.choices[0].name = "Small".into()).contains("named differently"));
        assert!(broken(&|group| group.choices[0].price = u64::MAX).contains("absurd"));
        assert!(broken(&|group| group.id = "Size!".into()).contains("[a-z0-9_-]"));
        let mut menu = Menu::builtin();
        menu.items[0].station = "Bar Two".into();
        assert!(menu.validate().unwrap_err().contains("station"));
    }
}
