//! The one module that turns records into bytes and back.
//!
//! Every value is an envelope: one byte of format version, one byte naming the
//! record kind, then the record in bincode 2 (serde, standard configuration).
//! A value whose version or kind is not the expected one, or whose body does not
//! decode completely, is a [`CodecError`] — recovery treats it as fatal rather
//! than skipping an order it cannot read.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::domain::Order;

/// The envelope format written today.
pub const FORMAT_VERSION: u8 = 1;

/// Which record an envelope holds; a mismatch means a bug or a corrupted value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Order = 1,
    Intent = 2,
    OrphanRefund = 3,
    Idempotency = 4,
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
}

/// A captured charge that belongs to no established order and must be refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanRefund {
    pub key: String,
    pub payment_id: String,
    pub amount: u64,
    pub created_ms: u64,
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
    #[error("unknown format version {0} (this build reads {FORMAT_VERSION})")]
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
    let [version, found, body @ ..] = bytes else {
        return Err(CodecError::Truncated);
    };
    if *version != FORMAT_VERSION {
        return Err(CodecError::Version(*version));
    }
    if *found != kind as u8 {
        return Err(CodecError::Kind { expected: kind, found: *found });
    }
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>();
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
    decode(Kind::Order, bytes)
}

pub fn encode_intent(intent: &PaymentIntent) -> Vec<u8> {
    encode(Kind::Intent, intent)
}

pub fn decode_intent(bytes: &[u8]) -> Result<PaymentIntent, CodecError> {
    decode(Kind::Intent, bytes)
}

pub fn encode_orphan_refund(refund: &OrphanRefund) -> Vec<u8> {
    encode(Kind::OrphanRefund, refund)
}

pub fn decode_orphan_refund(bytes: &[u8]) -> Result<OrphanRefund, CodecError> {
    decode(Kind::OrphanRefund, bytes)
}

pub fn encode_idempotency(record: &IdempotencyRecord) -> Vec<u8> {
    encode(Kind::Idempotency, record)
}

pub fn decode_idempotency(bytes: &[u8]) -> Result<IdempotencyRecord, CodecError> {
    decode(Kind::Idempotency, bytes)
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
            customer: Some("kim".into()),
            items: vec![LineRequest { menu_id: "latte".into(), qty: 3 }],
        };
        let draft = request.validate(&Menu::builtin()).unwrap();
        let mut order = Order::paid("0190-abc".into(), draft, "k1".into(), "pay_1".into(), 42);
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
        let intent = PaymentIntent { key: "k".into(), order_id: "o".into(), amount: 9, created_ms: 1 };
        assert_eq!(decode_intent(&encode_intent(&intent)).unwrap(), intent);
        let refund =
            OrphanRefund { key: "k".into(), payment_id: "p".into(), amount: 9, created_ms: 1 };
        assert_eq!(decode_orphan_refund(&encode_orphan_refund(&refund)).unwrap(), refund);
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
    fn ticket_keys_sort_in_queue_order() {
        let mut keys = [ticket_key(300), ticket_key(2), ticket_key(256)];
        keys.sort();
        let seqs: Vec<u64> = keys.iter().map(|key| decode_ticket_key(key).unwrap()).collect();
        assert_eq!(seqs, vec![2, 256, 300]);
    }
}
