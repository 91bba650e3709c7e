//! Several crema nodes sharing a chain's stores (issue 19, contract v3).
//!
//! - [`assignment`]: which live node owns which store — every node computes
//!   the same answer from the same lists, as pure code.
//! - [`lease`]: when an owner renews its lease and when it stops serving on
//!   its own, from the monotonic time it is handed.
//! - [`membership`]: the live nodes and the stores' leases in the KV bucket
//!   `crema_cluster`; each round renews, reads, assigns, hands over what
//!   belongs elsewhere and takes this node's share.
//! - [`forward`]: any node answers any request: one about another node's
//!   store goes to its owner over HTTP.
//! - [`order_id`]: order ids that name their store.
//!
//! A lease only says who *should* write a store; the journal's conditional
//! publish is what stops an older owner (see `persistence::jetstream`).

pub mod assignment;
pub mod lease;
pub mod membership;
pub mod order_id;
pub mod forward;
