//! Commands sent through the API: recorded before they are published, one row per
//! robot expected to answer, and failed when the broker does not take them. The robot's
//! answer settles a row in the ingest path (`db::writes::commands`). Each command
//! records who sent it (`requested_by`, `requested_from`) and its audit row, in one
//! transaction.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::audit::{Actor, Entry, action};
use crate::commands::Kind;
use crate::db::edits::audit;

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

/// Records a command about to be published by `actor`, one row per robot expected to
/// answer, with its audit row.
pub async fn record(pool: &PgPool, actor: &Actor, c: &NewCommand<'_>) -> Result<(), sqlx::Error> {
    let robots: Vec<Option<&str>> = if c.robots.is_empty() {
        vec![None]
    } else {
        c.robots.iter().map(|r| Some(r.as_str())).collect()
    };
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO commands (command_id, robot_id, command, topic, payload, broadcast, \
             confirm_by, requested_by, requested_from) \
         SELECT $1, r, $3, $4, $5, $6, $7, $8, $9::inet FROM UNNEST($2::text[]) AS r",
    )
    .bind(c.command_id)
    .bind(&robots)
    .bind(c.command)
    .bind(c.topic)
    .bind(c.payload)
    .bind(c.broadcast)
    .bind(c.confirm_by)
    .bind(&actor.name)
    .bind(actor.address.map(|a| a.to_string()))
    .execute(&mut *tx)
    .await?;
    audit::commit(tx, actor, &entry(c)).await
}

/// The audit entry of a command: its kind decides the action.
fn entry(c: &NewCommand<'_>) -> Entry {
    let target = if c.broadcast {
        "broadcast".to_string()
    } else {
        c.robots.first().cloned().unwrap_or_default()
    };
    let (action, what) = match Kind::of(c.command) {
        Kind::EmergencyStop => (action::EMERGENCY_STOP, "emergency stop".to_string()),
        Kind::Resume => (action::RESUME, "resume".to_string()),
        Kind::Config => (action::ROBOT_CONFIG, "settings".to_string()),
        Kind::Other => (action::COMMAND, format!("command {}", c.command)),
    };
    let whom = if c.broadcast { "every robot" } else { &target };
    let mut e =
        Entry::new(action, target.clone(), format!("{what} sent to {whom}")).details(json!({
            "command": c.command,
            "topic": c.topic,
            "broadcast": c.broadcast,
            "expected_robots": c.robots,
            "payload": c.payload,
        }));
    if !c.broadcast {
        e = e.robot(&target);
    }
    e.command_id = Some(c.command_id.to_string());
    e
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
