//! Builds everything from a [`Config`] and runs it until the caller's shutdown signal.
//!
//! [`App::start`] is a list of named steps, in order: database (retried until
//! reachable) and migrations → routes and today's partition → MQTT users and ACLs →
//! the MQTT source with its ack stage (the one place the MQTT mode is decided) →
//! batcher and sink workers → admin HTTP → background tasks. Port 0 anywhere means
//! "pick a free port"; the bound addresses are logged and returned, so tests and
//! scripts can run many instances side by side.
//!
//! Shutdown lives in one place, [`App::stopped`], under `shutdown.drain_timeout`:
//! stop intake → flush the partial batch → commit and release acks → the last PUBACKs
//! → close the MQTT source (disconnect, or kick clients) → stop the background tasks
//! and the admin port. What is not committed by the deadline stays unacknowledged and
//! is redelivered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthStore, Authenticator};
use crate::broker::EmbeddedBroker;
use crate::config::{Config, MqttMode};
use crate::db;
use crate::db::writes::{AlertCache, AlertEdits, Caches, RollupCache};
use crate::health::Health;
use crate::http::{self, HttpState};
use crate::mqtt::Qos;
use crate::pipeline::ack::{AckStage, AckTask};
use crate::pipeline::decode::DecodeSettings;
use crate::pipeline::route::Router;
use crate::pipeline::sink::{self, SinkContext, SinkSettings};
use crate::pipeline::source::{Downlink, ExternalSource, Intake, PublishError};
use crate::pipeline::{Envelope, batch};
use crate::telemetry;

/// A running fleetsink.
pub struct App {
    http_addr: SocketAddr,
    mqtt_addr: Option<SocketAddr>,
    mqtt_tls_addr: Option<SocketAddr>,
    health: Arc<Health>,
    pool: PgPool,
    downlink: Downlink,
    shutdown: CancellationToken,
    pipeline: Pipeline,
    drain_timeout: Duration,
}

/// The stages and tasks the drain stops, in the order it stops them.
struct Pipeline {
    batcher: JoinHandle<()>,
    /// The sink workers.
    sinks: Vec<JoinHandle<()>>,
    acks: AckTask,
    intake: Box<dyn Intake>,
    /// Monitor, maintenance, the auth reloader and the admin HTTP server: stopped last.
    background: Background,
}

/// Tasks that run beside the pipeline and stop after it.
struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// The MQTT source as started, and what the start-up line says about it.
struct Mqtt {
    intake: Box<dyn Intake>,
    mode: &'static str,
    /// Where robots connect: the embedded listener, or the external broker's URL.
    broker: String,
    auth: bool,
}

