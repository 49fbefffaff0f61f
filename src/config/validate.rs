//! Checks between keys, run once at start-up; each problem says which key to change.
//! All problems are reported together, so one edit fixes them all.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::{Config, ConfigError, ExternalConfig, MqttMode};
use crate::mqtt::{BrokerUrl, BrokerUrlError};

impl Config {
    /// Cross-field checks; each message says which key to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.batch.max_rows == 0 || self.batch.max_messages == 0 {
            problems.push("batch.max_rows and batch.max_messages must be at least 1".to_string());
        }
        if self.sink.workers == 0 || self.sink.workers > 64 {
            problems.push(format!(
                "sink.workers ({}) must be between 1 and 64",
                self.sink.workers
            ));
        }
        if (self.database.max_connections as usize) < self.sink.workers + 2 {
            problems.push(format!(
                "database.max_connections ({}) must be at least sink.workers + 2 ({}): one connection per sink worker, two for maintenance, the monitor and HTTP",
                self.database.max_connections,
                self.sink.workers + 2
            ));
        }
        let db = &self.database;
        if db.connect_timeout < Duration::from_millis(100)
            || db.statement_timeout < Duration::from_millis(100)
        {
            problems.push(
                "database.connect_timeout and database.statement_timeout must be at least 100ms"
                    .to_string(),
            );
        }
        if db.commit_timeout <= db.statement_timeout {
            problems.push(format!(
                "database.commit_timeout ({:?}) must exceed database.statement_timeout ({:?}), so a slow statement ends with PostgreSQL's own error before the connection is given up",
                db.commit_timeout, db.statement_timeout
            ));
        }
        let stale = self.http.page_max_stale;
        if !stale.is_zero()
            && (stale < std::time::Duration::from_secs(2)
                || stale > std::time::Duration::from_secs(300))
        {
            problems.push(format!(
                "http.page_max_stale must be between 2s and 5m, or 0s to compute every request (is {stale:?})"
            ));
        }
        if self.http.page_snapshot_robots == 0 {
            problems.push(
                "http.page_snapshot_robots must be at least 1 (http.page_max_stale = \"0s\" turns snapshots off)"
                    .to_string(),
            );
        }
        if self.http.logs_export_max_rows == 0 {
            problems.push("http.logs_export_max_rows must be at least 1".to_string());
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
        if self.mqtt.mode == MqttMode::Embedded {
            let tls = &self.mqtt.embedded.tls;
            match tls.listen {
                Some(_) if tls.cert.is_none() || tls.key.is_none() => problems.push(
                    "mqtt.embedded.tls.listen is set: also set mqtt.embedded.tls.cert and mqtt.embedded.tls.key (PEM files)".into(),
                ),
                None if tls.only || tls.client_ca.is_some() || tls.cert.is_some() => problems.push(
                    "mqtt.embedded.tls.cert/key/client_ca/only need mqtt.embedded.tls.listen (e.g. \"0.0.0.0:8883\")".into(),
                ),
                _ => {}
            }
        }
        if self.mqtt.mode == MqttMode::External {
            let ext = &self.mqtt.external;
            let tls = &ext.tls;
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                problems.push(
                    "mqtt.external.tls.client_cert and client_key go together: set both or neither"
                        .into(),
                );
            }
            let tls_files = tls.ca_file.is_some() || tls.client_cert.is_some();
            if tls_files && ext.broker().is_ok_and(|u| !u.tls) {
                problems.push("mqtt.external.tls is set but mqtt.external.url is mqtt://: use mqtts://host:8883".into());
            }
            if let Err(e) = ext.broker() {
                problems.push(e.to_string());
            }
            if let Some(g) = &ext.share_group
                && (g.is_empty() || g.contains(['/', '+', '#']))
            {
                problems.push(format!(
                    "mqtt.external.share_group {g:?} must be a non-empty name without '/', '+' or '#'"
                ));
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
        let flush = self.alerts.flush_interval;
        if flush < std::time::Duration::from_millis(100)
            || flush > std::time::Duration::from_secs(600)
        {
            problems.push(format!(
                "alerts.flush_interval must be between 100ms and 10m (is {flush:?})"
            ));
        }
        if self.robots.offline_after < std::time::Duration::from_secs(1) {
            problems.push("robots.offline_after must be at least 1s".into());
        }
        if self.http.admin_token.is_none()
            && self.console.jwt_secret.is_none()
            && !self.http.listen.ip().is_loopback()
            && !self.http.allow_unauthenticated
        {
            problems.push(format!(
                "http.listen is {} but neither http.admin_token nor console.jwt_secret is set: anyone who can reach the port could command robots; set one of them, listen on loopback, or set http.allow_unauthenticated = true",
                self.http.listen
            ));
        }
        for origin in &self.http.cors_origins {
            let scheme_ok = origin.starts_with("http://") || origin.starts_with("https://");
            let host_part = origin.split_once("://").map_or("", |(_, h)| h);
            if !scheme_ok
                || host_part.is_empty()
                || host_part.contains(['/', ' ', '?', '#'])
                || !origin.is_ascii()
            {
                problems.push(format!(
                    "http.cors_origins: {origin:?} is not an origin like \"http://localhost:3000\""
                ));
            }
        }
        let commands = &self.commands;
        if commands.confirm_within.is_zero() || commands.confirm_within >= commands.expire_after {
            problems.push(format!(
                "commands.confirm_within ({:?}) must be positive and shorter than commands.expire_after ({:?})",
                commands.confirm_within, commands.expire_after
            ));
        }
        for (key, template, per_robot) in commands.topics().templates() {
            let placeholder = template.contains("{robot_id}");
            let placeholders = template.matches("{robot_id}").count();
            if template.is_empty() || template.contains(['+', '#', '\0']) {
                problems.push(format!(
                    "commands.topics.{key} {template:?} must be a topic name without '+' or '#'"
                ));
            } else if per_robot != placeholder || placeholders > 1 {
                problems.push(format!(
                    "commands.topics.{key} {template:?} must {} \"{{robot_id}}\"",
                    if per_robot {
                        "contain exactly one"
                    } else {
                        "not contain"
                    }
                ));
            }
        }
        if let Some(secret) = &self.console.jwt_secret
            && secret.expose_secret().len() < 32
        {
            problems.push(
                "console.jwt_secret must be at least 32 characters (e.g. `openssl rand -hex 32`)"
                    .into(),
            );
        }
        if self.console.token_ttl < std::time::Duration::from_secs(60) {
            problems.push("console.token_ttl must be at least 1m".into());
        }
        if self.console.login_failures_per_minute == 0 {
            problems.push("console.login_failures_per_minute must be at least 1".into());
        }
        if self.shutdown.drain_timeout.is_zero() {
            problems.push("shutdown.drain_timeout must be positive".into());
        }
        for (i, r) in self.routes.iter().enumerate() {
            if let Err(e) = r.check() {
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
}

/// Why `mqtt.external` does not name a usable broker; each message names the keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("mqtt.external.url: {0}")]
    Url(#[from] BrokerUrlError),
    #[error(
        "credentials are set twice: in mqtt.external.url and in mqtt.external.username/password; keep one"
    )]
    CredentialsTwice,
    #[error("mqtt.external.password is set without mqtt.external.username")]
    PasswordWithoutUser,
    #[error("mqtt.external.url has a password but no user name")]
    UrlPasswordWithoutUser,
}

impl ExternalConfig {
    /// The broker to connect to, with its credentials taken from the URL or from
    /// `username`/`password` — not both, so there is never a question which one wins.
    pub fn broker(&self) -> Result<BrokerUrl, BrokerConfigError> {
        let mut url = BrokerUrl::parse(self.url.expose())?;
        let in_url = url.username.is_some() || url.password.is_some();
        let in_keys = self.username.is_some() || self.password.is_some();
        if in_url && in_keys {
            return Err(BrokerConfigError::CredentialsTwice);
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(BrokerConfigError::PasswordWithoutUser);
        }
        if url.password.is_some() && url.username.is_none() {
            return Err(BrokerConfigError::UrlPasswordWithoutUser);
        }
        if in_keys {
            url.username.clone_from(&self.username);
            url.password.clone_from(&self.password);
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::load::tests::{env, file};

    fn external(extra: &[(&str, &str)]) -> Result<Config, String> {
        let mut vars = vec![("FLEETSINK__MQTT__MODE", "external")];
        vars.extend_from_slice(extra);
        Config::load_from(None, env(&vars)).map_err(|e| e.to_string())
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

        let err = external(&[("FLEETSINK__MQTT__EXTERNAL__URL", "http://broker")]).unwrap_err();
        assert!(err.contains("mqtt.external.url"), "{err}");

        let f =
            file("[[routes]]\nfilter = \"a/#/b\"\nkind = \"telemetry\"\nrobot_id = \"topic:1\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0]"), "{err}");
    }

    #[test]
    fn tls_settings_that_cannot_work_are_named() {
        let err = Config::load_from(
            None,
            env(&[("FLEETSINK__MQTT__EMBEDDED__TLS__LISTEN", "127.0.0.1:8883")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mqtt.embedded.tls.cert"), "{err}");
        let err = Config::load_from(
            None,
            env(&[("FLEETSINK__MQTT__EMBEDDED__TLS__ONLY", "true")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("mqtt.embedded.tls.listen"), "{err}");
        let err = external(&[("FLEETSINK__MQTT__EXTERNAL__TLS__CA_FILE", "/ca.pem")]).unwrap_err();
        assert!(err.contains("mqtts://"), "{err}");
        let err = external(&[
            ("FLEETSINK__MQTT__EXTERNAL__URL", "mqtts://broker"),
            ("FLEETSINK__MQTT__EXTERNAL__TLS__CLIENT_CERT", "/c.pem"),
        ])
        .unwrap_err();
        assert!(err.contains("client_key"), "{err}");
    }

    #[test]
    fn an_open_api_needs_a_token_or_an_explicit_yes() {
        let err = Config::load_from(None, env(&[("FLEETSINK__HTTP__LISTEN", "0.0.0.0:8080")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.admin_token"), "{err}");
        for extra in [
            ("FLEETSINK__HTTP__ADMIN_TOKEN", "t"),
            ("FLEETSINK__HTTP__ALLOW_UNAUTHENTICATED", "true"),
        ] {
            Config::load_from(
                None,
                env(&[("FLEETSINK__HTTP__LISTEN", "0.0.0.0:8080"), extra]),
            )
            .unwrap();
        }
        let f = file("[http]\ncors_origins = [\"localhost\"]\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cors_origins"), "{err}");
    }

    #[test]
    fn broker_credentials_from_the_url() {
        let cfg = external(&[(
            "FLEETSINK__MQTT__EXTERNAL__URL",
            "mqtt://fleet:pa%3Ass@broker.example:1884",
        )])
        .unwrap();
        let b = cfg.mqtt.external.broker().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.example", 1884));
        assert_eq!(b.username.as_deref(), Some("fleet"));
        assert_eq!(b.password.unwrap().expose_secret(), "pa:ss");
    }

    #[test]
    fn broker_credentials_from_the_keys() {
        let cfg = external(&[
            ("FLEETSINK__MQTT__EXTERNAL__URL", "mqtt://[::1]"),
            ("FLEETSINK__MQTT__EXTERNAL__USERNAME", "fleet"),
            ("FLEETSINK__MQTT__EXTERNAL__PASSWORD", "pw"),
        ])
        .unwrap();
        let b = cfg.mqtt.external.broker().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 1883));
        assert_eq!(b.username.as_deref(), Some("fleet"));
        assert_eq!(b.password.unwrap().expose_secret(), "pw");
    }

    #[test]
    fn broker_credentials_twice_is_an_error_naming_both() {
        let err = external(&[
            ("FLEETSINK__MQTT__EXTERNAL__URL", "mqtt://a:b@broker"),
            ("FLEETSINK__MQTT__EXTERNAL__USERNAME", "c"),
        ])
        .unwrap_err();
        assert!(
            err.contains("mqtt.external.url") && err.contains("mqtt.external.username"),
            "{err}"
        );
        assert!(
            !err.contains(":b@"),
            "the error must not echo the password: {err}"
        );
        let err = external(&[("FLEETSINK__MQTT__EXTERNAL__PASSWORD", "x")]).unwrap_err();
        assert!(err.contains("without mqtt.external.username"), "{err}");
    }
}
