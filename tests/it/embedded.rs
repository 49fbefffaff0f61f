//! The embedded broker: TonyPi traffic lands, a PUBACK means committed, bad input is
//! kept in `ingest_errors`, downlink publishes reach subscribers.

use std::time::Duration;

use fleetsink::config::{AckMode, MqttMode};
use fleetsink::mqtt::Qos;
use sqlx::PgPool;

use crate::helpers::*;

/// Checks what the fixture traffic must have produced.
pub async fn assert_fixture_rows(pool: &PgPool) {
    let n = |q: &'static str| async move { count(pool, q).await };
    assert_eq!(
        n("SELECT count(*) FROM robots WHERE robot_id LIKE 'tonypi\\_%' AND robot_id <> 'tonypi_probe'").await,
        5,
        "five simulated robots"
    );
    let (value, ts): (f64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT value, ts FROM metric_values WHERE robot_id = 'tonypi_normal' AND name = 'battery.percentage' ORDER BY ts LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(value, 73.3);
    assert_eq!(ts.to_rfc3339(), "2026-11-22T09:27:50.174489+00:00");
    assert!(
        n("SELECT count(*) FROM metric_values WHERE unit IS NOT NULL").await > 0,
        "sensor units kept"
    );
    assert!(
        n("SELECT count(*) FROM metric_values WHERE name LIKE 'servos.servo_%.temperature'").await
            > 0
    );
    assert!(n("SELECT count(*) FROM metric_values WHERE name LIKE 'system_info.%'").await > 0);
    assert!(n("SELECT count(*) FROM metric_values WHERE name = 'location.x'").await > 0);
    assert!(n("SELECT count(*) FROM logs WHERE category LIKE 'robot_%'").await >= 10);
    assert!(n("SELECT count(*) FROM logs WHERE category = 'robot'").await >= 5);
    let status: String =
        sqlx::query_scalar("SELECT status FROM robots WHERE robot_id = 'tonypi_job_demo'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(["online", "offline"].contains(&status.as_str()), "{status}");
    assert!(n("SELECT count(*) FROM jobs WHERE robot_id = 'tonypi_job_demo'").await >= 1);
    assert_eq!(n("SELECT count(*) FROM ingest_errors").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonypi_traffic_lands_and_puback_means_committed() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_gateway").await;

    // Each PUBACK arrives only once the row is visible to another connection.
    for i in 0..20 {
        let payload = format!(
            r#"{{"sensor_type":"probe","value":{i},"timestamp":"2026-11-22T09:00:{i:02}Z"}}"#
        );
        c.publish_acked("tonypi/sensors/tonypi_probe", payload)
            .await;
        let n = t
            .count(&format!(
                "SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_probe' AND value = {i}"
            ))
            .await;
        assert_eq!(
            n, 1,
            "PUBACK for message {i} came before its row was committed"
        );
    }
    c.publish_fixtures().await;
    assert_fixture_rows(&t.pool).await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_go_to_ingest_errors_and_good_ones_land() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_bad").await;
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
        t.count("SELECT count(*) FROM ingest_errors").await,
        bad.len() as i64
    );
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM ingest_errors ORDER BY received_at")
            .fetch_all(&t.pool)
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
    .fetch_one(&t.pool)
    .await
    .unwrap();
    assert_eq!((size, kept), (1024 * 1024, 4096));
    assert_eq!(
        t.count(
            "SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_good' AND name = 'ok'"
        )
        .await,
        i64::from(i) + 1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name = 'late'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE robot_id LIKE '%DROP%'")
            .await,
        0
    );
    assert_eq!(t.get("/healthz").await.0, 200);
    let (_, metrics) = t.get("/metrics").await;
    assert!(
        metrics.contains("fleetsink_ingest_errors_total{reason=\"not_json\"} 4"),
        "{metrics}"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_receipt_mode_acks_and_still_commits() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.mqtt.embedded.ack = AckMode::OnReceipt;
    })
    .await;
    let mut c = t.robot("tonypi_fast").await;
    for i in 0..50 {
        c.publish_acked(
            "tonypi/sensors/tonypi_fast",
            format!(r#"{{"sensor_type":"x","value":{i},"timestamp":"2026-11-22T08:00:{i:02}Z"}}"#),
        )
        .await;
    }
    t.stop().await; // graceful: drains the queue
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE name = 'x'")
            .await,
        50
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downlink_commands_reach_subscribed_robots() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut robot = t.robot("tonypi_cmd").await;
    robot.subscribe("tonypi/commands/tonypi_cmd").await;
    t.app()
        .publish(
            "tonypi/commands/tonypi_cmd",
            bytes::Bytes::from_static(br#"{"type":"move","direction":"forward"}"#),
            Qos::AtLeastOnce,
        )
        .await
        .unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), robot.messages.recv())
        .await
        .expect("command not delivered")
        .unwrap();
    assert_eq!(msg.topic, "tonypi/commands/tonypi_cmd");
    assert!(String::from_utf8_lossy(&msg.payload).contains("forward"));
    t.stop().await;
}
