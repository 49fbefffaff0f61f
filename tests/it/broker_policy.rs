//! The embedded broker without auth: by default (`mqtt.embedded.anonymous = "robot"`)
//! a client is the robot its client id names. Every forbidden act of such a client is
//! refused — answered, counted, nothing stored, nothing delivered — while TonyPi-shaped
//! robots (client id = robot id, no credentials) report, receive an emergency stop sent
//! through the API and confirm it, every message once. `"unrestricted-insecure"` opens
//! the broker again, and `check-config` says which policy is in force.

use std::net::SocketAddr;
use std::time::Duration;

use fleetsink::config::{AnonymousPolicy, MqttMode};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, PubAckReason, SubscribeReasonCode as Sub5};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode,
};
use serde_json::{Value, json};

use crate::embedded::assert_fixture_rows;
use crate::helpers::*;
use crate::tonypi_robot::{Behaviour, TonyPiRobot};

async fn app(policy: AnonymousPolicy) -> TestApp {
    spawn_app(MqttMode::Embedded, |cfg| {
        cfg.mqtt.embedded.anonymous = policy;
    })
    .await
}

/// Rows of every table a message could land in.
async fn stored(t: &TestApp) -> [i64; 6] {
    let mut out = [0; 6];
    for (n, table) in [
        "robots",
        "metrics",
        "logs",
        "jobs",
        "ingest_errors",
        "commands",
    ]
    .iter()
    .enumerate()
    {
        out[n] = t.count(&format!("SELECT count(*) FROM {table}")).await;
    }
    out
}

/// The value of one series in a Prometheus scrape (0 when absent).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn has_number(v: &Value) -> bool {
    match v {
        Value::Number(_) => true,
        Value::Object(o) => o.values().any(has_number),
        Value::Array(a) => a.iter().any(has_number),
        _ => false,
    }
}

