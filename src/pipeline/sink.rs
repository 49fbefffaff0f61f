//! The sink: one transaction per batch, retried while PostgreSQL is unreachable, and
//! acknowledgements released only after commit, in receive order.
//!
//! Failure handling is decided here, once:
//! - a transient error (connection lost, server restarting, overload) retries the
//!   same batch with capped exponential backoff — ingestion pauses, the bounded queue
//!   fills, and backpressure reaches the broker; nothing is acknowledged meanwhile;
//! - any other error means the batch holds something PostgreSQL refuses; the batch is
//!   split and each message is written alone, so one bad message lands in
//!   `ingest_errors` and the good ones around it still land.

use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::mpsc;

use super::ack::Acker;
use super::batch::{Batch, Item};
use super::decode::{Reason, Unusable};
use crate::db::is_transient;
use crate::db::writes::{self, MetricsWrite, Outcome, Written};
use crate::health::Health;
use crate::telemetry;

#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub error_payload_cap: usize,
    pub retry_backoff_max: Duration,
}

pub async fn run(
    mut batches: mpsc::Receiver<Batch>,
    pool: PgPool,
    acker: Acker,
    settings: SinkSettings,
    health: Arc<Health>,
) {
    while let Some(mut batch) = batches.recv().await {
        let started = Instant::now();
        let written = commit(&pool, &mut batch.items, &settings, &health).await;
        let elapsed = started.elapsed();
        telemetry::batch_committed(batch.items.len(), elapsed);
        record_written(&written);
        let now = Utc::now();
        for item in &batch.items {
            let lag = (now - item.env.received_at).to_std().unwrap_or_default();
            telemetry::end_to_end_lag(lag);
        }
        tracing::debug!(
            messages = batch.items.len(),
            rows = batch.rows,
            ?elapsed,
            "batch committed"
        );
        acker.release(batch.items).await;
    }
}

fn record_written(w: &Written) {
    telemetry::rows_written("robots", w.robots);
    telemetry::rows_written("metrics", w.metrics);
    telemetry::rows_written("logs", w.logs);
    telemetry::rows_written("jobs", w.jobs);
    telemetry::rows_written("ingest_errors", w.ingest_errors);
}

fn outcomes<'a>(items: &'a [Item]) -> Vec<Outcome<'a>> {
    items.iter().map(outcome).collect()
}

fn outcome(item: &Item) -> Outcome<'_> {
    match &item.outcome {
        Ok(decoded) => Outcome::Rows {
            decoded,
            received_at: item.env.received_at,
        },
        Err(unusable) => Outcome::Error(writes::error_row(
            &item.env.topic,
            &item.env.payload,
            unusable,
            item.env.client_id.as_deref(),
            item.env.received_at,
        )),
    }
}

/// Writes `outcomes` in one transaction: metrics by a plain insert first; if a row
/// already exists (a redelivery), the transaction is rolled back and the batch written
/// again skipping existing rows.
async fn write_tx(
    pool: &PgPool,
    outcomes: &[Outcome<'_>],
    cap: usize,
) -> Result<Written, sqlx::Error> {
    match write_tx_with(pool, outcomes, cap, MetricsWrite::Plain).await {
        Err(e) if writes::is_unique_violation(&e) => {
            telemetry::commit_failure("redelivered");
            tracing::debug!(
                "batch holds rows already stored (a redelivery); rewriting it skipping them"
            );
            write_tx_with(pool, outcomes, cap, MetricsWrite::SkipExisting).await
        }
        other => other,
    }
}

async fn write_tx_with(
    pool: &PgPool,
    outcomes: &[Outcome<'_>],
    cap: usize,
    metrics: MetricsWrite,
) -> Result<Written, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let written = writes::write(&mut tx, outcomes, cap, metrics).await?;
    tx.commit().await?;
    Ok(written)
}

/// Commits the batch; returns only once every message is durable (as rows or as an
/// `ingest_errors` row). Retries transient failures without limit: the caller's
/// shutdown deadline is what ends a hopeless wait, leaving the messages unacknowledged.
async fn commit(pool: &PgPool, items: &mut [Item], s: &SinkSettings, health: &Health) -> Written {
    let mut backoff = Backoff::new(s.retry_backoff_max);
    loop {
        match write_tx(pool, &outcomes(items), s.error_payload_cap).await {
            Ok(w) => {
                health.set_database_reachable(true);
                return w;
            }
            Err(e) if is_transient(&e) => {
                health.set_database_reachable(false);
                telemetry::commit_failure("transient");
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?wait, messages = items.len(), "batch not committed; PostgreSQL unavailable, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                telemetry::commit_failure("rejected");
                tracing::warn!(error = %e, messages = items.len(), "batch rejected by PostgreSQL; writing its messages one by one");
                return commit_one_by_one(pool, items, s, health).await;
            }
        }
    }
}

async fn commit_one_by_one(
    pool: &PgPool,
    items: &mut [Item],
    s: &SinkSettings,
    health: &Health,
) -> Written {
    let mut total = Written::default();
    for item in items.iter_mut() {
        let mut backoff = Backoff::new(s.retry_backoff_max);
        loop {
            match write_tx(pool, &[outcome(item)], s.error_payload_cap).await {
                Ok(w) => {
                    health.set_database_reachable(true);
                    add(&mut total, &w);
                    break;
                }
                Err(e) if is_transient(&e) => {
                    health.set_database_reachable(false);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    // This message is what PostgreSQL refuses: keep it as an ingest error.
                    // The error text stays in the database, never in an HTTP answer.
                    let reason = Unusable::new(Reason::RejectedByDatabase, e.to_string());
                    telemetry::ingest_error(reason.reason.label());
                    tracing::warn!(topic = %item.env.topic, error = %e, "message rejected by PostgreSQL; stored in ingest_errors");
                    item.outcome = Err(reason);
                }
            }
        }
    }
    total
}

fn add(total: &mut Written, w: &Written) {
    total.robots += w.robots;
    total.metrics += w.metrics;
    total.logs += w.logs;
    total.jobs += w.jobs;
    total.ingest_errors += w.ingest_errors;
}

/// Capped exponential backoff starting at 100 ms.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(100).min(max),
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(100).min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let seq: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
