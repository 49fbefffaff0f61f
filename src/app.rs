//! Builds everything from a [`Config`] and runs it until the caller's shutdown signal.
//!
//! Start-up, in order: metrics recorder → database (retried until reachable) and
//! migrations → today's partition maintenance → batcher and sink workers → MQTT source
//! (embedded broker or external connection) → admin HTTP and background tasks. Port 0
//! anywhere means "pick a free port"; the bound addresses are logged and returned, so
//! tests and scripts can run many instances side by side.
//!
//! Shutdown lives in one place, [`App::stopped`], under `shutdown.drain_timeout`:
//! stop intake → flush the partial batch → commit and release acks → close the MQTT
//! source (last PUBACKs, disconnect) → stop the background tasks and the admin port.
//! What is not committed by the deadline stays unacknowledged and is redelivered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthStore, Authenticator};
use crate::config::{Config, MqttMode};
use crate::db::writes::Dictionary;
use crate::db::{self, offline, partitions};
use crate::health::Health;
use crate::http::{self, HttpState};
use crate::mqtt::Qos;
use crate::pipeline::ack::Acker;
use crate::pipeline::decode::DecodeSettings;
use crate::pipeline::route::Router;
use crate::pipeline::sink::{self, SinkContext, SinkSettings};
use crate::pipeline::source::{Downlink, Intake, PublishError};
use crate::pipeline::{Envelope, batch};
use crate::telemetry;

