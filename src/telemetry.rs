//! fleetsink's own Prometheus metrics (README, "Operations"): every name is defined
//! here, once. "Telemetry" is fleetsink's word for these; "metrics" are the robots'
//! readings (`metrics` table, `db::writes::metrics`, `http::api::metrics`).
//!
//! Names start with `fleetsink_`, carry their unit, counters end in `_total`, and labels
//! are low-cardinality (route filter, table, reason; never a robot id).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const MESSAGES_RECEIVED: &str = "fleetsink_messages_received_total";
pub const ROWS_WRITTEN: &str = "fleetsink_rows_written_total";
pub const INGEST_ERRORS: &str = "fleetsink_ingest_errors_total";
pub const TIMESTAMP_FALLBACKS: &str = "fleetsink_timestamp_fallbacks_total";
pub const BATCH_SIZE: &str = "fleetsink_batch_size_messages";
pub const COMMIT_DURATION: &str = "fleetsink_batch_commit_duration_seconds";
pub const END_TO_END_LAG: &str = "fleetsink_end_to_end_lag_seconds";
pub const COMMIT_FAILURES: &str = "fleetsink_batch_commit_failures_total";
pub const QUEUE_DEPTH: &str = "fleetsink_queue_depth_messages";
pub const AWAITING_ACK: &str = "fleetsink_messages_awaiting_ack";
pub const BROKER_CONNECTED: &str = "fleetsink_broker_connected";
pub const DATABASE_REACHABLE: &str = "fleetsink_database_reachable";
pub const READY: &str = "fleetsink_ready";
pub const LAST_MESSAGE_AGE: &str = "fleetsink_last_message_age_seconds";
pub const MAINTENANCE_RUNS: &str = "fleetsink_partition_maintenance_runs_total";
pub const MAINTENANCE_FAILURES: &str = "fleetsink_partition_maintenance_failures_total";
pub const ROBOTS: &str = "fleetsink_robots";
pub const AUTH_CHECKS: &str = "fleetsink_auth_checks_total";
pub const COMMANDS: &str = "fleetsink_commands_total";
pub const ALERT_EVENTS: &str = "fleetsink_alert_events_total";
pub const MQTT_REFUSALS: &str = "fleetsink_mqtt_refusals_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(BATCH_SIZE.into()),
                    &[
                        1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(COMMIT_DURATION.into()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(END_TO_END_LAG.into()),
                        &[
                            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0,
                        ],
                    )
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                // The matchers above are static, so this branch is unreachable in
                // practice; fall back to default (summary) rendering rather than panic.
                Err(_) => PrometheusBuilder::new().build_recorder(),
            };
            let handle = recorder.handle();
            // Fails only if another recorder was installed first (e.g. a test harness);
            // the handle still renders this recorder's (then empty) registry.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(MESSAGES_RECEIVED, "MQTT messages received, by route.");
    describe_counter!(ROWS_WRITTEN, "Rows committed to PostgreSQL, by table.");
    describe_counter!(
        INGEST_ERRORS,
        "Messages written to ingest_errors, by reason."
    );
    describe_counter!(
        TIMESTAMP_FALLBACKS,
        "Readings stored at receive time instead of their payload timestamp, by reason."
    );
    describe_histogram!(BATCH_SIZE, Unit::Count, "Messages per committed batch.");
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "Time to write and commit one batch."
    );
    describe_histogram!(
        END_TO_END_LAG,
        Unit::Seconds,
        "Time from receiving a message to committing it."
    );
    describe_counter!(
        COMMIT_FAILURES,
        "Batch commits that failed, by kind (transient = retried, timeouts included; timeout = missed database.commit_timeout, its connection closed; rejected = split, redelivered = rewritten skipping rows already stored)."
    );
    describe_gauge!(QUEUE_DEPTH, "Messages waiting between intake and the sink.");
    describe_gauge!(AWAITING_ACK, "Messages received and not yet acknowledged.");
    describe_gauge!(
        BROKER_CONNECTED,
        "1 when the MQTT broker is connected (external) or listening (embedded)."
    );
    describe_gauge!(
        DATABASE_REACHABLE,
        "1 when the readiness probe answers and no commit is failing for want of a connection."
    );
    describe_gauge!(
        READY,
        "1 when /readyz answers 200; its body says why not (database_unreachable, commits_failing, pipeline_stalled, ...)."
    );
    describe_gauge!(
        LAST_MESSAGE_AGE,
        Unit::Seconds,
        "Seconds since the last message was received."
    );
    describe_counter!(MAINTENANCE_RUNS, "Partition maintenance rounds completed.");
    describe_counter!(
        MAINTENANCE_FAILURES,
        "Partition maintenance rounds that failed."
    );
    describe_gauge!(
        ROBOTS,
        "Active robots by status (online, offline, emergency_stopped, unknown, other)."
    );
    describe_counter!(
        AUTH_CHECKS,
        "MQTT authentication and ACL checks (go-auth HTTP backend and embedded broker), by kind (user, superuser, acl) and result (allow, deny, error)."
    );
    describe_counter!(
        MQTT_REFUSALS,
        "PUBLISH, SUBSCRIBE and Last Will refused by the embedded broker's access policy, by act (publish, subscribe, will) and reason (auth::access::Refusal)."
    );
    describe_counter!(
        ALERT_EVENTS,
        "Threshold alert events committed, by event (opened, escalated, resolved)."
    );
    describe_counter!(
        COMMANDS,
        "Downlink commands by outcome: sent (published to the broker), unpublished (the broker did not take it; answered 503), unconfirmed (an emergency stop its robot did not confirm in time; counted per robot)."
    );
}

