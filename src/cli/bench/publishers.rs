//! The load: one MQTT connection per robot, each publishing its share of `--rate`
//! (or as fast as its in-flight window allows) until the deadline.
//!
//! Each connection has a persistent session and counts the broker's PUBACKs; each
//! publisher returns the rows its messages must become, so the expected total is exact.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use secrecy::ExposeSecret;
use tokio::task::{JoinError, JoinHandle};

use super::traffic::{Expect, message, robot_id};
use super::{Mix, Progress, Target};

/// A robot's client and the task polling its connection.
type Connection = (AsyncClient, JoinHandle<()>);

/// The robots while they publish.
pub struct Fleet {
    robots: Vec<JoinHandle<(Connection, Expect)>>,
}

/// The robots once they stopped publishing: still connected, so late PUBACKs arrive.
pub struct Published {
    connections: Vec<Connection>,
    /// The rows all their messages must become.
    pub expected: Expect,
}

/// What every robot publishes the same way.
#[derive(Clone, Copy)]
pub struct Plan {
    pub robots: usize,
    pub mix: Mix,
    /// Messages per second per robot; `None` = as fast as possible.
    pub per_robot_rate: Option<f64>,
    pub inflight: u16,
    pub keepalive: u64,
    /// Message `i`'s timestamp is `base + i µs`: unique per robot.
    pub base: DateTime<Utc>,
    pub deadline: Instant,
}

/// Connects every robot and starts publishing.
pub fn start(target: &Target, plan: &Plan, progress: &Arc<Progress>) -> Fleet {
    let robots = (0..plan.robots)
        .map(|r| {
            let robot = robot_id(&target.prefix, r);
            let (client, eventloop) = connect(target, &robot, plan.inflight, plan.keepalive);
            let poller = tokio::spawn(count_acks(eventloop, progress.clone()));
            tokio::spawn(publish(
                (client, poller),
                robot,
                target.qos,
                *plan,
                progress.clone(),
            ))
        })
        .collect();
    Fleet { robots }
}

impl Fleet {
    /// Waits until every robot has stopped publishing (the deadline passed, or its
    /// connection's request channel closed).
    pub async fn join(self) -> Result<Published, JoinError> {
        let mut published = Published {
            connections: Vec::with_capacity(self.robots.len()),
            expected: Expect::default(),
        };
        for robot in self.robots {
            let (connection, expected) = robot.await?;
            published.connections.push(connection);
            published.expected += expected;
        }
        Ok(published)
    }
}

impl Published {
    /// Disconnects every robot, giving each poller 2 s to see its DISCONNECT out.
    pub async fn disconnect(self) {
        for (client, poller) in self.connections {
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
        }
    }
}

/// One robot's messages until the deadline, paced to its rate when there is one.
async fn publish(
    connection: Connection,
    robot: String,
    qos: QoS,
    plan: Plan,
    progress: Arc<Progress>,
) -> (Connection, Expect) {
    let client = &connection.0;
    let mut expected = Expect::default();
    let mut i: u64 = 0;
    let t0 = Instant::now();
    while Instant::now() < plan.deadline {
        if let Some(rate) = plan.per_robot_rate {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
            if Instant::now() >= plan.deadline {
                break;
            }
        }
        // Unique per robot: one microsecond per message.
        let ts = plan.base + chrono::Duration::microseconds(i as i64);
        let (topic, payload, e) = message(plan.mix, &robot, i, ts);
        if client.publish(topic, qos, false, payload).await.is_err() {
            break;
        }
        expected += e;
        progress.published.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    (connection, expected)
}

/// Polls a robot's connection, counting PUBACKs, until it disconnects; connection
/// errors are printed and rumqttc reconnects on the next poll.
async fn count_acks(mut eventloop: EventLoop, progress: Arc<Progress>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                progress.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                eprintln!("bench connection error: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A client for `client_id` (also the robot's id); it connects on the first poll.
pub fn connect(
    target: &Target,
    client_id: &str,
    inflight: u16,
    keepalive: u64,
) -> (AsyncClient, EventLoop) {
    let url = &target.url;
    let mut opts = MqttOptions::new(client_id, url.socket_host(), url.port);
    opts.set_keep_alive(Duration::from_secs(keepalive.max(5)))
        // A persistent session: after a reconnect (a robot whose PINGREQ went unanswered
        // while fleetsink held its PUBACK through a PostgreSQL outage) the broker resumes
        // the session and the client resends what was not acknowledged. With a clean
        // session rumqttc drops those messages, as MQTT allows.
        .set_clean_session(false)
        .set_inflight(inflight.max(1))
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some(user) = &url.username {
        let password = url.password.as_ref().map(|p| p.expose_secret().to_string());
        opts.set_credentials(user.clone(), password.unwrap_or_default());
    }
    AsyncClient::new(opts, 1000)
}
