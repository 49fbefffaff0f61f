//! Delivery guarantees under faults: a PostgreSQL outage, SIGTERM under load, and
//! redelivered (resent) messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleetsink::config::{AckMode, MqttMode};
use sqlx::PgPool;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_loses_nothing_and_resumes() {
    let pg = PgCluster::start().await;
    let mut t = spawn_app_on(&pg.url(), MqttMode::Embedded, |cfg| {
        cfg.ingest.queue_capacity = 5000;
    })
    .await;
    let addr = t.mqtt;
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
                // Paced, so the stream is still running when PostgreSQL stops.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    let q = "SELECT count(*) FROM metric_values WHERE name = 'seq'";
    wait_until(
        Duration::from_secs(30),
        "the stream is under way",
        || async { t.count(q).await >= 40 },
    )
    .await;
    // GIVEN PostgreSQL stops mid-stream
    pg.pause().await;
    // THEN readiness reports it and nothing is acknowledged meanwhile
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(10), "/readyz answers 503", || async {
        let (code, body) = http_get(&http, t.http, "/readyz").await;
        if code == 503 {
            assert!(body.contains("\"database_reachable\":false"), "{body}");
        }
        code == 503
    })
    .await;
    let health = t.app().health();
    let before = health.awaiting_ack();
    assert_holds_for(
        Duration::from_secs(3),
        "no acks go out while the database is down",
        || async { health.awaiting_ack() >= before },
    )
    .await;
    assert!(
        health.awaiting_ack() <= u64::from(ROBOTS_N),
        "at most one message per robot connection waits"
    );
    // WHEN it comes back
    pg.resume().await;
    for p in publishers {
        tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .unwrap()
            .unwrap();
    }
    // THEN every message landed exactly once and readiness recovers
    let pool = PgPool::connect(&t.db_url).await.unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM metric_values WHERE name = 'seq'"
        )
        .await,
        i64::from(ROBOTS_N * PER_ROBOT)
    );
    wait_until(
        Duration::from_secs(10),
        "/readyz answers 200 again",
        || async { http_get(&http, t.http, "/readyz").await.0 == 200 },
    )
    .await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_keeps_everything_acknowledged() {
    let db = fresh_database().await;
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db.clone()),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
    ])
    .await;
    wait_for_port(mqtt).await;
    let base_ms = chrono::Utc::now().timestamp_millis() as u64;
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for r in 0..8u32 {
        let acked_so_far = acked_so_far.clone();
        publishers.push(tokio::spawn(async move {
            let mut c = client(mqtt, &format!("tonypi_term{r}")).await;
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
                    Ok(Some(_)) => {
                        acked.push(i);
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            (r, acked)
        }));
    }
    wait_until(Duration::from_secs(30), "the load is on", || {
        let n = acked_so_far.load(Ordering::Relaxed);
        async move { n >= 200 }
    })
    .await;
    let status = daemon.terminate().await;
    assert!(status.success(), "fleetsink exited with {status}");
    let pool = PgPool::connect(&db).await.unwrap();
    let mut total = 0;
    for p in publishers {
        let (r, acked) = p.await.unwrap();
        let stored: Vec<f64> = sqlx::query_scalar(
            "SELECT value FROM metric_values WHERE robot_id = $1 AND name = 'seq' ORDER BY value",
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

/// Rows that already exist (a gateway resending after a reconnect) make the fast
/// plain insert fail; the batch is rewritten skipping them, and the new messages in
/// the same batches still land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_messages_add_no_rows_and_new_ones_in_their_batches_land() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.mqtt.embedded.ack = AckMode::OnReceipt;
    })
    .await;
    t.robot("tonypi_gateway").await.publish_fixtures().await;
    t.restart().await; // graceful: drains the queue
    let metrics_once = t.count("SELECT count(*) FROM metric_values").await;
    let logs_once = t.count("SELECT count(*) FROM logs").await;
    let jobs_once = t.count("SELECT count(*) FROM jobs").await;
    let state_once = fleet_state(&t.pool).await;
    assert!(metrics_once > 0);

    let mut c = t.robot("tonypi_gateway").await;
    // Resend everything, each old message followed by a new one.
    let fixtures = fleetsink::testing::fixtures();
    for (i, (topic, payload)) in fixtures.iter().enumerate() {
        c.publish_acked(topic, payload.to_vec()).await;
        c.publish_acked(
            "tonypi/sensors/tonypi_fresh",
            format!(
                r#"{{"sensor_type":"fresh","value":{i},"timestamp":"2026-11-22T08:00:00.{i:03}Z"}}"#
            ),
        )
        .await;
    }
    t.stop().await;

    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name <> 'fresh'")
            .await,
        metrics_once
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name = 'fresh'")
            .await,
        fixtures.len() as i64
    );
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE robot_id <> 'tonypi_fresh'")
            .await,
        logs_once
    );
    // The new robot's one lifecycle row: first seen.
    assert_eq!(
        t.count("SELECT count(*) FROM logs WHERE robot_id = 'tonypi_fresh'")
            .await,
        1
    );
    assert_eq!(t.count("SELECT count(*) FROM jobs").await, jobs_once);
    assert_eq!(t.count("SELECT count(*) FROM ingest_errors").await, 0);
    // Old statuses and job events did not roll the fleet's state back.
    assert_eq!(fleet_state(&t.pool).await, state_once);
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

