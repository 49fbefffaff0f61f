//! Decoding, sharding and batching: turns the intake queue into batches for the sink
//! workers.
//!
//! Each message is decoded here, by the route its source found for it, and assigned
//! to a worker by its robot id (a message without one, by its topic), so one robot's
//! events always go to the same worker and are committed in receive order. Each worker
//! gets group commit: its pending batch is handed over the moment that worker is free,
//! so an idle pipeline commits a single message at once, and a busy one commits
//! whatever arrived during the previous commit — never on a fixed timer.
//! `batch.max_rows` and `batch.max_messages` bound what is pending across all workers
//! together; when that is full, intake waits, and that wait is what pushes back on the
//! broker and the robots.
//!
//! On `stop`, the intake queue is closed (new messages are refused and stay
//! unacknowledged at the broker), what it already holds is drained, and the last
//! batches are flushed before the senders to the workers are dropped.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Envelope;
use super::decode::{self, DecodeSettings};
use crate::config::BatchConfig;
use crate::model::{Decoded, Reason, TsSource, Unusable, message_fingerprint};
use crate::telemetry;

/// One message and what decoding made of it.
#[derive(Debug)]
pub struct Item {
    pub env: Envelope,
    pub decoded: Result<Decoded, Unusable>,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    pub rows: usize,
}

impl Batch {
    fn push(&mut self, item: Item) {
        self.rows += match &item.decoded {
            Ok(d) => d.row_count(),
            Err(_) => 1,
        };
        self.items.push(item);
    }
}

/// Decodes one envelope by the route it arrived with, counting what metrics need.
pub fn decode_envelope(env: Envelope, settings: &DecodeSettings) -> Item {
    let decoded = match env.route.as_deref() {
        Some(route) => {
            telemetry::message_received(route.label);
            decode::decode(route, &env.topic, &env.payload, env.received_at, settings).and_then(
                |d| {
                    decode::check_identity(route, &d, env.username.as_deref(), settings)?;
                    Ok(d)
                },
            )
        }
        None => Err(Unusable::new(
            Reason::NoRoute,
            format!("no route matches topic {:?}", env.topic),
        )),
    };
    match &decoded {
        Ok(d) if d.ts_source != TsSource::Payload => {
            telemetry::timestamp_fallback(d.ts_source.label())
        }
        Ok(_) => {}
        Err(e) => telemetry::ingest_error(e.reason.label()),
    }
    Item { env, decoded }
}

/// The worker a message goes to: by robot id, else by topic. A stable hash, so the
/// choice is the same across runs (not needed for correctness; it makes runs comparable).
fn shard_of(item: &Item, workers: usize) -> usize {
    let key = match &item.decoded {
        Ok(d) => d.robot_id.as_str(),
        Err(_) => item.env.topic.as_str(),
    };
    (message_fingerprint(key, &[]) as u64 % workers.max(1) as u64) as usize
}

/// Waits until one of the workers with a pending batch is free; returns its index and
/// the permit to hand it over.
async fn any_free<'a>(
    sinks: &'a [mpsc::Sender<Batch>],
    pending: &[Batch],
) -> (
    usize,
    Result<mpsc::Permit<'a, Batch>, mpsc::error::SendError<()>>,
) {
    let waits = pending
        .iter()
        .enumerate()
        .filter(|(_, b)| !b.items.is_empty())
        .map(|(i, _)| Box::pin(async move { (i, sinks[i].reserve().await) }));
    futures::future::select_all(waits).await.0
}

/// Runs until `stop` is cancelled and the intake queue is drained, or a worker is gone.
/// `sinks` holds one sender per worker.
pub async fn run(
    mut intake: mpsc::Receiver<Envelope>,
    sinks: Vec<mpsc::Sender<Batch>>,
    settings: DecodeSettings,
    cfg: BatchConfig,
    stop: CancellationToken,
) {
    let mut pending: Vec<Batch> = (0..sinks.len()).map(|_| Batch::default()).collect();
    let mut stopping = false;
    loop {
        let (messages, rows) = pending
            .iter()
            .fold((0, 0), |(m, r), b| (m + b.items.len(), r + b.rows));
        let full = messages >= cfg.max_messages || rows >= cfg.max_rows;
        tokio::select! {
            biased;
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                intake.close();
            }
            (i, permit) = any_free(&sinks, &pending), if messages > 0 => match permit {
                Ok(permit) => permit.send(std::mem::take(&mut pending[i])),
                Err(_) => return, // a worker is gone; unsent messages stay unacknowledged
            },
            env = intake.recv(), if !full => match env {
                Some(env) => {
                    let item = decode_envelope(env, &settings);
                    pending[shard_of(&item, sinks.len())].push(item);
                }
                None => {
                    for (sink, batch) in sinks.iter().zip(pending) {
                        if !batch.items.is_empty() {
                            let _ = sink.send(batch).await;
                        }
                    }
                    return;
                }
            },
        }
    }
}