/// Tables `ROWS_WRITTEN` counts.
pub const TABLES: [&str; 7] = [
    "robots",
    "metrics",
    "metric_rollups",
    "logs",
    "jobs",
    "ingest_errors",
    "alerts",
];

/// Starts every known series at zero, so dashboards and alert rules see each one from
/// the first scrape (a counter that appears only on its first increment hides the
/// first event from `rate()`).
pub fn zero_series(routes: &[&'static str]) {
    use crate::model::{Reason, TsSource};
    for route in routes {
        counter!(MESSAGES_RECEIVED, "route" => *route).absolute(0);
    }
    for table in TABLES {
        counter!(ROWS_WRITTEN, "table" => table).absolute(0);
    }
    for reason in Reason::ALL {
        counter!(INGEST_ERRORS, "reason" => reason.label()).absolute(0);
    }
    for fallback in [TsSource::Missing, TsSource::Unparsable, TsSource::Skewed] {
        counter!(TIMESTAMP_FALLBACKS, "reason" => fallback.label()).absolute(0);
    }
    for kind in ["transient", "timeout", "rejected", "redelivered"] {
        counter!(COMMIT_FAILURES, "kind" => kind).absolute(0);
    }
    for kind in ["user", "superuser", "acl"] {
        for result in ["allow", "deny"] {
            counter!(AUTH_CHECKS, "kind" => kind, "result" => result).absolute(0);
        }
    }
    for result in COMMAND_RESULTS {
        counter!(COMMANDS, "result" => result).absolute(0);
    }
    for event in ALERT_EVENT_NAMES {
        counter!(ALERT_EVENTS, "event" => event).absolute(0);
    }
    for (act, reason) in MQTT_REFUSAL_SERIES {
        counter!(MQTT_REFUSALS, "act" => act, "reason" => reason).absolute(0);
    }
    counter!(MAINTENANCE_RUNS).absolute(0);
    counter!(MAINTENANCE_FAILURES).absolute(0);
    gauge!(QUEUE_DEPTH).set(0.0);
    gauge!(AWAITING_ACK).set(0.0);
}

/// The (act, reason) series of `fleetsink_mqtt_refusals_total` that can occur.
pub const MQTT_REFUSAL_SERIES: [(&str, &str); 15] = [
    ("publish", "client_id_not_robot_id"),
    ("publish", "not_uplink"),
    ("publish", "downlink"),
    ("publish", "other_robot"),
    ("publish", "no_robot_id"),
    ("publish", "acl"),
    ("subscribe", "client_id_not_robot_id"),
    ("subscribe", "not_own_downlink"),
    ("subscribe", "acl"),
    ("will", "client_id_not_robot_id"),
    ("will", "not_uplink"),
    ("will", "downlink"),
    ("will", "other_robot"),
    ("will", "no_robot_id"),
    ("will", "acl"),
];

/// A refused MQTT act (labels from `auth::access`).
pub fn mqtt_refused(act: &'static str, reason: &'static str) {
    counter!(MQTT_REFUSALS, "act" => act, "reason" => reason).increment(1);
}

/// The `result` label values of `fleetsink_commands_total`.
pub const COMMAND_RESULTS: [&str; 3] = ["sent", "unpublished", "unconfirmed"];

/// A downlink command: `result` one of [`COMMAND_RESULTS`].
pub fn command(result: &'static str) {
    counter!(COMMANDS, "result" => result).increment(1);
}

/// Refreshes derived gauges and runs exporter upkeep; call on a timer.
pub fn upkeep(handle: &PrometheusHandle, last_message_age: Option<Duration>) {
    if let Some(age) = last_message_age {
        gauge!(LAST_MESSAGE_AGE).set(age.as_secs_f64());
    }
    handle.run_upkeep();
}

pub fn message_received(route: &'static str) {
    counter!(MESSAGES_RECEIVED, "route" => route).increment(1);
}

/// `table` is one of [`TABLES`].
pub fn rows_written(table: &'static str, n: u64) {
    counter!(ROWS_WRITTEN, "table" => table).increment(n);
}

pub fn ingest_error(reason: &'static str) {
    counter!(INGEST_ERRORS, "reason" => reason).increment(1);
}

pub fn timestamp_fallback(reason: &'static str) {
    counter!(TIMESTAMP_FALLBACKS, "reason" => reason).increment(1);
}

pub fn batch_committed(messages: usize, commit: Duration) {
    histogram!(BATCH_SIZE).record(messages as f64);
    histogram!(COMMIT_DURATION).record(commit.as_secs_f64());
}

pub fn end_to_end_lag(lag: Duration) {
    histogram!(END_TO_END_LAG).record(lag.as_secs_f64());
}

pub fn commit_failure(kind: &'static str) {
    counter!(COMMIT_FAILURES, "kind" => kind).increment(1);
}

pub fn queue_depth(n: usize) {
    gauge!(QUEUE_DEPTH).set(n as f64);
}

pub fn awaiting_ack(n: usize) {
    gauge!(AWAITING_ACK).set(n as f64);
}

pub fn broker_connected(up: bool) {
    gauge!(BROKER_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

/// The readiness state (`health.rs`) as gauges.
pub fn readiness(ready: bool, database_reachable: bool) {
    gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    gauge!(DATABASE_REACHABLE).set(if database_reachable { 1.0 } else { 0.0 });
}

pub fn maintenance_run(ok: bool) {
    if ok {
        counter!(MAINTENANCE_RUNS).increment(1);
    } else {
        counter!(MAINTENANCE_FAILURES).increment(1);
    }
}

pub fn robots(status: &'static str, n: u64) {
    gauge!(ROBOTS, "status" => status).set(n as f64);
}

/// One MQTT auth check: `kind` user | superuser | acl, `result` allow | deny | error.
pub fn auth_check(kind: &'static str, result: &'static str) {
    counter!(AUTH_CHECKS, "kind" => kind, "result" => result).increment(1);
}

const ALERT_EVENT_NAMES: [&str; 3] = ["opened", "escalated", "resolved"];

/// Committed alert events.
pub fn alert_events(opened: u64, escalated: u64, resolved: u64) {
    for (event, n) in ALERT_EVENT_NAMES
        .into_iter()
        .zip([opened, escalated, resolved])
    {
        if n > 0 {
            counter!(ALERT_EVENTS, "event" => event).increment(n);
        }
    }
}
