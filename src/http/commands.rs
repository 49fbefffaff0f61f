//! Sending a downlink command, whichever route asks (TonyPi's management and
//! robot-data routes, fleetsink's devices route): the command is recorded in
//! `commands` (one row per robot expected to answer, `db::edits::commands`), then
//! published at QoS 1 on the topic of its kind (`commands::topic`: an emergency stop on
//! `tonypi/emergency_stop/{robot_id}` or `…/broadcast`, where TonyPi robots stop; a
//! settings update on `tonypi/config/{robot_id}`; the rest on
//! `tonypi/commands/{robot_id}`; configurable per kind) with a payload every TonyPi
//! client reads: `type` and `id` (what the robot client reads) plus `command`,
//! `command_id`, `parameters` (not for settings) and `timestamp` (what the TonyPi
//! backend sends). The robot's answer settles it (`db::writes::commands`); an emergency
//! stop not confirmed within `commands.confirm_within` becomes `unconfirmed`
//! (`db::maintenance::commands`).
//!
//! Recorded before published, so an answer can never arrive for a command fleetsink
//! does not know; a publish the broker refuses marks the rows failed and answers 503.
//! The record names who sent it (`requested_by`, `requested_from`) and carries its
//! audit row, in one transaction: a command is never sent without its audit row.

use axum::http::StatusCode;
use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::{ApiError, HttpState, check_robot_id};
use crate::audit::Actor;
use crate::commands::{self, Kind, Target};
use crate::config::CommandTopics;
use crate::db::edits::commands::NewCommand;
use crate::db::{edits, reads};
use crate::http::extract::Json;
use crate::model::{LogRow, message_fingerprint};
use crate::mqtt::Qos;

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

/// The answer of the routes that publish the caller's object (TonyPi's pass-through
/// shape, plus the command id).
pub(super) fn published(message: &'static str, sent: Dispatched) -> Json<CommandPublished> {
    Json(CommandPublished {
        success: true,
        message,
        topic: sent.topic,
        command: sent.payload,
        command_id: sent.command_id,
    })
}

/// A command recorded and published.
pub(super) struct Dispatched {
    pub command_id: String,
    pub topic: String,
    pub payload: Value,
    /// The robots whose answer is awaited.
    pub expected: Vec<String>,
}

/// Records and publishes one command to `target` on the topic its kind has in
/// `topics`. Fills in `type`/`command` from each other, `parameters`, `robot_id`,
/// `timestamp` (and an emergency stop's `reason`) where missing, and sets `id` and
/// `command_id`. An emergency stop gets a confirmation deadline and is logged at
/// CRITICAL. `actor` is recorded as the sender.
pub(super) async fn dispatch(
    s: &HttpState,
    actor: &Actor,
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
            if !reads::robots::is_known_robot(&s.pool, robot).await? {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("Robot {robot} not found"),
                ));
            }
            vec![robot.to_string()]
        }
        Target::Broadcast => reads::robots::online_robots(&s.pool).await?,
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
    if kind != Kind::Config {
        payload.entry("parameters").or_insert_with(|| json!({}));
    }
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
    edits::commands::record(
        &s.pool,
        actor,
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
        edits::commands::mark_failed(&s.pool, &command_id, "not published: broker unavailable")
            .await?;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the MQTT broker did not take the command; it was not sent",
        ));
    }
    crate::telemetry::command("sent");
    tracing::info!(topic = %topic, command = %command, command_id = %command_id, "command sent");
    if kind == Kind::EmergencyStop {
        log_emergency(s, actor, robot_id, &command_id, &expected).await?;
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
    s: &HttpState,
    actor: &Actor,
    robot_id: Option<&str>,
    command_id: &str,
    expected: &[String],
) -> Result<(), ApiError> {
    let target = robot_id.unwrap_or("every robot");
    let by = actor.describe();
    tracing::error!(robot = %target, command_id = %command_id, expected = expected.len(), by = %by, "CRITICAL: emergency stop sent");
    let row = LogRow {
        robot_id: robot_id.map(str::to_string),
        ts: Utc::now(),
        level: "CRITICAL".into(),
        category: "emergency".into(),
        source: Some("fleetsink".into()),
        message: format!("emergency stop sent to {target} by {by}"),
        details: Some(json!({
            "command_id": command_id,
            "expected_robots": expected,
            "requested_by": actor.name,
            "requested_from": actor.address,
        })),
        dedup_key: message_fingerprint("emergency_stop", command_id.as_bytes()),
    };
    Ok(edits::logs::insert(&s.pool, row).await?)
}
