//! fleetsink under test. `spawn_app` starts it in-process on a fresh database (and, in
//! external mode, with a Mosquitto of its own), every port 0, and returns once it can
//! take traffic; [`TestApp`] stops, restarts and queries it. [`Daemon`] runs the real
//! binary as a child process, for tests about signals and logs.
//!
//! "Can take traffic" is awaited, not assumed: the admin port and the embedded broker
//! are bound when `App::start` returns; in external mode the test waits until Mosquitto
//! has sent fleetsink its SUBACK, so a robot's first message is not published to nobody.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use fleetsink::app::App;
use fleetsink::config::{AnonymousPolicy, Config, MqttMode};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::{
    Client, Mosquitto, client, count, env, free_port, fresh_database_on, http_get, http_send,
    loopback, unique, wait_count, wait_until,
};

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
    // Most tests publish many robots' traffic through one client; the robot policy,
    // which forbids that, has its own tests (broker_policy.rs) and the daemons use it.
    cfg.mqtt.embedded.anonymous = AnonymousPolicy::UnrestrictedInsecure;
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.shutdown.drain_timeout = Duration::from_secs(10);
    // Re-triggered alerts reach their rows soon after the messages (tests wait for them).
    cfg.alerts.flush_interval = Duration::from_millis(100);
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

/// Like [`spawn_app`], with the database on `server_url`'s server (e.g. a
/// [`PgCluster`](super::PgCluster)).
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
    /// Starts fleetsink (again) with `self.cfg`; the database and broker stay. In
    /// external mode, returns once Mosquitto has granted this start's subscriptions.
    pub async fn start(&mut self) {
        assert!(self.app.is_none(), "fleetsink is already running");
        let client_id = self.cfg.mqtt.external.client_id.clone();
        let subacks_before = self.broker.as_ref().map(|b| b.subacks_sent_to(&client_id));
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
        if let (Some(broker), Some(before)) = (&self.broker, subacks_before) {
            broker.subscribed(&client_id, before).await;
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

    /// The value of `query` (a single bigint) on this app's database.
    pub async fn count(&self, query: &str) -> i64 {
        count(&self.pool, query).await
    }

    /// Polls `query` (a single bigint) until it returns at least `want` or 30 s pass;
    /// returns the last value.
    pub async fn wait_count(&self, query: &str, want: i64) -> i64 {
        wait_count(&self.pool, query, want).await
    }

    /// `GET path` on the admin port: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.client, self.http, path).await
    }

    /// `method path` with a JSON body, if any: status and JSON.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        http_send(&self.client, self.http, method, path, body, None).await
    }

    /// `POST path` with a JSON body (and a bearer token when given): status and JSON.
    pub async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        http_send(
            &self.client,
            self.http,
            reqwest::Method::POST,
            path,
            Some(body),
            token,
        )
        .await
    }
}

/// fleetsink as a child process (for SIGKILL and SIGTERM tests), killed on drop. Its
/// log output goes to `log`.
pub struct Daemon {
    child: Child,
    pub http: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `fleetsink serve` with `envs` on top of a clean environment; returns once
    /// its admin port accepts connections.
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
        let mut child = cmd.spawn().unwrap();
        // Until its admin port answers; a daemon that exits first (e.g. its MQTT port
        // was taken meanwhile) or never answers fails the test with its log.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        while tokio::net::TcpStream::connect(http).await.is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "fleetsink exited ({status}) before listening on {http}:\n{}",
                    log_text()
                );
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "fleetsink did not listen on {http} within 15 s:\n{}",
                    log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Daemon {
            child,
            http,
            log,
            _dir: dir,
        }
    }

    /// Waits until `/readyz` answers 200: connected to its broker and its database.
    #[track_caller]
    pub fn ready(&self) -> impl Future<Output = ()> + '_ {
        let http = reqwest::Client::new();
        let what = format!("fleetsink on {} is ready", self.http);
        wait_until(Duration::from_secs(20), &what, move || {
            let http = http.clone();
            async move { http_get(&http, self.http, "/readyz").await.0 == 200 }
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub async fn terminate(self) -> std::process::ExitStatus {
        self.terminate_and_read_log().await.0
    }

    /// SIGTERM, then wait for the exit (off the runtime's worker threads); returns the
    /// exit status and everything it logged, to its last line.
    pub async fn terminate_and_read_log(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        // The shell's own kill: a minimal Debian has no kill program (procps).
        let ok = tokio::process::Command::new("sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &pid])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid} failed");
        tokio::task::spawn_blocking(move || (self.child.wait().unwrap(), self.log_text()))
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

/// Runs `fleetsink ARGS` against the test's database; `stdin` is piped in. Returns
/// success, stdout and stderr.
pub fn cli(db_url: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    cli_with_env(db_url, args, stdin, &[])
}

/// [`cli`] with `envs` on top of its clean environment (e.g. `USER`, or
/// `FLEETSINK__LOG__LEVEL=info` to see where log lines go).
pub fn cli_with_env(
    db_url: &str,
    args: &[&str],
    stdin: &str,
    envs: &[(&str, &str)],
) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fleetsink"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FLEETSINK__DATABASE__URL", db_url)
        .env("FLEETSINK__LOG__LEVEL", "warn")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
