//! `commands`: downlink commands recorded before they are published, settled by the
//! robot's answer (`db::writes::commands`, in the batch that carries it), marked
//! `unconfirmed` when an emergency stop is not confirmed by `confirm_by`, or `expired`
//! when no answer comes within `commands.expire_after` (both `db::maintenance::commands`).

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
}

/// A command about to be published.
pub struct NewCommand<'a> {
    pub command_id: &'a str,
    pub command: &'a str,
    pub topic: &'a str,
    pub payload: &'a Value,
    /// The robots expected to answer: one, or for a broadcast those online now. A
    /// broadcast with nobody to answer it is recorded once, without a robot.
    pub robots: &'a [String],
    pub broadcast: bool,
    /// When the robots must have confirmed it (emergency stops).
    pub confirm_by: Option<DateTime<Utc>>,
}

/// Records a command about to be published, one row per robot expected to answer.
pub async fn record(pool: &PgPool, c: &NewCommand<'_>) -> Result<(), sqlx::Error> {
    let robots: Vec<Option<&str>> = if c.robots.is_empty() {
        vec![None]
    } else {
        c.robots.iter().map(|r| Some(r.as_str())).collect()
    };
    sqlx::query(
        "INSERT INTO commands (command_id, robot_id, command, topic, payload, broadcast, confirm_by) \
         SELECT $1, r, $3, $4, $5, $6, $7 FROM UNNEST($2::text[]) AS r",
    )
    .bind(c.command_id)
    .bind(&robots)
    .bind(c.command)
    .bind(c.topic)
    .bind(c.payload)
    .bind(c.broadcast)
    .bind(c.confirm_by)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a command that could not be published (all its rows).
pub async fn mark_failed(pool: &PgPool, command_id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE commands SET status = 'failed', response = jsonb_build_object('error', $2::text), \
         responded_at = now() WHERE command_id = $1",
    )
    .bind(command_id)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether `robot_id` is a registered, active robot (commands go to known robots only).
pub async fn is_known_robot(pool: &PgPool, robot_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM robots WHERE robot_id = $1 AND is_active)")
        .bind(robot_id)
        .fetch_one(pool)
        .await
}

/// The active robots not marked offline: those a broadcast expects answers from.
pub async fn online_robots(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT robot_id FROM robots WHERE is_active AND status <> 'offline' ORDER BY robot_id",
    )
    .fetch_all(pool)
    .await
}

/// The robot's commands, newest first.
pub async fn list(
    pool: &PgPool,
    robot_id: &str,
    limit: i64,
) -> Result<Vec<CommandRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT command_id, robot_id, command, topic, payload, sent_at, status, response, \
                responded_at, confirm_by, broadcast \
         FROM commands WHERE robot_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2",
    )
    .bind(robot_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}
