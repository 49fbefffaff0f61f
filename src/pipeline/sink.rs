//! The sink: one transaction per batch, retried while PostgreSQL is unreachable, and
//! acknowledgements released only after commit, in receive order.
//!
//! Failure handling is decided here, once, by the error's kind (`db::is_transient`,
//! in `write_durably`, which both the batch and the one-by-one path use):
//! - a transient error (connection lost, server restarting, overload, disk full, a
//!   privilege revoked) retries the same batch with capped, jittered backoff —
//!   ingestion pauses, the bounded queue fills, and backpressure reaches the broker;
//!   nothing is acknowledged meanwhile, and readiness says why until a commit succeeds;
//! - a transaction that misses `database.commit_timeout` (a connection whose packets
//!   vanish) is abandoned: its connection is closed, never returned to the pool, and
//!   the batch is retried on a fresh one. Whether that COMMIT landed is unknown; the
//!   retry is safe either way, because a redelivered row is skipped (next point) and
//!   robot and job state ignore older events;
//! - a unique violation on the fast metrics insert means the batch holds rows already
//!   stored (a redelivery): the batch is rewritten skipping them;
//! - any other error means the batch holds something PostgreSQL refuses; the batch is
//!   split and each message is written alone, so one bad message lands in
//!   `ingest_errors` and the good ones around it still land.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use super::ack::Acker;
use super::batch::{Batch, Item};
use crate::alerts::AlertSettings;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::db::writes::{
    self, AlertCache, AlertNotes, Caches, Entry, ErrorRow, Learned, MetricsWrite, RollupCache,
    RollupNotes, WriteOptions, Written,
};
use crate::db::{is_transient, sqlstate};
use crate::health::Health;
use crate::model::{Reason, Unusable};
use crate::telemetry;

/// What the sink needs from the configuration.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub error_payload_cap: usize,
    pub retry_backoff_max: Duration,
    /// The client-side deadline on one batch transaction, BEGIN to COMMIT.
    pub commit_timeout: Duration,
    pub alerts: AlertSettings,
}

impl SinkSettings {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            error_payload_cap: cfg.ingest.error_payload_cap,
            retry_backoff_max: cfg.database.retry_backoff_max,
            commit_timeout: cfg.database.commit_timeout,
            alerts: AlertSettings::from_config(&cfg.alerts),
        }
    }
}

/// What a sink worker works with: shared by all, but for its own alert and rollup
/// caches (one robot's messages always reach the same worker).
#[derive(Clone)]
pub struct SinkContext {
    pub pool: PgPool,
    pub settings: SinkSettings,
    pub caches: Arc<Caches>,
    pub alert_cache: Arc<AlertCache>,
    pub rollups: Arc<RollupCache>,
    pub health: Arc<Health>,
}

impl SinkContext {
    /// The context of worker `worker` (1, 2, …; 0 is the context as built): the same
    /// shared parts, empty alert and rollup caches.
    pub fn for_worker(&self, worker: i32) -> SinkContext {
        SinkContext {
            alert_cache: Arc::new(self.alert_cache.sibling()),
            rollups: Arc::new(self.rollups.sibling(worker)),
            ..self.clone()
        }
    }
}

/// Commits batches until the batcher hangs up, releasing each batch's acks after commit;
/// writes the re-triggered alerts and the minute rollups it keeps in memory while idle
/// and before it ends.
pub async fn run(mut batches: mpsc::Receiver<Batch>, cx: SinkContext, acker: Acker) {
    loop {
        // Re-triggered alerts and due rollups are written by the batches; an idle
        // worker writes them after alerts.flush_interval without one (rollups: see
        // RollupCache::idle_flush_in).
        let waiting = cx.alert_cache.has_dirty();
        let rollups_in = cx.rollups.idle_flush_in(Utc::now());
        let next = tokio::select! {
            b = batches.recv() => b,
            () = tokio::time::sleep(cx.settings.alerts.flush_every), if waiting => {
                flush_alerts(&cx).await;
                continue;
            }
            () = tokio::time::sleep(rollups_in.unwrap_or_default()), if rollups_in.is_some() => {
                flush_rollups(&cx, false).await;
                continue;
            }
        };
        let Some(mut batch) = next else { break };
        if cx.alert_cache.edited() {
            flush_alerts(&cx).await;
            cx.alert_cache.forget_clean();
        }
        let held = cx.health.progress.batch_started();
        let started = Instant::now();
        let written = commit(&cx, &mut batch.items).await;
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
        cx.health.progress.batch_done(held);
    }
    if cx.alert_cache.has_dirty() {
        flush_alerts(&cx).await;
    }
    // Stopping: every minute held is written and sealed (this run writes no more).
    while !cx.rollups.is_empty() {
        if !flush_rollups(&cx, true).await {
            break;
        }
    }
}

/// What a worker keeps in memory and writes, when no batch does, in transactions of
/// its own.
#[derive(Debug, Clone, Copy)]
enum Kept {
    /// Re-triggered alerts.
    Alerts,
    /// One chunk of the due minute rollups (of all held, when stopping).
    Rollups { all: bool },
}

