//! `fleetsink bench`: an MQTT load generator that times every QoS 1 publish to its
//! PUBACK, and checks PostgreSQL for every message it sent.
//!
//! Two shapes. **fleet** (the default): thousands of connections, one per robot, each
//! with its own client id, publishing TonyPi's messages at TonyPi's cadence, jittered
//! (`cadence.rs`, `traffic.rs`) — what a real fleet does to the daemon. **saturated**:
//! a few connections publishing as fast as their in-flight windows allow (or at
//! `--rate`) — the ceiling. With the embedded broker in after-commit mode a PUBACK means
//! "committed", so publish→PUBACK is publish→commit; behind Mosquitto it is
//! publish→broker, and the committed rate comes from the database check.
//!
//! A run, in order ([`run`]): raise the file-descriptor limit (or say which limit stops
//! it) → connect the robots at `--ramp-rate` per second, each publishing from its first
//! connection → `--warmup` → the measurement window (`--duration`, or until
//! `--max-messages`): CPU of the daemon, PostgreSQL and the generator read from `/proc`
//! at both ends, latency of every message published in it → stop publishing, wait for
//! the last PUBACKs (`--drain-timeout`) → disconnect → compare the rows stored with the
//! messages sent (`rows.rs`) → the report (`report.rs`), a table or `--json` on stdout.
//! Logs go to stderr. Every phase is bounded, so a run always ends by itself.
//!
//! It is a client of fleetsink, not part of it: it lives with the CLI, speaks MQTT
//! through its own minimal client (`robot.rs`, over the library's pure packet codec
//! `mqtt::client_codec`) and otherwise uses the library only for the broker URL.

