//! The latency probe: an extra robot publishes one sensor message every 10 ms until the
//! deadline, and (with `--database-url`) a watcher polls PostgreSQL for the probe's
//! rows. A row's arrival time minus its message's publish time is one publish→commit
//! sample, covering broker, fleetsink and commit in either MQTT mode. The watcher
//! keeps looking for 10 s after the deadline so late rows still count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, Event, Outgoing, QoS};
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::Target;
use super::publishers::connect;

/// A probe message: its payload timestamp and when it was published.
type ProbeSent = (DateTime<Utc>, Instant);

pub struct Probe {
    client: AsyncClient,
    publisher: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    latencies_ms: Arc<Mutex<Vec<f64>>>,
}

impl Probe {
    /// Connects the probe robot `{prefix}_probe`, starts publishing and, when there is
    /// a database, watching.
    pub fn start(target: &Target, keepalive: u64, deadline: Instant) -> Probe {
        let robot = format!("{}_probe", target.prefix);
        let sent: Arc<Mutex<Vec<ProbeSent>>> = Arc::default();
        let latencies_ms: Arc<Mutex<Vec<f64>>> = Arc::default();
        let (client, mut eventloop) = connect(target, &robot, 10, keepalive);
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        let publisher = tokio::spawn(publish(
            client.clone(),
            robot.clone(),
            sent.clone(),
            deadline,
        ));
        let watcher = target
            .pool
            .clone()
            .map(|pool| tokio::spawn(watch(pool, robot, sent, latencies_ms.clone(), deadline)));
        Probe {
            client,
            publisher: Some(publisher),
            watcher,
            latencies_ms,
        }
    }

    /// Waits until the probe has stopped publishing (at the deadline).
    pub async fn publishing_done(&mut self) {
        if let Some(p) = self.publisher.take() {
            let _ = p.await;
        }
    }

    /// Waits until the watcher is done (10 s after the deadline); the samples, in ms.
    pub async fn latencies_ms(&mut self) -> Vec<f64> {
        if let Some(w) = self.watcher.take() {
            let _ = w.await;
        }
        self.latencies_ms.lock().await.clone()
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// One probe message every 10 ms until the deadline, each remembered with its send time.
async fn publish(
    client: AsyncClient,
    robot: String,
    sent: Arc<Mutex<Vec<ProbeSent>>>,
    deadline: Instant,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while Instant::now() < deadline {
        tick.tick().await;
        let ts = Utc::now();
        let payload = format!(
            r#"{{"sensor_type":"probe","value":1,"timestamp":"{}"}}"#,
            ts.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        );
        sent.lock().await.push((ts, Instant::now()));
        let _ = client
            .publish(
                format!("tonypi/sensors/{robot}"),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await;
    }
}

/// Polls for the probe's new rows every 5 ms; each row matched to its message (by
/// timestamp, to the microsecond) is one latency sample.
async fn watch(
    pool: PgPool,
    robot: String,
    sent: Arc<Mutex<Vec<ProbeSent>>>,
    latencies_ms: Arc<Mutex<Vec<f64>>>,
    deadline: Instant,
) {
    let mut seen = 0usize;
    let watch_until = deadline + Duration::from_secs(10);
    while Instant::now() < watch_until {
        let rows: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT ts FROM metric_values WHERE robot_id = $1 AND name = 'probe' ORDER BY ts OFFSET $2",
        )
        .bind(&robot)
        .bind(seen as i64)
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        let now = Instant::now();
        let sent = sent.lock().await;
        for ts in &rows {
            if let Some((_, at)) = sent
                .iter()
                .find(|(t, _)| (*t - *ts).num_microseconds().unwrap_or(i64::MAX).abs() < 2)
            {
                latencies_ms
                    .lock()
                    .await
                    .push(now.duration_since(*at).as_secs_f64() * 1000.0);
            }
        }
        seen += rows.len();
        drop(sent);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