impl Kept {
    fn table(self) -> &'static str {
        match self {
            Kept::Alerts => "alerts",
            Kept::Rollups { .. } => "metric_rollups",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kept::Alerts => "re-triggered alerts",
            Kept::Rollups { .. } => "minute rollups",
        }
    }
}

async fn flush_alerts(cx: &SinkContext) {
    write_kept(cx, Kept::Alerts).await;
}

async fn flush_rollups(cx: &SinkContext, all: bool) -> bool {
    write_kept(cx, Kept::Rollups { all }).await
}

/// Writes what the worker keeps of `kind` in a transaction of its own, retrying
/// transient failures like a batch (the drain's deadline ends a hopeless wait). Returns
/// false when PostgreSQL refused it. Nothing of a batch depends on it: re-triggered
/// alerts not written then are the counts of the last `alerts.flush_interval`; rollups
/// not written leave their minutes unsealed, read from the metrics rows.
async fn write_kept(cx: &SinkContext, kind: Kept) -> bool {
    let mut backoff = Backoff::new(cx.settings.retry_backoff_max);
    loop {
        match write_kept_tx(cx, kind).await {
            Ok(n) => {
                telemetry::rows_written(kind.table(), n);
                return true;
            }
            Err(e) if is_transient(&e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?wait, "{} not written; retrying", kind.what());
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "{} not written", kind.what());
                return false;
            }
        }
    }
}

async fn write_kept_tx(cx: &SinkContext, kind: Kept) -> Result<u64, sqlx::Error> {
    let mut alerts = AlertNotes::default();
    let mut rollups = RollupNotes::default();
    let what = format!("write of {} (database.commit_timeout)", kind.what());
    let attempt = own_transaction(cx, &what, async |conn| {
        let mut tx = conn.begin().await?;
        let n = match kind {
            Kept::Alerts => writes::flush_alerts(&mut tx, &cx.alert_cache, &mut alerts).await?,
            Kept::Rollups { all } => {
                writes::flush_rollups(&mut tx, &cx.rollups, Utc::now(), all, &mut rollups).await?
            }
        };
        tx.commit().await?;
        Ok(n)
    })
    .await;
    match attempt {
        Ok(n) => {
            cx.alert_cache.learn(alerts);
            cx.rollups.learn(rollups);
            Ok(n)
        }
        Err(NotCommitted::RolledBack(e)) => Err(e),
        Err(NotCommitted::Unknown { error, .. }) => {
            cx.rollups.unknown_outcome(&rollups);
            Err(error)
        }
    }
}

/// Why a transaction of [`own_transaction`] did not (surely) commit.
enum NotCommitted {
    /// Nothing of it happened: PostgreSQL refused it, or no connection was had.
    RolledBack(sqlx::Error),
    /// It may or may not have committed: the connection failed (perhaps around the
    /// COMMIT), or `database.commit_timeout` passed.
    Unknown { error: sqlx::Error, timed_out: bool },
}

/// Runs `work`, which begins and commits its transaction itself, on a pooled
/// connection of its own within `database.commit_timeout`, and says when the outcome
/// is unknown (what it kept for after the commit may or may not be in the tables). A
/// connection past the deadline is closed, never handed back: a statement, a ROLLBACK
/// or a COMMIT may still be on its way. `what` names it in the timeout's error.
async fn own_transaction<T>(
    cx: &SinkContext,
    what: &str,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, NotCommitted> {
    // Bounded by database.connect_timeout (the pool's acquire timeout).
    let mut conn = cx.pool.acquire().await.map_err(NotCommitted::RolledBack)?;
    let deadline = cx.settings.commit_timeout;
    match tokio::time::timeout(deadline, work(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(error)) if is_transient(&error) => Err(NotCommitted::Unknown {
            error,
            timed_out: false,
        }),
        Ok(Err(e)) => Err(NotCommitted::RolledBack(e)),
        Err(_) => {
            drop(conn.detach());
            Err(NotCommitted::Unknown {
                error: crate::db::timed_out(what, deadline),
                timed_out: true,
            })
        }
    }
}

fn record_written(w: &Written) {
    telemetry::rows_written("robots", w.robots);
    telemetry::rows_written("metrics", w.metrics);
    telemetry::rows_written("logs", w.logs);
    telemetry::rows_written("jobs", w.jobs);
    telemetry::rows_written("ingest_errors", w.ingest_errors);
    telemetry::rows_written("alerts", w.alerts);
    telemetry::rows_written("metric_rollups", w.rollups);
    let e = w.alert_events;
    telemetry::alert_events(e.opened, e.escalated, e.resolved);
}

fn entry(item: &Item) -> Entry<'_> {
    match &item.decoded {
        Ok(decoded) => Entry::Rows {
            decoded,
            received_at: item.env.received_at,
        },
        Err(unusable) => Entry::Unusable(ErrorRow::new(
            &item.env.topic,
            &item.env.payload,
            unusable,
            item.env.client_id.as_deref(),
            item.env.received_at,
        )),
    }
}

