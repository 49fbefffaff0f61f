//! `logs` rows written through the API: the row that records an emergency stop sent,
//! written with the ingest path's insert so both dedup the same way; a log row an
//! operator posts; and clearing old logs (recorded in the audit trail). The audit
//! trail's own `logs` rows are written by `db::edits::audit`.

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

use crate::audit::{Actor, Entry, action};
use crate::db::edits::audit;

use crate::db::maintenance::partitions;
use crate::db::writes::insert_logs;
use crate::model::LogRow;

/// Writes one `logs` row; returns once it is committed.
pub async fn insert(pool: &PgPool, row: LogRow) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    insert_logs(&mut conn, &[row]).await?;
    Ok(())
}

/// Writes one `logs` row and returns its id and time as stored (microseconds);
/// returns once it is committed.
pub async fn create(pool: &PgPool, row: &LogRow) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, ts",
    )
    .bind(&row.robot_id)
    .bind(row.ts)
    .bind(&row.level)
    .bind(&row.category)
    .bind(&row.source)
    .bind(&row.message)
    .bind(&row.details)
    .bind(row.dedup_key)
    .fetch_one(pool)
    .await
}

/// Deletes every log row older than `cutoff` and returns how many there were, in one
/// transaction with its audit row (which, being new, stays): the day partitions wholly
/// before `cutoff` are emptied (TRUNCATE: no row-by-row delete, no dead rows left to
/// vacuum), the rest of `cutoff`'s day and the default partition are deleted row by row.
pub async fn clear_before(
    pool: &PgPool,
    actor: &Actor,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let whole_days = partitions::truncate_days_before(&mut tx, "logs", cutoff.date_naive()).await?;
    let rest = sqlx::query("DELETE FROM logs WHERE ts < $1")
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let deleted = whole_days + rest;
    let e = Entry::new(
        action::LOGS_CLEAR,
        None,
        format!("{deleted} log rows before {} deleted", cutoff.to_rfc3339()),
    )
    .details(json!({ "before": cutoff, "deleted": deleted }));
    audit::commit(tx, actor, &e).await?;
    Ok(deleted)
}
