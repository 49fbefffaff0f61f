//! The TonyPi backend's `management` router (`backend/routers/management.py`): a
//! command to one robot, emergency stop (one robot or all) and resume, a robot's
//! settings (stored, and published on its config topic), and the system overview, with
//! TonyPi's request and answer shapes. Sending is shared with the other command routes
//! (`http/commands.rs`); an emergency stop answers with the robots expected to
//! confirm it, which must do so within `commands.confirm_within` or are shown
//! `unconfirmed`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::audit::Actor;
use crate::commands::{CONFIG, EMERGENCY_STOP, RESUME, Target};
use crate::db::{edits, reads};
use crate::http::commands::dispatch;
use crate::http::extract::{Json, Path};
use crate::http::snapshot::Computed;
use crate::http::{ApiError, Detail, HttpState, json_bytes, robot_key};
use sqlx::PgPool;

/// `POST /api/v1/management/command`, as the TonyPi backend takes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CommandRequest {
    /// e.g. `move`, `stop`, `start_task`; `emergency_stop` goes to the emergency-stop
    /// topic like the emergency-stop route.
    pub command: String,
    #[serde(default)]
    pub parameters: Option<Value>,
    pub robot_id: String,
}

/// The optional body of the emergency-stop routes (TonyPi's `EmergencyStopRequest`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EmergencyStopRequest {
    /// Sent to the robot; default "User triggered emergency stop".
    #[serde(default)]
    pub reason: Option<String>,
    /// Stop every robot instead of the one in the path.
    #[serde(default)]
    pub broadcast: bool,
}

/// A command was recorded and published.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandSent {
    pub success: bool,
    pub message: String,
    /// Tracks the command in `commands` and `/api/v1/robots/{robot_id}/commands`.
    pub command_id: String,
}

/// An emergency stop was recorded and published; each expected robot must confirm it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmergencyStopSent {
    pub success: bool,
    pub message: String,
    pub command_id: String,
    /// `sent`: published, not yet confirmed. Follow each robot's row in
    /// `/api/v1/robots/{robot_id}/commands`: `acknowledged` (the robot confirmed it
    /// stopped), `failed` (it answered that it could not), `unconfirmed` (no
    /// confirmation within `confirm_within_s`).
    pub status: &'static str,
    /// The robots whose confirmation is awaited (for a broadcast, those online now).
    pub expected_robots: Vec<String>,
    pub confirm_within_s: f64,
    pub topic: String,
}

/// Sends a command to one robot on the topic of its kind (`tonypi/commands/{robot_id}`;
/// `emergency_stop` on `tonypi/emergency_stop/{robot_id}`).
#[utoipa::path(post, path = "/api/v1/management/command", tag = "commands",
    request_body = CommandRequest,
    responses((status = 200, body = CommandSent),
        (status = 400, body = Detail), (status = 404, description = "unknown robot", body = Detail),
        (status = 503, description = "the broker is not connected; nothing was sent", body = Detail)))]
pub async fn send(
    State(s): State<HttpState>,
    actor: Actor,
    Json(req): Json<CommandRequest>,
) -> Result<Json<CommandSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(req.command));
    payload.insert(
        "parameters".into(),
        req.parameters.unwrap_or_else(|| json!({})),
    );
    let target = Target::Robot(&req.robot_id);
    let sent = dispatch(&s, &actor, &s.command_topics, target, payload).await?;
    Ok(Json(CommandSent {
        success: true,
        message: "Command sent successfully".into(),
        command_id: sent.command_id,
    }))
}

/// Stops one robot (`tonypi/emergency_stop/{robot_id}`), or every robot when the path
/// says `broadcast` or the body `"broadcast": true`; logged at CRITICAL. The robot must
/// confirm it within `commands.confirm_within`, or it is shown `unconfirmed`.
#[utoipa::path(post, path = "/api/v1/management/robots/{robot_id}/emergency-stop", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id, or `broadcast`")),
    request_body(content = Option<EmergencyStopRequest>, description = "optional: reason, broadcast"),
    responses((status = 200, body = EmergencyStopSent), (status = 400, body = Detail),
        (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn emergency_stop(
    State(s): State<HttpState>,
    actor: Actor,
    Path(robot_id): Path<String>,
    body: Bytes,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let req = stop_request(&body)?;
    let target = if req.broadcast || robot_id == "broadcast" {
        Target::Broadcast
    } else {
        Target::Robot(&robot_id)
    };
    stop(&s, &actor, target, req.reason).await
}

/// Stops every robot (`tonypi/emergency_stop/broadcast`); logged at CRITICAL. Each robot
/// online now must confirm it; the answer lists them.
#[utoipa::path(post, path = "/api/v1/management/emergency-stop/broadcast", tag = "commands",
    request_body(content = Option<EmergencyStopRequest>, description = "optional: reason"),
    responses((status = 200, body = EmergencyStopSent), (status = 400, body = Detail),
        (status = 503, body = Detail)))]
