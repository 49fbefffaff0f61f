//! `commands`: downlink commands recorded before they are published, answered by the
//! robot's response (matched by `command_id` in the batch that carries it,
//! `db::writes`), or expired when no answer comes within `commands.expire_after`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

/// A command as listed by the API.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CommandRow {
    pub command_id: String,
    pub robot_id: Option<String>,
    pub command: String,
    pub topic: String,
    pub payload: Value,
    pub sent_at: DateTime<Utc>,
    pub status: String,
    pub response: Option<Value>,
    pub responded_at: Option<DateTime<Utc>>,
}

/// Records a command about to be published.
pub async fn record(
    pool: &PgPool,
    command_id: &str,
    robot_id: Option<&str>,
    command: &str,
    topic: &str,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO commands (command_id, robot_id, command, topic, payload) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(command_id)
    .bind(robot_id)
    .bind(command)
    .bind(topic)
    .bind(payload)
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a command that could not be published.
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

/// The robot's commands, newest first.
pub async fn list(
    pool: &PgPool,
    robot_id: &str,
    limit: i64,
) -> Result<Vec<CommandRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT command_id, robot_id, command, topic, payload, sent_at, status, response, responded_at \
         FROM commands WHERE robot_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2",
    )
    .bind(robot_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Commands without an answer after `after` become `expired`; returns how many.
pub async fn expire(pool: &PgPool, after: std::time::Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE commands SET status = 'expired' \
         WHERE status = 'sent' AND sent_at < now() - make_interval(secs => $1)",
    )
    .bind(after.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}
