//! A test robot that behaves on the wire as TonyPi's robot simulator
//! (`robot_client/simulator.py`): it subscribes to exactly the simulator's topics, enters
//! its emergency-stop state only from the emergency-stop topics, refuses other commands
//! while stopped, and answers as the simulator answers (QoS 0, same fields). Its state is
//! the robot's own, so a test can check that a robot reported stopped *is* stopped. Like
//! the simulator it connects with its robot id as client id and no credentials, and
//! every subscription must be granted.
//!
//! Variants model the robots an operator must notice: one that never answers, one that
//! cannot stop (`success: false`), and one that answers only on
//! `tonypi/commands/response`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::{TestApp, count, wait_until};

/// How the robot answers an emergency stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// As the simulator: stops, answers on `tonypi/emergency_stop/response` and on
    /// `tonypi/commands/response`.
    Simulator,
    /// Receives everything, answers nothing (a hung controller).
    Silent,
    /// Cannot stop: answers `success: false` with its reason, keeps moving.
    CannotStop,
    /// Stops, but answers only on `tonypi/commands/response` (an older client).
    CommandsResponseOnly,
}

/// What the robot itself knows about its state.
#[derive(Debug, Default, Clone)]
pub struct RobotState {
    pub emergency_stopped: bool,
    pub emergency_reason: Option<String>,
    pub moving: bool,
    /// Commands it carried out, by type, in order.
    pub executed: Vec<String>,
    /// Every message it received, by topic.
    pub received: Vec<(String, Value)>,
}

pub struct TonyPiRobot {
    pub id: String,
    state: Arc<Mutex<RobotState>>,
    pub client: AsyncClient,
}

impl TonyPiRobot {
    /// Connects, subscribes as the simulator does (waiting for every SUBACK), sends its
    /// first status and waits until fleetsink registered it.
    pub async fn start(t: &TestApp, id: &str, behaviour: Behaviour) -> Self {
        let robot = Self::connect(t.mqtt, id, behaviour).await;
        robot.send_status(t).await;
        robot
    }

