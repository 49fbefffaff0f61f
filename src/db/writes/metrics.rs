//! `metrics`: nearly all rows of a batch.
//!
//! The fast path is a plain `INSERT … SELECT FROM UNNEST` ([`MetricsWrite::Plain`]):
//! without `ON CONFLICT`, PostgreSQL skips the speculative insertion and the batch
//! commits faster (BENCHMARKS.md). A redelivered message makes that insert fail on the
//! (robot_id, name, ts) unique key; the sink then rolls back and writes the same batch
//! again with [`MetricsWrite::SkipExisting`] (`ON CONFLICT DO NOTHING`). Binary `COPY`
//! is not used: sqlx 0.9.0 does not set `TCP_NODELAY`, and the separate
//! CopyData/CopyDone writes then wait out the peer's delayed ACK (~40 ms per batch,
//! measured).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use crate::model::MetricRow;

/// How metric rows are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsWrite {
    /// Plain `INSERT … SELECT FROM UNNEST`: the fast path. Fails with a unique
    /// violation (SQLSTATE 23505, see [`is_unique_violation`]) when any row exists.
    Plain,
    /// `INSERT … ON CONFLICT DO NOTHING`: skips rows that already exist.
    SkipExisting,
}

/// Whether `e` is the unique violation a [`MetricsWrite::Plain`] insert of an already
/// written row raises.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// The insert without a conflict clause (a literal, so both variants below are
/// `&'static str`).
macro_rules! insert_sql {
    () => {
        "INSERT INTO metrics (robot_id, ts, name, value, unit) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::float8[], $5::text[])"
    };
}

pub(super) async fn insert(
    conn: &mut PgConnection,
    rows: &[&MetricRow],
    mode: MetricsWrite,
) -> Result<u64, sqlx::Error> {
    let robot: Vec<String> = rows.iter().map(|m| clean(&m.robot_id)).collect();
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|m| m.ts).collect();
    let name: Vec<String> = rows.iter().map(|m| clean(&m.name)).collect();
    let value: Vec<f64> = rows.iter().map(|m| m.value).collect();
    let unit: Vec<Option<String>> = rows.iter().map(|m| m.unit.as_deref().map(clean)).collect();
    let sql = match mode {
        MetricsWrite::Plain => insert_sql!(),
        MetricsWrite::SkipExisting => concat!(insert_sql!(), " ON CONFLICT DO NOTHING"),
    };
    Ok(sqlx::query(sql)
        .bind(&robot)
        .bind(&ts)
        .bind(&name)
        .bind(&value)
        .bind(&unit)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}
