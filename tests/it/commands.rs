//! Downlink commands over HTTP: they reach the robot as a TonyPi client reads them,
//! are recorded, and the robot's response marks them acknowledged; unknown robots are a
//! 404 and a disconnected broker a 503; the token guards `/api/`. Emergency stops have
//! their own file (`emergency_stop.rs`).

use std::time::Duration;

use fleetsink::config::MqttMode;
use serde_json::{Value, json};

use crate::helpers::*;

async fn register(t: &TestApp, robot: &str) -> Client {
    let mut c = t.robot(robot).await;
    c.subscribe(&format!("tonypi/commands/{robot}")).await;
    c.subscribe("tonypi/commands/broadcast").await;
    c.publish_acked(
        &format!("tonypi/status/{robot}"),
        format!(
            r#"{{"status":"online","timestamp":"{}"}}"#,
            chrono::Utc::now().to_rfc3339()
        ),
    )
    .await;
    let pool = t.pool.clone();
    let robot = robot.to_string();
    wait_until(Duration::from_secs(10), "the robot is registered", || {
        let (pool, robot) = (pool.clone(), robot.clone());
        async move {
            count(
                &pool,
                &format!("SELECT count(*) FROM robots WHERE robot_id = '{robot}'"),
            )
            .await
                == 1
        }
    })
    .await;
    c
}

async fn received(c: &mut Client) -> (String, Value) {
    let msg = tokio::time::timeout(Duration::from_secs(10), c.messages.recv())
        .await
        .expect("no command arrived")
        .unwrap();
    (msg.topic, serde_json::from_slice(&msg.payload).unwrap())
}

