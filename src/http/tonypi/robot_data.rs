//! The TonyPi backend's `robot_data` router (`backend/routers/robot_data.py`): the
//! read routes its UI's Sensors, Servos, Monitoring and Jobs pages call, answered from
//! PostgreSQL where TonyPi reads InfluxDB, and the UI's command pass-through. TonyPi's
//! measurements map onto fleetsink's metric names: `battery` → `battery.*`,
//! `location` → `location.*`, `robot_status` → `system_info.*`, `servos` → `servos.*`
//! (and `servo_count`), `sensors` → the sensor readings (names without a dot). Current
//! values come from `metric_latest`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::commands::Target;
use crate::db::reads::metrics::{self, Latest};
use crate::db::reads::robot_data::{self, ReadingFilter};
use crate::db::reads::{jobs, robots};
use crate::http::commands::{CommandPublished, dispatch, published};
use crate::http::extract::{Json, Path, Query};
use crate::http::snapshot::Computed;
use crate::http::{ApiError, Detail, HttpState, check_robot_id, json_bytes, known_robot};

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
pub(crate) fn time_range(s: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "time_range must be like 30m, 1h, 24h or 7d (at most 30d)",
        )
    };
    // The unit is the last character, whatever its width.
    let Some((at, _)) = s.char_indices().last() else {
        return Err(bad());
    };
    let (n, unit) = s.split_at(at);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    };
    match d {
        Some(d) if n > 0 && d <= Duration::days(30) => Ok(d),
        _ => Err(bad()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SensorsQuery {
    /// `sensors`, `battery`, `location`, `robot_status`, `servos` (or TonyPi's InfluxDB
    /// names `sensor_data`, `battery_status`, `robot_location`, `servo_data`).
    pub measurement: String,
    /// How far back: `30m`, `1h`, `24h`, `7d` (at most 30d); default 1h.
    pub time_range: Option<String>,
    pub robot_id: Option<String>,
}

/// One reading, as TonyPi's `SensorData`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SensorData {
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub measurement: String,
    pub field: String,
    pub value: f64,
    pub robot_id: String,
    /// The field, for the `sensors` measurement.
    pub sensor_type: Option<String>,
    pub unit: Option<String>,
}

/// The readings of one measurement within `time_range`, oldest first as TonyPi's
/// InfluxDB answers them, so the last item is the latest (the newest 10,000 at most).
#[utoipa::path(get, path = "/api/v1/robot-data/sensors", tag = "robot-data", params(SensorsQuery),
    responses((status = 200, body = Vec<SensorData>), (status = 400, body = Detail)))]
pub async fn sensors(
    State(s): State<HttpState>,
    Query(q): Query<SensorsQuery>,
) -> Result<Json<Vec<SensorData>>, ApiError> {
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
    let filter = ReadingFilter {
        since,
        robot_id: q.robot_id.as_deref(),
        name_like: pattern,
        sensors_only,
        limit: MAX_ROWS,
    };
    let rows = robot_data::readings(&s.pool, &filter).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                let (m, field) = measurement(&r.name);
                SensorData {
                    timestamp: r.ts.to_rfc3339(),
                    measurement: m.to_string(),
                    field: field.to_string(),
                    value: r.value,
                    robot_id: r.robot_id,
                    sensor_type: (m == "sensors").then(|| field.to_string()),
                    unit: r.unit,
                }
            })
            .collect(),
    ))
}

/// A robot's latest values by TonyPi measurement, field → value.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct RobotDataLatest {
    pub robot_id: String,
    pub sensors: BTreeMap<String, f64>,
    pub battery: BTreeMap<String, f64>,
    pub location: BTreeMap<String, f64>,
    /// `system_info.*` (cpu_percent, memory_percent, temperature, …).
    pub status: BTreeMap<String, f64>,
}

/// The latest values grouped as TonyPi's `latest` answers them.
fn grouped(robot_id: String, values: &[Latest]) -> RobotDataLatest {
    let mut out = RobotDataLatest {
        robot_id,
        ..RobotDataLatest::default()
    };
    for l in values {
        let (m, field) = measurement(&l.name);
        let group = match m {
            "robot_status" => &mut out.status,
            "sensors" => &mut out.sensors,
            "battery" => &mut out.battery,
            "location" => &mut out.location,
            _ => continue,
        };
        group.insert(field.to_string(), l.value);
    }
    out
}

