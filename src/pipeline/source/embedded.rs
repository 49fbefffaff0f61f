//! The embedded MQTT broker: rmqtt (pinned `=0.24.0`), wrapped here and nowhere else.
//!
//! Ingestion runs inside rmqtt's `MessagePublishCheckAcl` hook. rmqtt sends a QoS 1
//! PUBACK only after that hook returns, so with `ack = "after-commit"` the hook waits
//! until the message's batch is committed: the robot's own PUBACK means "in
//! PostgreSQL". If the message cannot be committed (shutdown deadline, intake closed)
//! the hook refuses the publish with `disconnect = true`: the robot gets no PUBACK,
//! reconnects and resends. With `ack = "on-receipt"` the hook returns once the message
//! is in the bounded queue. QoS 0 messages never wait for the commit (no PUBACK exists).
//!
//! rmqtt skips the ACL hook for sessions it marks superuser, so fleetsink never marks a
//! session superuser; it authorises everything itself.
//!
//! Last Will messages bypass the ACL hook; the `MessagePublish` hook ingests those
//! (without an ack: nobody waits for one).
//!
//! rmqtt has no shutdown API: `shutdown` aborts the server task (closing the listener)
//! and kicks every session; a kick waits for that session's in-flight hook.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use rmqtt::codec::types::Publish as CodecPublish;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{From, FromType, Id, Publish, PublishAclResult, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{AckMode, EmbeddedConfig};
use crate::health::Health;
use crate::mqtt::Qos;
use crate::pipeline::route::Router;
use crate::pipeline::{AckToken, Envelope, Undelivered};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {source}; pick another mqtt.embedded.listen or stop what uses the port"
    )]
    Bind {
        addr: SocketAddr,
        source: anyhow::Error,
    },
    #[error("cannot publish: {0}")]
    Publish(anyhow::Error),
}

/// Why a publish is not acknowledged to the robot (it resends it).
#[derive(Debug, thiserror::Error)]
enum NotAcked {
    #[error("fleetsink is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Undelivered(#[from] Undelivered),
    #[error("message not committed")]
    Dropped,
}

/// The running embedded broker.
pub struct EmbeddedBroker {
    scx: ServerContext,
    server: JoinHandle<()>,
    local_addr: SocketAddr,
}

struct IngestHook {
    router: Arc<Router>,
    intake: mpsc::Sender<Envelope>,
    ack: AckMode,
    health: Arc<Health>,
}

impl IngestHook {
    /// Queues one message; returns whether the robot may be acknowledged.
    async fn ingest(
        &self,
        client_id: Option<&str>,
        publish: &Publish,
        wait_for_commit: bool,
    ) -> Result<(), NotAcked> {
        let topic = publish.topic.to_string();
        if self.router.find(&topic).is_none() {
            return Ok(()); // not ours (e.g. downlink commands): route it like any broker
        }
        self.health.message_received();
        let (ack, done) = if wait_for_commit {
            let (tx, rx) = oneshot::channel();
            (AckToken::Hook(tx), Some(rx))
        } else {
            (AckToken::None, None)
        };
        let env = Envelope {
            topic,
            payload: Bytes::copy_from_slice(&publish.payload),
            received_at: Utc::now(),
            client_id: client_id.map(str::to_string),
            ack,
        };
        if self.intake.send(env).await.is_err() {
            return Err(NotAcked::ShuttingDown);
        }
        match done {
            None => Ok(()),
            Some(rx) => match rx.await {
                Ok(result) => Ok(result?),
                // Dropped without a status counts as failed.
                Err(_) => Err(NotAcked::Dropped),
            },
        }
    }
}

