//! Planner statistics when they matter. Autovacuum analyzes a table once about a tenth
//! of it changed, looking at most once a minute: on a fresh installation, and in each
//! new day partition, the tables fill from nothing while the planner still sees them
//! empty, and the batch and API statements pick plans for empty tables (the first minute
//! of a fresh database at 5,000 robots was about 10× slower than the next). So this
//! analyzes fleetsink's own tables itself, often, but only those that hold more than
//! twice the rows their statistics say (`pg_class.reltuples`, which every analyze and
//! vacuum sets), and at least `MIN_ROWS`: a table is analyzed a handful of times while
//! it grows from nothing (at 500, 1,000, 2,000… rows) and then left to autovacuum. A
//! table that churns without growing (`metric_latest`, `robots`: updated all the time)
//! is not analyzed again. Cheap to ask (one catalog query); safe with several instances (two
//! `ANALYZE`s of one table do no harm).

use sqlx::PgPool;

/// A table with fewer live rows than this is never analyzed here.
const MIN_ROWS: i64 = 500;

/// Runs `ANALYZE` on every table (or partition) of fleetsink's that needs it; returns
/// the tables analyzed.
pub async fn analyze_stale(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let stale: Vec<(String,)> = sqlx::query_as(
        "SELECT format('%I.%I', s.schemaname, s.relname) \
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.n_live_tup >= $1 AND s.n_live_tup > 2 * GREATEST(c.reltuples, 0) \
           AND (s.relname IN ('robots', 'metric_latest', 'alerts', 'alert_thresholds', \
                              'commands', 'jobs', 'ingest_errors') \
                OR s.relname ~ '^(metrics|logs|ingest_errors)_p[0-9]{8}$') \
         ORDER BY s.relname",
    )
    .bind(MIN_ROWS)
    .fetch_all(pool)
    .await?;
    let mut analyzed = Vec::with_capacity(stale.len());
    for (table,) in stale {
        // The name comes from the catalog, quoted by format('%I').
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(pool)
            .await?;
        analyzed.push(table);
    }
    Ok(analyzed)
}
