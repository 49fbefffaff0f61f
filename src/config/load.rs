//! Layered loading: built-in defaults, the TOML file, `FLEETSINK__SECTION__KEY`
//! environment variables, and `DATABASE_URL` as a fallback for `database.url`.
//!
//! Every struct denies unknown fields, so a typo in the file or in an environment
//! variable is an error that names the key instead of a silently ignored setting.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError, DEFAULT_CONFIG_PATH, ENV_PREFIX, SensitiveUrl};

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
            cfg.database.url = SensitiveUrl::new(url.as_str());
        }
        cfg.source_file = file;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The effective configuration as TOML with secrets masked, for `check-config`.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::MqttMode;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(cfg.mqtt.mode, MqttMode::Embedded);
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
        assert_eq!(cfg.database.url.expose(), "postgres://file/db");
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
        assert_eq!(cfg.database.url.expose(), "postgres://fallback/db");
        let cfg = Config::load_from(
            None,
            env(&[
                ("DATABASE_URL", "postgres://fallback/db"),
                ("FLEETSINK__DATABASE__URL", "postgres://explicit/db"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.database.url.expose(), "postgres://explicit/db");
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
    fn secrets_never_print() {
        let cfg = Config::load_from(
            None,
            env(&[
                ("FLEETSINK__DATABASE__URL", "postgres://u:dbpw@h/d"),
                ("FLEETSINK__MQTT__MODE", "external"),
                (
                    "FLEETSINK__MQTT__EXTERNAL__URL",
                    "mqtt://robot:mqttpw@broker",
                ),
                ("FLEETSINK__HTTP__ADMIN_TOKEN", "tok3n"),
            ]),
        )
        .unwrap();
        for text in [
            cfg.to_masked_toml(),
            format!("{cfg:?}"),
            format!("{cfg:#?}"),
        ] {
            for secret in ["dbpw", "mqttpw", "tok3n"] {
                assert!(!text.contains(secret), "{secret} leaked: {text}");
            }
        }
        assert!(cfg.to_masked_toml().contains("postgres://u:********@h/d"));
        let cfg = Config::load_from(
            None,
            env(&[
                ("FLEETSINK__MQTT__MODE", "external"),
                ("FLEETSINK__MQTT__EXTERNAL__USERNAME", "robot"),
                ("FLEETSINK__MQTT__EXTERNAL__PASSWORD", "keypw"),
            ]),
        )
        .unwrap();
        assert!(!cfg.to_masked_toml().contains("keypw"));
        assert!(!format!("{cfg:?}").contains("keypw"));
    }
}
