//! The read routes of the TonyPi backend's `robot_data` router that its UI's Sensors,
//! Servos, Monitoring and Jobs pages call (`backend/routers/robot_data.py`), answered
//! from PostgreSQL where TonyPi reads InfluxDB. TonyPi's measurements map onto
//! fleetsink's metric names: `battery` → `battery.*`, `location` → `location.*`,
//! `robot_status` → `system_info.*`, `servos` → `servos.*` (and `servo_count`),
//! `sensors` → the sensor readings (names without a dot). Current values come from
//! `metric_latest`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::Row;

use super::data::{Latest, latest_values};
use super::{AdminState, ApiError, check_robot_id};

/// TonyPi reads "the last 5 minutes" for current state.
const RECENT: Duration = Duration::minutes(5);
/// The most rows `sensors` answers.
const MAX_ROWS: i64 = 10_000;

/// The TonyPi measurement a metric belongs to, and its field name there.
fn measurement(name: &str) -> (&'static str, &str) {
    for (prefix, m) in [
        ("battery.", "battery"),
        ("location.", "location"),
        ("system_info.", "robot_status"),
        ("servos.", "servos"),
    ] {
        if let Some(field) = name.strip_prefix(prefix) {
            return (m, field);
        }
    }
    if name == "servo_count" {
        // The top-level count in a `tonypi/servos/{rid}` message.
        ("servos", name)
    } else if name.contains('.') {
        ("other", name)
    } else {
        ("sensors", name)
    }
}

/// `time_range` as TonyPi writes it: `30m`, `1h`, `24h`, `7d`.
fn time_range(s: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "time_range must be like 30m, 1h, 24h or 7d (at most 30d)",
        )
    };
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        _ => return Err(bad()),
    };
    if n <= 0 || d > Duration::days(30) {
        return Err(bad());
    }
    Ok(d)
}

#[derive(Debug, Deserialize)]
pub struct SensorsQuery {
    pub measurement: String,
    pub time_range: Option<String>,
    pub robot_id: Option<String>,
}

/// `GET /api/v1/robot-data/sensors?measurement=&time_range=1h&robot_id=`: the readings
/// of one measurement, newest first (at most 10,000).
pub async fn sensors(
    State(s): State<AdminState>,
    Query(q): Query<SensorsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let since = Utc::now() - time_range(q.time_range.as_deref().unwrap_or("1h"))?;
    // TonyPi's names and its InfluxDB measurement names (its MEASUREMENT_ALIASES).
    let (pattern, sensors_only) = match q.measurement.as_str() {
        "battery" | "battery_status" => ("battery.%", false),
        "location" | "robot_location" => ("location.%", false),
        "robot_status" => ("system_info.%", false),
        "servos" | "servo_data" => ("servos.%", false),
        "sensors" | "sensor_data" => ("%", true),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "measurement {other:?} is not one of sensors, battery, location, robot_status, \
                     servos (or sensor_data, battery_status, robot_location, servo_data)"
                ),
            ));
        }
    };
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let rows = sqlx::query(
        "SELECT r.robot_id, n.name, m.ts, v.value \
         FROM metrics m JOIN robots r ON r.id = m.robot \
         JOIN metric_sets s ON s.id = m.set_id \
         CROSS JOIN LATERAL unnest(s.name_ids, m.vals) AS v(name_id, value) \
         JOIN metric_names n ON n.id = v.name_id \
         WHERE m.ts >= $1 AND ($2::text IS NULL OR r.robot_id = $2) \
           AND n.name LIKE $3 AND ($4 OR (position('.' in n.name) = 0 AND n.name <> 'servo_count')) \
         ORDER BY m.ts DESC LIMIT $5",
    )
    .bind(since)
    .bind(&q.robot_id)
    .bind(pattern)
    .bind(!sensors_only)
    .bind(MAX_ROWS)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                let name: String = r.get("name");
                let (m, field) = measurement(&name);
                json!({
                    "timestamp": r.get::<DateTime<Utc>, _>("ts").to_rfc3339(),
                    "measurement": m,
                    "field": field,
                    "value": r.get::<f64, _>("value"),
                    "robot_id": r.get::<String, _>("robot_id"),
                    "sensor_type": (m == "sensors").then_some(field),
                })
            })
            .collect(),
    ))
}

/// The latest values grouped as TonyPi's `latest` answers them.
fn grouped(values: &[Latest]) -> Map<String, Value> {
    let mut out = Map::new();
    for key in ["sensors", "battery", "location", "status"] {
        out.insert(key.into(), json!({}));
    }
    for l in values {
        let (m, field) = measurement(&l.name);
        let key = match m {
            "robot_status" => "status",
            "sensors" | "battery" | "location" => m,
            _ => continue,
        };
        if let Some(Value::Object(group)) = out.get_mut(key) {
            group.insert(field.to_string(), json!(l.value));
        }
    }
    out
}

