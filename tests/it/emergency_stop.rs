//! Emergency stops reach TonyPi robots on their emergency-stop topics, count as
//! acknowledged only when the robot confirms it stopped, and show as `unconfirmed` or
//! `failed` when it did not — with test robots that behave as TonyPi's simulator.

use std::time::Duration;

use fleetsink::config::MqttMode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::tonypi_robot::{Behaviour, TonyPiRobot};

async fn app(mode: MqttMode) -> TestApp {
    spawn_app(mode, |cfg| {
        cfg.commands.confirm_within = Duration::from_secs(1);
    })
    .await
}

/// The status of `robot`'s row of command `id`, once it is no longer `sent`.
async fn settled(t: &TestApp, id: &str, robot: &str) -> Value {
    let path = format!("/api/v1/robots/{robot}/commands");
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = t.get(&path).await;
        assert_eq!(code, 200, "{body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["command_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {robot} of command {id}: {list}"));
        if row["status"] != "sent" {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "command {id} for {robot} still `sent` after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn robot_status(t: &TestApp, robot: &str) -> String {
    let (code, body) = t.get(&format!("/api/v1/robots-db/robots/{robot}")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["status"].as_str().unwrap().to_string()
}

#[track_caller]
fn status_becomes<'a>(
    t: &'a TestApp,
    robot: &'a str,
    want: &'a str,
) -> impl Future<Output = ()> + 'a {
    let what = format!("{robot}'s stored status is {want}");
    wait_until(Duration::from_secs(10), &what, move || async move {
        robot_status(t, robot).await == want
    })
}

async fn post(t: &TestApp, path: &str) -> Value {
    let (code, body) = t.post(path, json!({}), None).await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}

async fn one_robot(mode: MqttMode) {
    // GIVEN a TonyPi robot that is moving
    let mut t = app(mode).await;
    let robot = TonyPiRobot::start(&t, "tonypi_e1", Behaviour::Simulator).await;
    let (code, _) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "robot_id": "tonypi_e1"}),
            None,
        )
        .await;
    assert_eq!(code, 200);
    wait_until(Duration::from_secs(10), "the robot moves", || async {
        robot.state().moving
    })
    .await;

    // WHEN an operator stops it
    let sent = post(&t, "/api/v1/management/robots/tonypi_e1/emergency-stop").await;
    let id = sent["command_id"].as_str().unwrap().to_string();
    assert_eq!(sent["expected_robots"], json!(["tonypi_e1"]));
    assert_eq!(sent["status"], "sent");

    // THEN it got the stop on its emergency-stop topic, in TonyPi's shape, and stopped
    let got = robot.received_on("tonypi/emergency_stop/tonypi_e1").await;
    assert_eq!(got["type"], "emergency_stop");
    assert_eq!(got["id"], id.as_str());
    assert!(
        got["reason"].is_string() && got["timestamp"].is_string(),
        "{got}"
    );
    robot.stopped(true).await;
    assert!(!robot.state().moving);
    // AND its confirmation acknowledges the command, and its status says so
    let row = settled(&t, &id, "tonypi_e1").await;
    assert_eq!(row["status"], "acknowledged", "{row}");
    assert_eq!(row["response"]["state"]["emergency_stopped"], true);
    status_becomes(&t, "tonypi_e1", "emergency_stopped").await;
    assert_eq!(
        t.count(
            "SELECT count(*) FROM logs WHERE robot_id = 'tonypi_e1' AND category = 'robot' \
             AND message LIKE '%emergency_stopped%'"
        )
        .await,
        1,
        "one lifecycle row for the transition"
    );
    let (_, status) = t.get("/api/v1/robot-data/status").await;
    let status: Value = serde_json::from_str(&status).unwrap();
    let listed = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["robot_id"] == "tonypi_e1")
        .cloned()
        .unwrap();
    assert_eq!(listed["status"], "emergency_stopped", "{listed}");

    // WHEN a move is sent while it is stopped
    let (_, moved) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "move", "robot_id": "tonypi_e1"}),
            None,
        )
        .await;
    // THEN the robot refuses it and the command is failed with the robot's message
    let row = settled(&t, moved["command_id"].as_str().unwrap(), "tonypi_e1").await;
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["response"]["message"]
            .as_str()
            .unwrap()
            .contains("emergency stopped"),
        "{row}"
    );
    assert!(!robot.state().moving);

    // WHEN it is resumed (on its command topic, as TonyPi's backend sends it)
    let resumed = post(&t, "/api/v1/management/robots/tonypi_e1/resume").await;
    let got = robot.received_on("tonypi/commands/tonypi_e1").await;
    assert!(got.is_object());
    // THEN it leaves its stopped state, the resume is acknowledged and it is online
    robot.stopped(false).await;
    let row = settled(&t, resumed["command_id"].as_str().unwrap(), "tonypi_e1").await;
    assert_eq!(row["status"], "acknowledged", "{row}");
    status_becomes(&t, "tonypi_e1", "online").await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_stopped_robot_is_stopped_and_resumes() {
    one_robot(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_a_stopped_robot_is_stopped_and_resumes() {
    one_robot(MqttMode::External).await;
}

async fn broadcast(mode: MqttMode) {
    // GIVEN three TonyPi robots online
    let mut t = app(mode).await;
    let ids = ["tonypi_b1", "tonypi_b2", "tonypi_b3"];
    let mut robots = Vec::new();
    for id in ids {
        robots.push(TonyPiRobot::start(&t, id, Behaviour::Simulator).await);
    }
    // WHEN an operator stops the fleet
    let sent = post(&t, "/api/v1/management/emergency-stop/broadcast").await;
    let id = sent["command_id"].as_str().unwrap();
    // THEN the answer names the robots expected to confirm
    assert_eq!(sent["expected_robots"], json!(ids));
    // AND every robot stopped, each confirmation acknowledging its own row
    for r in &robots {
        let got = r.received_on("tonypi/emergency_stop/broadcast").await;
        assert_eq!(got["type"], "emergency_stop");
        r.stopped(true).await;
        let row = settled(&t, id, &r.id).await;
        assert_eq!(row["status"], "acknowledged", "{row}");
        assert_eq!(row["broadcast"], true);
        status_becomes(&t, &r.id, "emergency_stopped").await;
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_broadcast_stop_is_confirmed_per_robot() {
    broadcast(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_a_broadcast_stop_is_confirmed_per_robot() {
    broadcast(MqttMode::External).await;
}

async fn robots_that_do_not_confirm(mode: MqttMode) {
    // GIVEN a robot that never answers, one that cannot stop, one that answers only on
    // tonypi/commands/response, and one that works
    let mut t = app(mode).await;
    let silent = TonyPiRobot::start(&t, "tonypi_mute", Behaviour::Silent).await;
    let stuck = TonyPiRobot::start(&t, "tonypi_stuck", Behaviour::CannotStop).await;
    let old = TonyPiRobot::start(&t, "tonypi_old", Behaviour::CommandsResponseOnly).await;
    let good = TonyPiRobot::start(&t, "tonypi_good", Behaviour::Simulator).await;
    // WHEN the fleet is stopped
    let sent = post(&t, "/api/v1/management/emergency-stop/broadcast").await;
    let id = sent["command_id"].as_str().unwrap();
    assert_eq!(sent["expected_robots"].as_array().unwrap().len(), 4);
    // THEN the silent robot's row turns unconfirmed within seconds, logged at CRITICAL
    silent.received_on("tonypi/emergency_stop/broadcast").await;
    let row = settled(&t, id, "tonypi_mute").await;
    assert_eq!(row["status"], "unconfirmed", "{row}");
    assert_eq!(
        t.count(
            "SELECT count(*) FROM logs WHERE robot_id = 'tonypi_mute' AND level = 'CRITICAL' \
             AND message LIKE '%NOT CONFIRMED%'"
        )
        .await,
        1
    );
    let (_, scrape) = t.get("/metrics").await;
    assert!(
        scrape.lines().any(
            |l| l.starts_with("fleetsink_commands_total{result=\"unconfirmed\"}")
                && !l.ends_with(" 0")
        ),
        "unconfirmed stops are counted"
    );
    // AND the robot that could not stop is failed, with its message, and not stopped
    let row = settled(&t, id, "tonypi_stuck").await;
    assert_eq!(row["status"], "failed", "{row}");
    assert!(
        row["response"]["message"]
            .as_str()
            .unwrap()
            .contains("NOT stopped")
    );
    assert!(!stuck.state().emergency_stopped);
    assert_ne!(robot_status(&t, "tonypi_stuck").await, "emergency_stopped");
    // AND the robots that stopped are acknowledged, whichever topic they answered on
    for r in [&old, &good] {
        r.stopped(true).await;
        assert_eq!(settled(&t, id, &r.id).await["status"], "acknowledged");
    }
    assert_eq!(robot_status(&t, "tonypi_mute").await, "online");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_robots_that_do_not_confirm_are_shown() {
    robots_that_do_not_confirm(MqttMode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_robots_that_do_not_confirm_are_shown() {
    robots_that_do_not_confirm(MqttMode::External).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_answer_never_confirms_a_stop() {
    // GIVEN a robot, and an emergency stop sent the old way, as a command
    let mut t = app(MqttMode::Embedded).await;
    let robot = TonyPiRobot::start(&t, "tonypi_g", Behaviour::Simulator).await;
    let (code, sent) = t
        .post(
            "/api/v1/management/command",
            json!({"command": "emergency_stop", "robot_id": "tonypi_g"}),
            None,
        )
        .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["command_id"].as_str().unwrap();
    // THEN it still goes to the emergency-stop topic, and the robot stops
    robot.received_on("tonypi/emergency_stop/tonypi_g").await;
    robot.stopped(true).await;
    assert_eq!(settled(&t, id, "tonypi_g").await["status"], "acknowledged");

    // GIVEN a stop the robot has not answered yet, WHEN something answers it with a
    // generic "executed" of no type (what a robot says to an unknown command)
    let silent = TonyPiRobot::start(&t, "tonypi_h", Behaviour::Silent).await;
    let sent = post(&t, "/api/v1/management/robots/tonypi_h/emergency-stop").await;
    let id = sent["command_id"].as_str().unwrap();
    silent.received_on("tonypi/emergency_stop/tonypi_h").await;
    let mut other = t.robot("tonypi_h_2").await;
    other
        .publish_acked(
            "tonypi/commands/response",
            json!({"robot_id": "tonypi_h", "command_id": id, "success": true,
                   "message": "Command emergency_stop executed"})
            .to_string(),
        )
        .await;
    // THEN it is not acknowledged: it turns unconfirmed
    assert_eq!(settled(&t, id, "tonypi_h").await["status"], "unconfirmed");
    t.stop().await;
}
