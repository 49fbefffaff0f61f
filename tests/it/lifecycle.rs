//! Robot lifecycle: silence → offline (one row), back online (one row), announced
//! offline and the Last Will, a drifting clock, soft-deleted robots reporting again, and
//! two instances sweeping one database.

use std::time::Duration;

use fleetsink::config::MqttMode;
use sqlx::PgPool;

use crate::helpers::*;

async fn status(pool: &PgPool, robot: &str) -> String {
    sqlx::query_scalar("SELECT status FROM robots WHERE robot_id = $1")
        .bind(robot)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The robot's lifecycle rows in time order: the reason (first_seen, silent, reactivated)
/// or else the status it went to.
async fn transitions(pool: &PgPool, robot: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT COALESCE(details->>'reason', details->>'to') FROM logs \
         WHERE robot_id = $1 AND category = 'robot' ORDER BY ts",
    )
    .bind(robot)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn now_ts() -> String {
    chrono::Utc::now().to_rfc3339()
}

async fn silence_then_back(mode: MqttMode) {
    let mut t = spawn_app(mode, |cfg| {
        cfg.robots.offline_after = Duration::from_secs(1);
    })
    .await;
    let mut c = t.robot("tonypi_quiet").await;
    c.publish_acked(
        "tonypi/status/tonypi_quiet",
        format!(r#"{{"status":"online","timestamp":"{}"}}"#, now_ts()),
    )
    .await;
    // A robot whose clock is a year behind keeps talking: it stays online.
    let mut drift = t.robot("tonypi_drift").await;
    let year_ago = chrono::Utc::now() - chrono::Duration::days(365);
    for i in 0..12 {
        let ts = (year_ago + chrono::Duration::seconds(i)).to_rfc3339();
        drift
            .publish_acked(
                "tonypi/sensors/tonypi_drift",
                format!(r#"{{"sensor_type":"t","value":{i},"timestamp":"{ts}"}}"#),
            )
            .await;
        // Real time is the point: it keeps talking for three offline windows.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Still talking (its last reading a moment ago by our clock, a year ago by its own).
    assert_ne!(status(&t.pool, "tonypi_drift").await, "offline");
    // GIVEN silence longer than robots.offline_after THEN offline, logged once
    let pool = t.pool.clone();
    wait_until(
        Duration::from_secs(10),
        "the readings are stored",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_drift'",
            )
            .await
                == 12
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the silent robot is offline",
        || async { status(&pool, "tonypi_quiet").await == "offline" },
    )
    .await;
    // Sweeps run every second (the minimum); the next two find it offline already.
    assert_holds_for(
        Duration::from_secs(2),
        "more sweeps log no second transition",
        || async { transitions(&pool, "tonypi_quiet").await == ["first_seen", "silent"] },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the gauge shows both robots offline",
        || async {
            let (_, metrics) = t.get("/metrics").await;
            metrics.contains("fleetsink_robots{status=\"offline\"} 2")
        },
    )
    .await;
    // WHEN it speaks again (a reading, no status) THEN it is back online, logged once
    c.publish_acked(
        "tonypi/sensors/tonypi_quiet",
        format!(
            r#"{{"sensor_type":"t","value":1,"timestamp":"{}"}}"#,
            now_ts()
        ),
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the robot is back online",
        || async { status(&pool, "tonypi_quiet").await == "online" },
    )
    .await;
    assert_eq!(
        transitions(&pool, "tonypi_quiet").await,
        vec!["first_seen", "silent", "online"]
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_silence_marks_offline_once_and_speaking_brings_it_back() {
    silence_then_back(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_silence_marks_offline_once_and_speaking_brings_it_back() {
    silence_then_back(MqttMode::External).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_offline_and_last_will_take_effect_at_once() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    // A clean stop: the robot says it goes offline.
    let mut c = t.robot("tonypi_clean").await;
    let ts = chrono::Utc::now();
    for (i, s) in ["online", "offline"].iter().enumerate() {
        let at = (ts + chrono::Duration::seconds(i as i64)).to_rfc3339();
        c.publish_acked(
            "tonypi/status/tonypi_clean",
            format!(r#"{{"status":"{s}","timestamp":"{at}"}}"#),
        )
        .await;
    }
    assert_eq!(status(&t.pool, "tonypi_clean").await, "offline");
    // A resent message from before, without a timestamp (servo telemetry has none), does
    // not bring it back: it cannot be told from a resend.
    c.publish_acked(
        "tonypi/servos/tonypi_clean",
        r#"{"servos":{"servo_1":{"position":500}}}"#,
    )
    .await;
    assert_eq!(status(&t.pool, "tonypi_clean").await, "offline");
    assert_eq!(
        transitions(&t.pool, "tonypi_clean").await,
        vec!["first_seen", "offline"]
    );

    // An unclean stop: the broker publishes the robot's Last Will.
    let mut opts = rumqttc::MqttOptions::new("tonypi_will", "127.0.0.1", t.mqtt.port());
    opts.set_last_will(rumqttc::LastWill::new(
        "tonypi/status/tonypi_will",
        r#"{"status":"offline"}"#,
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (robot, mut el) = rumqttc::AsyncClient::new(opts, 10);
    let driver = tokio::spawn(async move { while el.poll().await.is_ok() {} });
    robot
        .publish(
            "tonypi/status/tonypi_will",
            rumqttc::QoS::AtLeastOnce,
            false,
            r#"{"status":"online"}"#,
        )
        .await
        .unwrap();
    let pool = t.pool.clone();
    wait_until(Duration::from_secs(10), "the robot is online", || async {
        count(
            &pool,
            "SELECT count(*) FROM robots WHERE robot_id = 'tonypi_will' AND status = 'online'",
        )
        .await
            == 1
    })
    .await;
    driver.abort(); // the socket closes without DISCONNECT
    wait_until(
        Duration::from_secs(10),
        "the Last Will marks it offline",
        || async { status(&pool, "tonypi_will").await == "offline" },
    )
    .await;
    assert_eq!(
        transitions(&t.pool, "tonypi_will").await,
        vec!["first_seen", "offline"]
    );
    t.stop().await;
}

/// A status message that repeats the robot's status (TonyPi sends one every 10 s) is
/// written without reading the row first, and its time still counts: a late, older
/// status does not roll the robot back; a change made elsewhere (here: another
/// instance marked it offline) is decided from the row, by the messages' times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_status_keeps_its_time_and_a_change_elsewhere_is_decided_from_the_row() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_steady").await;
    let base =
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 0) - chrono::Duration::minutes(5);
    let at = |secs: i64| base + chrono::Duration::seconds(secs);
    let topic = "tonypi/status/tonypi_steady";
    let say = |s: &str, secs: i64| {
        format!(
            r#"{{"status":"{s}","timestamp":"{}"}}"#,
            at(secs).to_rfc3339()
        )
    };
    let status_at = |pool: PgPool| async move {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT status_at FROM robots WHERE robot_id = 'tonypi_steady'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // Acknowledged after commit, so each message is its own batch, the first
    // registering the robot and the next finding it cached.
    c.publish_acked(topic, say("online", 0)).await;
    c.publish_acked(topic, say("online", 30)).await;
    assert_eq!(status_at(t.pool.clone()).await, at(30));
    c.publish_acked(topic, say("busy", 20)).await;
    assert_eq!(status(&t.pool, "tonypi_steady").await, "online");
    c.publish_acked(topic, say("online", 25)).await;
    assert_eq!(status_at(t.pool.clone()).await, at(30), "never moves back");

    // Another instance marks it offline (as of 40 s); fleetsink's cache still says online.
    sqlx::query(
        "UPDATE robots SET status = 'offline', status_at = $1 WHERE robot_id = 'tonypi_steady'",
    )
    .bind(at(40))
    .execute(&t.pool)
    .await
    .unwrap();
    c.publish_acked(topic, say("online", 35)).await;
    assert_eq!(status(&t.pool, "tonypi_steady").await, "offline");
    assert_eq!(status_at(t.pool.clone()).await, at(40));
    c.publish_acked(topic, say("online", 50)).await;
    assert_eq!(status(&t.pool, "tonypi_steady").await, "online");
    assert_eq!(status_at(t.pool.clone()).await, at(50));
    assert_eq!(
        transitions(&t.pool, "tonypi_steady").await,
        vec!["first_seen", "online"],
        "offline -> online logged once (the offline was written by the other instance)"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_robot_that_reports_is_active_again() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut c = t.robot("tonypi_back").await;
    c.publish_acked(
        "tonypi/sensors/tonypi_back",
        format!(
            r#"{{"sensor_type":"t","value":1,"timestamp":"{}"}}"#,
            now_ts()
        ),
    )
    .await;
    sqlx::query("UPDATE robots SET is_active = false WHERE robot_id = 'tonypi_back'")
        .execute(&t.pool)
        .await
        .unwrap();
    c.publish_acked(
        "tonypi/sensors/tonypi_back",
        format!(
            r#"{{"sensor_type":"t","value":2,"timestamp":"{}"}}"#,
            now_ts()
        ),
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE robot_id = 'tonypi_back' AND is_active")
            .await,
        1
    );
    assert_eq!(
        transitions(&t.pool, "tonypi_back").await,
        vec!["first_seen", "reactivated"]
    );
    t.stop().await;
}

/// Two instances on one database, both sweeping every second: each robot's silence is
/// logged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweeping_instances_log_each_transition_once() {
    let mut a = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.robots.offline_after = Duration::from_secs(1);
    })
    .await;
    let mut cfg_b = a.cfg.clone();
    cfg_b.mqtt.embedded.listen = "127.0.0.1:0".parse().unwrap();
    cfg_b.http.listen = "127.0.0.1:0".parse().unwrap();
    let shutdown_b = tokio_util::sync::CancellationToken::new();
    let b = fleetsink::app::App::start(cfg_b, shutdown_b.clone())
        .await
        .unwrap();
    const N: usize = 20;
    for r in 0..N {
        let (robot, addr) = if r % 2 == 0 {
            (format!("tonypi_pair{r:02}"), a.mqtt)
        } else {
            (format!("tonypi_pair{r:02}"), b.mqtt_addr().unwrap())
        };
        let mut c = client(addr, &robot).await;
        c.publish_acked(
            &format!("tonypi/status/{robot}"),
            format!(r#"{{"status":"online","timestamp":"{}"}}"#, now_ts()),
        )
        .await;
    }
    let pool = a.pool.clone();
    wait_until(
        Duration::from_secs(15),
        "every robot is offline",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM robots WHERE status = 'offline'",
            )
            .await
                == N as i64
        },
    )
    .await;
    // Sweeps run every second (the minimum): several more by both instances.
    assert_holds_for(
        Duration::from_secs(3),
        "more sweeps by both instances log no second transition",
        || async {
            count(
                &pool,
                "SELECT count(*) FROM logs WHERE category = 'robot' AND details->>'reason' = 'silent'",
            )
            .await
                == N as i64
        },
    )
    .await;
    shutdown_b.cancel();
    b.stopped().await;
    a.stop().await;
}
