//! The TonyPi backend's `management` router (`backend/routers/management.py`): a
//! command to one robot, emergency stop (one robot or all) and resume, with TonyPi's
//! request and answer shapes. Sending is shared with the other command routes
//! (`http/commands.rs`); an emergency stop answers with the robots expected to
//! confirm it, which must do so within `commands.confirm_within` or are shown
//! `unconfirmed`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::commands::{EMERGENCY_STOP, RESUME, Target};
use crate::http::commands::dispatch;
use crate::http::{ApiError, Detail, HttpState};

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
    State(s): State<HttpState>,
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
    State(s): State<HttpState>,
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
    s: &HttpState,
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
