//! `jobs`: the job state machine (README, "Topics"), one statement or two per event, applied
//! in receive order; and scanned items recorded as the active job's `last_item`.
//!
//! A job event applies only to the job it belongs to (its `start_time`, or the active
//! job started before it), and an event older than the robot's latest job is a stale
//! resend that changes nothing.

use serde_json::Value;
use sqlx::PgConnection;

use super::{clean, clean_json};
use crate::model::{JobAction, JobEvent};

/// Applies one job event. Returns rows inserted or updated.
pub(super) async fn apply(
    conn: &mut PgConnection,
    robot_id: &str,
    job: &JobEvent,
) -> Result<u64, sqlx::Error> {
    let status = job.action.job_status();
    let start_time = job.start_time.unwrap_or(job.ts);
    let last_item = job.last_item.as_ref().map(clean_json);
    let mut n = 0;
    if job.action == JobAction::Start {
        // A new job closes the robot's active one; an older, redelivered start does not.
        n += sqlx::query(
            "UPDATE jobs SET status = 'completed', end_time = $2, updated_at = now() \
             WHERE robot_id = $1 AND status = 'active' AND start_time < $2",
        )
        .bind(robot_id)
        .bind(start_time)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    } else {
        n += sqlx::query(
            "UPDATE jobs SET \
                task_name = COALESCE($2, task_name), phase = COALESCE($3, phase), \
                items_done = COALESCE($4, items_done), items_total = COALESCE($5, items_total), \
                percent_complete = COALESCE($6, percent_complete), last_item = COALESCE($7, last_item), \
                elapsed_time = COALESCE($8, elapsed_time), estimated_duration = COALESCE($9, estimated_duration), \
                action_duration = COALESCE($10, action_duration), success = COALESCE($11, success), \
                cancel_reason = COALESCE($12, cancel_reason), status = $13, \
                end_time = CASE WHEN $13 = 'active' THEN NULL ELSE $14 END, updated_at = now() \
             WHERE robot_id = $1 AND status = 'active' \
               AND (start_time = $15 OR ($15 IS NULL AND start_time <= $14))",
        )
        .bind(robot_id)
        .bind(job.task_name.as_deref().map(clean))
        .bind(job.phase.as_deref().map(clean))
        .bind(job.items_done)
        .bind(job.items_total)
        .bind(job.percent)
        .bind(&last_item)
        .bind(job.elapsed)
        .bind(job.estimated)
        .bind(job.action_duration)
        .bind(job.success)
        .bind(job.reason.as_deref().map(clean))
        .bind(status)
        .bind(job.ts)
        .bind(job.start_time)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(n);
        }
    }
    // Start, or an event for a job fleetsink never saw start (it joined mid-job):
    // record it, once — (robot_id, start_time) is unique — unless the robot already
    // has a later job, which makes this event a stale resend.
    n += sqlx::query(
        "INSERT INTO jobs (robot_id, task_name, status, phase, start_time, end_time, items_done, \
             items_total, percent_complete, last_item, success, cancel_reason, elapsed_time, \
             estimated_duration, action_duration) \
         SELECT $1, $2, $3, $4, $5, CASE WHEN $3 = 'active' THEN NULL ELSE $6 END, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15 \
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE robot_id = $1 AND start_time > $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(robot_id)
    .bind(job.task_name.as_deref().map(clean))
    .bind(status)
    .bind(job.phase.as_deref().map(clean))
    .bind(start_time)
    .bind(job.ts)
    .bind(job.items_done)
    .bind(job.items_total)
    .bind(job.percent)
    .bind(&last_item)
    .bind(job.success)
    .bind(job.reason.as_deref().map(clean))
    .bind(job.elapsed)
    .bind(job.estimated)
    .bind(job.action_duration)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n)
}

/// Records a scanned item as the robot's active job's `last_item`.
pub(super) async fn record_scan(
    conn: &mut PgConnection,
    robot_id: &str,
    item: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET last_item = $2, updated_at = now() WHERE robot_id = $1 AND status = 'active'",
    )
    .bind(robot_id)
    .bind(clean_json(item))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
