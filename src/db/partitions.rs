//! Day partitions for `metrics`, `logs` and `ingest_errors` (UTC days).
//!
//! Maintenance creates today's partition and `premake_days` ahead, drops partitions
//! older than the table's retention, and runs at start-up and then on a timer. A
//! session advisory lock makes sure only one fleetsink instance on a database does it
//! at a time; the others skip the round.
//!
//! A row for a day without a partition lands in the table's default partition. When
//! that day's partition is created later, its rows are moved out of the default
//! partition in the same transaction, since PostgreSQL refuses to attach a partition
//! whose range the default partition already holds rows for.

use chrono::{Duration, NaiveDate, NaiveTime, Utc};
// Table and partition names below come from `TABLES` and our own date format, never
// from input, which is what makes the `AssertSqlSafe` wrappers true.
use sqlx::{AssertSqlSafe, PgPool};

use crate::config::RetentionConfig;
use crate::telemetry;

/// Advisory lock key: ASCII "fleetsnk".
const MAINTENANCE_LOCK: i64 = 0x666c_6565_7473_6e6b;

/// A partitioned table and its partition key.
#[derive(Debug, Clone, Copy)]
pub struct Partitioned {
    pub table: &'static str,
    pub column: &'static str,
}

pub const TABLES: [Partitioned; 3] = [
    Partitioned {
        table: "metrics",
        column: "ts",
    },
    Partitioned {
        table: "logs",
        column: "ts",
    },
    Partitioned {
        table: "ingest_errors",
        column: "received_at",
    },
];

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

pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

fn retention_days(cfg: &RetentionConfig, table: &str) -> u32 {
    match table {
        "metrics" => cfg.metrics_days,
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
    conn: &mut sqlx::PgConnection,
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
                match &cfg.archive_dir {
                    Some(dir) => {
                        match super::archive::archive_and_drop(conn, dir, t.table, name, day).await
                        {
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
            sqlx::query("DELETE FROM metric_latest WHERE ts < $1")
                .bind(cutoff)
                .execute(&mut *conn)
                .await?;
        }
    }
    if !report.created.is_empty() || !report.dropped.is_empty() {
        tracing::info!(created = ?report.created, dropped = ?report.dropped, "partition maintenance");
    }
    Ok(report)
}

/// The names of `table`'s partitions (its day partitions and its default partition).
async fn partition_names(
    conn: &mut sqlx::PgConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
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

fn parse_partition_day(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Creates `table`'s partition of `day` unless it exists (for restores).
pub async fn ensure_day(
    conn: &mut sqlx::PgConnection,
    table: &str,
    day: NaiveDate,
) -> Result<(), sqlx::Error> {
    let Some(t) = TABLES.iter().find(|t| t.table == table) else {
        return Ok(());
    };
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(partition_name(table, day))
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        create_day(conn, *t, day).await?;
    }
    Ok(())
}

async fn create_day(
    conn: &mut sqlx::PgConnection,
    t: Partitioned,
    day: NaiveDate,
) -> Result<(), sqlx::Error> {
    let name = partition_name(t.table, day);
    let from = day.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    let to = (day + Duration::days(1))
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc());
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(());
    };
    let (table, column) = (t.table, t.column);
    let bounds = format!(
        "FROM ('{}') TO ('{}')",
        from.format("%Y-%m-%d %H:%M:%S+00"),
        to.format("%Y-%m-%d %H:%M:%S+00")
    );
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )))
    .execute(&mut *tx)
    .await?;
    let moved = sqlx::query(AssertSqlSafe(format!(
        "WITH moved AS (DELETE FROM {table}_default WHERE {column} >= $1 AND {column} < $2 RETURNING *) \
         INSERT INTO {name} SELECT * FROM moved"
    )))
    .bind(from)
    .bind(to)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {bounds}"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if moved > 0 {
        tracing::info!(partition = %name, rows = moved, "moved rows from the default partition");
    }
    Ok(())
}

/// One maintenance round for today; failures are counted and logged, never fatal
/// (rows go to the default partition meanwhile and move out on a later round).
pub async fn maintain_now(pool: &PgPool, cfg: &RetentionConfig) {
    let today = Utc::now().date_naive();
    match maintain_for_day(pool, cfg, today).await {
        // A partition that could not be archived was kept: the round did not finish.
        Ok(r) if r.ran => telemetry::maintenance_run(r.failed.is_empty()),
        Ok(_) => {}
        Err(e) => {
            telemetry::maintenance_run(false);
            tracing::error!(error = %e, "partition maintenance failed; rows go to the default partition until it succeeds");
        }
    }
}

/// Runs a round every `retention.interval` until cancelled. The start-up round is the
/// caller's (it runs before intake opens, so today's partition exists from the first row).
pub async fn maintain_periodically(
    pool: PgPool,
    cfg: RetentionConfig,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
        maintain_now(&pool, &cfg).await;
    }
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
         WHERE p.relname IN ('metrics', 'logs', 'ingest_errors') \
         ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let name = partition_name("ingest_errors", day);
        assert_eq!(name, "ingest_errors_p20261122");
        assert_eq!(parse_partition_day("ingest_errors", &name), Some(day));
        assert_eq!(parse_partition_day("metrics", "metrics_default"), None);
        assert_eq!(parse_partition_day("logs", "logs_p2026112x"), None);
    }
}
