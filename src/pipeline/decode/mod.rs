//! Pure decoding: `(route, topic, payload, receive time) -> Decoded`, or the reason the
//! message cannot be used. No I/O, no panics on any input; property-tested below,
//! fuzzed (`fuzz/`) and exercised by the captured TonyPi traffic.
//!
//! [`decode`] does what every message needs (size, UTF-8, JSON, robot id, timestamp)
//! and then hands the payload object to the decoder of its route kind, one file each:
//! `status`, `sensor`, `telemetry`, `vision`, `job`, `log`, `scan`, `response`.
//! Shared helpers: `tree` (the parsed payload, borrowing from it), `time` (timestamps)
//! and `json` (numeric leaves, drifting names).
//!
//! Payload rules (README, "Topics"): robot id from the topic where the route says so, else from
//! `robot_id`; numeric leaves become metrics, booleans 0/1, strings and arrays are not
//! metrics.

mod job;
mod json;
mod log;
mod response;
mod scan;
mod sensor;
mod status;
mod telemetry;
mod time;
mod tree;
mod vision;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::route::Route;
use crate::auth::access::may_write_for;
use crate::config::{IdentityConfig, IngestConfig, RobotIdSource, RouteKind};
use crate::model::{Decoded, LogRow, Reason, Unusable, message_fingerprint, valid_robot_id};
use tree::{Json, Object};

pub use time::timestamp;

/// Settings decode needs, resolved once from `ingest` and `robots.identity`.
#[derive(Debug, Clone)]
pub struct DecodeSettings {
    pub naive_timezone: Tz,
    pub max_clock_skew: chrono::Duration,
    pub max_payload_bytes: usize,
    /// Usernames that may publish for any robot (`robots.identity.gateways`).
    pub identity_gateways: Vec<String>,
}

impl Default for DecodeSettings {
    fn default() -> Self {
        Self {
            naive_timezone: Tz::UTC,
            max_clock_skew: chrono::Duration::hours(24),
            max_payload_bytes: 256 * 1024,
            identity_gateways: Vec::new(),
        }
    }
}

/// Why `IngestConfig` cannot be turned into decode settings (validation catches both
/// first; this is the typed edge for callers that skipped it).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("ingest.naive_timezone {0:?} is not an IANA zone")]
    Timezone(String),
    #[error("ingest.max_clock_skew is too large")]
    Skew,
}

impl DecodeSettings {
    pub fn from_config(
        cfg: &IngestConfig,
        identity: &IdentityConfig,
    ) -> Result<Self, SettingsError> {
        Ok(Self {
            naive_timezone: cfg
                .naive_timezone
                .parse()
                .map_err(|_| SettingsError::Timezone(cfg.naive_timezone.clone()))?,
            max_clock_skew: chrono::Duration::from_std(cfg.max_clock_skew)
                .map_err(|_| SettingsError::Skew)?,
            max_payload_bytes: cfg.max_payload_bytes,
            identity_gateways: identity.gateways.clone(),
        })
    }
}

/// With an authenticated publisher, a robot id taken from the payload must be one the
/// publisher may write for (`auth::access::may_write_for`): no broker-side ACL can see
/// inside a payload, so a robot could otherwise write under another robot's id on
/// `tonypi/battery` or `tonypi/location`. Topic-level ids are the broker ACL's job.
pub fn check_identity(
    route: &Route,
    decoded: &Decoded,
    publisher: Option<&str>,
    settings: &DecodeSettings,
) -> Result<(), Unusable> {
    let Some(user) = publisher else {
        return Ok(());
    };
    if route.robot_id != RobotIdSource::Payload
        || may_write_for(user, &decoded.robot_id, &settings.identity_gateways)
    {
        return Ok(());
    }
    let claimed: String = decoded.robot_id.chars().take(64).collect();
    Err(Unusable::new(
        Reason::IdentityMismatch,
        format!(
            "client logged in as {user:?} sent robot_id {claimed:?}; a robot may only write its own data (robots.identity.gateways lists usernames that may write for any robot)"
        ),
    ))
}

/// One message being decoded: what every route kind's decoder reads.
struct Message<'a> {
    route: &'a Route,
    obj: &'a Object<'a>,
    topic: &'a str,
    payload: &'a [u8],
    received_at: DateTime<Utc>,
    settings: &'a DecodeSettings,
}

