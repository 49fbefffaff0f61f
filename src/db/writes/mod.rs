//! The SQL that writes one batch, inside the caller's transaction; one file per table.
//!
//! A batch is a slice of [`Entry`]s, one per message: the rows it decoded to, or the
//! `ingest_errors` row of a message that cannot be used. [`write`] groups them by table
//! and issues one `UNNEST` statement per table (plus one statement per job event and
//! scan, applied in receive order), in a fixed order: robots, metrics, alerts, logs,
//! jobs and scans, command replies, errors.
//!
//! Every table is idempotent on redelivery: metrics rows are unique on (robot, ts, set
//! of names) (see `metrics.rs` for the compact shape, the fast path and its fallback;
//! `dictionary.rs` for the name and set dictionaries), logs on (dedup_key, ts), jobs
//! on (robot_id, start_time); robot status and job updates ignore events older than what
//! is stored. Robots are upserted once per robot per batch, in robot-id order (so
//! concurrent instances cannot deadlock), and `last_seen` never moves backwards.

mod alerts;
mod commands;
mod dictionary;
mod errors;
mod jobs;
mod logs;
mod metrics;
mod robots;
mod rollups;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::alerts::AlertSettings;
use crate::model::{Decoded, JobEvent, LogRow};

pub use alerts::{AlertCache, AlertEdits, AlertNotes, flush as flush_alerts};
pub use dictionary::Dictionary;
pub use errors::ErrorRow;
pub(crate) use logs::insert as insert_logs;
pub use metrics::{MetricsWrite, is_unique_violation};
pub use robots::RobotCache;
pub use rollups::{RollupCache, RollupNotes, flush_due as flush_rollups};

/// One message's contribution to a batch write.
pub enum Entry<'a> {
    /// What a usable message decoded to.
    Rows {
        decoded: &'a Decoded,
        received_at: DateTime<Utc>,
    },
    /// A message that cannot be used, kept in `ingest_errors`.
    Unusable(ErrorRow<'a>),
}

/// Rows committed, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// `robots` rows written (a robot only checked against its cached row is not).
    pub robots: u64,
    /// Metric *values* (a `metrics` row holds all values of one message).
    pub metrics: u64,
    pub logs: u64,
    pub jobs: u64,
    pub ingest_errors: u64,
    /// Alert rows opened or changed.
    pub alerts: u64,
    /// `metric_rollups` rows (per-minute partials) written.
    pub rollups: u64,
    pub alert_events: AlertEvents,
}

/// Alert events a batch wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AlertEvents {
    pub opened: u64,
    pub escalated: u64,
    pub resolved: u64,
}

impl AlertEvents {
    pub fn count(&mut self, e: crate::alerts::Event) {
        use crate::alerts::Event;
        *match e {
            Event::Opened(_) => &mut self.opened,
            Event::Escalated => &mut self.escalated,
            Event::Resolved => &mut self.resolved,
        } += 1;
    }
}

impl std::ops::AddAssign for Written {
    fn add_assign(&mut self, w: Written) {
        self.robots += w.robots;
        self.metrics += w.metrics;
        self.logs += w.logs;
        self.jobs += w.jobs;
        self.ingest_errors += w.ingest_errors;
        self.alerts += w.alerts;
        self.rollups += w.rollups;
        self.alert_events.opened += w.alert_events.opened;
        self.alert_events.escalated += w.alert_events.escalated;
        self.alert_events.resolved += w.alert_events.resolved;
    }
}

/// A job event or a scanned item (recorded on the active job).
enum JobOp<'a> {
    Event(&'a JobEvent),
    Scan(&'a Value),
}

/// The in-process copies a batch reads instead of asking PostgreSQL: the metric name
/// and set dictionaries, and the robots rows fleetsink wrote. What a batch adds to
/// them goes to a [`Learned`], kept by [`Caches::learn`] only once the transaction
/// committed: nothing from a rolled-back transaction may enter them.
#[derive(Debug)]
pub struct Caches {
    pub dictionary: Dictionary,
    pub robots: RobotCache,
}

/// What one batch learned for the [`Caches`] and its worker's [`AlertCache`] and
/// [`RollupCache`].
#[derive(Debug, Default)]
pub struct Learned {
    dictionary: dictionary::Learned,
    robots: robots::RobotNotes,
    alerts: AlertNotes,
    rollups: RollupNotes,
}

impl Learned {
    /// What the transaction did to its worker's rollups (for
    /// [`RollupCache::unknown_outcome`] when its commit's outcome is unknown).
    pub fn rollups(&self) -> &RollupNotes {
        &self.rollups
    }
}

impl Caches {
    /// `last_seen_every`: `robots.last_seen_interval()`.
    pub fn new(last_seen_every: std::time::Duration) -> Self {
        Self {
            dictionary: Dictionary::default(),
            robots: RobotCache::new(last_seen_every),
        }
    }

    /// Keeps what a committed batch learned (its alerts and rollups: in the caches of
    /// the worker that wrote it).
    pub fn learn(&self, learned: Learned, alerts: &AlertCache, rollups: &RollupCache) {
        self.dictionary.learn(learned.dictionary);
        self.robots.note(learned.robots);
        alerts.learn(learned.alerts);
        rollups.learn(learned.rollups);
    }
}

/// How to write a batch, and the shared state writing needs.
pub struct WriteOptions<'a> {
    pub error_payload_cap: usize,
    pub metrics: MetricsWrite,
    pub caches: &'a Caches,
    /// The writing worker's alerts.
    pub alert_cache: &'a AlertCache,
    /// The writing worker's per-minute rollups.
    pub rollups: &'a RollupCache,
    /// Thresholds and the alert policy.
    pub alerts: &'a AlertSettings,
}

