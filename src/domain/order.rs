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

use serde::{Deserialize, Serialize};

use super::menu::Menu;

/// Most lines one order may have.
pub const MAX_LINES: usize = 20;
/// Most units of one item per line.
pub const MAX_QTY: u32 = 20;
/// Longest customer name, in characters.
pub const MAX_CUSTOMER_CHARS: usize = 64;

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
    /// Brew time of one unit, copied from the menu when ordered, so a menu change
    /// does not change tickets already paid for.
    pub brew_ms: u64,
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
    pub customer: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total: u64,
    pub currency: String,
}

impl OrderRequest {
    /// Checks the request against the menu and the bounds, and prices it.
    pub fn validate(&self, menu: &Menu) -> Result<Draft, ValidationError> {
        if let Some(store) = self.store.as_deref().filter(|store| *store != DEFAULT_STORE) {
            return Err(ValidationError::new("store", format!("unknown store {store:?}")));
        }
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
            lines.push(OrderLine {
                menu_id: item.id.clone(),
                name: item.name.clone(),
                qty: line.qty,
                unit_price: item.price,
                line_total: item.price * u64::from(line.qty),
                brew_ms: item.brew_ms,
            });
        }
        // Menu::validate bounds prices so that 20 × 20 units cannot overflow.
        let total = lines.iter().map(|line| line.line_total).sum();
        Ok(Draft {
            customer: self.customer.clone(),
            lines,
            total,
            currency: menu.currency.clone(),
        })
    }
}

/// Something that happened to a paid order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The ticket joined the barista queue at position `queue_seq`.
    Queued { queue_seq: u64 },
    /// A station took the ticket.
    Started { station: String },
    /// The station gave the ticket back (paused or crashed); it is at the head of the queue again.
    Requeued,
    /// The station finished making it.
    Finished,
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

/// The store of every order until stores are configurable (API.md contract v2).
pub const DEFAULT_STORE: &str = "main";

/// A paid order: the unit of state an order actor owns and persists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    /// The store it was placed at (contract v2; `main` until stores are configurable).
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
    pub created_ms: u64,
    pub updated_ms: u64,
    pub version: u64,
    pub history: Vec<HistoryEntry>,
}

impl Order {
    /// The order as it is established: charged (`payment_id`) and `paid`.
    pub fn paid(id: String, draft: Draft, key: String, payment_id: String, now_ms: u64) -> Self {
        Order {
            id,
            store: DEFAULT_STORE.to_owned(),
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

    /// Checks whether `event` applies, without changing anything.
    pub fn check(&self, event: &OrderEvent) -> Result<(), TransitionError> {
        use OrderEvent as E;
        use OrderStatus as S;
        let legal = match (event, self.status) {
            (E::Queued { .. }, S::Paid) => true,
            (E::Started { .. }, S::Queued) => true,
            (E::Requeued, S::Brewing) => true,
            (E::Finished, S::Brewing) => true,
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
            OrderEvent::Started { station } => {
                self.station = Some(station);
                Some(OrderStatus::Brewing)
            }
            OrderEvent::Requeued => {
                self.station = None;
                Some(OrderStatus::Queued)
            }
            OrderEvent::Finished => Some(OrderStatus::Ready),
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
        if let Some(status) = status {
            self.status = status;
            if !matches!(status, OrderStatus::Paid | OrderStatus::Queued | OrderStatus::Brewing) {
                self.eta_ms = None;
            }
            self.history.push(HistoryEntry { seq: self.version, status, at_ms: now_ms });
        }
        Ok(())
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
            OrderEvent::Requeued => "requeued",
            OrderEvent::Finished => "finished",
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
                .map(|(id, qty)| LineRequest { menu_id: (*id).into(), qty: *qty })
                .collect(),
        }
    }

    #[test]
    fn an_order_names_the_default_store_or_none() {
        let menu = Menu::builtin();
        let mut at = request(&[("americano", 1)]);
        at.store = Some("main".into());
        assert!(at.validate(&menu).is_ok());
        at.store = Some("gangnam".into());
        let err = at.validate(&menu).unwrap_err();
        assert_eq!(err.field, "store");
        assert!(err.to_string().contains("gangnam"), "{err}");
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
                &[OrderEvent::Queued { queue_seq: 7 }, OrderEvent::Started { station: "bar-1".into() }]
            }
            OrderStatus::Ready => &[
                OrderEvent::Queued { queue_seq: 7 },
                OrderEvent::Started { station: "bar-1".into() },
                OrderEvent::Finished,
            ],
            OrderStatus::PickedUp => &[
                OrderEvent::Queued { queue_seq: 7 },
                OrderEvent::Started { station: "bar-1".into() },
                OrderEvent::Finished,
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
            OrderEvent::Started { station: "bar-2".into() },
            OrderEvent::Requeued,
            OrderEvent::Finished,
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
            (S::Brewing, OrderEvent::Requeued) => Some(S::Queued),
            (S::Brewing, OrderEvent::Finished) => Some(S::Ready),
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
        order.apply(OrderEvent::Requeued, 3_000).unwrap();
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

    #[test]
    fn brew_time_counts_every_unit() {
        let draft = request(&[("americano", 2), ("espresso", 1)]).validate(&Menu::builtin()).unwrap();
        let order = Order::paid("o".into(), draft, "k".into(), "p".into(), 0);
        assert_eq!(order.brew_ms(), 2 * 3000 + 2000);
    }
}