impl Message<'_> {
    /// Identifies the message across redeliveries (log rows' dedup key); computed
    /// only for messages that make log rows (it reads the whole payload).
    fn fingerprint(&self) -> i64 {
        message_fingerprint(self.topic, self.payload)
    }

    /// A log row about this message: its robot and time, the whole payload as details,
    /// keyed by the message's fingerprint (a redelivery adds no second row).
    fn log_row(
        &self,
        out: &Decoded,
        level: &str,
        category: String,
        source: String,
        message: String,
    ) -> LogRow {
        LogRow {
            robot_id: Some(out.robot_id.clone()),
            ts: out.ts,
            level: level.into(),
            category,
            source: Some(source),
            message,
            details: Some(Value::Object(self.obj.to_map(&[]))),
            dedup_key: self.fingerprint(),
        }
    }
}

/// Decodes one message. Never panics; any input that cannot be used is `Err`.
pub fn decode(
    route: &Route,
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
    settings: &DecodeSettings,
) -> Result<Decoded, Unusable> {
    if payload.len() > settings.max_payload_bytes {
        return Err(Unusable::new(
            Reason::TooLarge,
            format!(
                "payload is {} bytes, limit is {} (ingest.max_payload_bytes)",
                payload.len(),
                settings.max_payload_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Unusable::new(Reason::InvalidUtf8, format!("payload is not UTF-8: {e}")))?;
    // serde_json refuses nesting of 128 levels or more, NaN and out-of-range numbers.
    let value: Json = serde_json::from_str(text)
        .map_err(|e| Unusable::new(Reason::NotJson, format!("payload is not JSON: {e}")))?;

    // Log routes also take an array of log objects (README, "Topics": device logs).
    if route.kind == RouteKind::Log
        && let Json::Array(items) = &value
    {
        let fingerprint = message_fingerprint(topic, payload);
        return log::decode_array(route, topic, items, received_at, settings, fingerprint);
    }
    let Json::Object(obj) = &value else {
        return Err(Unusable::new(
            Reason::NotObject,
            format!(
                "payload is JSON {}, expected an object",
                json::json_type(&value)
            ),
        ));
    };
    let robot_id = robot_id(route, topic, obj)?;
    let (ts, ts_source) = timestamp(obj.get("timestamp"), received_at, settings);
    let mut out = Decoded::empty(robot_id, ts, ts_source);
    let msg = Message {
        route,
        obj,
        topic,
        payload,
        received_at,
        settings,
    };
    match route.kind {
        RouteKind::Status => status::decode(&msg, &mut out),
        RouteKind::Sensor => sensor::decode(&msg, &mut out)?,
        RouteKind::Telemetry => telemetry::decode(&msg, &mut out),
        RouteKind::Vision => vision::decode(&msg, &mut out),
        RouteKind::Job => job::decode(&msg, &mut out)?,
        RouteKind::Log => log::decode(&msg, &mut out),
        RouteKind::Scan => scan::decode(&msg, &mut out),
        RouteKind::Response => response::decode(&msg, &mut out),
    }
    Ok(out)
}

/// The robot id from the topic level or the payload, as the route says; validated.
fn robot_id(route: &Route, topic: &str, obj: &Object) -> Result<String, Unusable> {
    let id = match route.robot_id {
        RobotIdSource::TopicLevel(n) => topic.split('/').nth(n).map(str::to_string),
        RobotIdSource::Payload => match obj.get("robot_id") {
            Some(Json::String(s)) => Some(s.to_string()),
            Some(Json::Number(n)) => Some(n.to_string()),
            _ => None,
        },
    };
    let Some(id) = id.filter(|s| !s.is_empty()) else {
        return Err(Unusable::new(
            Reason::MissingRobotId,
            format!(
                "no robot id: route {} reads it from the payload's robot_id",
                route.filter
            ),
        ));
    };
    if !valid_robot_id(&id) {
        let shown: String = id.chars().take(64).collect();
        return Err(Unusable::new(
            Reason::InvalidRobotId,
            format!("robot id {shown:?} is not [A-Za-z0-9_.:-]{{1,128}}"),
        ));
    }
    Ok(id)
}

/// Test support for the per-kind decoders: the default routes, a fixed receive time.
#[cfg(test)]
pub(super) mod testing {
    use super::*;
    use crate::config::routes_default;
    use crate::pipeline::route::Router;

    pub fn router() -> Router {
        Router::new(&routes_default()).unwrap()
    }

    pub fn now() -> DateTime<Utc> {
        "2026-11-22T09:30:00Z".parse().unwrap()
    }

    /// Decodes `payload` as if received on `topic` at [`now`], default settings.
    pub fn run(topic: &str, payload: &str) -> Result<Decoded, Unusable> {
        let r = router();
        let route = r.find(topic).unwrap().clone();
        decode(
            &route,
            topic,
            payload.as_bytes(),
            now(),
            &DecodeSettings::default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::testing::{now, router, run};
    use super::*;
    use crate::config::routes_default;
    use crate::model::TsSource;

    #[test]
    fn every_fixture_decodes() {
        let r = router();
        let fixtures = crate::testing::fixtures();
        for (topic, payload) in &fixtures {
            let route = r
                .find(topic)
                .unwrap_or_else(|| panic!("no route for {topic}"));
            let d = decode(route, topic, payload, now(), &DecodeSettings::default())
                .unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert!(d.robot_id.starts_with("tonypi_"), "{topic}");
            assert_eq!(d.ts_source, TsSource::Payload, "{topic}");
        }
        assert_eq!(fixtures.len(), 130);
    }

    #[test]
    fn unusable_inputs_have_reasons() {
        let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
            ("tonypi/status/r1", b"not json".to_vec(), Reason::NotJson),
            ("tonypi/status/r1", b"[1,2]".to_vec(), Reason::NotObject),
            (
                "tonypi/battery",
                br#"{"percentage":1}"#.to_vec(),
                Reason::MissingRobotId,
            ),
            (
                "tonypi/status/r1",
                vec![b'{', 0xff, 0xfe, b'}'],
                Reason::InvalidUtf8,
            ),
            ("tonypi/status/r1", vec![b' '; 300 * 1024], Reason::TooLarge),
            (
                "tonypi/status/r1",
                "[".repeat(10_000).into_bytes(),
                Reason::NotJson,
            ),
            (
                "tonypi/status/r1",
                br#"{"x": NaN}"#.to_vec(),
                Reason::NotJson,
            ),
            (
                "tonypi/status/r1",
                br#"{"x": 1e400}"#.to_vec(),
                Reason::NotJson,
            ),
            (
                "tonypi/battery",
                br#"{"robot_id":"x'; DROP TABLE robots;--","v":1}"#.to_vec(),
                Reason::InvalidRobotId,
            ),
            (
                "tonypi/sensors/r1",
                br#"{"sensor_type":"t","value":"hot"}"#.to_vec(),
                Reason::InvalidValue,
            ),
        ];
        let r = router();
        for (topic, payload, reason) in cases {
            let route = r.find(topic).unwrap();
            let e = decode(route, topic, &payload, now(), &DecodeSettings::default()).unwrap_err();
            assert_eq!(e.reason, reason, "{topic}: {e}");
        }
    }

    #[test]
    fn numeric_robot_ids_in_the_payload_are_text() {
        let d = run("tonypi/battery", r#"{"robot_id":42,"percentage":1}"#).unwrap();
        assert_eq!(d.robot_id, "42");
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(payload in proptest::collection::vec(any::<u8>(), 0..512), idx in 0usize..15) {
            let routes = routes_default();
            let route = Route::compile(&routes[idx]).unwrap();
            let topic = route.filter.as_str().replace('+', "r1");
            let _ = decode(&route, &topic, &payload, now(), &DecodeSettings::default());
        }

        #[test]
        fn never_panics_on_json(v in arb_json(), idx in 0usize..15) {
            let routes = routes_default();
            let route = Route::compile(&routes[idx]).unwrap();
            let topic = route.filter.as_str().replace('+', "r1");
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(d) = decode(&route, &topic, &bytes, now(), &DecodeSettings::default()) {
                prop_assert!(valid_robot_id(&d.robot_id));
                prop_assert!(d.metrics.iter().all(|m| m.value.is_finite()));
            }
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z_ :.'-]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("robot_id".to_string()),
                        Just("timestamp".to_string()),
                        Just("status".to_string()),
                        Just("value".to_string()),
                        "[a-z_]{1,8}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
