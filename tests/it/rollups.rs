//! Per-minute rollups: the bucketed metrics query reads sealed minutes from
//! `metric_rollups` and gives what the rows give; unsealed minutes, redeliveries and
//! late rows are read or counted exactly once.

use reqwest::Method;
use serde_json::{Value, json};

use fleetsink::config::MqttMode;

use crate::helpers::*;

/// Every sealed, nothing open: polls until the workers wrote and sealed all they hold.
async fn all_sealed(t: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let open = t
            .count("SELECT count(*) FROM metric_rollup_marks WHERE NOT sealed")
            .await;
        let sealed = t
            .count("SELECT count(*) FROM metric_rollup_marks WHERE sealed")
            .await;
        if open == 0 && sealed > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollups not sealed in 30 s: {open} open, {sealed} sealed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn minute_start(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap()
}

/// (name, bucket, min, avg, max, last, count) of each point.
type Point = (String, String, f64, f64, f64, f64, i64);

async fn buckets(
    t: &TestApp,
    robot: &str,
    from: chrono::DateTime<chrono::Utc>,
    minutes: i64,
) -> Vec<Point> {
    let path = format!(
        "/api/v1/robots/{robot}/metrics?name=battery.percentage&name=servos.*&from={}&to={}&bucket=1m",
        from.to_rfc3339().replace('+', "%2B"),
        (from + chrono::Duration::minutes(minutes))
            .to_rfc3339()
            .replace('+', "%2B"),
    );
    let (code, body) = t.send(Method::GET, &path, None).await;
    assert_eq!(code, 200, "{body}");
    body["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p: &Value| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["bucket"].as_str().unwrap().to_string(),
                p["min"].as_f64().unwrap(),
                p["avg"].as_f64().unwrap(),
                p["max"].as_f64().unwrap(),
                p["last"].as_f64().unwrap(),
                p["count"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Equal but for the average's last bits (a sum over a count against PostgreSQL's avg).
fn assert_same(got: &[Point], want: &[Point]) {
    assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
    for (g, w) in got.iter().zip(want) {
        let (mut g2, mut w2) = (g.clone(), w.clone());
        assert!(
            (g.3 - w.3).abs() <= 1e-9 * w.3.abs().max(1.0),
            "{g:?} vs {w:?}"
        );
        (g2.3, w2.3) = (0.0, 0.0);
        assert_eq!(g2, w2);
    }
}

/// Publishes, every 7 s from `start` for `n` steps, a battery and a servos reading with
/// values that differ per step (so minimum, maximum, average and last all matter).
async fn publish_span(c: &mut Client, robot: &str, start: chrono::DateTime<chrono::Utc>, n: i64) {
    for i in 0..n {
        let at = (start + chrono::Duration::seconds(7 * i)).to_rfc3339();
        let battery = 50.0 + ((i * 37) % 23) as f64 / 3.0;
        c.publish_acked(
            "tonypi/battery",
            json!({"robot_id": robot, "percentage": battery, "voltage": 11.1, "timestamp": at})
                .to_string(),
        )
        .await;
        c.publish_acked(
            &format!("tonypi/servos/{robot}"),
            json!({"servos": {"servo_1": {"temperature": 30.5 + (i % 5) as f64}, "servo_2": {"temperature": 41.0 - (i % 3) as f64}}, "timestamp": at})
                .to_string(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_minutes_are_read_from_rollups_and_give_what_the_rows_give() {
    // GIVEN fleetsink writing rollups (the default) and six minutes of a robot's
    // readings two hours ago, sent twice (the second time as a redelivery)
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_ru").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::hours(2))
        + chrono::Duration::seconds(3);
    publish_span(&mut c, "tonypi_ru", start, 52).await;
    publish_span(&mut c, "tonypi_ru", start, 52).await;
    // WHEN the workers have written and sealed the minutes
    all_sealed(&t).await;
    // THEN the rows are each stored once, the rollups are fewer rows than them,
    let rows = t.count("SELECT count(*) FROM metrics").await;
    assert_eq!(rows, 104);
    let rolled = t.count("SELECT count(*) FROM metric_rollups").await;
    assert!(rolled > 0 && rolled < rows, "{rolled} rollup rows");
    // AND the buckets equal what the query over the rows alone computes
    let from = start - chrono::Duration::seconds(3);
    let got = buckets(&t, "tonypi_ru", from, 8).await;
    let robot_key = t
        .count("SELECT id::int8 FROM robots WHERE robot_id = 'tonypi_ru'")
        .await as i32;
    let ids: Vec<i32> = sqlx::query_scalar(
        "SELECT id FROM metric_names WHERE name = 'battery.percentage' OR name LIKE 'servos.%'",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    // The bucket as JSON writes it (RFC 3339, +00:00), like the API.
    let want: Vec<Point> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT name, to_json(bucket) #>> '{{}}', min, avg, max, last, count FROM ({}) q",
        fleetsink::db::reads::metrics::METRIC_BUCKETS_SQL
    )))
    .bind(robot_key)
    .bind(from)
    .bind(from + chrono::Duration::minutes(8))
    .bind(std::time::Duration::from_secs(60))
    .bind(&ids)
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(got.len(), 3 * 7, "{got:?}");
    assert_eq!(got.iter().map(|p| p.6).sum::<i64>(), 3 * 52);
    assert_same(&got, &want);

    // AND they are read from the rollups: with the rows of the whole minutes deleted,
    // the same buckets come back
    sqlx::query("DELETE FROM metrics WHERE ts >= $1 AND ts < $2")
        .bind(from)
        .bind(from + chrono::Duration::minutes(8))
        .execute(&t.pool)
        .await
        .unwrap();
    assert_same(&buckets(&t, "tonypi_ru", from, 8).await, &want);

    // AND a minute not sealed by every worker that wrote in it (a process that died
    // before writing its rollups) is read from the rows - here deleted, so missing
    let minute = from + chrono::Duration::minutes(2);
    sqlx::query("INSERT INTO metric_rollup_marks (minute, run, worker) VALUES ($1, 1, 0)")
        .bind(minute)
        .execute(&t.pool)
        .await
        .unwrap();
    let partial = buckets(&t, "tonypi_ru", from, 8).await;
    let minute_text = minute.to_rfc3339();
    assert_eq!(partial.len(), 3 * 6, "{partial:?}");
    assert!(partial.iter().all(|p| p.1 != minute_text));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_row_reopens_its_minute_and_counts_once() {
    // GIVEN three sealed minutes of a robot's readings an hour ago
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_rl").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::hours(1));
    publish_span(&mut c, "tonypi_rl", start, 25).await;
    all_sealed(&t).await;
    let before = buckets(&t, "tonypi_rl", start, 3).await;
    let counted = |ps: &[Point]| {
        ps.iter()
            .filter(|p| p.0 == "battery.percentage")
            .map(|p| p.6)
            .sum::<i64>()
    };
    assert_eq!(counted(&before), 25);
    // WHEN a reading arrives late for the first minute, with a new maximum
    let late = (start + chrono::Duration::seconds(59)).to_rfc3339();
    c.publish_acked(
        "tonypi/battery",
        json!({"robot_id": "tonypi_rl", "percentage": 99.5, "voltage": 11.1, "timestamp": late})
            .to_string(),
    )
    .await;
    // THEN it counts at once (its minute is read from the rows while open),
    let during = buckets(&t, "tonypi_rl", start, 3).await;
    assert_eq!(counted(&during), 26);
    // AND once, after its minute is sealed again with the late partial
    all_sealed(&t).await;
    let after = buckets(&t, "tonypi_rl", start, 3).await;
    assert_eq!(counted(&after), 26);
    let first = after.iter().find(|p| p.0 == "battery.percentage").unwrap();
    assert_eq!((first.4, first.5), (99.5, 99.5), "{first:?}");
    assert_eq!(
        t.count("SELECT count(*) FROM metric_rollup_marks").await,
        t.count("SELECT count(DISTINCT (minute, run, worker)) FROM metric_rollup_marks")
            .await
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_whose_clock_is_behind_gets_one_partial_per_minute() {
    // GIVEN a robot whose clock is three minutes behind fleetsink's: every minute it
    // sends into is already due when its rows arrive
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_rb").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::minutes(3))
        + chrono::Duration::seconds(2);
    // WHEN it sends a reading about every second, all in one minute by its clock
    for i in 0..5 {
        let at = (start + chrono::Duration::seconds(2 * i)).to_rfc3339();
        c.publish_acked(
            "tonypi/battery",
            json!({"robot_id": "tonypi_rb", "percentage": 60.0 + i as f64, "voltage": 11.1, "timestamp": at})
                .to_string(),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    // THEN once it is quiet its minute is written as one partial holding all five
    // readings (not one per reading), and sealed
    all_sealed(&t).await;
    let partials: Vec<Vec<i32>> = sqlx::query_scalar("SELECT ns FROM metric_rollups")
        .fetch_all(&t.pool)
        .await
        .unwrap();
    assert_eq!(partials, vec![vec![5]]);
    let got = buckets(&t, "tonypi_rb", minute_start(start), 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].2, got[0].4, got[0].5, got[0].6),
        (60.0, 64.0, 64.0, 5)
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_a_version_before_rollups_count_in_the_minutes_around_the_upgrade() {
    // GIVEN readings half an hour ago stored by a version before the rollups (no marks,
    // no rollups)
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_up").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::minutes(30))
        + chrono::Duration::seconds(1);
    publish_span(&mut c, "tonypi_up", start, 4).await;
    drop(c);
    t.stop().await;
    for sql in [
        "DELETE FROM metric_rollup_marks",
        "DELETE FROM metric_rollups",
    ] {
        sqlx::query(sql).execute(&t.pool).await.unwrap();
    }
    // WHEN the upgrade's migration runs, and the new version stores readings in the
    // same minute and seals it
    sqlx::raw_sql(include_str!(
        "../../migrations/20261211000001_rollups_upgrade_boundary.sql"
    ))
    .execute(&t.pool)
    .await
    .unwrap();
    t.start().await;
    let mut c = t.robot("tonypi_up").await;
    publish_span(
        &mut c,
        "tonypi_up",
        start + chrono::Duration::seconds(30),
        4,
    )
    .await;
    drop(c);
    t.stop().await;
    assert!(
        t.count("SELECT count(*) FROM metric_rollup_marks WHERE sealed AND worker >= 0")
            .await
            > 0
    );
    // THEN the minute counts the readings of both versions (it is read from the rows)
    t.start().await;
    let got = buckets(&t, "tonypi_up", minute_start(start), 1).await;
    let battery: Vec<&Point> = got.iter().filter(|p| p.0 == "battery.percentage").collect();
    assert_eq!(battery.len(), 1, "{got:?}");
    assert_eq!(battery[0].6, 8);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_daemon_seals_the_current_minute_and_off_seals_nothing() {
    // GIVEN readings of the current minute
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_rs").await;
    publish_span(&mut c, "tonypi_rs", chrono::Utc::now(), 2).await;
    assert!(
        t.count("SELECT count(*) FROM metric_rollup_marks WHERE NOT sealed")
            .await
            > 0
    );
    // WHEN fleetsink stops
    t.stop().await;
    // THEN it wrote and sealed what it held
    assert_eq!(
        t.count("SELECT count(*) FROM metric_rollup_marks WHERE NOT sealed")
            .await,
        0
    );
    assert!(t.count("SELECT count(*) FROM metric_rollups").await > 0);

    // AND with sink.minute_rollups = false nothing is rolled up, and the minutes it
    // writes rows in are registered unsealed (read from the rows, whatever another
    // instance or a later run with rollups on writes)
    t.cfg.sink.minute_rollups = false;
    sqlx::query("TRUNCATE metric_rollups, metric_rollup_marks")
        .execute(&t.pool)
        .await
        .unwrap();
    t.start().await;
    let mut c = t.robot("tonypi_rs").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::minutes(30));
    publish_span(&mut c, "tonypi_rs", start, 10).await;
    t.stop().await;
    assert!(t.count("SELECT count(*) FROM metric_rollup_marks").await > 0);
    assert_eq!(
        t.count("SELECT count(*) FROM metric_rollup_marks WHERE sealed")
            .await,
        0
    );
    assert_eq!(t.count("SELECT count(*) FROM metric_rollups").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_postgresql_refuses_cost_no_message_and_their_minutes_read_raw() {
    // GIVEN a metric_rollups table that refuses every row (a constraint nobody meets)
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    sqlx::query("ALTER TABLE metric_rollups ADD CONSTRAINT refuse_all CHECK (robot < 0)")
        .execute(&t.pool)
        .await
        .unwrap();
    // WHEN a robot sends four minutes of readings from an hour ago, and more after
    let mut c = t.robot("tonypi_rx").await;
    let start = minute_start(chrono::Utc::now() - chrono::Duration::hours(1));
    publish_span(&mut c, "tonypi_rx", start, 30).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    publish_span(
        &mut c,
        "tonypi_rx",
        start + chrono::Duration::minutes(10),
        3,
    )
    .await;
    // THEN every message is stored (none went to ingest_errors),
    assert_eq!(t.count("SELECT count(*) FROM metrics").await, 66);
    assert_eq!(t.count("SELECT count(*) FROM ingest_errors").await, 0);
    // AND no rollup row exists, the minutes stay unsealed
    assert_eq!(t.count("SELECT count(*) FROM metric_rollups").await, 0);
    assert_eq!(
        t.count("SELECT count(*) FROM metric_rollup_marks WHERE sealed")
            .await,
        0
    );
    // AND the buckets come from the rows: every reading counted
    let points = buckets(&t, "tonypi_rx", start, 4).await;
    let battery: i64 = points
        .iter()
        .filter(|p| p.0 == "battery.percentage")
        .map(|p| p.6)
        .sum();
    assert_eq!(battery, 30);
    t.stop().await;
    assert_eq!(t.count("SELECT count(*) FROM metric_rollups").await, 0);
}
