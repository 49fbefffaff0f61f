//! The `commands` table as the API lists it: one row per robot a command was sent to,
//! with its state and the robot's answer. Recording and failing commands are edits
//! (`db::edits::commands`); answers are matched in the ingest path (`db::writes`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// A command as listed by the API: one row per robot it was sent to.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CommandRow {
    pub command_id: String,
    pub robot_id: Option<String>,
    pub command: String,
    pub topic: String,
    pub payload: Value,
    pub sent_at: DateTime<Utc>,
    /// `sent` (published, no answer yet), `acknowledged` (the robot answered that it
    /// carried it out), `failed` (the robot answered that it did not, or the broker did
    /// not take it), `unconfirmed` (an emergency stop not confirmed in time), `expired`
    /// (no answer within `commands.expire_after`).
    pub status: String,
    /// The robot's answer, as it sent it.
    pub response: Option<Value>,
    pub responded_at: Option<DateTime<Utc>>,
    /// When the robot's confirmation was due (emergency stops).
    pub confirm_by: Option<DateTime<Utc>>,
    /// One of a broadcast's rows.
    pub broadcast: bool,
    /// Who sent it: a console user's name, `admin-token` or `unauthenticated` (an open
    /// API); `null` for commands recorded before the audit trail existed.
    pub requested_by: Option<String>,
    /// The address the request came from (the HTTP peer: a proxy's, behind one).
    pub requested_from: Option<String>,
}

/// The robot's commands, newest first.
pub async fn list(
    pool: &PgPool,
    robot_id: &str,
    limit: i64,
) -> Result<Vec<CommandRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT command_id, robot_id, command, topic, payload, sent_at, status, response, \
                responded_at, confirm_by, broadcast, requested_by, \
                host(requested_from) AS requested_from \
         FROM commands WHERE robot_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2",
    )
    .bind(robot_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