pub async fn emergency_stop_all(
    State(s): State<HttpState>,
    actor: Actor,
    body: Bytes,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let req = stop_request(&body)?;
    let reason = req
        .reason
        .or_else(|| Some("Broadcast emergency stop".into()));
    stop(&s, &actor, Target::Broadcast, reason).await
}

/// Sends `resume` to one robot (on its command topic, as TonyPi's backend does).
#[utoipa::path(post, path = "/api/v1/management/robots/{robot_id}/resume", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = CommandSent), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn resume(
    State(s): State<HttpState>,
    actor: Actor,
    Path(robot_id): Path<String>,
) -> Result<Json<CommandSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(RESUME));
    let sent = dispatch(
        &s,
        &actor,
        &s.command_topics,
        Target::Robot(&robot_id),
        payload,
    )
    .await?;
    Ok(Json(CommandSent {
        success: true,
        message: format!("Resume command sent to {robot_id}"),
        command_id: sent.command_id,
    }))
}

/// The emergency-stop body: none, empty, or TonyPi's `{reason, broadcast}`.
fn stop_request(body: &[u8]) -> Result<EmergencyStopRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(EmergencyStopRequest::default());
    }
    // The API's one body rule (NUL refused, like every other route's body).
    crate::http::extract::from_json(body)
}

/// Publishes an emergency stop to `target` and answers with the robots expected to
/// confirm it.
async fn stop(
    s: &HttpState,
    actor: &Actor,
    target: Target<'_>,
    reason: Option<String>,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(EMERGENCY_STOP));
    if let Some(reason) = reason {
        payload.insert("reason".into(), json!(reason));
    }
    let sent = dispatch(s, actor, &s.command_topics, target, payload).await?;
    let whom = match target {
        Target::Robot(id) => id.to_string(),
        Target::Broadcast => "all robots".into(),
    };
    Ok(Json(EmergencyStopSent {
        success: true,
        message: format!(
            "Emergency stop sent to {whom}; awaiting confirmation from {} robot(s)",
            sent.expected.len()
        ),
        command_id: sent.command_id,
        status: "sent",
        expected_robots: sent.expected,
        confirm_within_s: s.confirm_within.as_secs_f64(),
        topic: sent.topic,
    }))
}

/// TonyPi's system overview, with fleetsink's real figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemStatus {
    /// How long fleetsink has been serving, e.g. `2 days, 14 hours`.
    pub system_uptime: String,
    pub uptime_seconds: u64,
    /// Active robots connected now: neither `offline` nor never heard from (`unknown`).
    pub active_robots: i64,
    /// Active (registered, not deleted) robots.
    pub total_robots: i64,
    /// Commands sent since midnight UTC (a broadcast counts once).
    pub total_commands_today: i64,
    /// `healthy` when the broker is connected and the database reachable, else `degraded`.
    pub system_health: &'static str,
    pub services: SystemServices,
    pub resource_usage: ResourceUsage,
}

/// Each service by TonyPi's name: `running`, or what is wrong. fleetsink keeps the time
/// series in PostgreSQL and serves no Grafana, so those two are `not_used`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SystemServices {
    /// `running` or `disconnected`.
    pub mqtt_broker: &'static str,
    /// `running` or `unreachable`.
    pub postgres: &'static str,
    pub influxdb: &'static str,
    pub grafana: &'static str,
}

/// The fleetsink host's load and memory (Linux `/proc`; `null` where unknown).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceUsage {
    /// The 1-minute load average per CPU, as a percentage (at most 100).
    pub cpu_percent: Option<f64>,
    /// Memory in use (total less available), as a percentage.
    pub memory_percent: Option<f64>,
    /// Not measured.
    pub disk_usage_percent: Option<f64>,
}

/// The system overview: robots connected, commands sent today, the broker's and the
/// database's state, and fleetsink's uptime.
#[utoipa::path(get, path = "/api/v1/management/system/status", tag = "fleet",
    responses((status = 200, body = SystemStatus), (status = 503, body = Detail)))]