/// `GET /api/v1/robot-data/latest/{robot_id}`: the latest value of each field from the
/// last five minutes, by measurement.
pub async fn latest(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let values = match known_robot(&s, &robot_id).await? {
        Some(robot) => latest_values(&s, robot, Some(Utc::now() - RECENT)).await?,
        None => Vec::new(),
    };
    let mut out = grouped(&values);
    out.insert("robot_id".into(), json!(robot_id));
    Ok(Json(Value::Object(out)))
}

/// `GET /api/v1/robot-data/status`: robots heard from in the last five minutes, with
/// their status, last_seen, battery percentage, location, IP address and camera URL.
/// Two queries whatever the fleet size: the robots, then their latest battery and
/// location values from `metric_latest`.
pub async fn status(State(s): State<AdminState>) -> Result<Json<Vec<Value>>, ApiError> {
    let since = Utc::now() - RECENT;
    let robots = sqlx::query(
        "SELECT id, robot_id, status, last_seen, ip_address, camera_url FROM robots \
         WHERE is_active AND last_seen >= $1 ORDER BY robot_id LIMIT 10000",
    )
    .bind(since)
    .fetch_all(&s.pool)
    .await?;
    let keys: Vec<i32> = robots.iter().map(|r| r.get("id")).collect();
    let values = sqlx::query(
        "SELECT DISTINCT ON (l.robot, n.name) l.robot, n.name, v.value \
         FROM metric_latest l \
         JOIN metric_sets s ON s.id = l.set_id \
         CROSS JOIN LATERAL unnest(s.name_ids, l.vals) AS v(name_id, value) \
         JOIN metric_names n ON n.id = v.name_id \
         WHERE l.robot = ANY($1) AND l.ts >= $2 \
           AND (n.name = 'battery.percentage' OR n.name LIKE 'location.%') \
         ORDER BY l.robot, n.name, l.ts DESC",
    )
    .bind(&keys)
    .bind(since)
    .fetch_all(&s.pool)
    .await?;
    let mut battery: HashMap<i32, f64> = HashMap::new();
    let mut location: HashMap<i32, Map<String, Value>> = HashMap::new();
    for v in &values {
        let robot: i32 = v.get("robot");
        let name: String = v.get("name");
        let value: f64 = v.get("value");
        match name.strip_prefix("location.") {
            Some(field) => {
                location
                    .entry(robot)
                    .or_default()
                    .insert(field.to_string(), json!(value));
            }
            None => {
                battery.insert(robot, value);
            }
        }
    }
    Ok(Json(
        robots
            .iter()
            .map(|r| {
                let key: i32 = r.get("id");
                json!({
                    "robot_id": r.get::<String, _>("robot_id"),
                    "status": r.get::<String, _>("status"),
                    "last_seen": r.get::<Option<DateTime<Utc>>, _>("last_seen").map(|t| t.to_rfc3339()),
                    "battery_percentage": battery.get(&key),
                    "location": location.remove(&key),
                    "ip_address": r.get::<Option<String>, _>("ip_address"),
                    "camera_url": r.get::<Option<String>, _>("camera_url"),
                })
            })
            .collect(),
    ))
}

/// The robot's `robots.id`, or `None` for a robot never heard of: TonyPi's robot-data
/// routes answer an unknown robot with an empty result, not a 404.
async fn known_robot(s: &AdminState, robot_id: &str) -> Result<Option<i32>, ApiError> {
    check_robot_id(robot_id)?;
    Ok(
        sqlx::query_scalar("SELECT id FROM robots WHERE robot_id = $1")
            .bind(robot_id)
            .fetch_optional(&s.pool)
            .await?,
    )
}

#[derive(Debug, Deserialize)]
pub struct ServosQuery {
    pub time_range: Option<String>,
}

/// A servo's alert level from its temperature and the servo temperature thresholds
/// (`[alerts.thresholds]`, the ones servo alerts use).
fn servo_alert_level(temperature: Option<f64>, warning: f64, critical: f64) -> &'static str {
    match temperature {
        Some(t) if t >= critical => "critical",
        Some(t) if t >= warning => "warning",
        _ => "normal",
    }
}

