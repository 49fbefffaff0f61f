//! fleetsink: an MQTT-native ingestion daemon with a PostgreSQL sink.
//!
//! ```text
//!  robots ──MQTT──► broker.rs (embedded rmqtt, ingest in the publish hook)
//!                   pipeline/source.rs (external broker, rumqttc, manual acks)
//!                        │ Envelope + AckToken, bounded queue
//!                        ▼
//!                   pipeline/batch.rs   decode (pipeline/decode.rs, pure) + group commit
//!                        │ Batch, one at a time
//!                        ▼
//!                   pipeline/sink.rs    one transaction per batch (db/writes.rs), retries
//!                        │ after commit, in receive order
//!                        ▼
//!                   pipeline/ack.rs     PUBACK: hook released / broker ack sent
//! ```
//!
//! Module map: [`app`] builds and runs everything from a [`config::Config`];
//! [`db`] holds migrations, partition maintenance and the SQL; [`admin`] is the HTTP
//! port; [`telemetry`] names every Prometheus metric; [`bench`] is the load generator.

pub mod admin;
pub mod app;
pub mod bench;
pub mod broker;
pub mod config;
pub mod db;
pub mod health;
pub mod pipeline;
pub mod telemetry;
