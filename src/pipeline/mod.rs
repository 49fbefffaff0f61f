//! The ingestion pipeline, one module per stage in data-flow order:
//!
//! ```text
//! broker/ (embedded, hook) ────────┐
//!                                  ├─► Envelope ─► batch.rs ─────► sink.rs ────────► ack.rs
//! source/external.rs (rumqttc) ────┘   bounded     decode/ (pure)  one transaction   receive
//!                                      queue                       per batch (db/)   order
//! ```
//!
//! The pipeline knows nothing of the embedded broker: it receives envelopes on the
//! intake queue, and [`source`] names what it needs from a source ([`source::Intake`],
//! [`source::Downlink`]). Types here cross stage boundaries. An [`Envelope`] carries
//! one MQTT message, its route (looked up once, at intake) and the token that
//! acknowledges it; the token is resolved only after the rows the message produced are
//! committed (or it was written to `ingest_errors`).

pub mod ack;
pub mod batch;
pub mod decode;
pub mod route;
pub mod sink;
pub mod source;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use route::Route;

/// One MQTT message on its way to PostgreSQL.
#[derive(Debug)]
pub struct Envelope {
    pub topic: String,
    /// The first route matching `topic`, looked up by the source when the message
    /// arrived; `None` makes the message an ingest error (no route).
    pub route: Option<Arc<Route>>,
    pub payload: Bytes,
    pub received_at: DateTime<Utc>,
    /// The publishing client's id (embedded broker only).
    pub client_id: Option<String>,
    /// The publisher's authenticated username (embedded broker with
    /// `mqtt.embedded.auth` only): payload robot ids are checked against it.
    pub username: Option<String>,
    pub ack: AckToken,
}

/// How a message is acknowledged once its batch is durable.
#[derive(Debug)]
pub enum AckToken {
    /// Nothing to acknowledge (QoS 0, or acked on receipt).
    None,
    /// Embedded broker: the publish hook waits on this; `Ok` lets the broker send the PUBACK.
    /// Dropping the sender without a value counts as failure (the robot is not acked).
    Hook(oneshot::Sender<Result<(), Undelivered>>),
    /// External broker: PUBACK `pkid` on connection `generation`; stale generations are
    /// never acked on a newer connection (the broker redelivers instead). `seq` numbers
    /// the QoS 1 messages in receive order: the ack task releases PUBACKs in that order
    /// whichever sink worker commits first.
    Broker {
        generation: u64,
        pkid: u16,
        seq: u64,
    },
}

/// Why a message could not be committed; the broker keeps it unacknowledged.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message not committed: {0}")]
pub struct Undelivered(pub String);
