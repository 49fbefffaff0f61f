//! External-broker intake (rumqttc, MQTT 3.1.1).
//!
//! fleetsink connects with a fixed client id and `clean_session = false`, so the broker
//! keeps its subscriptions and every unacknowledged QoS 1 message across fleetsink
//! restarts and crashes. Acks are manual and released only after commit (see
//! `ack.rs`). The broker's in-flight window (Mosquitto `max_inflight_messages`) bounds
//! how many messages are inside fleetsink at once.
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

use chrono::Utc;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeFilter,
    SubscribeReasonCode, Transport,
};
use secrecy::ExposeSecret;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::config::{ExternalConfig, ExternalTlsConfig};
use crate::health::Health;
use crate::mqtt::BrokerUrl;
use crate::pipeline::ack::{self, AckProgress, BrokerAck};
use crate::pipeline::{AckToken, Envelope};

/// Largest packet accepted from the broker. Far above `ingest.max_payload_bytes`, so an
/// oversized payload is recorded in `ingest_errors` instead of breaking the connection
/// in a redelivery loop.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// The running external source.
pub struct ExternalSource {
    client: AsyncClient,
    event_loop: JoinHandle<()>,
    acks: JoinHandle<()>,
    progress: Arc<AckProgress>,
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
    /// Connects (in the background, with retries) and starts the event loop and the
    /// ack task. Messages go to `intake`; the sink sends acks to the returned sender's
    /// receiver, which this source owns.
    pub fn start(
        cfg: &ExternalConfig,
        url: BrokerUrl,
        filters: Vec<String>,
        intake: mpsc::Sender<Envelope>,
        ack_rx: mpsc::UnboundedReceiver<BrokerAck>,
        health: Arc<Health>,
        tls: Option<Transport>,
    ) -> ExternalSource {
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
            Some(group) => filters
                .iter()
                .map(|f| format!("$share/{group}/{f}"))
                .collect(),
            None => filters,
        };
        let (client, event_loop) = AsyncClient::new(opts, cfg.request_channel_capacity);
        let generation = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(AckProgress::default());
        let closing = Arc::new(AtomicBool::new(false));
        let acks = tokio::spawn(ack::run_broker_acks(
            ack_rx,
            client.clone(),
            generation.clone(),
            progress.clone(),
        ));
        let event_loop = tokio::spawn(poll_loop(
            event_loop,
            client.clone(),
            filters,
            intake,
            generation,
            progress.clone(),
            closing.clone(),
            health,
            cfg.reconnect_backoff_max,
            url,
        ));
        ExternalSource {
            client,
            event_loop,
            acks,
            progress,
            closing,
        }
    }

    /// A handle that publishes through this connection (queued to rumqttc; at QoS 1
    /// rumqttc retransmits until the broker acknowledges).
    pub fn downlink(&self) -> AsyncClient {
        self.client.clone()
    }

    /// After the sink has finished: waits until every PUBACK is on the wire (or the
    /// deadline passes), then disconnects cleanly.
    pub async fn finish(self, deadline: tokio::time::Instant) {
        self.closing.store(true, Ordering::Release);
        let _ = tokio::time::timeout_at(deadline, self.acks).await;
        while !self.progress.flushed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !self.progress.flushed() {
            tracing::warn!(
                "shutdown deadline reached before every ack was sent; the broker will redeliver those messages"
            );
        }
        let _ = self.client.try_disconnect();
        if tokio::time::timeout_at(deadline, async {
            let mut h = self.event_loop;
            (&mut h).await
        })
        .await
        .is_err()
        {
            tracing::warn!("MQTT event loop did not stop in time");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn poll_loop(
    mut event_loop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    intake: mpsc::Sender<Envelope>,
    generation: Arc<AtomicU64>,
    progress: Arc<AckProgress>,
    closing: Arc<AtomicBool>,
    health: Arc<Health>,
    backoff_max: Duration,
    url: BrokerUrl,
) {
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
