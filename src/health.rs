//! Liveness and readiness state shared by the pipeline, the admin port and metrics.
//!
//! Readiness is one state derived from what the components report, by a rule that
//! cannot flap between two writers:
//! - a failed commit attempt (one worth retrying: `db::is_transient`) makes the daemon
//!   not ready from that moment until *that sink worker* commits again; neither the
//!   probe nor another worker's success clears it, so a database that serves reads
//!   but refuses writes (disk full, a privilege revoked) stays not ready throughout;
//! - the once-a-second probe (`background::monitor`) can only add a reason
//!   (`database_unreachable`), never remove a commit failure;
//! - a sink worker holding one batch longer than its deadline (`database.commit_timeout`)
//!   is `pipeline_stalled`, whatever else is known.
//!
//! The first reason that applies is the one reported, in this order: `draining`,
//! `broker_disconnected`, `database_unreachable` (the probe failed, or the last commit
//! failed without the server answering), `commits_failing: <SQLSTATE>`,
//! `pipeline_stalled`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::telemetry;

/// What `/readyz` reports. Each flag is written by the component that knows it.
#[derive(Debug)]
pub struct Health {
    broker_connected: AtomicBool,
    /// The probe's last answer.
    probe_ok: AtomicBool,
    draining: AtomicBool,
    /// Sink workers whose last attempt failed and that have not committed since.
    failing_writers: AtomicUsize,
    /// The SQLSTATE of the latest failed commit attempt; `None` when the server never
    /// answered (connection lost, deadline missed).
    last_commit_failure: Mutex<Option<String>>,
    /// How long a sink worker may hold one batch before readiness says it is stalled.
    batch_deadline: Duration,
    /// Unix millis of the last message received; 0 = none yet.
    last_message_ms: AtomicI64,
    received: AtomicU64,
    acked: AtomicU64,
    /// What the stages report for systemd's watchdog.
    pub progress: crate::watchdog::Progress,
}

impl Default for Health {
    fn default() -> Self {
        Self::new(crate::config::DatabaseConfig::default().commit_timeout)
    }
}

/// Why the daemon is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    Draining,
    BrokerDisconnected,
    DatabaseUnreachable,
    /// Commits fail with this SQLSTATE while the server answers.
    CommitsFailing(String),
    PipelineStalled,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Draining => f.write_str("draining"),
            NotReady::BrokerDisconnected => f.write_str("broker_disconnected"),
            NotReady::DatabaseUnreachable => f.write_str("database_unreachable"),
            NotReady::CommitsFailing(code) => write!(f, "commits_failing: {code}"),
            NotReady::PipelineStalled => f.write_str("pipeline_stalled"),
        }
    }
}

/// The body of `/readyz`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Why not ready: `draining`, `broker_disconnected`, `database_unreachable`,
    /// `commits_failing: <SQLSTATE>` or `pipeline_stalled`; absent when ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "commits_failing: 53100")]
    pub reason: Option<String>,
    pub broker_connected: bool,
    /// The probe answers and the last commit did not lose its connection.
    pub database_reachable: bool,
    /// Sink workers have failed commits they have not yet retried successfully.
    pub commits_failing: bool,
    /// A sink worker holds a batch past `database.commit_timeout`.
    pub pipeline_stalled: bool,
    pub draining: bool,
    pub messages_awaiting_ack: u64,
}

/// SQLSTATE classes that mean the connection or the server went away rather than
/// refused the write: 08 connection exception, 57P admin shutdown / cannot connect now.
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("57P")
}

/// One sink worker's failing commit, counted in [`Health`] until it commits again
/// (or gives the batch up, or is dropped).
#[derive(Debug)]
pub struct CommitOutcome<'a> {
    health: &'a Health,
    failing: bool,
}

impl CommitOutcome<'_> {
    /// An attempt failed in a way worth retrying; `sqlstate` is the server's code if
    /// it answered.
    pub fn failed(&mut self, sqlstate: Option<String>) {
        if let Ok(mut last) = self.health.last_commit_failure.lock() {
            *last = sqlstate;
        }
        if !self.failing {
            self.failing = true;
            self.health.failing_writers.fetch_add(1, Ordering::Relaxed);
        }
        self.health.publish();
    }

    /// The database took (or judged) the worker's write: its failure, if any, is over.
    pub fn succeeded(&mut self) {
        if self.failing {
            self.failing = false;
            self.health.failing_writers.fetch_sub(1, Ordering::Relaxed);
            self.health.publish();
        }
    }
}

impl Drop for CommitOutcome<'_> {
    fn drop(&mut self) {
        self.succeeded();
    }
}

impl Health {
    /// `batch_deadline`: how long a sink may hold one batch (`database.commit_timeout`).
    pub fn new(batch_deadline: Duration) -> Self {
        Self {
            broker_connected: AtomicBool::new(false),
            probe_ok: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            failing_writers: AtomicUsize::new(0),
            last_commit_failure: Mutex::new(None),
            batch_deadline,
            last_message_ms: AtomicI64::new(0),
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            progress: crate::watchdog::Progress::default(),
        }
    }

