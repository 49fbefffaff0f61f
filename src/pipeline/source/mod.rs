//! MQTT intake, the first stage: messages enter the pipeline here as [`Envelope`]s on
//! the bounded intake queue, each with the route it matched, from one of two sources:
//!
//! - the embedded broker (`crate::broker`): ingestion runs in its publish hook,
//!   so a robot's PUBACK can wait for the commit;
//! - an external broker (`external.rs`, rumqttc): a persistent session with manual acks.
//!
//! The pipeline knows the embedded broker only through the two abstractions here:
//! [`Intake`] is the running source as the app holds it (its addresses, the downlink,
//! closing it at shutdown), and [`Downlink`] publishes commands to robots through
//! whichever broker is in use. How a source's messages are acknowledged is the ack
//! stage's business (`ack::AckStage`), chosen with the source in the app's wiring.
//!
//! [`Envelope`]: super::Envelope

pub mod external;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use external::ExternalSource;

use crate::mqtt::Qos;

/// A running MQTT source.
#[async_trait]
pub trait Intake: Send {
    /// The embedded broker's plain listener (None for an external broker, or TLS only).
    fn mqtt_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// The embedded broker's TLS listener, when it has one.
    fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// A cloneable handle for downlink publishes through this source's broker.
    fn downlink(&self) -> Downlink;

    /// Closes the source once the sink and the ack stage have finished: an external
    /// connection disconnects; the embedded broker stops listening and kicks clients.
    async fn close(self: Box<Self>, deadline: tokio::time::Instant);
}

/// Publishes one message through a broker.
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError>;
}

/// Why a downlink publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot publish: {0}")]
    Embedded(Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot queue the publish for the broker: {0}")]
    External(#[from] rumqttc::ClientError),
}

/// Publishes downlink messages (commands to robots) through the broker fleetsink uses.
#[derive(Clone)]
pub struct Downlink(Arc<dyn Publisher>);

impl Downlink {
    pub fn new(publisher: impl Publisher + 'static) -> Self {
        Self(Arc::new(publisher))
    }

    pub async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError> {
        self.0.publish(topic, payload, qos).await
    }
}
