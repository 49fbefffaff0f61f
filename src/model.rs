//! The data model every layer shares: what one MQTT message becomes (rows for the
//! tables, robot state, a job event) or why it cannot be used.
//!
//! This module depends on nothing else in the crate. Decoding produces these types,
//! the database layer writes them, and neither needs to know about the other.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Why a message is unusable. The label is a metric label; keep the set small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TooLarge,
    InvalidUtf8,
    NotJson,
    NotObject,
    MissingRobotId,
    InvalidRobotId,
    InvalidValue,
    NoRoute,
    RejectedByDatabase,
    /// The payload names a robot other than the authenticated publisher.
    IdentityMismatch,
}

impl Reason {
    /// Every reason, for metrics that start at zero.
    pub const ALL: [Reason; 10] = [
        Reason::TooLarge,
        Reason::InvalidUtf8,
        Reason::NotJson,
        Reason::NotObject,
        Reason::MissingRobotId,
        Reason::InvalidRobotId,
        Reason::InvalidValue,
        Reason::NoRoute,
        Reason::RejectedByDatabase,
        Reason::IdentityMismatch,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingRobotId => "missing_robot_id",
            Reason::InvalidRobotId => "invalid_robot_id",
            Reason::InvalidValue => "invalid_value",
            Reason::NoRoute => "no_route",
            Reason::RejectedByDatabase => "rejected_by_database",
            Reason::IdentityMismatch => "identity_mismatch",
        }
    }
}

/// A message fleetsink cannot use, and why; stored in `ingest_errors`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {detail}", reason.label())]
pub struct Unusable {
    pub reason: Reason,
    pub detail: String,
}

impl Unusable {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// How the record's timestamp was obtained; anything but `Payload` is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsSource {
    Payload,
    Missing,
    Unparsable,
    Skewed,
}

impl TsSource {
    pub fn label(self) -> &'static str {
        match self {
            TsSource::Payload => "payload",
            TsSource::Missing => "missing",
            TsSource::Unparsable => "unparsable",
            TsSource::Skewed => "skewed",
        }
    }
}

/// One value of a message (its robot and time are the message's: [`Decoded`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub name: String,
    pub value: f64,
    pub unit: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub robot_id: Option<String>,
    pub ts: DateTime<Utc>,
    pub level: String,
    pub category: String,
    pub source: Option<String>,
    pub message: String,
    pub details: Option<Value>,
    /// Unique with `ts`: a redelivered message does not add a second row.
    pub dedup_key: i64,
}

/// What a status message says about the robot itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RobotState {
    pub status: Option<String>,
    pub ip_address: Option<String>,
    pub camera_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobAction {
    Start,
    Progress,
    Complete,
    Cancel,
    Fail,
}

impl JobAction {
    /// The `jobs.status` a job has after this event.
    pub fn job_status(self) -> &'static str {
        match self {
            JobAction::Start | JobAction::Progress => "active",
            JobAction::Complete => "completed",
            JobAction::Cancel => "cancelled",
            JobAction::Fail => "failed",
        }
    }
}

/// One job event (README, "Topics": the job state machine); applied per robot in
/// receive order by the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub action: JobAction,
    pub ts: DateTime<Utc>,
    /// The job's own start time when the payload says (`start_time`).
    pub start_time: Option<DateTime<Utc>>,
    pub task_name: Option<String>,
    pub phase: Option<String>,
    pub percent: Option<f64>,
    pub items_done: Option<i64>,
    pub items_total: Option<i64>,
    pub elapsed: Option<f64>,
    pub estimated: Option<f64>,
    pub action_duration: Option<f64>,
    pub success: Option<bool>,
    pub reason: Option<String>,
    pub last_item: Option<Value>,
}

/// Everything one message produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub robot_id: String,
    /// The message's own time (payload or receive time).
    pub ts: DateTime<Utc>,
    pub ts_source: TsSource,
    pub metrics: Vec<MetricRow>,
    pub logs: Vec<LogRow>,
    pub state: Option<RobotState>,
    pub job: Option<JobEvent>,
    /// A scanned item, recorded as the active job's `last_item`.
    pub scan: Option<Value>,
    /// A robot's answer to a command (matched to `commands` by `command_id`).
    pub reply: Option<CommandReply>,
}

/// A robot's answer on `tonypi/commands/response` or `tonypi/emergency_stop/response`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReply {
    pub command_id: String,
    /// The answer's `type`: which command it answers (`commands::judge`).
    pub kind: Option<String>,
    pub success: Option<bool>,
    /// `state.emergency_stopped`, where the robot reports it.
    pub emergency_stopped: Option<bool>,
    pub payload: Value,
}

impl Decoded {
    /// A message for `robot_id` at `ts` that produced nothing yet.
    pub fn empty(robot_id: String, ts: DateTime<Utc>, ts_source: TsSource) -> Self {
        Self {
            robot_id,
            ts,
            ts_source,
            metrics: Vec::new(),
            logs: Vec::new(),
            state: None,
            job: None,
            scan: None,
            reply: None,
        }
    }

    /// Adds a metric row at the message's own robot and time.
    pub fn push_metric(&mut self, name: String, value: f64, unit: Option<String>) {
        self.metrics.push(MetricRow { name, value, unit });
    }

    /// Rows this message adds to a batch (the robot upsert counts as one).
    pub fn row_count(&self) -> usize {
        self.metrics.len() + self.logs.len() + 1
    }
}

