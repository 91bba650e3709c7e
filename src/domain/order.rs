//! An order and its state machine.
//!
//! ```text
//!  paid ──► queued ──► brewing ──► ready ──► picked_up
//!    │         │  ◄──────┘ (requeued: station paused or crashed)
//!    └─────────┴──────────┴──► cancelled   (payment: refund_pending ──► refunded)
//! ```
//!
//! An order only exists once it is paid: before that it is a [`Draft`]. Every
//! event bumps `version`, the per-order sequence number, and every status change
//! is appended to `history` with that number. The single backward edge,
//! `brewing → queued`, happens only when a station gives its ticket back; it is
//! an explicit event with its own sequence number, so readers still see a
//! strictly increasing `version`.
//!
//! An order makes one ticket per station kind its lines need (API.md contract
//! v2, routing). Ticket events name their kind; the order's status follows
//! its tickets: `queued` until one starts, `brewing` while any is being made
//! or waits with another already started or done, `ready` when all are done.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::menu::{Menu, MenuItem};

/// Most lines one order may have.
pub const MAX_LINES: usize = 20;
/// Most units of one item per line.
pub const MAX_QTY: u32 = 20;
/// Longest customer name, in characters.
pub const MAX_CUSTOMER_CHARS: usize = 64;
/// Longest note on a line, in characters.
pub const MAX_NOTE_CHARS: usize = 140;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Paid,
    Queued,
    Brewing,
    Ready,
    PickedUp,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Paid,
        OrderStatus::Queued,
        OrderStatus::Brewing,
        OrderStatus::Ready,
        OrderStatus::PickedUp,
        OrderStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Paid => "paid",
            OrderStatus::Queued => "queued",
            OrderStatus::Brewing => "brewing",
            OrderStatus::Ready => "ready",
            OrderStatus::PickedUp => "picked_up",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// No event can change the status any more.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::PickedUp | OrderStatus::Cancelled)
    }

    /// A ticket for this order is (or should be) held by the barista pool.
    pub fn holds_ticket(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Queued | OrderStatus::Brewing)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Captured,
    RefundPending,
    Refunded,
}

/// What the order knows of its money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    pub status: PaymentStatus,
    pub amount: u64,
    /// The payment idempotency key: the same on every charge, lookup and refund
    /// of this order, so the gateway can never charge it twice.
    pub key: String,
    /// The gateway's id for the captured payment.
    pub payment_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub menu_id: String,
    pub name: String,
    pub qty: u32,
    pub unit_price: u64,
    pub line_total: u64,
    /// Brew time of one unit (item and choices), copied from the menu when
    /// ordered, so a menu change does not change tickets already paid for.
    pub brew_ms: u64,
    /// The chosen options, resolved, in the menu's group and choice order.
    pub options: Vec<LineOption>,
    pub note: Option<String>,
    /// The kind of station that makes it.
    pub station: String,
}

/// One chosen option of a line, as the order echoes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LineOption {
    pub group: String,
    pub choice: String,
    pub name: String,
    /// Its surcharge per unit.
    pub price: u64,
}

/// Where one of an order's tickets is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Queued,
    Brewing,
    Done,
}

/// One ticket of an order: the lines of one station kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketState {
    pub kind: String,
    pub status: TicketStatus,
    /// The station making it, or that made it.
    pub station: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub status: OrderStatus,
    pub at_ms: u64,
}

/// A request to order, as the customer sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The store to order at (API.md contract v2); the default store when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub customer: Option<String>,
    #[schema(min_items = 1, max_items = 20)]
    pub items: Vec<LineRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub menu_id: String,
    #[schema(minimum = 1, maximum = 20)]
    pub qty: u32,
    /// Option group id → one choice id, or a list of distinct choice ids.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, Chosen>,
    /// A note for the barista (at most 140 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 140)]
    pub note: Option<String>,
}

/// A group's value in a line: one choice id or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Chosen {
    One(String),
    Many(Vec<String>),
}

impl Chosen {
    fn ids(&self) -> &[String] {
        match self {
            Chosen::One(id) => std::slice::from_ref(id),
            Chosen::Many(ids) => ids,
        }
    }
}

impl LineRequest {
    /// A line of `qty` × `menu_id` with default options and no note.
    pub fn new(menu_id: impl Into<String>, qty: u32) -> Self {
        LineRequest { menu_id: menu_id.into(), qty, options: BTreeMap::new(), note: None }
    }
}

/// Why an order request was refused; `field` names the offending JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ValidationError { field: field.into(), reason: reason.into() }
    }
}

