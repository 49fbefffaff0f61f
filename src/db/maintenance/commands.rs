//! Settling the downlink commands no answer will settle: a command without an answer
//! after `commands.expire_after` becomes `expired`; an emergency stop not confirmed by
//! its `confirm_by` becomes `unconfirmed`, with a CRITICAL `logs` row, since the robot
//! may still be moving. `background.rs` runs both on a timer; recording commands and
//! matching answers is elsewhere (`db::edits::commands`, `db::writes::commands`).
//!
//! Both updates take only rows still `sent`, so instances sharing the database settle
//! (and log) each row once, and an answer committed first always wins.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::db::writes::insert_logs;
use crate::model::{LogRow, message_fingerprint};

/// Commands without an answer after `after` become `expired`; returns how many. Commands
/// that must be confirmed become `unconfirmed` instead ([`mark_unconfirmed`]).
pub async fn expire(pool: &PgPool, after: Duration) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE commands SET status = 'expired' \
         WHERE status = 'sent' AND confirm_by IS NULL \
           AND sent_at < now() - make_interval(secs => $1)",
    )
    .bind(after.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected())
}

/// A command its robot did not confirm in time.
#[derive(Debug, sqlx::FromRow)]
pub struct Unconfirmed {
    pub command_id: String,
    pub robot_id: Option<String>,
    pub command: String,
    pub sent_at: DateTime<Utc>,
}

/// Marks the commands whose confirmation is overdue `unconfirmed`, each with a CRITICAL
/// `logs` row, in one transaction; returns them. Instances sharing the database mark
/// (and log) each row once: the update takes only rows still `sent`.
pub async fn mark_unconfirmed(pool: &PgPool) -> Result<Vec<Unconfirmed>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<Unconfirmed> = sqlx::query_as(
        "UPDATE commands SET status = 'unconfirmed' \
         WHERE status = 'sent' AND confirm_by <= now() \
         RETURNING command_id, robot_id, command, sent_at",
    )
    .fetch_all(&mut *tx)
    .await?;
    if !due.is_empty() {
        let now = Utc::now();
        let logs: Vec<LogRow> = due.iter().map(|u| unconfirmed_log(u, now)).collect();
        insert_logs(&mut tx, &logs).await?;
    }
    tx.commit().await?;
    Ok(due)
}

/// The CRITICAL log row of an unconfirmed command.
fn unconfirmed_log(u: &Unconfirmed, now: DateTime<Utc>) -> LogRow {
    let robot = u.robot_id.as_deref().unwrap_or("no robot");
    let key = format!("{}/{robot}", u.command_id);
    LogRow {
        robot_id: u.robot_id.clone(),
        ts: now,
        level: "CRITICAL".into(),
        category: "emergency".into(),
        source: Some("fleetsink".into()),
        message: format!(
            "{} {} NOT CONFIRMED by {robot}: the robot may still be moving",
            u.command, u.command_id
        ),
        details: Some(json!({
            "command_id": u.command_id,
            "command": u.command,
            "sent_at": u.sent_at,
            "status": "unconfirmed",
        })),
        dedup_key: message_fingerprint("unconfirmed", key.as_bytes()),
    }
}
