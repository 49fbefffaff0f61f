//! Typed configuration: the sections, their keys and defaults.
//!
//! Plain data with no pipeline types. Loading (file, then `FLEETSINK__` environment,
//! then `DATABASE_URL`) is in `load.rs`, the checks between keys in `validate.rs`,
//! secret handling in `secret.rs`, and the routes (with the built-in TonyPi and generic
//! ones) in `routes.rs`. Every key and its default is also documented in
//! `config/fleetsink.example.toml`, which a test keeps equal to these defaults.

mod load;
mod routes;
pub mod secret;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use routes::{RobotIdSource, RouteConfig, RouteError, RouteKind, routes_default};
pub use secret::SensitiveUrl;
pub use validate::BrokerConfigError;

/// Environment prefix: `FLEETSINK__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "FLEETSINK";
/// The file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/fleetsink.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    File {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub mqtt: MqttConfig,
    pub ingest: IngestConfig,
    pub batch: BatchConfig,
    pub sink: SinkConfig,
    pub robots: RobotsConfig,
    pub alerts: AlertsConfig,
    pub commands: CommandsConfig,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
    pub console: ConsoleConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    /// Extra routes, matched before the built-in defaults (see `routes_default`).
    pub routes: Vec<RouteConfig>,
    /// When false, only `routes` are used: the TonyPi and generic defaults are off.
    pub default_routes: bool,
    /// The file this configuration was read from (for the start-up line); not a key.
    #[serde(skip)]
    pub source_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:port/db`; falls back to `DATABASE_URL`.
    pub url: SensitiveUrl,
    /// Pool size: one connection per sink worker while it commits; the rest serve
    /// maintenance, the monitor and HTTP. At least `sink.workers + 2`.
    pub max_connections: u32,
    /// Deadline for getting a connection: opening one (TCP, TLS, start-up) or taking
    /// one from the pool, its liveness check included. Also the readiness probe's and
    /// the release check's deadline.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest pause between retries while PostgreSQL is unreachable.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
    /// Server-side limit on one statement of fleetsink's sessions (`statement_timeout`);
    /// migrations and partition archives run without it.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Client-side deadline on one batch transaction, BEGIN to COMMIT. A batch that
    /// misses it is retried on a fresh connection and the late one is closed, never
    /// reused. Also the server's `idle_in_transaction_session_timeout` and
    /// `tcp_user_timeout`, and how long a sink may hold a batch before readiness says
    /// `pipeline_stalled`.
    #[serde(with = "humantime_serde")]
    pub commit_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SensitiveUrl::default(),
            max_connections: 6,
            connect_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
            commit_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MqttMode {
    Embedded,
    External,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    pub mode: MqttMode,
    pub embedded: EmbeddedConfig,
    pub external: ExternalConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            mode: MqttMode::Embedded,
            embedded: EmbeddedConfig::default(),
            external: ExternalConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckMode {
    /// PUBACK once the message's rows are committed.
    AfterCommit,
    /// PUBACK once the message is in the bounded in-memory queue.
    OnReceipt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    pub listen: SocketAddr,
    pub ack: AckMode,
    /// Without `auth`: whether clients may connect without a username.
    pub allow_anonymous: bool,
    /// Without `auth`: what a client may do. `robot` (the default) binds each client to
    /// the robot its client id names; `unrestricted-insecure` lets any client publish and
    /// subscribe to anything, emergency stops included.
    pub anonymous: AnonymousPolicy,
    /// Check every CONNECT (and its Last Will topic), PUBLISH and SUBSCRIBE against
    /// `mqtt_users` / `mqtt_acls`; clients without a username are refused.
    pub auth: bool,
    /// Largest MQTT packet accepted; bigger packets close the connection. Keep it
    /// above `ingest.max_payload_bytes` so oversized payloads are recorded, not refused.
    pub max_packet_size: u32,
    /// Outbound QoS 1/2 window per subscriber (downlink to robots, dashboards).
    pub max_inflight: u16,
    /// Messages queued per offline persistent session before rmqtt drops them.
    pub max_mqueue_len: usize,
    pub tls: EmbeddedTlsConfig,
}

/// What clients of the embedded broker may do when `mqtt.embedded.auth` is off (nobody
/// is authenticated, so a client is who its client id says it is). With `auth` on the
/// users' rules decide and this is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnonymousPolicy {
    /// Each client acts as the robot named by its client id (TonyPi robots connect with
    /// client id = robot id): it publishes only its own uplink topics, subscribes only to
    /// its own downlink topics and the broadcasts, and never publishes a downlink topic.
    Robot,
    /// Anything goes: any client that reaches the port may command or stop every robot
    /// and read everything. Named so that nobody turns it on by accident.
    UnrestrictedInsecure,
}

/// The embedded broker's TLS listener (`[mqtt.embedded.tls]`), beside or instead of the
/// plain one.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedTlsConfig {
    /// Where to listen for MQTT over TLS (e.g. `0.0.0.0:8883`); unset: no TLS listener.
    pub listen: Option<SocketAddr>,
    /// The server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Serve only TLS: do not open `mqtt.embedded.listen`.
    pub only: bool,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            ack: AckMode::AfterCommit,
            allow_anonymous: true,
            anonymous: AnonymousPolicy::Robot,
            auth: false,
            max_packet_size: 4 * 1024 * 1024,
            max_inflight: 64,
            max_mqueue_len: 10_000,
            tls: EmbeddedTlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// `mqtt://host:1883` or `mqtts://host:8883`, optionally with `user:password@`
    /// (or set `username`/`password` instead; not both).
    pub url: SensitiveUrl,
    /// Fixed, so the broker keeps fleetsink's persistent session across restarts.
    pub client_id: String,
    pub username: Option<String>,
    #[serde(serialize_with = "secret::serialize_masked")]
    pub password: Option<SecretString>,
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest pause between reconnect attempts.
    #[serde(with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// Requests buffered towards the broker (acks, subscriptions). Must exceed the
    /// broker's in-flight window so acks never wait behind a full channel.
    pub request_channel_capacity: usize,
    /// The broker's per-client in-flight window (Mosquitto `max_inflight_messages`).
    /// Used to check that batches can fill; fleetsink cannot set it from here.
    pub broker_inflight: usize,
    /// When set, subscribe with `$share/<group>/<filter>` so several fleetsink
    /// instances (each with its own `client_id`) split the broker's traffic.
    pub share_group: Option<String>,
    pub tls: ExternalTlsConfig,
}

