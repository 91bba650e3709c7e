//! The JSON shapes of API.md, built from domain types. Times become RFC 3339.

use serde::Serialize;

use crate::domain::time::rfc3339;
use crate::domain::{LineOption, Order, OrderStatus, PaymentStatus, TicketStatus};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderView<'a> {
    pub id: &'a str,
    /// The store it was placed at.
    pub store: &'a str,
    /// Its pickup number at that store (1–999, then again from 1); `null` for
    /// orders placed before pickup numbers existed.
    pub number: Option<u16>,
    pub customer: Option<&'a str>,
    pub status: OrderStatus,
    pub items: Vec<LineView<'a>>,
    pub total: u64,
    pub currency: &'a str,
    pub payment: PaymentView,
    pub station: Option<&'a str>,
    /// One per station kind its lines need (routing).
    pub tickets: Vec<OrderTicketView<'a>>,
    pub eta: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub version: u64,
    pub history: Vec<HistoryView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LineView<'a> {
    pub menu_id: &'a str,
    pub name: &'a str,
    pub qty: u32,
    /// The chosen options, resolved (defaults included), in the menu's order.
    pub options: &'a [LineOption],
    pub note: Option<&'a str>,
    /// The item's price at the store plus the chosen options' prices.
    pub unit_price: u64,
    pub line_total: u64,
}

/// One of an order's tickets: where the lines of one station kind are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderTicketView<'a> {
    pub kind: &'a str,
    pub status: TicketStatus,
    /// The station making it, or that made it.
    pub station: Option<&'a str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub status: PaymentStatus,
    pub amount: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    pub seq: u64,
    pub status: OrderStatus,
    pub at: String,
}

impl<'a> From<&'a Order> for OrderView<'a> {
    fn from(order: &'a Order) -> Self {
        OrderView {
            id: &order.id,
            store: &order.store,
            number: order.number,
            customer: order.customer.as_deref(),
            status: order.status,
            items: order
                .lines
                .iter()
                .map(|line| LineView {
                    menu_id: &line.menu_id,
                    name: &line.name,
                    qty: line.qty,
                    options: &line.options,
                    note: line.note.as_deref(),
                    unit_price: line.unit_price,
                    line_total: line.line_total,
                })
                .collect(),
            total: order.total,
            currency: &order.currency,
            payment: PaymentView { status: order.payment.status, amount: order.payment.amount },
            station: order.station.as_deref(),
            tickets: order
                .tickets
                .iter()
                .map(|ticket| OrderTicketView { kind: &ticket.kind, status: ticket.status, station: ticket.station.as_deref() })
                .collect(),
            eta: order.eta_ms.map(rfc3339),
            created_at: rfc3339(order.created_ms),
            updated_at: rfc3339(order.updated_ms),
            version: order.version,
            history: order
                .history
                .iter()
                .map(|entry| HistoryView { seq: entry.seq, status: entry.status, at: rfc3339(entry.at_ms) })
                .collect(),
        }
    }
}
