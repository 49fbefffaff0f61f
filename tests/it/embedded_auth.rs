//! `mqtt.embedded.auth`: the embedded broker checks CONNECT (password and Last Will
//! topic), PUBLISH and SUBSCRIBE against `mqtt_users` / `mqtt_acls`, and a payload
//! robot id must be the publisher's username.

use std::net::SocketAddr;
use std::time::Duration;

use fleetsink::audit::Actor;
use fleetsink::auth::users::{self, RuleAccess};
use fleetsink::config::MqttMode;
use fleetsink::mqtt::client_codec::{self, Incoming};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::json;

use crate::helpers::*;

/// Connects and waits for the CONNACK: the client and its event loop, or the refusal.
async fn connect(
    addr: SocketAddr,
    id: &str,
    creds: Option<(&str, &str)>,
    will: Option<&str>,
) -> Result<(AsyncClient, EventLoop), ConnectReturnCode> {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    if let Some(topic) = will {
        opts.set_last_will(LastWill::new(topic, "gone", QoS::AtLeastOnce, false));
    }
    let (client, mut el) = AsyncClient::new(opts, 100);
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .expect("no CONNACK within 15 s")
        {
            Ok(Event::Incoming(Packet::ConnAck(a))) => {
                return if a.code == ConnectReturnCode::Success {
                    Ok((client, el))
                } else {
                    Err(a.code)
                };
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Err(code),
            Err(e) => panic!("connecting {id}: {e}"),
        }
    }
}

