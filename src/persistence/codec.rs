//! The one module that turns records into bytes and back.
//!
//! Every value is an envelope: one byte of format version, one byte naming the
//! record kind, then the record in bincode 2 (serde, standard configuration).
//! A value whose version or kind is not the expected one, or whose body does not
//! decode completely, is a [`CodecError`] — recovery treats it as fatal rather
//! than skipping an order it cannot read.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::domain::Order;

/// The envelope format written today. Version 2 added the order's `store`
/// and pickup `number`, version 3 a line's `options`, `note` and `station`
/// kind, version 4 the order's `tickets`, version 5 the `store` of payment
/// intents and orphan refunds (the replicated journal writes each store's
/// records on that store's subject); older records are still read (see
/// [`v1`], [`v2`], [`v3`], [`v4`]).
pub const FORMAT_VERSION: u8 = 5;

/// Which record an envelope holds; a mismatch means a bug or a corrupted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Order = 1,
    Intent = 2,
    OrphanRefund = 3,
    Idempotency = 4,
    Journal = 5,
    Checkpoint = 6,
}

/// A charge about to be made: durable before the gateway is called, deleted in
/// the batch that establishes the order (or once the charge is known not to
/// have happened). Recovery reconciles the ones it finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub key: String,
    pub order_id: String,
    pub amount: u64,
    pub created_ms: u64,
    /// The store of the order it pays for.
    pub store: String,
}

/// A captured charge that belongs to no established order and must be refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRefund {
    pub key: String,
    pub payment_id: String,
    pub amount: u64,
    pub created_ms: u64,
    /// The store whose placement made the charge.
    pub store: String,
}

/// One message of a store's replicated journal (`crema.journal.<store>`):
/// either a group of changes (every write batch of one group commit, in
/// order) or the takeover record with which a node starts writing a store
/// (it makes every older writer's next conditional publish fail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalEntry {
    Changes { node: String, ops: Vec<JournalOp> },
    Takeover { node: String, at_ms: u64 },
}

/// A store's checkpoint (replicated mode): every record of the store that
/// loading it needs (live orders and their index entries, intents, orphan
/// refunds, idempotency records still inside their time to live, the store's
/// settings, its newest order for the pickup numbers), as of journal
/// sequence `seq`. Loading = these puts, then the journal after `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub store: String,
    pub seq: u64,
    pub at_ms: u64,
    pub ops: Vec<JournalOp>,
}

/// One RocksDB change of a journal group: a put (`value`) or a delete, in a
/// column family named by its [`super::Cf::code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalOp {
    pub cf: u8,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The remembered outcome of a request made with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of the request body: a reuse with another body is refused.
    pub body_sha256: [u8; 32],
    pub outcome: IdempotentOutcome,
    pub created_ms: u64,
}

/// What the first request with a key ended in. Only final outcomes are kept:
/// a request that failed for a passing reason (payment unavailable, overload)
/// leaves no record, so the client may retry with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdempotentOutcome {
    /// 201: the order as it was established (the replay renders the same body).
    Created(Order),
    /// 402: the gateway declined.
    Declined,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("value is empty or shorter than its envelope")]
    Truncated,
    #[error("unknown format version {0} (this build reads 1 to {FORMAT_VERSION})")]
    Version(u8),
    #[error("expected a {expected:?} record, found kind {found}")]
    Kind { expected: Kind, found: u8 },
    #[error("bincode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("bincode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

fn encode<T: Serialize>(kind: Kind, value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION, kind as u8];
    // Encoding plain data into a Vec cannot fail; a failure here is a bug in a record type.
    bincode::serde::encode_into_std_write(value, &mut bytes, bincode::config::standard())
        .expect("records are plain data and always encode");
    bytes
}

/// Most bytes one record may claim while decoding: a corrupted length prefix
/// must be an error, not an allocation of whatever size it names.
const DECODE_LIMIT_BYTES: usize = 1 << 20;

fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    match envelope_version(bytes)? {
        FORMAT_VERSION => decode_body(kind, bytes),
        version => Err(CodecError::Version(version)),
    }
}

