//! Acknowledgements, released by the sink workers after commit, in receive order.
//!
//! The stage is chosen once, with the source, in the app's wiring: an [`AckStage`]
//! names how the source's messages are acknowledged and carries what that needs;
//! [`AckStage::start`] gives the sink workers their [`Acker`] and starts the stage's
//! own task when it has one; the drain waits on the returned [`AckTask`] before the
//! source closes. A mode cannot be missing what it needs: there is nothing to wire
//! wrongly.
//!
//! Embedded broker: each message's publish hook waits on a oneshot; sending `Ok` lets
//! the broker write the robot's PUBACK. A hook waits only for the worker that holds
//! its message (the broker handles one PUBLISH per connection at a time, so a
//! connection's acks are in order by construction).
//!
//! External broker: one connection carries every robot's messages, and MQTT wants its
//! PUBACKs in receive order, while several workers commit in parallel. Every QoS 1
//! message is numbered at receipt (`AckToken::Broker::seq`); this task holds PUBACKs
//! that complete early and releases them only once every earlier number is released —
//! Vector's ordered finalizer. What it holds is bounded by what is inside fleetsink.
//! PUBACKs go through rumqttc's request channel from this task, never from the task
//! that polls the event loop (awaiting there deadlocks once the request channel is full).
//!
//! The hop from the sink to the ack task never blocks the sink (an unbounded channel).
//! A bounded one can deadlock: when a broker sends more than its in-flight window
//! (Mosquitto 2.0.11 does, in bursts, while draining a backlog), rumqttc's request
//! channel fills with PUBACKs; the ack task waits for room, which only the event-loop
//! task makes when it polls; that task waits for room in the intake queue; the queue
//! waits for the sink; and a bounded hop would make the sink wait for the ack task.
//! The channel still cannot grow without bound: it holds PUBACKs of committed messages
//! not yet handed to rumqttc, and no new message enters fleetsink while the event loop
//! is stuck — at most `ingest.queue_capacity` plus two batches of them.
//!
//! Connection generations: an ack carries the generation of the connection its
//! message arrived on and is dropped if the connection has changed since; the broker
//! redelivers the message on the new session and it is acked then (the rows are
//! idempotent). rumqttc also discards queued PUBACKs when a connection drops. The one
//! remaining race (an ack queued between rumqttc's cleanup and our generation bump)
//! is harmless: on reconnect rumqttc sends it before our re-SUBSCRIBE, so it can only
//! match the same, already committed message resent from a kept session.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Publish, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AckToken;
use super::batch::Item;
use crate::health::Health;

/// A PUBACK owed to the external broker.
#[derive(Debug, Clone, Copy)]
pub struct BrokerAck {
    pub generation: u64,
    pub pkid: u16,
    /// Receive order (see the module docs).
    pub seq: u64,
}

/// How the source's messages are acknowledged, with what that needs.
pub enum AckStage {
    /// Embedded broker: each message's token is its publish hook's oneshot; releasing
    /// answers it. No task.
    Hooks,
    /// External broker: PUBACKs through the source's client, in receive order, from
    /// the stage's own task.
    Broker(BrokerAcks),
}

/// What the external-broker ack task needs from the source that received the messages.
pub struct BrokerAcks {
    /// The connection's client: PUBACKs go through its request channel.
    pub client: AsyncClient,
    /// The current connection generation (bumped by the event loop on a lost
    /// connection): acks of an older one are dropped.
    pub generation: Arc<AtomicU64>,
    /// PUBACKs requested here and seen going out by the event loop.
    pub progress: Arc<AckProgress>,
}

