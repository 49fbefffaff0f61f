//! Decoding, sharding and batching: turns the intake queue into batches for the sink
//! workers.
//!
//! Each message is decoded here, by the route its source found for it, and assigned
//! to a worker by its robot id (a message without one, by its topic), so one robot's
//! events always go to the same worker and are committed in receive order. Each worker
//! gets group commit: its pending batch is handed over the moment that worker is free,
//! so an idle pipeline commits a single message at once, and a busy one commits
//! whatever arrived during the previous commit. With `batch.linger`, a batch is handed
//! over only once its first message has waited that long (or the pending batches are
//! full, or intake is stopping): fewer, larger transactions for a bounded wait.
//! `batch.max_rows` and `batch.max_messages` bound what is pending across all workers
//! together; when that is full, intake waits, and that wait is what pushes back on the
//! broker and the robots.
//!
//! On `stop`, the intake queue is closed (new messages are refused and stay
//! unacknowledged at the broker), what it already holds is drained, and the last
//! batches are flushed before the senders to the workers are dropped.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
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
    /// When its first message arrived (for `batch.linger`).
    started: Option<Instant>,
}

impl Batch {
    fn push(&mut self, item: Item) {
        self.started.get_or_insert_with(Instant::now);
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

/// Waits until one of the workers with a batch ready to go is free; returns its index
/// and the permit to hand it over.
async fn any_free<'a>(
    sinks: &'a [mpsc::Sender<Batch>],
    ready: &[bool],
) -> (
    usize,
    Result<mpsc::Permit<'a, Batch>, mpsc::error::SendError<()>>,
) {
    let waits = ready
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(i, _)| Box::pin(async move { (i, sinks[i].reserve().await) }));
    futures::future::select_all(waits).await.0
}

/// Which pending batches may go now (into `ready`, one flag per batch; a buffer the
/// caller reuses, as this runs once per message), and when the next one that may not
/// yet will be ready. Everything non-empty may go once the batches are full or intake
/// stops.
fn readiness(
    pending: &[Batch],
    linger: Duration,
    now: Instant,
    all: bool,
    ready: &mut Vec<bool>,
) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    ready.clear();
    ready.extend(pending.iter().map(|b| match b.started {
        None => false,
        Some(_) if all || linger.is_zero() => true,
        Some(started) => {
            let due = started + linger;
            if due > now {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            due <= now
        }
    }));
    next
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
    let mut ready: Vec<bool> = Vec::with_capacity(sinks.len());
    loop {
        let (messages, rows) = pending
            .iter()
            .fold((0, 0), |(m, r), b| (m + b.items.len(), r + b.rows));
        let full = messages >= cfg.max_messages || rows >= cfg.max_rows;
        let next_due = readiness(
            &pending,
            cfg.linger,
            Instant::now(),
            full || stopping,
            &mut ready,
        );
        let any_ready = ready.iter().any(|r| *r);
        tokio::select! {
            biased;
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                intake.close();
            }
            (i, permit) = any_free(&sinks, &ready), if any_ready => match permit {
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
            () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(at: Option<Instant>) -> Batch {
        Batch {
            started: at,
            ..Batch::default()
        }
    }

    #[test]
    fn a_batch_goes_once_its_first_message_lingered() {
        let now = Instant::now();
        let linger = Duration::from_millis(20);
        let pending = [
            started(None),
            started(Some(now - Duration::from_millis(25))),
            started(Some(now - Duration::from_millis(5))),
        ];
        let mut ready = Vec::new();
        let next = readiness(&pending, linger, now, false, &mut ready);
        assert_eq!(ready, [false, true, false]);
        assert_eq!(next, Some(now + Duration::from_millis(15)));
        // Full (or stopping): everything non-empty goes.
        readiness(&pending, linger, now, true, &mut ready);
        assert_eq!(ready, [false, true, true]);
        // No linger: at once.
        let next = readiness(&pending, Duration::ZERO, now, false, &mut ready);
        assert_eq!((ready, next), (vec![false, true, true], None));
    }
}
