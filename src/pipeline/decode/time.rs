//! Payload timestamps: ISO 8601 with or without an offset (naive times are read in
//! `ingest.naive_timezone`), or epoch seconds / milliseconds. A missing, unparsable or
//! skewed timestamp is replaced by the receive time, and the reason is reported.

use std::sync::LazyLock;

use super::DecodeSettings;
use super::tree::Json;
use crate::model::TsSource;
use chrono::format::{self, Item, Parsed, StrftimeItems};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Reads a payload timestamp; falls back to `received_at` and says why.
pub fn timestamp(
    v: Option<&Json>,
    received_at: DateTime<Utc>,
    settings: &DecodeSettings,
) -> (DateTime<Utc>, TsSource) {
    let parsed = match v {
        None | Some(Json::Null) => return (received_at, TsSource::Missing),
        Some(Json::String(s)) => parse_iso(s.trim(), settings.naive_timezone),
        Some(Json::Number(n)) => n.as_f64().and_then(parse_epoch),
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

/// Formats tried after RFC 3339: naive ones (the local time in `ingest.naive_timezone`),
/// then ones with an offset in a form RFC 3339 does not take. No string matches one of
/// each (a naive format ends in digits of the time, an offset format needs the offset
/// after them), so trying the naive ones first — TonyPi's robots send naive times —
/// changes no result. Parsed once: chrono reads a format string on every call otherwise.
static NAIVE: LazyLock<[Vec<Item<'static>>; 3]> = LazyLock::new(|| {
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .map(|f| StrftimeItems::new(f).collect())
});
static WITH_OFFSET: LazyLock<[Vec<Item<'static>>; 3]> = LazyLock::new(|| {
    [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ]
    .map(|f| StrftimeItems::new(f).collect())
});

/// The fields of `s` read by `items`, if `s` is exactly that form.
fn fields(s: &str, items: &[Item<'static>]) -> Option<Parsed> {
    let mut p = Parsed::new();
    format::parse(&mut p, s, items.iter()).ok()?;
    Some(p)
}

fn parse_iso(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Some(naive) = NAIVE
        .iter()
        .find_map(|items| fields(s, items)?.to_naive_datetime_with_offset(0).ok())
    {
        // A local time skipped by a DST change has no instant; `earliest` picks the
        // first of two in a repeated hour.
        return tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|dt| dt.with_timezone(&Utc));
    }
    WITH_OFFSET
        .iter()
        .find_map(|items| fields(s, items)?.to_datetime().ok())
        .map(|dt| dt.with_timezone(&Utc))
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
    use serde_json::Value;

    use super::*;

    #[test]
    fn timestamps() {
        let now: DateTime<Utc> = "2026-11-22T09:30:00Z".parse().unwrap();
        let o = DecodeSettings {
            naive_timezone: "Europe/Berlin".parse().unwrap(),
            ..DecodeSettings::default()
        };
        let at = |v: Value| {
            let text = v.to_string();
            let v: Json = serde_json::from_str(&text).unwrap();
            timestamp(Some(&v), now, &o)
        };
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
        let half: DateTime<Utc> = "2026-11-22T08:27:50.5Z".parse().unwrap();
        assert_eq!(
            at(Value::from("2026-11-22T10:27:50.5+0200")),
            (half, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from("2026-11-22 09:27:50.500+01:00")),
            (half, TsSource::Payload)
        );
        assert_eq!(
            at(Value::from("2026-11-22T09:27:50.5")),
            (half, TsSource::Payload)
        );
    }

    /// The parser as it was before its formats were pre-parsed and reordered: the
    /// oracle for the property below.
    fn parse_iso_by_format_strings(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
        use chrono::NaiveDateTime;
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
                return tz
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|dt| dt.with_timezone(&Utc));
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn pre_parsed_formats_read_every_string_as_the_format_strings_did(
            s in "[0-9]{4}-[01][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-5][0-9](:[0-6][0-9](\\.[0-9]{0,10})?)?([Zz]|[+-][0-2][0-9]:?[0-5][0-9])?[ x]?"
        ) {
            let tz: Tz = "Europe/Berlin".parse().unwrap();
            proptest::prop_assert_eq!(parse_iso(&s, tz), parse_iso_by_format_strings(&s, tz), "{}", s);
        }
    }
}
