//! Downlink commands over HTTP, TonyPi-compatible (`backend/routers/management.py`):
//! each command is recorded in `commands` (one row per robot expected to answer), then
//! published at QoS 1 on the topic of its kind (`commands::topic`: an emergency stop on
//! `tonypi/emergency_stop/{robot_id}` or `…/broadcast`, where TonyPi robots stop; the
//! rest on `tonypi/commands/{robot_id}`; configurable per kind) with a payload every
//! TonyPi client reads: `type` and `id` (what the robot client reads) plus `command`,
//! `command_id`, `parameters` and `timestamp` (what the TonyPi backend sends). The
//! robot's answer settles it (`db::writes::commands`); an emergency stop not confirmed
//! within `commands.confirm_within` becomes `unconfirmed` (`db::commands`).
//! `POST /api/v1/robot-data/command` (the UI's pass-through) and the generic
//! `POST /api/v1/devices/{id}/commands` publish the caller's object with those fields
//! added where missing (`id` and `command_id` are always fleetsink's, for tracking).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, ApiError, Detail, check_robot_id, limit, write_log};
use crate::commands::{self, EMERGENCY_STOP, Kind, RESUME, Target};
use crate::config::CommandTopics;
use crate::db::commands::{self as stored, CommandRow, NewCommand};
use crate::model::{LogRow, message_fingerprint};
use crate::mqtt::Qos;

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

/// The caller's object was recorded and published.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandPublished {
    pub success: bool,
    pub message: &'static str,
    pub topic: String,
    /// The payload as published (with `type`, `id`, `command`, `command_id`,
    /// `parameters`, `robot_id` and `timestamp` filled in).
    pub command: Value,
    pub command_id: String,
}

/// Sends a command to one robot on the topic of its kind (`tonypi/commands/{robot_id}`;
/// `emergency_stop` on `tonypi/emergency_stop/{robot_id}`).
#[utoipa::path(post, path = "/api/v1/management/command", tag = "commands",
    request_body = CommandRequest,
    responses((status = 200, body = CommandSent),
        (status = 400, body = Detail), (status = 404, description = "unknown robot", body = Detail),
        (status = 503, description = "the broker is not connected; nothing was sent", body = Detail)))]
pub async fn send(
    State(s): State<AdminState>,
    Json(req): Json<CommandRequest>,
) -> Result<Json<CommandSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(req.command));
    payload.insert(
        "parameters".into(),
        req.parameters.unwrap_or_else(|| json!({})),
    );
    let target = Target::Robot(&req.robot_id);
    let sent = dispatch(&s, &s.command_topics, target, payload).await?;
    Ok(Json(CommandSent {
        success: true,
        message: "Command sent successfully".into(),
        command_id: sent.command_id,
    }))
}