/// External mode, several workers: while PostgreSQL is down nothing is acknowledged to
/// Mosquitto, which holds the rest; when it is back, everything lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_postgres_outage_loses_nothing_with_several_workers() {
    let pg = PgCluster::start().await;
    let mut t = spawn_app_on(&pg.url(), MqttMode::External, |cfg| {
        cfg.sink.workers = 3;
        cfg.database.max_connections = 6;
    })
    .await;
    const N: u32 = 600;
    let addr = t.mqtt;
    let publisher = tokio::spawn(async move {
        let mut c = client(addr, "tonypi_ext_outage").await;
        for i in 0..N {
            c.publish_acked(
                &format!("tonypi/sensors/tonypi_xo{}", i % 6),
                format!(
                    r#"{{"sensor_type":"xo","value":{i},"timestamp":"2026-11-22T12:{:02}:{:02}Z"}}"#,
                    i / 60,
                    i % 60
                ),
            )
            .await;
            // Paced, so the stream is still running when PostgreSQL stops.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let q = "SELECT count(*) FROM metric_values WHERE name = 'xo'";
    wait_until(
        Duration::from_secs(30),
        "the stream is under way",
        || async { t.count(q).await >= 40 },
    )
    .await;
    // GIVEN PostgreSQL stops mid-stream
    pg.pause().await;
    let health = t.app().health();
    wait_until(Duration::from_secs(10), "the outage is noticed", || {
        let h = health.clone();
        async move { !h.readiness().database_reachable }
    })
    .await;
    // THEN nothing is acknowledged meanwhile: messages wait in fleetsink and Mosquitto
    let before = health.awaiting_ack();
    assert_holds_for(
        Duration::from_secs(2),
        "no acks go out during the outage",
        || async { health.awaiting_ack() >= before },
    )
    .await;
    // WHEN it comes back THEN every message lands exactly once
    pg.resume().await;
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .unwrap()
        .unwrap();
    let pool = PgPool::connect(&t.db_url).await.unwrap();
    wait_until(Duration::from_secs(30), "all messages land", || async {
        count(&pool, q).await >= i64::from(N)
    })
    .await;
    t.stop().await;
    assert_eq!(count(&pool, q).await, i64::from(N));
    assert_eq!(
        count(
            &pool,
            "SELECT count(DISTINCT value) FROM metric_values WHERE name = 'xo'"
        )
        .await,
        i64::from(N)
    );
}
