//! `jobs` as the API reads them: the history (newest first), a robot's current or last
//! job, and the totals over all jobs (one aggregate each). Job events are written by the
//! ingest path (`db::writes::jobs`).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

/// A `jobs` row, every column the API shows.
#[derive(Debug, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub robot_id: String,
    pub task_name: Option<String>,
    pub status: String,
    pub phase: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub items_total: Option<i64>,
    pub items_done: Option<i64>,
    pub percent_complete: Option<f64>,
    pub last_item: Option<Value>,
    pub success: Option<bool>,
    pub cancel_reason: Option<String>,
    pub elapsed_time: Option<f64>,
    pub estimated_duration: Option<f64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "id, robot_id, task_name, status, phase, start_time, end_time, \
    items_total, items_done, percent_complete, last_item, success, cancel_reason, \
    elapsed_time, estimated_duration, created_at, updated_at";

/// Jobs newest first (by creation), optionally one robot's.
pub async fn history(
    pool: &PgPool,
    robot_id: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR robot_id = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(robot_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The robot's current (or last started) job, if it ever had one.
pub async fn latest(pool: &PgPool, robot_id: &str) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE robot_id = $1 ORDER BY start_time DESC LIMIT 1"
    )))
    .bind(robot_id)
    .fetch_optional(pool)
    .await
}

/// The robot's active job, if it has one.
pub async fn active(pool: &PgPool, robot_id: &str) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE robot_id = $1 AND status = 'active' LIMIT 1"
    )))
    .bind(robot_id)
    .fetch_optional(pool)
    .await
}

/// Totals over jobs (TonyPi's `overall-stats` and `cumulative-stats`).
#[derive(Debug, sqlx::FromRow)]
pub struct JobTotals {
    pub robots_with_jobs: i64,
    pub total_jobs: i64,
    pub active_jobs: i64,
    pub completed_jobs: i64,
    pub cancelled_jobs: i64,
    pub failed_jobs: i64,
    /// Sums of `items_done` and `items_total` (a job without counts adds 0).
    pub items_done: i64,
    pub items_target: i64,
    /// Summed and averaged over the jobs that ended (`end_time - start_time`); 0 without.
    pub total_duration_seconds: f64,
    pub average_duration_seconds: f64,
    /// Over the jobs that report a percentage; 0 without.
    pub average_completion_percent: f64,
}

/// Totals over all jobs, or one robot's: one aggregate over `jobs`.
pub async fn totals(pool: &PgPool, robot_id: Option<&str>) -> Result<JobTotals, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(DISTINCT robot_id) AS robots_with_jobs, count(*) AS total_jobs, \
                count(*) FILTER (WHERE status = 'active') AS active_jobs, \
                count(*) FILTER (WHERE status = 'completed') AS completed_jobs, \
                count(*) FILTER (WHERE status = 'cancelled') AS cancelled_jobs, \
                count(*) FILTER (WHERE status = 'failed') AS failed_jobs, \
                COALESCE(sum(items_done), 0)::int8 AS items_done, \
                COALESCE(sum(items_total), 0)::int8 AS items_target, \
                COALESCE(sum(extract(epoch FROM end_time - start_time)), 0)::float8 \
                    AS total_duration_seconds, \
                COALESCE(avg(extract(epoch FROM end_time - start_time)), 0)::float8 \
                    AS average_duration_seconds, \
                COALESCE(avg(percent_complete), 0)::float8 AS average_completion_percent \
         FROM jobs WHERE ($1::text IS NULL OR robot_id = $1)",
    )
    .bind(robot_id)
    .fetch_one(pool)
    .await
}
