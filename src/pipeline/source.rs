//! External-broker intake (rumqttc, MQTT 3.1.1).
//!
//! fleetsink connects with a fixed client id and `clean_session = false`, so the broker
//! keeps its subscriptions and every unacknowledged QoS 1 message across fleetsink
//! restarts and crashes. Acks are manual and released only after commit (see
//! `ack.rs`). The broker's in-flight window (Mosquitto `max_inflight_messages`) bounds
//! how many messages are inside fleetsink at once.
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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ack::{self, AckProgress, BrokerAck};
use super::sink::Backoff;
use super::{AckToken, Envelope};
use crate::config::ExternalConfig;
use crate::health::Health;

/// Largest packet accepted from the broker. Far above `ingest.max_payload_bytes`, so an
/// oversized payload is recorded in `ingest_errors` instead of breaking the connection
/// in a redelivery loop.
const MAX_INCOMING_PACKET: usize = 256 * 1024 * 1024;

/// A parsed `mqtt.external.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!("{url:?} must start with mqtt:// or mqtts://"));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?;
                (h, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// The running external source.
pub struct ExternalSource {
    pub client: AsyncClient,
    event_loop: JoinHandle<()>,
    acks: JoinHandle<()>,
    progress: Arc<AckProgress>,
    /// Set once the drain is over: incoming messages are no longer taken.
    closing: Arc<AtomicBool>,
}

impl ExternalSource {
    /// Connects (in the background, with retries) and starts the event loop and the
    /// ack task. Messages go to `intake`; the sink sends acks to the returned sender's
    /// receiver, which this source owns.
    pub fn start(
        cfg: &ExternalConfig,
        filters: Vec<String>,
        intake: mpsc::Sender<Envelope>,
        ack_rx: mpsc::UnboundedReceiver<BrokerAck>,
        health: Arc<Health>,
    ) -> Result<ExternalSource, String> {
        let url = BrokerUrl::parse(&cfg.url)?;
        let mut opts = MqttOptions::new(cfg.client_id.clone(), url.host.clone(), url.port);
        opts.set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(cfg.keep_alive)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_INCOMING_PACKET)
            .set_request_channel_capacity(cfg.request_channel_capacity);
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
        }
        if url.tls {
            opts.set_transport(Transport::tls_with_default_config());
        }
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
            cfg.url.clone(),
        ));
        Ok(ExternalSource {
            client,
            event_loop,
            acks,
            progress,
            closing,
        })
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
    url: String,
) {
    let mut backoff = Backoff::new(backoff_max);
    loop {
        match event_loop.poll().await {
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
                    _ => AckToken::Broker {
                        generation: generation.load(Ordering::Acquire),
                        pkid: p.pkid,
                    },
                };
                let topic = p.topic;
                health.message_received();
                let env = Envelope {
                    topic,
                    payload: p.payload,
                    received_at: Utc::now(),
                    client_id: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerUrl::parse("mqtt://localhost:1884").unwrap(),
            BrokerUrl {
                host: "localhost".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(BrokerUrl::parse("mqtts://b.example").unwrap().port, 8883);
        assert_eq!(BrokerUrl::parse("mqtt://[::1]:1883").unwrap().host, "::1");
        assert!(BrokerUrl::parse("tcp://x:1").is_err());
        assert!(BrokerUrl::parse("mqtt://x:port").is_err());
        assert!(BrokerUrl::parse("mqtt://").is_err());
    }
}