/// Writes `entries` in one transaction on a connection of its own, within
/// `commit_timeout`: metrics by a plain insert first; if a row already exists (a
/// redelivery), the transaction is rolled back and the batch written again skipping
/// existing rows.
async fn write_tx(cx: &SinkContext, entries: &[Entry<'_>]) -> Result<Written, sqlx::Error> {
    // Outside the work's future, so what an attempt of unknown outcome did is known.
    let mut plain = Learned::default();
    let mut skipping = Learned::default();
    let what = "batch transaction (database.commit_timeout)";
    let attempt = own_transaction(cx, what, async |conn| {
        match write_tx_with(cx, conn, entries, MetricsWrite::Plain, &mut plain).await {
            Err(e) if writes::is_unique_violation(&e) => {
                // Rolled back: nothing of that attempt happened.
                plain = Learned::default();
                telemetry::commit_failure("redelivered");
                tracing::debug!(
                    "batch holds rows already stored (a redelivery); rewriting it skipping them"
                );
                write_tx_with(cx, conn, entries, MetricsWrite::SkipExisting, &mut skipping).await
            }
            other => other,
        }
    })
    .await;
    match attempt {
        Ok(w) => Ok(w),
        Err(NotCommitted::RolledBack(e)) => Err(e),
        Err(NotCommitted::Unknown { error, timed_out }) => {
            if timed_out {
                telemetry::commit_failure("timeout");
            }
            cx.rollups.unknown_outcome(plain.rollups());
            cx.rollups.unknown_outcome(skipping.rollups());
            Err(error)
        }
    }
}

/// Writes `entries` in one transaction with `metrics`; what it learned goes to the
/// caches once committed, and stays in `learned` when it fails (for the caller to
/// judge).
async fn write_tx_with(
    cx: &SinkContext,
    conn: &mut PgConnection,
    entries: &[Entry<'_>],
    metrics: MetricsWrite,
    learned: &mut Learned,
) -> Result<Written, sqlx::Error> {
    let opts = WriteOptions {
        error_payload_cap: cx.settings.error_payload_cap,
        metrics,
        caches: &cx.caches,
        alert_cache: &cx.alert_cache,
        rollups: &cx.rollups,
        alerts: &cx.settings.alerts,
    };
    let mut tx = conn.begin().await?;
    let written = writes::write(&mut tx, entries, &opts, learned).await?;
    tx.commit().await?;
    // Only now: ids from a rolled-back transaction must never enter the cache.
    cx.caches
        .learn(std::mem::take(learned), &cx.alert_cache, &cx.rollups);
    Ok(written)
}

/// Commits the batch; returns only once every message is durable (as rows or as an
/// `ingest_errors` row). A batch PostgreSQL refuses is written one message at a time.
async fn commit(cx: &SinkContext, items: &mut [Item]) -> Written {
    let attempt = {
        let entries: Vec<Entry> = items.iter().map(entry).collect();
        write_durably(cx, &entries).await
    };
    match attempt {
        Ok(w) => w,
        Err(e) => {
            telemetry::commit_failure("rejected");
            tracing::warn!(error = %e, messages = items.len(), "batch rejected by PostgreSQL; writing its messages one by one");
            commit_one_by_one(cx, items).await
        }
    }
}

/// Each message in its own transaction: the one PostgreSQL refuses is kept as an
/// ingest error, the others land.
async fn commit_one_by_one(cx: &SinkContext, items: &mut [Item]) -> Written {
    let mut total = Written::default();
    for item in items.iter_mut() {
        loop {
            match write_durably(cx, &[entry(item)]).await {
                Ok(w) => {
                    total += w;
                    break;
                }
                Err(e) => {
                    // This message is what PostgreSQL refuses: keep it as an ingest error.
                    // The error text stays in the database, never in an HTTP answer.
                    let reason = Unusable::new(Reason::RejectedByDatabase, e.to_string());
                    telemetry::ingest_error(reason.reason.label());
                    tracing::warn!(topic = %item.env.topic, error = %e, "message rejected by PostgreSQL; stored in ingest_errors");
                    item.decoded = Err(reason);
                }
            }
        }
    }
    total
}

/// The one retry decision: writes `entries` in one transaction, retrying transient
/// failures with capped, jittered backoff and without limit (the caller's shutdown
/// deadline is what ends a hopeless wait, leaving the messages unacknowledged).
/// Returns what was written, or the error PostgreSQL refuses the entries with.
/// Readiness learns each outcome: not ready from the first failed attempt until one
/// succeeds (or the database judges the entries themselves).
async fn write_durably(cx: &SinkContext, entries: &[Entry<'_>]) -> Result<Written, sqlx::Error> {
    let health = &cx.health;
    let mut outcome = health.commit_outcome();
    let mut backoff = Backoff::new(cx.settings.retry_backoff_max);
    loop {
        let attempt = write_tx(cx, entries).await;
        health.progress.attempt_finished();
        match attempt {
            Ok(w) => {
                outcome.succeeded();
                return Ok(w);
            }
            Err(e) if is_transient(&e) => {
                outcome.failed(sqlstate(&e));
                telemetry::commit_failure("transient");
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?wait, messages = entries.len(), "batch not committed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