pub async fn system_status(State(s): State<HttpState>) -> Result<Json<SystemStatus>, ApiError> {
    let counts = reads::robots::system_counts(&s.pool).await?;
    let r = s.health.readiness();
    let uptime = s.started.elapsed().as_secs();
    Ok(Json(SystemStatus {
        system_uptime: uptime_text(uptime),
        uptime_seconds: uptime,
        active_robots: counts.active_robots,
        total_robots: counts.total_robots,
        total_commands_today: counts.commands_today,
        system_health: if r.broker_connected && r.database_reachable {
            "healthy"
        } else {
            "degraded"
        },
        services: SystemServices {
            mqtt_broker: if r.broker_connected {
                "running"
            } else {
                "disconnected"
            },
            postgres: if r.database_reachable {
                "running"
            } else {
                "unreachable"
            },
            influxdb: "not_used",
            grafana: "not_used",
        },
        resource_usage: resource_usage().await,
    }))
}

/// `2 days, 14 hours`, `3 hours, 5 minutes`, `5 minutes, 2 seconds`: the two largest units.
fn uptime_text(secs: u64) -> String {
    let units = [
        (secs / 86_400, "day"),
        (secs / 3600 % 24, "hour"),
        (secs / 60 % 60, "minute"),
        (secs % 60, "second"),
    ];
    let first = units.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    units[first..]
        .iter()
        .take(2)
        .map(|(n, unit)| format!("{n} {unit}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The host's load and memory from `/proc` (Linux); `None` where unreadable.
async fn resource_usage() -> ResourceUsage {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let load = tokio::fs::read_to_string("/proc/loadavg")
        .await
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok());
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await.ok();
    let kib = |key: &str| {
        meminfo
            .as_deref()?
            .lines()
            .find_map(|l| l.strip_prefix(key)?.split_whitespace().next())?
            .parse::<f64>()
            .ok()
    };
    let memory = match (kib("MemTotal:"), kib("MemAvailable:")) {
        (Some(total), Some(available)) if total > 0.0 => {
            Some(round2((total - available) / total * 100.0))
        }
        _ => None,
    };
    ResourceUsage {
        cpu_percent: load.map(|l| round2((l / cpus * 100.0).min(100.0))),
        memory_percent: memory,
        disk_usage_percent: None,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The settings TonyPi's backend answers for every robot; what was stored for a robot
/// is merged over them.
fn default_config() -> Map<String, Value> {
    [
        (
            "navigation",
            json!({"max_speed": 1.5, "obstacle_avoidance": true, "path_planning": "A*"}),
        ),
        (
            "sensors",
            json!({"camera_fps": 30, "lidar_frequency": 10, "imu_rate": 100}),
        ),
        (
            "behavior",
            json!({"auto_charging": true, "patrol_mode": false, "voice_response": true}),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A robot's settings, as TonyPi's `GET …/config` answers: one object per config type.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotConfig {
    pub robot_id: String,
    /// `navigation`, `sensors`, `behavior` (TonyPi's defaults with what was set over
    /// them) and every other config type set, each an object.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// `PUT /api/v1/management/robots/{robot_id}/config`, as TonyPi takes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfigUpdate {
    /// e.g. `navigation`, `sensors`, `behavior`: 1-64 characters of A-Z a-z 0-9 _ . -
    pub config_type: String,
    /// The keys to set (merged over those set before).
    #[schema(value_type = Object)]
    pub config_data: Map<String, Value>,
}

/// The settings were stored and published.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfigUpdated {
    pub message: &'static str,
    /// Tracks the publish in `commands` and `/api/v1/robots/{robot_id}/commands`.
    pub command_id: String,
    pub topic: String,
}

/// The robot's settings: TonyPi's defaults (navigation, sensors, behavior) with what was
/// set through `PUT` merged over them.
#[utoipa::path(get, path = "/api/v1/management/robots/{robot_id}/config", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = RobotConfig), (status = 400, body = Detail),
        (status = 404, description = "unknown robot", body = Detail)))]
pub async fn get_config(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
) -> Result<Json<RobotConfig>, ApiError> {
    let robot = robot_key(&s, &robot_id).await?;
    let mut config = default_config();
    for (config_type, data) in reads::robots::config(&s.pool, robot).await? {
        let Value::Object(data) = data else { continue };
        match config.get_mut(&config_type) {
            Some(Value::Object(section)) => section.extend(data),
            _ => {
                config.insert(config_type, Value::Object(data));
            }
        }
    }
    Ok(Json(RobotConfig { robot_id, config }))
}

/// Publishes settings to the robot on its config topic (`tonypi/config/{robot_id}`, QoS
/// 1: `config_type`, `config_data`, `timestamp`, with `type` `config` and `id`/
/// `command_id` to track it in `commands`) and stores them, merged over those set
/// before. Nothing is stored when the broker does not take it (503).
#[utoipa::path(put, path = "/api/v1/management/robots/{robot_id}/config", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    request_body = ConfigUpdate,
    responses((status = 200, body = ConfigUpdated), (status = 400, body = Detail),
        (status = 404, description = "unknown robot", body = Detail),
        (status = 503, description = "the broker is not connected; nothing was sent or stored", body = Detail)))]
pub async fn put_config(
    State(s): State<HttpState>,
    actor: Actor,
    Path(robot_id): Path<String>,
    Json(req): Json<ConfigUpdate>,
) -> Result<Json<ConfigUpdated>, ApiError> {
    check_config_type(&req.config_type)?;
    let data = Value::Object(req.config_data);
    let mut payload = Map::new();
    payload.insert("type".into(), json!(CONFIG));
    payload.insert("config_type".into(), json!(req.config_type));
    payload.insert("config_data".into(), data.clone());
    let sent = dispatch(
        &s,
        &actor,
        &s.command_topics,
        Target::Robot(&robot_id),
        payload,
    )
    .await?;
    if !edits::robots::store_config(
        &s.pool,
        &robot_id,
        &req.config_type,
        &data,
        &sent.command_id,
    )
    .await?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Robot not found"));
    }
    Ok(Json(ConfigUpdated {
        message: "Configuration updated successfully",
        command_id: sent.command_id,
        topic: sent.topic,
    }))
}

