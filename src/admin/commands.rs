//! Downlink commands over HTTP, TonyPi-compatible (`backend/routers/management.py`):
//! each command is recorded in `commands`, then published at QoS 1 to
//! `tonypi/commands/{robot_id}` (or `tonypi/commands/broadcast`) with a payload every
//! TonyPi client reads: `type` and `id` (what the robot client reads) plus `command`,
//! `command_id`, `parameters` and `timestamp` (what the TonyPi backend sends). The
//! robot's answer on `tonypi/commands/response` marks it acknowledged or failed.
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
use crate::db::commands::{self, CommandRow};
use crate::model::{LogRow, message_fingerprint};
use crate::mqtt::Qos;

/// `POST /api/v1/management/command`, as the TonyPi backend takes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CommandRequest {
    /// e.g. `move`, `stop`, `start_task`, `emergency_stop`.
    pub command: String,
    #[serde(default)]
    pub parameters: Option<Value>,
    pub robot_id: String,
}

/// A command was recorded and published.
#[derive(Debug, Serialize, ToSchema)]
pub struct CommandSent {
    pub success: bool,
    pub message: &'static str,
    /// Tracks the command in `commands` and `/api/v1/robots/{robot_id}/commands`.
    pub command_id: String,
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

/// Sends a command to one robot on `tonypi/commands/{robot_id}`.
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
    let topic = format!("tonypi/commands/{}", req.robot_id);
    let (id, _) = send_command(&s, Some(&req.robot_id), topic, payload).await?;
    Ok(sent(id))
}

/// The TonyPi UI's pass-through: the body goes to its `robot_id`'s topic, or to
/// `tonypi/commands/broadcast` without one.
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
    let topic = format!(
        "tonypi/commands/{}",
        robot_id.as_deref().unwrap_or("broadcast")
    );
    let (id, payload) = send_command(&s, robot_id.as_deref(), topic.clone(), body).await?;
    Ok(published("Command sent to robot", topic, payload, id))
}

/// A JSON object to `devices/{device_id}/commands`.
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
    let topic = format!("devices/{device_id}/commands");
    let (id, payload) = send_command(&s, Some(&device_id), topic.clone(), body).await?;
    Ok(published("Command sent successfully", topic, payload, id))
}

/// The answer of the routes that publish the caller's object (TonyPi's pass-through
/// shape, plus the command id).
fn published(
    message: &'static str,
    topic: String,
    command: Value,
    command_id: String,
) -> Json<CommandPublished> {
    Json(CommandPublished {
        success: true,
        message,
        topic,
        command,
        command_id,
    })
}

/// Sends `emergency_stop` to one robot; logged at CRITICAL.
#[utoipa::path(post, path = "/api/v1/management/robots/{robot_id}/emergency-stop", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = CommandSent), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn emergency_stop(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<CommandSent>, ApiError> {
    let topic = format!("tonypi/commands/{robot_id}");
    let (id, _) = send_command(&s, Some(&robot_id), topic, named("emergency_stop")).await?;
    log_emergency(&s, Some(&robot_id), &id).await?;
    Ok(sent(id))
}

/// Sends `resume` to one robot.
#[utoipa::path(post, path = "/api/v1/management/robots/{robot_id}/resume", tag = "commands",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = CommandSent), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn resume(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<CommandSent>, ApiError> {
    let topic = format!("tonypi/commands/{robot_id}");
    let (id, _) = send_command(&s, Some(&robot_id), topic, named("resume")).await?;
    Ok(sent(id))
}

/// Sends `emergency_stop` to every robot (`tonypi/commands/broadcast`); logged at
/// CRITICAL.
#[utoipa::path(post, path = "/api/v1/management/emergency-stop/broadcast", tag = "commands",
    responses((status = 200, body = CommandSent), (status = 503, body = Detail)))]
pub async fn emergency_stop_all(
    State(s): State<AdminState>,
) -> Result<Json<CommandSent>, ApiError> {
    let topic = "tonypi/commands/broadcast".to_string();
    let (id, _) = send_command(&s, None, topic, named("emergency_stop")).await?;
    log_emergency(&s, None, &id).await?;
    Ok(sent(id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1-1000, default 100.
    pub limit: Option<i64>,
}

/// The commands sent to a robot, newest first, with their state (`sent`,
/// `acknowledged`, `failed`, `expired`) and the robot's response.
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
    Ok(Json(commands::list(&s.pool, &robot_id, limit).await?))
}

/// An emergency stop is logged at CRITICAL: a `logs` row (category `emergency`) and the
/// daemon's own log.
async fn log_emergency(
    s: &AdminState,
    robot_id: Option<&str>,
    command_id: &str,
) -> Result<(), ApiError> {
    let target = robot_id.unwrap_or("every robot");
    tracing::error!(robot = %target, command_id = %command_id, "CRITICAL: emergency stop sent");
    let row = LogRow {
        robot_id: robot_id.map(str::to_string),
        ts: Utc::now(),
        level: "CRITICAL".into(),
        category: "emergency".into(),
        source: Some("fleetsink".into()),
        message: format!("emergency stop sent to {target}"),
        details: Some(json!({ "command_id": command_id })),
        dedup_key: message_fingerprint("emergency_stop", command_id.as_bytes()),
    };
    write_log(s, row).await
}

/// A payload naming just the command.
fn named(command: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(command));
    m
}

fn sent(command_id: String) -> Json<CommandSent> {
    Json(CommandSent {
        success: true,
        message: "Command sent successfully",
        command_id,
    })
}

/// Records and publishes one command to `topic`; `robot_id` None broadcasts. Fills in
/// `type`/`command` from each other, `parameters`, `robot_id` and `timestamp` where
/// missing, and sets `id` and `command_id`. Returns the id and the payload sent.
async fn send_command(
    s: &AdminState,
    robot_id: Option<&str>,
    topic: String,
    mut payload: Map<String, Value>,
) -> Result<(String, Value), ApiError> {
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
    if let Some(robot) = robot_id {
        check_robot_id(robot)?;
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM robots WHERE robot_id = $1 AND is_active)",
        )
        .bind(robot)
        .fetch_one(&s.pool)
        .await?;
        if !known {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Robot {robot} not found"),
            ));
        }
    }
    if !s.health.readiness().broker_connected {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MQTT broker is not connected; the command was not sent",
        ));
    }
    let now = Utc::now();
    let command_id = format!("cmd_{}_{:08x}", now.timestamp_millis(), fastrand::u32(..));
    payload.entry("type").or_insert_with(|| json!(command));
    payload.entry("command").or_insert_with(|| json!(command));
    payload.entry("parameters").or_insert_with(|| json!({}));
    payload.entry("robot_id").or_insert_with(|| json!(robot_id));
    payload
        .entry("timestamp")
        .or_insert_with(|| json!(now.to_rfc3339()));
    payload.insert("id".into(), json!(command_id));
    payload.insert("command_id".into(), json!(command_id));
    let payload = Value::Object(payload);
    commands::record(&s.pool, &command_id, robot_id, &command, &topic, &payload).await?;
    let bytes = Bytes::from(payload.to_string());
    if let Err(e) = s.downlink.publish(&topic, bytes, Qos::AtLeastOnce).await {
        tracing::warn!(topic = %topic, error = %e, "command not published");
        crate::telemetry::command("unpublished");
        commands::mark_failed(&s.pool, &command_id, "not published: broker unavailable").await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MQTT broker did not take the command; it was not sent",
        ));
    }
    crate::telemetry::command("sent");
    tracing::info!(topic = %topic, command = %command, command_id = %command_id, "command sent");
    Ok((command_id, payload))
}
