//! Several sink workers: each robot's events still apply in receive order (jobs, status
//! changes), every message lands once, and in external mode one connection carrying
//! every robot gets all its PUBACKs although workers commit in parallel.

use std::time::Duration;

use fleetsink::config::MqttMode;

use crate::helpers::*;

const ROBOTS: usize = 12;
const STEPS: usize = 20;

/// Robot `r`'s script: status online, a job started, `STEPS` progress events with
/// growing item counts, emergency stop, job completed, back online.
fn script(r: usize) -> Vec<(String, String)> {
    let robot = format!("tonypi_w{r:02}");
    let ts = |i: usize| format!("2026-11-22T10:{:02}:{:02}.{r:03}Z", i / 60, i % 60);
    let mut out = vec![(
        format!("tonypi/status/{robot}"),
        format!(r#"{{"status":"online","timestamp":"{}"}}"#, ts(0)),
    )];
    out.push((
        format!("tonypi/job/{robot}"),
        format!(
            r#"{{"status":"started","task_name":"sort","items_total":{STEPS},"timestamp":"{}"}}"#,
            ts(1)
        ),
    ));
    for i in 1..=STEPS {
        out.push((
            format!("tonypi/job/{robot}"),
            format!(
                r#"{{"status":"working","items_done":{i},"items_total":{STEPS},"timestamp":"{}"}}"#,
                ts(1 + i)
            ),
        ));
    }
    out.push((
        format!("tonypi/status/{robot}"),
        format!(
            r#"{{"status":"emergency_stopped","timestamp":"{}"}}"#,
            ts(STEPS + 2)
        ),
    ));
    out.push((
        format!("tonypi/job/{robot}"),
        format!(
            r#"{{"status":"completed","items_done":{STEPS},"timestamp":"{}"}}"#,
            ts(STEPS + 3)
        ),
    ));
    out.push((
        format!("tonypi/status/{robot}"),
        format!(r#"{{"status":"online","timestamp":"{}"}}"#, ts(STEPS + 4)),
    ));
    out
}

/// Every robot's final state is what its script ends in, and its transitions were
/// logged once each, in order.
async fn assert_scripts_applied(t: &TestApp) {
    let per_robot = script(0).len() as i64;
    let jobs: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT robot_id, status, items_done, percent_complete FROM jobs ORDER BY robot_id",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(jobs.len(), ROBOTS, "{jobs:?}");
    for (robot, status, done, percent) in &jobs {
        assert_eq!(
            (status.as_str(), *done, *percent),
            ("completed", STEPS as i64, 100.0),
            "{robot}"
        );
    }
    let transitions: Vec<String> = sqlx::query_scalar(
        "SELECT string_agg(details->>'to', '>' ORDER BY ts) FROM logs \
         WHERE category = 'robot' GROUP BY robot_id ORDER BY robot_id",
    )
    .fetch_all(&t.pool)
    .await
    .unwrap();
    assert_eq!(
        transitions,
        vec!["online>emergency_stopped>online".to_string(); ROBOTS]
    );
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE status = 'online'")
            .await,
        ROBOTS as i64
    );
    assert!(per_robot > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_workers_keep_each_robots_order() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.sink.workers = 4;
        cfg.database.max_connections = 8;
    })
    .await;
    let mut robots = Vec::new();
    for r in 0..ROBOTS {
        let addr = t.mqtt;
        robots.push(tokio::spawn(async move {
            let mut c = client(addr, &format!("tonypi_w{r:02}")).await;
            for (topic, payload) in script(r) {
                c.publish_acked(&topic, payload).await;
            }
        }));
    }
    for r in robots {
        r.await.unwrap();
    }
    assert_scripts_applied(&t).await;
    t.stop().await;
}

/// One connection (a gateway, or Mosquitto's to fleetsink) carries all robots, messages
/// pipelined without waiting for each PUBACK. Mosquitto lets only 20 messages be
/// unacknowledged towards fleetsink, so the 300 messages land only if PUBACKs keep
/// flowing while four workers commit out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_workers_ack_everything_and_keep_each_robots_order() {
    let broker = Mosquitto::start_with("127.0.0.1", |_| {
        "allow_anonymous true\nmax_inflight_messages 20\n".into()
    })
    .await;
    let mut t = spawn_app_with_broker(broker, |cfg| {
        cfg.sink.workers = 4;
        cfg.database.max_connections = 8;
        cfg.mqtt.external.broker_inflight = 20;
    })
    .await;
    let mut gateway = t.robot("tonypi_gateway").await;
    let scripts: Vec<_> = (0..ROBOTS).map(script).collect();
    let mut sent = 0;
    for step in 0..scripts[0].len() {
        for s in &scripts {
            let (topic, payload) = &s[step];
            gateway
                .client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
            sent += 1;
        }
    }
    for _ in 0..sent {
        tokio::time::timeout(Duration::from_secs(30), gateway.acks.recv())
            .await
            .expect("Mosquitto did not acknowledge every publish")
            .unwrap();
    }
    let q = "SELECT count(*) FROM jobs WHERE status = 'completed'";
    assert_eq!(t.wait_count(q, ROBOTS as i64).await, ROBOTS as i64);
    // Everything fleetsink took from Mosquitto it acknowledged: nothing is waiting.
    let health = t.app().health();
    wait_until(
        Duration::from_secs(10),
        "fleetsink acked everything",
        || {
            let h = health.clone();
            async move { h.awaiting_ack() == 0 }
        },
    )
    .await;
    t.stop().await;
    assert_scripts_applied(&t).await;
}
