//! Any bytes read back from disk decode to a record or to a `CodecError`,
//! never a panic or an allocation of whatever size a corrupted prefix names;
//! a record that decodes encodes back to the same bytes.
#![no_main]

use crema_fuzz::persistence::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(order) = codec::decode_order(bytes) {
        assert_eq!(codec::encode_order(&order), bytes, "an order re-encodes to the bytes it came from");
    }
    if let Ok(intent) = codec::decode_intent(bytes) {
        assert_eq!(codec::encode_intent(&intent), bytes);
    }
    if let Ok(refund) = codec::decode_orphan_refund(bytes) {
        assert_eq!(codec::encode_orphan_refund(&refund), bytes);
    }
    if let Ok(record) = codec::decode_idempotency(bytes) {
        assert_eq!(codec::encode_idempotency(&record), bytes);
    }
    let _ = codec::decode_ticket_key(bytes);
});
