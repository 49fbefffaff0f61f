//! External-broker intake (rumqttc, MQTT 3.1.1).
//!
//! fleetsink connects with a fixed client id and `clean_session = false`, so the broker
//! keeps its subscriptions and every unacknowledged QoS 1 message across fleetsink
//! restarts and crashes. Acks are manual and released only after commit: starting the
//! source hands over what the ack stage needs to send them (`ack::BrokerAcks`), and
//! the ack stage sends them from its own task (see `ack.rs`). The broker's in-flight
//! window (Mosquitto `max_inflight_messages`) bounds how many messages are inside
//! fleetsink at once.
//!
//! With `mqtt.external.share_group`, the filters are subscribed as
//! `$share/<group>/<filter>`: the broker gives each message to one of the instances
//! in the group, so several fleetsink instances split one broker's traffic.
//!
//! The event loop runs in its own task and is never cancelled mid-poll. On every
//! CONNACK it subscribes to the route filters (harmless when the session was kept,
//! necessary when it was not). A lost connection bumps the connection generation, so
//! acks of messages from the old connection are never sent on the new one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode, Transport,
};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Downlink, Intake, PublishError, Publisher};
use crate::backoff::Backoff;
use crate::config::{BrokerConfigError, ExternalConfig, ExternalTlsConfig};
use crate::health::Health;
use crate::mqtt::{BrokerUrl, Qos};
use crate::pipeline::ack::{AckProgress, BrokerAcks};
use crate::pipeline::route::Router;
use crate::pipeline::{AckToken, Envelope};

/// Largest packet accepted from the broker. Far above `ingest.max_payload_bytes`, so an
/// oversized payload is recorded in `ingest_errors` instead of breaking the connection
/// in a redelivery loop.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// Why the external source could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] BrokerConfigError),
    #[error("{0}")]
    Tls(String),
}

/// The running external source.
pub struct ExternalSource {
    client: AsyncClient,
    event_loop: JoinHandle<()>,
    /// Set once the drain is over: incoming messages are no longer taken.
    closing: Arc<AtomicBool>,
}

/// The TLS transport for an `mqtts://` broker: the system's roots, or only the CA of
/// `mqtt.external.tls.ca_file`, and a client certificate when configured. `Err` names
/// the file that cannot be read.
pub fn tls_transport(tls: &ExternalTlsConfig) -> Result<Transport, String> {
    let read = |key: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("mqtt.external.tls.{key} {}: {e}", path.display()))
    };
    let client_auth = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some((read("client_cert", cert)?, read("client_key", key)?)),
        _ => None,
    };
    match &tls.ca_file {
        Some(ca) => Ok(Transport::tls(read("ca_file", ca)?, client_auth, None)),
        None if client_auth.is_some() => Err(
            "mqtt.external.tls.client_cert needs mqtt.external.tls.ca_file (the CA that signed the broker's certificate)".into(),
        ),
        None => Ok(Transport::tls_with_default_config()),
    }
}

impl ExternalSource {
    /// Connects (in the background, with retries) to `mqtt.external.broker` and starts
    /// the event loop, subscribed to the `router`'s filters. Messages go to `intake`;
    /// the returned [`BrokerAcks`] is what the ack stage needs to acknowledge them.
    pub fn start(
        cfg: &ExternalConfig,
        router: Arc<Router>,
        intake: mpsc::Sender<Envelope>,
        health: Arc<Health>,
    ) -> Result<(ExternalSource, BrokerAcks), StartError> {
        let url = cfg.broker()?;
        let tls = if url.tls {
            Some(tls_transport(&cfg.tls).map_err(StartError::Tls)?)
        } else {
            None
        };
        let mut opts = MqttOptions::new(cfg.client_id.clone(), url.socket_host(), url.port);
        opts.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(cfg.keep_alive)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
            .set_request_channel_capacity(cfg.request_channel_capacity);
        if let Some(user) = &url.username {
            let password = url
                .password
                .as_ref()
                .map(|p| p.expose_secret().to_string())
                .unwrap_or_default();
            opts.set_credentials(user.clone(), password);
        }
        if let Some(transport) = tls {
            opts.set_transport(transport);
        }
        // With a share group the broker hands each message to one member of the group.
        let filters: Vec<String> = match &cfg.share_group {
            Some(group) => router
                .filters()
                .iter()
                .map(|f| format!("$share/{group}/{f}"))
                .collect(),
            None => router.filters(),
        };
        let (client, event_loop) = AsyncClient::new(opts, cfg.request_channel_capacity);
        let acks = BrokerAcks {
            client: client.clone(),
            generation: Arc::new(AtomicU64::new(0)),
            progress: Arc::new(AckProgress::default()),
        };
        let closing = Arc::new(AtomicBool::new(false));
        let event_loop = tokio::spawn(poll_loop(
            event_loop,
            Connection {
                client: client.clone(),
                filters,
                router,
                intake,
                generation: acks.generation.clone(),
                progress: acks.progress.clone(),
                closing: closing.clone(),
                health,
                backoff_max: cfg.reconnect_backoff_max,
                url,
            },
        ));
        let source = ExternalSource {
            client,
            event_loop,
            closing,
        };
        Ok((source, acks))
    }
}