/// TLS towards the broker (`[mqtt.external.tls]`, with an `mqtts://` URL).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalTlsConfig {
    /// Trust only this CA (PEM) for the broker's certificate; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for brokers that require one; with `client_key`.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            url: SensitiveUrl::new("mqtt://127.0.0.1:1883"),
            client_id: "fleetsink".into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            reconnect_backoff_max: Duration::from_secs(10),
            request_channel_capacity: 20_000,
            broker_inflight: 5000,
            share_group: None,
            tls: ExternalTlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// IANA zone for timestamps without an offset (robots send naive local time).
    pub naive_timezone: String,
    /// A payload timestamp further than this from the receive time is replaced by it.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Payloads above this size go to `ingest_errors` with reason `too_large`.
    pub max_payload_bytes: usize,
    /// How many payload bytes `ingest_errors` keeps per message.
    pub error_payload_cap: usize,
    /// Messages waiting between intake and the sink; the backpressure point.
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            naive_timezone: "UTC".into(),
            max_clock_skew: Duration::from_secs(24 * 3600),
            max_payload_bytes: 256 * 1024,
            error_payload_cap: 4096,
            queue_capacity: 20_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// A batch holds at most this many rows (metric, log and robot rows)…
    pub max_rows: usize,
    /// …and this many messages.
    pub max_messages: usize,
    /// How long a batch's first message waits for company before the batch goes to a
    /// free sink worker. `0s`: at once (group commit: a busy pipeline commits whatever
    /// arrived during the previous commit). Longer lingers make fewer, larger
    /// transactions (less PostgreSQL work per message with thousands of robots each
    /// sending one message at a time) at the price of up to this much latency. 20 ms
    /// measured best at 5,000 and 10,000 robots (BENCHMARKS.md, "Performance v3").
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 20_000,
            max_messages: 5000,
            linger: Duration::from_millis(20),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Parallel writers, each with its own batches and transactions. Messages are
    /// sharded by robot id, so one robot's events stay in order. Each worker holds one
    /// database connection while it commits.
    pub workers: usize,
    /// Per-minute rollups of the metrics (`metric_rollups`), written by the workers a
    /// few seconds after each minute: the bucketed query reads them for whole minutes
    /// instead of every row. Off: nothing is rolled up and every query reads the rows.
    pub minute_rollups: bool,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            minute_rollups: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RobotsConfig {
    /// A robot silent for longer than this (by receive time) is marked offline.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
    /// `last_seen` is written when it has moved by at least this much (or with any other
    /// change to the robot's row): a robot reporting every second costs one row update
    /// per interval, not one per batch. `0s` writes it with every batch. Capped at a third
    /// of `offline_after` ([`RobotsConfig::last_seen_interval`]), so a robot that talks
    /// is never taken for silent.
    #[serde(with = "humantime_serde")]
    pub last_seen_every: Duration,
    pub identity: IdentityConfig,
}

