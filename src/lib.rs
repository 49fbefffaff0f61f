//! fleetsink: an MQTT-native ingestion daemon with a PostgreSQL sink.
//!
//! ```text
//!  robots ──MQTT──► broker/             embedded rmqtt broker (ingest in the publish hook;
//!                                       access checks asked of auth/access.rs)
//!                   pipeline/source/    or an external broker via rumqttc (manual acks)
//!                        │ Envelope (route looked up once) + AckToken, bounded queue
//!                        ▼
//!                   pipeline/batch.rs   decode (pipeline/decode/, pure) + group commit
//!                        │ Batch, one at a time
//!                        ▼
//!                   pipeline/sink.rs    one transaction per batch (db/writes/), retries
//!                        │ after commit, in receive order
//!                        ▼
//!                   pipeline/ack.rs     PUBACK: hook released / broker ack sent (own task)
//! ```
//!
//! Dependencies point one way: [`model`] (rows, reasons; depends on nothing) and the
//! pure helpers [`mqtt`] and [`backoff`] → [`config`] (plain data and validation) →
//! [`db`], [`auth`] and [`pipeline`] → [`broker`] (the only module that knows rmqtt;
//! it feeds the pipeline's intake queue) → [`app`] (wiring, start-up, the ordered
//! drain) → `main`. [`commands`] holds the downlink rules (topic per command kind, what
//! confirms a command), [`audit`] who made a change and from where. [`http`] is the
//! HTTP port by audience (probes, TonyPi's routes, fleetsink's API, go-auth); all SQL
//! is in [`db`] (`writes/` for the ingest path, `reads/` and `edits/` for the API, the
//! auth cache and the CLI, `maintenance/` for upkeep). [`background`] runs the periodic upkeep, [`health`] holds the readiness
//! flags and [`telemetry`] names every Prometheus metric.
//!
//! The binary (`src/main.rs` → `src/cli/`) is not part of this library: it parses the
//! command line, runs [`app::App`] for `serve`, and holds the one-shot subcommands and
//! the load generator (`fleetsink bench`).

pub mod alerts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod background;
pub mod backoff;
pub mod broker;
pub mod commands;
pub mod config;
pub mod db;
pub mod health;
pub mod http;
pub mod model;
pub mod mqtt;
pub mod pipeline;
pub mod ratelimit;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod watchdog;
