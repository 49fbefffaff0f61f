//! Liveness and readiness state shared by the pipeline, the admin port and metrics.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;

use crate::telemetry;

/// What `/readyz` reports. Each flag is written by the component that knows it.
#[derive(Debug, Default)]
pub struct Health {
    broker_connected: AtomicBool,
    database_reachable: AtomicBool,
    draining: AtomicBool,
    /// Unix millis of the last message received; 0 = none yet.
    last_message_ms: AtomicI64,
    received: AtomicU64,
    acked: AtomicU64,
    /// What the stages report for systemd's watchdog.
    pub progress: crate::watchdog::Progress,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub broker_connected: bool,
    pub database_reachable: bool,
    pub draining: bool,
    pub messages_awaiting_ack: u64,
}

impl Health {
    pub fn set_broker_connected(&self, up: bool) {
        self.broker_connected.store(up, Ordering::Relaxed);
        telemetry::broker_connected(up);
    }

    pub fn set_database_reachable(&self, up: bool) {
        self.database_reachable.store(up, Ordering::Relaxed);
        telemetry::database_reachable(up);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
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

    pub fn readiness(&self) -> Readiness {
        let broker_connected = self.broker_connected.load(Ordering::Relaxed);
        let database_reachable = self.database_reachable.load(Ordering::Relaxed);
        let draining = self.draining.load(Ordering::Relaxed);
        Readiness {
            ready: broker_connected && database_reachable && !draining,
            broker_connected,
            database_reachable,
            draining,
            messages_awaiting_ack: self.awaiting_ack(),
        }
    }
}
