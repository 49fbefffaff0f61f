//! One day partition of `metrics`, `metric_rollups`, `logs` or `ingest_errors` (UTC
//! days): its name and
//! creating it. Both the maintenance round (`partitions.rs`) and a restore
//! (`archive.rs`) create partitions; this file is what they share, so neither imports
//! the other's internals.
//!
//! A row for a day without a partition lands in the table's default partition. When
//! that day's partition is created later, its rows are moved out of the default
//! partition in the same transaction, since PostgreSQL refuses to attach a partition
//! whose range the default partition already holds rows for.

use chrono::{Duration, NaiveDate};
// Table and partition names below come from `TABLES` and our own date format, never
// from input, which is what makes the `AssertSqlSafe` wrappers true.
use sqlx::{AssertSqlSafe, PgConnection};

/// A partitioned table, its partition key, its partitions' storage parameters
/// (`WITH (…)`, or empty) and whether a partition due for dropping is archived first
/// (when `retention.archive_dir` is set; derived tables are not).
#[derive(Debug, Clone, Copy)]
pub struct Partitioned {
    pub table: &'static str,
    pub column: &'static str,
    pub with: &'static str,
    pub archived: bool,
}

pub const TABLES: [Partitioned; 4] = [
    Partitioned {
        table: "metrics",
        column: "ts",
        with: "",
        archived: true,
    },
    Partitioned {
        table: "metric_rollups",
        column: "minute",
        // A robot's minute (~2 KB) inline and uncompressed (the migration says why).
        with: "WITH (toast_tuple_target = 8160)",
        // Derived from the metrics: dropped with them, never archived.
        archived: false,
    },
    Partitioned {
        table: "logs",
        column: "ts",
        with: "",
        archived: true,
    },
    Partitioned {
        table: "ingest_errors",
        column: "received_at",
        with: "",
        archived: true,
    },
];

pub fn partition_name(table: &str, day: NaiveDate) -> String {
    format!("{table}_p{}", day.format("%Y%m%d"))
}

/// The day of a partition named by [`partition_name`]; `None` for any other name (the
/// default partition, anything created by hand).
pub fn parse_partition_day(table: &str, name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix(table)?.strip_prefix("_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Creates `table`'s partition of `day` unless it exists (for restores).
pub async fn ensure_day(
    conn: &mut PgConnection,
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

/// Creates and attaches `t`'s partition of `day`, moving that day's rows out of the
/// default partition, in one transaction.
pub async fn create_day(
    conn: &mut PgConnection,
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
        "CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) {}",
        t.with
    )))
    .execute(&mut *tx)
    .await?;
    // LIKE copies no statistics targets: the table's own (a migration's `SET
    // STATISTICS`, e.g. none for the metric values) are set on the new partition.
    let targets: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER TABLE %I ALTER COLUMN %I SET STATISTICS %s', $1::text, attname, attstattarget) \
         FROM pg_attribute \
         WHERE attrelid = $2::regclass AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0",
    )
    .bind(&name)
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    for target in targets {
        // Built by format('%I') from the catalog.
        sqlx::query(AssertSqlSafe(target)).execute(&mut *tx).await?;
    }
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
