//! MQTT intake, the first stage: messages enter the pipeline here as [`Envelope`]s on
//! the bounded intake queue, from one of two sources.
//!
//! - `embedded.rs`: fleetsink is the broker (rmqtt); ingestion runs in the publish hook,
//!   so a robot's PUBACK can wait for the commit.
//! - `external.rs`: fleetsink subscribes to a broker (rumqttc) with a persistent
//!   session and manual acks.
//!
//! [`Intake`] is what the rest of the program holds: it publishes downlink messages
//! through whichever broker is in use and closes the source at shutdown.

pub mod embedded;
pub mod external;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

pub use embedded::{BrokerError, EmbeddedBroker};
pub use external::ExternalSource;

use super::Envelope;
use super::ack::BrokerAck;
use super::route::Router;
use crate::config::{BrokerConfigError, Config, MqttMode};
use crate::health::Health;
use crate::mqtt::Qos;

/// Why the MQTT source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] BrokerConfigError),
    #[error(transparent)]
    Embedded(#[from] BrokerError),
    #[error("external mode needs the sink's ack channel")]
    NoAckChannel,
    #[error("{0}")]
    Tls(String),
}

/// Why a downlink publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Embedded(#[from] BrokerError),
    #[error("cannot queue the publish for the broker: {0}")]
    External(#[from] rumqttc::ClientError),
}

/// The running MQTT source.
pub enum Intake {
    Embedded(EmbeddedBroker),
    External(ExternalSource),
}

impl Intake {
    /// Starts the source `cfg.mqtt.mode` names. In external mode, acks arrive on
    /// `broker_acks` (the sink's [`super::ack::Acker`] holds the sender).
    pub async fn start(
        cfg: &Config,
        router: Arc<Router>,
        intake: mpsc::Sender<Envelope>,
        broker_acks: Option<mpsc::UnboundedReceiver<BrokerAck>>,
        health: Arc<Health>,
        auth: Arc<crate::auth::Authenticator>,
    ) -> Result<Intake, StartError> {
        match (cfg.mqtt.mode, broker_acks) {
            (MqttMode::External, Some(acks)) => {
                let url = cfg.mqtt.external.broker()?;
                let tls = if url.tls {
                    Some(external::tls_transport(&cfg.mqtt.external.tls).map_err(StartError::Tls)?)
                } else {
                    None
                };
                Ok(Intake::External(ExternalSource::start(
                    &cfg.mqtt.external,
                    url,
                    router.filters(),
                    intake,
                    acks,
                    health,
                    tls,
                )))
            }
            (MqttMode::External, None) => Err(StartError::NoAckChannel),
            (MqttMode::Embedded, _) => Ok(Intake::Embedded(
                EmbeddedBroker::start(
                    &cfg.mqtt.embedded,
                    router,
                    intake,
                    health,
                    cfg.mqtt.embedded.auth.then_some(auth),
                )
                .await?,
            )),
        }
    }

    /// The embedded broker's address (None in external mode).
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        match self {
            Intake::Embedded(b) => b.local_addr(),
            Intake::External(_) => None,
        }
    }

    /// The embedded broker's TLS listener address, when it has one.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        match self {
            Intake::Embedded(b) => b.tls_addr(),
            Intake::External(_) => None,
        }
    }

    /// A cloneable handle for downlink publishes through this source's broker.
    pub fn downlink(&self) -> Downlink {
        match self {
            Intake::Embedded(b) => Downlink::Embedded(b.downlink()),
            Intake::External(s) => Downlink::External(s.downlink()),
        }
    }

    /// Closes the source once the sink has finished: external mode sends the last
    /// PUBACKs and disconnects; the embedded broker stops listening and kicks clients.
    pub async fn close(self, deadline: tokio::time::Instant) {
        match self {
            Intake::External(s) => s.finish(deadline).await,
            Intake::Embedded(b) => b.shutdown().await,
        }
    }
}

/// Publishes downlink messages (commands to robots) through the broker fleetsink uses.
#[derive(Clone)]
pub enum Downlink {
    Embedded(rmqtt::context::ServerContext),
    External(rumqttc::AsyncClient),
}

impl Downlink {
    pub async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError> {
        match self {
            Downlink::Embedded(scx) => Ok(embedded::publish(scx, topic, payload, qos).await?),
            Downlink::External(client) => Ok(client
                .publish(topic, qos.into(), false, payload.to_vec())
                .await?),
        }
    }
}
