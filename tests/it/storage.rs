//! Storage v2: the compact metrics table, its migration from the v1 shape, and the
//! `metric_values` view that gives SQL users and Grafana the plain shape.

use std::borrow::Cow;

use fleetsink::config::MqttMode;
use sqlx::PgPool;

use crate::helpers::*;

type Value = (
    String,
    String,
    Option<String>,
    chrono::DateTime<chrono::Utc>,
    f64,
);

async fn values(pool: &PgPool, query: &str) -> Vec<Value> {
    sqlx::query_as(sqlx::AssertSqlSafe(query.to_string()))
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_converts_v1_metrics() {
    // GIVEN a database at the v1 schema with metrics in a day partition and the default one
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.unwrap();
    let all = &fleetsink::db::MIGRATOR;
    let v1 = sqlx::migrate::Migrator {
        migrations: Cow::Owned(all.migrations[..2].to_vec()),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    v1.run(&pool).await.unwrap();
    sqlx::query(
        "CREATE TABLE metrics_p20261122 PARTITION OF metrics \
         FOR VALUES FROM ('2026-11-22 00:00:00+00') TO ('2026-11-23 00:00:00+00')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO metrics (robot_id, ts, name, value, unit) VALUES \
         ('r1', '2026-11-22 09:00:00+00', 'battery.voltage', 11.5, NULL), \
         ('r1', '2026-11-22 09:00:00+00', 'battery.percentage', 80, NULL), \
         ('r1', '2026-11-22 09:00:01+00', 'cpu_temperature', 48.5, '°C'), \
         ('r2', '2026-11-22 09:00:00+00', 'battery.voltage', 11.1, NULL), \
         ('r2', '2025-01-01 00:00:00+00', 'old', 1, 'x')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO robots (robot_id) VALUES ('r1')")
        .execute(&pool)
        .await
        .unwrap();
    let before = values(
        &pool,
        "SELECT robot_id, name, unit, ts, value FROM metrics ORDER BY 1, 2, 4",
    )
    .await;
    // WHEN the remaining migrations run
    all.run(&pool).await.unwrap();
    // THEN every value reads back the same through metric_values, in the day's partition
    let after = values(
        &pool,
        "SELECT robot_id, name, unit, ts, value FROM metric_values ORDER BY 1, 2, 4",
    )
    .await;
    assert_eq!(after, before);
    let parts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM metrics GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        parts,
        vec![
            ("metrics_default".to_string(), 1),
            ("metrics_p20261122".to_string(), 3)
        ],
        "one row per robot and time, in the partition of its day"
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'metrics%v1'"
        )
        .await,
        0
    );
}

/// Reading one robot's metric over a time range goes through the (robot, ts) index of
/// the partitions in range only, not a scan of the day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_robot_one_name_range_uses_the_index() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    // A realistic spread: 100 robots' status messages (5 metrics each) through MQTT…
    let mut c = t.robot("tonypi_plan").await;
    for r in 0..100 {
        c.publish_acked(
            &format!("tonypi/status/robot_{r:03}"),
            format!(
                r#"{{"status":"online","system_info":{{"cpu_percent":{r},"memory_percent":40,"disk_usage":50,"temperature":45,"uptime":1}},"timestamp":"{}"}}"#,
                chrono::Utc::now().to_rfc3339()
            ),
        )
        .await;
    }
    t.stop().await;
    // …then a day of them per robot, copied in SQL to give the planner real statistics.
    sqlx::query(
        "INSERT INTO metrics (ts, robot, set_id, vals) \
         SELECT m.ts - g * interval '10 seconds', m.robot, m.set_id, m.vals \
         FROM metrics m, generate_series(1, 500) g",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(&t.pool).await.unwrap();
    // The data's own time span: every partition in range holds rows (an empty one, e.g.
    // tomorrow's when this runs just before midnight, is scanned for free, which is fine
    // but would blur what this test checks).
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(ts), max(ts) FROM metrics")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN SELECT ts, value FROM metric_values \
         WHERE robot_id = 'robot_042' AND name = 'system_info.cpu_percent' \
           AND ts >= '{}' AND ts <= '{}'",
        first.to_rfc3339(),
        last.to_rfc3339()
    )))
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan")
            || plan.contains("Index Only Scan")
            || plan.contains("Bitmap Index Scan"),
        "{plan}"
    );
    assert!(
        !plan.contains("Seq Scan on metrics_"),
        "a partition of metrics is scanned whole:\n{plan}"
    );
    assert!(
        !plan.contains("metrics_default"),
        "the default partition is out of range and must be pruned:\n{plan}"
    );
    let rows = t
        .count(
            "SELECT count(*) FROM metric_values WHERE robot_id = 'robot_042' \
             AND name = 'system_info.cpu_percent'",
        )
        .await;
    assert_eq!(rows, 501);
}