#[async_trait]
impl Handler for IngestHook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::MessagePublishCheckAcl(session, publish) => {
                // An earlier handler may already have refused it.
                if let Some(HookResult::PublishAclResult(r)) = &acc
                    && r.is_rejected()
                {
                    return (false, acc);
                }
                let wait = self.ack == AckMode::AfterCommit && publish.qos != QoS::AtMostOnce;
                match self
                    .ingest(Some(&session.id.client_id), publish, wait)
                    .await
                {
                    Ok(()) => (true, acc),
                    Err(e) => {
                        tracing::warn!(client_id = %session.id.client_id, reason = %e, "publish not acknowledged; the client will resend");
                        let deny = PublishAclResult::rejected(true, Some(e.to_string().into()));
                        (false, Some(HookResult::PublishAclResult(deny)))
                    }
                }
            }
            Parameter::MessagePublish(Some(session), from, publish)
                if matches!(from.typ(), FromType::LastWill) =>
            {
                if let Err(e) = self
                    .ingest(Some(&session.id.client_id), publish, false)
                    .await
                {
                    tracing::warn!(client_id = %session.id.client_id, reason = %e, "last will not ingested");
                }
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

impl EmbeddedBroker {
    pub async fn start(
        cfg: &EmbeddedConfig,
        router: Arc<Router>,
        intake: mpsc::Sender<Envelope>,
        health: Arc<Health>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        let scx = ServerContext::new()
            // rmqtt refuses CONNECT above 90 % CPU by default; a busy ingest host is normal.
            .busy_check_enable(false)
            .build()
            .await;
        let hook = IngestHook {
            router,
            intake,
            ack: cfg.ack,
            health: health.clone(),
        };
        let register = scx.extends.hook_mgr().register();
        // One handler instance per hook type; both share the queue.
        register
            .add(Type::MessagePublishCheckAcl, Box::new(hook.clone_handle()))
            .await;
        register.add(Type::MessagePublish, Box::new(hook)).await;
        register.start().await;

        let listener = Builder::new()
            .name("fleetsink")
            .laddr(cfg.listen)
            .reuseaddr(Some(true))
            .nodelay(true)
            .allow_anonymous(cfg.allow_anonymous)
            .max_packet_size(cfg.max_packet_size)
            .max_inflight(
                std::num::NonZeroU16::new(cfg.max_inflight.max(1))
                    .unwrap_or(std::num::NonZeroU16::MIN),
            )
            .max_mqueue_len(cfg.max_mqueue_len)
            .bind()
            .and_then(|l| l.tcp())
            .map_err(|source| BrokerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, local_addr.port())
            .build();
        let server = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        });
        health.set_broker_connected(true);
        tracing::info!(listen = %local_addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            scx,
            server,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that publishes through this broker, for as long as it runs.
    pub fn downlink(&self) -> ServerContext {
        self.scx.clone()
    }

    /// Closes the listener and disconnects every client. Call after the pipeline has
    /// drained, so waiting hooks have their answers.
    pub async fn shutdown(self) {
        self.server.abort();
        let entries: Vec<_> = self
            .scx
            .extends
            .shared()
            .await
            .iter()
            .map(|e| e.id())
            .collect();
        for id in entries {
            let entry = self.scx.extends.shared().await.entry(id);
            if let Ok(mut locked) = entry.try_lock().await
                && let Err(e) = locked.kick(true, true, true).await
            {
                tracing::debug!(error = %e, "kick failed");
            }
        }
        tracing::info!("embedded MQTT broker stopped");
    }
}

impl IngestHook {
    fn clone_handle(&self) -> IngestHook {
        IngestHook {
            router: self.router.clone(),
            intake: self.intake.clone(),
            ack: self.ack,
            health: self.health.clone(),
        }
    }
}

/// Publishes from fleetsink itself (e.g. commands to `tonypi/commands/{id}`), routed to
/// subscribers like any client's message.
pub async fn publish(
    scx: &ServerContext,
    topic: &str,
    payload: Bytes,
    qos: Qos,
) -> Result<(), BrokerError> {
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
    let id = Id::new(scx.node.id(), 0, None, None, "fleetsink".into(), None);
    SessionState::forwards(scx, From::from_system(id), publish, false, None)
        .await
        .map_err(BrokerError::Publish)
}
