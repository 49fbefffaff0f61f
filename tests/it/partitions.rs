//! Day partitions: rows land in their day's partition (or the default one), a later
//! partition takes its rows out of the default, retention drops old days, and only one
//! instance maintains at a time.

use std::time::Duration;

use fleetsink::config::MqttMode;
use fleetsink::db::maintenance::partitions::maintain_for_day;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_go_by_day_and_retention_drops_old_days() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.ingest.max_clock_skew = Duration::from_secs(400 * 86400);
    })
    .await;
    let mut c = t.robot("tonypi_days").await;
    let now = chrono::Utc::now();
    let cases = [
        ("today", now),
        ("old", now - chrono::Duration::days(10)),
        ("future", now + chrono::Duration::days(365)),
    ];
    for (name, ts) in cases {
        c.publish_acked(
            "tonypi/sensors/tonypi_days",
            format!(
                r#"{{"sensor_type":"{name}","value":1,"timestamp":"{}"}}"#,
                ts.to_rfc3339()
            ),
        )
        .await;
    }
    let pool = t.pool.clone();
    let part = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT m.tableoid::regclass::text FROM metrics m \
                 JOIN metric_sets s ON s.id = m.set_id \
                 JOIN metric_names n ON n.id = ANY (s.name_ids) WHERE n.name = $1",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        part("today").await,
        format!("metrics_p{}", now.format("%Y%m%d"))
    );
    assert_eq!(part("old").await, "metrics_default");
    assert_eq!(part("future").await, "metrics_default");
    // Day partitions keep their table's statistics targets: none for the values and
    // the logs' details (never searched), the default for the rest.
    let day = now.format("%Y%m%d");
    for (table, column, want) in [
        (format!("metrics_p{day}"), "vals", 0),
        (format!("logs_p{day}"), "details", 0),
        (format!("metrics_p{day}"), "robot", -1),
    ] {
        // An int2 and NULL for the default from PostgreSQL 17 on, an int4 and -1 before.
        let target: i32 = sqlx::query_scalar(
            "SELECT COALESCE(attstattarget::int4, -1) FROM pg_attribute \
             WHERE attrelid = $1::regclass AND attname = $2",
        )
        .bind(&table)
        .bind(column)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(target, want, "{table}.{column}");
    }

    // Maintenance for a day 10 days back creates that day's partition and moves the
    // reading out of the default partition.
    let ten_days_ago = (now - chrono::Duration::days(10)).date_naive();
    let retention = t.cfg.retention.clone();
    // The app's own start-up round may still hold the maintenance lock: wait for it.
    wait_until(
        Duration::from_secs(20),
        "the maintenance lock is free",
        || async {
            maintain_for_day(&pool, &retention, ten_days_ago)
                .await
                .unwrap()
                .ran
        },
    )
    .await;
    assert_eq!(
        part("old").await,
        format!("metrics_p{}", ten_days_ago.format("%Y%m%d"))
    );
    // Retention: with 5 days kept, today's round drops that partition (and its row).
    let mut short = retention.clone();
    short.metrics_days = 5;
    let report = maintain_for_day(&pool, &short, now.date_naive())
        .await
        .unwrap();
    assert!(
        report
            .dropped
            .contains(&format!("metrics_p{}", ten_days_ago.format("%Y%m%d"))),
        "{report:?}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name = 'old'")
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name = 'today'")
            .await,
        1
    );

    // The listing `fleetsink partitions` prints: each partition with its rows, size
    // and range.
    sqlx::query("ANALYZE metrics").execute(&pool).await.unwrap();
    let listed = fleetsink::db::maintenance::partitions::list(&pool)
        .await
        .unwrap();
    let today = listed
        .iter()
        .find(|p| p.partition == format!("metrics_p{}", now.format("%Y%m%d")))
        .expect("today's metrics partition is listed");
    assert_eq!(today.table, "metrics");
    assert_eq!(today.rows_estimate, Some(1));
    assert!(
        today
            .range
            .starts_with(&format!("FROM ('{}", now.format("%Y-%m-%d"))),
        "{today:?}"
    );
    assert!(
        today.size.ends_with("kB") || today.size.ends_with("bytes"),
        "{today:?}"
    );
    assert!(
        listed
            .iter()
            .any(|p| p.partition == "metrics_default" && p.range == "DEFAULT")
    );
    assert!(
        listed.iter().any(|p| p.table == "logs")
            && listed.iter().any(|p| p.table == "ingest_errors")
    );

    // The latest-value table forgets what retention dropped, and only that.
    let latest = |name: &'static str| {
        format!(
            "SELECT count(*) FROM metric_latest l JOIN metric_sets s ON s.id = l.set_id \
             JOIN metric_names n ON n.id = ANY (s.name_ids) WHERE n.name = '{name}'"
        )
    };
    assert_eq!(t.count(&latest("old")).await, 0);
    assert_eq!(t.count(&latest("today")).await, 1);
    assert_eq!(t.count(&latest("future")).await, 1);

    // A second instance does not run maintenance while the lock is held.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(x'666c656574736e6b'::bigint)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let skipped = maintain_for_day(&pool, &retention, now.date_naive())
        .await
        .unwrap();
    assert!(!skipped.ran);
    t.stop().await;
}

