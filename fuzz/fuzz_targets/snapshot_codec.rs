//! Any bytes read back from disk decode to a record or to a `CodecError`,
//! never a panic or an allocation of whatever size a corrupted prefix names;
//! a record that decodes survives encode → decode unchanged.
//!
//! Not bytes → record → the same bytes: bincode also accepts varints in a
//! longer form than it writes (`252, 0, 0, 0, 0` for 0), which the first run
//! of this target found (fuzz/regressions/snapshot_codec-non-minimal-varint).
#![no_main]

use crema_fuzz::persistence::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(order) = codec::decode_order(bytes) {
        let again = codec::decode_order(&codec::encode_order(&order)).expect("an encoded order decodes");
        assert_eq!(again, order);
    }
    if let Ok(intent) = codec::decode_intent(bytes) {
        assert_eq!(codec::decode_intent(&codec::encode_intent(&intent)).expect("decodes"), intent);
    }
    if let Ok(refund) = codec::decode_orphan_refund(bytes) {
        assert_eq!(codec::decode_orphan_refund(&codec::encode_orphan_refund(&refund)).expect("decodes"), refund);
    }
    if let Ok(record) = codec::decode_idempotency(bytes) {
        assert_eq!(codec::decode_idempotency(&codec::encode_idempotency(&record)).expect("decodes"), record);
    }
    let _ = codec::decode_ticket_key(bytes);
});