/// A validated, priced order that has not been paid yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub store: String,
    pub customer: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total: u64,
    pub currency: String,
}

impl Draft {
    /// How many tickets the order will make: one per station kind of its lines.
    pub fn ticket_count(&self) -> usize {
        let mut kinds: Vec<&str> = self.lines.iter().map(|line| line.station.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.len()
    }

    /// Its tickets as (kind, unscaled brew ms of the kind's lines), for an estimate.
    pub fn ticket_brews(&self) -> Vec<(String, u64)> {
        let mut tickets: Vec<(String, u64)> = Vec::new();
        for line in &self.lines {
            let brew = line.brew_ms * u64::from(line.qty);
            match tickets.iter_mut().find(|(kind, _)| *kind == line.station) {
                Some((_, total)) => *total += brew,
                None => tickets.push((line.station.clone(), brew)),
            }
        }
        tickets
    }
}

impl OrderRequest {
    /// Checks the request against the menu and the bounds, and prices it,
    /// at the store the request names (the default store when none), at the menu's prices.
    pub fn validate(&self, menu: &Menu) -> Result<Draft, ValidationError> {
        self.validate_priced(menu, self.store.as_deref().unwrap_or(DEFAULT_STORE), &|_| None)
    }

    /// As [`validate`](Self::validate), for `store` (which the caller has
    /// checked exists) with its price overrides (`prices(item id)`, `None`
    /// for the menu's price).
    pub fn validate_priced(
        &self,
        menu: &Menu,
        store: &str,
        prices: &dyn Fn(&str) -> Option<u64>,
    ) -> Result<Draft, ValidationError> {
        if let Some(customer) = &self.customer {
            let chars = customer.chars().count();
            if chars == 0 || chars > MAX_CUSTOMER_CHARS {
                return Err(ValidationError::new("customer", "must be 1-64 characters"));
            }
            if customer.chars().any(char::is_control) {
                return Err(ValidationError::new("customer", "must not contain control characters"));
            }
        }
        if self.items.is_empty() {
            return Err(ValidationError::new("items", "at least one line is required"));
        }
        if self.items.len() > MAX_LINES {
            return Err(ValidationError::new("items", format!("at most {MAX_LINES} lines")));
        }
        let mut lines = Vec::with_capacity(self.items.len());
        for (index, line) in self.items.iter().enumerate() {
            let item = menu.item(&line.menu_id).ok_or_else(|| {
                ValidationError::new(
                    format!("items[{index}].menu_id"),
                    format!("unknown menu item {:?}", line.menu_id),
                )
            })?;
            if line.qty == 0 || line.qty > MAX_QTY {
                return Err(ValidationError::new(
                    format!("items[{index}].qty"),
                    format!("must be 1-{MAX_QTY}"),
                ));
            }
            let options = resolve_options(item, line, index)?;
            let note = check_note(line.note.as_deref(), index)?;
            let price = prices(&item.id).unwrap_or(item.price);
            let unit_price = price + options.iter().map(|option| option.price).sum::<u64>();
            let brew_ms = item.brew_ms
                + options
                    .iter()
                    .filter_map(|option| item.group(&option.group)?.choice(&option.choice))
                    .map(|choice| choice.brew_ms)
                    .sum::<u64>();
            lines.push(OrderLine {
                menu_id: item.id.clone(),
                name: item.name.clone(),
                qty: line.qty,
                unit_price,
                line_total: unit_price * u64::from(line.qty),
                brew_ms,
                options,
                note,
                station: item.station.clone(),
            });
        }
        // Menu::validate bounds prices so that 20 × 20 units cannot overflow.
        let total = lines.iter().map(|line| line.line_total).sum();
        Ok(Draft {
            store: store.to_owned(),
            customer: self.customer.clone(),
            lines,
            total,
            currency: menu.currency.clone(),
        })
    }
}

/// The line's options resolved against its item: every group named must
/// exist, every choice too, each at most once, within the group's min and max;
/// an omitted required group takes its default.
fn resolve_options(item: &MenuItem, line: &LineRequest, index: usize) -> Result<Vec<LineOption>, ValidationError> {
    for group in line.options.keys() {
        if item.group(group).is_none() {
            return Err(ValidationError::new(
                format!("items[{index}].options.{group}"),
                format!("{:?} has no option group {group:?}", item.id),
            ));
        }
    }
    let mut resolved = Vec::new();
    for group in &item.options {
        let field = || format!("items[{index}].options.{}", group.id);
        let chosen: Vec<&str> = match line.options.get(&group.id) {
            Some(chosen) => chosen.ids().iter().map(String::as_str).collect(),
            None if group.min == 0 => Vec::new(),
            None => match &group.default {
                Some(default) => vec![default.as_str()],
                None => return Err(ValidationError::new(field(), "required, and it has no default")),
            },
        };
        for (at, id) in chosen.iter().enumerate() {
            if group.choice(id).is_none() {
                return Err(ValidationError::new(field(), format!("unknown choice {id:?}")));
            }
            if chosen[..at].contains(id) {
                return Err(ValidationError::new(field(), format!("choice {id:?} appears twice")));
            }
        }
        let count = chosen.len() as u32;
        if count < group.min || count > group.max {
            let range = if group.min == group.max { group.min.to_string() } else { format!("{}-{}", group.min, group.max) };
            return Err(ValidationError::new(field(), format!("choose {range}, got {count}")));
        }
        // In the menu's choice order, whatever order the request named them in.
        for choice in group.choices.iter().filter(|choice| chosen.contains(&choice.id.as_str())) {
            resolved.push(LineOption {
                group: group.id.clone(),
                choice: choice.id.clone(),
                name: choice.name.clone(),
                price: choice.price,
            });
        }
    }
    Ok(resolved)
}

/// A note is trimmed; an empty one is no note.
fn check_note(note: Option<&str>, index: usize) -> Result<Option<String>, ValidationError> {
    let Some(note) = note.map(str::trim).filter(|note| !note.is_empty()) else { return Ok(None) };
    let field = || format!("items[{index}].note");
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ValidationError::new(field(), format!("at most {MAX_NOTE_CHARS} characters")));
    }
    if note.chars().any(char::is_control) {
        return Err(ValidationError::new(field(), "must not contain control characters"));
    }
    Ok(Some(note.to_owned()))
}

