//! `fleetsink bench`: publishes TonyPi-shaped traffic from N robot connections and,
//! with `--database-url`, waits until every message is in PostgreSQL.
//!
//! It reports messages/s published and committed, rows expected / found / lost /
//! duplicated, and publish→commit latency measured by a probe robot: a probe message
//! goes out every 10 ms and a poller watches for its row, so the latency covers
//! broker, fleetsink and commit in either mode. With `--watch-pid` it also samples
//! that process's peak RSS. Every run is bounded by `--duration` and `--wait-timeout`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::Mutex;

use crate::mqtt::{BrokerUrl, Qos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// status, sensors, servos, battery, location and logs, as robots send them.
    Tonypi,
    /// One sensor reading (one metric row) per message.
    Sensors,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Broker to publish to (the embedded broker or Mosquitto).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Robot connections, each with its own client id.
    #[arg(long, default_value_t = 50)]
    pub robots: usize,
    /// Total messages per second across all robots; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to publish for.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 1)]
    pub qos: u8,
    #[arg(long, value_enum, default_value_t = Mix::Tonypi)]
    pub mix: Mix,
    /// Unacknowledged QoS 1 publishes per connection.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// MQTT keepalive of every connection, seconds. While fleetsink holds PUBACKs
    /// (after-commit mode, PostgreSQL down) the embedded broker answers no PINGREQ, so
    /// an outage longer than the keepalive makes clients reconnect.
    #[arg(long, default_value_t = 30)]
    pub keepalive: u64,
    /// When given, wait until every message is in this database and count rows.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Longest wait for the database to catch up after publishing.
    #[arg(long, default_value_t = 120)]
    pub wait_timeout: u64,
    /// Sample this process's peak RSS (e.g. fleetsink's PID).
    #[arg(long)]
    pub watch_pid: Option<u32>,
    /// With --watch-pid: also report RSS, messages published and messages acked every
    /// this many seconds (a timeline, e.g. through a PostgreSQL outage).
    #[arg(long, requires = "watch_pid")]
    pub rss_every: Option<u64>,
    /// Robot id prefix; defaults to a fresh one per run so runs never mix.
    #[arg(long)]
    pub prefix: Option<String>,
}

/// A probe message: its payload timestamp and when it was published.
type ProbeSent = (DateTime<Utc>, Instant);

/// What one message contributes, so the expected rows are known exactly.
#[derive(Debug, Default, Clone, Copy)]
struct Expect {
    metrics: u64,
    logs: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub published: u64,
    pub acked: u64,
    pub publish_secs: f64,
    pub committed_secs: Option<f64>,
    pub metrics_expected: u64,
    pub metrics_found: u64,
    pub logs_expected: u64,
    pub logs_found: u64,
    pub latencies_ms: Vec<f64>,
    pub peak_rss_kib: Option<u64>,
    pub rss_trace: Vec<TracePoint>,
    pub args: String,
}

/// One `--rss-every` sample.
#[derive(Debug, Clone, Copy)]
pub struct TracePoint {
    pub secs: u64,
    pub rss_kib: u64,
    pub published: u64,
    pub acked: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "bench: {}", self.args)?;
        writeln!(
            f,
            "published {} messages in {:.2} s = {:.0} msg/s ({} acked by the broker)",
            self.published,
            self.publish_secs,
            self.published as f64 / self.publish_secs.max(1e-9),
            self.acked
        )?;
        if let Some(secs) = self.committed_secs {
            writeln!(
                f,
                "committed all in {:.2} s = {:.0} msg/s",
                secs,
                self.published as f64 / secs.max(1e-9)
            )?;
        }
        if self.metrics_expected + self.logs_expected > 0 {
            let lost = self.metrics_expected.saturating_sub(self.metrics_found)
                + self.logs_expected.saturating_sub(self.logs_found);
            let dup = self.metrics_found.saturating_sub(self.metrics_expected)
                + self.logs_found.saturating_sub(self.logs_expected);
            writeln!(
                f,
                "rows: metrics {}/{} logs {}/{}; lost {lost}, duplicated {dup}",
                self.metrics_found, self.metrics_expected, self.logs_found, self.logs_expected
            )?;
        }
        if !self.latencies_ms.is_empty() {
            let mut l = self.latencies_ms.clone();
            l.sort_by(f64::total_cmp);
            let pct = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
            writeln!(
                f,
                "publish→commit latency (probe, {} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.len(),
                pct(0.5),
                pct(0.99),
                pct(1.0)
            )?;
        }
        if let Some(kib) = self.peak_rss_kib {
            writeln!(
                f,
                "peak RSS of watched process: {:.1} MB",
                kib as f64 / 1024.0
            )?;
        }
        if !self.rss_trace.is_empty() {
            writeln!(f, "   t (s)   RSS (MB)   published       acked")?;
            for p in &self.rss_trace {
                writeln!(
                    f,
                    "{:>8} {:>10.1} {:>11} {:>11}",
                    p.secs,
                    p.rss_kib as f64 / 1024.0,
                    p.published,
                    p.acked
                )?;
            }
        }
        Ok(())
    }
}

