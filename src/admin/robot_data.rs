//! The read routes of the TonyPi backend's `robot_data` router that its UI's Sensors,
//! Monitoring and Jobs pages call (`backend/routers/robot_data.py`), answered from
//! PostgreSQL where TonyPi reads InfluxDB. TonyPi's measurements map onto fleetsink's
//! metric names: `battery` → `battery.*`, `location` → `location.*`, `robot_status` →
//! `system_info.*`, `servos` → `servos.*`, `sensors` → the sensor readings (names
//! without a dot).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::Row;

use super::data::{Latest, latest_values, robot_key};
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
    if name.contains('.') {
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
    let pattern = match q.measurement.as_str() {
        "battery" => "battery.%",
        "location" => "location.%",
        "robot_status" => "system_info.%",
        "servos" => "servos.%",
        "sensors" => "%",
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "measurement {other:?} is not one of sensors, battery, location, robot_status, servos"
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
           AND n.name LIKE $3 AND ($4 OR position('.' in n.name) = 0) \
         ORDER BY m.ts DESC LIMIT $5",
    )
    .bind(since)
    .bind(&q.robot_id)
    .bind(pattern)
    .bind(q.measurement != "sensors")
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
    let robot = robot_key(&s, &robot_id).await?;
    let values = latest_values(&s, robot, Some(Utc::now() - RECENT)).await?;
    let mut out = grouped(&values);
    out.insert("robot_id".into(), json!(robot_id));
    Ok(Json(Value::Object(out)))
}

/// `GET /api/v1/robot-data/status`: robots heard from in the last five minutes, with
/// their status, last_seen, battery percentage and location.
pub async fn status(State(s): State<AdminState>) -> Result<Json<Vec<Value>>, ApiError> {
    let robots = sqlx::query(
        "SELECT id, robot_id, status, last_seen FROM robots \
         WHERE is_active AND last_seen >= $1 ORDER BY robot_id LIMIT 1000",
    )
    .bind(Utc::now() - RECENT)
    .fetch_all(&s.pool)
    .await?;
    let mut out = Vec::with_capacity(robots.len());
    for r in &robots {
        let values = latest_values(&s, r.get("id"), Some(Utc::now() - RECENT)).await?;
        let g = grouped(&values);
        let location = g
            .get("location")
            .filter(|l| l.as_object().is_some_and(|o| !o.is_empty()));
        out.push(json!({
            "robot_id": r.get::<String, _>("robot_id"),
            "status": r.get::<String, _>("status"),
            "last_seen": r.get::<Option<DateTime<Utc>>, _>("last_seen").map(|t| t.to_rfc3339()),
            "battery_percentage": g["battery"].get("percentage"),
            "location": location,
        }));
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
        assert_eq!(time_range("24h").unwrap(), Duration::hours(24));
        assert!(
            time_range("31d").is_err() && time_range("h").is_err() && time_range("5x").is_err()
        );
    }
}
