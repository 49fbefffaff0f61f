//! A scripted robot's day (the fleet-semantics acceptance test), in both broker modes,
//! two robots interleaved: online; a job with items and scans completes, a second is
//! cancelled with a reason, a third fails; battery falls to low, then critical, then
//! recovers; CPU flaps around its threshold; a command is sent over HTTP and answered;
//! silence makes the robot offline; it comes back; its Last Will marks it offline again.
//! The rows of robots, jobs, alerts, commands and logs are then exactly what this day
//! must produce, and the two robots never disturb each other.

use std::time::Duration;

use chrono::{DateTime, Utc};
use fleetsink::config::MqttMode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

const ROBOTS: [&str; 2] = ["tonypi_alpha", "tonypi_beta"];

/// The day's messages for `robot`, in order; payload times from `base`, one second apart.
fn script(robot: &str, base: DateTime<Utc>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0i64;
    let mut push = |topic: String, mut payload: serde_json::Value| {
        payload["timestamp"] = json!((base + chrono::Duration::seconds(i)).to_rfc3339());
        payload["robot_id"] = json!(robot);
        i += 1;
        out.push((topic, payload.to_string()));
    };
    let status = format!("tonypi/status/{robot}");
    let job = format!("tonypi/job/{robot}");
    let scan = format!("tonypi/scan/{robot}");
    push(
        status.clone(),
        json!({"status": "online", "system_info": {"cpu_percent": 20}}),
    );
    push(
        job.clone(),
        json!({"status": "started", "task_name": "pick", "items_total": 3}),
    );
    push(
        job.clone(),
        json!({"status": "working", "items_done": 1, "items_total": 3}),
    );
    push(scan.clone(), json!({"qr_code": "Q1", "station_name": "A"}));
    push(
        job.clone(),
        json!({"status": "working", "items_done": 2, "items_total": 3}),
    );
    push(scan, json!({"qr": "Q2", "station": "B"}));
    push(job.clone(), json!({"status": "completed", "items_done": 3}));
    push(
        job.clone(),
        json!({"status": "started", "task_name": "sort"}),
    );
    push(
        job.clone(),
        json!({"status": "cancelled", "reason": "battery low"}),
    );
    push(
        job.clone(),
        json!({"status": "started", "task_name": "carry"}),
    );
    push(job, json!({"status": "failed"}));
    for pct in [60.0, 28.0, 14.0, 50.0] {
        push(
            "tonypi/battery".into(),
            json!({"percentage": pct, "voltage": 11.2, "charging": false}),
        );
    }
    for k in 0..20 {
        let cpu = if k % 2 == 0 { 74.0 } else { 67.0 };
        push(
            status.clone(),
            json!({"status": "online", "system_info": {"cpu_percent": cpu}}),
        );
    }
    out
}