/// Polls until the PUBACK of the last publish, or the connection ends (`false`).
async fn puback(el: &mut EventLoop) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .expect("no answer within 15 s")
        {
            Ok(Event::Incoming(Packet::PubAck(_))) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

async fn suback(el: &mut EventLoop) -> SubscribeReasonCode {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .expect("no SUBACK within 15 s")
        {
            Ok(Event::Incoming(Packet::SubAck(a))) => return a.return_codes[0],
            Ok(_) => {}
            Err(e) => panic!("subscribing: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_enforces_users_and_acls() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.mqtt.embedded.auth = true;
        cfg.robots.identity.gateways = vec!["gateway".into()];
    })
    .await;
    for (user, pw) in [("robot7", "pw7"), ("robot8", "pw8"), ("gateway", "pwg")] {
        users::add_user(&t.pool, &Actor::cli(), user, pw, false)
            .await
            .unwrap();
    }
    for (pattern, access) in [
        ("tonypi/+/%u", RuleAccess::Write),
        ("tonypi/battery", RuleAccess::Write),
        ("tonypi/commands/%u", RuleAccess::Read),
        ("tonypi/commands/broadcast", RuleAccess::Read),
    ] {
        users::add_rule(&t.pool, &Actor::cli(), None, pattern, access)
            .await
            .unwrap();
    }
    let addr = t.mqtt;
    // The daemon's cache follows the new users (NOTIFY) within a second.
    wait_until(Duration::from_secs(3), "robot7 can log in", || async move {
        connect(addr, "probe", Some(("robot7", "pw7")), None)
            .await
            .is_ok()
    })
    .await;

    // CONNECT: no username, a wrong password, an unknown user.
    assert!(connect(addr, "anon", None, None).await.is_err());
    assert_eq!(
        connect(addr, "c7", Some(("robot7", "wrong")), None)
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword)
    );
    assert!(
        connect(addr, "cx", Some(("nobody", "pw7")), None)
            .await
            .is_err()
    );
    // A Last Will on another robot's command topic is refused at CONNECT; on its own
    // status topic it is fine.
    assert_eq!(
        connect(
            addr,
            "c7",
            Some(("robot7", "pw7")),
            Some("tonypi/commands/robot8")
        )
        .await
        .err(),
        Some(ConnectReturnCode::NotAuthorized)
    );
    let (c7, mut el7) = connect(
        addr,
        "c7",
        Some(("robot7", "pw7")),
        Some("tonypi/status/robot7"),
    )
    .await
    .unwrap();

    // PUBLISH into its own topic lands; into another robot's topic does not.
    let status = |id: &str| json!({"status": "online", "robot_id": id}).to_string();
    c7.publish(
        "tonypi/status/robot7",
        QoS::AtLeastOnce,
        false,
        status("robot7"),
    )
    .await
    .unwrap();
    assert!(puback(&mut el7).await);
    c7.publish(
        "tonypi/status/robot8",
        QoS::AtLeastOnce,
        false,
        status("robot8"),
    )
    .await
    .unwrap();
    let _ = puback(&mut el7).await;
    // The payload-id route: its own id is stored, another robot's id is rejected.
    let battery = |id: &str| json!({"robot_id": id, "percentage": 50.0}).to_string();
    let (c7b, mut el7b) = connect(addr, "c7b", Some(("robot7", "pw7")), None)
        .await
        .unwrap();
    c7b.publish("tonypi/battery", QoS::AtLeastOnce, false, battery("robot7"))
        .await
        .unwrap();
    assert!(puback(&mut el7b).await);
    c7b.publish("tonypi/battery", QoS::AtLeastOnce, false, battery("robot8"))
        .await
        .unwrap();
    assert!(puback(&mut el7b).await);
    // A gateway may write for any robot.
    let (gw, mut elg) = connect(addr, "gw", Some(("gateway", "pwg")), None)
        .await
        .unwrap();
    gw.publish("tonypi/battery", QoS::AtLeastOnce, false, battery("robot9"))
        .await
        .unwrap();
    assert!(puback(&mut elg).await);

    t.wait_count(
        "SELECT count(*) FROM ingest_errors WHERE reason = 'identity_mismatch'",
        1,
    )
    .await;
    assert_eq!(
        t.count("SELECT count(*) FROM ingest_errors WHERE reason = 'identity_mismatch'")
            .await,
        1
    );
    let detail: String =
        sqlx::query_scalar("SELECT detail FROM ingest_errors WHERE reason = 'identity_mismatch'")
            .fetch_one(&t.pool)
            .await
            .unwrap();
    assert!(
        detail.contains("robot7") && detail.contains("robot8"),
        "{detail}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE robot_id = 'robot7' AND name = 'battery.percentage'")
            .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE robot_id = 'robot9'")
            .await,
        1
    );
    // robot8 never published: nothing was stored under its id.
    assert_eq!(
        t.count("SELECT count(*) FROM robots WHERE robot_id = 'robot8'")
            .await,
        0
    );

    // SUBSCRIBE: its own command topic and the broadcast, not another robot's or a
    // wildcard over all of them.
    let (s7, mut els) = connect(addr, "s7", Some(("robot7", "pw7")), None)
        .await
        .unwrap();
    for (filter, allowed) in [
        ("tonypi/commands/robot7", true),
        ("tonypi/commands/broadcast", true),
        ("tonypi/commands/robot8", false),
        ("tonypi/commands/+", false),
        ("tonypi/#", false),
    ] {
        s7.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let code = suback(&mut els).await;
        assert_eq!(
            code == SubscribeReasonCode::Failure,
            !allowed,
            "{filter}: {code:?}"
        );
    }
    let metrics = t.get("/metrics").await.1;
    for line in [
        "fleetsink_auth_checks_total{kind=\"user\",result=\"deny\"}",
        "fleetsink_auth_checks_total{kind=\"acl\",result=\"deny\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
    t.stop().await;
}