mod cadence;
mod procfs;
mod report;
mod robot;
mod rows;
mod traffic;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use fleetsink::mqtt::BrokerUrl;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use cadence::Kind;
use report::{Connections, Cpu, Daemon, Latency, MqttLoss, Postgres, Report, Throughput};
use robot::{Pace, Robot, RobotConfig, RobotResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// One connection per robot at TonyPi's cadence (default 1,000 robots).
    Fleet,
    /// Few connections, as fast as their in-flight windows allow (default 50).
    Saturated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// TonyPi's sensors, servos, location, status and battery in the cadence's proportions.
    Tonypi,
    /// Sensor readings only (one metric value per message).
    Sensors,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// fleet: one connection per robot at TonyPi's cadence; saturated: few connections
    /// publishing as fast as they can.
    #[arg(long, value_enum, default_value_t = Shape::Fleet)]
    pub shape: Shape,
    /// Broker to publish to (the embedded broker or Mosquitto); plain TCP only.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Robot connections, each with its own client id (default: 1000 fleet, 50 saturated).
    #[arg(long)]
    pub robots: Option<usize>,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Seconds of publishing after every robot connected, before the window opens.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// New connections per second while the robots connect.
    #[arg(long, default_value_t = 500)]
    pub ramp_rate: u32,
    /// Seconds to wait, beyond the ramp's own length, for robots still connecting; the
    /// window opens without those.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout: u64,
    /// Fleet: each period is stretched or shrunk by up to this fraction.
    #[arg(long, default_value_t = 0.1)]
    pub jitter: f64,
    /// Saturated: messages per second across all robots; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Saturated: what the robots publish.
    #[arg(long, value_enum, default_value_t = Mix::Tonypi)]
    pub mix: Mix,
    /// Unacknowledged QoS 1 publishes per connection.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// MQTT keepalive of every connection, seconds. While fleetsink holds PUBACKs
    /// (after-commit mode, PostgreSQL down) the embedded broker answers no PINGREQ, so
    /// an outage longer than 1.5 × keepalive makes the broker drop the robots.
    #[arg(long, default_value_t = 60)]
    pub keepalive: u64,
    /// Seconds to wait for the last PUBACKs after the window closes.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Stop publishing after this many messages, whatever the duration.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Check every message against this database's rows, after the run.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Longest wait for PostgreSQL to hold every acknowledged message.
    #[arg(long, default_value_t = 120)]
    pub wait_timeout: u64,
    /// The daemon's PID: its RSS and CPU are reported.
    #[arg(long, alias = "watch-pid")]
    pub daemon_pid: Option<u32>,
    /// The PostgreSQL postmaster's PID, for the cluster's CPU; by default found from
    /// `--database-url` when the server runs on this machine.
    #[arg(long)]
    pub pg_pid: Option<u32>,
    /// With --daemon-pid: also report RSS, messages published and acked every this
    /// many seconds (a timeline, e.g. through a PostgreSQL outage).
    #[arg(long, requires = "daemon_pid")]
    pub rss_every: Option<u64>,
    /// Robot ids are PREFIX-00001 …
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Also report publish→PUBACK p50/p99/max for each second of the window (by the
    /// second a message was published): shows whether the tail is steady or comes in
    /// bursts.
    #[arg(long)]
    pub per_second: bool,
    /// Every sensor reading uniform from 0 to 100, instead of the ranges TonyPi's
    /// simulator gives a healthy robot: the CPU, memory and temperature readings then
    /// open and resolve alerts all the time (the generator before the seventh session;
    /// a worst case for alert evaluation).
    #[arg(long)]
    pub uniform_sensors: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Threads the robots run on. One (the default) costs the least CPU per message: no
    /// wake-ups across threads; raise it for saturated runs if the generator's CPU
    /// nears a core.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Descriptors the bench needs besides one per robot (stdio, the runtime, the pool).
const FD_MARGIN: u64 = 64;

/// `fleetsink bench`: the report on stdout, or why the run failed on stderr.
pub async fn main(args: BenchArgs) -> ExitCode {
    let json = args.json;
    let threads = args.threads;
    // The run gets a runtime of its own, sized by --threads, off the CLI's runtime.
    let result = tokio::task::spawn_blocking(move || {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        builder
            .enable_all()
            .build()
            .context("starting the bench's runtime")?
            .block_on(run(args))
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the bench's runtime failed: {e}")));
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("fleetsink bench: the report does not serialise: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleetsink bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where the run is in time; robots read it on every publish and PUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting and warming up: publishing, not measured.
    Warmup = 0,
    Measure = 1,
    /// Window closed: no new messages, PUBACKs still awaited.
    Drain = 2,
}

/// What the robots and the run share: the phase, counters, the stop signal.
pub struct Shared {
    phase: AtomicU8,
    pub ever_connected: AtomicUsize,
    pub reconnects: AtomicU64,
    pub published: AtomicU64,
    pub acked: AtomicU64,
    pub published_in_window: AtomicU64,
    pub acked_in_window: AtomicU64,
    pub unexpected_acks: AtomicU64,
    pub held_back: AtomicU64,
    max_messages: u64,
    cap: Notify,
    /// µs after `started` of the first publish (u64::MAX until then).
    first_publish_us: AtomicU64,
    started: Instant,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Disconnect now.
    pub stop: CancellationToken,
}

impl Shared {
    fn new(max_messages: u64, started: Instant) -> Shared {
        Shared {
            phase: AtomicU8::new(Phase::Warmup as u8),
            ever_connected: AtomicUsize::new(0),
            reconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            published_in_window: AtomicU64::new(0),
            acked_in_window: AtomicU64::new(0),
            unexpected_acks: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
            max_messages,
            cap: Notify::new(),
            first_publish_us: AtomicU64::new(u64::MAX),
            started,
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            stop: CancellationToken::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            _ => Phase::Drain,
        }
    }

    fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    /// Counts one more message if the cap allows it.
    pub fn reserve_message(&self) -> bool {
        let n = self.published.fetch_add(1, Ordering::Relaxed);
        if n >= self.max_messages {
            self.published.fetch_sub(1, Ordering::Relaxed);
            self.cap.notify_one();
            return false;
        }
        if n == 0 {
            let us = self.started.elapsed().as_micros() as u64;
            self.first_publish_us.fetch_min(us, Ordering::Relaxed);
        }
        true
    }

    pub fn cap_reached(&self) -> bool {
        self.published.load(Ordering::Relaxed) >= self.max_messages
    }

    /// Logs the first few connection errors (and keeps the first for the final error);
    /// later ones are only counted, so 10,000 refused robots do not flood stderr.
    pub fn note_error(&self, robot: &str, what: &str, e: &dyn std::fmt::Display) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed);
        if n == 0
            && let Ok(mut first) = self.first_error.lock()
        {
            *first = Some(format!("{robot} {what}: {e}"));
        }
        if n < 5 {
            tracing::warn!(robot, "{what}: {e}");
        } else if n == 5 {
            tracing::warn!("more connection errors follow; only counted from here on");
        }
    }

    fn first_publish(&self) -> Option<Instant> {
        match self.first_publish_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(self.started + Duration::from_micros(us)),
        }
    }
}

/// Where the load goes, resolved from the command line.
struct Target {
    url: BrokerUrl,
    addr: SocketAddr,
    pool: Option<PgPool>,
}

impl Target {
    async fn resolve(args: &BenchArgs) -> anyhow::Result<Target> {
        let url = BrokerUrl::parse(&args.broker).map_err(|e| anyhow::anyhow!("--broker: {e}"))?;
        if url.tls {
            bail!(
                "--broker {url}: the bench speaks plain MQTT only; point it at a plain TCP listener"
            );
        }
        let addr = tokio::net::lookup_host((url.socket_host(), url.port))
            .await
            .with_context(|| format!("--broker {url}: cannot resolve the host"))?
            .next()
            .with_context(|| format!("--broker {url}: the host has no address"))?;
        let pool = match &args.database_url {
            Some(u) => Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(u)
                    .await
                    .context("--database-url")?,
            ),
            None => None,
        };
        Ok(Target { url, addr, pool })
    }
}

/// The shape's defaults applied and checked.
struct Plan {
    robots: usize,
    pace: Pace,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        let robots = args.robots.unwrap_or(match args.shape {
            Shape::Fleet => 1000,
            Shape::Saturated => 50,
        });
        if robots == 0 {
            bail!("--robots must be at least 1");
        }
        if args.duration == 0 || args.ramp_rate == 0 || args.inflight == 0 {
            bail!("--duration, --ramp-rate and --inflight must be at least 1");
        }
        if !(0.0..=0.9).contains(&args.jitter) {
            bail!("--jitter is a fraction of the period, between 0 and 0.9");
        }
        let pace = match args.shape {
            Shape::Fleet => Pace::Fleet {
                jitter: args.jitter,
            },
            Shape::Saturated => Pace::Saturated {
                interval: (args.rate > 0)
                    .then(|| Duration::from_secs_f64(robots as f64 / args.rate as f64)),
                mix: args.mix,
            },
        };
        Ok(Plan { robots, pace })
    }

    fn describe(&self, args: &BenchArgs) -> String {
        let common = format!(
            "{} robots, ramp {}/s, window {} s, in-flight {} per connection",
            self.robots, args.ramp_rate, args.duration, args.inflight
        );
        match self.pace {
            Pace::Fleet { jitter } => format!(
                "{common}, TonyPi cadence (sensors 2 s, servos 3 s, location 5 s, status 10 s, battery 30 s; {:.2} msg/s per robot, ±{:.0} % jitter) = {:.0} msg/s offered",
                Kind::robot_rate(),
                jitter * 100.0,
                Kind::robot_rate() * self.robots as f64
            ),
            Pace::Saturated { interval, mix } => format!(
                "{common}, mix {mix:?}, {}",
                match interval {
                    Some(_) => format!("{} msg/s offered", args.rate),
                    None => "as fast as the windows allow".into(),
                }
            ),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; fails, naming the limit, when
/// even that is too low for `robots` connections.
fn raise_fd_limit(robots: usize) -> anyhow::Result<u64> {
    let need = robots as u64 + FD_MARGIN;
    let soft = rlimit::increase_nofile_limit(u64::MAX)
        .context("raising the open-files limit (RLIMIT_NOFILE)")?;
    if soft < need {
        let hard = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(soft, |(_, h)| h);
        bail!(
            "{robots} robots need {need} file descriptors (one socket each plus {FD_MARGIN}), but this process may open only {soft} (RLIMIT_NOFILE; hard limit {hard}). \
             Raise it in the shell that starts the bench (`ulimit -n {need}`; above the hard limit only root can, or set `nofile` in /etc/security/limits.conf), \
             or with LimitNOFILE= in a systemd unit, or run fewer robots. The daemon needs as many for its side of the connections."
        );
    }
    Ok(soft)
}

/// CPU readings at one end of the window.
#[derive(Clone, Copy)]
struct CpuSnapshot {
    daemon: Option<Duration>,
    postgres: Option<(Duration, usize)>,
    generator: Option<Duration>,
}

async fn cpu_snapshot(daemon: Option<u32>, postmaster: Option<u32>) -> CpuSnapshot {
    let read = move || CpuSnapshot {
        daemon: daemon.and_then(procfs::process_cpu),
        postgres: postmaster.and_then(procfs::cluster_cpu),
        generator: procfs::process_cpu(std::process::id()),
    };
    // Scanning /proc for the cluster's processes is blocking file I/O.
    tokio::task::spawn_blocking(read)
        .await
        .unwrap_or(CpuSnapshot {
            daemon: None,
            postgres: None,
            generator: None,
        })
}

/// The postmaster of the server behind `pool`, when it runs on this machine: the parent
/// of this session's backend, if both are PostgreSQL processes here.
async fn find_postmaster(pool: &PgPool) -> Option<u32> {
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
        .ok()?;
    let backend = u32::try_from(backend).ok()?;
    let is_postgres = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end().starts_with("postgres"))
    };
    let postmaster = procfs::parent(backend)?;
    (is_postgres(backend) && is_postgres(postmaster)).then_some(postmaster)
}

async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let plan = Plan::from_args(&args)?;
    let target = Target::resolve(&args).await?;
    raise_fd_limit(plan.robots)?;
    if let Some(pid) = args.daemon_pid {
        if procfs::rss_kib(pid).is_none() {
            bail!("--daemon-pid {pid}: no such process visible in /proc");
        }
        if let Some(limit) = procfs::open_files_limit(pid)
            && limit < plan.robots as u64 + FD_MARGIN
        {
            tracing::warn!(
                pid,
                limit,
                "the daemon may open only {limit} files; it will refuse robots beyond that (raise LimitNOFILE or `ulimit -n` where it starts)"
            );
        }
    }
    let postmaster = match (args.pg_pid, &target.pool) {
        (Some(pid), _) => Some(pid),
        (None, Some(pool)) => find_postmaster(pool).await,
        (None, None) => None,
    };

    let started = Instant::now();
    let shared = Arc::new(Shared::new(args.max_messages, started));
    let rss_before = args.daemon_pid.and_then(procfs::rss_kib);
    let sampler = args.daemon_pid.map(|pid| {
        procfs::RssSampler::spawn(
            pid,
            args.rss_every.map(|s| Duration::from_secs(s.max(1))),
            started,
            shared.clone(),
        )
    });
    // The daemon's CPU from before the robots connect to the last commit (below): in
    // external mode it drains the broker's queue after the window, so the window's
    // CPU is not all it spends on the run's messages.
    let cpu_run_start = args.daemon_pid.and_then(procfs::process_cpu);
    let cfg = Arc::new(RobotConfig {
        addr: target.addr,
        username: target.url.username.clone(),
        password: target
            .url
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string()),
        keepalive: Duration::from_secs(args.keepalive.clamp(5, u64::from(u16::MAX))),
        inflight: usize::from(args.inflight),
        pace: plan.pace,
        connect_timeout: Duration::from_secs(10),
        robots: plan.robots,
        uniform_sensors: args.uniform_sensors,
    });
    let ids: Vec<String> = (1..=plan.robots)
        .map(|n| traffic::robot_id(&args.prefix, n))
        .collect();
    let ramp_step = Duration::from_secs_f64(1.0 / f64::from(args.ramp_rate));
    let robots: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let start_at = started + ramp_step.mul_f64(i as f64);
            tokio::spawn(Robot::new(i + 1, id.clone(), start_at, cfg.clone(), shared.clone()).run())
        })
        .collect();
    tracing::info!(
        robots = plan.robots,
        broker = %target.url,
        "connecting at {}/s",
        args.ramp_rate
    );

    // Ramp: until every robot connected once, or the ramp's length plus --connect-timeout.
    let ramp_deadline =
        started + ramp_step.mul_f64(plan.robots as f64) + Duration::from_secs(args.connect_timeout);
    while shared.ever_connected.load(Ordering::Relaxed) < plan.robots
        && Instant::now() < ramp_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ramp_secs = started.elapsed().as_secs_f64();
    let connected = shared.ever_connected.load(Ordering::Relaxed);
    if connected == 0 {
        shared.stop.cancel();
        let first = shared
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
            .unwrap_or_else(|| "no error seen".into());
        bail!(
            "no robot could connect to {} within {ramp_secs:.0} s ({first})",
            target.url
        );
    }
    tracing::info!(
        connected,
        target = plan.robots,
        "robots connected in {ramp_secs:.1} s; warming up for {} s",
        args.warmup
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.warmup)) => {}
        _ = shared.cap.notified() => {}
    }

    // The window.
    let cpu_start = cpu_snapshot(args.daemon_pid, postmaster).await;
    shared.set_phase(Phase::Measure);
    let window_start = Instant::now();
    tracing::info!("measuring for {} s", args.duration);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.duration)) => {}
        _ = shared.cap.notified() => tracing::warn!(max = args.max_messages, "--max-messages reached; closing the window early"),
    }
    shared.set_phase(Phase::Drain);
    let window_secs = window_start.elapsed().as_secs_f64();
    let cpu_end = cpu_snapshot(args.daemon_pid, postmaster).await;
    let acked_in_window = shared.acked_in_window.load(Ordering::Relaxed);
    let published_in_window = shared.published_in_window.load(Ordering::Relaxed);

    // Drain: the last PUBACKs.
    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs(args.drain_timeout);
    while shared.acked.load(Ordering::Relaxed) < shared.published.load(Ordering::Relaxed)
        && Instant::now() < drain_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    shared.stop.cancel();
    let mut results: Vec<RobotResult> = Vec::with_capacity(robots.len());
    for r in robots {
        results.push(r.await.context("a robot task failed")?);
    }
    let published = shared.published.load(Ordering::Relaxed);
    let acked = shared.acked.load(Ordering::Relaxed);
    tracing::info!(published, acked, "robots disconnected");

    let database = match &target.pool {
        Some(pool) => Some(
            rows::check(
                pool,
                &ids,
                &results,
                Duration::from_secs(args.wait_timeout),
                shared.first_publish(),
            )
            .await
            .context("checking the rows in PostgreSQL")?,
        ),
        None => None,
    };
    let cpu_run_end = args.daemon_pid.and_then(procfs::process_cpu);
    let us_per_stored = match (&database, cpu_run_start, cpu_run_end) {
        (Some(db), Some(a), Some(b)) if db.committed_secs.is_some() && db.stored > 0 => {
            Some(b.saturating_sub(a).as_secs_f64() * 1e6 / db.stored as f64)
        }
        _ => None,
    };

    let latency_by_second = if args.per_second {
        let mut pairs: Vec<(u32, u32)> = results
            .iter()
            .flat_map(|r| {
                r.sample_seconds
                    .iter()
                    .copied()
                    .zip(r.latencies_us.iter().copied())
            })
            .collect();
        report::by_second(&mut pairs)
    } else {
        Vec::new()
    };
    let mut samples: Vec<u32> = results
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.latencies_us))
        .collect();
    let cpu = |a: Option<Duration>, b: Option<Duration>| {
        Some(Cpu::new(
            b?.checked_sub(a?)?.as_secs_f64(),
            window_secs,
            acked_in_window,
        ))
    };
    let daemon = match (args.daemon_pid, sampler) {
        (Some(pid), Some(sampler)) => {
            let (peak_kib, trace) = sampler.finish().await;
            let per_connection =
                rss_before.map(|b| peak_kib.saturating_sub(b) as f64 / connected as f64);
            Some((
                Daemon {
                    pid,
                    rss_before_mb: rss_before.map(|k| k as f64 / 1024.0),
                    rss_peak_mb: peak_kib as f64 / 1024.0,
                    rss_per_connection_kb: per_connection,
                    cpu: cpu(cpu_start.daemon, cpu_end.daemon),
                    us_per_stored,
                },
                trace,
            ))
        }
        _ => None,
    };
    let postgres = match (postmaster, cpu_start.postgres, cpu_end.postgres) {
        (Some(pid), Some((a, _)), Some((b, processes))) => Some(Postgres {
            postmaster_pid: pid,
            processes,
            cpu: Cpu::new(
                b.saturating_sub(a).as_secs_f64(),
                window_secs,
                acked_in_window,
            ),
        }),
        _ => None,
    };
    let (daemon, rss_trace) = match daemon {
        Some((d, t)) => (Some(d), t),
        None => (None, Vec::new()),
    };
    Ok(Report {
        shape: match args.shape {
            Shape::Fleet => "fleet",
            Shape::Saturated => "saturated",
        },
        broker: target.url.to_string(),
        settings: plan.describe(&args),
        connections: Connections {
            target: plan.robots,
            connected,
            failed: plan.robots - connected,
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            ramp_secs,
        },
        warmup_secs: args.warmup as f64,
        window_secs,
        published: Throughput {
            in_window: published_in_window,
            per_sec: published_in_window as f64 / window_secs,
            total: published,
        },
        acked: Throughput {
            in_window: acked_in_window,
            per_sec: acked_in_window as f64 / window_secs,
            total: acked,
        },
        held_back: shared.held_back.load(Ordering::Relaxed),
        latency_ms: Latency::from_samples(&mut samples),
        mqtt: MqttLoss {
            lost: published.saturating_sub(acked),
            duplicated: shared.unexpected_acks.load(Ordering::Relaxed),
        },
        drain_secs,
        database,
        daemon,
        postgres,
        generator: cpu(cpu_start.generator, cpu_end.generator),
        rss_trace,
        latency_by_second,
    })
}
