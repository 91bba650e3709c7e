//! The shape of an `Idempotency-Key` (API.md, "Orders"): 1–255 visible ASCII
//! characters. Pure, so that the HTTP edge and the fuzzers share one rule.

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Checks a key's shape: 1-255 visible ASCII characters (0x21–0x7e).
pub fn valid_idempotency_key(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|byte| (0x21..=0x7e).contains(byte))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape() {
        assert!(valid_idempotency_key(b"abc-123"));
        assert!(valid_idempotency_key(&[b'k'; 255]));
        assert!(!valid_idempotency_key(&[b'k'; 256]));
        assert!(!valid_idempotency_key(b""));
        assert!(!valid_idempotency_key(b"has space"));
        assert!(!valid_idempotency_key("ключ".as_bytes()));
    }
}
