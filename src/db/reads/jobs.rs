//! `jobs` as the API reads them: the history (newest first) and a robot's current or
//! last job. Job events are written by the ingest path (`db::writes::jobs`).

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