/// The format version of an envelope (checked by each decoder).
fn envelope_version(bytes: &[u8]) -> Result<u8, CodecError> {
    match bytes {
        [version, _, ..] => Ok(*version),
        _ => Err(CodecError::Truncated),
    }
}

/// The record in an envelope of any version, as `T` (the caller picked `T`
/// for that version).
fn decode_body<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    decode_body_within::<T, DECODE_LIMIT_BYTES>(kind, bytes)
}

/// [`decode_body`] that lets the record claim up to `LIMIT` bytes.
fn decode_body_within<T: DeserializeOwned, const LIMIT: usize>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    let [_, found, body @ ..] = bytes else {
        return Err(CodecError::Truncated);
    };
    if *found != kind as u8 {
        return Err(CodecError::Kind { expected: kind, found: *found });
    }
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, read) = bincode::serde::decode_from_slice(body, config)?;
    if read != body.len() {
        return Err(CodecError::Trailing(body.len() - read));
    }
    Ok(value)
}

pub fn encode_order(order: &Order) -> Vec<u8> {
    encode(Kind::Order, order)
}

pub fn decode_order(bytes: &[u8]) -> Result<Order, CodecError> {
    match envelope_version(bytes)? {
        1 => decode_body::<v1::Order>(Kind::Order, bytes).map(Order::from),
        2 => decode_body::<v2::Order>(Kind::Order, bytes).map(Order::from),
        3 => decode_body::<v3::Order>(Kind::Order, bytes).map(Order::from),
        // Version 5 changed no order: a version 4 order is today's.
        4 => decode_body(Kind::Order, bytes),
        _ => decode(Kind::Order, bytes),
    }
}

pub fn encode_intent(intent: &PaymentIntent) -> Vec<u8> {
    encode(Kind::Intent, intent)
}

pub fn decode_intent(bytes: &[u8]) -> Result<PaymentIntent, CodecError> {
    match envelope_version(bytes)? {
        1..=4 => decode_body::<v4::PaymentIntent>(Kind::Intent, bytes).map(PaymentIntent::from),
        _ => decode(Kind::Intent, bytes),
    }
}

pub fn encode_orphan_refund(refund: &OrphanRefund) -> Vec<u8> {
    encode(Kind::OrphanRefund, refund)
}

pub fn decode_orphan_refund(bytes: &[u8]) -> Result<OrphanRefund, CodecError> {
    match envelope_version(bytes)? {
        1..=4 => decode_body::<v4::OrphanRefund>(Kind::OrphanRefund, bytes).map(OrphanRefund::from),
        _ => decode(Kind::OrphanRefund, bytes),
    }
}

pub fn encode_journal(entry: &JournalEntry) -> Vec<u8> {
    encode(Kind::Journal, entry)
}

/// A journal message (groups are larger than one record).
pub fn decode_journal(bytes: &[u8]) -> Result<JournalEntry, CodecError> {
    decode_large(Kind::Journal, bytes)
}

pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    encode(Kind::Checkpoint, checkpoint)
}

pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CodecError> {
    decode_large(Kind::Checkpoint, bytes)
}

/// [`decode`] for the large records (journal groups, checkpoints), up to
/// [`CHECKPOINT_LIMIT_BYTES`]; today's format only.
fn decode_large<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CodecError> {
    match envelope_version(bytes)? {
        FORMAT_VERSION => decode_body_within::<T, CHECKPOINT_LIMIT_BYTES>(kind, bytes),
        version => Err(CodecError::Version(version)),
    }
}

/// Most bytes a checkpoint may claim while decoding.
pub const CHECKPOINT_LIMIT_BYTES: usize = 1 << 30;


pub fn encode_idempotency(record: &IdempotencyRecord) -> Vec<u8> {
    encode(Kind::Idempotency, record)
}

