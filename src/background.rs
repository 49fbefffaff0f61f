//! The periodic work, in one place: partition maintenance, the offline sweep (with
//! command expiry and the robots gauge on the same tick), the emergency-stop
//! confirmation watch, statistics for tables that grew from nothing, and the monitor (database probe for readiness, gauges). The app starts them all with [`spawn`] and stops them with the
//! other background tasks, after the pipeline has drained (`App::stopped`).
//!
//! Timers, cancellation and what a failure does live here; the SQL each round runs is
//! `db::maintenance`. A failed round is logged and counted, never fatal: the next tick
//! tries again, and nothing the pipeline does waits for these loops. Each sweep or
//! confirmation call has a deadline (`database.connect_timeout` + `commit_timeout`), so
//! a connection whose packets vanish costs one round, not the loop; partition rounds
//! (archives run as long as a day is large) rely on the server's deadlines and the
//! pool's checks instead. Every round is
//! safe with several instances on one database (advisory lock, `SKIP LOCKED`, updates
//! of rows still `sent`; see each `db::maintenance` file), so no instance is special.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DatabaseConfig, RetentionConfig};
use crate::db::maintenance::{analyze, commands, offline, partitions};
use crate::health::Health;
use crate::pipeline::Envelope;
use crate::telemetry;

/// Starts every periodic loop on `tracker`; each returns once `cancel` fires. The
/// start-up partition round is not among them: the app runs [`maintain_partitions`]
/// before intake opens, so today's partition exists from the first row.
pub fn spawn(tracker: &TaskTracker, pool: &PgPool, cfg: &Config, cancel: &CancellationToken) {
    tracker.spawn(maintain_partitions_periodically(
        pool.clone(),
        cfg.retention.clone(),
        cancel.clone(),
    ));
    let deadline = round_deadline(&cfg.database);
    tracker.spawn(sweep_periodically(
        pool.clone(),
        cfg.robots.offline_after,
        cfg.commands.expire_after,
        deadline,
        cancel.clone(),
    ));
    tracker.spawn(watch_confirmations(
        pool.clone(),
        cfg.commands.confirm_within,
        deadline,
        cancel.clone(),
    ));
    tracker.spawn(analyze_periodically(pool.clone(), deadline, cancel.clone()));
}

/// How often tables are checked for stale statistics (`db::maintenance::analyze`).
const ANALYZE_EVERY: Duration = Duration::from_secs(10);

/// Every [`ANALYZE_EVERY`] until cancelled: analyzes the tables that hold more than
/// twice the rows their statistics say, so a fresh installation or a new day's
/// partition gets plans for its real size within seconds, not after autovacuum's minute.
async fn analyze_periodically(pool: PgPool, deadline: Duration, cancel: CancellationToken) {
    let mut tick = ticker(ANALYZE_EVERY);
    while unless_cancelled(&cancel, tick.tick()).await {
        match bounded(deadline, "analyze", analyze::analyze_stale(&pool)).await {
            Ok(tables) if !tables.is_empty() => {
                tracing::debug!(?tables, "analyzed tables that grew");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "analyzing grown tables failed; retrying next tick")
            }
        }
    }
}

/// How long one maintenance call may take: a connection, then a transaction.
fn round_deadline(db: &DatabaseConfig) -> Duration {
    db.connect_timeout + db.commit_timeout
}

/// `call` within `deadline`; a miss is a transient error like any lost connection.
async fn bounded<T>(
    deadline: Duration,
    what: &str,
    call: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| Err(crate::db::timed_out(what, deadline)))
}

/// One partition maintenance round for today; failures are counted and logged, never
/// fatal (rows go to the default partition meanwhile and move out on a later round).
pub async fn maintain_partitions(pool: &PgPool, cfg: &RetentionConfig) {
    let today = Utc::now().date_naive();
    match partitions::maintain_for_day(pool, cfg, today).await {
        // A partition that could not be archived was kept: the round did not finish.
        Ok(r) if r.ran => telemetry::maintenance_run(r.failed.is_empty()),
        Ok(_) => {}
        Err(e) => {
            telemetry::maintenance_run(false);
            tracing::error!(error = %e, "partition maintenance failed; rows go to the default partition until it succeeds");
        }
    }
}

/// A round `retention.interval` after the previous one ended, until cancelled.
async fn maintain_partitions_periodically(
    pool: PgPool,
    cfg: RetentionConfig,
    cancel: CancellationToken,
) {
    while unless_cancelled(&cancel, tokio::time::sleep(cfg.interval)).await {
        maintain_partitions(&pool, &cfg).await;
    }
}

