//! Decoding and batching: turns the intake queue into batches for the sink.
//!
//! Group commit: a batch is handed over the moment the sink is free, so an idle
//! pipeline commits a single message at once, and a busy one commits whatever arrived
//! during the previous commit — never on a fixed timer. `batch.max_rows` and
//! `batch.max_messages` bound a batch; when it is full, intake waits, and that wait is
//! what pushes back on the broker and the robots.
//!
//! On `stop`, the intake queue is closed (new messages are refused and stay
//! unacknowledged at the broker), what it already holds is drained, and the last
//! batch is flushed before the sender to the sink is dropped.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Envelope;
use super::decode::{self, DecodeSettings};
use super::route::Router;
use crate::config::BatchConfig;
use crate::model::{Decoded, Reason, TsSource, Unusable};
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

/// Decodes one envelope against the routes, counting what metrics need.
pub fn decode_envelope(env: Envelope, router: &Router, settings: &DecodeSettings) -> Item {
    let decoded = match router.find(&env.topic) {
        Some(route) => {
            telemetry::message_received(route.label);
            decode::decode(route, &env.topic, &env.payload, env.received_at, settings)
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

/// Runs until `stop` is cancelled and the intake queue is drained, or the sink is gone.
pub async fn run(
    mut intake: mpsc::Receiver<Envelope>,
    sink: mpsc::Sender<Batch>,
    router: Arc<Router>,
    settings: DecodeSettings,
    cfg: BatchConfig,
    stop: CancellationToken,
) {
    let mut batch = Batch::default();
    let mut stopping = false;
    loop {
        let full = batch.items.len() >= cfg.max_messages || batch.rows >= cfg.max_rows;
        tokio::select! {
            biased;
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                intake.close();
            }
            permit = sink.reserve(), if !batch.items.is_empty() => match permit {
                Ok(permit) => permit.send(std::mem::take(&mut batch)),
                Err(_) => return, // the sink is gone; unsent messages stay unacknowledged
            },
            env = intake.recv(), if !full => match env {
                Some(env) => batch.push(decode_envelope(env, &router, &settings)),
                None => {
                    if !batch.items.is_empty() {
                        let _ = sink.send(batch).await;
                    }
                    return;
                }
            },
        }
    }
}