impl RobotsConfig {
    /// `last_seen_every`, capped at a third of `offline_after`.
    pub fn last_seen_interval(&self) -> Duration {
        self.last_seen_every.min(self.offline_after / 3)
    }
}

impl Default for RobotsConfig {
    fn default() -> Self {
        Self {
            offline_after: Duration::from_secs(30),
            last_seen_every: Duration::from_secs(5),
            identity: IdentityConfig::default(),
        }
    }
}

/// With `mqtt.embedded.auth`, a payload `robot_id` must equal the publisher's username.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Usernames that may write for any robot (gateways relaying other devices).
    pub gateways: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// A crossing this soon after an alert of the same robot, metric and level was last
    /// triggered re-activates that alert (count + 1) instead of opening another.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// An alert resolves once the value is back past the warning threshold by this
    /// percentage of it (e.g. CPU below 66.5 % for a 70 % threshold at 5).
    pub hysteresis_percent: f64,
    /// An open alert that a reading only re-triggers (count, value, last trigger) is
    /// updated in memory and written this often (and at shutdown); what opens,
    /// escalates or resolves an alert is written in the batch's own transaction.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The built-in thresholds: what applies where no `alert_thresholds` row (the robot's,
    /// else the fleet-wide one) does.
    pub thresholds: ThresholdsConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            dedupe_window: Duration::from_secs(300),
            hysteresis_percent: 5.0,
            flush_interval: Duration::from_secs(5),
            thresholds: ThresholdsConfig::default(),
        }
    }
}

/// The TonyPi backend's defaults. High values are bad except for battery and servo
/// voltage, where the thresholds are lower bounds.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    pub cpu_warning: f64,
    pub cpu_critical: f64,
    pub memory_warning: f64,
    pub memory_critical: f64,
    pub temperature_warning: f64,
    pub temperature_critical: f64,
    pub battery_low: f64,
    pub battery_critical: f64,
    pub servo_temperature_warning: f64,
    pub servo_temperature_critical: f64,
    pub servo_voltage_low: f64,
    pub servo_voltage_critical: f64,
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            cpu_warning: 70.0,
            cpu_critical: 90.0,
            memory_warning: 75.0,
            memory_critical: 90.0,
            temperature_warning: 60.0,
            temperature_critical: 75.0,
            battery_low: 30.0,
            battery_critical: 15.0,
            servo_temperature_warning: 50.0,
            servo_temperature_critical: 70.0,
            servo_voltage_low: 5.5,
            servo_voltage_critical: 5.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandsConfig {
    /// A command without an answer from the robot after this is marked `expired`.
    #[serde(with = "humantime_serde")]
    pub expire_after: Duration,
    /// An emergency stop its robot has not confirmed after this is marked
    /// `unconfirmed` and logged at CRITICAL: the case an operator must notice.
    #[serde(with = "humantime_serde")]
    pub confirm_within: Duration,
    /// Which topics the devices listen on: TonyPi's, or the generic `devices/{id}/…`.
    pub profile: CommandProfile,
    /// Per-kind topic overrides over the profile's (`{robot_id}` is replaced).
    pub topics: CommandTopicOverrides,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            expire_after: Duration::from_secs(60),
            confirm_within: Duration::from_secs(5),
            profile: CommandProfile::Tonypi,
            topics: CommandTopicOverrides::default(),
        }
    }
}

