//! Timestamps as the API server writes them: RFC 3339 in UTC, whole seconds (`2025-05-01T12:00:00Z`).

use time::OffsetDateTime;

/// Now.
pub(crate) fn now() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// `days` from now (a certificate's expiry).
pub(crate) fn days_from_now(days: i64) -> String {
    format_time(OffsetDateTime::now_utc() + time::Duration::days(days))
}

fn format_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_are_rfc3339_whole_seconds_in_utc() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_000_000_000_500_000_000)
            .expect("a valid time");
        assert_eq!(super::format_time(t), "2001-09-09T01:46:40Z");
    }
}
