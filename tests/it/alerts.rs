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
    // 67 % is inside the 5 % hysteresis band: never resolved. The count is written
    // within alerts.flush_interval of the messages.
    wait_for_eq(
        std::time::Duration::from_secs(5),
        vec![("cpu".to_string(), "warning".to_string(), 30, false)],
        || alerts(&t.pool, "tonypi_cpu"),
    )
    .await;
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

/// A status message of `robot` at `ts(i)` with CPU at `cpu` %.
fn cpu_status(robot: &str, cpu: f64, i: u32) -> String {
    format!(
        r#"{{"status":"online","robot_id":"{robot}","system_info":{{"cpu_percent":{cpu}}},"timestamp":"{}"}}"#,
        ts(i)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_open_alert_when_readings_only_retrigger_it_then_its_row_is_written_at_the_flush_and_at_shutdown()
 {
    // GIVEN fleetsink that writes re-triggered alerts only every hour, and a robot whose
    // CPU opened an alert
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.alerts.flush_interval = std::time::Duration::from_secs(600);
    })
    .await;
    let mut c = t.robot("tonypi_busy").await;
    let topic = "tonypi/status/tonypi_busy";
    c.publish_acked(topic, cpu_status("tonypi_busy", 80.0, 0))
        .await;
    assert_eq!(
        alerts(&t.pool, "tonypi_busy").await,
        vec![("cpu".to_string(), "warning".to_string(), 1, false)],
        "opening an alert is written with its batch"
    );

    // WHEN ten more readings past the warning threshold, short of critical, arrive (each
    // acknowledged: committed)
    for i in 1..=10 {
        c.publish_acked(
            topic,
            cpu_status("tonypi_busy", 80.0 + f64::from(i) / 2.0, i),
        )
        .await;
    }

    // THEN the row is not rewritten per message: the count waits in memory
    assert_holds_for(
        std::time::Duration::from_millis(300),
        "the open alert's row keeps count 1 until the flush",
        || async {
            alerts(&t.pool, "tonypi_busy").await
                == vec![("cpu".to_string(), "warning".to_string(), 1, false)]
        },
    )
    .await;
    // AND a shutdown writes it: count, latest value and message
    t.stop().await;
    let (count, value, message): (i32, f64, String) =
        sqlx::query_as("SELECT count, value, message FROM alerts WHERE robot_id = 'tonypi_busy'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert_eq!((count, value), (11, 85.0));
    assert_eq!(message, "CPU usage is at 85.0% (threshold: 70%)");
    assert_eq!(alert_events(&t.pool, "tonypi_busy").await, vec!["warning"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_alert_resolved_behind_fleetsinks_back_when_the_cpu_stays_high_then_the_alert_is_active_again()
 {
    // GIVEN a robot whose open CPU alert fleetsink holds in memory, re-triggered
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_hold").await;
    let topic = "tonypi/status/tonypi_hold";
    for i in 0..3 {
        c.publish_acked(topic, cpu_status("tonypi_hold", 85.0, i))
            .await;
    }
    // WHEN another writer (a second instance, a hand-run SQL) resolves it
    sqlx::query(
        "UPDATE alerts SET resolved = true, resolved_at = now() WHERE robot_id = 'tonypi_hold'",
    )
    .execute(&t.pool)
    .await
    .unwrap();
    // AND the CPU stays past the threshold (a reading every 50 ms, for at most 10 s)
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 3;
    while alerts(&t.pool, "tonypi_hold").await.iter().all(|a| a.3) {
        assert!(
            std::time::Instant::now() < until,
            "the alert resolved behind fleetsink's back never became active again"
        );
        c.publish_acked(topic, cpu_status("tonypi_hold", 85.0, i))
            .await;
        i += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // THEN it is that one alert, active again (inside the dedupe window): its stored
    // count plus the re-activation (re-triggers still in memory when the row was
    // resolved elsewhere are dropped with the stale copy, README "What is written when")
    let rows = alerts(&t.pool, "tonypi_hold").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(!rows[0].3 && rows[0].2 >= 2, "{rows:?}");
    t.stop().await;
}
