//! Acknowledgements, released by the sink after commit, in receive order.
//!
//! Embedded broker: each message's publish hook waits on a oneshot; sending `Ok` lets
//! rmqtt write the robot's PUBACK. External broker: PUBACKs go through rumqttc's
//! request channel from this task, never from the task that polls the event loop
//! (awaiting there deadlocks once the request channel is full).
//!
//! Connection generations: an ack carries the generation of the connection its
//! message arrived on and is dropped if the connection has changed since; the broker
//! redelivers the message on the new session and it is acked then (the rows are
//! idempotent). rumqttc also discards queued PUBACKs when a connection drops. The one
//! remaining race (an ack queued between rumqttc's cleanup and our generation bump)
//! is harmless: on reconnect rumqttc sends it before our re-SUBSCRIBE, so it can only
//! match the same, already committed message resent from a kept session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::mpsc;

use super::AckToken;
use super::batch::Item;
use crate::health::Health;

/// A PUBACK owed to the external broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerAck {
    pub generation: u64,
    pub pkid: u16,
}

/// Releases the acknowledgements of committed items.
#[derive(Clone)]
pub struct Acker {
    broker: Option<mpsc::Sender<BrokerAck>>,
    health: Arc<Health>,
}

impl Acker {
    pub fn new(broker: Option<mpsc::Sender<BrokerAck>>, health: Arc<Health>) -> Self {
        Self { broker, health }
    }

    /// Called only after `items` are committed.
    pub async fn release(&self, items: Vec<Item>) {
        let n = items.len() as u64;
        for item in items {
            match item.env.ack {
                AckToken::None => {}
                AckToken::Hook(done) => {
                    // The robot may have disconnected meanwhile; nothing to do then.
                    let _ = done.send(Ok(()));
                }
                AckToken::Broker { generation, pkid } => {
                    if let Some(tx) = &self.broker {
                        // Bounded by the broker's in-flight window; the ack task drains it.
                        let _ = tx.send(BrokerAck { generation, pkid }).await;
                    }
                }
            }
        }
        self.health.messages_acked(n);
    }
}

/// Counters the shutdown drain uses to know every PUBACK went out.
#[derive(Debug, Default)]
pub struct AckProgress {
    pub requested: AtomicU64,
    pub sent: AtomicU64,
}

impl AckProgress {
    pub fn flushed(&self) -> bool {
        self.sent.load(Ordering::Acquire) >= self.requested.load(Ordering::Acquire)
    }
}

/// The external-broker ack task: runs until the sink drops its sender.
pub async fn run_broker_acks(
    mut rx: mpsc::Receiver<BrokerAck>,
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    progress: Arc<AckProgress>,
) {
    while let Some(ack) = rx.recv().await {
        if ack.generation != generation.load(Ordering::Acquire) {
            tracing::debug!(
                pkid = ack.pkid,
                "ack for an older connection dropped; the broker redelivers"
            );
            continue;
        }
        let mut publish = Publish::new("", QoS::AtLeastOnce, Vec::new());
        publish.pkid = ack.pkid;
        progress.requested.fetch_add(1, Ordering::AcqRel);
        if client.ack(&publish).await.is_err() {
            // The event loop is gone (shutdown); the broker redelivers.
            progress.sent.fetch_add(1, Ordering::AcqRel);
            return;
        }
    }
}
