//! Offline detection: a robot silent for longer than `robots.offline_after` (by
//! fleetsink's receive-time clock, `robots.last_seen`) is marked `offline`, with one
//! lifecycle log row; and the robots-by-status gauge. `background.rs` runs both on a
//! timer.
//!
//! One transaction per sweep: an `UPDATE` of at most `SWEEP_LIMIT` robots (the longest
//! silent first), which locks its rows `FOR UPDATE SKIP LOCKED` and returns the status
//! each had, then one insert of their log rows. Instances sweeping the same database
//! never wait for each other and never mark a robot twice: a row another instance holds
//! is skipped, and one it already marked no longer matches `status <> 'offline'`. A
//! batch bringing the robot back locks the row first (`db::writes`), so the two are
//! serialised too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::db::writes::insert_logs;
use crate::model::{LogRow, went_silent_log};
use crate::telemetry;

/// Robots marked offline per sweep at most; the rest wait for the next sweep.
pub const SWEEP_LIMIT: i64 = 1000;

/// The statuses reported as `fleetsink_robots{status}` (anything else is `other`, so
/// robots cannot create label values).
const GAUGE_STATUSES: [&str; 4] = ["online", "offline", "emergency_stopped", "unknown"];

/// Marks robots silent for longer than `offline_after` offline; returns how many.
pub async fn sweep_once(pool: &PgPool, offline_after: Duration) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let swept: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "WITH due AS ( \
             SELECT id, status FROM robots \
             WHERE status <> 'offline' AND is_active \
               AND last_seen < now() - make_interval(secs => $1) \
             ORDER BY last_seen LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE robots r SET status = 'offline', silent_since = now(), updated_at = now() \
         FROM due WHERE r.id = due.id \
         RETURNING r.robot_id, due.status, r.last_seen, now()",
    )
    .bind(offline_after.as_secs_f64())
    .bind(SWEEP_LIMIT)
    .fetch_all(&mut *tx)
    .await?;
    if !swept.is_empty() {
        let logs: Vec<LogRow> = swept
            .iter()
            .map(|(robot, was, last_seen, now)| went_silent_log(robot, was, *last_seen, *now))
            .collect();
        insert_logs(&mut tx, &logs).await?;
    }
    tx.commit().await?;
    for (robot, was, last_seen, _) in &swept {
        tracing::info!(robot_id = %robot, from = %was, %last_seen, "robot went silent: offline");
    }
    Ok(swept.len() as u64)
}

/// Refreshes `fleetsink_robots{status}` from the active robots.
pub async fn count_by_status(pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM robots WHERE is_active GROUP BY status")
            .fetch_all(pool)
            .await?;
    let mut counts = [0u64; GAUGE_STATUSES.len() + 1];
    for (status, n) in rows {
        let i = GAUGE_STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(GAUGE_STATUSES.len());
        counts[i] += n.max(0) as u64;
    }
    for (i, n) in counts.iter().enumerate() {
        telemetry::robots(GAUGE_STATUSES.get(i).copied().unwrap_or("other"), *n);
    }
    Ok(())
}