/// The servos of `servos.<key>.<field>` values, keyed by servo key, in TonyPi's shape:
/// `id`, `name`, `robot_id`, `alert_level`, `torque_enabled` and each numeric field.
/// Only numbers are stored, so `name` is the servo's key (`servo_1`) and `alert_level`
/// is derived from its temperature and the servo thresholds.
fn servos(robot_id: &str, values: &[Latest], warning: f64, critical: f64) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for l in values {
        let Some((key, field)) = l
            .name
            .strip_prefix("servos.")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        let servo = out.entry(key.to_string()).or_insert_with(|| {
            let id = key
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse::<i64>()
                .unwrap_or(0);
            json!({"id": id, "name": key, "robot_id": robot_id, "torque_enabled": true})
        });
        if let Value::Object(o) = servo {
            let v = match field {
                "torque_enabled" => json!(l.value != 0.0),
                "id" => json!(l.value as i64),
                _ => json!(l.value),
            };
            o.insert(field.to_string(), v);
        }
    }
    for servo in out.values_mut() {
        if let Value::Object(o) = servo {
            let level = servo_alert_level(
                o.get("temperature").and_then(Value::as_f64),
                warning,
                critical,
            );
            o.insert("alert_level".into(), json!(level));
        }
    }
    out
}

/// `GET /api/v1/robot-data/servos/{robot_id}?time_range=5m`: the latest reading of each
/// of the robot's servos within `time_range`.
pub async fn servo_data(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
    Query(q): Query<ServosQuery>,
) -> Result<Json<Value>, ApiError> {
    let since = Utc::now() - time_range(q.time_range.as_deref().unwrap_or("5m"))?;
    let t = &s.thresholds;
    let servos = match known_robot(&s, &robot_id).await? {
        Some(robot) => {
            let values = latest_values(&s, robot, Some(since)).await?;
            servos(
                &robot_id,
                &values,
                t.servo_temperature_warning,
                t.servo_temperature_critical,
            )
        }
        None => Map::new(),
    };
    let mut out = json!({
        "robot_id": robot_id,
        "servo_count": servos.len(),
        "servos": servos,
        "timestamp": Utc::now().to_rfc3339(),
    });
    if out["servo_count"] == 0
        && let Value::Object(o) = &mut out
    {
        o.insert("message".into(), json!("No servo data found"));
    }
    Ok(Json(out))
}

/// `GET /api/v1/robot-data/job-summary/{robot_id}`: the robot's current (or last) job.
pub async fn job_summary(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    check_robot_id(&robot_id)?;
    let job = sqlx::query(
        "SELECT task_name, status, phase, start_time, end_time, items_done, items_total, \
                percent_complete, last_item, success, cancel_reason, elapsed_time, estimated_duration \
         FROM jobs WHERE robot_id = $1 ORDER BY start_time DESC LIMIT 1",
    )
    .bind(&robot_id)
    .fetch_optional(&s.pool)
    .await?;
    let Some(j) = job else {
        return Ok(Json(json!({ "robot_id": robot_id, "status": "idle" })));
    };
    let ts = |k: &str| j.get::<Option<DateTime<Utc>>, _>(k).map(|t| t.to_rfc3339());
    Ok(Json(json!({
        "robot_id": robot_id,
        "task_name": j.get::<Option<String>, _>("task_name"),
        "status": j.get::<String, _>("status"),
        "phase": j.get::<Option<String>, _>("phase"),
        "start_time": ts("start_time"),
        "end_time": ts("end_time"),
        "items_done": j.get::<Option<i64>, _>("items_done"),
        "items_total": j.get::<Option<i64>, _>("items_total"),
        "percent_complete": j.get::<Option<f64>, _>("percent_complete"),
        "last_item": j.get::<Option<Value>, _>("last_item"),
        "success": j.get::<Option<bool>, _>("success"),
        "cancel_reason": j.get::<Option<String>, _>("cancel_reason"),
        "elapsed_time": j.get::<Option<f64>, _>("elapsed_time"),
        "estimated_duration": j.get::<Option<f64>, _>("estimated_duration"),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_and_ranges() {
        assert_eq!(measurement("battery.percentage"), ("battery", "percentage"));
        assert_eq!(
            measurement("system_info.cpu_percent"),
            ("robot_status", "cpu_percent")
        );
        assert_eq!(
            measurement("ultrasonic_distance"),
            ("sensors", "ultrasonic_distance")
        );
        assert_eq!(servo_alert_level(Some(69.9), 70.0, 80.0), "normal");
        assert_eq!(servo_alert_level(Some(70.0), 70.0, 80.0), "warning");
        assert_eq!(servo_alert_level(Some(80.0), 70.0, 80.0), "critical");
        assert_eq!(servo_alert_level(None, 70.0, 80.0), "normal");
        assert_eq!(time_range("24h").unwrap(), Duration::hours(24));
        assert!(
            time_range("31d").is_err() && time_range("h").is_err() && time_range("5x").is_err()
        );
    }
}