/// A config type names a section of the answer beside `robot_id`.
fn check_config_type(t: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&t.len())
        && t != "robot_id"
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "config_type must be 1-64 characters of A-Z a-z 0-9 _ . - (and not robot_id)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_as_two_units() {
        assert_eq!(uptime_text(0), "0 seconds");
        assert_eq!(uptime_text(61), "1 minute, 1 second");
        assert_eq!(uptime_text(3 * 3600 + 300), "3 hours, 5 minutes");
        assert_eq!(uptime_text(2 * 86_400 + 14 * 3600 + 59), "2 days, 14 hours");
    }

    #[test]
    fn config_input_is_checked() {
        assert!(check_config_type("navigation").is_ok());
        for bad in ["", "robot_id", "a b", "nav\0", &"x".repeat(65)] {
            assert!(check_config_type(bad).is_err(), "{bad:?}");
        }
    }
}

/// A robot as TonyPi's `GET /management/robots` lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedRobot {
    pub robot_id: String,
    /// The registered name, else the robot id.
    pub name: String,
    pub status: String,
    pub last_seen: Option<chrono::DateTime<chrono::Utc>>,
    /// The latest `battery.percentage` of the last day, if any.
    pub battery_level: Option<f64>,
    /// TonyPi lists fixed capabilities; fleetsink does not know a robot's, so none.
    pub capabilities: Vec<String>,
}

/// The active robots (TonyPi answers a fixed sample; fleetsink the registry).
#[utoipa::path(get, path = "/api/v1/management/robots", tag = "commands",
    responses((status = 200, body = Vec<ManagedRobot>),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn robots(State(s): State<HttpState>) -> Result<Response, ApiError> {
    let pool = s.pool.clone();
    let body = s
        .pages
        .managed_robots
        .get(move || robots_page(pool.clone()))
        .await?;
    Ok(json_bytes(body))
}

/// The active robots page computed: two queries whatever the fleet size.
async fn robots_page(pool: PgPool) -> Result<Computed, ApiError> {
    let rows = reads::robots::active_rows(&pool).await?;
    let keys: Vec<i32> = rows.iter().map(|r| r.id).collect();
    let since = chrono::Utc::now() - chrono::Duration::days(1);
    let battery: std::collections::HashMap<i32, f64> =
        reads::robot_data::battery_and_location(&pool, &keys, since)
            .await?
            .into_iter()
            .filter(|v| v.name == "battery.percentage")
            .map(|v| (v.robot, v.value))
            .collect();
    let page: Vec<ManagedRobot> = rows
        .into_iter()
        .map(|r| ManagedRobot {
            battery_level: battery.get(&r.id).copied(),
            name: r.name.unwrap_or_else(|| r.robot_id.clone()),
            robot_id: r.robot_id,
            status: r.status,
            last_seen: r.last_seen,
            capabilities: Vec::new(),
        })
        .collect();
    // About 160 bytes a robot (measured at 10,000 robots).
    Computed::json(&page, page.len(), page.len() * 160)
}