/// The topic defaults for downlink commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandProfile {
    /// `tonypi/commands/{robot_id}`, `tonypi/emergency_stop/{robot_id}`, … as TonyPi
    /// robots subscribe.
    Tonypi,
    /// `devices/{robot_id}/commands`, `devices/{robot_id}/emergency_stop`, …
    Devices,
}

/// Topic templates that replace the profile's, one per command kind; `{robot_id}` is
/// replaced by the robot's id (the broadcast templates have none).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandTopicOverrides {
    pub command: Option<String>,
    pub broadcast: Option<String>,
    pub emergency_stop: Option<String>,
    pub emergency_stop_broadcast: Option<String>,
    pub resume: Option<String>,
    pub config: Option<String>,
    pub items: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Day partitions created ahead of today.
    pub premake_days: u32,
    pub metrics_days: u32,
    pub logs_days: u32,
    pub errors_days: u32,
    /// How often maintenance runs after the one at start-up.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// When set, a partition due for dropping is first exported here (gzip, verified by
    /// row count, fsynced) and dropped only then; `fleetsink partitions restore FILE`
    /// loads one back.
    pub archive_dir: Option<PathBuf>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            premake_days: 3,
            metrics_days: 30,
            logs_days: 30,
            errors_days: 14,
            interval: Duration::from_secs(24 * 3600),
            archive_dir: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token required under `/api/` when set.
    #[serde(serialize_with = "secret::serialize_masked")]
    pub admin_token: Option<SecretString>,
    /// Without a token, the API (which can stop robots) may only listen on loopback;
    /// set this to serve it without a token on another address anyway.
    pub allow_unauthenticated: bool,
    /// Origins allowed to call the API from a browser (the TonyPi UI's, e.g.
    /// `http://localhost:3000`); empty: no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, bytes.
    pub max_body_bytes: usize,
    /// Networks that may call the mosquitto-go-auth endpoints (`/mqtt/user`,
    /// `/mqtt/superuser`, `/mqtt/acl`); others get 403.
    pub auth_allow: Vec<ipnet::IpNet>,
    /// Most rows a log export (`/api/v1/logs/export/*`) writes; a longer one ends with
    /// a marker saying it was cut.
    pub logs_export_max_rows: u64,
    /// The fleet pages (`robot-data/status`, `management/robots`) are answered from a
    /// snapshot once they list this many robots (README, "Scaling").
    pub page_snapshot_robots: usize,
    /// The oldest snapshot of a fleet page answered; `0s` computes every request.
    #[serde(with = "humantime_serde")]
    pub page_max_stale: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            allow_unauthenticated: false,
            cors_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            auth_allow: vec![
                ipnet::IpNet::V4(ipnet::Ipv4Net::new_assert(
                    std::net::Ipv4Addr::new(127, 0, 0, 0),
                    8,
                )),
                ipnet::IpNet::V6(ipnet::Ipv6Net::new_assert(
                    std::net::Ipv6Addr::LOCALHOST,
                    128,
                )),
            ],
            logs_export_max_rows: 1_000_000,
            page_snapshot_robots: 1000,
            page_max_stale: Duration::from_secs(10),
        }
    }
}