impl App {
    /// Starts fleetsink; cancelling `shutdown` begins the graceful drain, which
    /// [`App::stopped`] carries out. Returns once the database is migrated, the MQTT
    /// side is listening or connecting, and the admin port is bound.
    pub async fn start(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<App> {
        // Both aws-lc-rs and ring are compiled into rustls (through different crates), so
        // rustls cannot choose a provider for TLS clients by itself; choose once.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let prometheus = telemetry::install();
        let health = Arc::new(Health::new(cfg.database.commit_timeout));
        let pool = connect_database(&cfg, &health, &shutdown).await?;
        let router = Arc::new(Router::new(&cfg.effective_routes())?);
        telemetry::zero_series(&router.labels());
        let decode = DecodeSettings::from_config(&cfg.ingest, &cfg.robots.identity)?;
        // Before intake opens, so today's partition exists from the first row.
        crate::background::maintain_partitions(&pool, &cfg.retention).await;
        let background = Background {
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        };
        let auth = start_auth(&pool, &background).await;

        let (intake_tx, intake_rx) = mpsc::channel::<Envelope>(cfg.ingest.queue_capacity);
        let (mqtt, acks) =
            start_intake(&cfg, router, intake_tx.clone(), &health, auth.clone()).await?;
        let alert_edits = Arc::new(AlertEdits::default());
        let sink_cx = SinkContext {
            pool: pool.clone(),
            settings: SinkSettings::from_config(&cfg),
            caches: Arc::new(Caches::new(cfg.robots.last_seen_interval())),
            alert_cache: Arc::new(AlertCache::new(
                cfg.alerts.flush_interval,
                alert_edits.clone(),
            )),
            rollups: Arc::new(RollupCache::new(cfg.sink.minute_rollups)),
            health: health.clone(),
        };
        // Closing intake is the drain's first step, so it follows the caller's signal.
        let (batcher, sinks, acks) = start_pipeline(
            &cfg,
            sink_cx,
            intake_rx,
            decode,
            acks,
            shutdown.child_token(),
        );
        let downlink = mqtt.intake.downlink();
        let http_addr = serve_http(
            &cfg,
            &health,
            &prometheus,
            &pool,
            Controls {
                downlink: downlink.clone(),
                auth,
                alert_edits,
            },
            &background,
        )
        .await?;
        log_started(&cfg, &mqtt, http_addr);
        spawn_background(&cfg, &pool, &health, prometheus, intake_tx, &background);
        background.tasks.close();

        Ok(App {
            http_addr,
            mqtt_addr: mqtt.intake.mqtt_addr(),
            mqtt_tls_addr: mqtt.intake.mqtt_tls_addr(),
            health,
            pool,
            downlink,
            shutdown,
            pipeline: Pipeline {
                batcher,
                sinks,
                acks,
                intake: mqtt.intake,
                background,
            },
            drain_timeout: cfg.shutdown.drain_timeout,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The embedded broker's address (None in external mode).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// The embedded broker's TLS listener, when configured.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt_tls_addr
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Publishes a downlink message (e.g. a command to `tonypi/commands/{robot_id}`)
    /// through whichever broker fleetsink uses.
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError> {
        self.downlink.publish(topic, payload, qos).await
    }

    /// Waits for the shutdown signal, then drains in order under `shutdown.drain_timeout`
    /// and returns when everything has stopped.
    pub async fn stopped(self) {
        self.shutdown.cancelled().await;
        let Pipeline {
            batcher,
            sinks,
            acks,
            intake,
            background,
        } = self.pipeline;
        tracing::info!(drain_timeout = ?self.drain_timeout, "shutting down: draining");
        self.health.start_draining();
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        // 1. Intake is closed (the child token was cancelled with `shutdown`); the
        //    batcher drains the queue and hands over its last, partial batch.
        let _ = tokio::time::timeout_at(deadline, batcher).await;
        // 2. The sink workers commit what they hold and release those acks.
        for mut sink in sinks {
            if tokio::time::timeout_at(deadline, &mut sink).await.is_err() {
                tracing::warn!(
                    "drain timeout: uncommitted messages stay unacknowledged and will be redelivered"
                );
                sink.abort();
            }
        }
        // 3. The ack stage puts the last PUBACKs on the wire (external broker).
        acks.drained(deadline).await;
        // 4. The source disconnects (or kicks its clients).
        intake.close(deadline).await;
        // 5. Background tasks and the admin port.
        background.stop.cancel();
        background.tasks.wait().await;
        self.pool.close().await;
        tracing::info!("shutdown complete");
    }
}

/// Connects to PostgreSQL (retried until reachable or `shutdown`) and migrates.
async fn connect_database(
    cfg: &Config,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let pool = db::pool(&cfg.database)?;
    db::connect_and_migrate(&pool, cfg.database.retry_backoff_max, shutdown).await?;
    health.set_database_reachable(true);
    Ok(pool)
}

/// MQTT users and ACL rules: loaded now if possible, then kept current in the background.
async fn start_auth(pool: &PgPool, background: &Background) -> Arc<Authenticator> {
    let store = Arc::new(AuthStore::default());
    if let Err(e) = store.reload(pool).await {
        tracing::warn!(error = %e, "MQTT users and ACL rules not loaded yet; retrying in the background");
    }
    background
        .tasks
        .spawn(store.clone().follow(pool.clone(), background.stop.clone()));
    Arc::new(Authenticator::new(store))
}

/// Sign-in: the console users cache (loaded now, then following the table) and the
/// settings the API needs.
async fn start_console(
    cfg: &Config,
    pool: &PgPool,
    background: &Background,
) -> crate::http::auth::ConsoleState {
    use crate::auth::console::{ConsoleUsers, LoginThrottle};
    let users = Arc::new(ConsoleUsers::default());
    if let Err(e) = users.reload(pool).await {
        tracing::warn!(error = %e, "console users not loaded yet; retrying in the background");
    }
    background
        .tasks
        .spawn(users.clone().follow(pool.clone(), background.stop.clone()));
    if cfg.console.jwt_secret.is_some() && users.is_empty() {
        tracing::warn!(
            "console sign-in is on but there are no console users: create the first admin with `fleetsink console-user add NAME --role admin --email ADDRESS`"
        );
    }
    crate::http::auth::ConsoleState {
        jwt_secret: cfg.console.jwt_secret.clone(),
        token_ttl: cfg.console.token_ttl,
        users,
        throttle: Arc::new(LoginThrottle::new(cfg.console.login_failures_per_minute)),
    }
}

/// The MQTT source `mqtt.mode` names, and the ack stage that acknowledges its messages:
/// the one place the mode is decided.
async fn start_intake(
    cfg: &Config,
    router: Arc<Router>,
    intake: mpsc::Sender<Envelope>,
    health: &Arc<Health>,
    auth: Arc<Authenticator>,
) -> anyhow::Result<(Mqtt, AckStage)> {
    match cfg.mqtt.mode {
        MqttMode::Embedded => {
            let broker = EmbeddedBroker::start(
                &cfg.mqtt.embedded,
                &cfg.commands.topics(),
                router,
                intake,
                health.clone(),
                auth,
            )
            .await?;
            let mqtt = Mqtt {
                broker: broker
                    .mqtt_addr()
                    .map_or_else(|| "-".to_string(), |a| a.to_string()),
                intake: Box::new(broker),
                mode: "embedded",
                auth: cfg.mqtt.embedded.auth,
            };
            Ok((mqtt, AckStage::Hooks))
        }
        MqttMode::External => {
            let (source, acks) =
                ExternalSource::start(&cfg.mqtt.external, router, intake, health.clone())?;
            let mqtt = Mqtt {
                // BrokerUrl's Display never shows the password.
                broker: cfg
                    .mqtt
                    .external
                    .broker()
                    .map_or_else(|_| "-".into(), |u| u.to_string()),
                intake: Box::new(source),
                mode: "external",
                auth: false,
            };
            Ok((mqtt, AckStage::Broker(acks)))
        }
    }
}

/// The batcher and the sink workers, releasing acks into the started ack stage.
fn start_pipeline(
    cfg: &Config,
    sink_cx: SinkContext,
    intake: mpsc::Receiver<Envelope>,
    decode: DecodeSettings,
    acks: AckStage,
    stop_intake: CancellationToken,
) -> (JoinHandle<()>, Vec<JoinHandle<()>>, AckTask) {
    // One slot per worker: a worker's next batch waits in the batcher, not here.
    let (batch_txs, batch_rxs): (Vec<_>, Vec<_>) =
        (0..cfg.sink.workers).map(|_| mpsc::channel(1)).unzip();
    let batcher = tokio::spawn(batch::run(
        intake,
        batch_txs,
        decode,
        cfg.batch.clone(),
        stop_intake,
    ));
    let (acker, acks) = acks.start(sink_cx.health.clone());
    let sinks = batch_rxs
        .into_iter()
        .enumerate()
        .map(|(i, rx)| {
            // The first worker takes the context as built; the others get caches of their own.
            let cx = if i == 0 {
                sink_cx.clone()
            } else {
                sink_cx.for_worker(i32::try_from(i).unwrap_or(i32::MAX))
            };
            tokio::spawn(sink::run(rx, cx, acker.clone()))
        })
        .collect();
    (batcher, sinks, acks)
}

/// What the API acts through besides the database.
struct Controls {
    /// Commands and settings to robots.
    downlink: Downlink,
    /// MQTT users and ACLs (go-auth).
    auth: Arc<Authenticator>,
    /// Tells the sink workers of alerts resolved or deleted.
    alert_edits: Arc<AlertEdits>,
}

/// Binds `http.listen` and serves the admin router until the background stops.
async fn serve_http(
    cfg: &Config,
    health: &Arc<Health>,
    prometheus: &PrometheusHandle,
    pool: &PgPool,
    controls: Controls,
    background: &Background,
) -> anyhow::Result<SocketAddr> {
    let Controls {
        downlink,
        auth,
        alert_edits,
    } = controls;
    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen for HTTP on {}: {e}; change http.listen",
                cfg.http.listen
            )
        })?;
    let http_addr = listener.local_addr()?;
    tracing::info!(listen = %http_addr, "admin HTTP listening");
    let console = start_console(cfg, pool, background).await;
    let admin_router = http::router(
        HttpState {
            health: health.clone(),
            prometheus: prometheus.clone(),
            pool: pool.clone(),
            downlink,
            admin_token: cfg.http.admin_token.clone(),
            thresholds: cfg.alerts.thresholds.clone(),
            auth,
            auth_allow: Arc::new(cfg.http.auth_allow.clone()),
            command_topics: Arc::new(cfg.commands.topics()),
            confirm_within: cfg.commands.confirm_within,
            console,
            started: std::time::Instant::now(),
            log_export: http::LogExport::new(cfg.http.logs_export_max_rows),
            alert_edits,
            pages: Arc::new(http::snapshot::FleetPages::new(
                http::snapshot::SnapshotPolicy {
                    min_robots: cfg.http.page_snapshot_robots,
                    max_stale: cfg.http.page_max_stale,
                },
            )),
        },
        &cfg.http.cors_origins,
        cfg.http.max_body_bytes,
    );
    if cfg.http.admin_token.is_none()
        && cfg.console.jwt_secret.is_none()
        && !http_addr.ip().is_loopback()
    {
        tracing::warn!(listen = %http_addr, "the API needs no credential and is reachable beyond loopback (http.allow_unauthenticated = true)");
    }
    let stop = background.stop.clone();
    background.tasks.spawn(async move {
        let served = axum::serve(
            listener,
            admin_router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin HTTP server failed");
        }
    });
    Ok(http_addr)
}

/// The one start-up line: what runs where (no secrets: URLs print masked).
fn log_started(cfg: &Config, mqtt: &Mqtt, http_addr: SocketAddr) {
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    tracing::info!(
        version = %env!("CARGO_PKG_VERSION"),
        mode = %mqtt.mode,
        mqtt = %mqtt.broker,
        mqtt_tls = %show(mqtt.intake.mqtt_tls_addr()),
        http = %http_addr,
        database = %cfg.database.url,
        config = %cfg.source_file.as_ref().map_or_else(|| "defaults + environment".to_string(), |p| p.display().to_string()),
        auth = mqtt.auth,
        ack = ?cfg.mqtt.embedded.ack,
        workers = cfg.sink.workers,
        "fleetsink started"
    );
}

/// The periodic work beside the pipeline: partition maintenance, the offline sweep
/// (with command expiry), emergency-stop confirmations, and the monitor.
fn spawn_background(
    cfg: &Config,
    pool: &PgPool,
    health: &Arc<Health>,
    prometheus: PrometheusHandle,
    intake: mpsc::Sender<Envelope>,
    background: &Background,
) {
    let (tasks, stop) = (&background.tasks, &background.stop);
    crate::background::spawn(tasks, pool, cfg, stop);
    tasks.spawn(crate::background::monitor(
        pool.clone(),
        health.clone(),
        prometheus,
        intake,
        cfg.database.connect_timeout,
        stop.clone(),
    ));
}
