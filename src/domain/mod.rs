//! The pure model of a café: the menu, an order and its state machine.
//!
//! Nothing in here does I/O, spawns anything or reads a clock: time comes in as
//! `now_ms` arguments, so every rule can be unit-tested on its own. Actors
//! (`crate::actors`) drive these types; HTTP (`crate::http`) renders them.

pub mod key;
pub mod menu;
pub mod order;
pub mod time;

pub use menu::{Menu, MenuItem, OptionChoice, OptionGroup};
pub use order::{
    Chosen, Draft, LineOption, LineRequest, Order, OrderEvent, OrderLine, OrderRequest, OrderStatus, PaymentState,
    PaymentStatus, TicketState, TicketStatus, TransitionError, ValidationError,
};
