//! Publishing from fleetsink itself through the embedded broker (commands to
//! `tonypi/commands/{id}` and the like): routed to subscribers like any client's
//! message, sent as the system client `fleetsink`.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, Publish, QoS};

use crate::mqtt::Qos;
use crate::pipeline::source::{PublishError, Publisher};

/// Publishes through the embedded broker, for as long as it runs.
pub struct BrokerDownlink {
    scx: ServerContext,
}

impl BrokerDownlink {
    pub(super) fn new(scx: ServerContext) -> Self {
        Self { scx }
    }
}

#[async_trait]
impl Publisher for BrokerDownlink {
    async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError> {
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
        };
        let codec = CodecPublish {
            dup: false,
            retain: false,
            qos,
            topic: topic.into(),
            packet_id: None,
            payload,
            properties: None,
        };
        let publish = Publish::from(codec).create_time(Utc::now().timestamp_millis());
        let id = Id::new(self.scx.node.id(), 0, None, None, "fleetsink".into(), None);
        SessionState::forwards(&self.scx, From::from_system(id), publish, false, None)
            .await
            .map_err(|e| PublishError::Embedded(e.into()))
    }
}