fn message(mix: Mix, robot: &str, i: u64, ts: DateTime<Utc>) -> (String, String, Expect) {
    let ts = ts.format("%Y-%m-%dT%H:%M:%S%.6f");
    let sensor = |name: &str| {
        (
            format!("tonypi/sensors/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","sensor_type":"{name}","value":{},"unit":"°C","timestamp":"{ts}"}}"#,
                20.0 + (i % 100) as f64 / 10.0
            ),
            Expect {
                metrics: 1,
                logs: 0,
            },
        )
    };
    if mix == Mix::Sensors {
        return sensor("bench_temperature");
    }
    match i % 10 {
        0..=3 => sensor(["cpu_temperature", "distance", "light", "accel_x"][(i % 4) as usize]),
        4 | 5 => (
            "tonypi/battery".into(),
            format!(
                r#"{{"robot_id":"{robot}","percentage":{},"voltage":11.6,"charging":false,"timestamp":"{ts}"}}"#,
                50 + i % 50
            ),
            Expect {
                metrics: 3,
                logs: 0,
            },
        ),
        6 => (
            "tonypi/location".into(),
            format!(
                r#"{{"robot_id":"{robot}","x":{},"y":1.5,"z":0.0,"timestamp":"{ts}"}}"#,
                i % 1000
            ),
            Expect {
                metrics: 3,
                logs: 0,
            },
        ),
        7 => (
            format!("tonypi/status/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","status":"online","ip_address":"10.0.0.9","system_info":{{"cpu_percent":12.5,"memory_percent":40.1,"disk_usage":55.0,"temperature":48.2,"uptime":{i}}},"timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 5,
                logs: 0,
            },
        ),
        8 => (
            format!("tonypi/servos/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","servos":{{"servo_1":{{"id":1,"name":"left_hip","position":500,"temperature":41.0,"voltage":7.4,"torque_enabled":true,"alert_level":0}},"servo_2":{{"id":2,"name":"right_hip","position":480,"temperature":40.0,"voltage":7.4,"torque_enabled":true,"alert_level":0}}}},"servo_count":2,"timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 13,
                logs: 0,
            },
        ),
        _ => (
            format!("tonypi/logs/{robot}"),
            format!(
                r#"{{"robot_id":"{robot}","level":"INFO","message":"step {i}","source":"bench","timestamp":"{ts}"}}"#
            ),
            Expect {
                metrics: 0,
                logs: 1,
            },
        ),
    }
}

/// The id (and MQTT client id) of load-generator robot `r`.
fn robot_id(prefix: &str, r: usize) -> String {
    format!("{prefix}_{r:04}")
}