async fn rows(pool: &PgPool, sql: &str, robot: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(robot)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn status(pool: &PgPool, robot: &str) -> String {
    rows(pool, "SELECT status FROM robots WHERE robot_id = $1", robot)
        .await
        .pop()
        .unwrap_or_default()
}

async fn robots_day(mode: MqttMode) {
    let mut t = spawn_app(mode, |cfg| {
        cfg.robots.offline_after = Duration::from_secs(1);
    })
    .await;
    let base = Utc::now() - chrono::Duration::seconds(120);
    // Each robot's own connection (client id = robot id); alpha sets a Last Will.
    let mut opts =
        rumqttc::MqttOptions::new("tonypi_alpha", t.mqtt.ip().to_string(), t.mqtt.port());
    opts.set_last_will(rumqttc::LastWill::new(
        "tonypi/status/tonypi_alpha",
        r#"{"status":"offline","robot_id":"tonypi_alpha"}"#,
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (alpha, mut alpha_loop) = rumqttc::AsyncClient::new(opts, 100);
    let (cmd_tx, mut alpha_cmds) = tokio::sync::mpsc::unbounded_channel();
    let alpha_driver = tokio::spawn(async move {
        loop {
            match alpha_loop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    let _ = cmd_tx.send(p);
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    alpha
        .subscribe("tonypi/commands/tonypi_alpha", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut beta = t.robot("tonypi_beta").await;

    // The day, the two robots' messages interleaved.
    let (sa, sb) = (script("tonypi_alpha", base), script("tonypi_beta", base));
    for ((ta, pa), (tb, pb)) in sa.iter().zip(&sb) {
        alpha
            .publish(ta, rumqttc::QoS::AtLeastOnce, false, pa.clone())
            .await
            .unwrap();
        beta.publish_acked(tb, pb.clone()).await;
    }
    let pool = t.pool.clone();
    wait_until(
        Duration::from_secs(20),
        "the day's messages are stored",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM alerts WHERE alert_type = 'cpu' AND count = 10",
            )
            .await
                == 2
        },
    )
    .await;

    // A command over HTTP reaches alpha as TonyPi's client expects; its answer acks it.
    let (code, body) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "wave", "robot_id": "tonypi_alpha"}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let cmd = tokio::time::timeout(Duration::from_secs(10), alpha_cmds.recv())
        .await
        .expect("the command did not arrive")
        .unwrap();
    let cmd: serde_json::Value = serde_json::from_slice(&cmd.payload).unwrap();
    assert_eq!(cmd["type"], "wave");
    alpha
        .publish(
            "tonypi/commands/response",
            rumqttc::QoS::AtLeastOnce,
            false,
            json!({"robot_id": "tonypi_alpha", "command_id": cmd["id"], "success": true})
                .to_string(),
        )
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the command is acknowledged",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM commands WHERE status = 'acknowledged'",
            )
            .await
                == 1
        },
    )
    .await;

    // Silence: both go offline, one row each.
    wait_until(
        Duration::from_secs(10),
        "both robots are offline",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM robots WHERE status = 'offline'",
            )
            .await
                == 2
        },
    )
    .await;
    // Alpha comes back, then its connection drops: the Last Will marks it offline.
    alpha
        .publish(
            "tonypi/status/tonypi_alpha",
            rumqttc::QoS::AtLeastOnce,
            false,
            json!({"status": "online", "robot_id": "tonypi_alpha", "timestamp": Utc::now().to_rfc3339()})
                .to_string(),
        )
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), "alpha is back online", || async {
        status(&pool, "tonypi_alpha").await == "online"
    })
    .await;
    alpha_driver.abort();
    wait_until(Duration::from_secs(10), "alpha's Last Will marks it offline", || async {
        status(&pool, "tonypi_alpha").await == "offline"
            && count(&pool, "SELECT count(*) FROM logs WHERE robot_id = 'tonypi_alpha' AND category = 'robot'").await == 4
    })
    .await;
    t.stop().await;

    // THEN exactly this day's rows, for each robot.
    for robot in ROBOTS {
        let jobs = rows(
            &pool,
            "SELECT concat_ws(':', task_name, status, items_done, percent_complete, \
                    last_item->>'qr', cancel_reason, success) \
             FROM jobs WHERE robot_id = $1 ORDER BY start_time",
            robot,
        )
        .await;
        assert_eq!(
            jobs,
            vec![
                "pick:completed:3:100:Q2:t",
                "sort:cancelled:battery low",
                "carry:failed:f"
            ],
            "{robot}"
        );
        let alerts = rows(
            &pool,
            "SELECT concat_ws(':', alert_type, severity, count, resolved) FROM alerts \
             WHERE robot_id = $1 ORDER BY alert_type",
            robot,
        )
        .await;
        assert_eq!(
            alerts,
            vec!["battery:critical:2:t", "cpu:warning:10:f"],
            "{robot}"
        );
        let alert_logs = rows(
            &pool,
            "SELECT (details->>'metric') || ' ' || (details->>'event') FROM logs \
             WHERE robot_id = $1 AND category = 'alert' ORDER BY ts",
            robot,
        )
        .await;
        assert_eq!(
            alert_logs,
            vec![
                "battery warning",
                "battery escalated to critical",
                "battery resolved",
                "cpu warning"
            ],
            "{robot}"
        );
        let scans = rows(
            &pool,
            "SELECT message FROM logs WHERE robot_id = $1 AND category = 'scan' ORDER BY ts",
            robot,
        )
        .await;
        assert_eq!(scans, vec!["scanned Q1 at A", "scanned Q2 at B"], "{robot}");
    }
    let lifecycle = |robot| {
        rows(
            &pool,
            "SELECT COALESCE(details->>'reason', details->>'to') FROM logs \
             WHERE robot_id = $1 AND category = 'robot' ORDER BY ts",
            robot,
        )
    };
    assert_eq!(
        lifecycle("tonypi_alpha").await,
        vec!["first_seen", "silent", "online", "offline"]
    );
    assert_eq!(lifecycle("tonypi_beta").await, vec!["first_seen", "silent"]);
    assert_eq!(
        rows(
            &pool,
            "SELECT concat_ws(':', command, status) FROM commands WHERE robot_id = $1",
            "tonypi_alpha"
        )
        .await,
        vec!["wave:acknowledged"]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM commands").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM ingest_errors").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_robots_day() {
    robots_day(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_a_robots_day() {
    robots_day(MqttMode::External).await;
}