/// The TonyPi UI's pass-through: the body goes to its `robot_id`'s topic, or to the
/// broadcast topic without one.
#[utoipa::path(post, path = "/api/v1/robot-data/command", tag = "commands",
    request_body(content = Object, description = "a command object: `type` or `command`, optional `robot_id`, `parameters`"),
    responses((status = 200, body = CommandPublished),
        (status = 400, body = Detail), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn pass_through(
    State(s): State<AdminState>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<CommandPublished>, ApiError> {
    let robot_id = body
        .get("robot_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let target = robot_id.as_deref().map_or(Target::Broadcast, Target::Robot);
    let sent = dispatch(&s, &s.command_topics, target, body).await?;
    Ok(published("Command sent to robot", sent))
}

/// A JSON object to a generic device, on `devices/{device_id}/commands`
/// (`devices/{device_id}/emergency_stop` for an `emergency_stop`).
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/commands", tag = "commands",
    params(("device_id" = String, Path, description = "The device's id")),
    request_body(content = Object, description = "a command object with `type` or `command`"),
    responses((status = 200, body = CommandPublished),
        (status = 400, body = Detail), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn device(
    State(s): State<AdminState>,
    Path(device_id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<CommandPublished>, ApiError> {
    let topics = CommandTopics::devices();
    let sent = dispatch(&s, &topics, Target::Robot(&device_id), body).await?;
    Ok(published("Command sent successfully", sent))
}

/// The answer of the routes that publish the caller's object (TonyPi's pass-through
/// shape, plus the command id).
fn published(message: &'static str, sent: Dispatched) -> Json<CommandPublished> {
    Json(CommandPublished {
        success: true,
        message,
        topic: sent.topic,
        command: sent.payload,
        command_id: sent.command_id,
    })
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
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
    body: Bytes,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let req = stop_request(&body)?;
    let target = if req.broadcast || robot_id == "broadcast" {
        Target::Broadcast
    } else {
        Target::Robot(&robot_id)
    };
    stop(&s, target, req.reason).await
}

/// Stops every robot (`tonypi/emergency_stop/broadcast`); logged at CRITICAL. Each robot
/// online now must confirm it; the answer lists them.
#[utoipa::path(post, path = "/api/v1/management/emergency-stop/broadcast", tag = "commands",
    request_body(content = Option<EmergencyStopRequest>, description = "optional: reason"),
    responses((status = 200, body = EmergencyStopSent), (status = 400, body = Detail),
        (status = 503, body = Detail)))]
pub async fn emergency_stop_all(
    State(s): State<AdminState>,
    body: Bytes,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let req = stop_request(&body)?;
    let reason = req
        .reason
        .or_else(|| Some("Broadcast emergency stop".into()));
    stop(&s, Target::Broadcast, reason).await
}

/// Sends `resume` to one robot (on its command topic, as TonyPi's backend does).
#[utoipa::path(post, path = "/api/v1/management/robots/{robot_id}/resume", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = CommandSent), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn resume(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<CommandSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(RESUME));
    let sent = dispatch(&s, &s.command_topics, Target::Robot(&robot_id), payload).await?;
    Ok(Json(CommandSent {
        success: true,
        message: format!("Resume command sent to {robot_id}"),
        command_id: sent.command_id,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-1000, default 100.
    pub limit: Option<i64>,
}

/// The commands sent to a robot, newest first, with their state (`sent`,
/// `acknowledged`, `failed`, `unconfirmed`, `expired`) and the robot's response.
#[utoipa::path(get, path = "/api/v1/robots/{robot_id}/commands", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id"), ListQuery),
    responses((status = 200, body = Vec<CommandRow>), (status = 400, body = Detail)))]
pub async fn list(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<CommandRow>>, ApiError> {
    check_robot_id(&robot_id)?;
    let limit = limit(q.limit, 100)?;
    Ok(Json(stored::list(&s.pool, &robot_id, limit).await?))
}

/// The emergency-stop body: none, empty, or TonyPi's `{reason, broadcast}`.
fn stop_request(body: &[u8]) -> Result<EmergencyStopRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(EmergencyStopRequest::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be empty or {{\"reason\": text, \"broadcast\": bool}}: {e}"),
        )
    })
}

/// Publishes an emergency stop to `target` and answers with the robots expected to
/// confirm it.
async fn stop(
    s: &AdminState,
    target: Target<'_>,
    reason: Option<String>,
) -> Result<Json<EmergencyStopSent>, ApiError> {
    let mut payload = Map::new();
    payload.insert("type".into(), json!(EMERGENCY_STOP));
    if let Some(reason) = reason {
        payload.insert("reason".into(), json!(reason));
    }
    let sent = dispatch(s, &s.command_topics, target, payload).await?;
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

/// A command recorded and published.
struct Dispatched {
    command_id: String,
    topic: String,
    payload: Value,
    /// The robots whose answer is awaited.
    expected: Vec<String>,
}

/// Records and publishes one command to `target` on the topic its kind has in
/// `topics`. Fills in `type`/`command` from each other, `parameters`, `robot_id`,
/// `timestamp` (and an emergency stop's `reason`) where missing, and sets `id` and
/// `command_id`. An emergency stop gets a confirmation deadline and is logged at
/// CRITICAL.
async fn dispatch(
    s: &AdminState,
    topics: &CommandTopics,
    target: Target<'_>,
    mut payload: Map<String, Value>,
) -> Result<Dispatched, ApiError> {
    let command = ["type", "command"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    if command.is_empty() || command.len() > 128 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the command (\"command\" or \"type\") must be 1-128 characters",
        ));
    }
    let kind = Kind::of(&command);
    let expected = match target {
        Target::Robot(robot) => {
            check_robot_id(robot)?;
            if !stored::is_known_robot(&s.pool, robot).await? {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("Robot {robot} not found"),
                ));
            }
            vec![robot.to_string()]
        }
        Target::Broadcast => stored::online_robots(&s.pool).await?,
    };
    if !s.health.readiness().broker_connected {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MQTT broker is not connected; the command was not sent",
        ));
    }
    let now = Utc::now();
    let command_id = format!("cmd_{}_{:08x}", now.timestamp_millis(), fastrand::u32(..));
    let robot_id = match target {
        Target::Robot(id) => Some(id),
        Target::Broadcast => None,
    };
    payload.entry("type").or_insert_with(|| json!(command));
    payload.entry("command").or_insert_with(|| json!(command));
    payload.entry("parameters").or_insert_with(|| json!({}));
    payload.entry("robot_id").or_insert_with(|| json!(robot_id));
    payload
        .entry("timestamp")
        .or_insert_with(|| json!(now.to_rfc3339()));
    if kind == Kind::EmergencyStop {
        payload
            .entry("reason")
            .or_insert_with(|| json!("User triggered emergency stop"));
    }
    payload.insert("id".into(), json!(command_id));
    payload.insert("command_id".into(), json!(command_id));
    let payload = Value::Object(payload);
    let topic = commands::topic(topics, kind, target);
    let confirm_by =
        (kind == Kind::EmergencyStop && !expected.is_empty()).then(|| now + s.confirm_within);
    stored::record(
        &s.pool,
        &NewCommand {
            command_id: &command_id,
            command: &command,
            topic: &topic,
            payload: &payload,
            robots: &expected,
            broadcast: target == Target::Broadcast,
            confirm_by,
        },
    )
    .await?;
    let bytes = Bytes::from(payload.to_string());
    if let Err(e) = s.downlink.publish(&topic, bytes, Qos::AtLeastOnce).await {
        tracing::warn!(topic = %topic, error = %e, "command not published");
        crate::telemetry::command("unpublished");
        stored::mark_failed(&s.pool, &command_id, "not published: broker unavailable").await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MQTT broker did not take the command; it was not sent",
        ));
    }
    crate::telemetry::command("sent");
    tracing::info!(topic = %topic, command = %command, command_id = %command_id, "command sent");
    if kind == Kind::EmergencyStop {
        log_emergency(s, robot_id, &command_id, &expected).await?;
    }
    Ok(Dispatched {
        command_id,
        topic,
        payload,
        expected,
    })
}

/// An emergency stop is logged at CRITICAL: a `logs` row (category `emergency`) and the
/// daemon's own log.
async fn log_emergency(
    s: &AdminState,
    robot_id: Option<&str>,
    command_id: &str,
    expected: &[String],
) -> Result<(), ApiError> {
    let target = robot_id.unwrap_or("every robot");
    tracing::error!(robot = %target, command_id = %command_id, expected = expected.len(), "CRITICAL: emergency stop sent");
    let row = LogRow {
        robot_id: robot_id.map(str::to_string),
        ts: Utc::now(),
        level: "CRITICAL".into(),
        category: "emergency".into(),
        source: Some("fleetsink".into()),
        message: format!("emergency stop sent to {target}"),
        details: Some(json!({ "command_id": command_id, "expected_robots": expected })),
        dedup_key: message_fingerprint("emergency_stop", command_id.as_bytes()),
    };
    write_log(s, row).await
}
