//! fleetsink's own command routes: a command to a generic device (the `devices`
//! profile's topics, whatever `commands.profile` says) and the commands sent to a robot
//! with their state. Sending is shared with TonyPi's routes (`http/commands.rs`).

use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;

use crate::audit::Actor;
use crate::commands::Target;
use crate::config::CommandTopics;
use crate::db::reads::commands::{self as sent, CommandRow};
use crate::http::commands::{CommandPublished, dispatch, published};
use crate::http::extract::{Json, Path, Query};
use crate::http::{ApiError, Detail, HttpState, check_robot_id, limit};

/// A JSON object to a generic device, on `devices/{device_id}/commands`
/// (`devices/{device_id}/emergency_stop` for an `emergency_stop`).
#[utoipa::path(post, path = "/api/v1/devices/{device_id}/commands", tag = "commands",
    params(("device_id" = String, Path, description = "The device's id")),
    request_body(content = Object, description = "a command object with `type` or `command`"),
    responses((status = 200, body = CommandPublished),
        (status = 400, body = Detail), (status = 404, body = Detail), (status = 503, body = Detail)))]
pub async fn device(
    State(s): State<HttpState>,
    actor: Actor,
    Path(device_id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<CommandPublished>, ApiError> {
    let topics = CommandTopics::devices();
    let sent = dispatch(&s, &actor, &topics, Target::Robot(&device_id), body).await?;
    Ok(published("Command sent successfully", sent))
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
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<CommandRow>>, ApiError> {
    check_robot_id(&robot_id)?;
    let limit = limit(q.limit, 100)?;
    Ok(Json(sent::list(&s.pool, &robot_id, limit).await?))
}
