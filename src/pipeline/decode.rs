//! Pure decoding: `(route, topic, payload, receive time) -> records`, or the reason the
//! message cannot be used. No I/O, no panics on any input; property-tested below and
//! exercised by the TonyPi fixtures.
//!
//! Payload rules (SPEC §3.2): robot id from the topic where the route says so, else from
//! `robot_id`; `timestamp` as ISO 8601 with or without offset, or epoch s/ms, replaced
//! by the receive time when missing, unparsable or too far off; numeric leaves become
//! metrics, booleans 0/1, strings and arrays are not metrics.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::message_fingerprint;
use super::route::{RobotIdSource, Route};
use crate::config::RouteKind;

/// Settings decode needs, resolved once from `IngestConfig`.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub naive_timezone: Tz,
    pub max_clock_skew: chrono::Duration,
    pub max_payload_bytes: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            naive_timezone: Tz::UTC,
            max_clock_skew: chrono::Duration::hours(24),
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// Why a message is unusable. The label is a metric label; keep the set small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    InvalidUtf8,
    NotJson,
    NotObject,
    MissingRobotId,
    InvalidRobotId,
    InvalidValue,
    NoRoute,
    RejectedByDatabase,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingRobotId => "missing_robot_id",
            Reason::InvalidRobotId => "invalid_robot_id",
            Reason::InvalidValue => "invalid_value",
            Reason::NoRoute => "no_route",
            Reason::RejectedByDatabase => "rejected_by_database",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unusable {
    pub reason: Reason,
    pub detail: String,
}

impl Unusable {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.label(), self.detail)
    }
}

/// How the record's timestamp was obtained; anything but `Payload` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsSource {
    Payload,
    Missing,
    Unparsable,
    Skewed,
}

impl TsSource {
    pub fn label(self) -> &'static str {
        match self {
            TsSource::Payload => "payload",
            TsSource::Missing => "missing",
            TsSource::Unparsable => "unparsable",
            TsSource::Skewed => "skewed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub robot_id: String,
    pub ts: DateTime<Utc>,
    pub name: String,
    pub value: f64,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub robot_id: Option<String>,
    pub ts: DateTime<Utc>,
    pub level: String,
    pub category: String,
    pub source: Option<String>,
    pub message: String,
    pub details: Option<Value>,
    /// Unique with `ts`: a redelivered message does not add a second row.
    pub dedup_key: i64,
}

/// What a status message says about the robot itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RobotState {
    pub status: Option<String>,
    pub ip_address: Option<String>,
    pub camera_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Start,
    Progress,
    Complete,
    Cancel,
    Fail,
}

/// One job event (SPEC §4.3); applied per robot in receive order by the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub action: JobAction,
    pub ts: DateTime<Utc>,
    /// The job's own start time when the payload says (`start_time`).
    pub start_time: Option<DateTime<Utc>>,
    pub task_name: Option<String>,
    pub phase: Option<String>,
    pub percent: Option<f64>,
    pub items_done: Option<i64>,
    pub items_total: Option<i64>,
    pub elapsed: Option<f64>,
    pub estimated: Option<f64>,
    pub action_duration: Option<f64>,
    pub success: Option<bool>,
    pub reason: Option<String>,
    pub last_item: Option<Value>,
}

/// Everything one message produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub robot_id: String,
    /// The message's own time (payload or receive time).
    pub ts: DateTime<Utc>,
    pub ts_source: TsSource,
    pub metrics: Vec<MetricRow>,
    pub logs: Vec<LogRow>,
    pub state: Option<RobotState>,
    pub job: Option<JobEvent>,
    /// A scanned item, recorded as the active job's `last_item`.
    pub scan: Option<Value>,
}

impl Decoded {
    pub fn row_count(&self) -> usize {
        self.metrics.len() + self.logs.len() + 1
    }
}

