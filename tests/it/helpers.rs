//! The test harness: `spawn_app` gives a running fleetsink on a fresh database (and, in
//! external mode, its own Mosquitto), with every port 0; `TestApp` has the helpers tests
//! need (MQTT robots, row counts, HTTP). Processes of our own (Mosquitto, a PostgreSQL
//! cluster, fleetsink as a child process) are stopped on drop.
//!
//! `scripts/test.sh` provides the shared PostgreSQL server and the binaries' paths in
//! `FLEETSINK_TEST_*` variables.

use std::net::SocketAddr;
use std::panic::Location;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fleetsink::app::App;
use fleetsink::config::{Config, MqttMode};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub fn env(name: &str) -> String {
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

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `check` every 20 ms until it returns true; after `timeout` the test fails
/// with `what`, naming the caller's line.
#[track_caller]
pub fn wait_until<F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> impl Future<Output = ()> + use<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = Location::caller();
    let what = what.to_string();
    async move {
        let until = Instant::now() + timeout;
        while !check().await {
            assert!(
                Instant::now() < until,
                "{caller}: gave up after {timeout:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits until something listens on `addr`.
#[track_caller]
pub fn wait_for_port(addr: SocketAddr) -> impl Future<Output = ()> {
    wait_until(
        Duration::from_secs(15),
        &format!("something listens on {addr}"),
        move || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
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

/// A test configuration: every port 0, short timeouts, fixture dates accepted.
pub fn test_config(db_url: &str, mode: MqttMode) -> Config {
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
    cfg.mqtt.external.client_id = unique("fleetsink");
    cfg
}

/// A running fleetsink with its own database (and its own Mosquitto in external mode).
pub struct TestApp {
    app: Option<(App, CancellationToken)>,
    pub cfg: Config,
    pub db_url: String,
    pub pool: PgPool,
    /// Where robots publish: the embedded broker, or the Mosquitto in external mode.
    pub mqtt: SocketAddr,
    /// The admin HTTP port.
    pub http: SocketAddr,
    pub broker: Option<Mosquitto>,
    client: reqwest::Client,
}

/// Starts fleetsink in `mode` on a fresh database; `configure` adjusts the test config
/// first. In external mode a Mosquitto of its own is started, and this returns once
/// fleetsink is subscribed to it.
pub async fn spawn_app(mode: MqttMode, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on(&env("FLEETSINK_TEST_DATABASE_URL"), mode, configure).await
}

/// External mode with `broker` (its URL is set before `configure` runs).
pub async fn spawn_app_with_broker(
    broker: Mosquitto,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let server = env("FLEETSINK_TEST_DATABASE_URL");
    build_app(&server, MqttMode::External, Some(broker), configure).await
}

/// Like [`spawn_app`], with the database on `server_url`'s server (e.g. a [`PgCluster`]).
pub async fn spawn_app_on(
    server_url: &str,
    mode: MqttMode,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let broker = match mode {
        MqttMode::External => Some(Mosquitto::start().await),
        MqttMode::Embedded => None,
    };
    build_app(server_url, mode, broker, configure).await
}

async fn build_app(
    server_url: &str,
    mode: MqttMode,
    broker: Option<Mosquitto>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let db_url = fresh_database_on(server_url).await;
    let mut cfg = test_config(&db_url, mode);
    if let Some(b) = &broker {
        cfg.mqtt.external.url = b.url().into();
    }
    configure(&mut cfg);
    let mut t = TestApp {
        app: None,
        pool: PgPool::connect(&db_url).await.unwrap(),
        cfg,
        db_url,
        mqtt: loopback(0),
        http: loopback(0),
        broker,
        client: reqwest::Client::new(),
    };
    t.start().await;
    t
}

/// Starts fleetsink on a fresh database expecting start-up to fail; returns the error
/// as the operator would read it (or `Ok(())` if it started, then stopped).
pub async fn try_spawn_app(
    mode: MqttMode,
    configure: impl FnOnce(&mut Config),
) -> Result<(), String> {
    let db_url = fresh_database_on(&env("FLEETSINK_TEST_DATABASE_URL")).await;
    let mut cfg = test_config(&db_url, mode);
    configure(&mut cfg);
    let shutdown = CancellationToken::new();
    let app = tokio::time::timeout(Duration::from_secs(60), App::start(cfg, shutdown.clone()))
        .await
        .expect("fleetsink neither started nor failed in 60 s")
        .map_err(|e| format!("{e:#}"))?;
    shutdown.cancel();
    app.stopped().await;
    Ok(())
}

impl TestApp {
    /// Starts fleetsink (again) with `self.cfg`; the database and broker stay.
    pub async fn start(&mut self) {
        assert!(self.app.is_none(), "fleetsink is already running");
        let shutdown = CancellationToken::new();
        let app = tokio::time::timeout(
            Duration::from_secs(60),
            App::start(self.cfg.clone(), shutdown.clone()),
        )
        .await
        .expect("fleetsink did not start in 60 s")
        .unwrap();
        self.http = app.http_addr();
        self.mqtt = match (&self.broker, app.mqtt_addr()) {
            (Some(b), _) => b.addr,
            (None, Some(addr)) => addr,
            (None, None) => panic!("embedded mode without a broker address"),
        };
        if self.broker.is_some() {
            let health = app.health();
            wait_until(
                Duration::from_secs(15),
                "fleetsink connected to Mosquitto",
                || {
                    let h = health.clone();
                    async move { h.readiness().broker_connected }
                },
            )
            .await;
            // A moment for the SUBSCRIBE to be granted.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.app = Some((app, shutdown));
    }

    /// Stops fleetsink gracefully (the database and broker stay).
    pub async fn stop(&mut self) {
        let (app, shutdown) = self.app.take().expect("fleetsink is not running");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), app.stopped())
            .await
            .expect("fleetsink did not stop in 30 s");
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub fn app(&self) -> &App {
        &self.app.as_ref().expect("fleetsink is not running").0
    }

    /// An MQTT client connected where robots publish, with client id `id`.
    pub async fn robot(&self, id: &str) -> Client {
        client(self.mqtt, id).await
    }

    pub async fn count(&self, query: &str) -> i64 {
        count(&self.pool, query).await
    }

    /// Polls `query` (a single bigint) until it returns at least `want` or 30 s pass;
    /// returns the last value.
    pub async fn wait_count(&self, query: &str, want: i64) -> i64 {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let n = self.count(query).await;
            if n >= want || Instant::now() > until {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` on the admin port: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.client, self.http, path).await
    }

    /// `method path` with a JSON body (and a bearer token when given): status and JSON.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .request(method, format!("http://{}{path}", self.http));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST path` with a JSON body (and a bearer token when given): status and JSON.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client
            .post(format!("http://{}{path}", self.http))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }
}

pub async fn count(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_string()))
        .fetch_one(pool)
        .await
        .unwrap()
}

pub async fn http_get(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// A Mosquitto of our own on a free loopback port, killed on drop.
pub struct Mosquitto {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Anonymous access, window 1000, no queue limit.
    pub async fn start() -> Mosquitto {
        Self::start_with("127.0.0.1", |_| "allow_anonymous true\n".into()).await
    }

    /// Listening on `host`; `prepare` may write files into the broker's directory (e.g.
    /// a password file) and returns extra config lines.
    pub async fn start_with(
        host: &'static str,
        prepare: impl FnOnce(&std::path::Path) -> String,
    ) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let extra = prepare(dir.path());
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} {host}\npersistence false\n\
                 max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n\
                 queue_qos0_messages true\n{extra}"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(env("FLEETSINK_TEST_MOSQUITTO"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::new(host.parse().unwrap(), port);
        wait_for_port(addr).await;
        Mosquitto {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of our own, for tests that stop and restart the server.
pub struct PgCluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

/// `tool` of the PostgreSQL installation, run as the non-root PostgreSQL user.
fn pg_command(tool: &str) -> std::process::Command {
    let bin = PathBuf::from(env("FLEETSINK_TEST_PG_BIN")).join(tool);
    let user = env("FLEETSINK_TEST_PG_USER");
    let me = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let mut c = if String::from_utf8_lossy(&me.stdout).trim() == user {
        std::process::Command::new(bin)
    } else {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", &user, "--"]).arg(bin);
        c
    };
    c.stdout(Stdio::null());
    c
}

impl PgCluster {
    fn pg(&self, tool: &str) -> tokio::process::Command {
        tokio::process::Command::from(pg_command(tool))
    }

    pub async fn start() -> PgCluster {
        let dir = tempfile::tempdir().unwrap();
        let user = env("FLEETSINK_TEST_PG_USER");
        let _ = std::process::Command::new("chown")
            .arg(&user)
            .arg(dir.path())
            .status();
        let c = PgCluster {
            dir,
            port: free_port(),
        };
        let data = c.dir.path().join("data");
        let ok = c
            .pg("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "initdb failed");
        c.resume().await;
        c
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub async fn pause(&self) {
        let ok = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "pg_ctl stop failed");
    }

    pub async fn resume(&self) {
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
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "pg_ctl start failed");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stderr(Stdio::null())
            .status();
    }
}

/// fleetsink as a child process (for SIGKILL and SIGTERM tests), killed on drop. Its
/// log output goes to `log`.
pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start(envs: &[(&str, String)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fleetsink.log");
        let out = std::fs::File::create(&log).unwrap();
        let http = loopback(free_port());
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fleetsink"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FLEETSINK__HTTP__LISTEN", http.to_string())
            .env("RUST_LOG", "warn")
            .env("FLEETSINK__INGEST__MAX_CLOCK_SKEW", "3650days")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        wait_for_port(http).await;
        Daemon {
            child,
            http,
            log,
            _dir: dir,
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit (off the runtime's worker threads).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid} failed");
        tokio::task::spawn_blocking(move || self.child.wait().unwrap())
            .await
            .unwrap()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

    /// Publishes every captured TonyPi message at QoS 1, each acknowledged; returns how many.
    pub async fn publish_fixtures(&mut self) -> usize {
        let fx = fleetsink::testing::fixtures();
        for (topic, payload) in &fx {
            self.publish_acked(topic, payload.to_vec()).await;
        }
        fx.len()
    }
}