/// Something that happened to a paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The ticket joined the barista queue at position `queue_seq`.
    Queued { queue_seq: u64 },
    /// A station took the ticket of `kind`.
    Started { station: String, kind: String },
    /// The station gave the ticket of `kind` back (paused or crashed); it is
    /// at the head of the queue again.
    Requeued { kind: String },
    /// The station finished making the ticket of `kind`.
    Finished { kind: String },
    PickedUp,
    /// The customer cancelled; the refund is now owed.
    Cancelled,
    /// The refund went through.
    Refunded,
}

/// Why an event does not apply to an order in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("too late to cancel: the order is {0}")]
    TooLateToCancel(&'static str),
    #[error("the order is not ready: it is {0}")]
    NotReady(&'static str),
    #[error("event {event} does not apply to an order that is {status}")]
    Illegal { event: &'static str, status: &'static str },
}

/// The default store's id when no `[[stores]]` are configured (API.md contract v2).
pub const DEFAULT_STORE: &str = "main";

/// A paid order: the unit of state an order actor owns and persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    /// The store it was placed at (contract v2).
    pub store: String,
    /// Its pickup number at that store, 1–999 (`None` for orders placed
    /// before pickup numbers existed).
    pub number: Option<u16>,
    pub customer: Option<String>,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    pub total: u64,
    pub currency: String,
    pub payment: PaymentState,
    /// The station making it, while brewing and once ready.
    pub station: Option<String>,
    /// Position in the barista queue (a global, increasing number); kept after
    /// the ticket leaves the queue so recovery can restore the original order.
    pub queue_seq: Option<u64>,
    /// Estimated time it will be ready, while not yet ready.
    pub eta_ms: Option<u64>,
    /// One per station kind its lines need, in the order the lines first name them.
    pub tickets: Vec<TicketState>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub version: u64,
    pub history: Vec<HistoryEntry>,
}

impl Order {
    /// The order as it is established: charged (`payment_id`) and `paid`.
    pub fn paid(id: String, draft: Draft, key: String, payment_id: String, now_ms: u64) -> Self {
        let tickets = Order::tickets_from_status(&draft.lines, OrderStatus::Paid, None);
        Order {
            id,
            store: draft.store,
            number: None,
            customer: draft.customer,
            status: OrderStatus::Paid,
            payment: PaymentState {
                status: PaymentStatus::Captured,
                amount: draft.total,
                key,
                payment_id,
            },
            lines: draft.lines,
            total: draft.total,
            currency: draft.currency,
            station: None,
            queue_seq: None,
            eta_ms: None,
            tickets,
            created_ms: now_ms,
            updated_ms: now_ms,
            version: 1,
            history: vec![HistoryEntry { seq: 1, status: OrderStatus::Paid, at_ms: now_ms }],
        }
    }