/// Decodes one message. Never panics; any input that cannot be used is `Err`.
pub fn decode(
    route: &Route,
    topic: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
    opts: &DecodeOptions,
) -> Result<Decoded, Unusable> {
    if payload.len() > opts.max_payload_bytes {
        return Err(Unusable::new(
            Reason::TooLarge,
            format!(
                "payload is {} bytes, limit is {} (ingest.max_payload_bytes)",
                payload.len(),
                opts.max_payload_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| Unusable::new(Reason::InvalidUtf8, format!("payload is not UTF-8: {e}")))?;
    // serde_json caps nesting at 128 levels and rejects NaN and out-of-range numbers.
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Unusable::new(Reason::NotJson, format!("payload is not JSON: {e}")))?;

    let fingerprint = message_fingerprint(topic, payload);
    // Log routes also take an array of log objects (SPEC §3.3).
    if route.kind == RouteKind::Log
        && let Value::Array(items) = &value
    {
        return decode_log_array(route, topic, items, received_at, opts, fingerprint);
    }
    let Value::Object(obj) = value else {
        return Err(Unusable::new(
            Reason::NotObject,
            format!("payload is JSON {}, expected an object", json_type(&value)),
        ));
    };
    let robot_id = robot_id(route, topic, &obj)?;
    let (ts, ts_source) = timestamp(obj.get("timestamp"), received_at, opts);
    let mut out = Decoded {
        robot_id,
        ts,
        ts_source,
        metrics: Vec::new(),
        logs: Vec::new(),
        state: None,
        job: None,
        scan: None,
    };
    match route.kind {
        RouteKind::Status => decode_status(route, &obj, &mut out),
        RouteKind::Sensor => decode_sensor(route, &obj, &mut out)?,
        RouteKind::Telemetry => {
            let prefix = route.metric_prefix.clone().unwrap_or_default();
            flatten_numbers(&obj, &prefix, &mut |name, value| {
                out.metrics
                    .push(metric(&out.robot_id, ts, name, value, None));
            });
        }
        RouteKind::Vision => decode_vision(route, &obj, &mut out, fingerprint),
        RouteKind::Job => out.job = Some(decode_job(&obj, ts, received_at, opts)?),
        RouteKind::Log => {
            let log = log_from_object(route, &obj, Some(&out.robot_id), ts, fingerprint, 0);
            out.logs.push(log);
        }
        RouteKind::Scan => decode_scan(&obj, &mut out, fingerprint),
        RouteKind::Response => decode_response(route, &obj, &mut out, fingerprint),
    }
    Ok(out)
}

fn decode_log_array(
    route: &Route,
    topic: &str,
    items: &[Value],
    received_at: DateTime<Utc>,
    opts: &DecodeOptions,
    fingerprint: i64,
) -> Result<Decoded, Unusable> {
    let Some(Value::Object(first)) = items.first() else {
        return Err(Unusable::new(
            Reason::NotObject,
            "log array must hold at least one object",
        ));
    };
    if items.iter().any(|v| !v.is_object()) {
        return Err(Unusable::new(
            Reason::NotObject,
            "every element of a log array must be an object",
        ));
    }
    let robot_id = robot_id(route, topic, first)?;
    let (ts, ts_source) = timestamp(first.get("timestamp"), received_at, opts);
    let mut logs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Value::Object(obj) = item {
            let (item_ts, _) = timestamp(obj.get("timestamp"), received_at, opts);
            logs.push(log_from_object(
                route,
                obj,
                Some(&robot_id),
                item_ts,
                fingerprint,
                i,
            ));
        }
    }
    Ok(Decoded {
        robot_id,
        ts,
        ts_source,
        metrics: Vec::new(),
        logs,
        state: None,
        job: None,
        scan: None,
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `[A-Za-z0-9_.:-]{1,128}`.
pub fn valid_robot_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

fn robot_id(route: &Route, topic: &str, obj: &Map<String, Value>) -> Result<String, Unusable> {
    let id = match route.robot_id {
        RobotIdSource::TopicLevel(n) => topic.split('/').nth(n).map(str::to_string),
        RobotIdSource::Payload => match obj.get("robot_id") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
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

/// Reads a payload timestamp; falls back to `received_at` and says why.
pub fn timestamp(
    v: Option<&Value>,
    received_at: DateTime<Utc>,
    opts: &DecodeOptions,
) -> (DateTime<Utc>, TsSource) {
    let parsed = match v {
        None | Some(Value::Null) => return (received_at, TsSource::Missing),
        Some(Value::String(s)) => parse_iso(s.trim(), opts.naive_timezone),
        Some(Value::Number(n)) => n.as_f64().and_then(parse_epoch),
        Some(_) => None,
    };
    match parsed {
        None => (received_at, TsSource::Unparsable),
        Some(ts) if (ts - received_at).abs() > opts.max_clock_skew => {
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

/// Fields that identify the message rather than measure anything.
const NOT_METRICS: [&str; 2] = ["robot_id", "timestamp"];

/// Calls `emit(name, value)` for every numeric or boolean leaf, in document order.
/// Arrays and strings are skipped. Depth is bounded by serde_json's nesting limit.
fn flatten_numbers(obj: &Map<String, Value>, prefix: &str, emit: &mut dyn FnMut(String, f64)) {
    for (k, v) in obj {
        if prefix.is_empty() && NOT_METRICS.contains(&k.as_str()) {
            continue;
        }
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten_numbers(inner, &name, emit),
            other => {
                if let Some(x) = number(other) {
                    emit(name, x);
                }
            }
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn metric(
    robot_id: &str,
    ts: DateTime<Utc>,
    name: String,
    value: f64,
    unit: Option<String>,
) -> MetricRow {
    MetricRow {
        robot_id: robot_id.to_string(),
        ts,
        name,
        value,
        unit,
    }
}

fn str_field(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(*k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn num_field(obj: &Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| obj.get(*k).and_then(number))
}

fn decode_status(route: &Route, obj: &Map<String, Value>, out: &mut Decoded) {
    let prefix = route
        .metric_prefix
        .clone()
        .unwrap_or_else(|| "system_info".into());
    if let Some(Value::Object(info)) = obj.get("system_info") {
        flatten_numbers(info, &prefix, &mut |name, value| {
            out.metrics
                .push(metric(&out.robot_id, out.ts, name, value, None));
        });
    }
    let emergency = obj.get("emergency_stopped").and_then(Value::as_bool) == Some(true);
    let status = str_field(obj, &["status"])
        .map(|s| s.to_ascii_lowercase())
        .or_else(|| emergency.then(|| "emergency_stopped".to_string()));
    out.state = Some(RobotState {
        status,
        ip_address: str_field(obj, &["ip_address", "ip"]),
        camera_url: str_field(obj, &["camera_url"]),
    });
    // The status-change log row is written by the sink, which knows the previous status.
}

fn decode_sensor(
    route: &Route,
    obj: &Map<String, Value>,
    out: &mut Decoded,
) -> Result<(), Unusable> {
    let Some(name) = str_field(obj, &["sensor_type", "sensor", "name"]) else {
        return Err(Unusable::new(
            Reason::InvalidValue,
            "sensor reading without sensor_type",
        ));
    };
    let Some(value) = obj.get("value").and_then(number) else {
        return Err(Unusable::new(
            Reason::InvalidValue,
            format!("sensor {name:?}: value is missing or not a number"),
        ));
    };
    let name = match &route.metric_prefix {
        Some(p) => format!("{p}.{name}"),
        None => name,
    };
    let unit = str_field(obj, &["unit"]);
    out.metrics
        .push(metric(&out.robot_id, out.ts, name, value, unit));
    Ok(())
}

fn decode_vision(route: &Route, obj: &Map<String, Value>, out: &mut Decoded, fingerprint: i64) {
    let prefix = route.metric_prefix.clone().unwrap_or_default();
    flatten_numbers(obj, &prefix, &mut |name, value| {
        out.metrics
            .push(metric(&out.robot_id, out.ts, name, value, None));
    });
    if obj.get("detection").and_then(Value::as_bool) == Some(true) {
        let label = str_field(obj, &["label"]).unwrap_or_else(|| "object".into());
        let message = match num_field(obj, &["confidence"]) {
            Some(c) => format!("detected {label} (confidence {c:.2})"),
            None => format!("detected {label}"),
        };
        out.logs.push(LogRow {
            robot_id: Some(out.robot_id.clone()),
            ts: out.ts,
            level: "INFO".into(),
            category: route.category.clone().unwrap_or_else(|| "vision".into()),
            source: Some("vision".into()),
            message,
            details: Some(Value::Object(obj.clone())),
            dedup_key: fingerprint,
        });
    }
}

fn decode_scan(obj: &Map<String, Value>, out: &mut Decoded, fingerprint: i64) {
    let qr = str_field(obj, &["qr", "qr_data", "qr_code"]);
    let station = str_field(obj, &["station", "station_name"]);
    let message = match (&qr, &station) {
        (Some(q), Some(s)) => format!("scanned {q} at {s}"),
        (Some(q), None) => format!("scanned {q}"),
        (None, Some(s)) => format!("scan at {s}"),
        (None, None) => "scan".to_string(),
    };
    let mut item = Map::new();
    if let Some(q) = qr {
        item.insert("qr".into(), Value::String(q));
    }
    if let Some(s) = station {
        item.insert("station".into(), Value::String(s));
    }
    item.insert("timestamp".into(), Value::String(out.ts.to_rfc3339()));
    out.scan = Some(Value::Object(item));
    out.logs.push(LogRow {
        robot_id: Some(out.robot_id.clone()),
        ts: out.ts,
        level: "INFO".into(),
        category: "scan".into(),
        source: Some("scanner".into()),
        message,
        details: Some(Value::Object(obj.clone())),
        dedup_key: fingerprint,
    });
}

fn decode_response(route: &Route, obj: &Map<String, Value>, out: &mut Decoded, fingerprint: i64) {
    let category = route.category.clone().unwrap_or_else(|| "command".into());
    let success = obj.get("success").and_then(Value::as_bool);
    let kind = str_field(obj, &["type", "command"]).unwrap_or_else(|| category.clone());
    let message = str_field(obj, &["message", "reason"]).unwrap_or_else(|| match success {
        Some(true) => format!("{kind} succeeded"),
        Some(false) => format!("{kind} failed"),
        None => format!("{kind} response"),
    });
    out.logs.push(LogRow {
        robot_id: Some(out.robot_id.clone()),
        ts: out.ts,
        level: if success == Some(false) {
            "ERROR"
        } else {
            "INFO"
        }
        .into(),
        category,
        source: Some(kind),
        message,
        details: Some(Value::Object(obj.clone())),
        dedup_key: fingerprint,
    });
}

fn log_from_object(
    route: &Route,
    obj: &Map<String, Value>,
    robot_id: Option<&str>,
    ts: DateTime<Utc>,
    fingerprint: i64,
    index: usize,
) -> LogRow {
    let source = str_field(obj, &["source"]);
    let category = route.category.clone().unwrap_or_else(|| match &source {
        Some(s) => format!("robot_{s}"),
        None => "robot".to_string(),
    });
    let level = str_field(obj, &["level", "severity"])
        .map(|l| l.to_ascii_uppercase())
        .unwrap_or_else(|| "INFO".into());
    let message = str_field(obj, &["message", "msg"]).unwrap_or_default();
    let mut details = obj.clone();
    for k in [
        "level",
        "severity",
        "message",
        "msg",
        "source",
        "robot_id",
        "timestamp",
    ] {
        details.remove(k);
    }
    LogRow {
        robot_id: robot_id.map(str::to_string),
        ts,
        level,
        category,
        source,
        message,
        details: (!details.is_empty()).then_some(Value::Object(details)),
        dedup_key: fingerprint.wrapping_add(index as i64),
    }
}

fn decode_job(
    obj: &Map<String, Value>,
    ts: DateTime<Utc>,
    received_at: DateTime<Utc>,
    opts: &DecodeOptions,
) -> Result<JobEvent, Unusable> {
    let status = str_field(obj, &["status", "event"])
        .unwrap_or_default()
        .to_ascii_lowercase();
    let action = match status.as_str() {
        "started" | "start" => JobAction::Start,
        "in_progress" | "working" | "active" | "progress" => JobAction::Progress,
        "completed" | "done" | "complete" => JobAction::Complete,
        "cancelled" | "canceled" | "stopped" | "cancel" => JobAction::Cancel,
        "failed" | "fail" | "error" => JobAction::Fail,
        "" => {
            return Err(Unusable::new(
                Reason::InvalidValue,
                "job event without status",
            ));
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Unusable::new(
                Reason::InvalidValue,
                format!("unknown job status {shown:?}"),
            ));
        }
    };
    let int = |keys: &[&str]| num_field(obj, keys).map(|x| x as i64);
    let items_done = int(&["items_done"]);
    let items_total = int(&["items_total"]);
    let elapsed = num_field(obj, &["elapsed_time"]);
    let estimated = num_field(obj, &["estimated_duration"]);
    // Percent: as sent, else items done of total, else time elapsed of estimated.
    let percent = num_field(obj, &["progress_percent", "percent"])
        .or_else(|| match (items_done, items_total) {
            (Some(d), Some(t)) if t > 0 => Some(d as f64 * 100.0 / t as f64),
            _ => None,
        })
        .or_else(|| match (elapsed, estimated) {
            (Some(e), Some(t)) if t > 0.0 => Some((e * 100.0 / t).min(100.0)),
            _ => None,
        })
        .or((action == JobAction::Complete).then_some(100.0));
    let start_time = match obj.get("start_time") {
        Some(v) => match timestamp(Some(v), received_at, opts) {
            (t, TsSource::Payload) => Some(t),
            _ => None,
        },
        None => None,
    };
    let success = obj
        .get("success")
        .and_then(Value::as_bool)
        .or(match action {
            JobAction::Complete => Some(true),
            JobAction::Fail => Some(false),
            _ => None,
        });
    Ok(JobEvent {
        action,
        ts,
        start_time,
        task_name: str_field(obj, &["task_name", "task", "job_name"]),
        phase: str_field(obj, &["phase"]),
        percent,
        items_done,
        items_total,
        elapsed,
        estimated,
        action_duration: num_field(obj, &["action_duration"]),
        success,
        reason: str_field(obj, &["reason", "cancel_reason"]),
        last_item: obj.get("last_item").filter(|v| !v.is_null()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::routes_default;
    use crate::pipeline::route::Router;
    use proptest::prelude::*;

    fn router() -> Router {
        Router::new(&routes_default()).unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T09:30:00Z".parse().unwrap()
    }

    fn run(topic: &str, payload: &str) -> Result<Decoded, Unusable> {
        let r = router();
        let route = r.find(topic).unwrap().clone();
        decode(
            &route,
            topic,
            payload.as_bytes(),
            now(),
            &DecodeOptions::default(),
        )
    }

    #[test]
    fn every_fixture_decodes() {
        let text = include_str!("../../tests/fixtures/tonypi-simulator-samples.jsonl");
        let r = router();
        let mut n = 0;
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let topic = v["topic"].as_str().unwrap();
            let payload = v["payload"].as_str().unwrap();
            let route = r
                .find(topic)
                .unwrap_or_else(|| panic!("no route for {topic}"));
            let d = decode(
                route,
                topic,
                payload.as_bytes(),
                now(),
                &DecodeOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert!(d.robot_id.starts_with("tonypi_"), "{topic}");
            assert_eq!(d.ts_source, TsSource::Payload, "{topic}: {payload}");
            n += 1;
        }
        assert_eq!(n, text.lines().count());
    }

    #[test]
    fn battery_takes_robot_id_from_payload_and_prefixes_metrics() {
        let d = run(
            "tonypi/battery",
            r#"{"robot_id": "tonypi_normal", "percentage": 73.3, "voltage": 11.64, "charging": false, "timestamp": "2026-11-22T09:27:50.174489"}"#,
        )
        .unwrap();
        assert_eq!(d.robot_id, "tonypi_normal");
        let mut names: Vec<_> = d
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.value))
            .collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(
            names,
            vec![
                ("battery.charging", 0.0),
                ("battery.percentage", 73.3),
                ("battery.voltage", 11.64)
            ]
        );
        // Naive time read in UTC by default.
        assert_eq!(
            d.ts,
            "2026-11-22T09:27:50.174489Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
    }

    #[test]
    fn status_yields_state_and_system_metrics() {
        let d = run(
            "tonypi/status/tonypi_1",
            r#"{"robot_id":"tonypi_1","status":"online","ip_address":"10.0.0.5","camera_url":"http://10.0.0.5:8080","system_info":{"cpu_percent":12.5,"memory_percent":40,"temperature":51.2,"hostname":"pi"},"timestamp":"2026-11-22T09:29:00+01:00"}"#,
        )
        .unwrap();
        let state = d.state.unwrap();
        assert_eq!(state.status.as_deref(), Some("online"));
        assert_eq!(state.ip_address.as_deref(), Some("10.0.0.5"));
        let names: Vec<_> = d.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "system_info.cpu_percent",
                "system_info.memory_percent",
                "system_info.temperature"
            ]
        );
        assert_eq!(
            d.ts,
            "2026-11-22T08:29:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn sensor_keeps_unit_in_unicode() {
        let d = run(
            "tonypi/sensors/tonypi_1",
            r#"{"sensor_type":"cpu_temperature","value":48.3,"unit":"°C","timestamp":1763803800}"#,
        )
        .unwrap();
        assert_eq!(d.metrics.len(), 1);
        assert_eq!(d.metrics[0].name, "cpu_temperature");
        assert_eq!(d.metrics[0].unit.as_deref(), Some("°C"));
        assert_eq!(
            d.ts_source,
            TsSource::Skewed,
            "2025 epoch is a year off the 2026 receive time"
        );
    }

    #[test]
    fn servo_leaves_flatten() {
        let d = run(
            "tonypi/servos/tonypi_1",
            r#"{"servos":{"servo_1":{"id":1,"name":"head","position":500,"temperature":41.0,"voltage":7.4,"torque_enabled":true}},"servo_count":1}"#,
        )
        .unwrap();
        let names: Vec<_> = d.metrics.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"servos.servo_1.temperature"));
        assert!(names.contains(&"servos.servo_1.torque_enabled"));
        assert!(!names.iter().any(|n| n.ends_with(".name")));
        assert_eq!(d.ts_source, TsSource::Missing);
        assert_eq!(d.ts, now());
    }

    #[test]
    fn job_field_drift_is_accepted() {
        let d = run(
            "tonypi/job/tonypi_1",
            r#"{"status":"working","percent":13.3,"items_done":2,"items_total":15,"history":[1,2]}"#,
        )
        .unwrap();
        let job = d.job.unwrap();
        assert_eq!(job.action, JobAction::Progress);
        assert_eq!(job.percent, Some(13.3));
        let d = run(
            "tonypi/job/tonypi_1",
            r#"{"status":"canceled","cancel_reason":"battery low"}"#,
        )
        .unwrap();
        assert_eq!(d.job.unwrap().reason.as_deref(), Some("battery low"));
        let e = run("tonypi/job/tonypi_1", r#"{"status":"teleporting"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidValue);
    }

    #[test]
    fn logs_scan_and_responses() {
        let d = run(
            "tonypi/logs/tonypi_1",
            r#"{"level":"warning","message":"low battery","source":"power"}"#,
        )
        .unwrap();
        assert_eq!(d.logs[0].category, "robot_power");
        assert_eq!(d.logs[0].level, "WARNING");
        let d = run(
            "devices/gw-1/logs",
            r#"[{"level":"info","message":"a"},{"level":"error","message":"b"}]"#,
        )
        .unwrap();
        assert_eq!(d.logs.len(), 2);
        assert_ne!(d.logs[0].dedup_key, d.logs[1].dedup_key);
        let d = run(
            "tonypi/scan/tonypi_1",
            r#"{"qr_code":"QR1","station_name":"A"}"#,
        )
        .unwrap();
        assert_eq!(d.logs[0].message, "scanned QR1 at A");
        assert!(d.scan.is_some());
        let d = run(
            "tonypi/emergency_stop/response",
            r#"{"robot_id":"tonypi_1","success":false,"message":"servo fault"}"#,
        )
        .unwrap();
        assert_eq!(
            (d.logs[0].category.as_str(), d.logs[0].level.as_str()),
            ("emergency", "ERROR")
        );
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
            let e = decode(route, topic, &payload, now(), &DecodeOptions::default()).unwrap_err();
            assert_eq!(e.reason, reason, "{topic}: {e}");
        }
    }

    #[test]
    fn timestamps() {
        let o = DecodeOptions {
            naive_timezone: "Europe/Berlin".parse().unwrap(),
            ..DecodeOptions::default()
        };
        let at = |v: Value| timestamp(Some(&v), now(), &o);
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
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(payload in proptest::collection::vec(any::<u8>(), 0..512), idx in 0usize..15) {
            let routes = routes_default();
            let route = Route::compile(&routes[idx]).unwrap();
            let topic = route.filter.replace('+', "r1");
            let _ = decode(&route, &topic, &payload, now(), &DecodeOptions::default());
        }

        #[test]
        fn never_panics_on_json(v in arb_json(), idx in 0usize..15) {
            let routes = routes_default();
            let route = Route::compile(&routes[idx]).unwrap();
            let topic = route.filter.replace('+', "r1");
            let bytes = serde_json::to_vec(&v).unwrap();
            if let Ok(d) = decode(&route, &topic, &bytes, now(), &DecodeOptions::default()) {
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
