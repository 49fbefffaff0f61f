//! fleetsink: an MQTT-native ingestion daemon with a PostgreSQL sink.
//!
//! ```text
//!  robots ──MQTT──► pipeline/source/    embedded rmqtt broker (ingest in the publish hook)
//!                                       or an external broker via rumqttc (manual acks)
//!                        │ Envelope + AckToken, bounded queue
//!                        ▼
//!                   pipeline/batch.rs   route (pipeline/route.rs) + decode
//!                        │              (pipeline/decode/, pure) + group commit
//!                        │ Batch, one at a time
//!                        ▼
//!                   pipeline/sink.rs    one transaction per batch (db/writes/), retries
//!                        │ after commit, in receive order
//!                        ▼
//!                   pipeline/ack.rs     PUBACK: hook released / broker ack sent
//! ```
//!
//! Dependencies point one way: [`model`] (rows, reasons; depends on nothing) and the
//! pure helpers [`mqtt`] and [`backoff`] → [`config`] (plain data and validation) →
//! [`db`] and [`pipeline`] → [`app`] (wiring, start-up, the ordered drain) → `main`.
//! [`commands`] holds the downlink rules (topic per command kind, what confirms a
//! command). [`admin`] is the HTTP port, [`health`] the readiness flags, [`telemetry`] names every
//! Prometheus metric, and [`background`] runs the periodic upkeep (partitions, offline
//! sweep, command expiry and confirmations; its SQL is in `db::maintenance`).
//!
//! The binary (`src/main.rs` → `src/cli/`) is not part of this library: it parses the
//! command line, runs [`app::App`] for `serve`, and holds the one-shot subcommands and
//! the load generator (`fleetsink bench`).

pub mod admin;
pub mod alerts;
pub mod app;
pub mod auth;
pub mod background;
pub mod backoff;
pub mod commands;
pub mod config;
pub mod db;
pub mod health;
pub mod model;
pub mod mqtt;
pub mod pipeline;
pub mod ratelimit;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod watchdog;
