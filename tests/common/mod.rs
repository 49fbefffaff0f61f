//! Test helpers: a fresh database per test, Mosquitto and PostgreSQL processes of our
//! own on free ports, fleetsink in-process or as a child process, and MQTT clients.
//! `scripts/test.sh` provides the shared PostgreSQL cluster and the binaries' paths.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleetsink::app::App;
use fleetsink::config::{Config, MqttMode};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use sqlx::PgPool;
use tokio::sync::mpsc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test.sh, which starts PostgreSQL and finds Mosquitto")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

/// Creates a fresh database on `server_url`'s server; returns its URL.
pub async fn fresh_database_on(server_url: &str) -> String {
    let admin = PgPool::connect(server_url).await.unwrap();
    let name = unique("fs");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = server_url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

pub async fn fresh_database() -> String {
    fresh_database_on(&env("FLEETSINK_TEST_DATABASE_URL")).await
}

/// A test configuration: every port 0, small timeouts.
pub fn config(db_url: &str, mode: MqttMode) -> Config {
    let mut cfg = Config::default();
    cfg.database.url = db_url.into();
    cfg.database.retry_backoff_max = Duration::from_millis(500);
    cfg.database.connect_timeout = Duration::from_secs(1);
    // Fixture and test timestamps are fixed dates; accept them whenever the tests run.
    cfg.ingest.max_clock_skew = Duration::from_secs(3650 * 86400);
    cfg.mqtt.mode = mode;
    cfg.mqtt.embedded.listen = "127.0.0.1:0".parse().unwrap();
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.shutdown.drain_timeout = Duration::from_secs(10);
    cfg.mqtt.external.reconnect_backoff_max = Duration::from_millis(500);
    cfg.mqtt.external.broker_inflight = 1000;
    cfg
}

pub async fn start(cfg: Config) -> App {
    tokio::time::timeout(Duration::from_secs(60), App::start(cfg))
        .await
        .expect("fleetsink did not start in 60 s")
        .unwrap()
}

/// Stops an in-process fleetsink gracefully.
pub async fn stop(app: App) {
    app.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(30), app.wait())
        .await
        .expect("fleetsink did not stop in 30 s");
}

/// A Mosquitto of our own on a free port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n\
                 queue_qos0_messages true\n"
            ),
        )
        .unwrap();
        let child = Command::new(env("FLEETSINK_TEST_MOSQUITTO"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        Mosquitto {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A PostgreSQL cluster of our own, for tests that stop and restart the server.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgCluster {
    fn pg(&self, tool: &str) -> Command {
        let bin = PathBuf::from(env("FLEETSINK_TEST_PG_BIN")).join(tool);
        let user = env("FLEETSINK_TEST_PG_USER");
        let me = Command::new("id").arg("-un").output().unwrap();
        if String::from_utf8_lossy(&me.stdout).trim() == user {
            Command::new(bin)
        } else {
            let mut c = Command::new("runuser");
            c.args(["-u", &user, "--"]).arg(bin);
            c
        }
    }

    pub fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let user = env("FLEETSINK_TEST_PG_USER");
        let _ = Command::new("chown").arg(&user).arg(dir.path()).status();
        let c = PgCluster {
            dir,
            port: free_port(),
        };
        let data = c.dir.path().join("data");
        let ok = c
            .pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "initdb failed");
        c.resume();
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn pause(&self) {
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop failed");
    }

    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &opts, "start"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl start failed");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// fleetsink as a child process (for SIGKILL and SIGTERM tests), killed on drop.
pub struct Daemon {
    pub child: Child,
    pub http_port: u16,
}

impl Daemon {
    pub fn start(envs: &[(&str, String)]) -> Daemon {
        let http_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleetsink"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLEETSINK__HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "warn")
            .env("FLEETSINK__INGEST__MAX_CLOCK_SKEW", "3650days")
            .stdout(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        wait_for_port(http_port);
        Daemon { child, http_port }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An MQTT client whose event loop runs in the background; PUBACK packet ids arrive on
/// `acks`, received publishes on `messages`.
pub struct Client {
    pub client: AsyncClient,
    pub acks: mpsc::UnboundedReceiver<u16>,
    pub messages: mpsc::UnboundedReceiver<rumqttc::Publish>,
}

pub async fn client(addr: SocketAddr, id: &str) -> Client {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(4 << 20, 4 << 20)
        .set_inflight(100);
    let (client, eventloop) = AsyncClient::new(opts, 1000);
    let (ack_tx, acks) = mpsc::unbounded_channel();
    let (msg_tx, messages) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, ack_tx, msg_tx));
    Client {
        client,
        acks,
        messages,
    }
}

async fn drive(
    mut el: EventLoop,
    acks: mpsc::UnboundedSender<u16>,
    msgs: mpsc::UnboundedSender<rumqttc::Publish>,
) {
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::PubAck(a))) => {
                let _ = acks.send(a.pkid);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = msgs.send(p);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Client {
    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_acked(&mut self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
            .await
            .expect("no PUBACK within 30 s")
            .unwrap();
    }
}

pub fn mqtt_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The fixture lines: (topic, payload).
pub fn fixtures() -> Vec<(String, String)> {
    include_str!("../fixtures/tonypi-simulator-samples.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["topic"].as_str().unwrap().to_string(),
                v["payload"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls `check` every `every` until it returns true; fails the test with `what` after
/// `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, every: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < until, "{what}");
        tokio::time::sleep(every).await;
    }
}

/// Waits until an external-mode `app` is connected to its broker, plus a moment for
/// its SUBSCRIBE to be granted.
pub async fn wait_subscribed(app: &App) {
    wait_until(
        Duration::from_secs(15),
        Duration::from_millis(20),
        "fleetsink never connected to the broker",
        || async { app.health().readiness().broker_connected },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Polls `query` (a single bigint) until it returns at least `want` or 30 s pass.
pub async fn wait_count(pool: &PgPool, query: &str, want: i64) -> i64 {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_string()))
            .fetch_one(pool)
            .await
            .unwrap_or(-1);
        if n >= want || Instant::now() > until {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn count(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_string()))
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf[9..12].parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}