/// Connects with a Last Will on `will_topic`; the CONNACK's code.
async fn connect_with_will(
    addr: SocketAddr,
    id: &str,
    will_topic: &str,
    will: &str,
) -> ConnectReturnCode {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_last_will(LastWill::new(will_topic, will, QoS::AtLeastOnce, false));
    let (_client, mut el) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .expect("no CONNACK within 15 s")
        {
            Ok(Event::Incoming(Packet::ConnAck(a))) => return a.code,
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return code,
            Err(e) => panic!("connecting {id}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_default_broker_when_a_client_tries_each_forbidden_act_then_each_is_refused_and_nothing_is_stored_or_delivered()
 {
    // GIVEN fleetsink as shipped, and a TonyPi robot listening on its topics
    let t = app(AnonymousPolicy::Robot).await;
    let victim = TonyPiRobot::start(&t, "tonypi_victim", Behaviour::Simulator).await;
    let before = stored(&t).await;

    // WHEN another client — with a valid robot id of its own — publishes every downlink,
    // and another robot's data with the id in the topic and in the payload
    let mut evil = t.robot("tonypi_evil").await;
    let stop = json!({"type": "emergency_stop", "id": "forged", "reason": "forged"});
    let command = json!({"type": "move", "id": "forged"});
    let for_victim = |extra: Value| {
        let mut v = json!({"robot_id": "tonypi_victim", "timestamp": "2026-11-22T09:00:00Z"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let downlinks = [
        ("tonypi/emergency_stop/broadcast", &stop),
        ("tonypi/emergency_stop/tonypi_victim", &stop),
        ("tonypi/emergency_stop/tonypi_evil", &stop),
        ("tonypi/commands/tonypi_victim", &command),
        ("tonypi/commands/tonypi_evil", &command),
        ("tonypi/commands/broadcast", &command),
        ("tonypi/config/tonypi_victim", &command),
        ("tonypi/items/tonypi_victim", &command),
    ];
    let others = [
        (
            "tonypi/sensors/tonypi_victim",
            for_victim(json!({"sensor_type": "temperature", "value": 99})),
        ),
        ("tonypi/battery", for_victim(json!({"percentage": 1}))),
        ("tonypi/location", for_victim(json!({"x": 1, "y": 2}))),
        (
            "tonypi/commands/response",
            for_victim(json!({"command_id": "c1", "success": true})),
        ),
    ];
    // Every refused QoS 1 publish is answered (MQTT 3.1.1: a plain PUBACK); with
    // ack-after-commit a PUBACK for an ingested message would mean it is committed.
    for (topic, payload) in downlinks {
        evil.publish_acked(topic, payload.to_string()).await;
    }
    for (topic, payload) in &others {
        evil.publish_acked(topic, payload.to_string()).await;
    }
    evil.publish_acked("tonypi/battery", r#"{"percentage": 1}"#)
        .await;
    // …and subscribes to everything, and to another robot's commands
    for filter in [
        "#",
        "tonypi/#",
        "tonypi/commands/+",
        "tonypi/commands/tonypi_victim",
        "tonypi/emergency_stop/tonypi_victim",
        "tonypi/sensors/tonypi_victim",
    ] {
        assert_eq!(
            evil.try_subscribe(filter).await,
            SubscribeReasonCode::Failure,
            "{filter}"
        );
    }
    // …and a client whose id is a wildcard tries its "own" command topic
    let mut wild = t.robot("+").await;
    assert_eq!(
        wild.try_subscribe("tonypi/commands/+").await,
        SubscribeReasonCode::Failure
    );
    // …and one plants a Last Will that would stop the fleet when it drops
    assert_eq!(
        connect_with_will(
            t.mqtt,
            "tonypi_will",
            "tonypi/emergency_stop/broadcast",
            "{}"
        )
        .await,
        ConnectReturnCode::NotAuthorized
    );

    // THEN nothing of it was stored
    assert_eq!(
        stored(&t).await,
        before,
        "robots, metrics, logs, jobs, ingest_errors, commands"
    );
    // AND nothing reached the robot: the first thing it gets is the operator's stop
    let (code, sent) = t
        .post(
            "/api/v1/management/robots/tonypi_victim/emergency-stop",
            json!({}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{sent}");
    let got = victim
        .received_on("tonypi/emergency_stop/tonypi_victim")
        .await;
    assert_eq!(got["id"], sent["command_id"]);
    let received = victim.state().received;
    assert_eq!(received.len(), 1, "{received:?}");
    // AND every refusal is counted by what was tried and why
    let scrape = t.get("/metrics").await.1;
    for (series, at_least) in [
        (
            "fleetsink_mqtt_refusals_total{act=\"publish\",reason=\"downlink\"}",
            8.0,
        ),
        (
            "fleetsink_mqtt_refusals_total{act=\"publish\",reason=\"other_robot\"}",
            4.0,
        ),
        (
            "fleetsink_mqtt_refusals_total{act=\"publish\",reason=\"no_robot_id\"}",
            1.0,
        ),
        (
            "fleetsink_mqtt_refusals_total{act=\"subscribe\",reason=\"not_own_downlink\"}",
            6.0,
        ),
        (
            "fleetsink_mqtt_refusals_total{act=\"subscribe\",reason=\"client_id_not_robot_id\"}",
            1.0,
        ),
        (
            "fleetsink_mqtt_refusals_total{act=\"will\",reason=\"downlink\"}",
            1.0,
        ),
    ] {
        assert!(
            sample(&scrape, series) >= at_least,
            "{series} below {at_least}"
        );
    }
}

/// The next PUBACK's reason (`Ok`) or SUBACK's first code (`Err`) of an MQTT 5 client.
async fn next_ack(el: &mut rumqttc::v5::EventLoop) -> Result<PubAckReason, Sub5> {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), el.poll())
            .await
            .expect("no answer within 15 s")
            .expect("the connection holds")
        {
            rumqttc::v5::Event::Incoming(Packet5::PubAck(a)) => return Ok(a.reason),
            rumqttc::v5::Event::Incoming(Packet5::SubAck(a)) => return Err(a.return_codes[0]),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_default_broker_when_an_mqtt5_client_is_refused_then_its_puback_and_suback_say_not_authorized()
 {
    // GIVEN fleetsink as shipped, and an MQTT 5 client
    let t = app(AnonymousPolicy::Robot).await;
    let mut opts =
        rumqttc::v5::MqttOptions::new("tonypi_v5", t.mqtt.ip().to_string(), t.mqtt.port());
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut el) = rumqttc::v5::AsyncClient::new(opts, 10);

    // WHEN it publishes a broadcast stop, then its own reading, and subscribes to `#`
    client
        .publish(
            "tonypi/emergency_stop/broadcast",
            QoS5::AtLeastOnce,
            false,
            "{}",
        )
        .await
        .unwrap();
    let refused = next_ack(&mut el).await;
    let reading = r#"{"sensor_type": "temperature", "value": 21.5}"#;
    client
        .publish(
            "tonypi/sensors/tonypi_v5",
            QoS5::AtLeastOnce,
            false,
            reading,
        )
        .await
        .unwrap();
    let accepted = next_ack(&mut el).await;
    client.subscribe("#", QoS5::AtLeastOnce).await.unwrap();
    let subscribed = next_ack(&mut el).await;

    // THEN the refusals say "not authorized" and the connection stays up for the rest
    assert_eq!(refused, Ok(PubAckReason::NotAuthorized));
    assert_eq!(accepted, Ok(PubAckReason::Success));
    assert_eq!(subscribed, Err(Sub5::NotAuthorized));
    // AND only its own reading is stored
    assert_eq!(t.count("SELECT count(*) FROM metrics").await, 1);
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_v5'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_default_broker_when_tonypi_robots_report_and_one_is_stopped_through_the_api_then_everything_they_do_is_accepted_once()
 {
    // GIVEN fleetsink as shipped
    let t = app(AnonymousPolicy::Robot).await;

    // WHEN the five captured TonyPi robots send their traffic, each connected as
    // TonyPi's robots connect (client id = robot id, no credentials)
    let fixtures = fleetsink::testing::fixtures();
    let mut ids: Vec<String> = Vec::new();
    for (topic, payload) in &fixtures {
        let id = serde_json::from_slice::<Value>(payload)
            .ok()
            .and_then(|v| v["robot_id"].as_str().map(str::to_string))
            .unwrap_or_else(|| topic.rsplit('/').next().unwrap().to_string());
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 5, "{ids:?}");
    let mut published = 0;
    for id in &ids {
        let mut robot = t.robot(id).await;
        for (topic, payload) in &fixtures {
            let own = topic.ends_with(&format!("/{id}"))
                || serde_json::from_slice::<Value>(payload).is_ok_and(|v| v["robot_id"] == **id);
            if own {
                robot.publish_acked(topic, payload.to_vec()).await;
                published += 1;
            }
        }
    }

    // THEN every captured message is stored, once (the rows an open broker gives)
    assert_eq!(published, fixtures.len());
    assert_fixture_rows(&t.pool).await;
    // One metrics row per message on a metrics route that carries a number.
    let with_metrics = fixtures
        .iter()
        .filter(|(topic, payload)| {
            let metrics_route = ["tonypi/sensors/", "tonypi/status/", "tonypi/servos/"]
                .iter()
                .any(|k| topic.starts_with(k))
                || ["tonypi/battery", "tonypi/location"].contains(&topic.as_str());
            let numbers = serde_json::from_slice::<Value>(payload).is_ok_and(|v| has_number(&v));
            metrics_route && numbers
        })
        .count();
    assert_eq!(
        t.count("SELECT count(*) FROM metrics").await,
        with_metrics as i64
    );

    // WHEN a robot that behaves as the simulator is stopped by an operator
    let robot = TonyPiRobot::start(&t, "tonypi_real", Behaviour::Simulator).await;
    let (code, sent) = t
        .post(
            "/api/v1/management/robots/tonypi_real/emergency-stop",
            json!({}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["command_id"].as_str().unwrap().to_string();

    // THEN it got the stop (its subscriptions were all granted) and stopped, and its
    // confirmations — with its id in the payload only — are recorded, once each
    robot.received_on("tonypi/emergency_stop/tonypi_real").await;
    robot.stopped(true).await;
    let confirmed = format!(
        "SELECT count(*) FROM commands WHERE command_id = '{id}' AND robot_id = 'tonypi_real' AND status = 'acknowledged'"
    );
    assert_eq!(t.wait_count(&confirmed, 1).await, 1);
    // (the operator's stop is an `emergency` row too; each answer adds one row)
    let rows = |category: &str| {
        format!(
            "SELECT count(*) FROM logs WHERE robot_id = 'tonypi_real' AND category = '{category}'"
        )
    };
    assert_eq!(t.wait_count(&rows("command"), 1).await, 1);
    assert_eq!(t.wait_count(&rows("emergency"), 2).await, 2);
    let errors: Vec<(String, String)> = sqlx::query_as("SELECT topic, detail FROM ingest_errors")
        .fetch_all(&t.pool)
        .await
        .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_unrestricted_insecure_when_any_client_stops_the_fleet_or_reads_everything_then_it_may()
 {
    // GIVEN the opt-out, and a TonyPi robot
    let t = app(AnonymousPolicy::UnrestrictedInsecure).await;
    let robot = TonyPiRobot::start(&t, "tonypi_open", Behaviour::Simulator).await;

    // WHEN a client that is no robot subscribes to everything, writes the robot's data
    // and publishes a broadcast stop
    let mut any = t.robot("dashboard/1").await;
    assert!(matches!(
        any.try_subscribe("#").await,
        SubscribeReasonCode::Success(_)
    ));
    any.publish_acked(
        "tonypi/sensors/tonypi_open",
        r#"{"sensor_type": "temperature", "value": 42}"#,
    )
    .await;
    any.publish_acked(
        "tonypi/emergency_stop/broadcast",
        json!({"type": "emergency_stop", "id": "manual", "reason": "test"}).to_string(),
    )
    .await;

    // THEN all of it works as on an open broker
    robot.stopped(true).await;
    assert_eq!(
        t.count("SELECT count(*) FROM metric_values WHERE robot_id = 'tonypi_open' AND name LIKE 'temperature%'")
            .await,
        1
    );
    let seen = tokio::time::timeout(Duration::from_secs(10), any.messages.recv())
        .await
        .expect("the `#` subscriber got nothing")
        .unwrap();
    assert!(seen.topic.starts_with("tonypi/"), "{}", seen.topic);
}

#[test]
fn given_the_default_configuration_when_checked_then_the_broker_policy_is_printed() {
    let (ok, out, err) = cli("postgres://unused@127.0.0.1:1/none", &["check-config"], "");
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("# MQTT access: "))
        .unwrap_or_else(|| panic!("no policy line in:\n{out}"));
    for part in [
        "0.0.0.0:1883 without auth",
        "anonymous = \"robot\"",
        "tonypi/emergency_stop/broadcast",
        "mqtt.embedded.auth = true",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
}
