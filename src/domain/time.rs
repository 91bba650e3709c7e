//! Wall-clock helpers. The domain stores times as milliseconds since the Unix
//! epoch (`*_ms`); they are rendered as RFC 3339 UTC strings only at the edge.

use chrono::{DateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, read from the system clock.
pub fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

/// Renders `ms` as an RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_utc_with_z_suffix() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_057_612_345), "2025-11-25T08:00:12.345Z");
    }
}

/// Serializes milliseconds since the epoch as an RFC 3339 string (for `#[serde(serialize_with)]`).
pub fn serialize_rfc3339<S: serde::Serializer>(ms: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*ms))
}
