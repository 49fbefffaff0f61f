//! Pure MQTT vocabulary shared by configuration, routing, both intakes and the load
//! generator: topic filters, broker URLs and QoS levels, and the load generator's
//! hand-written client packets (`client_codec`, also what tests send raw). No I/O here.

pub mod broker_url;
pub mod client_codec;
pub mod topic;

pub use broker_url::{BrokerUrl, BrokerUrlError};
pub use topic::{TopicFilter, TopicFilterError};

/// The QoS levels fleetsink publishes and subscribes with. QoS 2 is not used: with
/// idempotent writes, QoS 1 already gives "exactly once in the database".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("QoS {0} is not supported; use 0 or 1")]
pub struct UnsupportedQos(pub u8);

impl TryFrom<u8> for Qos {
    type Error = UnsupportedQos;

    fn try_from(level: u8) -> Result<Qos, UnsupportedQos> {
        match level {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            other => Err(UnsupportedQos(other)),
        }
    }
}

impl From<Qos> for rumqttc::QoS {
    fn from(q: Qos) -> rumqttc::QoS {
        match q {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        }
    }
}