/// With `retention.archive_dir`, old partitions are exported (verified, fsynced) before
/// they are dropped; a restore brings the rows back exactly once, whatever a crash left
/// in the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_partitions_are_archived_then_dropped_and_restored_exactly_once() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.ingest.max_clock_skew = Duration::from_secs(400 * 86400);
    })
    .await;
    let mut c = t.robot("tonypi_arch").await;
    let now = chrono::Utc::now();
    let old = now - chrono::Duration::days(10);
    for i in 0..3 {
        c.publish_acked(
            "tonypi/sensors/tonypi_arch",
            format!(
                r#"{{"sensor_type":"archived","value":{i},"timestamp":"{}"}}"#,
                (old + chrono::Duration::seconds(i)).to_rfc3339()
            ),
        )
        .await;
    }
    for i in 0..2 {
        c.publish_acked(
            "tonypi/logs/tonypi_arch",
            format!(
                r#"{{"level":"INFO","message":"old line {i}, with a tab\tand a quote '","timestamp":"{}"}}"#,
                (old + chrono::Duration::seconds(i)).to_rfc3339()
            ),
        )
        .await;
    }
    let pool = t.pool.clone();
    let mut retention = t.cfg.retention.clone();
    let old_day = old.date_naive();
    wait_until(
        Duration::from_secs(20),
        "the maintenance lock is free",
        || {
            let (pool, retention) = (pool.clone(), retention.clone());
            async move {
                maintain_for_day(&pool, &retention, old_day)
                    .await
                    .unwrap()
                    .ran
            }
        },
    )
    .await;
    let metric_rows = "SELECT count(*) FROM metric_values WHERE name = 'archived'";
    let log_rows =
        "SELECT count(*) FROM logs WHERE robot_id = 'tonypi_arch' AND message LIKE 'old line%'";
    assert_eq!(
        (t.count(metric_rows).await, t.count(log_rows).await),
        (3, 2)
    );

    // The logs partition also holds the robot's first-seen row (at its message's time).
    let day = old_day.format("%Y%m%d");
    let log_partition_rows = t.count(&format!("SELECT count(*) FROM logs_p{day}")).await as u64;
    assert_eq!(log_partition_rows, 3);

    // What a crash mid-export could have left: a partial file and a stale archive.
    let dir = tempfile::tempdir().unwrap();
    let metrics_file =
        fleetsink::db::maintenance::archive::archive_path(dir.path(), "metrics", old_day);
    std::fs::write(metrics_file.with_extension("gz.partial"), b"half").unwrap();
    std::fs::write(&metrics_file, b"stale").unwrap();

    retention.metrics_days = 5;
    retention.logs_days = 5;
    retention.archive_dir = Some(dir.path().to_path_buf());
    let report = maintain_for_day(&pool, &retention, now.date_naive())
        .await
        .unwrap();
    for p in [format!("metrics_p{day}"), format!("logs_p{day}")] {
        assert!(report.dropped.contains(&p), "{report:?}");
    }
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        (t.count(metric_rows).await, t.count(log_rows).await),
        (0, 0)
    );
    let logs_file = fleetsink::db::maintenance::archive::archive_path(dir.path(), "logs", old_day);
    assert!(metrics_file.exists() && logs_file.exists());

    // Restore: every row back; a second restore inserts nothing.
    let mut conn = pool.acquire().await.unwrap();
    for (file, rows) in [(&metrics_file, 3), (&logs_file, log_partition_rows)] {
        let r = fleetsink::db::maintenance::archive::restore(&mut conn, file)
            .await
            .unwrap();
        assert_eq!(
            (r.rows, r.inserted, r.day),
            (rows, rows, old_day),
            "{file:?}"
        );
        let again = fleetsink::db::maintenance::archive::restore(&mut conn, file)
            .await
            .unwrap();
        assert_eq!(again.inserted, 0);
    }
    assert_eq!(
        (t.count(metric_rows).await, t.count(log_rows).await),
        (3, 2)
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM logs WHERE message = 'old line 1, with a tab\tand a quote '''"
        )
        .await,
        1
    );

    // A damaged archive is refused and restores nothing.
    let bytes = std::fs::read(&metrics_file).unwrap();
    let broken = dir.path().join("metrics_broken.copy.gz");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    assert!(
        fleetsink::db::maintenance::archive::restore(&mut conn, &broken)
            .await
            .is_err()
    );
    assert_eq!(t.count(metric_rows).await, 3);
    drop(conn);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_info_logging_when_partitions_runs_then_stdout_has_only_its_results() {
    // GIVEN a database and the CLI logging at INFO
    let db = fresh_database().await;
    // WHEN `fleetsink partitions --maintain` runs
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cli_with_env(
            &db,
            &["partitions", "--maintain"],
            "",
            &[("FLEETSINK__LOG__LEVEL", "info")],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}\n{err}");
    // THEN stdout is what it did and the table, which a script can parse; its log lines
    // went to stderr
    let results = [
        "created ",
        "dropped ",
        "TABLE\t",
        "metrics\t",
        "metric_rollups\t",
        "logs\t",
        "ingest_errors\t",
    ];
    for line in out.lines() {
        assert!(
            results.iter().any(|r| line.starts_with(r)),
            "not a result on stdout: {line:?}\n{out}"
        );
    }
    assert!(out.contains("TABLE\tPARTITION"), "{out}");
    assert!(err.contains("INFO"), "the log lines go to stderr: {err}");
}
