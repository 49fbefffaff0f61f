//! Payload timestamps: ISO 8601 with or without an offset (naive times are read in
//! `ingest.naive_timezone`), or epoch seconds / milliseconds. A missing, unparsable or
//! skewed timestamp is replaced by the receive time, and the reason is reported.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::DecodeSettings;
use crate::model::TsSource;

/// Reads a payload timestamp; falls back to `received_at` and says why.
pub fn timestamp(
    v: Option<&Value>,
    received_at: DateTime<Utc>,
    settings: &DecodeSettings,
) -> (DateTime<Utc>, TsSource) {
    let parsed = match v {
        None | Some(Value::Null) => return (received_at, TsSource::Missing),
        Some(Value::String(s)) => parse_iso(s.trim(), settings.naive_timezone),
        Some(Value::Number(n)) => n.as_f64().and_then(parse_epoch),
        Some(_) => None,
    };
    match parsed {
        None => (received_at, TsSource::Unparsable),
        Some(ts) if (ts - received_at).abs() > settings.max_clock_skew => {
            (received_at, TsSource::Skewed)
        }
        Some(ts) => (ts, TsSource::Payload),
    }
}

fn parse_iso(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            // A local time skipped by a DST change has no instant; `earliest` picks the
            // first of two in a repeated hour.
            return tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|dt| dt.with_timezone(&Utc));
        }
    }
    None
}

/// Epoch seconds, or milliseconds when the number is too large to be seconds.
fn parse_epoch(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let millis = if n >= 1e11 { n } else { n * 1000.0 };
    if millis > 1e15 {
        return None;
    }
    DateTime::from_timestamp_millis(millis as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let now: DateTime<Utc> = "2026-11-22T09:30:00Z".parse().unwrap();
        let o = DecodeSettings {
            naive_timezone: "Europe/Berlin".parse().unwrap(),
            ..DecodeSettings::default()
        };
        let at = |v: Value| timestamp(Some(&v), now, &o);
        let expect: DateTime<Utc> = "2026-11-22T08:27:50Z".parse().unwrap();
        assert_eq!(
            at(Value::from("2026-11-22T09:27:50")),
            (expect, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from("2026-11-22 09:27:50")),
            (expect, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from("2026-11-22T08:27:50Z")),
            (expect, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from(expect.timestamp())),
            (expect, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from(expect.timestamp_millis())),
            (expect, TsSource::Payload)
        );
        assert_eq!(at(Value::from("yesterday")).1, TsSource::Unparsable);
        assert_eq!(at(Value::from("1970-01-01T00:00:00Z")).1, TsSource::Skewed);
        assert_eq!(at(Value::from(true)).1, TsSource::Unparsable);
        assert_eq!(timestamp(None, now, &o), (now, TsSource::Missing));
    }
}
