//! Any header bytes: the key check never panics, accepts exactly 1-255
//! visible ASCII bytes, and whatever it accepts is a valid header value that
//! reads back as the same string.
#![no_main]

use crema_fuzz::domain::key::{valid_idempotency_key, MAX_KEY_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let valid = valid_idempotency_key(bytes);
    let expected = !bytes.is_empty() && bytes.len() <= MAX_KEY_LEN && bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    assert_eq!(valid, expected);
    if let Ok(value) = http::HeaderValue::from_bytes(bytes) {
        if valid {
            assert_eq!(value.to_str().ok(), std::str::from_utf8(bytes).ok());
        }
    } else {
        assert!(!valid, "a valid key is always a valid header value");
    }
});