/// Which of `n` keys (`key(i)` the i-th) repeat an earlier one. A handful are compared
/// pairwise; more are sorted, so thousands of keys (one message's metric names, one
/// payload object's members) cost n log n, not n².
pub fn repeats_earlier<'k>(n: usize, key: impl Fn(usize) -> &'k str) -> Vec<bool> {
    if n <= 16 {
        return (0..n).map(|i| (0..i).any(|j| key(j) == key(i))).collect();
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Equal keys in their order: all but the first of them repeat.
    order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
    let mut repeated = vec![false; n];
    for w in order.windows(2) {
        if key(w[0]) == key(w[1]) {
            repeated[w[1]] = true;
        }
    }
    repeated
}

/// `[A-Za-z0-9_.:-]{1,128}` (README, "Topics").
pub fn valid_robot_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Identifies a message for dedup keys: stable across redeliveries.
pub fn message_fingerprint(topic: &str, payload: &[u8]) -> i64 {
    // FNV-1a, 64 bit: stable across Rust versions and processes, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.as_bytes().iter().chain([0u8].iter()).chain(payload) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The log row for "robot `robot_id` went from status `from` to `to` at `ts`" (category
/// `robot`). Its dedup key depends only on the robot and the new status, so with the
/// time (the logs unique key) the same change is logged once whichever batch or path
/// writes it. Every lifecycle row is built here, so level and wording live in one place.
pub fn status_change_log(robot_id: &str, from: &str, to: &str, ts: DateTime<Utc>) -> LogRow {
    lifecycle_log(
        robot_id,
        ts,
        level_of(to),
        format!("status changed from {from} to {to}"),
        serde_json::json!({ "from": from, "to": to }),
        to,
    )
}

/// The sweeper's "no message for `silent_for`" transition to offline.
pub fn went_silent_log(
    robot_id: &str,
    from: &str,
    last_seen: DateTime<Utc>,
    ts: DateTime<Utc>,
) -> LogRow {
    let silent = (ts - last_seen).num_seconds().max(0);
    lifecycle_log(
        robot_id,
        ts,
        level_of("offline"),
        format!("status changed from {from} to offline: no message for {silent} s"),
        serde_json::json!({
            "from": from, "to": "offline", "reason": "silent",
            "last_seen": last_seen.to_rfc3339(),
        }),
        "offline",
    )
}

/// A robot's first message: the row is created with `status`.
pub fn first_seen_log(robot_id: &str, status: &str, ts: DateTime<Utc>) -> LogRow {
    lifecycle_log(
        robot_id,
        ts,
        "INFO",
        format!("robot first seen (status {status})"),
        serde_json::json!({ "to": status, "reason": "first_seen" }),
        "first_seen",
    )
}

/// A soft-deleted robot (`is_active = false`) reported again and is active again.
pub fn reactivated_log(robot_id: &str, ts: DateTime<Utc>) -> LogRow {
    lifecycle_log(
        robot_id,
        ts,
        "INFO",
        "robot reported again and is active again".into(),
        serde_json::json!({ "reason": "reactivated" }),
        "reactivated",
    )
}

fn level_of(status: &str) -> &'static str {
    match status {
        "offline" | "emergency_stopped" | "error" => "WARNING",
        _ => "INFO",
    }
}

fn lifecycle_log(
    robot_id: &str,
    ts: DateTime<Utc>,
    level: &str,
    message: String,
    details: Value,
    key: &str,
) -> LogRow {
    LogRow {
        robot_id: Some(robot_id.to_string()),
        ts,
        level: level.into(),
        category: "robot".into(),
        source: Some("fleetsink".into()),
        message,
        details: Some(details),
        dedup_key: message_fingerprint(&format!("{robot_id}/status"), key.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_found_pairwise_and_by_sorting_alike() {
        for n in [5usize, 16, 17, 40] {
            let keys: Vec<String> = (0..n).map(|i| format!("k{}", (i * 7) % 6)).collect();
            let got = repeats_earlier(n, |i| &keys[i]);
            let want: Vec<bool> = (0..n).map(|i| keys[..i].contains(&keys[i])).collect();
            assert_eq!(got, want, "{n} keys");
            assert_eq!(got.iter().filter(|r| !**r).count(), n.min(6), "{n} keys");
        }
        assert!(repeats_earlier(0, |_| "").is_empty());
    }

    #[test]
    fn robot_ids() {
        assert!(valid_robot_id("tonypi_raspberrypi"));
        assert!(valid_robot_id("gw-1.site:7"));
        assert!(!valid_robot_id(""));
        assert!(!valid_robot_id("a/b"));
        assert!(!valid_robot_id(&"x".repeat(129)));
    }

    #[test]
    fn fingerprint_is_stable() {
        // A fixed value: dedup keys already stored must keep matching after upgrades.
        assert_eq!(
            message_fingerprint("a", b"b"),
            message_fingerprint("a", b"b")
        );
        assert_ne!(
            message_fingerprint("a", b"b"),
            message_fingerprint("ab", b"")
        );
        assert_eq!(
            message_fingerprint("", b""),
            0xaf63_bd4c_8601_b7df_u64 as i64
        );
    }

    #[test]
    fn status_change_rows() {
        let ts = "2026-11-22T09:00:00Z".parse().unwrap();
        let a = status_change_log("r1", "online", "offline", ts);
        assert_eq!(a.level, "WARNING");
        assert_eq!(a.message, "status changed from online to offline");
        let b = status_change_log("r1", "unknown", "offline", ts);
        assert_eq!(a.dedup_key, b.dedup_key, "key ignores the previous status");
        assert_eq!(
            status_change_log("r1", "offline", "online", ts).level,
            "INFO"
        );
    }
}