    async fn connect(addr: SocketAddr, id: &str, behaviour: Behaviour) -> Self {
        // `mqtt.Client(client_id=self.robot_id)`, no username.
        let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, eventloop) = AsyncClient::new(opts, 100);
        let state = Arc::new(Mutex::new(RobotState::default()));
        let (subacks_tx, mut subacks) = mpsc::unbounded_channel();
        tokio::spawn(run(
            eventloop,
            client.clone(),
            id.to_string(),
            behaviour,
            state.clone(),
            subacks_tx,
        ));
        // The simulator's `on_connect` subscriptions.
        let topics = [
            format!("tonypi/commands/{id}"),
            "tonypi/commands/broadcast".to_string(),
            format!("tonypi/items/{id}"),
            format!("tonypi/emergency_stop/{id}"),
            "tonypi/emergency_stop/broadcast".to_string(),
        ];
        for topic in &topics {
            client.subscribe(topic, QoS::AtMostOnce).await.unwrap();
        }
        for topic in &topics {
            let code = tokio::time::timeout(Duration::from_secs(10), subacks.recv())
                .await
                .expect("no SUBACK within 10 s")
                .unwrap();
            assert!(
                matches!(code, SubscribeReasonCode::Success(_)),
                "robot {id}: subscription to {topic} refused ({code:?})"
            );
        }
        Self {
            id: id.to_string(),
            state,
            client,
        }
    }

    /// Publishes the simulator's status message (at QoS 1, so it is committed once the
    /// robot is registered) and waits for the robot's row.
    pub async fn send_status(&self, t: &TestApp) {
        let status = if self.state().emergency_stopped {
            "emergency_stopped"
        } else {
            "online"
        };
        let body = json!({
            "robot_id": self.id,
            "status": status,
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "emergency_stopped": self.state().emergency_stopped,
        });
        self.client
            .publish(
                format!("tonypi/status/{}", self.id),
                QoS::AtLeastOnce,
                false,
                body.to_string(),
            )
            .await
            .unwrap();
        let (pool, q) = (
            t.pool.clone(),
            format!("SELECT count(*) FROM robots WHERE robot_id = '{}'", self.id),
        );
        wait_until(Duration::from_secs(10), "the robot is registered", || {
            let (pool, q) = (pool.clone(), q.clone());
            async move { count(&pool, &q).await == 1 }
        })
        .await;
    }

    pub fn state(&self) -> RobotState {
        self.state.lock().unwrap().clone()
    }

    /// Waits until the robot itself is in its emergency-stop state (or, `false`, out of it).
    #[track_caller]
    pub fn stopped(&self, want: bool) -> impl Future<Output = ()> + '_ {
        let what = format!("robot {} has emergency_stopped = {want}", self.id);
        wait_until(Duration::from_secs(10), &what, move || {
            let now = self.state().emergency_stopped;
            async move { now == want }
        })
    }

    /// Waits until the robot received a message on `topic`; returns its payload.
    #[track_caller]
    pub fn received_on<'a>(&'a self, topic: &'a str) -> impl Future<Output = Value> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Some((_, v)) = self.state().received.iter().find(|(t, _)| t == topic) {
                    return v.clone();
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "{caller}: robot {} received nothing on {topic}",
                    self.id
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn run(
    mut el: EventLoop,
    client: AsyncClient,
    id: String,
    behaviour: Behaviour,
    state: Arc<Mutex<RobotState>>,
    subacks: mpsc::UnboundedSender<SubscribeReasonCode>,
) {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::SubAck(a))) => {
                for code in a.return_codes {
                    let _ = subacks.send(code);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Ok(payload) = serde_json::from_slice::<Value>(&p.payload) else {
                    continue;
                };
                let answers = on_message(&id, behaviour, &state, &p.topic, &payload);
                for (topic, answer) in answers {
                    // paho's publish() default: QoS 0.
                    let _ = client
                        .publish(topic, QoS::AtMostOnce, false, answer.to_string())
                        .await;
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The simulator's `on_message`: what the robot does with a message, and the answers it
/// publishes (topic, payload).
fn on_message(
    id: &str,
    behaviour: Behaviour,
    state: &Mutex<RobotState>,
    topic: &str,
    payload: &Value,
) -> Vec<(&'static str, Value)> {
    let mut s = state.lock().unwrap();
    s.received.push((topic.to_string(), payload.clone()));
    if behaviour == Behaviour::Silent {
        return Vec::new();
    }
    let command_type = payload["type"].as_str().unwrap_or("unknown").to_string();
    let command_id = payload["id"].clone();
    let now = chrono::Utc::now().naive_utc().to_string().replace(' ', "T");
    let mut response = json!({
        "robot_id": id,
        "command_id": command_id,
        "timestamp": now,
        "success": true,
        "message": format!("Command {command_type} executed"),
    });
    if topic.starts_with("tonypi/emergency_stop/") {
        let reason = payload["reason"]
            .as_str()
            .unwrap_or("Emergency stop triggered")
            .to_string();
        let answer = if behaviour == Behaviour::CannotStop {
            json!({
                "robot_id": id, "command_id": command_id, "type": "emergency_stop",
                "timestamp": now, "success": false,
                "message": "servo bus not responding: motors NOT stopped",
                "state": {"emergency_stopped": false, "motors_stopped": false, "job_stopped": false},
            })
        } else {
            s.emergency_stopped = true;
            s.emergency_reason = Some(reason.clone());
            s.moving = false;
            json!({
                "robot_id": id, "command_id": command_id, "type": "emergency_stop",
                "timestamp": now, "success": true,
                "message": format!("Emergency stop activated: {reason}"),
                "reason": reason,
                "state": {"emergency_stopped": true, "motors_stopped": true, "job_stopped": true},
            })
        };
        return if behaviour == Behaviour::CommandsResponseOnly {
            vec![("tonypi/commands/response", answer)]
        } else {
            vec![
                ("tonypi/emergency_stop/response", answer.clone()),
                ("tonypi/commands/response", answer),
            ]
        };
    }
    if s.emergency_stopped
        && !["resume", "status_request", "battery_request"].contains(&command_type.as_str())
    {
        response["success"] = json!(false);
        response["message"] = json!(format!(
            "Robot is emergency stopped. Send 'resume' command first. Reason: {}",
            s.emergency_reason.as_deref().unwrap_or("")
        ));
        return vec![("tonypi/commands/response", response)];
    }
    match command_type.as_str() {
        "move" => {
            s.moving = true;
            response["message"] = json!("Moved forward");
        }
        "stop" => {
            s.moving = false;
            response["message"] = json!("Robot stopped successfully");
        }
        "resume" => {
            let was = s.emergency_reason.take();
            response = if s.emergency_stopped {
                s.emergency_stopped = false;
                json!({
                    "robot_id": id, "command_id": command_id, "type": "resume",
                    "timestamp": now, "success": true,
                    "message": format!("Robot resumed from emergency stop (was: {})", was.as_deref().unwrap_or("")),
                    "previous_reason": was,
                    "state": {"emergency_stopped": false, "ready": true},
                })
            } else {
                json!({
                    "robot_id": id, "command_id": command_id, "type": "resume",
                    "timestamp": now, "success": true,
                    "message": "Robot was not in emergency stop state",
                })
            };
        }
        _ => {}
    }
    s.executed.push(command_type);
    vec![("tonypi/commands/response", response)]
}
