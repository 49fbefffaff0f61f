//! Builds everything from a [`Config`] and runs it until shut down.
//!
//! Start-up: metrics recorder → database (retried until reachable) and migrations →
//! partition maintenance → batcher and sink → broker (embedded or external) → admin
//! HTTP. Port 0 anywhere means "pick a free port"; the bound addresses are logged and
//! returned, so tests and scripts can run many instances side by side.
//!
//! Shutdown order (under `shutdown.drain_timeout`): stop intake → flush the partial
//! batch → let acks drain → disconnect the broker side → stop the admin port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::broker::EmbeddedBroker;
use crate::config::{Config, MqttMode};
use crate::db::{self, partitions};
use crate::health::Health;
use crate::pipeline::ack::Acker;
use crate::pipeline::decode::DecodeOptions;
use crate::pipeline::route::Router;
use crate::pipeline::sink::{self, SinkSettings};
use crate::pipeline::source::ExternalSource;
use crate::pipeline::{Envelope, batch};
use crate::telemetry;

/// How often the monitor probes PostgreSQL and refreshes gauges.
const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

enum Intake {
    Embedded(EmbeddedBroker),
    External(ExternalSource),
}

/// A running fleetsink.
pub struct App {
    http_addr: SocketAddr,
    mqtt_addr: Option<SocketAddr>,
    health: Arc<Health>,
    pool: PgPool,
    shutdown: CancellationToken,
    intake: Arc<tokio::sync::Mutex<Option<Intake>>>,
    supervisor: JoinHandle<()>,
}

impl App {
    /// Starts fleetsink. Returns once the database is migrated, the broker side is
    /// listening or connecting, and the admin port is bound.
    pub async fn start(cfg: Config) -> anyhow::Result<App> {
        let prometheus = telemetry::install();
        let health = Arc::new(Health::default());
        let shutdown = CancellationToken::new();
        let pool = db::pool(&cfg.database)?;
        db::connect_and_migrate(&pool, cfg.database.retry_backoff_max, &shutdown).await?;
        health.set_database_reachable(true);

        let router = Arc::new(Router::new(&cfg.effective_routes()).map_err(anyhow::Error::msg)?);
        let opts = DecodeOptions {
            naive_timezone: cfg
                .ingest
                .naive_timezone
                .parse()
                .map_err(|_| anyhow::anyhow!("ingest.naive_timezone is not an IANA zone"))?,
            max_clock_skew: chrono::Duration::from_std(cfg.ingest.max_clock_skew)?,
            max_payload_bytes: cfg.ingest.max_payload_bytes,
        };

        partitions::round(&pool, &cfg.retention).await;
        let background = CancellationToken::new();
        let maintenance = tokio::spawn(partitions::run(
            pool.clone(),
            cfg.retention.clone(),
            background.clone(),
        ));

        let (intake_tx, intake_rx) = mpsc::channel::<Envelope>(cfg.ingest.queue_capacity);
        let (batch_tx, batch_rx) = mpsc::channel(1);
        let stop_intake = CancellationToken::new();
        let batcher = tokio::spawn(batch::run(
            intake_rx,
            batch_tx,
            router.clone(),
            opts,
            cfg.batch.clone(),
            stop_intake.clone(),
        ));

        let (broker_ack_tx, broker_ack_rx) = match cfg.mqtt.mode {
            MqttMode::External => {
                // Unbounded on purpose: see `pipeline::ack` ("never blocks the sink").
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            MqttMode::Embedded => (None, None),
        };
        let sink = tokio::spawn(sink::run(
            batch_rx,
            pool.clone(),
            Acker::new(broker_ack_tx, health.clone()),
            SinkSettings {
                error_payload_cap: cfg.ingest.error_payload_cap,
                retry_backoff_max: cfg.database.retry_backoff_max,
            },
            health.clone(),
        ));

        let (intake, mqtt_addr) = match (cfg.mqtt.mode, broker_ack_rx) {
            (MqttMode::External, Some(ack_rx)) => {
                let source = ExternalSource::start(
                    &cfg.mqtt.external,
                    router.filters(),
                    intake_tx.clone(),
                    ack_rx,
                    health.clone(),
                )
                .map_err(anyhow::Error::msg)?;
                (Intake::External(source), None)
            }
            _ => {
                let broker = EmbeddedBroker::start(
                    &cfg.mqtt.embedded,
                    router.clone(),
                    intake_tx.clone(),
                    health.clone(),
                )
                .await?;
                let addr = broker.local_addr();
                (Intake::Embedded(broker), Some(addr))
            }
        };

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
        let http_stop = CancellationToken::new();
        let app_router = admin::router(AdminState {
            health: health.clone(),
            prometheus: prometheus.clone(),
        });
        let http = {
            let stop = http_stop.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, app_router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "admin HTTP server failed");
                }
            })
        };

        let monitor = tokio::spawn(monitor(
            pool.clone(),
            health.clone(),
            prometheus,
            intake_tx,
            background.clone(),
        ));

        let intake = Arc::new(tokio::sync::Mutex::new(Some(intake)));
        let supervisor = {
            let shutdown = shutdown.clone();
            let intake = intake.clone();
            let health = health.clone();
            let drain_timeout = cfg.shutdown.drain_timeout;
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tracing::info!(?drain_timeout, "shutting down: draining");
                health.start_draining();
                let deadline = tokio::time::Instant::now() + drain_timeout;
                stop_intake.cancel();
                let _ = tokio::time::timeout_at(deadline, batcher).await;
                let mut sink = sink;
                if tokio::time::timeout_at(deadline, &mut sink).await.is_err() {
                    tracing::warn!(
                        "drain timeout: uncommitted messages stay unacknowledged and will be redelivered"
                    );
                    sink.abort();
                }
                match intake.lock().await.take() {
                    Some(Intake::External(source)) => source.finish(deadline).await,
                    Some(Intake::Embedded(broker)) => broker.shutdown().await,
                    None => {}
                }
                background.cancel();
                let _ = maintenance.await;
                let _ = monitor.await;
                http_stop.cancel();
                let _ = http.await;
                tracing::info!("shutdown complete");
            })
        };

        Ok(App {
            http_addr,
            mqtt_addr,
            health,
            pool,
            shutdown,
            intake,
            supervisor,
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The embedded broker's address (None in external mode).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Cancel this to start the graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Publishes a downlink message (e.g. a command to `tonypi/commands/{robot_id}`)
    /// through whichever broker fleetsink uses.
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: u8) -> anyhow::Result<()> {
        match self.intake.lock().await.as_ref() {
            Some(Intake::Embedded(b)) => Ok(b.publish(topic, payload, qos, false).await?),
            Some(Intake::External(s)) => {
                let qos = match qos {
                    0 => rumqttc::QoS::AtMostOnce,
                    1 => rumqttc::QoS::AtLeastOnce,
                    _ => rumqttc::QoS::ExactlyOnce,
                };
                s.client
                    .publish(topic, qos, false, payload.to_vec())
                    .await?;
                Ok(())
            }
            None => anyhow::bail!("fleetsink is shutting down"),
        }
    }

    /// Waits until the shutdown (started by cancelling the token) has completed.
    pub async fn wait(self) {
        let _ = self.supervisor.await;
        self.pool.close().await;
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