async fn connect(
    url: &BrokerUrl,
    client_id: &str,
    inflight: u16,
    keepalive: u64,
) -> (AsyncClient, rumqttc::EventLoop) {
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

pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let url = BrokerUrl::parse(&args.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
    let qos: QoS = Qos::try_from(args.qos)
        .map_err(|e| anyhow::anyhow!("--qos: {e}"))?
        .into();
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("bench{}", Utc::now().format("%H%M%S%3f")));
    let pool = match &args.database_url {
        Some(u) => Some(PgPool::connect(u).await?),
        None => None,
    };
    let mut report = Report {
        args: format!(
            "broker={url} robots={} rate={} duration={}s qos={} mix={:?} inflight={}",
            args.robots, args.rate, args.duration, args.qos, args.mix, args.inflight
        ),
        ..Report::default()
    };

    let published = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let expected = Arc::new(Mutex::new(Expect::default()));
    let rss = Arc::new(AtomicU64::new(0));
    let base = Utc::now();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let per_robot_rate = (args.rate > 0).then(|| args.rate as f64 / args.robots.max(1) as f64);

    let trace = Arc::new(Mutex::new(Vec::new()));
    if let Some(pid) = args.watch_pid {
        let rss = rss.clone();
        let trace = trace.clone();
        let every = args.rss_every.map(|s| Duration::from_secs(s.max(1)));
        let (published, acked) = (published.clone(), acked.clone());
        tokio::spawn(async move {
            let mut next_trace = started;
            loop {
                if let Ok(s) = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await
                    && let Some(kib) = s
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u64>().ok())
                {
                    rss.fetch_max(kib, Ordering::Relaxed);
                    if let Some(every) = every
                        && Instant::now() >= next_trace
                    {
                        next_trace += every;
                        trace.lock().await.push(TracePoint {
                            secs: started.elapsed().as_secs(),
                            rss_kib: kib,
                            published: published.load(Ordering::Relaxed),
                            acked: acked.load(Ordering::Relaxed),
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    let mut publishers = Vec::new();
    for r in 0..args.robots {
        let robot = robot_id(&prefix, r);
        let (client, mut eventloop) = connect(&url, &robot, args.inflight, args.keepalive).await;
        let acked_c = acked.clone();
        let poller = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked_c.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("bench connection error: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let published = published.clone();
        let expected = expected.clone();
        publishers.push(tokio::spawn(async move {
            let mut local = Expect::default();
            let mut i: u64 = 0;
            let t0 = Instant::now();
            while Instant::now() < deadline {
                if let Some(rate) = per_robot_rate {
                    let due = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                // Unique per robot: one microsecond per message.
                let ts = base + chrono::Duration::microseconds(i as i64);
                let (topic, payload, e) = message(args.mix, &robot, i, ts);
                if client.publish(topic, qos, false, payload).await.is_err() {
                    break;
                }
                local.metrics += e.metrics;
                local.logs += e.logs;
                published.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            let mut g = expected.lock().await;
            g.metrics += local.metrics;
            g.logs += local.logs;
            (client, poller)
        }));
    }

    // Probe: one message every 10 ms; its row's arrival gives publish→commit latency.
    let probe_robot = format!("{prefix}_probe");
    let probe_sent: Arc<Mutex<Vec<ProbeSent>>> = Arc::new(Mutex::new(Vec::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let (probe_client, mut probe_loop) = connect(&url, &probe_robot, 10, args.keepalive).await;
    tokio::spawn(async move {
        loop {
            match probe_loop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    let probe_pub = {
        let sent = probe_sent.clone();
        let robot = probe_robot.clone();
        let client = probe_client.clone();
        tokio::spawn(async move {
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
        })
    };
    let probe_watch = pool.clone().map(|pool| {
        let sent = probe_sent.clone();
        let lat = latencies.clone();
        let robot = probe_robot.clone();
        tokio::spawn(async move {
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
                    if let Some((_, at)) = sent.iter().find(|(t, _)| (*t - *ts).num_microseconds().unwrap_or(i64::MAX).abs() < 2) {
                        lat.lock().await.push(now.duration_since(*at).as_secs_f64() * 1000.0);
                    }
                }
                seen += rows.len();
                drop(sent);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    });

    let mut handles = Vec::new();
    for p in publishers {
        handles.push(p.await?);
    }
    report.publish_secs = started.elapsed().as_secs_f64();
    let _ = probe_pub.await;
    report.published = published.load(Ordering::Relaxed);
    // Let QoS 1 acks arrive before disconnecting.
    let ack_wait = Instant::now() + Duration::from_secs(args.wait_timeout);
    while qos == QoS::AtLeastOnce
        && acked.load(Ordering::Relaxed) < report.published
        && Instant::now() < ack_wait
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    report.acked = acked.load(Ordering::Relaxed);

    if let Some(pool) = &pool {
        let e = *expected.lock().await;
        report.metrics_expected = e.metrics;
        report.logs_expected = e.logs;
        // The robots' exact ids, so both counts use the (robot_id, …) indexes whatever
        // the database's collation (a LIKE prefix cannot) and never scan other runs' rows.
        let robots: Vec<String> = (0..args.robots).map(|r| robot_id(&prefix, r)).collect();
        let wait_until = Instant::now() + Duration::from_secs(args.wait_timeout);
        loop {
            let (m, l): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COALESCE(sum(cardinality(m.vals)), 0)::int8 FROM metrics m \
                          JOIN robots r ON r.id = m.robot WHERE r.robot_id = ANY($1)), \
                        (SELECT count(*) FROM logs WHERE robot_id = ANY($1) AND category = 'robot_bench')",
            )
            .bind(&robots)
            .fetch_one(pool)
            .await?;
            report.metrics_found = m as u64;
            report.logs_found = l as u64;
            if (report.metrics_found >= e.metrics && report.logs_found >= e.logs)
                || Instant::now() >= wait_until
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        report.committed_secs = Some(started.elapsed().as_secs_f64());
    }
    if let Some(w) = probe_watch {
        let _ = w.await;
    }
    report.latencies_ms = latencies.lock().await.clone();
    if args.watch_pid.is_some() {
        report.peak_rss_kib = Some(rss.load(Ordering::Relaxed));
        report.rss_trace = trace.lock().await.clone();
    }
    for (client, poller) in handles {
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    }
    let _ = probe_client.disconnect().await;
    Ok(report)
}