pub fn decode_idempotency(bytes: &[u8]) -> Result<IdempotencyRecord, CodecError> {
    match envelope_version(bytes)? {
        1 => decode_body::<OldIdempotencyRecord<v1::Order>>(Kind::Idempotency, bytes).map(IdempotencyRecord::from),
        2 => decode_body::<OldIdempotencyRecord<v2::Order>>(Kind::Idempotency, bytes).map(IdempotencyRecord::from),
        3 => decode_body::<OldIdempotencyRecord<v3::Order>>(Kind::Idempotency, bytes).map(IdempotencyRecord::from),
        _ => decode(Kind::Idempotency, bytes),
    }
}

/// An idempotency record of an older format: as today's, but a 201 holds
/// that format's order (`O`, frozen in [`v1`], [`v2`] or [`v3`]).
#[derive(Deserialize)]
struct OldIdempotencyRecord<O> {
    body_sha256: [u8; 32],
    outcome: OldIdempotentOutcome<O>,
    created_ms: u64,
}

#[derive(Deserialize)]
enum OldIdempotentOutcome<O> {
    Created(O),
    Declined,
}

impl<O: Into<Order>> From<OldIdempotencyRecord<O>> for IdempotencyRecord {
    fn from(old: OldIdempotencyRecord<O>) -> Self {
        IdempotencyRecord {
            body_sha256: old.body_sha256,
            outcome: match old.outcome {
                OldIdempotentOutcome::Created(order) => IdempotentOutcome::Created(order.into()),
                OldIdempotentOutcome::Declined => IdempotentOutcome::Declined,
            },
            created_ms: old.created_ms,
        }
    }
}

/// The records of format version 1, frozen as they were written, and how
/// each becomes today's. Only the records that changed are here (an idempotency
/// record of this format is an [`OldIdempotencyRecord`] of its order).
mod v1 {
    use serde::Deserialize;

    use crate::domain::menu::DEFAULT_STATION_KIND;
    use crate::domain::order::{HistoryEntry, OrderStatus, PaymentState, DEFAULT_STORE};

    /// A line before options (versions 1 and 2).
    #[derive(Deserialize)]
    pub struct OrderLine {
        menu_id: String,
        name: String,
        qty: u32,
        unit_price: u64,
        line_total: u64,
        brew_ms: u64,
    }

    impl From<OrderLine> for crate::domain::OrderLine {
        fn from(old: OrderLine) -> Self {
            crate::domain::OrderLine {
                menu_id: old.menu_id,
                name: old.name,
                qty: old.qty,
                unit_price: old.unit_price,
                line_total: old.line_total,
                brew_ms: old.brew_ms,
                options: Vec::new(),
                note: None,
                station: DEFAULT_STATION_KIND.to_owned(),
            }
        }
    }

    #[derive(Deserialize)]
    pub struct Order {
        id: String,
        customer: Option<String>,
        status: OrderStatus,
        lines: Vec<OrderLine>,
        total: u64,
        currency: String,
        payment: PaymentState,
        station: Option<String>,
        queue_seq: Option<u64>,
        eta_ms: Option<u64>,
        created_ms: u64,
        updated_ms: u64,
        version: u64,
        history: Vec<HistoryEntry>,
    }

    impl From<Order> for crate::domain::Order {
        fn from(old: Order) -> Self {
            let lines: Vec<crate::domain::OrderLine> = old.lines.into_iter().map(Into::into).collect();
            crate::domain::Order {
                id: old.id,
                store: DEFAULT_STORE.to_owned(),
                number: None,
                customer: old.customer,
                status: old.status,
                tickets: crate::domain::Order::tickets_from_status(&lines, old.status, old.station.as_deref()),
                lines,
                total: old.total,
                currency: old.currency,
                payment: old.payment,
                station: old.station,
                queue_seq: old.queue_seq,
                eta_ms: old.eta_ms,
                created_ms: old.created_ms,
                updated_ms: old.updated_ms,
                version: old.version,
                history: old.history,
            }
        }
    }

}

/// The records of format version 2 (store and number, lines without options).
mod v2 {
    use serde::Deserialize;

    use super::v1::OrderLine;
    use crate::domain::order::{HistoryEntry, OrderStatus, PaymentState};

