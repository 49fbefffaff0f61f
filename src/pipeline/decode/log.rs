//! `log` routes (`tonypi/logs/{rid}`, `devices/{id}/logs`): one log row per object; device
//! logs may also be an array of objects. Category `robot_<source>` unless the route
//! sets one; the fields that are not level, message or source are kept as `details`.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::json::str_field;
use super::tree::{Json, Object};
use super::{DecodeSettings, Message, robot_id, timestamp};
use crate::model::{Decoded, LogRow, Reason, Unusable};
use crate::pipeline::route::Route;

/// Fields that become columns of the log row rather than `details`.
const COLUMNS: [&str; 7] = [
    "level",
    "severity",
    "message",
    "msg",
    "source",
    "robot_id",
    "timestamp",
];

pub(super) fn decode(msg: &Message, out: &mut Decoded) {
    let row = log_row(
        msg.route,
        msg.obj,
        &out.robot_id,
        out.ts,
        msg.fingerprint(),
        0,
    );
    out.logs.push(row);
}

/// An array of log objects: the robot id and the message time come from the first.
pub(super) fn decode_array(
    route: &Route,
    topic: &str,
    items: &[Json],
    received_at: DateTime<Utc>,
    settings: &DecodeSettings,
    fingerprint: i64,
) -> Result<Decoded, Unusable> {
    let Some(Json::Object(first)) = items.first() else {
        return Err(Unusable::new(
            Reason::NotObject,
            "log array must hold at least one object",
        ));
    };
    if items.iter().any(|v| v.as_object().is_none()) {
        return Err(Unusable::new(
            Reason::NotObject,
            "every element of a log array must be an object",
        ));
    }
    let robot_id = robot_id(route, topic, first)?;
    let (ts, ts_source) = timestamp(first.get("timestamp"), received_at, settings);
    let mut out = Decoded::empty(robot_id, ts, ts_source);
    for (i, obj) in items.iter().filter_map(Json::as_object).enumerate() {
        let (item_ts, _) = timestamp(obj.get("timestamp"), received_at, settings);
        let row = log_row(route, obj, &out.robot_id, item_ts, fingerprint, i);
        out.logs.push(row);
    }
    Ok(out)
}

fn log_row(
    route: &Route,
    obj: &Object,
    robot_id: &str,
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
    let details = obj.to_map(&COLUMNS);
    LogRow {
        robot_id: Some(robot_id.to_string()),
        ts,
        level,
        category,
        source,
        message,
        details: (!details.is_empty()).then_some(Value::Object(details)),
        dedup_key: fingerprint.wrapping_add(index as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::run;
    use crate::model::Reason;

    #[test]
    fn single_and_array_logs() {
        let d = run(
            "tonypi/logs/tonypi_1",
            r#"{"level":"warning","message":"low battery","source":"power","extra":1}"#,
        )
        .unwrap();
        assert_eq!(d.logs[0].category, "robot_power");
        assert_eq!(d.logs[0].level, "WARNING");
        assert_eq!(d.logs[0].details, Some(serde_json::json!({"extra": 1})));
        let d = run(
            "devices/gw-1/logs",
            r#"[{"level":"info","message":"a"},{"level":"error","message":"b"}]"#,
        )
        .unwrap();
        assert_eq!(d.logs.len(), 2);
        assert_ne!(d.logs[0].dedup_key, d.logs[1].dedup_key);
        assert_eq!(
            run("devices/gw-1/logs", "[]").unwrap_err().reason,
            Reason::NotObject
        );
        assert_eq!(
            run("devices/gw-1/logs", r#"[{"message":"a"}, 3]"#)
                .unwrap_err()
                .reason,
            Reason::NotObject
        );
    }
}
