//! systemd's watchdog, fed only while the pipeline makes progress or is idle by choice.
//!
//! The stages report to [`Progress`]: a sink worker says when it takes a batch, after
//! every database attempt (a commit, or a failed try before its backoff), and when it
//! is done; the external source beats on every event of its MQTT loop (keepalive pings
//! included, so an idle connection still beats). The verdict is *stalled* when a
//! worker has held a batch for longer than `stall_after` without finishing a single
//! database attempt (a call that never returns), or when the MQTT loop has not turned
//! for `stall_after` — then `WATCHDOG=1` stops and systemd restarts the service. A
//! database outage is not a stall: each retry is an attempt. An empty queue is idle by
//! choice, however long it lasts.
//!
//! Readiness (`health.rs`) reads the same reports with a shorter clock: a batch held
//! past `database.commit_timeout` is `pipeline_stalled` at once, and the deadlines on
//! every database call (`db`) end an attempt long before `stall_after`, which is set
//! above the longest gap they allow. So whatever makes the watchdog starve has made
//! `/readyz` answer 503 first: compose and a load balancer see what systemd sees.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What the stages report.
#[derive(Debug)]
pub struct Progress {
    base: Instant,
    /// Sink workers holding a batch.
    busy: AtomicUsize,
    /// Millis since `base` of the last finished database attempt (or batch taken).
    sink_beat: AtomicU64,
    /// When each batch still held was taken (millis since `base`).
    held: Mutex<Vec<u64>>,
    /// Whether an MQTT loop of ours must keep turning (external mode).
    intake_watched: AtomicBool,
    intake_beat: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            busy: AtomicUsize::new(0),
            sink_beat: AtomicU64::new(0),
            held: Mutex::new(Vec::new()),
            intake_watched: AtomicBool::new(false),
            intake_beat: AtomicU64::new(0),
        }
    }
}

/// When a sink worker took the batch it holds.
#[derive(Debug)]
#[must_use = "hand it back to Progress::batch_done"]
pub struct HeldSince(u64);

/// The watchdog's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Progressing, or idle by choice: feed the watchdog.
    Alive,
    /// Stuck: say why, and stop feeding it.
    Stalled(String),
}

impl Progress {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A sink worker took a batch; hand the answer to [`Progress::batch_done`].
    pub fn batch_started(&self) -> HeldSince {
        let now = self.now_ms();
        self.sink_beat.store(now, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut held) = self.held.lock() {
            held.push(now);
        }
        HeldSince(now)
    }

    /// A database attempt finished (committed, or failed and will be retried).
    pub fn attempt_finished(&self) {
        self.sink_beat.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The batch is committed and its acks released.
    pub fn batch_done(&self, since: HeldSince) {
        self.sink_beat.store(self.now_ms(), Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut held) = self.held.lock()
            && let Some(i) = held.iter().position(|&t| t == since.0)
        {
            held.swap_remove(i);
        }
    }

    /// Whether some sink worker has held its batch for longer than `deadline`.
    pub fn held_longer_than(&self, deadline: Duration) -> bool {
        let deadline = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        let oldest = self
            .held
            .lock()
            .ok()
            .and_then(|held| held.iter().min().copied());
        oldest.is_some_and(|t| self.now_ms().saturating_sub(t) > deadline)
    }

    /// The external source's MQTT loop turned (an event, or a failed poll).
    pub fn intake_beat(&self) {
        self.intake_beat.store(self.now_ms(), Ordering::Relaxed);
        self.intake_watched.store(true, Ordering::Relaxed);
    }

    pub fn verdict(&self, stall_after: Duration) -> Verdict {
        let now = self.now_ms();
        let stall = u64::try_from(stall_after.as_millis()).unwrap_or(u64::MAX);
        let busy = self.busy.load(Ordering::Relaxed);
        let since_sink = now.saturating_sub(self.sink_beat.load(Ordering::Relaxed));
        if busy > 0 && since_sink > stall {
            return Verdict::Stalled(format!(
                "{busy} sink worker(s) have held a batch for {} s without finishing a database attempt",
                since_sink / 1000
            ));
        }
        let since_intake = now.saturating_sub(self.intake_beat.load(Ordering::Relaxed));
        if self.intake_watched.load(Ordering::Relaxed) && since_intake > stall {
            return Verdict::Stalled(format!(
                "the MQTT loop has not turned for {} s",
                since_intake / 1000
            ));
        }
        Verdict::Alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn progress_feeds_an_idle_pipeline_feeds_a_stalled_sink_starves() {
        let p = Progress::default();
        // Idle by choice: nothing held, for an hour.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(p.verdict(STALL), Verdict::Alive);

        // A batch in progress with attempts every 5 s (a database outage being
        // retried) stays alive.
        let held = p.batch_started();
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(5)).await;
            p.attempt_finished();
            assert_eq!(p.verdict(STALL), Verdict::Alive);
        }
        // A database call that never returns: no attempt finishes.
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(p.verdict(STALL), Verdict::Alive);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(p.verdict(STALL), Verdict::Stalled(why) if why.contains("sink")));
        // It returns after all: alive again, and idle once done.
        p.attempt_finished();
        p.batch_done(held);
        tokio::time::advance(Duration::from_secs(600)).await;
        assert_eq!(p.verdict(STALL), Verdict::Alive);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wedged_mqtt_loop_starves_the_watchdog() {
        let p = Progress::default();
        p.intake_beat();
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(20)).await;
            p.intake_beat(); // keepalive pings keep an idle connection turning
            assert_eq!(p.verdict(STALL), Verdict::Alive);
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(matches!(p.verdict(STALL), Verdict::Stalled(why) if why.contains("MQTT")));
    }
}
