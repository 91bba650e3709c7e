//! Several crema nodes sharing a chain's stores (issue 19, contract v3).
//!
//! Built so far: the two decisions every node must make alike, as pure code
//! over the inputs and the time it is handed — which live node owns which
//! store ([`assignment`]), and when an owner must renew its lease and when it
//! must stop serving on its own ([`lease`]). Not built yet (and not used by
//! the binary): the leases in a JetStream KV bucket, forwarding, handover,
//! `GET /cluster`. A lease only says who *should* write a store; the journal's
//! conditional publish is what stops an older owner (see
//! `persistence::jetstream`).

pub mod assignment;
pub mod lease;
pub mod membership;
pub mod order_id;
pub mod forward;