    /// How long a station takes to make the whole order, unscaled.
    pub fn brew_ms(&self) -> u64 {
        self.lines.iter().map(|line| line.brew_ms * u64::from(line.qty)).sum()
    }

    /// How long a station takes to make the ticket of `kind`, unscaled.
    pub fn brew_ms_of(&self, kind: &str) -> u64 {
        self.lines.iter().filter(|line| line.station == kind).map(|line| line.brew_ms * u64::from(line.qty)).sum()
    }

    fn ticket(&self, kind: &str) -> Option<&TicketState> {
        self.tickets.iter().find(|ticket| ticket.kind == kind)
    }

    /// One ticket per station kind of `lines`, in the order the lines first
    /// name them, placed where an order in `status` (made at `station`) has
    /// them: a new order's, and those of an order read back from before
    /// tickets were kept (snapshot formats 1–3).
    pub fn tickets_from_status(lines: &[OrderLine], status: OrderStatus, station: Option<&str>) -> Vec<TicketState> {
        let (ticket_status, station) = match status {
            OrderStatus::Brewing => (TicketStatus::Brewing, station),
            OrderStatus::Ready | OrderStatus::PickedUp => (TicketStatus::Done, station),
            OrderStatus::Paid | OrderStatus::Queued | OrderStatus::Cancelled => (TicketStatus::Queued, None),
        };
        let mut tickets: Vec<TicketState> = Vec::new();
        for line in lines {
            if !tickets.iter().any(|ticket| ticket.kind == line.station) {
                tickets.push(TicketState { kind: line.station.clone(), status: ticket_status, station: station.map(str::to_owned) });
            }
        }
        tickets
    }

    /// The status its tickets put a started order in.
    fn status_from_tickets(&self) -> OrderStatus {
        let all = |status| self.tickets.iter().all(|ticket| ticket.status == status);
        if all(TicketStatus::Done) {
            OrderStatus::Ready
        } else if all(TicketStatus::Queued) {
            OrderStatus::Queued
        } else {
            OrderStatus::Brewing
        }
    }

    /// Checks whether `event` applies, without changing anything.
    pub fn check(&self, event: &OrderEvent) -> Result<(), TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        let ticket_is = |kind: &str, status| self.ticket(kind).is_some_and(|ticket| ticket.status == status);
        let legal = match (event, self.status) {
            (E::Queued { .. }, S::Paid) => true,
            (E::Started { kind, .. }, S::Queued | S::Brewing) => ticket_is(kind, TicketStatus::Queued),
            (E::Requeued { kind }, S::Brewing) => ticket_is(kind, TicketStatus::Brewing),
            (E::Finished { kind }, S::Brewing) => ticket_is(kind, TicketStatus::Brewing),
            (E::PickedUp, S::Ready) => true,
            (E::PickedUp, status) => return Err(TransitionError::NotReady(status.as_str())),
            (E::Cancelled, S::Paid | S::Queued | S::Brewing) => true,
            (E::Cancelled, S::Ready | S::PickedUp) => {
                return Err(TransitionError::TooLateToCancel(self.status.as_str()))
            }
            (E::Refunded, S::Cancelled) => self.payment.status == PaymentStatus::RefundPending,
            _ => false,
        };
        if legal {
            Ok(())
        } else {
            Err(TransitionError::Illegal { event: event.name(), status: self.status.as_str() })
        }
    }

    /// Applies `event` at `now_ms`, bumping the version; refuses illegal ones
    /// and leaves the order untouched when it does.
    pub fn apply(&mut self, event: OrderEvent, now_ms: u64) -> Result<(), TransitionError> {
        self.check(&event)?;
        let status = match event {
            OrderEvent::Queued { queue_seq } => {
                self.queue_seq = Some(queue_seq);
                Some(OrderStatus::Queued)
            }
            OrderEvent::Started { station, kind } => {
                self.station = Some(station.clone());
                self.move_ticket(&kind, TicketStatus::Brewing, Some(station));
                Some(self.status_from_tickets())
            }
            OrderEvent::Requeued { kind } => {
                self.move_ticket(&kind, TicketStatus::Queued, None);
                // The station shown is one still making a ticket of it, if any.
                self.station = self
                    .tickets
                    .iter()
                    .find(|ticket| ticket.status == TicketStatus::Brewing)
                    .and_then(|ticket| ticket.station.clone());
                Some(self.status_from_tickets())
            }
            OrderEvent::Finished { kind } => {
                let station = self.ticket(&kind).and_then(|ticket| ticket.station.clone());
                self.move_ticket(&kind, TicketStatus::Done, station.clone());
                self.station = station;
                Some(self.status_from_tickets())
            }
            OrderEvent::PickedUp => Some(OrderStatus::PickedUp),
            OrderEvent::Cancelled => {
                self.station = None;
                self.payment.status = PaymentStatus::RefundPending;
                Some(OrderStatus::Cancelled)
            }
            OrderEvent::Refunded => {
                self.payment.status = PaymentStatus::Refunded;
                None
            }
        };
        self.version += 1;
        self.updated_ms = now_ms;
        // A ticket event that leaves the order's status as it was (a second
        // ticket started) bumps the version but adds no history entry.
        if let Some(status) = status.filter(|status| *status != self.status) {
            self.status = status;
            if !matches!(status, OrderStatus::Paid | OrderStatus::Queued | OrderStatus::Brewing) {
                self.eta_ms = None;
            }
            self.history.push(HistoryEntry { seq: self.version, status, at_ms: now_ms });
        }
        Ok(())
    }

    fn move_ticket(&mut self, kind: &str, status: TicketStatus, station: Option<String>) {
        if let Some(ticket) = self.tickets.iter_mut().find(|ticket| ticket.kind == kind) {
            ticket.status = status;
            ticket.station = station;
        }
    }

    /// The actor has nothing left to do for this order: no ticket, no refund owed.
    pub fn is_settled(&self) -> bool {
        match self.status {
            OrderStatus::PickedUp => true,
            OrderStatus::Cancelled => self.payment.status == PaymentStatus::Refunded,
            _ => false,
        }
    }
}