#[async_trait]
impl Intake for ExternalSource {
    /// Publishes through this connection (queued to rumqttc; at QoS 1 rumqttc
    /// retransmits until the broker acknowledges).
    fn downlink(&self) -> Downlink {
        Downlink::new(self.client.clone())
    }

    /// After the ack stage has put the last PUBACKs on the wire: stops taking messages
    /// and disconnects cleanly.
    async fn close(self: Box<Self>, deadline: tokio::time::Instant) {
        self.closing.store(true, Ordering::Release);
        let _ = self.client.try_disconnect();
        if tokio::time::timeout_at(deadline, self.event_loop)
            .await
            .is_err()
        {
            tracing::warn!("MQTT event loop did not stop in time");
        }
    }
}

#[async_trait]
impl Publisher for AsyncClient {
    async fn publish(&self, topic: &str, payload: Bytes, qos: Qos) -> Result<(), PublishError> {
        Ok(AsyncClient::publish(self, topic, qos.into(), false, payload.to_vec()).await?)
    }
}

/// What the event-loop task holds.
struct Connection {
    client: AsyncClient,
    filters: Vec<String>,
    router: Arc<Router>,
    intake: mpsc::Sender<Envelope>,
    /// Bumped on every lost connection; acks carry the one their message arrived on.
    generation: Arc<AtomicU64>,
    progress: Arc<AckProgress>,
    closing: Arc<AtomicBool>,
    health: Arc<Health>,
    backoff_max: Duration,
    url: BrokerUrl,
}

async fn poll_loop(mut event_loop: EventLoop, c: Connection) {
    let Connection {
        client,
        filters,
        router,
        intake,
        generation,
        progress,
        closing,
        health,
        backoff_max,
        url,
    } = c;
    let mut backoff = Backoff::new(backoff_max);
    // Receive order of QoS 1 messages, for the ordered release of their PUBACKs.
    let mut next_seq: u64 = 0;
    loop {
        let event = event_loop.poll().await;
        health.progress.intake_beat();
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                health.set_broker_connected(true);
                tracing::info!(broker = %url, session_present = ack.session_present, "connected to MQTT broker");
                let subs = filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(subs) {
                    tracing::error!(error = %e, "cannot queue subscriptions");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (code, filter) in ack.return_codes.iter().zip(&filters) {
                    if matches!(code, SubscribeReasonCode::Failure) {
                        tracing::error!(filter = %filter, "broker refused the subscription; check its ACL for fleetsink's user");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if closing.load(Ordering::Acquire) {
                    continue; // not acked: the broker redelivers it next session
                }
                let ack = match p.qos {
                    QoS::AtMostOnce => AckToken::None,
                    _ => {
                        next_seq += 1;
                        AckToken::Broker {
                            generation: generation.load(Ordering::Acquire),
                            pkid: p.pkid,
                            seq: next_seq - 1,
                        }
                    }
                };
                let topic = p.topic;
                health.message_received();
                let env = Envelope {
                    route: router.find(&topic).cloned(),
                    topic,
                    payload: p.payload,
                    received_at: Utc::now(),
                    client_id: None,
                    username: None,
                    ack,
                };
                // Waiting here when the queue is full is the backpressure: the broker's
                // in-flight window fills and it holds the rest.
                if intake.send(env).await.is_err() {
                    // Intake closed for shutdown: the message stays unacknowledged.
                    closing.store(true, Ordering::Release);
                }
            }
            Ok(Event::Outgoing(Outgoing::PubAck(_))) => {
                progress.sent.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                health.set_broker_connected(false);
                tracing::info!("disconnected from MQTT broker");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                health.set_broker_connected(false);
                generation.fetch_add(1, Ordering::AcqRel);
                if closing.load(Ordering::Acquire) {
                    return;
                }
                let wait = backoff.next_delay();
                tracing::warn!(broker = %url, error = %e, retry_in = ?wait, "MQTT connection lost; reconnecting");
                tokio::time::sleep(wait).await;
            }
        }
    }
}
