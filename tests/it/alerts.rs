//! Threshold alerts through MQTT: battery falls to low, then critical, then recovers
//! (one alert: opened, escalated, resolved); CPU flapping around its threshold is one
//! alert with a rising count; resends never double-count; a robot's own threshold wins.

use fleetsink::config::MqttMode;
use sqlx::PgPool;

use crate::helpers::*;

fn ts(second: u32) -> String {
    format!("2026-11-22T13:{:02}:{:02}Z", second / 60, second % 60)
}

/// (metric, level, count, resolved) of every alert of `robot`, oldest first.
async fn alerts(pool: &PgPool, robot: &str) -> Vec<(String, String, i32, bool)> {
    sqlx::query_as(
        "SELECT alert_type, severity, count, resolved FROM alerts WHERE robot_id = $1 ORDER BY id",
    )
    .bind(robot)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn alert_events(pool: &PgPool, robot: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT details->>'event' FROM logs WHERE robot_id = $1 AND category = 'alert' ORDER BY ts",
    )
    .bind(robot)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn battery_low_critical_recovered_is_one_alert() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_batt").await;
    let levels = [60.0, 45.0, 29.0, 22.0, 14.0, 11.0, 18.0, 31.0, 40.0, 55.0];
    let battery = |i: usize, pct: f64| {
        format!(
            r#"{{"robot_id":"tonypi_batt","percentage":{pct},"voltage":11.1,"charging":false,"timestamp":"{}"}}"#,
            ts(i as u32)
        )
    };
    for (i, pct) in levels.iter().enumerate() {
        c.publish_acked("tonypi/battery", battery(i, *pct)).await;
    }
    assert_eq!(
        alerts(&t.pool, "tonypi_batt").await,
        vec![("battery".to_string(), "critical".to_string(), 5, true)]
    );
    assert_eq!(
        alert_events(&t.pool, "tonypi_batt").await,
        vec!["warning", "escalated to critical", "resolved"]
    );
    // Resending all of it changes nothing.
    for (i, pct) in levels.iter().enumerate() {
        c.publish_acked("tonypi/battery", battery(i, *pct)).await;
    }
    assert_eq!(
        alerts(&t.pool, "tonypi_batt").await,
        vec![("battery".to_string(), "critical".to_string(), 5, true)]
    );
    assert_eq!(alert_events(&t.pool, "tonypi_batt").await.len(), 3);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_flapping_inside_the_window_is_one_alert_with_a_rising_count() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_cpu").await;
    // A minute of status messages, CPU alternating around its 70 % threshold.
    for i in 0..60u32 {
        let cpu = if i % 2 == 0 { 74.0 } else { 67.0 };
        c.publish_acked(
            "tonypi/status/tonypi_cpu",
            format!(
                r#"{{"status":"online","system_info":{{"cpu_percent":{cpu},"memory_percent":20}},"timestamp":"{}"}}"#,
                ts(i)
            ),
        )
        .await;
    }
    assert_eq!(
        alerts(&t.pool, "tonypi_cpu").await,
        vec![("cpu".to_string(), "warning".to_string(), 30, false)],
        "67 % is inside the 5 % hysteresis band: never resolved"
    );
    assert_eq!(alert_events(&t.pool, "tonypi_cpu").await, vec!["warning"]);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_own_threshold_wins_over_the_fleet_default() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_cool").await;
    let status = |cpu: f64, i: u32| {
        format!(
            r#"{{"status":"online","system_info":{{"cpu_percent":{cpu}}},"timestamp":"{}"}}"#,
            ts(i)
        )
    };
    c.publish_acked("tonypi/status/tonypi_cool", status(55.0, 0))
        .await;
    assert!(alerts(&t.pool, "tonypi_cool").await.is_empty());
    sqlx::query(
        "INSERT INTO alert_thresholds (robot_id, metric_type, warning_threshold, critical_threshold) \
         VALUES ('tonypi_cool', 'cpu', 50, 90)",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    c.publish_acked("tonypi/status/tonypi_cool", status(55.0, 1))
        .await;
    let (threshold,): (f64,) =
        sqlx::query_as("SELECT threshold FROM alerts WHERE robot_id = 'tonypi_cool'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!(threshold, 50.0);
    t.stop().await;
}