impl AckStage {
    /// Starts the stage: the [`Acker`] the sink workers release committed items into,
    /// and the [`AckTask`] the drain waits on once the workers are gone.
    pub fn start(self, health: Arc<Health>) -> (Acker, AckTask) {
        match self {
            AckStage::Hooks => (
                Acker {
                    broker: None,
                    health,
                },
                AckTask { broker: None },
            ),
            AckStage::Broker(acks) => {
                // Unbounded on purpose: see the module docs ("never blocks the sink").
                let (tx, rx) = mpsc::unbounded_channel();
                let progress = acks.progress.clone();
                let task = tokio::spawn(run_broker_acks(rx, acks));
                (
                    Acker {
                        broker: Some(tx),
                        health,
                    },
                    AckTask {
                        broker: Some((task, progress)),
                    },
                )
            }
        }
    }
}

/// The running ack stage, for the drain.
pub struct AckTask {
    broker: Option<(JoinHandle<()>, Arc<AckProgress>)>,
}

impl AckTask {
    /// After the sink workers have finished (dropping every [`Acker`]): waits until
    /// every PUBACK is on the wire, or the deadline passes (the broker then redelivers).
    pub async fn drained(self, deadline: tokio::time::Instant) {
        let Some((task, progress)) = self.broker else {
            return; // hooks are answered by `Acker::release` itself
        };
        let _ = tokio::time::timeout_at(deadline, task).await;
        while !progress.flushed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !progress.flushed() {
            tracing::warn!(
                "shutdown deadline reached before every ack was sent; the broker will redeliver those messages"
            );
        }
    }
}

/// Releases the acknowledgements of committed items (made by [`AckStage::start`]).
#[derive(Clone)]
pub struct Acker {
    /// To the external-broker ack task; `None` with the embedded broker's hooks.
    broker: Option<mpsc::UnboundedSender<BrokerAck>>,
    health: Arc<Health>,
}

impl Acker {
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
                AckToken::Broker {
                    generation,
                    pkid,
                    seq,
                } => {
                    if let Some(tx) = &self.broker {
                        // Fails only once the ack task is gone (shutdown): the broker
                        // redelivers.
                        let _ = tx.send(BrokerAck {
                            generation,
                            pkid,
                            seq,
                        });
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

/// Releases acks in `seq` order: holds the ones that complete early.
#[derive(Debug, Default)]
pub struct InOrder {
    next: u64,
    early: BTreeMap<u64, BrokerAck>,
}

impl InOrder {
    /// Takes one completed ack; returns the acks now due, in order.
    pub fn complete(&mut self, ack: BrokerAck) -> Vec<BrokerAck> {
        self.early.insert(ack.seq, ack);
        let mut due = Vec::new();
        while let Some(a) = self.early.remove(&self.next) {
            self.next += 1;
            due.push(a);
        }
        due
    }

    /// Acks held back waiting for an earlier one.
    pub fn held(&self) -> usize {
        self.early.len()
    }
}

/// The external-broker ack task: runs until every sink worker drops its sender.
async fn run_broker_acks(mut rx: mpsc::UnboundedReceiver<BrokerAck>, acks: BrokerAcks) {
    let BrokerAcks {
        client,
        generation,
        progress,
    } = acks;
    let mut order = InOrder::default();
    while let Some(ack) = rx.recv().await {
        for ack in order.complete(ack) {
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
    if order.held() > 0 {
        tracing::warn!(
            held = order.held(),
            "shutdown with acks waiting for an uncommitted earlier message; the broker redelivers them"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ack(seq: u64) -> BrokerAck {
        BrokerAck {
            generation: 0,
            pkid: (seq % 65_535) as u16 + 1,
            seq,
        }
    }

    proptest! {
        /// Whatever order workers finish in, acks leave in receive order, each once,
        /// and none leaves before every earlier one has.
        #[test]
        fn acks_leave_in_receive_order(order in Just((0..200u64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut in_order = InOrder::default();
            let mut released = Vec::new();
            let mut completed = std::collections::BTreeSet::new();
            for seq in order {
                completed.insert(seq);
                for a in in_order.complete(ack(seq)) {
                    prop_assert!((0..a.seq).all(|s| completed.contains(&s)));
                    released.push(a.seq);
                }
            }
            prop_assert_eq!(released, (0..200).collect::<Vec<_>>());
            prop_assert_eq!(in_order.held(), 0);
        }
    }
}