/// The latest value of each field from the last five minutes, by measurement; empty
/// groups for a robot never heard of (as TonyPi answers).
#[utoipa::path(get, path = "/api/v1/robot-data/latest/{robot_id}", tag = "robot-data",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = RobotDataLatest), (status = 400, body = Detail)))]
pub async fn latest(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
) -> Result<Json<RobotDataLatest>, ApiError> {
    let values = match known_robot(&s, &robot_id).await? {
        Some(robot) => metrics::latest(&s.pool, robot, Some(Utc::now() - RECENT)).await?,
        None => Vec::new(),
    };
    Ok(Json(grouped(robot_id, &values)))
}

/// A robot's current state, as TonyPi's `RobotStatus`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotStatus {
    pub robot_id: String,
    pub status: String,
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    pub battery_percentage: Option<f64>,
    /// x, y, z (and whatever else the robot sends under `location`).
    pub location: Option<BTreeMap<String, f64>>,
    pub ip_address: Option<String>,
    pub camera_url: Option<String>,
}

/// Robots heard from in the last five minutes, with their status, last_seen, battery
/// percentage, location, IP address and camera URL. Two queries whatever the fleet
/// size: the robots, then their latest battery and location values.
#[utoipa::path(get, path = "/api/v1/robot-data/status", tag = "robot-data",
    responses((status = 200, body = Vec<RobotStatus>)))]
pub async fn status(State(s): State<HttpState>) -> Result<Response, ApiError> {
    let pool = s.pool.clone();
    let body = s
        .pages
        .status
        .get(move || status_page(pool.clone()))
        .await?;
    Ok(json_bytes(body))
}

/// The status page computed: two queries whatever the fleet size.
async fn status_page(pool: PgPool) -> Result<Computed, ApiError> {
    let since = Utc::now() - RECENT;
    let seen = robots::seen_since(&pool, since).await?;
    let keys: Vec<i32> = seen.iter().map(|r| r.id).collect();
    let values = robot_data::battery_and_location(&pool, &keys, since).await?;
    let mut battery: HashMap<i32, f64> = HashMap::new();
    let mut location: HashMap<i32, BTreeMap<String, f64>> = HashMap::new();
    for v in values {
        match v.name.strip_prefix("location.") {
            Some(field) => {
                location
                    .entry(v.robot)
                    .or_default()
                    .insert(field.to_string(), v.value);
            }
            None => {
                battery.insert(v.robot, v.value);
            }
        }
    }
    let page: Vec<RobotStatus> = seen
        .into_iter()
        .map(|r| RobotStatus {
            battery_percentage: battery.get(&r.id).copied(),
            location: location.remove(&r.id),
            robot_id: r.robot_id,
            status: r.status,
            last_seen: r.last_seen.map(|t| t.to_rfc3339()),
            ip_address: r.ip_address,
            camera_url: r.camera_url,
        })
        .collect();
    // About 256 bytes a robot (measured at 10,000 robots).
    Computed::json(&page, page.len(), page.len() * 256)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServosQuery {
    /// How far back: `5m`, `1h`, … (at most 30d); default 5m.
    pub time_range: Option<String>,
}

/// A robot's servos, as TonyPi's servos route answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServoData {
    pub robot_id: String,
    /// By servo key (`servo_1`, …): `id`, `name` (the key), `robot_id`, `alert_level`
    /// (`normal`, `warning`, `critical`), `torque_enabled` and each numeric reading
    /// (`position`, `temperature`, `voltage`, …).
    #[schema(value_type = Object)]
    pub servos: Map<String, Value>,
    pub servo_count: usize,
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// `No servo data found` when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

/// A servo's alert level from its temperature and the robot's servo temperature
/// thresholds (the ones servo alerts use: `alert_thresholds`, else `[alerts.thresholds]`).
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

/// The latest reading of each of the robot's servos within `time_range`.
#[utoipa::path(get, path = "/api/v1/robot-data/servos/{robot_id}", tag = "robot-data",
    params(("robot_id" = String, Path, description = "The robot's id"), ServosQuery),
    responses((status = 200, body = ServoData), (status = 400, body = Detail)))]
