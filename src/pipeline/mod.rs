//! The ingestion pipeline, one file per stage in data-flow order:
//!
//! ```text
//! source (external broker) ─┐
//!                           ├─► Envelope ─► batch ─► sink (decode, one transaction) ─► ack
//! broker (embedded, hook) ──┘     bounded       group commit                      receive order
//! ```
//!
//! Types here cross stage boundaries. An [`Envelope`] carries one MQTT message and
//! the token that acknowledges it; the token is resolved only after the rows the
//! message produced are committed (or it was written to `ingest_errors`).

pub mod ack;
pub mod batch;
pub mod decode;
pub mod route;
pub mod sink;
pub mod source;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

/// One MQTT message on its way to PostgreSQL.
#[derive(Debug)]
pub struct Envelope {
    pub topic: String,
    pub payload: Bytes,
    pub received_at: DateTime<Utc>,
    /// The publishing client's id (embedded broker only).
    pub client_id: Option<String>,
    pub ack: AckToken,
}

/// How a message is acknowledged once its batch is durable.
#[derive(Debug)]
pub enum AckToken {
    /// Nothing to acknowledge (QoS 0, or acked on receipt).
    None,
    /// Embedded broker: the publish hook waits on this; `Ok` lets rmqtt send the PUBACK.
    /// Dropping the sender without a value counts as failure (the robot is not acked).
    Hook(oneshot::Sender<Result<(), Undelivered>>),
    /// External broker: PUBACK `pkid` on connection `generation`; stale generations are
    /// never acked on a newer connection (the broker redelivers instead).
    Broker { generation: u64, pkid: u16 },
}

/// Why a message could not be committed; the broker keeps it unacknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message not committed: {0}")]
pub struct Undelivered(pub String);

/// Identifies a message for dedup keys: stable across redeliveries.
pub fn message_fingerprint(topic: &str, payload: &[u8]) -> i64 {
    // FNV-1a, 64 bit: stable across Rust versions and processes, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.as_bytes().iter().chain([0u8].iter()).chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}