/// Writes everything `entries` produced. The caller owns the transaction.
pub async fn write(
    conn: &mut PgConnection,
    entries: &[Entry<'_>],
    opts: &WriteOptions<'_>,
    learned: &mut Learned,
) -> Result<Written, sqlx::Error> {
    let mut robots = robots::Robots::default();
    let mut metrics: Vec<&Decoded> = Vec::new();
    let mut readings = alerts::Readings::default();
    let mut logs: Vec<LogRow> = Vec::new();
    // Job events and scans together, in receive order: a scan belongs to the job that
    // is active when it arrives, even when the job completes later in the same batch.
    let mut job_ops: Vec<(&str, JobOp)> = Vec::new();
    let mut errors: Vec<&ErrorRow> = Vec::new();
    let mut answers: Vec<commands::Answer> = Vec::new();

    for e in entries {
        match e {
            Entry::Unusable(row) => errors.push(row),
            Entry::Rows {
                decoded: d,
                received_at,
            } => {
                robots.add(d, *received_at);
                if !d.metrics.is_empty() {
                    metrics.push(d);
                    readings.add(d);
                }
                logs.extend(d.logs.iter().cloned());
                if let Some(job) = &d.job {
                    job_ops.push((&d.robot_id, JobOp::Event(job)));
                }
                if let Some(item) = &d.scan {
                    job_ops.push((&d.robot_id, JobOp::Scan(item)));
                }
                if let Some(reply) = &d.reply {
                    // An answer may set the robot's status (commands::status_after).
                    learned.robots.forget(&d.robot_id);
                    answers.push(commands::Answer {
                        robot_id: &d.robot_id,
                        reply,
                        at: *received_at,
                    });
                }
            }
        }
    }

    let mut written = Written::default();
    let robot_ids = if robots.is_empty() {
        Default::default()
    } else {
        let (ids, n) = robots
            .upsert(conn, &opts.caches.robots, &mut learned.robots, &mut logs)
            .await?;
        written.robots = n;
        ids
    };
    if !metrics.is_empty() {
        let targets = metrics::Targets {
            dict: &opts.caches.dictionary,
            learned: &mut learned.dictionary,
            rollups: opts.rollups,
            rollup_notes: &mut learned.rollups,
        };
        written.metrics =
            metrics::insert(conn, &metrics, &robot_ids, targets, opts.metrics).await?;
    }
    // After the batch's own rows are noted: a minute they fall in is not sealed.
    written.rollups =
        rollups::flush_due(conn, opts.rollups, Utc::now(), false, &mut learned.rollups).await?;
    if !readings.is_empty() {
        written.alerts = alerts::evaluate(
            conn,
            &readings,
            opts.alerts,
            opts.alert_cache,
            &mut learned.alerts,
            &mut logs,
            &mut written.alert_events,
        )
        .await?;
    }
    written.alerts += alerts::flush_due(conn, opts.alert_cache, &mut learned.alerts).await?;
    if !logs.is_empty() {
        written.logs += logs::insert(conn, &logs).await?;
    }
    for (robot_id, op) in job_ops {
        match op {
            JobOp::Event(job) => written.jobs += jobs::apply(conn, robot_id, job).await?,
            JobOp::Scan(item) => jobs::record_scan(conn, robot_id, item).await?,
        }
    }
    if !answers.is_empty() {
        commands::record(conn, &answers).await?;
    }
    if !errors.is_empty() {
        written.ingest_errors = errors::insert(conn, &errors, opts.error_payload_cap).await?;
    }
    Ok(written)
}

/// PostgreSQL text and jsonb cannot hold NUL; JSON may carry it as `\u0000`.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_clean(&mut out, s);
    out
}

/// Appends `s` to `buf`, its NULs removed (see [`clean`]).
pub(crate) fn push_clean(buf: &mut String, s: &str) {
    if s.contains('\0') {
        buf.extend(s.chars().filter(|&c| c != '\0'));
    } else {
        buf.push_str(s);
    }
}

pub(crate) fn clean_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(a) => Value::Array(a.iter().map(clean_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (clean(k), clean_json(v))).collect())
        }
        other => other.clone(),
    }
}
