//! End-to-end: real PostgreSQL, real MQTT clients, embedded rmqtt and Mosquitto.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use fleetsink::config::{AckMode, MqttMode};
use sqlx::PgPool;

async fn publish_fixtures(c: &mut Client) -> usize {
    let fx = fixtures();
    for (topic, payload) in &fx {
        c.publish_acked(topic, payload.as_bytes()).await;
    }
    fx.len()
}

/// Checks what the fixture traffic must have produced.
async fn assert_fixture_rows(pool: &PgPool) {
    assert_eq!(
        count(pool, "SELECT count(*) FROM robots WHERE robot_id LIKE 'tonypi\\_%' AND robot_id <> 'tonypi_probe'").await,
        5,
        "five simulated robots"
    );
    let (value, ts): (f64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT value, ts FROM metrics WHERE robot_id = 'tonypi_normal' AND name = 'battery.percentage' ORDER BY ts LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(value, 73.3);
    assert_eq!(ts.to_rfc3339(), "2026-11-22T09:27:50.174489+00:00");
    assert!(
        count(pool, "SELECT count(*) FROM metrics WHERE unit IS NOT NULL").await > 0,
        "sensor units kept"
    );
    assert!(
        count(
            pool,
            "SELECT count(*) FROM metrics WHERE name LIKE 'servos.servo_%.temperature'"
        )
        .await
            > 0
    );
    assert!(
        count(
            pool,
            "SELECT count(*) FROM metrics WHERE name LIKE 'system_info.%'"
        )
        .await
            > 0
    );
    assert!(
        count(
            pool,
            "SELECT count(*) FROM metrics WHERE name = 'location.x'"
        )
        .await
            > 0
    );
    assert!(
        count(
            pool,
            "SELECT count(*) FROM logs WHERE category LIKE 'robot_%'"
        )
        .await
            >= 10
    );
    assert!(count(pool, "SELECT count(*) FROM logs WHERE category = 'status'").await >= 5);
    let status: String =
        sqlx::query_scalar("SELECT status FROM robots WHERE robot_id = 'tonypi_job_demo'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(["online", "offline"].contains(&status.as_str()), "{status}");
    assert!(
        count(
            pool,
            "SELECT count(*) FROM jobs WHERE robot_id = 'tonypi_job_demo'"
        )
        .await
            >= 1
    );
    assert_eq!(count(pool, "SELECT count(*) FROM ingest_errors").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tonypi_traffic_lands_and_puback_means_committed() {
    let db = fresh_database().await;
    let app = start(config(&db, MqttMode::Embedded)).await;
    let pool = PgPool::connect(&db).await.unwrap();
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_gateway").await;

    // Each PUBACK arrives only once the row is visible to another connection.
    for i in 0..20 {
        let payload = format!(
            r#"{{"sensor_type":"probe","value":{i},"timestamp":"2026-11-22T09:00:{i:02}Z"}}"#
        );
        c.publish_acked("tonypi/sensors/tonypi_probe", payload)
            .await;
        let n = count(
            &pool,
            &format!(
                "SELECT count(*) FROM metrics WHERE robot_id = 'tonypi_probe' AND value = {i}"
            ),
        )
        .await;
        assert_eq!(
            n, 1,
            "PUBACK for message {i} came before its row was committed"
        );
    }
    publish_fixtures(&mut c).await;
    assert_fixture_rows(&pool).await;
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tonypi_traffic_lands() {
    let broker = Mosquitto::start();
    let db = fresh_database().await;
    let mut cfg = config(&db, MqttMode::External);
    cfg.mqtt.external.url = broker.url();
    cfg.mqtt.external.client_id = "fleetsink-test".into();
    let app = start(cfg).await;
    let pool = PgPool::connect(&db).await.unwrap();
    wait_subscribed(&app).await;
    let mut c = client(mqtt_addr(broker.port), "tonypi_sim").await;
    publish_fixtures(&mut c).await;
    let battery_rows = "SELECT count(*) FROM metrics WHERE name LIKE 'battery.%'";
    assert_eq!(wait_count(&pool, battery_rows, 30).await, 30);
    wait_count(
        &pool,
        "SELECT count(*) FROM logs WHERE category LIKE 'robot\\_%'",
        10,
    )
    .await;
    // Everything was acked by Mosquitto; wait until fleetsink has written it all.
    let mut last = -1;
    loop {
        let n = count(
            &pool,
            "SELECT (SELECT count(*) FROM metrics) + (SELECT count(*) FROM logs)",
        )
        .await;
        if n == last {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop(app).await;
    assert_fixture_rows(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_uncommitted_message_is_redelivered_and_written_once() {
    let broker = Mosquitto::start();
    let db = fresh_database().await;
    let envs = vec![
        ("FLEETSINK__DATABASE__URL", db.clone()),
        ("FLEETSINK__MQTT__MODE", "external".to_string()),
        ("FLEETSINK__MQTT__EXTERNAL__URL", broker.url()),
        (
            "FLEETSINK__MQTT__EXTERNAL__CLIENT_ID",
            "fleetsink-redelivery".to_string(),
        ),
        (
            "FLEETSINK__MQTT__EXTERNAL__BROKER_INFLIGHT",
            "1000".to_string(),
        ),
    ];
    let mut daemon = Daemon::start(&envs);
    let pool = PgPool::connect(&db).await.unwrap();
    let http = mqtt_addr(daemon.http_port);
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "daemon never became ready",
        || async { http_get(http, "/readyz").await.0 == 200 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // GIVEN the metrics table is locked, so fleetsink's commit cannot finish
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut c = client(mqtt_addr(broker.port), "tonypi_r1").await;
    c.publish_acked(
        "tonypi/sensors/tonypi_r1",
        r#"{"sensor_type":"temp","value":42.5,"timestamp":"2026-11-22T09:00:00Z"}"#,
    )
    .await;
    let awaiting = async {
        loop {
            let (_, body) = http_get(http, "/readyz").await;
            if body.contains("\"messages_awaiting_ack\":1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), awaiting)
        .await
        .expect("fleetsink never received the message");
    // WHEN fleetsink is killed before the commit, then the lock is released
    daemon.kill();
    blocker.rollback().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM metrics").await, 0);
    // THEN a new fleetsink with the same session gets the message again and writes it once
    let _daemon = Daemon::start(&envs);
    let q = "SELECT count(*) FROM metrics WHERE robot_id = 'tonypi_r1'";
    assert_eq!(wait_count(&pool, q, 1).await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&pool, q).await, 1);
}

/// A broker may send far more than the in-flight window fleetsink was told about
/// (Mosquitto 2.0.11 does while draining a backlog; here its window is simply 50 times
/// larger). Acks must still flow: the sink never waits on the ack path, so a full
/// request channel cannot stall the event loop, the queue and the sink in a circle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_backlog_drains_when_broker_exceeds_the_window() {
    let broker = Mosquitto::start(); // max_inflight_messages 1000
    let db = fresh_database().await;
    let mut cfg = config(&db, MqttMode::External);
    cfg.mqtt.external.url = broker.url();
    cfg.mqtt.external.client_id = "fleetsink-backlog".into();
    cfg.mqtt.external.broker_inflight = 20;
    cfg.mqtt.external.request_channel_capacity = 21;
    cfg.ingest.queue_capacity = 20;
    cfg.batch.max_messages = 10;

    // GIVEN fleetsink's persistent session exists, and a backlog builds while it is away
    let app = start(cfg.clone()).await;
    wait_subscribed(&app).await;
    stop(app).await;
    let mut c = client(mqtt_addr(broker.port), "tonypi_backlog").await;
    let n: i64 = 3000;
    for i in 0..n {
        c.publish_acked(
            "tonypi/sensors/tonypi_backlog",
            format!(r#"{{"sensor_type":"backlog","value":{i},"timestamp":"2026-11-22T07:00:00.{i:04}Z"}}"#),
        )
        .await;
    }

    // WHEN fleetsink comes back THEN the whole backlog lands
    let app = start(cfg).await;
    let pool = PgPool::connect(&db).await.unwrap();
    let q = "SELECT count(*) FROM metrics WHERE name = 'backlog'";
    assert_eq!(wait_count(&pool, q, n).await, n);
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_go_to_ingest_errors_and_good_ones_land() {
    let db = fresh_database().await;
    let app = start(config(&db, MqttMode::Embedded)).await;
    let pool = PgPool::connect(&db).await.unwrap();
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_bad").await;
    let good = |i: u32| {
        format!(r#"{{"sensor_type":"ok","value":{i},"timestamp":"2026-11-22T09:00:{i:02}Z"}}"#)
    };
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("tonypi/status/r1", b"not json".to_vec()),
        ("tonypi/status/r1", b"[1,2,3]".to_vec()),
        ("tonypi/battery", br#"{"percentage":50}"#.to_vec()),
        ("tonypi/status/r1", vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']),
        ("tonypi/status/r1", vec![b'x'; 1024 * 1024]),
        ("tonypi/status/r1", "[".repeat(10_000).into_bytes()),
        (
            "tonypi/status/r1",
            br#"{"status":"online","system_info":{"cpu":NaN}}"#.to_vec(),
        ),
        (
            "tonypi/status/r1",
            br#"{"status":"online","system_info":{"cpu":1e400}}"#.to_vec(),
        ),
        (
            "tonypi/battery",
            br#"{"robot_id":"r1\"; DROP TABLE robots; --","percentage":5}"#.to_vec(),
        ),
    ];
    let mut i = 0;
    for (topic, payload) in &bad {
        c.publish_acked("tonypi/sensors/tonypi_good", good(i)).await;
        c.publish_acked(topic, payload.clone()).await;
        i += 1;
    }
    // A bad timestamp is not an error: the reading is kept at its receive time.
    c.publish_acked(
        "tonypi/sensors/tonypi_good",
        r#"{"sensor_type":"late","value":1,"timestamp":"not a time"}"#,
    )
    .await;
    c.publish_acked("tonypi/sensors/tonypi_good", good(i)).await;

    assert_eq!(
        count(&pool, "SELECT count(*) FROM ingest_errors").await,
        bad.len() as i64
    );
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM ingest_errors ORDER BY received_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        vec![
            "not_json",
            "not_object",
            "missing_robot_id",
            "invalid_utf8",
            "too_large",
            "not_json",
            "not_json",
            "not_json",
            "invalid_robot_id"
        ]
    );
    let (size, kept): (i32, i32) = sqlx::query_as(
        "SELECT payload_size, length(payload) FROM ingest_errors WHERE reason = 'too_large'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((size, kept), (1024 * 1024, 4096));
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM metrics WHERE robot_id = 'tonypi_good' AND name = 'ok'"
        )
        .await,
        i64::from(i) + 1
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'late'").await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM robots WHERE robot_id LIKE '%DROP%'"
        )
        .await,
        0
    );
    let (code, _) = http_get(app.http_addr(), "/healthz").await;
    assert_eq!(code, 200);
    let (_, metrics) = http_get(app.http_addr(), "/metrics").await;
    assert!(
        metrics.contains("fleetsink_ingest_errors_total{reason=\"not_json\"} 4"),
        "{metrics}"
    );
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_resumes() {
    let pg = PgCluster::start();
    let db = fresh_database_on(&pg.url()).await;
    let mut cfg = config(&db, MqttMode::Embedded);
    cfg.ingest.queue_capacity = 5000;
    let app = start(cfg).await;
    let addr = app.mqtt_addr().unwrap();
    const ROBOTS_N: u32 = 4;
    const PER_ROBOT: u32 = 150;
    let mut publishers = Vec::new();
    for r in 0..ROBOTS_N {
        publishers.push(tokio::spawn(async move {
            let mut c = client(addr, &format!("tonypi_out{r}")).await;
            for i in 0..PER_ROBOT {
                let payload = format!(
                    r#"{{"sensor_type":"seq","value":{i},"timestamp":"2026-11-22T09:{:02}:{:02}Z"}}"#,
                    i / 60,
                    i % 60
                );
                c.publish_acked(&format!("tonypi/sensors/tonypi_out{r}"), payload).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // GIVEN PostgreSQL stops mid-stream
    pg.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // THEN readiness reports it and nothing is acknowledged meanwhile
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "still ready with PostgreSQL down",
        || async {
            let (code, body) = http_get(app.http_addr(), "/readyz").await;
            if code == 503 {
                assert!(body.contains("\"database_reachable\":false"), "{body}");
            }
            code == 503
        },
    )
    .await;
    let before = app.health().awaiting_ack();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        app.health().awaiting_ack() >= before,
        "acks went out while the database was down"
    );
    assert!(
        app.health().awaiting_ack() <= u64::from(ROBOTS_N),
        "at most one message per robot connection waits"
    );
    // WHEN it comes back
    pg.resume();
    for p in publishers {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .unwrap()
            .unwrap();
    }
    // THEN every message landed exactly once and readiness recovers
    let pool = PgPool::connect(&db).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'seq'").await,
        i64::from(ROBOTS_N * PER_ROBOT)
    );
    wait_until(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "never ready again",
        || async { http_get(app.http_addr(), "/readyz").await.0 == 200 },
    )
    .await;
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_everything_acknowledged() {
    let db = fresh_database().await;
    let mqtt_port = free_port();
    let mut daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db.clone()),
        (
            "FLEETSINK__MQTT__EMBEDDED__LISTEN",
            format!("127.0.0.1:{mqtt_port}"),
        ),
    ]);
    wait_for_port(mqtt_port);
    let addr = mqtt_addr(mqtt_port);
    let base_ms = chrono::Utc::now().timestamp_millis() as u64;
    let mut publishers = Vec::new();
    for r in 0..8u32 {
        publishers.push(tokio::spawn(async move {
            let mut c = client(addr, &format!("tonypi_term{r}")).await;
            let mut acked = Vec::new();
            for i in 0..100_000u32 {
                let payload = format!(
                    r#"{{"sensor_type":"seq","value":{i},"timestamp":{}}}"#,
                    base_ms + u64::from(i)
                );
                let sent = c
                    .client
                    .publish(
                        format!("tonypi/sensors/tonypi_term{r}"),
                        rumqttc::QoS::AtLeastOnce,
                        false,
                        payload,
                    )
                    .await;
                if sent.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_secs(3), c.acks.recv()).await {
                    Ok(Some(_)) => acked.push(i),
                    _ => break,
                }
            }
            (r, acked)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = daemon.terminate();
    assert!(status.success(), "fleetsink exited with {status}");
    let pool = PgPool::connect(&db).await.unwrap();
    let mut total = 0;
    for p in publishers {
        let (r, acked) = p.await.unwrap();
        let stored: Vec<f64> = sqlx::query_scalar(
            "SELECT value FROM metrics WHERE robot_id = $1 AND name = 'seq' ORDER BY value",
        )
        .bind(format!("tonypi_term{r}"))
        .fetch_all(&pool)
        .await
        .unwrap();
        for i in &acked {
            assert!(
                stored.contains(&f64::from(*i)),
                "robot {r}: acked message {i} is not in the database"
            );
        }
        total += acked.len();
    }
    assert!(
        total > 50,
        "the load was too light to mean anything ({total} acked)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_receipt_mode_acks_and_still_commits() {
    let db = fresh_database().await;
    let mut cfg = config(&db, MqttMode::Embedded);
    cfg.mqtt.embedded.ack = AckMode::OnReceipt;
    let app = start(cfg).await;
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_fast").await;
    for i in 0..50 {
        c.publish_acked(
            "tonypi/sensors/tonypi_fast",
            format!(r#"{{"sensor_type":"x","value":{i},"timestamp":"2026-11-22T08:00:{i:02}Z"}}"#),
        )
        .await;
    }
    stop(app).await; // graceful: drains the queue
    let pool = PgPool::connect(&db).await.unwrap();
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'x'").await,
        50
    );
}

/// Rows that already exist (a gateway resending after a reconnect) make the fast
/// plain insert fail; the batch is rewritten skipping them, and the new messages in
/// the same batches still land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_messages_add_no_rows_and_new_ones_in_their_batches_land() {
    let db = fresh_database().await;
    let mut cfg = config(&db, MqttMode::Embedded);
    cfg.mqtt.embedded.ack = AckMode::OnReceipt;
    let app = start(cfg.clone()).await;
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_gateway").await;
    publish_fixtures(&mut c).await;
    stop(app).await; // graceful: drains the queue
    let pool = PgPool::connect(&db).await.unwrap();
    let metrics_once = count(&pool, "SELECT count(*) FROM metrics").await;
    let logs_once = count(&pool, "SELECT count(*) FROM logs").await;
    let jobs_once = count(&pool, "SELECT count(*) FROM jobs").await;
    let state_once = fleet_state(&pool).await;
    assert!(metrics_once > 0);

    let app = start(cfg).await;
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_gateway").await;
    // Resend everything, each old message followed by a new one.
    for (i, (topic, payload)) in fixtures().iter().enumerate() {
        c.publish_acked(topic, payload.as_bytes()).await;
        c.publish_acked(
            "tonypi/sensors/tonypi_fresh",
            format!(
                r#"{{"sensor_type":"fresh","value":{i},"timestamp":"2026-11-22T08:00:00.{i:03}Z"}}"#
            ),
        )
        .await;
    }
    stop(app).await;
    let fresh = fixtures().len() as i64;

    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name <> 'fresh'").await,
        metrics_once
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'fresh'").await,
        fresh
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM logs").await, logs_once);
    assert_eq!(count(&pool, "SELECT count(*) FROM jobs").await, jobs_once);
    assert_eq!(count(&pool, "SELECT count(*) FROM ingest_errors").await, 0);
    // Old statuses and job events did not roll the fleet's state back.
    assert_eq!(fleet_state(&pool).await, state_once);
}

/// Robot statuses and job states, as one comparable text.
async fn fleet_state(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "SELECT concat_ws(' | ', \
            (SELECT string_agg(robot_id || '=' || status, ',' ORDER BY robot_id) FROM robots \
              WHERE robot_id <> 'tonypi_fresh'), \
            (SELECT string_agg(concat_ws(':', robot_id, start_time, status, items_done, percent_complete), ',' \
              ORDER BY robot_id, start_time) FROM jobs))",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlink_commands_reach_subscribed_robots() {
    let db = fresh_database().await;
    let app = start(config(&db, MqttMode::Embedded)).await;
    let mut robot = client(app.mqtt_addr().unwrap(), "tonypi_cmd").await;
    robot
        .client
        .subscribe("tonypi/commands/tonypi_cmd", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.publish(
        "tonypi/commands/tonypi_cmd",
        bytes::Bytes::from_static(br#"{"type":"move","direction":"forward"}"#),
        1,
    )
    .await
    .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), robot.messages.recv())
        .await
        .expect("command not delivered")
        .unwrap();
    assert_eq!(msg.topic, "tonypi/commands/tonypi_cmd");
    assert!(String::from_utf8_lossy(&msg.payload).contains("forward"));
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_route_rows_by_day_and_retention_drops_old_days() {
    let db = fresh_database().await;
    let mut cfg = config(&db, MqttMode::Embedded);
    cfg.ingest.max_clock_skew = Duration::from_secs(400 * 86400);
    let app = start(cfg.clone()).await;
    let pool = PgPool::connect(&db).await.unwrap();
    let mut c = client(app.mqtt_addr().unwrap(), "tonypi_days").await;
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
    let part = |name: &str| {
        let pool = pool.clone();
        let name = name.to_string();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT tableoid::regclass::text FROM metrics WHERE name = $1",
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

    // Maintenance for a day 10 days back creates that day's partition and moves the
    // reading out of the default partition.
    let ten_days_ago = (now - chrono::Duration::days(10)).date_naive();
    // The app's own start-up round may still hold the maintenance lock: wait for it.
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "maintenance lock never free",
        || async {
            fleetsink::db::partitions::maintain(&pool, &cfg.retention, ten_days_ago)
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
    let mut short = cfg.retention.clone();
    short.metrics_days = 5;
    let report = fleetsink::db::partitions::maintain(&pool, &short, now.date_naive())
        .await
        .unwrap();
    assert!(
        report
            .dropped
            .contains(&format!("metrics_p{}", ten_days_ago.format("%Y%m%d"))),
        "{report:?}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'old'").await,
        0
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM metrics WHERE name = 'today'").await,
        1
    );

    // A second instance does not run maintenance while the lock is held.
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(x'666c656574736e6b'::bigint)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let skipped = fleetsink::db::partitions::maintain(&pool, &cfg.retention, now.date_naive())
        .await
        .unwrap();
    assert!(!skipped.ran);
    stop(app).await;
}
