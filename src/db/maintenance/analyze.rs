//! Planner statistics when they matter. Autovacuum analyzes a table once about a tenth
//! of it changed, looking at most once a minute: on a fresh installation, and in each
//! new day partition, the tables fill from nothing while the planner still sees them
//! empty, and the batch and API statements pick plans for empty tables (the first minute
//! of a fresh database at 5,000 robots was about 10× slower than the next). So this
//! analyzes fleetsink's own tables itself, often, but only those whose rows changed by
//! more than half since their last analyze (and by at least `MIN_CHANGED` rows): a
//! table is analyzed a handful of times while it grows from nothing, and then left to
//! autovacuum. Cheap to ask (one catalog query); safe with several instances (two
//! `ANALYZE`s of one table do no harm).

use sqlx::PgPool;

/// Fewer changed rows than this never trigger an analyze.
const MIN_CHANGED: i64 = 500;

/// Runs `ANALYZE` on every table (or partition) of fleetsink's that needs it; returns
/// the tables analyzed.
pub async fn analyze_stale(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let stale: Vec<(String,)> = sqlx::query_as(
        "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables \
         WHERE n_mod_since_analyze >= $1 \
           AND n_mod_since_analyze > GREATEST(n_live_tup - n_mod_since_analyze, 0) / 2 \
           AND (relname IN ('robots', 'metric_latest', 'alerts', 'alert_thresholds', \
                            'commands', 'jobs', 'ingest_errors') \
                OR relname ~ '^(metrics|logs|ingest_errors)_p[0-9]{8}$') \
         ORDER BY relname",
    )
    .bind(MIN_CHANGED)
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