/// Sign-in to the operator console (TonyPi's web UI): console users, roles, session
/// tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Signs session tokens (JWT HS256); without it nobody can sign in. At least 32
    /// characters; keep it secret (e.g. `FLEETSINK__CONSOLE__JWT_SECRET`).
    #[serde(serialize_with = "secret::serialize_masked")]
    pub jwt_secret: Option<SecretString>,
    /// How long a session token is valid (TonyPi: 8 hours).
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Failed sign-ins allowed per client address per minute; more are answered 429.
    pub login_failures_per_minute: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            token_ttl: Duration::from_secs(8 * 3600),
            login_failures_per_minute: 5,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Budget for stop intake → flush → drain acks. Keep below systemd's TimeoutStopSec.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `fleetsink=debug,sqlx=warn`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: DatabaseConfig::default(),
            mqtt: MqttConfig::default(),
            ingest: IngestConfig::default(),
            batch: BatchConfig::default(),
            sink: SinkConfig::default(),
            robots: RobotsConfig::default(),
            alerts: AlertsConfig::default(),
            commands: CommandsConfig::default(),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
            console: ConsoleConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            routes: Vec::new(),
            default_routes: true,
            source_file: None,
        }
    }
}

/// The topic template of each command kind, resolved from the profile and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTopics {
    pub command: String,
    pub broadcast: String,
    pub emergency_stop: String,
    pub emergency_stop_broadcast: String,
    pub resume: String,
    pub config: String,
    /// Where robots listen for item lookups (TonyPi's backend answered scans there).
    /// fleetsink publishes nothing on it; the broker's robot policy treats it as a
    /// downlink: a robot may subscribe to its own, never publish to any.
    pub items: String,
}

impl CommandTopics {
    /// The topics TonyPi robots subscribe to (`robot_client/simulator.py`, `on_connect`).
    pub fn tonypi() -> Self {
        Self {
            command: "tonypi/commands/{robot_id}".into(),
            broadcast: "tonypi/commands/broadcast".into(),
            emergency_stop: "tonypi/emergency_stop/{robot_id}".into(),
            emergency_stop_broadcast: "tonypi/emergency_stop/broadcast".into(),
            resume: "tonypi/commands/{robot_id}".into(),
            config: "tonypi/config/{robot_id}".into(),
            items: "tonypi/items/{robot_id}".into(),
        }
    }

    /// The generic device topics.
    pub fn devices() -> Self {
        Self {
            command: "devices/{robot_id}/commands".into(),
            broadcast: "devices/broadcast/commands".into(),
            emergency_stop: "devices/{robot_id}/emergency_stop".into(),
            emergency_stop_broadcast: "devices/broadcast/emergency_stop".into(),
            resume: "devices/{robot_id}/commands".into(),
            config: "devices/{robot_id}/config".into(),
            items: "devices/{robot_id}/items".into(),
        }
    }

    /// Each template with the key that sets it, and whether it names one robot.
    pub fn templates(&self) -> [(&'static str, &str, bool); 7] {
        [
            ("command", &self.command, true),
            ("broadcast", &self.broadcast, false),
            ("emergency_stop", &self.emergency_stop, true),
            (
                "emergency_stop_broadcast",
                &self.emergency_stop_broadcast,
                false,
            ),
            ("resume", &self.resume, true),
            ("config", &self.config, true),
            ("items", &self.items, true),
        ]
    }
}

impl CommandsConfig {
    /// The profile's topics with the configured overrides applied.
    pub fn topics(&self) -> CommandTopics {
        let base = match self.profile {
            CommandProfile::Tonypi => CommandTopics::tonypi(),
            CommandProfile::Devices => CommandTopics::devices(),
        };
        let o = &self.topics;
        let pick = |over: &Option<String>, default: String| over.clone().unwrap_or(default);
        CommandTopics {
            command: pick(&o.command, base.command),
            broadcast: pick(&o.broadcast, base.broadcast),
            emergency_stop: pick(&o.emergency_stop, base.emergency_stop),
            emergency_stop_broadcast: pick(
                &o.emergency_stop_broadcast,
                base.emergency_stop_broadcast,
            ),
            resume: pick(&o.resume, base.resume),
            config: pick(&o.config, base.config),
            items: pick(&o.items, base.items),
        }
    }
}