/// How often to sweep: a third of the window, between 1 and 10 seconds, so a robot is
/// marked within about `offline_after` + a third of it.
fn sweep_interval(offline_after: Duration) -> Duration {
    (offline_after / 3).clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Every [`sweep_interval`] until cancelled: marks silent robots offline, expires
/// commands unanswered after `commands.expire_after`, and refreshes
/// `fleetsink_robots{status}`.
async fn sweep_periodically(
    pool: PgPool,
    offline_after: Duration,
    expire_commands_after: Duration,
    deadline: Duration,
    cancel: CancellationToken,
) {
    let mut tick = ticker(sweep_interval(offline_after));
    while unless_cancelled(&cancel, tick.tick()).await {
        let sweep = offline::sweep_once(&pool, offline_after);
        if let Err(e) = bounded(deadline, "offline sweep", sweep).await {
            tracing::warn!(error = %e, "offline sweep failed; retrying next tick");
        }
        let expiry = commands::expire(&pool, expire_commands_after);
        if let Err(e) = bounded(deadline, "command expiry", expiry).await {
            tracing::warn!(error = %e, "command expiry failed; retrying next tick");
        }
        let counted = offline::count_by_status(&pool);
        if let Err(e) = bounded(deadline, "robot count", counted).await {
            tracing::debug!(error = %e, "robot count failed");
        }
    }
}

/// How often overdue confirmations are looked for: a fifth of the window, between 200 ms
/// and 1 s, so an unconfirmed stop shows within about a second of its deadline.
fn confirm_interval(confirm_within: Duration) -> Duration {
    (confirm_within / 5).clamp(Duration::from_millis(200), Duration::from_secs(1))
}

/// Marks overdue confirmations every [`confirm_interval`] until cancelled; each is
/// logged at CRITICAL and counted (`fleetsink_commands_total{result="unconfirmed"}`).
async fn watch_confirmations(
    pool: PgPool,
    confirm_within: Duration,
    deadline: Duration,
    cancel: CancellationToken,
) {
    let mut tick = ticker(confirm_interval(confirm_within));
    while unless_cancelled(&cancel, tick.tick()).await {
        let due = commands::mark_unconfirmed(&pool);
        match bounded(deadline, "confirmation check", due).await {
            Ok(due) => {
                for u in due {
                    telemetry::command("unconfirmed");
                    tracing::error!(
                        command_id = %u.command_id,
                        robot_id = %u.robot_id.as_deref().unwrap_or("-"),
                        command = %u.command,
                        "CRITICAL: {} not confirmed by the robot: it may still be moving",
                        u.command
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "confirmation check failed; retrying next tick"),
        }
    }
}

/// Ticks every `period`, the first at once; after a round that overran, the next tick
/// comes a full period later rather than in a burst.
fn ticker(period: Duration) -> Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Waits for `wait`; false when `cancel` fired first (the loop ends, never mid-round).
async fn unless_cancelled(cancel: &CancellationToken, wait: impl Future) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = wait => true,
    }
}

/// How often the monitor probes PostgreSQL and refreshes gauges.
const MONITOR_INTERVAL: Duration = Duration::from_secs(1);

/// Probes PostgreSQL (readiness; a probe unanswered within `probe_deadline`, the
/// connect timeout, is a failure) and refreshes the gauges (readiness, intake queue
/// depth, acks awaited, last message age) every [`MONITOR_INTERVAL`] until cancelled.
pub async fn monitor(
    pool: PgPool,
    health: Arc<Health>,
    prometheus: PrometheusHandle,
    intake: mpsc::Sender<Envelope>,
    probe_deadline: Duration,
    cancel: CancellationToken,
) {
    let mut tick = ticker(MONITOR_INTERVAL);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let probe = tokio::time::timeout(probe_deadline, crate::db::ping(&pool)).await;
        health.set_database_reachable(matches!(probe, Ok(Ok(_))));
        telemetry::queue_depth(intake.max_capacity() - intake.capacity());
        telemetry::awaiting_ack(health.awaiting_ack() as usize);
        telemetry::upkeep(&prometheus, health.last_message_age());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_interval_follows_the_window() {
        assert_eq!(
            sweep_interval(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(6)),
            Duration::from_secs(2)
        );
        assert_eq!(
            sweep_interval(Duration::from_millis(900)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn confirm_interval_follows_the_window() {
        assert_eq!(
            confirm_interval(Duration::from_secs(5)),
            Duration::from_secs(1)
        );
        assert_eq!(
            confirm_interval(Duration::from_secs(2)),
            Duration::from_millis(400)
        );
        assert_eq!(
            confirm_interval(Duration::from_millis(500)),
            Duration::from_millis(200)
        );
    }
}
