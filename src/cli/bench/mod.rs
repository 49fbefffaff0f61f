//! `fleetsink bench`: publishes TonyPi-shaped traffic from N robot connections and,
//! with `--database-url`, waits until every message is in PostgreSQL.
//!
//! It reports messages/s published and committed, rows expected / found / lost /
//! duplicated, and publish→commit latency measured by a probe robot: a probe message
//! goes out every 10 ms and a poller watches for its row, so the latency covers
//! broker, fleetsink and commit in either mode. With `--watch-pid` it also samples
//! that process's peak RSS. Every run is bounded by `--duration` and `--wait-timeout`.
//!
//! A run, in order ([`run`]): resolve the target → start the RSS sampler, the robots
//! (`publishers.rs`, messages from `traffic.rs`) and the probe (`probe.rs`) → wait for
//! the deadline and the broker's PUBACKs → wait for the rows in PostgreSQL → the
//! report (`report.rs`). It is a client of fleetsink, not part of it: it lives with
//! the CLI and uses the library only for the broker URL and QoS vocabulary.

mod probe;
mod publishers;
mod report;
mod rss;
mod traffic;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Args, ValueEnum};
use fleetsink::mqtt::{BrokerUrl, Qos};
use rumqttc::QoS;
use sqlx::PgPool;

use probe::Probe;
use report::Report;
use traffic::{Expect, robot_id};

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

/// `fleetsink bench`: the report on stdout, or why the run failed on stderr.
pub async fn main(args: BenchArgs) -> ExitCode {
    match run(args).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleetsink bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the load goes and how it is named, resolved from the command line.
pub struct Target {
    url: BrokerUrl,
    qos: QoS,
    /// Robot ids are `{prefix}_0000`…; the probe is `{prefix}_probe`.
    prefix: String,
    /// With `--database-url`: where rows are counted and the probe watched.
    pool: Option<PgPool>,
}

impl Target {
    async fn resolve(args: &BenchArgs) -> anyhow::Result<Target> {
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
        Ok(Target {
            url,
            qos,
            prefix,
            pool,
        })
    }
}

/// Counts the robots' connections and the RSS sampler share.
#[derive(Default)]
pub struct Progress {
    published: AtomicU64,
    acked: AtomicU64,
}

async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let target = Target::resolve(&args).await?;
    let mut report = Report {
        args: format!(
            "broker={} robots={} rate={} duration={}s qos={} mix={:?} inflight={}",
            target.url, args.robots, args.rate, args.duration, args.qos, args.mix, args.inflight
        ),
        ..Report::default()
    };
    let progress = Arc::new(Progress::default());
    let base = Utc::now();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration);
    let sampler = args
        .watch_pid
        .map(|pid| rss::Sampler::spawn(pid, args.rss_every, started, progress.clone()));
    let plan = publishers::Plan {
        robots: args.robots,
        mix: args.mix,
        per_robot_rate: (args.rate > 0).then(|| args.rate as f64 / args.robots.max(1) as f64),
        inflight: args.inflight,
        keepalive: args.keepalive,
        base,
        deadline,
    };
    let fleet = publishers::start(&target, &plan, &progress);
    let mut probe = Probe::start(&target, args.keepalive, deadline);

    let published = fleet.join().await?;
    report.publish_secs = started.elapsed().as_secs_f64();
    probe.publishing_done().await;
    report.published = progress.published.load(Ordering::Relaxed);
    if target.qos == QoS::AtLeastOnce {
        wait_for_acks(&progress, report.published, args.wait_timeout).await;
    }
    report.acked = progress.acked.load(Ordering::Relaxed);

    if let Some(pool) = &target.pool {
        let expected = published.expected;
        report.metrics_expected = expected.metrics;
        report.logs_expected = expected.logs;
        let robots: Vec<String> = (0..args.robots)
            .map(|r| robot_id(&target.prefix, r))
            .collect();
        let found = wait_for_rows(pool, &robots, expected, args.wait_timeout).await?;
        report.metrics_found = found.metrics;
        report.logs_found = found.logs;
        report.committed_secs = Some(started.elapsed().as_secs_f64());
    }
    report.latencies_ms = probe.latencies_ms().await;
    if let Some(sampler) = sampler {
        let (peak, trace) = sampler.finish().await;
        report.peak_rss_kib = Some(peak);
        report.rss_trace = trace;
    }
    published.disconnect().await;
    probe.disconnect().await;
    Ok(report)
}

/// Lets QoS 1 acks arrive before disconnecting, for at most `timeout_secs`.
async fn wait_for_acks(progress: &Progress, published: u64, timeout_secs: u64) {
    let until = Instant::now() + Duration::from_secs(timeout_secs);
    while progress.acked.load(Ordering::Relaxed) < published && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Counts the robots' metric values and bench log rows until they reach `expected` or
/// `timeout_secs` pass; returns what was found (more than expected = duplicates).
async fn wait_for_rows(
    pool: &PgPool,
    robots: &[String],
    expected: Expect,
    timeout_secs: u64,
) -> Result<Expect, sqlx::Error> {
    let until = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        // The robots' exact ids, so both counts use the (robot_id, …) indexes whatever
        // the database's collation (a LIKE prefix cannot) and never scan other runs' rows.
        let (m, l): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(sum(cardinality(m.vals)), 0)::int8 FROM metrics m \
                      JOIN robots r ON r.id = m.robot WHERE r.robot_id = ANY($1)), \
                    (SELECT count(*) FROM logs WHERE robot_id = ANY($1) AND category = 'robot_bench')",
        )
        .bind(robots)
        .fetch_one(pool)
        .await?;
        let found = Expect {
            metrics: m as u64,
            logs: l as u64,
        };
        if (found.metrics >= expected.metrics && found.logs >= expected.logs)
            || Instant::now() >= until
        {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
