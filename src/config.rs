//! Typed configuration, layered loading and start-up validation.
//!
//! Layers, lowest first: built-in defaults, the TOML file, `FLEETSINK__SECTION__KEY`
//! environment variables, and `DATABASE_URL` as a fallback for `database.url`.
//! Every struct denies unknown fields, so a typo in the file or in an environment
//! variable is an error that names the key instead of a silently ignored setting.
//! `validate` checks the relations between fields and says what to change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub retention: RetentionConfig,
    pub http: HttpConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    /// Extra routes, matched before the built-in defaults (see `routes_default`).
    pub routes: Vec<RouteConfig>,
    /// When false, only `routes` are used: the TonyPi and generic defaults are off.
    pub default_routes: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:pass@host:port/db`; falls back to `DATABASE_URL`.
    pub url: String,
    /// Pool size. The sink writes on one connection; the rest serve maintenance and HTTP.
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest pause between retries while PostgreSQL is unreachable.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 6,
            connect_timeout: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(5),
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
    pub allow_anonymous: bool,
    /// Largest MQTT packet accepted; bigger packets close the connection. Keep it
    /// above `ingest.max_payload_bytes` so oversized payloads are recorded, not refused.
    pub max_packet_size: u32,
    /// Outbound QoS 1/2 window per subscriber (downlink to robots, dashboards).
    pub max_inflight: u16,
    /// Messages queued per offline persistent session before rmqtt drops them.
    pub max_mqueue_len: usize,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            ack: AckMode::AfterCommit,
            allow_anonymous: true,
            max_packet_size: 4 * 1024 * 1024,
            max_inflight: 64,
            max_mqueue_len: 10_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExternalConfig {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Fixed, so the broker keeps fleetsink's persistent session across restarts.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
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
}

impl Default for ExternalConfig {
    fn default() -> Self {
        Self {
            url: "mqtt://127.0.0.1:1883".into(),
            client_id: "fleetsink".into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            reconnect_backoff_max: Duration::from_secs(10),
            request_channel_capacity: 20_000,
            broker_inflight: 5000,
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
    /// A batch holds at most this many rows…
    pub max_rows: usize,
    /// …and this many messages. There is no age setting: a batch is handed to the sink
    /// the moment the sink is free (group commit), so its age is bounded by one commit.
    pub max_messages: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_rows: 20_000,
            max_messages: 5000,
        }
    }
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
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            premake_days: 3,
            metrics_days: 30,
            logs_days: 30,
            errors_days: 14,
            interval: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token required under `/api/` when set.
    pub admin_token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
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

/// What a route's messages mean (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    Status,
    Sensor,
    Telemetry,
    Job,
    Log,
    Vision,
    Scan,
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// MQTT topic filter, wildcards allowed.
    pub filter: String,
    pub kind: RouteKind,
    /// `"topic:N"` (0-based topic level) or `"payload"` (the `robot_id` field).
    pub robot_id: String,
    /// Prepended to metric names: `battery` gives `battery.voltage`.
    #[serde(default)]
    pub metric_prefix: Option<String>,
    /// Log category for `log`/`response` routes (defaults: `robot_<source>`, `command`).
    #[serde(default)]
    pub category: Option<String>,
}

impl Config {
    /// Loads file (if any) and environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Like [`Config::load`] with an explicit environment, so tests need not touch the
    /// process environment.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                default.exists().then_some(default)
            }
        };
        if let Some(file) = &file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist; pass an existing file to --config or omit it",
                    file.display()
                )));
            }
            builder = builder
                .add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let overrides: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // No list parsing and no type guessing: values stay strings ("00123" stays
        // "00123") and serde converts them to the field's type.
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .source(Some(overrides)),
        );
        let raw = builder.build().map_err(|source| match &file {
            Some(path) => ConfigError::File {
                path: path.clone(),
                source,
            },
            None => ConfigError::Load(source),
        })?;
        let mut cfg: Config = raw.try_deserialize()?;
        if cfg.database.url.is_empty()
            && let Some((_, url)) = env.iter().find(|(k, _)| k == "DATABASE_URL")
        {
            cfg.database.url = url.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The routes in match order: configured ones first, then the defaults.
    pub fn effective_routes(&self) -> Vec<RouteConfig> {
        let mut routes = self.routes.clone();
        if self.default_routes {
            routes.extend(routes_default());
        }
        routes
    }

    /// Cross-field checks; each message says which key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.batch.max_rows == 0 || self.batch.max_messages == 0 {
            problems.push("batch.max_rows and batch.max_messages must be at least 1".to_string());
        }
        if self.ingest.queue_capacity < self.batch.max_messages {
            problems.push(format!(
                "ingest.queue_capacity ({}) must be at least batch.max_messages ({}), or batches can never fill",
                self.ingest.queue_capacity, self.batch.max_messages
            ));
        }
        if self.mqtt.mode == MqttMode::Embedded
            && (self.mqtt.embedded.max_packet_size as usize) <= self.ingest.max_payload_bytes
        {
            problems.push(format!(
                "mqtt.embedded.max_packet_size ({}) must exceed ingest.max_payload_bytes ({}) so oversized payloads are recorded in ingest_errors instead of dropping the connection",
                self.mqtt.embedded.max_packet_size, self.ingest.max_payload_bytes
            ));
        }
        if self.mqtt.mode == MqttMode::External {
            let ext = &self.mqtt.external;
            if let Err(e) = crate::pipeline::source::BrokerUrl::parse(&ext.url) {
                problems.push(format!("mqtt.external.url: {e}"));
            }
            if ext.client_id.is_empty() {
                problems.push("mqtt.external.client_id must not be empty: the persistent session is keyed by it".into());
            }
            if ext.request_channel_capacity <= ext.broker_inflight {
                problems.push(format!(
                    "mqtt.external.request_channel_capacity ({}) must exceed mqtt.external.broker_inflight ({}) so acks never wait for room",
                    ext.request_channel_capacity, ext.broker_inflight
                ));
            }
            if ext.password.is_some() && ext.username.is_none() {
                problems
                    .push("mqtt.external.password is set without mqtt.external.username".into());
            }
        }
        if self.ingest.naive_timezone.parse::<chrono_tz::Tz>().is_err() {
            problems.push(format!(
                "ingest.naive_timezone {:?} is not an IANA zone name (e.g. \"UTC\", \"Europe/Berlin\")",
                self.ingest.naive_timezone
            ));
        }
        if self.ingest.max_payload_bytes == 0 {
            problems.push("ingest.max_payload_bytes must be at least 1".into());
        }
        if self.retention.metrics_days == 0
            || self.retention.logs_days == 0
            || self.retention.errors_days == 0
        {
            problems.push(
                "retention.*_days must be at least 1 (today's partition is never dropped)".into(),
            );
        }
        if self.shutdown.drain_timeout.is_zero() {
            problems.push("shutdown.drain_timeout must be positive".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Err(e) = crate::pipeline::route::Route::compile(r) {
                problems.push(format!("routes[{i}] ({}): {e}", r.filter));
            }
        }
        if self.effective_routes().is_empty() {
            problems.push("no routes: set default_routes = true or add [[routes]]".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }

    /// The effective configuration as TOML with secrets masked, for `check-config`.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        masked.database.url = mask_url_password(&masked.database.url);
        if masked.mqtt.external.password.is_some() {
            masked.mqtt.external.password = Some("********".into());
        }
        if masked.http.admin_token.is_some() {
            masked.http.admin_token = Some("********".into());
        }
        masked.mqtt.external.url = mask_url_password(&masked.mqtt.external.url);
        toml::to_string_pretty(&masked).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: DatabaseConfig::default(),
            mqtt: MqttConfig::default(),
            ingest: IngestConfig::default(),
            batch: BatchConfig::default(),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            routes: Vec::new(),
            default_routes: true,
        }
    }
}

/// Replaces the password of `scheme://user:password@host` with asterisks.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:********{}",
            &url[..scheme_end + 3],
            &creds[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

fn route(filter: &str, kind: RouteKind, robot_id: &str) -> RouteConfig {
    RouteConfig {
        filter: filter.into(),
        kind,
        robot_id: robot_id.into(),
        metric_prefix: None,
        category: None,
    }
}

/// The TonyPi routes (SPEC §3.1) and the generic device routes (SPEC §3.3).
pub fn routes_default() -> Vec<RouteConfig> {
    use RouteKind::*;
    vec![
        route("tonypi/status/+", Status, "topic:2"),
        route("tonypi/sensors/+", Sensor, "topic:2"),
        route("tonypi/servos/+", Telemetry, "topic:2"),
        RouteConfig {
            metric_prefix: Some("battery".into()),
            ..route("tonypi/battery", Telemetry, "payload")
        },
        RouteConfig {
            metric_prefix: Some("location".into()),
            ..route("tonypi/location", Telemetry, "payload")
        },
        route("tonypi/job/+", Job, "topic:2"),
        route("tonypi/logs/+", Log, "topic:2"),
        RouteConfig {
            metric_prefix: Some("vision".into()),
            ..route("tonypi/vision/+", Vision, "topic:2")
        },
        route("tonypi/scan/+", Scan, "topic:2"),
        RouteConfig {
            category: Some("command".into()),
            ..route("tonypi/commands/response", Response, "payload")
        },
        RouteConfig {
            category: Some("emergency".into()),
            ..route("tonypi/emergency_stop/response", Response, "payload")
        },
        route("devices/+/telemetry", Telemetry, "topic:1"),
        route("devices/+/status", Status, "topic:1"),
        route("devices/+/logs", Log, "topic:1"),
        route("devices/+/jobs", Job, "topic:1"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(cfg.mqtt.mode, MqttMode::Embedded);
        assert_eq!(cfg.mqtt.embedded.ack, AckMode::AfterCommit);
        assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.retention.premake_days, 3);
        assert!(cfg.effective_routes().len() >= 15);
    }

    #[test]
    fn env_overrides_file() {
        let f = file(
            "[database]\nurl = \"postgres://file/db\"\n[mqtt]\nmode = \"external\"\n[mqtt.external]\nclient_id = \"from-file\"\n",
        );
        let cfg = Config::load_from(
            Some(f.path()),
            env(&[
                ("FLEETSINK__MQTT__EXTERNAL__CLIENT_ID", "00123"),
                ("FLEETSINK__BATCH__MAX_ROWS", "777"),
                ("FLEETSINK__INGEST__MAX_CLOCK_SKEW", "2h"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://file/db");
        assert_eq!(cfg.mqtt.mode, MqttMode::External);
        // A string that looks like a number keeps its leading zeros.
        assert_eq!(cfg.mqtt.external.client_id, "00123");
        assert_eq!(cfg.batch.max_rows, 777);
        assert_eq!(cfg.ingest.max_clock_skew, Duration::from_secs(7200));
    }

    #[test]
    fn database_url_fallback_only_when_unset() {
        let cfg =
            Config::load_from(None, env(&[("DATABASE_URL", "postgres://fallback/db")])).unwrap();
        assert_eq!(cfg.database.url, "postgres://fallback/db");
        let cfg = Config::load_from(
            None,
            env(&[
                ("DATABASE_URL", "postgres://fallback/db"),
                ("FLEETSINK__DATABASE__URL", "postgres://explicit/db"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://explicit/db");
    }

    #[test]
    fn unknown_keys_are_named() {
        let f = file("[database]\nurll = \"x\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
        let err = Config::load_from(None, env(&[("FLEETSINK__BATCH__MAX_ROWZ", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_rowz"), "{err}");
        let f = file("[nonsense]\nx = 1\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonsense"), "{err}");
    }

    #[test]
    fn validation_says_what_to_change() {
        let err = Config::load_from(
            None,
            env(&[
                ("FLEETSINK__INGEST__QUEUE_CAPACITY", "10"),
                ("FLEETSINK__INGEST__NAIVE_TIMEZONE", "Mars/Olympus"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ingest.queue_capacity"), "{err}");
        assert!(err.contains("Mars/Olympus"), "{err}");

        let err = Config::load_from(
            None,
            env(&[
                ("FLEETSINK__MQTT__MODE", "external"),
                ("FLEETSINK__MQTT__EXTERNAL__URL", "http://broker"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mqtt.external.url"), "{err}");

        let f =
            file("[[routes]]\nfilter = \"a/#/b\"\nkind = \"telemetry\"\nrobot_id = \"topic:1\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0]"), "{err}");
    }

    #[test]
    fn example_file_documents_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fleetsink.example.toml");
        let cfg = Config::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(
            toml::to_string(&cfg).unwrap(),
            toml::to_string(&Config::default()).unwrap()
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load_from(Some(Path::new("/nonexistent/fleetsink.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn masking_hides_secrets() {
        assert_eq!(
            mask_url_password("postgres://fleet:s3cret@db:5432/fleet"),
            "postgres://fleet:********@db:5432/fleet"
        );
        let mut cfg = Config::default();
        cfg.database.url = "postgres://u:pw@h/d".into();
        cfg.http.admin_token = Some("tok".into());
        let text = cfg.to_masked_toml();
        assert!(!text.contains("pw@") && !text.contains("\"tok\""), "{text}");
    }
}
