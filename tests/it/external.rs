//! External mode against a real Mosquitto: traffic lands, an uncommitted message is
//! redelivered and written once, a backlog beyond the window drains, and broker URLs
//! with credentials or IPv6 hosts connect without ever logging the password.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fleetsink::config::MqttMode;

use crate::embedded::assert_fixture_rows;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonypi_traffic_lands() {
    let mut t = spawn_app(MqttMode::External, |_| {}).await;
    let mut c = t.robot("tonypi_sim").await;
    let sent = c.publish_fixtures().await;
    let battery_rows = "SELECT count(*) FROM metric_values WHERE name LIKE 'battery.%'";
    assert_eq!(t.wait_count(battery_rows, 30).await, 30);
    t.wait_count(
        "SELECT count(*) FROM logs WHERE category LIKE 'robot\\_%'",
        10,
    )
    .await;
    // Everything was acked to the robot by Mosquitto; fleetsink acks each message to
    // Mosquitto once it is written.
    let broker = t.broker.as_ref().unwrap();
    let fleetsink = t.cfg.mqtt.external.client_id.clone();
    wait_until(
        Duration::from_secs(30),
        "fleetsink has acknowledged every message",
        || {
            let n = broker.pubacks_from(&fleetsink);
            async move { n >= sent }
        },
    )
    .await;
    t.stop().await;
    assert_fixture_rows(&t.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_message_is_redelivered_and_written_once() {
    let broker = Mosquitto::start().await;
    let db = fresh_database().await;
    let fleetsink = unique("fleetsink");
    let envs = vec![
        ("FLEETSINK__DATABASE__URL", db.clone()),
        ("FLEETSINK__MQTT__MODE", "external".to_string()),
        ("FLEETSINK__MQTT__EXTERNAL__URL", broker.url()),
        ("FLEETSINK__MQTT__EXTERNAL__CLIENT_ID", fleetsink.clone()),
        (
            "FLEETSINK__MQTT__EXTERNAL__BROKER_INFLIGHT",
            "1000".to_string(),
        ),
    ];
    let mut daemon = Daemon::start(&envs).await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let http = reqwest::Client::new();
    daemon.ready().await;
    broker.subscribed(&fleetsink, 0).await;

    // GIVEN the metrics table is locked, so fleetsink's commit cannot finish
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut c = client(broker.addr, "tonypi_r1").await;
    c.publish_acked(
        "tonypi/sensors/tonypi_r1",
        r#"{"sensor_type":"temp","value":42.5,"timestamp":"2026-11-22T09:00:00Z"}"#,
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "fleetsink holds the message",
        || async {
            let (_, body) = http_get(&http, daemon.http, "/readyz").await;
            body.contains("\"messages_awaiting_ack\":1")
        },
    )
    .await;
    // WHEN fleetsink is killed before the commit, then the lock is released
    daemon.kill();
    blocker.rollback().await.unwrap();
    assert_eq!(count(&pool, "SELECT count(*) FROM metric_values").await, 0);
    // THEN a new fleetsink with the same session gets the message again and writes it once
    let _daemon = Daemon::start(&envs).await;
    let q = "SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_r1'";
    wait_until(
        Duration::from_secs(30),
        "the redelivered row lands",
        || async { count(&pool, q).await >= 1 },
    )
    .await;
    assert_holds_for(
        Duration::from_millis(500),
        "the message is written once",
        || async { count(&pool, q).await == 1 },
    )
    .await;
}

/// A broker may send far more than the in-flight window fleetsink was told about
/// (Mosquitto 2.0.11 does while draining a backlog; here its window is simply 50 times
/// larger). Acks must still flow: the sink never waits on the ack path, so a full
/// request channel cannot stall the event loop, the queue and the sink in a circle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_drains_when_broker_exceeds_the_window() {
    // GIVEN fleetsink's persistent session exists (max_inflight_messages 1000 at the
    // broker, 20 assumed by fleetsink), and a backlog builds while it is away
    let mut t = spawn_app(MqttMode::External, |cfg| {
        cfg.mqtt.external.broker_inflight = 20;
        cfg.mqtt.external.request_channel_capacity = 21;
        cfg.ingest.queue_capacity = 20;
        cfg.batch.max_messages = 10;
    })
    .await;
    t.stop().await;
    let mut c = t.robot("tonypi_backlog").await;
    let n: i64 = 3000;
    for i in 0..n {
        c.publish_acked(
            "tonypi/sensors/tonypi_backlog",
            format!(r#"{{"sensor_type":"backlog","value":{i},"timestamp":"2026-11-22T07:00:00.{i:04}Z"}}"#),
        )
        .await;
    }
    // WHEN fleetsink comes back THEN the whole backlog lands
    t.start().await;
    let q = "SELECT count(*) FROM metric_values WHERE name = 'backlog'";
    assert_eq!(t.wait_count(q, n).await, n);
    t.stop().await;
}

/// A Mosquitto that accepts only `fleet` / `pa:ss@word` (the password needs
/// percent-encoding in a URL).
async fn password_broker(host: &'static str) -> Mosquitto {
    Mosquitto::start_with(host, |dir| {
        let file = dir.join("passwd");
        let ok = std::process::Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&file)
            .args(["fleet", "pa:ss@word"])
            .status()
            .expect("mosquitto_passwd (package mosquitto) is needed")
            .success();
        assert!(ok, "mosquitto_passwd failed");
        // Mosquitto started as root reads its files as the `mosquitto` user.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        format!("allow_anonymous false\npassword_file {}\n", file.display())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_connect() {
    let broker = password_broker("127.0.0.1").await;
    let port = broker.addr.port();
    let mut t = spawn_app_with_broker(broker, |cfg| {
        cfg.mqtt.external.url = format!("mqtt://fleet:pa%3Ass%40word@127.0.0.1:{port}").into();
    })
    .await;
    let mut robot = rumqttc::MqttOptions::new("tonypi_pw", "127.0.0.1", port);
    robot.set_credentials("fleet", "pa:ss@word");
    let (c, mut el) = rumqttc::AsyncClient::new(robot, 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    c.publish(
        "tonypi/sensors/tonypi_pw",
        rumqttc::QoS::AtLeastOnce,
        false,
        r#"{"sensor_type":"pw","value":1,"timestamp":"2026-11-22T09:00:00Z"}"#,
    )
    .await
    .unwrap();
    let q = "SELECT count(*) FROM metric_values WHERE name = 'pw'";
    assert_eq!(t.wait_count(q, 1).await, 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_broker_url_connects() {
    let broker = Mosquitto::start_with("::1", |_| "allow_anonymous true\n".into()).await;
    assert!(
        broker.url().starts_with("mqtt://[::1]:"),
        "{}",
        broker.url()
    );
    let mut t = spawn_app_with_broker(broker, |_| {}).await;
    let mut robot = t.robot("tonypi_v6").await;
    robot
        .publish_acked(
            "tonypi/sensors/tonypi_v6",
            r#"{"sensor_type":"v6","value":1,"timestamp":"2026-11-22T09:00:00Z"}"#,
        )
        .await;
    assert_eq!(
        t.wait_count("SELECT count(*) FROM metric_values WHERE name = 'v6'", 1)
            .await,
        1
    );
    t.stop().await;
}

/// The bug this guards against: a URL with credentials was taken whole as the host,
/// and every reconnect line logged the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_never_logged() {
    let broker = password_broker("127.0.0.1").await;
    let db = fresh_database().await;
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db),
        ("FLEETSINK__MQTT__MODE", "external".to_string()),
        (
            "FLEETSINK__MQTT__EXTERNAL__URL",
            format!("mqtt://fleet:Wr0ngSecret@{}", broker.addr),
        ),
        (
            "FLEETSINK__MQTT__EXTERNAL__RECONNECT_BACKOFF_MAX",
            "200ms".into(),
        ),
        ("RUST_LOG", "info".into()),
    ])
    .await;
    wait_until(
        Duration::from_secs(20),
        "fleetsink logs its failed reconnects",
        || async { daemon.log_text().matches("reconnecting").count() >= 2 },
    )
    .await;
    let log = daemon.log_text();
    assert!(!log.contains("Wr0ngSecret"), "password leaked:\n{log}");
    assert!(
        log.contains(&format!("mqtt://fleet@{}", broker.addr)),
        "the broker is named without its password:\n{log}"
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "{status}");
}