async fn round_trip(mode: MqttMode) {
    let mut t = spawn_app(mode, |_| {}).await;
    let mut robot = register(&t, "tonypi_cmd").await;

    // WHEN an operator sends a command
    let (code, body) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "parameters": {"direction": "forward"}, "robot_id": "tonypi_cmd"}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["success"], true);
    let id = body["command_id"].as_str().unwrap().to_string();
    // THEN the robot gets it with the fields both TonyPi clients read
    let (topic, cmd) = received(&mut robot).await;
    assert_eq!(topic, "tonypi/commands/tonypi_cmd");
    assert_eq!(cmd["type"], "move");
    assert_eq!(cmd["command"], "move");
    assert_eq!(cmd["id"], id.as_str());
    assert_eq!(cmd["command_id"], id.as_str());
    assert_eq!(cmd["parameters"]["direction"], "forward");
    assert!(cmd["timestamp"].is_string());
    // WHEN the robot answers (TonyPi's client puts the command's `id` in command_id)
    robot
        .publish_acked(
            "tonypi/commands/response",
            json!({"robot_id": "tonypi_cmd", "command_id": id, "success": true, "message": "moved"})
                .to_string(),
        )
        .await;
    // THEN the command is acknowledged, with the answer
    let pool = t.pool.clone();
    let q = format!(
        "SELECT count(*) FROM commands WHERE command_id = '{id}' AND status = 'acknowledged'"
    );
    wait_until(
        Duration::from_secs(10),
        "the command is acknowledged",
        || async { count(&pool, &q).await == 1 },
    )
    .await;
    let (code, list) = t.get("/api/v1/robots/tonypi_cmd/commands").await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["command_id"], id.as_str());
    assert_eq!(list[0]["status"], "acknowledged");
    assert_eq!(list[0]["response"]["message"], "moved");

    // The UI's pass-through: the body as sent, plus the tracking fields.
    let (code, body) = t
        .post(
            "/api/v1/robot-data/command",
            json!({"robot_id": "tonypi_cmd", "type": "head_move", "angle": 30}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["topic"], "tonypi/commands/tonypi_cmd");
    let (_, cmd) = received(&mut robot).await;
    assert_eq!(
        (cmd["type"].as_str(), cmd["angle"].as_i64()),
        (Some("head_move"), Some(30))
    );
    assert_eq!(cmd["id"], body["command_id"]);

    // An unknown robot is a 404 in TonyPi's error shape, and nothing is recorded.
    let (code, body) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "robot_id": "tonypi_nobody"}),
            None,
        )
        .await;
    assert_eq!(code, 404);
    assert!(
        body["detail"].as_str().unwrap().contains("tonypi_nobody"),
        "{body}"
    );
    assert_eq!(
        t.count("SELECT count(*) FROM commands WHERE robot_id = 'tonypi_nobody'")
            .await,
        0
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_commands_arrive_and_responses_acknowledge_them() {
    round_trip(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_commands_arrive_and_responses_acknowledge_them() {
    round_trip(MqttMode::External).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_while_the_broker_is_down_is_a_503() {
    let mut t = spawn_app(MqttMode::External, |_| {}).await;
    let _robot = register(&t, "tonypi_cut").await;
    drop(t.broker.take()); // Mosquitto is killed
    let health = t.app().health();
    wait_until(Duration::from_secs(10), "the broker is gone", || {
        let h = health.clone();
        async move { !h.readiness().broker_connected }
    })
    .await;
    let (code, body) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "robot_id": "tonypi_cut"}),
            None,
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(body["detail"].is_string());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_the_api() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.admin_token = Some("s3cret-token".into());
    })
    .await;
    let _robot = register(&t, "tonypi_tok").await;
    let body = json!({"command": "move", "robot_id": "tonypi_tok"});
    let (code, resp) = t
        .post("/api/v1/management/command", body.clone(), None)
        .await;
    assert_eq!(code, 401);
    assert!(resp["detail"].is_string());
    let (code, _) = t
        .post("/api/v1/management/command", body.clone(), Some("wrong"))
        .await;
    assert_eq!(code, 401);
    let (code, _) = t
        .post("/api/v1/management/command", body, Some("s3cret-token"))
        .await;
    assert_eq!(code, 200);
    // Health endpoints stay open.
    assert_eq!(t.get("/healthz").await.0, 200);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_devices_get_commands_on_their_topic() {
    let mut t = spawn_app(MqttMode::Embedded, |_| {}).await;
    let mut dev = t.robot("gw-7").await;
    dev.subscribe("devices/gw-7/commands").await;
    dev.publish_acked("devices/gw-7/telemetry", r#"{"temp": 21.5}"#)
        .await;
    // Commands go to known devices only: its first message registered it.
    let q = "SELECT count(*) FROM robots WHERE robot_id = 'gw-7' AND is_active";
    assert_eq!(t.wait_count(q, 1).await, 1);
    let (code, body) = t
        .post(
            "/api/v1/devices/gw-7/commands",
            json!({"command": "reboot", "delay_s": 5}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let (topic, cmd) = received(&mut dev).await;
    assert_eq!(topic, "devices/gw-7/commands");
    assert_eq!(
        (cmd["command"].as_str(), cmd["delay_s"].as_i64()),
        (Some("reboot"), Some(5))
    );
    assert_eq!(
        t.count("SELECT count(*) FROM commands WHERE robot_id = 'gw-7' AND status = 'sent'")
            .await,
        1
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_commands_expire_and_refusals_fail() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.commands.expire_after = Duration::from_secs(1);
        cfg.robots.offline_after = Duration::from_secs(3); // sweeps (and expires) every second
    })
    .await;
    let mut robot = register(&t, "tonypi_mute").await;
    let send = |command: &'static str| {
        let body = json!({"command": command, "robot_id": "tonypi_mute"});
        let t = &t;
        async move {
            let (code, body) = t.post("/api/v1/management/command", body, None).await;
            assert_eq!(code, 200, "{body}");
            body["command_id"].as_str().unwrap().to_string()
        }
    };
    let ignored = send("dance").await;
    let refused = send("jump").await;
    received(&mut robot).await;
    received(&mut robot).await;
    robot
        .publish_acked(
            "tonypi/commands/response",
            json!({"robot_id": "tonypi_mute", "command_id": refused, "success": false, "message": "servo fault"})
                .to_string(),
        )
        .await;
    let pool = t.pool.clone();
    let status = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM commands WHERE command_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(status(refused.clone()).await, "failed");
    wait_until(
        Duration::from_secs(10),
        "the unanswered command expires",
        || async { status(ignored.clone()).await == "expired" },
    )
    .await;
    assert_eq!(
        status(refused).await,
        "failed",
        "an answered command never expires"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_the_configured_origin_and_a_body_limit() {
    let mut t = spawn_app(MqttMode::Embedded, |cfg| {
        cfg.http.cors_origins = vec!["http://localhost:3000".into()];
        cfg.http.max_body_bytes = 1024;
    })
    .await;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("http://{}/api/v1/robots-db/robots", t.http),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
    };
    let ok = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(
        ok.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("http://localhost:3000")
    );
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let big = json!({"command": "x".repeat(4096), "robot_id": "tonypi_x"});
    let (code, err) = t.post("/api/v1/management/command", big, None).await;
    assert_eq!(code, 413, "{err}");
    assert!(err["detail"].is_string(), "{err}");
    t.stop().await;
}