    #[derive(Deserialize)]
    pub struct Order {
        id: String,
        store: String,
        number: Option<u16>,
        customer: Option<String>,
        status: OrderStatus,
        lines: Vec<OrderLine>,
        total: u64,
        currency: String,
        payment: PaymentState,
        station: Option<String>,
        queue_seq: Option<u64>,
        eta_ms: Option<u64>,
        created_ms: u64,
        updated_ms: u64,
        version: u64,
        history: Vec<HistoryEntry>,
    }

    impl From<Order> for crate::domain::Order {
        fn from(old: Order) -> Self {
            let lines: Vec<crate::domain::OrderLine> = old.lines.into_iter().map(Into::into).collect();
            crate::domain::Order {
                id: old.id,
                store: old.store,
                number: old.number,
                customer: old.customer,
                status: old.status,
                tickets: crate::domain::Order::tickets_from_status(&lines, old.status, old.station.as_deref()),
                lines,
                total: old.total,
                currency: old.currency,
                payment: old.payment,
                station: old.station,
                queue_seq: old.queue_seq,
                eta_ms: old.eta_ms,
                created_ms: old.created_ms,
                updated_ms: old.updated_ms,
                version: old.version,
                history: old.history,
            }
        }
    }

}

/// The records of format version 3 (lines with options; no tickets).
mod v3 {
    use serde::Deserialize;

    use crate::domain::order::{HistoryEntry, OrderLine, OrderStatus, PaymentState};

    #[derive(Deserialize)]
    pub struct Order {
        id: String,
        store: String,
        number: Option<u16>,
        customer: Option<String>,
        status: OrderStatus,
        lines: Vec<OrderLine>,
        total: u64,
        currency: String,
        payment: PaymentState,
        station: Option<String>,
        queue_seq: Option<u64>,
        eta_ms: Option<u64>,
        created_ms: u64,
        updated_ms: u64,
        version: u64,
        history: Vec<HistoryEntry>,
    }

    impl From<Order> for crate::domain::Order {
        fn from(old: Order) -> Self {
            crate::domain::Order {
                tickets: crate::domain::Order::tickets_from_status(&old.lines, old.status, old.station.as_deref()),
                id: old.id,
                store: old.store,
                number: old.number,
                customer: old.customer,
                status: old.status,
                lines: old.lines,
                total: old.total,
                currency: old.currency,
                payment: old.payment,
                station: old.station,
                queue_seq: old.queue_seq,
                eta_ms: old.eta_ms,
                created_ms: old.created_ms,
                updated_ms: old.updated_ms,
                version: old.version,
                history: old.history,
            }
        }
    }

}

/// Intents and orphan refunds of formats 1 to 4: without their store (the
/// default store's, as every order of a build before stores was).
mod v4 {
    use serde::Deserialize;

    use crate::domain::order::DEFAULT_STORE;

    #[derive(Deserialize)]
    pub struct PaymentIntent {
        key: String,
        order_id: String,
        amount: u64,
        created_ms: u64,
    }

    impl From<PaymentIntent> for super::PaymentIntent {
        fn from(old: PaymentIntent) -> Self {
            super::PaymentIntent {
                key: old.key,
                order_id: old.order_id,
                amount: old.amount,
                created_ms: old.created_ms,
                store: DEFAULT_STORE.to_owned(),
            }
        }
    }

    #[derive(Deserialize)]
    pub struct OrphanRefund {
        key: String,
        payment_id: String,
        amount: u64,
        created_ms: u64,
    }

    impl From<OrphanRefund> for super::OrphanRefund {
        fn from(old: OrphanRefund) -> Self {
            super::OrphanRefund {
                key: old.key,
                payment_id: old.payment_id,
                amount: old.amount,
                created_ms: old.created_ms,
                store: DEFAULT_STORE.to_owned(),
            }
        }
    }
}

/// Queue positions are stored big-endian so RocksDB's byte order is queue order.
pub fn ticket_key(queue_seq: u64) -> [u8; 8] {
    queue_seq.to_be_bytes()
}