/// The metric query reads only the day partitions of its range (and the robot's rows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_query_reads_only_the_partitions_in_range() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    t.stop().await;
    let today = chrono::Utc::now().date_naive();
    let from = today.and_hms_opt(1, 0, 0).unwrap().and_utc();
    let to = today.and_hms_opt(2, 0, 0).unwrap().and_utc();
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN {}",
        fleetsink::db::reads::metrics::METRIC_BUCKETS_SQL
    )))
    .bind(1i32)
    .bind(from)
    .bind(to)
    .bind(std::time::Duration::from_secs(60))
    .bind(vec![1i32])
    .fetch_all(&t.pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    let today_part = format!("metrics_p{}", today.format("%Y%m%d"));
    assert!(plan.contains(&today_part), "{plan}");
    let scanned: Vec<&str> = plan
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| {
            *w == "metrics_default"
                || (w.len() == 17
                    && w.starts_with("metrics_p")
                    && w[9..].bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert!(
        scanned.iter().all(|p| *p == today_part),
        "other partitions read: {scanned:?}\n{plan}"
    );
    assert!(
        plan.contains("robot_ts_set_id_key"),
        "the robot's index: {plan}"
    );
}

/// A fresh installation gets planner statistics for its tables as they fill, within
/// seconds, not after autovacuum's first look; an unchanged table is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_that_grow_from_nothing_are_analyzed_by_the_daemon() {
    // GIVEN a running daemon on a fresh database, with autovacuum kept off the robots
    // table, so only the daemon can analyze it
    let t = spawn_app(MqttMode::Embedded, |_| {}).await;
    sqlx::query("ALTER TABLE robots SET (autovacuum_enabled = false)")
        .execute(&t.pool)
        .await
        .unwrap();
    // The planner's row count: -1 until the table is first analyzed (or vacuumed); set
    // by ANALYZE in the catalog at once, unlike the statistics views.
    let reltuples = |table: &'static str| {
        let pool = t.pool.clone();
        async move {
            sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE relname = $1")
                .bind(table)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let jobs_before = reltuples("jobs").await;
    // WHEN a thousand robots register
    let mut conn = t.pool.acquire().await.unwrap();
    sqlx::query(
        "INSERT INTO robots (robot_id, status, last_seen) \
         SELECT 'grow_' || g, 'online', now() FROM generate_series(1, 1000) g",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    // Make this session report its changes to the statistics at once, not when it
    // next idles long enough (PostgreSQL 15 batches them).
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    // THEN the daemon's next round (every 10 s) analyzes the robots table
    wait_until(
        std::time::Duration::from_secs(60),
        "robots is analyzed",
        || async { reltuples("robots").await >= 1000.0 },
    )
    .await;
    // AND a table that did not grow is left alone
    assert_eq!(reltuples("jobs").await, jobs_before);
}

/// Writes `batch` in one transaction with `mode`; the error when PostgreSQL refuses it.
async fn write_batch(
    pool: &PgPool,
    batch: &[fleetsink::model::Decoded],
    mode: fleetsink::db::writes::MetricsWrite,
) -> Result<(), sqlx::Error> {
    use fleetsink::db::writes::{
        self, AlertCache, Caches, Entry, Learned, RollupCache, WriteOptions,
    };
    let entries: Vec<Entry> = batch
        .iter()
        .map(|d| Entry::Rows {
            decoded: d,
            received_at: d.ts,
        })
        .collect();
    let alerts = fleetsink::alerts::AlertSettings::default();
    let caches = Caches::new(std::time::Duration::from_secs(5));
    let alert_cache = AlertCache::new(alerts.flush_every, Default::default());
    let rollups = RollupCache::new(false);
    let opts = WriteOptions {
        error_payload_cap: 4096,
        metrics: mode,
        caches: &caches,
        alert_cache: &alert_cache,
        rollups: &rollups,
        alerts: &alerts,
    };
    let mut tx = pool.begin().await?;
    writes::write(&mut tx, &entries, &opts, &mut Learned::default()).await?;
    tx.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_batch_when_its_metrics_go_in_by_binary_copy_then_the_rows_equal_the_insert_s() {
    // GIVEN two fresh databases and the captured traffic of three fleets
    let batch = fleetsink::testing::decoded_fleets(3, chrono::Utc::now());
    let mut stored = Vec::new();
    for mode in [
        fleetsink::db::writes::MetricsWrite::Plain,
        fleetsink::db::writes::MetricsWrite::Copy,
    ] {
        let pool = PgPool::connect(&fresh_database().await).await.unwrap();
        fleetsink::db::migrate(&pool).await.unwrap();
        // WHEN the batch is written with the plain insert, and with binary COPY
        write_batch(&pool, &batch, mode).await.unwrap();
        stored.push(
            values(
                &pool,
                "SELECT robot_id, name, unit, ts, value FROM metric_values \
                 ORDER BY robot_id, ts, name",
            )
            .await,
        );
        // AND written again (a redelivery): COPY, like the plain insert, refuses it
        // with the unique violation the sink rewrites the batch on
        let again = write_batch(&pool, &batch, mode).await.unwrap_err();
        assert!(
            fleetsink::db::writes::is_unique_violation(&again),
            "{mode:?}: {again}"
        );
    }
    // THEN both stored the same values, to the bit
    assert!(!stored[0].is_empty());
    assert_eq!(stored[0], stored[1]);
}
