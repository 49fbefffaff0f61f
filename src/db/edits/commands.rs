//! Commands sent through the API: recorded before they are published, one row per
//! robot expected to answer, and failed when the broker does not take them. The robot's
//! answer settles a row in the ingest path (`db::writes::commands`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

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