pub async fn servo_data(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
    Query(q): Query<ServosQuery>,
) -> Result<Json<ServoData>, ApiError> {
    let since = Utc::now() - time_range(q.time_range.as_deref().unwrap_or("5m"))?;
    let servos = match known_robot(&s, &robot_id).await? {
        Some(robot) => {
            let values = metrics::latest(&s.pool, robot, Some(since)).await?;
            let t = crate::db::reads::alerts::ThresholdScopes::read(&s.pool, &[&robot_id])
                .await?
                .deciding(
                    &robot_id,
                    crate::alerts::Watched::ServoTemperature,
                    crate::alerts::builtin(&s.thresholds)
                        [crate::alerts::Watched::ServoTemperature as usize],
                );
            servos(&robot_id, &values, t.warning, t.critical)
        }
        None => Map::new(),
    };
    Ok(Json(ServoData {
        robot_id,
        servo_count: servos.len(),
        message: servos.is_empty().then_some("No servo data found"),
        servos,
        timestamp: Utc::now().to_rfc3339(),
    }))
}

/// A robot's current (or last) job; `status: idle` and nulls when it never had one.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummary {
    pub robot_id: String,
    pub task_name: Option<String>,
    /// `active`, `completed`, `cancelled`, `failed`, or `idle` (no job yet).
    pub status: String,
    pub phase: Option<String>,
    #[schema(format = DateTime)]
    pub start_time: Option<String>,
    #[schema(format = DateTime)]
    pub end_time: Option<String>,
    pub items_done: Option<i64>,
    pub items_total: Option<i64>,
    pub percent_complete: Option<f64>,
    pub last_item: Option<Value>,
    pub success: Option<bool>,
    pub cancel_reason: Option<String>,
    pub elapsed_time: Option<f64>,
    pub estimated_duration: Option<f64>,
}

/// The robot's current (or last) job.
#[utoipa::path(get, path = "/api/v1/robot-data/job-summary/{robot_id}", tag = "robot-data",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = JobSummary), (status = 400, body = Detail)))]
pub async fn job_summary(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
) -> Result<Json<JobSummary>, ApiError> {
    check_robot_id(&robot_id)?;
    let Some(j) = jobs::latest(&s.pool, &robot_id).await? else {
        return Ok(Json(JobSummary {
            robot_id,
            task_name: None,
            status: "idle".into(),
            phase: None,
            start_time: None,
            end_time: None,
            items_done: None,
            items_total: None,
            percent_complete: None,
            last_item: None,
            success: None,
            cancel_reason: None,
            elapsed_time: None,
            estimated_duration: None,
        }));
    };
    let ts = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339());
    Ok(Json(JobSummary {
        robot_id,
        task_name: j.task_name,
        status: j.status,
        phase: j.phase,
        start_time: ts(j.start_time),
        end_time: ts(j.end_time),
        items_done: j.items_done,
        items_total: j.items_total,
        percent_complete: j.percent_complete,
        last_item: j.last_item,
        success: j.success,
        cancel_reason: j.cancel_reason,
        elapsed_time: j.elapsed_time,
        estimated_duration: j.estimated_duration,
    }))
}

/// The TonyPi UI's pass-through: the body goes to its `robot_id`'s topic, or to the
/// broadcast topic without one.
#[utoipa::path(post, path = "/api/v1/robot-data/command", tag = "commands",
    request_body(content = Object, description = "a command object: `type` or `command`, optional `robot_id`, `parameters`"),
    responses((status = 200, body = CommandPublished),
        (status = 400, body = Detail), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn pass_through(
    State(s): State<HttpState>,
    actor: crate::audit::Actor,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<CommandPublished>, ApiError> {
    let robot_id = body
        .get("robot_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let target = robot_id.as_deref().map_or(Target::Broadcast, Target::Robot);
    let sent = dispatch(&s, &actor, &s.command_topics, target, body).await?;
    Ok(published("Command sent to robot", sent))
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
        // Not a panic: a multi-byte last character, an empty range, an overflow.
        for bad in ["5é", "é", "", "9223372036854775807m", "-5m", "0h"] {
            assert!(time_range(bad).is_err(), "{bad:?}");
        }
    }
}