pub fn decode_ticket_key(key: &[u8]) -> Result<u64, CodecError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| CodecError::Truncated)?;
    Ok(u64::from_be_bytes(bytes))
}

/// `customer \0 order_id`: a prefix scan lists one customer's orders in id (time) order.
pub fn customer_key(customer: &str, order_id: &str) -> Vec<u8> {
    let mut key = customer_prefix(customer);
    key.extend_from_slice(order_id.as_bytes());
    key
}

pub fn customer_prefix(customer: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(customer.len() + 40);
    key.extend_from_slice(customer.as_bytes());
    key.push(0);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{LineRequest, Menu, OrderEvent, OrderRequest};

    /// Found by `make fuzz` (snapshot_codec): bincode accepts a varint in a
    /// longer form than it writes, so a record may decode from bytes it would
    /// not write. Decoding stays total and encode → decode stays the identity.
    #[test]
    fn a_record_in_non_minimal_varints_decodes_and_round_trips() {
        let bytes = include_bytes!("../../fuzz/regressions/snapshot_codec-non-minimal-varint");
        let decoded = decode_order(bytes).expect("decodes");
        assert_ne!(encode_order(&decoded), bytes.to_vec(), "written in the minimal form");
        assert_eq!(decode_order(&encode_order(&decoded)).unwrap(), decoded);
    }

    #[test]
    fn a_length_prefix_beyond_the_limit_is_an_error_not_an_allocation() {
        // Envelope, then a string whose varint length says u64::MAX bytes.
        let mut bytes = vec![FORMAT_VERSION, Kind::Intent as u8, 253];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode_intent(&bytes), Err(CodecError::Decode(_))));
    }

    fn order() -> Order {
        let request = OrderRequest {
            store: None,
            customer: Some("kim".into()),
            items: vec![LineRequest::new("latte", 3)],
        };
        let draft = request.validate(&Menu::builtin()).unwrap();
        let mut order = Order::paid("0190-abc".into(), draft, "k1".into(), "pay_1".into(), 42);
        order.number = Some(17);
        order.apply(OrderEvent::Queued { queue_seq: 17 }, 43).unwrap();
        order
    }

    #[test]
    fn order_round_trips() {
        let order = order();
        assert_eq!(decode_order(&encode_order(&order)).unwrap(), order);
    }

    #[test]
    fn other_records_round_trip() {
        let intent = PaymentIntent { key: "k".into(), order_id: "o".into(), amount: 9, created_ms: 1, store: "s".into() };
        assert_eq!(decode_intent(&encode_intent(&intent)).unwrap(), intent);
        let refund =
            OrphanRefund { key: "k".into(), payment_id: "p".into(), amount: 9, created_ms: 1, store: "s".into() };
        assert_eq!(decode_orphan_refund(&encode_orphan_refund(&refund)).unwrap(), refund);
        let entry = JournalEntry::Changes {
            node: "a".into(),
            ops: vec![JournalOp { cf: 0, key: b"k".to_vec(), value: Some(encode_order(&order())) }, JournalOp { cf: 3, key: b"t".to_vec(), value: None }],
        };
        assert_eq!(decode_journal(&encode_journal(&entry)).unwrap(), entry);
        let takeover = JournalEntry::Takeover { node: "b".into(), at_ms: 7 };
        assert_eq!(decode_journal(&encode_journal(&takeover)).unwrap(), takeover);
        assert!(decode_journal(&encode_intent(&intent)).is_err(), "another record is not a journal entry");
        let checkpoint = Checkpoint { store: "s".into(), seq: 9, at_ms: 3, ops: vec![JournalOp { cf: 6, key: b"m".to_vec(), value: Some(Vec::new()) }] };
        assert_eq!(decode_checkpoint(&encode_checkpoint(&checkpoint)).unwrap(), checkpoint);
        let record = IdempotencyRecord {
            body_sha256: [7; 32],
            outcome: IdempotentOutcome::Created(order()),
            created_ms: 5,
        };
        assert_eq!(decode_idempotency(&encode_idempotency(&record)).unwrap(), record);
    }

    #[test]
    fn bad_envelopes_are_errors_not_defaults() {
        let bytes = encode_order(&order());
        assert!(matches!(decode_order(&[]), Err(CodecError::Truncated)));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 99;
        assert!(matches!(decode_order(&wrong_version), Err(CodecError::Version(99))));
        assert!(matches!(decode_intent(&bytes), Err(CodecError::Kind { .. })));
        assert!(decode_order(&bytes[..bytes.len() - 3]).is_err(), "a truncated body must not decode");
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(decode_order(&trailing), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn intents_and_refunds_of_format_4_are_the_default_stores() {
        let mut intent = vec![4, Kind::Intent as u8];
        bincode::serde::encode_into_std_write(("k", "o", 9_u64, 1_u64), &mut intent, bincode::config::standard()).unwrap();
        let intent = decode_intent(&intent).unwrap();
        assert_eq!((intent.order_id.as_str(), intent.store.as_str()), ("o", crate::domain::order::DEFAULT_STORE));
        let mut refund = vec![4, Kind::OrphanRefund as u8];
        bincode::serde::encode_into_std_write(("k", "p", 9_u64, 1_u64), &mut refund, bincode::config::standard()).unwrap();
        let refund = decode_orphan_refund(&refund).unwrap();
        assert_eq!((refund.payment_id.as_str(), refund.store.as_str()), ("p", crate::domain::order::DEFAULT_STORE));
    }

    /// An order as versions 1 and 2 knew it: lines without options, note or station.
    fn without_options(mut order: Order) -> Order {
        for line in &mut order.lines {
            line.options.clear();
            line.note = None;
            line.station = "bar".into();
        }
        order
    }

    /// A record as format version 1 or 2 wrote it: bincode writes a struct as
    /// its fields in order, so the order's fields (version 1: without `store`
    /// and `number`), with lines of six fields.
    fn old_order_bytes(version: u8, order: &Order) -> Vec<u8> {
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|line| (&line.menu_id, &line.name, line.qty, line.unit_price, line.line_total, line.brew_ms))
            .collect();
        let rest = (
            order.status, &lines, order.total, &order.currency, &order.payment, &order.station, order.queue_seq,
            order.eta_ms, order.created_ms, order.updated_ms, order.version, &order.history,
        );
        let mut bytes = vec![version, Kind::Order as u8];
        let config = bincode::config::standard();
        if version == 3 {
            // Full lines, and no tickets: the order's fields up to `eta_ms`, then the rest.
            let head = (&order.id, &order.store, order.number, &order.customer, order.status, &order.lines);
            let rest = (
                order.total, &order.currency, &order.payment, &order.station, order.queue_seq, order.eta_ms,
                order.created_ms, order.updated_ms, order.version, &order.history,
            );
            bincode::serde::encode_into_std_write((head, rest), &mut bytes, config).unwrap();
        } else if version == 1 {
            bincode::serde::encode_into_std_write((&order.id, &order.customer, rest), &mut bytes, config).unwrap();
        } else {
            let head = (&order.id, &order.store, order.number, &order.customer);
            bincode::serde::encode_into_std_write((head, rest), &mut bytes, config).unwrap();
        }
        bytes
    }

    #[test]
    fn version_1_records_are_read_as_orders_of_the_default_store_without_a_number() {
        let mut expected = without_options(order());
        expected.number = None;
        let decoded = decode_order(&old_order_bytes(1, &expected)).expect("a v1 order decodes");
        assert_eq!(decoded, expected);
        assert_eq!((decoded.store.as_str(), decoded.number), ("main", None));

        // The idempotency record of a 201 holds an order: version 1 too.
        let mut bytes = vec![1, Kind::Idempotency as u8];
        bincode::serde::encode_into_std_write([7u8; 32], &mut bytes, bincode::config::standard()).unwrap();
        bytes.push(0); // IdempotentOutcome::Created
        bytes.extend_from_slice(&old_order_bytes(1, &expected)[2..]);
        bincode::serde::encode_into_std_write(5u64, &mut bytes, bincode::config::standard()).unwrap();
        let record = decode_idempotency(&bytes).expect("a v1 idempotency record decodes");
        assert_eq!(record.outcome, IdempotentOutcome::Created(expected));
        assert_eq!((record.body_sha256, record.created_ms), ([7; 32], 5));
        // Written again, it is today's version.
        assert_eq!(encode_order(&decoded)[0], FORMAT_VERSION);
    }

    #[test]
    fn version_2_records_are_read_with_lines_without_options() {
        let mut expected = without_options(order());
        expected.store = "gangnam".into();
        let decoded = decode_order(&old_order_bytes(2, &expected)).expect("a v2 order decodes");
        assert_eq!(decoded, expected);
        assert_eq!((decoded.store.as_str(), decoded.number), ("gangnam", Some(17)));
        assert!(decoded.lines[0].options.is_empty());

        let mut bytes = vec![2, Kind::Idempotency as u8];
        bincode::serde::encode_into_std_write([7u8; 32], &mut bytes, bincode::config::standard()).unwrap();
        bytes.push(0);
        bytes.extend_from_slice(&old_order_bytes(2, &expected)[2..]);
        bincode::serde::encode_into_std_write(5u64, &mut bytes, bincode::config::standard()).unwrap();
        assert_eq!(decode_idempotency(&bytes).unwrap().outcome, IdempotentOutcome::Created(expected));
    }

    #[test]
    fn version_3_records_get_one_ticket_per_kind_placed_by_the_order_status() {
        let request = OrderRequest {
            store: None,
            customer: None,
            items: vec![LineRequest::new("latte", 1), LineRequest::new("croissant", 1)],
        };
        let draft = request.validate(&Menu::builtin()).unwrap();
        let mut order = Order::paid("o".into(), draft, "k".into(), "p".into(), 1);
        order.apply(OrderEvent::Queued { queue_seq: 3 }, 2).unwrap();
        order.apply(OrderEvent::Started { station: "bar-1".into(), kind: "bar".into() }, 3).unwrap();
        let decoded = decode_order(&old_order_bytes(3, &order)).expect("a v3 order decodes");
        assert_eq!(decoded.lines, order.lines);
        // Format 3 knew one station per order: every ticket is where the order was.
        let tickets: Vec<(&str, crate::domain::TicketStatus)> =
            decoded.tickets.iter().map(|ticket| (ticket.kind.as_str(), ticket.status)).collect();
        use crate::domain::TicketStatus::Brewing;
        assert_eq!(tickets, [("bar", Brewing), ("kitchen", Brewing)]);
        let mut bytes = vec![3, Kind::Idempotency as u8];
        bincode::serde::encode_into_std_write([7u8; 32], &mut bytes, bincode::config::standard()).unwrap();
        bytes.push(0);
        bytes.extend_from_slice(&old_order_bytes(3, &order)[2..]);
        bincode::serde::encode_into_std_write(5u64, &mut bytes, bincode::config::standard()).unwrap();
        assert!(matches!(decode_idempotency(&bytes).unwrap().outcome, IdempotentOutcome::Created(_)));
    }

    #[test]
    fn an_order_with_options_and_a_note_round_trips() {
        let mut request = OrderRequest { store: None, customer: None, items: vec![LineRequest::new("latte", 1)] };
        request.items[0].options.insert("milk".into(), crate::domain::Chosen::One("oat".into()));
        request.items[0].note = Some("extra hot".into());
        let draft = request.validate(&Menu::builtin()).unwrap();
        let order = Order::paid("o".into(), draft, "k".into(), "p".into(), 1);
        let decoded = decode_order(&encode_order(&order)).unwrap();
        assert_eq!(decoded, order);
        assert_eq!(decoded.lines[0].note.as_deref(), Some("extra hot"));
    }

    #[test]
    fn ticket_keys_sort_in_queue_order() {
        let mut keys = [ticket_key(300), ticket_key(2), ticket_key(256)];
        keys.sort();
        let seqs: Vec<u64> = keys.iter().map(|key| decode_ticket_key(key).unwrap()).collect();
        assert_eq!(seqs, vec![2, 256, 300]);
    }
}