/// A failed MQTT 3.1.1 CONNECT (user "nobody") sent from `source`, a loopback address
/// (the throttle counts per client address); how long until the broker answered it
/// (CONNACK or close).
async fn failed_connect_from(broker: SocketAddr, source: std::net::Ipv4Addr) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    let mut stream = sock.connect(broker).await.unwrap();
    let mut packet = Vec::new();
    client_codec::connect(&mut packet, "guess", 60, Some("nobody"), Some("guess"));
    let start = std::time::Instant::now();
    stream.write_all(&packet).await.unwrap();
    let mut answer = [0u8; 4];
    // A refusal is a CONNACK with a failure code, then the close; either ends the wait.
    let n = stream.read(&mut answer).await.unwrap_or(0);
    let took = start.elapsed();
    assert!(
        !matches!(
            client_codec::parse(&answer[..n]),
            Ok(Some((Incoming::ConnAck { code: 0 }, _)))
        ),
        "nobody was let in"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_connects_are_answered_slowly() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.mqtt.embedded.auth = true;
    })
    .await;
    let addr = t.mqtt;
    // Each failure from 127.0.0.1 is paired with one from an address that never failed
    // before (127.0.0.10, .11, ...): both cost the same password hash check (the same
    // for unknown users as for known ones), which on a loaded machine varies by tenths of
    // a second over the test, so each throttled answer is compared with its own pair.
    // The first three failures of an address are free; each later one waits 0.5 s more
    // (at most 5 s): the fifth failure waits 0.5 s, the sixth 1 s.
    let mut extra = Vec::new();
    for i in 0..6u8 {
        let repeated = failed_connect_from(addr, [127, 0, 0, 1].into()).await;
        let fresh = failed_connect_from(addr, [127, 0, 0, 10 + i].into()).await;
        extra.push(repeated.as_secs_f64() - fresh.as_secs_f64());
    }
    // The pairs' hash checks differ by up to a few tenths on a loaded machine.
    let wanted = [0.0, 0.0, 0.0, 0.0, 0.5, 1.0];
    for (i, (got, want)) in extra.iter().zip(wanted).enumerate() {
        assert!(
            (got - want).abs() < 0.4,
            "failure {}: answered {got:.2} s later than a fresh address's, expected {want} s ({extra:.2?})",
            i + 1
        );
    }
    t.stop().await;
}

/// Passwords and stored hashes never reach the log, even at debug level, through bad
/// logins on the broker and go-auth requests on the admin port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_hash_is_ever_logged() {
    let db = fresh_database().await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    fleetsink::db::MIGRATOR.run(&pool).await.unwrap();
    users::add_user(&pool, &Actor::cli(), "robot7", "Sup3r-S3cret-pw", false)
        .await
        .unwrap();
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM mqtt_users WHERE username = 'robot7'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let mqtt = loopback(free_port());
    let daemon = Daemon::start(&[
        ("FLEETSINK__DATABASE__URL", db.clone()),
        ("FLEETSINK__MQTT__EMBEDDED__LISTEN", mqtt.to_string()),
        ("FLEETSINK__MQTT__EMBEDDED__AUTH", "true".into()),
        ("RUST_LOG", "debug".into()),
    ])
    .await;
    wait_for_port(mqtt).await;
    assert!(
        connect(mqtt, "c1", Some(("robot7", "Wr0ng-Guess-pw")), None)
            .await
            .is_err()
    );
    assert!(
        connect(mqtt, "c2", Some(("robot7", "Sup3r-S3cret-pw")), None)
            .await
            .is_ok()
    );
    let client = reqwest::Client::new();
    for password in ["Sup3r-S3cret-pw", "Wr0ng-Guess-pw"] {
        client
            .post(format!("http://{}/mqtt/user", daemon.http))
            .header("Content-Type", "application/json")
            .body(json!({"username": "robot7", "password": password, "clientid": "c"}).to_string())
            .send()
            .await
            .unwrap();
    }
    // Everything it logs, to its last line: stopped, not killed, so nothing is cut off.
    let (_, log) = daemon.terminate_and_read_log().await;
    assert!(
        log.contains("robot7"),
        "the log should name the user: {log}"
    );
    for secret in [
        "Sup3r-S3cret-pw",
        "Wr0ng-Guess-pw",
        hash.as_str(),
        &hash[hash.len() - 20..],
    ] {
        assert!(!log.contains(secret), "{secret:?} appears in the log");
    }
}