impl OrderEvent {
    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::Queued { .. } => "queued",
            OrderEvent::Started { .. } => "started",
            OrderEvent::Requeued { .. } => "requeued",
            OrderEvent::Finished { .. } => "finished",
            OrderEvent::PickedUp => "picked_up",
            OrderEvent::Cancelled => "cancelled",
            OrderEvent::Refunded => "refunded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(items: &[(&str, u32)]) -> OrderRequest {
        OrderRequest {
            store: None,
            customer: Some("kim".into()),
            items: items
                .iter()
                .map(|(id, qty)| LineRequest::new(*id, *qty))
                .collect(),
        }
    }

    #[test]
    fn an_order_belongs_to_the_store_it_names_or_the_default_store() {
        let menu = Menu::builtin();
        let mut at = request(&[("americano", 1)]);
        assert_eq!(at.validate(&menu).unwrap().store, "main");
        at.store = Some("gangnam".into());
        let draft = at.validate(&menu).unwrap();
        assert_eq!(Order::paid("o".into(), draft, "k".into(), "p".into(), 0).store, "gangnam");
    }

    fn paid_order() -> Order {
        let draft = request(&[("americano", 2)]).validate(&Menu::builtin()).unwrap();
        Order::paid("o1".into(), draft, "key".into(), "pay_1".into(), 1_000)
    }

    /// Drives an order to `status` along the happy path (or to cancelled).
    fn order_in(status: OrderStatus) -> Order {
        let mut order = paid_order();
        let path: &[OrderEvent] = match status {
            OrderStatus::Paid => &[],
            OrderStatus::Queued => &[OrderEvent::Queued { queue_seq: 7 }],
            OrderStatus::Brewing => {
                &[OrderEvent::Queued { queue_seq: 7 }, OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() }]
            }
            OrderStatus::Ready => &[
                OrderEvent::Queued { queue_seq: 7 },
                OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() },
                OrderEvent::Finished { kind: "bar".into() },
            ],
            OrderStatus::PickedUp => &[
                OrderEvent::Queued { queue_seq: 7 },
                OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() },
                OrderEvent::Finished { kind: "bar".into() },
                OrderEvent::PickedUp,
            ],
            OrderStatus::Cancelled => &[OrderEvent::Queued { queue_seq: 7 }, OrderEvent::Cancelled],
        };
        for event in path {
            order.apply(event.clone(), 2_000).unwrap();
        }
        assert_eq!(order.status, status);
        order
    }

    fn all_events() -> Vec<OrderEvent> {
        vec![
            OrderEvent::Queued { queue_seq: 9 },
            OrderEvent::Started { station: "bar-2".into(), kind: "bar".into() },
            OrderEvent::Requeued { kind: "bar".into() },
            OrderEvent::Finished { kind: "bar".into() },
            OrderEvent::PickedUp,
            OrderEvent::Cancelled,
            OrderEvent::Refunded,
        ]
    }

    /// The full transition table: (from, event) → the status after, or None if illegal.
    fn expected(from: OrderStatus, event: &OrderEvent) -> Option<OrderStatus> {
        use OrderStatus as S;
        match (from, event) {
            (S::Paid, OrderEvent::Queued { .. }) => Some(S::Queued),
            (S::Queued, OrderEvent::Started { .. }) => Some(S::Brewing),
            (S::Brewing, OrderEvent::Requeued { .. }) => Some(S::Queued),
            (S::Brewing, OrderEvent::Finished { .. }) => Some(S::Ready),
            (S::Ready, OrderEvent::PickedUp) => Some(S::PickedUp),
            (S::Paid | S::Queued | S::Brewing, OrderEvent::Cancelled) => Some(S::Cancelled),
            (S::Cancelled, OrderEvent::Refunded) => Some(S::Cancelled),
            _ => None,
        }
    }

    #[test]
    fn every_transition_follows_the_table() {
        for from in OrderStatus::ALL {
            for event in all_events() {
                let mut order = order_in(from);
                let before = order.clone();
                let result = order.apply(event.clone(), 5_000);
                match expected(from, &event) {
                    Some(to) => {
                        assert!(result.is_ok(), "{from:?} + {event:?} should be legal: {result:?}");
                        assert_eq!(order.status, to, "{from:?} + {event:?}");
                        assert_eq!(order.version, before.version + 1);
                        assert_eq!(order.updated_ms, 5_000);
                    }
                    None => {
                        assert!(result.is_err(), "{from:?} + {event:?} should be illegal");
                        assert_eq!(order, before, "a refused event must change nothing");
                    }
                }
            }
        }
    }

    #[test]
    fn versions_and_history_sequence_increase() {
        let order = order_in(OrderStatus::PickedUp);
        assert_eq!(order.version, 5);
        let seqs: Vec<u64> = order.history.iter().map(|entry| entry.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let statuses: Vec<OrderStatus> = order.history.iter().map(|entry| entry.status).collect();
        use OrderStatus as S;
        assert_eq!(statuses, vec![S::Paid, S::Queued, S::Brewing, S::Ready, S::PickedUp]);
    }

    #[test]
    fn cancel_owes_a_refund_and_refund_settles_it() {
        let mut order = order_in(OrderStatus::Brewing);
        order.apply(OrderEvent::Cancelled, 3_000).unwrap();
        assert_eq!(order.payment.status, PaymentStatus::RefundPending);
        assert_eq!(order.station, None);
        assert!(!order.is_settled());
        order.apply(OrderEvent::Refunded, 4_000).unwrap();
        assert_eq!(order.payment.status, PaymentStatus::Refunded);
        assert!(order.is_settled());
        // A refund is owed once only.
        assert!(order.apply(OrderEvent::Refunded, 5_000).is_err());
    }

    #[test]
    fn too_late_and_not_ready_are_told_apart() {
        let ready = order_in(OrderStatus::Ready);
        assert_eq!(ready.check(&OrderEvent::Cancelled), Err(TransitionError::TooLateToCancel("ready")));
        let queued = order_in(OrderStatus::Queued);
        assert_eq!(queued.check(&OrderEvent::PickedUp), Err(TransitionError::NotReady("queued")));
    }

    #[test]
    fn started_and_requeued_track_the_station() {
        let mut order = order_in(OrderStatus::Brewing);
        assert_eq!(order.station.as_deref(), Some("bar-1"));
        order.apply(OrderEvent::Requeued { kind: "bar".into() }, 3_000).unwrap();
        assert_eq!(order.station, None);
        assert_eq!(order.queue_seq, Some(7), "a requeued ticket keeps its place number");
    }

    #[test]
    fn validation_prices_the_order() {
        let draft = request(&[("americano", 2), ("latte", 1)]).validate(&Menu::builtin()).unwrap();
        assert_eq!(draft.total, 2 * 4500 + 5000);
        assert_eq!(draft.lines[0].line_total, 9000);
        assert_eq!(draft.currency, "KRW");
    }

    #[test]
    fn validation_names_the_bad_field() {
        let menu = Menu::builtin();
        let err = request(&[("americano", 1), ("mocha", 1)]).validate(&menu).unwrap_err();
        assert_eq!(err.field, "items[1].menu_id");
        assert_eq!(request(&[("americano", 0)]).validate(&menu).unwrap_err().field, "items[0].qty");
        assert_eq!(request(&[("americano", 21)]).validate(&menu).unwrap_err().field, "items[0].qty");
        assert!(request(&[("americano", 20)]).validate(&menu).is_ok());
        assert_eq!(request(&[]).validate(&menu).unwrap_err().field, "items");
        let many: Vec<(&str, u32)> = vec![("americano", 1); 21];
        assert_eq!(request(&many).validate(&menu).unwrap_err().field, "items");
        let twenty: Vec<(&str, u32)> = vec![("americano", 1); 20];
        assert!(request(&twenty).validate(&menu).is_ok());
        let mut long_name = request(&[("americano", 1)]);
        long_name.customer = Some("x".repeat(65));
        assert_eq!(long_name.validate(&menu).unwrap_err().field, "customer");
        long_name.customer = Some("é".repeat(64));
        assert!(long_name.validate(&menu).is_ok(), "the limit counts characters, not bytes");
    }

    fn line(menu_id: &str, options: &[(&str, &[&str])]) -> OrderRequest {
        let mut line = LineRequest::new(menu_id, 2);
        for (group, ids) in options {
            let chosen = match ids {
                [one] => Chosen::One((*one).into()),
                many => Chosen::Many(many.iter().map(|id| (*id).into()).collect()),
            };
            line.options.insert((*group).into(), chosen);
        }
        OrderRequest { store: None, customer: None, items: vec![line] }
    }

    #[test]
    fn options_are_priced_timed_and_echoed_in_menu_order() {
        let menu = Menu::builtin();
        let draft = line("latte", &[("extras", &["vanilla", "extra_shot"]), ("size", &["grande"]), ("milk", &["oat"])])
            .validate(&menu)
            .unwrap();
        let line = &draft.lines[0];
        assert_eq!(line.unit_price, 5000 + 500 + 600 + 500 + 500);
        assert_eq!(line.line_total, 2 * line.unit_price);
        assert_eq!(line.brew_ms, 4000 + 500 + 1000 + 300);
        let chosen: Vec<(&str, &str)> =
            line.options.iter().map(|option| (option.group.as_str(), option.choice.as_str())).collect();
        assert_eq!(chosen, [("size", "grande"), ("temperature", "hot"), ("milk", "oat"), ("extras", "extra_shot"), ("extras", "vanilla")]);
        assert_eq!(line.station, "bar");
    }

    #[test]
    fn a_v1_line_takes_the_defaults_and_keeps_its_v1_price() {
        let draft = request(&[("latte", 1)]).validate(&Menu::builtin()).unwrap();
        assert_eq!(draft.lines[0].unit_price, 5000);
        let chosen: Vec<&str> = draft.lines[0].options.iter().map(|option| option.choice.as_str()).collect();
        assert_eq!(chosen, ["tall", "hot"]);
    }

    #[test]
    fn bad_options_name_the_line_group_and_choice() {
        let menu = Menu::builtin();
        let refused = |request: OrderRequest| request.validate(&menu).unwrap_err();
        let err = refused(line("latte", &[("size", &["huge"])]));
        assert_eq!(err.field, "items[0].options.size");
        assert!(err.reason.contains("huge"), "{err}");
        assert!(refused(line("espresso", &[("milk", &["oat"])])).reason.contains("no option group"));
        assert!(refused(line("latte", &[("extras", &["vanilla", "vanilla"])])).reason.contains("twice"));
        let err = refused(line("latte", &[("extras", &["vanilla", "caramel", "extra_shot", "decaf"])]));
        assert_eq!((err.field.as_str(), err.reason.as_str()), ("items[0].options.extras", "choose 0-3, got 4"));
        assert!(refused(line("latte", &[("size", &["tall", "grande"])])).reason.contains("choose 1, got 2"));
        assert!(refused(line("latte", &[("size", &[])])).reason.contains("got 0"));
        let mut menu = Menu::builtin();
        menu.items[1].options[0].default = None;
        assert!(line("latte", &[]).validate(&menu).unwrap_err().reason.contains("no default"));
    }

    #[test]
    fn notes_are_trimmed_and_bounded() {
        let menu = Menu::builtin();
        let mut request = line("latte", &[]);
        request.items[0].note = Some("  extra hot ".into());
        assert_eq!(request.validate(&menu).unwrap().lines[0].note.as_deref(), Some("extra hot"));
        request.items[0].note = Some("   ".into());
        assert_eq!(request.validate(&menu).unwrap().lines[0].note, None);
        request.items[0].note = Some("가".repeat(140));
        assert!(request.validate(&menu).is_ok());
        request.items[0].note = Some("가".repeat(141));
        assert_eq!(request.validate(&menu).unwrap_err().field, "items[0].note");
        request.items[0].note = Some("a\u{7}b".into());
        assert_eq!(request.validate(&menu).unwrap_err().field, "items[0].note");
    }

    #[test]
    fn a_store_price_replaces_the_item_price_not_the_surcharges() {
        let draft = line("latte", &[("size", &["grande"])])
            .validate_priced(&Menu::builtin(), "main", &|id| (id == "latte").then_some(5200))
            .unwrap();
        assert_eq!(draft.lines[0].unit_price, 5700);
    }

    #[test]
    fn a_two_kind_order_is_brewing_until_both_tickets_are_done() {
        use OrderStatus as S;
        let draft = request(&[("latte", 1), ("croissant", 2), ("americano", 1)]).validate(&Menu::builtin()).unwrap();
        let mut order = Order::paid("o".into(), draft, "k".into(), "p".into(), 0);
        let kinds: Vec<&str> = order.tickets.iter().map(|ticket| ticket.kind.as_str()).collect();
        assert_eq!(kinds, ["bar", "kitchen"], "one ticket per kind, in the order the lines name them");
        assert_eq!(order.brew_ms_of("bar"), 4000 + 3000);
        assert_eq!(order.brew_ms_of("kitchen"), 2 * 1500);
        let started = |station: &str, kind: &str| OrderEvent::Started { station: station.into(), kind: kind.into() };
        let kind = |kind: &str| kind.to_owned();
        order.apply(OrderEvent::Queued { queue_seq: 1 }, 1).unwrap();
        order.apply(started("oven", "kitchen"), 2).unwrap();
        assert_eq!(order.status, S::Brewing);
        assert!(order.apply(started("oven", "kitchen"), 3).is_err(), "a ticket starts once");
        order.apply(OrderEvent::Finished { kind: kind("kitchen") }, 3).unwrap();
        assert_eq!(order.status, S::Brewing, "waits, with one ticket done, for the other");
        order.apply(started("bar-1", "bar"), 4).unwrap();
        order.apply(OrderEvent::Requeued { kind: kind("bar") }, 5).unwrap();
        assert_eq!(order.status, S::Brewing, "one ticket is done: still brewing");
        assert!(order.apply(OrderEvent::Finished { kind: kind("bar") }, 6).is_err(), "a queued ticket cannot finish");
        order.apply(started("bar-2", "bar"), 6).unwrap();
        order.apply(OrderEvent::Finished { kind: kind("bar") }, 7).unwrap();
        assert_eq!((order.status, order.station.as_deref()), (S::Ready, Some("bar-2")));
        let statuses: Vec<S> = order.history.iter().map(|entry| entry.status).collect();
        assert_eq!(statuses, [S::Paid, S::Queued, S::Brewing, S::Ready], "history only on status changes");
        assert_eq!(order.version, 8, "every event bumps the version");
        assert!(order.apply(OrderEvent::Started { station: "x".into(), kind: "pastry".into() }, 8).is_err(), "no such ticket");
    }

    #[test]
    fn a_requeue_with_no_other_ticket_started_is_queued_again() {
        let draft = request(&[("latte", 1), ("croissant", 1)]).validate(&Menu::builtin()).unwrap();
        let mut order = Order::paid("o".into(), draft, "k".into(), "p".into(), 0);
        order.apply(OrderEvent::Queued { queue_seq: 1 }, 1).unwrap();
        order.apply(OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() }, 2).unwrap();
        order.apply(OrderEvent::Requeued { kind: "bar".into() }, 3).unwrap();
        assert_eq!((order.status, order.station.as_deref()), (OrderStatus::Queued, None));
    }

    #[test]
    fn tickets_of_old_snapshots_follow_the_order_status() {
        let draft = request(&[("latte", 1), ("croissant", 1)]).validate(&Menu::builtin()).unwrap();
        let lines = draft.lines;
        let tickets = Order::tickets_from_status(&lines, OrderStatus::Brewing, Some("bar-1"));
        assert_eq!(tickets.len(), 2);
        assert!(tickets.iter().all(|ticket| ticket.status == TicketStatus::Brewing && ticket.station.as_deref() == Some("bar-1")));
        assert!(Order::tickets_from_status(&lines, OrderStatus::PickedUp, None).iter().all(|t| t.status == TicketStatus::Done));
        assert!(Order::tickets_from_status(&lines, OrderStatus::Queued, None).iter().all(|t| t.status == TicketStatus::Queued));
    }

    #[test]
    fn brew_time_counts_every_unit() {
        let draft = request(&[("americano", 2), ("espresso", 1)]).validate(&Menu::builtin()).unwrap();
        let order = Order::paid("o".into(), draft, "k".into(), "p".into(), 0);
        assert_eq!(order.brew_ms(), 2 * 3000 + 2000);
    }
}
