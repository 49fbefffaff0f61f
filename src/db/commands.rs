//! `commands`: downlink commands recorded before they are published, settled by the
//! robot's answer (`db::writes::commands`, in the batch that carries it), marked
//! `unconfirmed` when an emergency stop is not confirmed by `confirm_by`, or `expired`
//! when no answer comes within `commands.expire_after`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::writes::insert_logs;
use crate::model::{LogRow, message_fingerprint};
use crate::telemetry;

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

/// How often overdue confirmations are looked for: a fifth of the window, between 200 ms
/// and 1 s, so an unconfirmed stop shows within about a second of its deadline.
pub fn confirm_interval(confirm_within: Duration) -> Duration {
    (confirm_within / 5).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// Marks overdue confirmations every [`confirm_interval`] until cancelled; each is
/// logged at CRITICAL and counted (`fleetsink_commands_total{result="unconfirmed"}`).
pub async fn watch_confirmations(
    pool: PgPool,
    confirm_within: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(confirm_interval(confirm_within));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        match mark_unconfirmed(&pool).await {
            Ok(due) => {
                for u in due {
                    telemetry::command("unconfirmed");
                    tracing::error!(
                        command_id = %u.command_id,
                        robot_id = %u.robot_id.as_deref().unwrap_or("-"),
                        command = %u.command,
                        "CRITICAL: {} not confirmed by the robot: it may still be moving",
                        u.command
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "confirmation check failed; retrying next tick"),
        }
    }
}
