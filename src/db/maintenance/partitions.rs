//! Partition maintenance for `metrics`, `metric_rollups`, `logs` and `ingest_errors`:
//! one round creates today's partition and `premake_days` ahead, drops partitions older
//! than the table's retention (exported first when `retention.archive_dir` is set,
//! `archive.rs`; the rollups, derived from the metrics, are not) and trims
//! `metric_latest` and `metric_rollup_marks` with the metrics. `background.rs` runs a round at start-up and
//! then every `retention.interval`; `fleetsink partitions --maintain` runs one by hand.
//!
//! A session advisory lock makes sure only one fleetsink instance on a database runs a
//! round at a time; the others skip it. A partition that could not be archived is kept
//! and listed in the round's report, so the next round tries again: nothing is dropped
//! unarchived.

use chrono::{Duration, NaiveDate, NaiveTime};
// Partition names come from `days::partition_name` and are checked by
// `days::parse_partition_day`, never from input, which makes `AssertSqlSafe` true.
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::archive;
use super::days::{TABLES, create_day, parse_partition_day, partition_name};
use crate::config::RetentionConfig;

/// Advisory lock key: ASCII "fleetsnk".
const MAINTENANCE_LOCK: i64 = 0x666c_6565_7473_6e6b;

/// What one maintenance round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Partitions due for dropping that could not be archived (kept for the next round).
    pub failed: Vec<String>,
    /// False when another instance held the lock and this round was skipped.
    pub ran: bool,
}

fn retention_days(cfg: &RetentionConfig, table: &str) -> u32 {
    match table {
        "metrics" | "metric_rollups" => cfg.metrics_days,
        "logs" => cfg.logs_days,
        _ => cfg.errors_days,
    }
}

/// One maintenance round as of `today` (UTC), under the advisory lock; skipped (with
/// `ran = false`) when another instance holds it.
pub async fn maintain_for_day(
    pool: &PgPool,
    cfg: &RetentionConfig,
    today: NaiveDate,
) -> Result<Report, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(MAINTENANCE_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        tracing::info!("partition maintenance skipped: another instance holds the lock");
        return Ok(Report::default());
    }
    let result = maintain_locked(&mut conn, cfg, today).await;
    // Unlock even when the round failed, so the next round (here or elsewhere) can run.
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MAINTENANCE_LOCK)
        .execute(&mut *conn)
        .await;
    let report = result?;
    unlock?;
    Ok(report)
}

async fn maintain_locked(
    conn: &mut PgConnection,
    cfg: &RetentionConfig,
    today: NaiveDate,
) -> Result<Report, sqlx::Error> {
    let mut report = Report {
        ran: true,
        ..Report::default()
    };
    for t in TABLES {
        let existing = partition_names(conn, t.table).await?;
        for offset in -1..=i64::from(cfg.premake_days) {
            let day = today + Duration::days(offset);
            let name = partition_name(t.table, day);
            if !existing.contains(&name) {
                create_day(conn, t, day).await?;
                report.created.push(name);
            }
        }
        let keep_from = today - Duration::days(i64::from(retention_days(cfg, t.table)));
        for name in &existing {
            if let Some(day) = parse_partition_day(t.table, name)
                && day < keep_from
            {
                match cfg.archive_dir.as_ref().filter(|_| t.archived) {
                    Some(dir) => {
                        match archive::archive_and_drop(conn, dir, t.table, name, day).await {
                            Ok((path, rows)) => {
                                tracing::info!(partition = %name, rows, archive = %path.display(), "partition archived, then dropped");
                            }
                            Err(e) => {
                                // Kept: the next round tries again.
                                tracing::error!(partition = %name, error = %e, "partition not archived, so not dropped");
                                report.failed.push(name.clone());
                                continue;
                            }
                        }
                    }
                    None => {
                        // Identifiers come from our own naming scheme, checked by the parser.
                        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                report.dropped.push(name.clone());
            }
        }
        if t.table == "metrics" {
            // The latest-value table must not outlive the rows it summarises.
            let cutoff = keep_from.and_time(NaiveTime::MIN).and_utc();
            for sql in [
                "DELETE FROM metric_latest WHERE ts < $1",
                "DELETE FROM metric_rollup_marks WHERE minute < $1",
            ] {
                sqlx::query(sql).bind(cutoff).execute(&mut *conn).await?;
            }
        }
    }
    if !report.created.is_empty() || !report.dropped.is_empty() {
        tracing::info!(created = ?report.created, dropped = ?report.dropped, "partition maintenance");
    }
    Ok(report)
}

/// One partition as `fleetsink partitions` lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartitionInfo {
    pub table: String,
    pub partition: String,
    /// PostgreSQL's estimate (`reltuples`); `None` before the first ANALYZE.
    pub rows_estimate: Option<i64>,
    /// Heap, indexes and TOAST, human-readable (`pg_size_pretty`).
    pub size: String,
    /// The partition bound: `FROM ('…') TO ('…')`, or `DEFAULT`.
    pub range: String,
}

/// Every partition of the day-partitioned tables, by table and day.
pub async fn list(pool: &PgPool) -> Result<Vec<PartitionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.relname::text AS table, c.relname::text AS partition, \
                CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::int8 END AS rows_estimate, \
                pg_size_pretty(pg_total_relation_size(c.oid)) AS size, \
                regexp_replace(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES ', '') AS range \
         FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname IN ('metrics', 'metric_rollups', 'logs', 'ingest_errors') \
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
}

/// The names of `table`'s partitions (its day partitions and its default partition).
async fn partition_names(conn: &mut PgConnection, table: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid \
         JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
}

/// Empties `table`'s day partitions of the days before `before` (TRUNCATE: at once,
/// leaving no dead rows) and returns how many rows they held. Runs in the caller's
/// transaction (`conn` must be in one), which it makes hold the maintenance lock, so
/// no maintenance round drops one of these partitions meanwhile; each partition is
/// locked before it is counted, so no row arrives between the count and the TRUNCATE.
/// The partitions stay (empty) until retention drops them.
pub async fn truncate_days_before(
    conn: &mut sqlx::PgConnection,
    table: &str,
    before: NaiveDate,
) -> Result<u64, sqlx::Error> {
    if !TABLES.iter().any(|t| t.table == table) {
        return Ok(0);
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MAINTENANCE_LOCK)
        .execute(&mut *conn)
        .await?;
    let mut rows = 0;
    for name in partition_names(conn, table).await? {
        if parse_partition_day(table, &name).is_none_or(|day| day >= before) {
            continue;
        }
        // The name is `table` (one of TABLES) and a day, checked by the parser.
        sqlx::query(AssertSqlSafe(format!(
            "LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *conn)
        .await?;
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(&mut *conn)
            .await?;
        if n > 0 {
            sqlx::query(AssertSqlSafe(format!("TRUNCATE {name}")))
                .execute(&mut *conn)
                .await?;
            rows += n as u64;
        }
    }
    Ok(rows)
}