/// How often the monitor probes PostgreSQL and refreshes gauges.
const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

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
    intake: Intake,
    /// Monitor, partition maintenance and the admin HTTP server: stopped last.
    background: TaskTracker,
    stop_background: CancellationToken,
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
        let health = Arc::new(Health::default());
        let pool = db::pool(&cfg.database)?;
        db::connect_and_migrate(&pool, cfg.database.retry_backoff_max, &shutdown).await?;
        health.set_database_reachable(true);

        let router = Arc::new(Router::new(&cfg.effective_routes())?);
        telemetry::zero_series(&router.labels());
        let mut decode = DecodeSettings::from_config(&cfg.ingest)?;
        decode.identity_gateways = cfg.robots.identity.gateways.clone();
        // Before intake opens, so today's partition exists from the first row.
        partitions::maintain_now(&pool, &cfg.retention).await;

        // Closing intake is the drain's first step, so it follows the caller's signal.
        let stop_intake = shutdown.child_token();
        let (intake_tx, intake_rx) = mpsc::channel::<Envelope>(cfg.ingest.queue_capacity);
        // One slot per worker: a worker's next batch waits in the batcher, not here.
        let (batch_txs, batch_rxs): (Vec<_>, Vec<_>) =
            (0..cfg.sink.workers).map(|_| mpsc::channel(1)).unzip();
        let batcher = tokio::spawn(batch::run(
            intake_rx,
            batch_txs,
            router.clone(),
            decode,
            cfg.batch.clone(),
            stop_intake,
        ));
        let (broker_ack_tx, broker_ack_rx) = match cfg.mqtt.mode {
            MqttMode::External => {
                // Unbounded on purpose: see `pipeline::ack` ("never blocks the sink").
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            MqttMode::Embedded => (None, None),
        };
        let sink_cx = SinkContext {
            pool: pool.clone(),
            settings: SinkSettings::from_config(&cfg),
            dictionary: Arc::new(Dictionary::default()),
            health: health.clone(),
        };
        let acker = Acker::new(broker_ack_tx, health.clone());
        let sinks = batch_rxs
            .into_iter()
            .map(|rx| tokio::spawn(sink::run(rx, sink_cx.clone(), acker.clone())))
            .collect();
        drop(acker);
        let background = TaskTracker::new();
        let stop_background = CancellationToken::new();
        let auth_store = Arc::new(AuthStore::default());
        if let Err(e) = auth_store.reload(&pool).await {
            tracing::warn!(error = %e, "MQTT users and ACL rules not loaded yet; retrying in the background");
        }
        background.spawn(
            auth_store
                .clone()
                .follow(pool.clone(), stop_background.clone()),
        );
        let auth = Arc::new(Authenticator::new(auth_store));
        let intake = Intake::start(
            &cfg,
            router,
            intake_tx.clone(),
            broker_ack_rx,
            health.clone(),
            auth.clone(),
        )
        .await?;

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
        let mode = match cfg.mqtt.mode {
            MqttMode::Embedded => "embedded",
            MqttMode::External => "external",
        };
        let show = |a: Option<SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
        let broker = match cfg.mqtt.mode {
            MqttMode::Embedded => show(intake.mqtt_addr()),
            // BrokerUrl's Display never shows the password.
            MqttMode::External => cfg
                .mqtt
                .external
                .broker()
                .map_or_else(|_| "-".into(), |u| u.to_string()),
        };
        tracing::info!(
            version = %env!("CARGO_PKG_VERSION"),
            mode = %mode,
            mqtt = %broker,
            mqtt_tls = %show(intake.mqtt_tls_addr()),
            http = %http_addr,
            database = %cfg.database.url,
            config = %cfg.source_file.as_ref().map_or_else(|| "defaults + environment".to_string(), |p| p.display().to_string()),
            auth = cfg.mqtt.embedded.auth && cfg.mqtt.mode == MqttMode::Embedded,
            ack = ?cfg.mqtt.embedded.ack,
            workers = cfg.sink.workers,
            "fleetsink started"
        );

        let admin_router = http::router(
            HttpState {
                health: health.clone(),
                prometheus: prometheus.clone(),
                pool: pool.clone(),
                downlink: intake.downlink(),
                admin_token: cfg.http.admin_token.clone(),
                thresholds: cfg.alerts.thresholds.clone(),
                auth: auth.clone(),
                auth_allow: Arc::new(cfg.http.auth_allow.clone()),
                command_topics: Arc::new(cfg.commands.topics()),
                confirm_within: cfg.commands.confirm_within,
                log_export: http::LogExport::new(cfg.http.logs_export_max_rows),
            },
            &cfg.http.cors_origins,
            cfg.http.max_body_bytes,
        );
        if cfg.http.admin_token.is_none() && !http_addr.ip().is_loopback() {
            tracing::warn!(listen = %http_addr, "the admin API has no token and is reachable beyond loopback (http.allow_unauthenticated = true)");
        }
        let stop = stop_background.clone();
        background.spawn(async move {
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
        background.spawn(partitions::maintain_periodically(
            pool.clone(),
            cfg.retention.clone(),
            stop_background.clone(),
        ));
        background.spawn(offline::sweep_periodically(
            pool.clone(),
            cfg.robots.offline_after,
            cfg.commands.expire_after,
            stop_background.clone(),
        ));
        background.spawn(crate::db::commands::watch_confirmations(
            pool.clone(),
            cfg.commands.confirm_within,
            stop_background.clone(),
        ));
        background.spawn(monitor(
            pool.clone(),
            health.clone(),
            prometheus,
            intake_tx,
            stop_background.clone(),
        ));
        background.close();

        Ok(App {
            http_addr,
            mqtt_addr: intake.mqtt_addr(),
            mqtt_tls_addr: intake.mqtt_tls_addr(),
            health,
            pool,
            downlink: intake.downlink(),
            shutdown,
            pipeline: Pipeline {
                batcher,
                sinks,
                intake,
                background,
                stop_background,
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
            intake,
            background,
            stop_background,
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
        // 3. The source sends the last PUBACKs and disconnects (or kicks its clients).
        intake.close(deadline).await;
        // 4. Background tasks and the admin port.
        stop_background.cancel();
        background.wait().await;
        self.pool.close().await;
        tracing::info!("shutdown complete");
    }
}

/// Probes PostgreSQL and refreshes gauges until cancelled.
async fn monitor(
    pool: PgPool,
    health: Arc<Health>,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    intake: mpsc::Sender<Envelope>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(MONITOR_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let probe =
            tokio::time::timeout(MONITOR_INTERVAL, sqlx::query("SELECT 1").execute(&pool)).await;
        health.set_database_reachable(matches!(probe, Ok(Ok(_))));
        telemetry::queue_depth(intake.max_capacity() - intake.capacity());
        telemetry::awaiting_ack(health.awaiting_ack() as usize);
        telemetry::upkeep(&prometheus, health.last_message_age());
    }
}