    pub fn set_broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
        telemetry::broker_connected(up);
        self.publish();
    }

    /// The readiness probe's answer (or the start-up migration's).
    pub fn set_database_reachable(&self, up: bool) {
        self.probe_ok.store(up, Ordering::Relaxed);
        self.publish();
    }

    /// A sink worker's view of its commits, for one batch's attempts.
    pub fn commit_outcome(&self) -> CommitOutcome<'_> {
        CommitOutcome {
            health: self,
            failing: false,
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.publish();
    }

    pub fn message_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.last_message_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn messages_acked(&self, n: u64) {
        self.acked.fetch_add(n, Ordering::Relaxed);
    }

    pub fn awaiting_ack(&self) -> u64 {
        self.received
            .load(Ordering::Relaxed)
            .saturating_sub(self.acked.load(Ordering::Relaxed))
    }

    pub fn last_message_age(&self) -> Option<Duration> {
        match self.last_message_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(
                (Utc::now().timestamp_millis() - ms).max(0) as u64,
            )),
        }
    }

    /// The state and the rule of the module docs.
    pub fn readiness(&self) -> Readiness {
        let broker_connected = self.broker_connected.load(Ordering::Relaxed);
        let draining = self.draining.load(Ordering::Relaxed);
        let probe_ok = self.probe_ok.load(Ordering::Relaxed);
        let commits_failing = self.failing_writers.load(Ordering::Relaxed) > 0;
        let failure = if commits_failing {
            self.last_commit_failure
                .lock()
                .map(|code| code.clone())
                .unwrap_or(None)
        } else {
            None
        };
        let commit_lost_connection =
            commits_failing && failure.as_deref().is_none_or(connection_lost);
        let database_reachable = probe_ok && !commit_lost_connection;
        let pipeline_stalled = self.progress.held_longer_than(self.batch_deadline);
        let reason = if draining {
            Some(NotReady::Draining)
        } else if !broker_connected {
            Some(NotReady::BrokerDisconnected)
        } else if !database_reachable {
            Some(NotReady::DatabaseUnreachable)
        } else if commits_failing {
            // Not a lost connection, so the server answered with a code.
            Some(NotReady::CommitsFailing(failure.unwrap_or_default()))
        } else if pipeline_stalled {
            Some(NotReady::PipelineStalled)
        } else {
            None
        };
        Readiness {
            ready: reason.is_none(),
            reason: reason.map(|r| r.to_string()),
            broker_connected,
            database_reachable,
            commits_failing,
            pipeline_stalled,
            draining,
            messages_awaiting_ack: self.awaiting_ack(),
        }
    }

    /// Refreshes the readiness gauges; called on every change and by the monitor (the
    /// stall is a matter of time passing).
    pub fn publish(&self) {
        let r = self.readiness();
        telemetry::readiness(r.ready, r.database_reachable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Health {
        let h = Health::new(Duration::from_secs(30));
        h.set_broker_connected(true);
        h.set_database_reachable(true);
        h
    }

    #[test]
    fn a_failed_commit_holds_until_that_worker_commits_whatever_the_probe_says() {
        let h = up();
        assert_eq!(h.readiness().reason, None);
        let mut a = h.commit_outcome();
        let mut b = h.commit_outcome();
        a.failed(Some("53100".into()));
        for _ in 0..5 {
            h.set_database_reachable(true);
            b.succeeded();
            let r = h.readiness();
            assert!(!r.ready);
            assert_eq!(r.reason.as_deref(), Some("commits_failing: 53100"));
            assert!(r.database_reachable);
        }
        a.succeeded();
        assert!(h.readiness().ready);
    }

    #[test]
    fn a_commit_without_an_answer_is_an_unreachable_database() {
        let h = up();
        {
            let mut a = h.commit_outcome();
            a.failed(None);
            let r = h.readiness();
            assert_eq!(r.reason.as_deref(), Some("database_unreachable"));
            assert!(!r.database_reachable);
            a.failed(Some("57P01".into()));
            assert_eq!(
                h.readiness().reason.as_deref(),
                Some("database_unreachable")
            );
        }
        // Dropped (the batch given up or the worker gone): no longer counted.
        assert!(h.readiness().ready);
        h.set_database_reachable(false);
        assert_eq!(
            h.readiness().reason.as_deref(),
            Some("database_unreachable")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_held_past_its_deadline_is_a_stalled_pipeline() {
        let h = up();
        let held = h.progress.batch_started();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(h.readiness().ready);
        tokio::time::advance(Duration::from_secs(2)).await;
        let r = h.readiness();
        assert_eq!(r.reason.as_deref(), Some("pipeline_stalled"));
        h.progress.batch_done(held);
        assert!(h.readiness().ready);
    }
}
